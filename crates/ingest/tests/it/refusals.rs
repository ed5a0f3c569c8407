//! Refusals that touch only the refused: a sender not on the allow-list, and a frame
//! over the limit, each beside a well-behaved connection whose messages must go on
//! being stored. (The binary's tests in `tenet` drive the rest of the malformed-input
//! matrix end to end; the allow-list and a small frame limit are set here, through
//! the library's `ListenerConfig`.)

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hl7::Message;

use super::{Client, adt, connect, count, exchange, start};

/// Sends `message` and returns MSA-1 and ERR-3.1 (the HL7 error code) of its ACK.
async fn refusal(client: &mut Client, message: &str) -> (String, Option<String>) {
    client.send(message.as_bytes()).await.unwrap();
    let frame = tokio::time::timeout(Duration::from_secs(10), client.next())
        .await
        .expect("an ACK within 10 s")
        .expect("the connection stays open")
        .unwrap();
    let ack = Message::parse(&frame).unwrap();
    let get = |path: &str| {
        ack.get(&path.parse().unwrap())
            .map(|value| value.as_str().to_owned())
    };
    (get("MSA-1").unwrap_or_default(), get("ERR-3.1"))
}

#[tokio::test]
async fn an_unknown_sender_is_refused_with_err_204_in_either_mode_while_allowed_senders_are_stored()
{
    let db = db::testing::TestDb::migrated(&schema::migrator()).await;
    let server = start(&db, |config| {
        config.senders = vec![("LAB".to_owned(), "HOSP".to_owned())];
    })
    .await;
    let mut allowed = connect(&server).await;
    let mut intruder = connect(&server).await;
    for i in 0..10 {
        let original = refusal(&mut intruder, &adt("INTRUDER", &format!("X{i}"))).await;
        assert_eq!(original, ("AR".to_owned(), Some("204".to_owned())));
        let enhanced = adt("LAB", &format!("X{i}"))
            .replace("|LAB|", "|INTRUDER|")
            .replace("2.5.1\r", "2.5.1|||AL|NE\r");
        let enhanced = refusal(&mut intruder, &enhanced).await;
        assert_eq!(enhanced, ("CR".to_owned(), Some("204".to_owned())));
        // The same facility under another application is another sender.
        let (code, _) = refusal(
            &mut intruder,
            &adt("LAB", &format!("Y{i}")).replace("|HOSP|", "|ELSEWHERE|"),
        )
        .await;
        assert_eq!(code, "AR");
        let ack = exchange(&mut allowed, &adt("LAB", &format!("A{i}"))).await;
        assert_eq!((ack.code.as_str(), ack.has_err), ("AA", false));
    }
    assert_eq!(count(&db.app, server.tenant_id, "true").await, 10);
    assert_eq!(
        count(
            &db.app,
            server.tenant_id,
            "sending_application = 'LAB' AND control_id LIKE 'A%'"
        )
        .await,
        10
    );
}

#[tokio::test]
async fn an_oversized_frame_closes_only_its_own_connection() {
    let db = db::testing::TestDb::migrated(&schema::migrator()).await;
    let server = start(&db, |config| config.frame_bytes_max = 1024).await;
    let mut neighbour = connect(&server).await;
    assert_eq!(exchange(&mut neighbour, &adt("LAB", "B0")).await.code, "AA");
    let mut client = connect(&server).await;
    let mut big = adt("LAB", "BIG");
    big.push_str(&format!("NTE|1||{}\r", "x".repeat(4096)));
    client.send(big.as_bytes()).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), client.next())
        .await
        .expect("the server answers or closes within 10 s");
    assert!(
        matches!(next, None | Some(Err(_))),
        "the connection is closed without an ACK"
    );
    // The neighbour's connection is untouched, and a new connection is served.
    assert_eq!(exchange(&mut neighbour, &adt("LAB", "B1")).await.code, "AA");
    let mut again = connect(&server).await;
    assert_eq!(exchange(&mut again, &adt("LAB", "B2")).await.code, "AA");
    assert_eq!(count(&db.app, server.tenant_id, "true").await, 3);
    assert_eq!(
        count(&db.app, server.tenant_id, "control_id = 'BIG'").await,
        0
    );
}
