//! The MLLP listener on a real PostgreSQL and real sockets: ACK after commit, grouped
//! commits, duplicates, rejected messages, the sender allow-list, the frame limit and
//! tenant isolation. [`partitions`]: daily partitions, the default partition,
//! retention, and reading a raw message (audited). [`refusals`]: refusals that leave
//! their neighbours untouched. [`transport`]: TLS with client certificates, the
//! connection limit, the idle timeout and the listener's counters. [`group_commit`]:
//! several groups committing at once, meeting on the same keys.

mod group_commit;
mod partitions;
mod transport;

use std::net::SocketAddr;
use std::time::Duration;

use db::TenantTx;
use db::testing::TestDb;
use futures::{SinkExt, StreamExt};
use hl7::Message;
use hl7::mllp::MllpCodec;
use identity::keyring::{Keyring, MasterKey};
use ingest::listener::{Listener, ListenerConfig};
use ingest::store::{Committer, CommitterConfig, open_raw};
use kernel::TenantId;
use sqlx::PgPool;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::codec::Framed;
use uuid::Uuid;

mod process;
mod refusals;

type Client = Framed<TcpStream, MllpCodec>;

struct Server {
    addr: SocketAddr,
    tenant_id: TenantId,
    keyring: Keyring,
    _shutdown: watch::Sender<bool>,
}

/// A listener for a real tenant (with its data key, which seals raw messages).
async fn start(db: &TestDb, configure: impl FnOnce(&mut ListenerConfig)) -> Server {
    // The template database may be older than the partitions it was made with.
    ingest::partitions::ensure(&db.owner, Duration::from_secs(10))
        .await
        .unwrap();
    let keyring = Keyring::new(MasterKey::generate());
    let tenant_id = identity::tenant::create(&db.app, &keyring, "Harbor Lab")
        .await
        .unwrap();
    let (committer, _task) =
        Committer::spawn(db.app.clone(), keyring.clone(), CommitterConfig::default());
    let mut config = ListenerConfig::new(tenant_id, "test");
    configure(&mut config);
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), config, committer)
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (shutdown, rx) = watch::channel(false);
    tokio::spawn(listener.run(rx));
    Server {
        addr,
        tenant_id,
        keyring,
        _shutdown: shutdown,
    }
}

async fn connect(server: &Server) -> Client {
    Framed::new(
        TcpStream::connect(server.addr).await.unwrap(),
        MllpCodec::new(),
    )
}

fn adt(sender: &str, control_id: &str) -> String {
    format!(
        "MSH|^~\\&|{sender}|HOSP|TENET|CLINIC|20240102030405||ADT^A01^ADT_A01|{control_id}|P|2.5.1\r\
         PID|1||12345^^^HOSP^MR||DOE^JANE\r"
    )
}

struct Ack {
    code: String,
    control_id: String,
    has_err: bool,
}

async fn exchange(client: &mut Client, message: &str) -> Ack {
    client.send(message.as_bytes()).await.unwrap();
    let frame = tokio::time::timeout(Duration::from_secs(10), client.next())
        .await
        .expect("an ACK within 10 s")
        .expect("the connection stays open")
        .unwrap();
    let ack = Message::parse(&frame).unwrap();
    let msa = ack.segment("MSA").expect("an MSA segment");
    let field = |n| {
        msa.field(n)
            .map(|f| f.as_str().to_owned())
            .unwrap_or_default()
    };
    Ack {
        code: field(1),
        control_id: field(2),
        has_err: ack.segment("ERR").is_some(),
    }
}

async fn count(pool: &PgPool, tenant_id: TenantId, filter: &str) -> i64 {
    let mut tx = TenantTx::begin_as(pool, tenant_id, "system", None)
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM ingest.messages WHERE {filter}"
    ))
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    n
}

#[tokio::test]
async fn the_ack_arrives_only_after_the_message_is_committed() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let server = start(&db, |_| {}).await;
    let mut client = connect(&server).await;
    for i in 0..20 {
        let control_id = format!("C{i}");
        let ack = exchange(&mut client, &adt("LAB", &control_id)).await;
        assert_eq!(ack.code, "AA");
        assert_eq!(ack.control_id, control_id);
        // Another connection already sees the row when the ACK is read.
        let filter = format!("control_id = '{control_id}' AND status = 'accepted'");
        assert_eq!(count(&db.app, server.tenant_id, &filter).await, 1);
    }
}

#[tokio::test]
async fn concurrent_connections_are_committed_in_groups() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let server = start(&db, |_| {}).await;
    let mut clients = Vec::new();
    for c in 0..8 {
        let mut client = connect(&server).await;
        clients.push(tokio::spawn(async move {
            let mut n_aa = 0;
            for i in 0..50 {
                let ack = exchange(&mut client, &adt("LAB", &format!("K{c}-{i}"))).await;
                n_aa += usize::from(ack.code == "AA");
            }
            n_aa
        }));
    }
    let mut n_aa = 0;
    for client in clients {
        n_aa += client.await.unwrap();
    }
    assert_eq!(n_aa, 400);
    assert_eq!(count(&db.app, server.tenant_id, "true").await, 400);
    let transactions: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT xmin::text) FROM ingest.messages WHERE tenant_id = $1",
    )
    .bind(server.tenant_id.as_uuid())
    .fetch_one(&db.admin)
    .await
    .unwrap();
    assert!(
        transactions < 400,
        "{transactions} transactions for 400 messages: no grouping"
    );
}

#[tokio::test]
async fn a_duplicate_is_stored_once_and_answered_like_the_first() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let server = start(&db, |_| {}).await;
    let mut client = connect(&server).await;
    let first = exchange(&mut client, &adt("LAB", "DUP1")).await;
    // Resent on another connection, as after a lost ACK.
    let mut other = connect(&server).await;
    let second = exchange(&mut other, &adt("LAB", "DUP1")).await;
    assert_eq!(first.code, "AA");
    assert_eq!(second.code, first.code);
    assert_eq!(second.control_id, "DUP1");
    assert_eq!(
        count(&db.app, server.tenant_id, "control_id = 'DUP1'").await,
        1
    );
    // The same control id from another sender is a different message.
    let third = exchange(&mut client, &adt("RAD", "DUP1")).await;
    assert_eq!(third.code, "AA");
    assert_eq!(
        count(&db.app, server.tenant_id, "control_id = 'DUP1'").await,
        2
    );
}

#[tokio::test]
async fn an_unparseable_message_is_kept_as_rejected_and_its_neighbours_accepted() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let server = start(&db, |_| {}).await;
    let mut client = connect(&server).await;
    assert_eq!(exchange(&mut client, &adt("LAB", "OK1")).await.code, "AA");
    let bad = exchange(&mut client, "PID|1||12345\rMSH|not a header\r").await;
    assert_eq!(bad.code, "AR");
    assert!(bad.has_err, "the AR says why in an ERR segment");
    assert_eq!(exchange(&mut client, &adt("LAB", "OK2")).await.code, "AA");
    assert_eq!(
        count(
            &db.app,
            server.tenant_id,
            "status = 'rejected' AND ack_code = 'AR' AND error IS NOT NULL AND length(raw_sealed) > 0"
        )
        .await,
        1
    );
    assert_eq!(
        count(&db.app, server.tenant_id, "status = 'accepted'").await,
        2
    );
}

#[tokio::test]
async fn enhanced_mode_is_answered_with_commit_acks() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let server = start(&db, |_| {}).await;
    let mut client = connect(&server).await;
    let message = "MSH|^~\\&|LAB|HOSP|TENET|CLINIC|20240102030405||ADT^A01|E1|P|2.5.1|||AL|NE\r";
    assert_eq!(exchange(&mut client, message).await.code, "CA");
    assert_eq!(
        count(
            &db.app,
            server.tenant_id,
            "ack_mode = 'enhanced' AND ack_code = 'CA'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn an_unknown_sender_is_refused_and_not_stored() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let server = start(&db, |config| {
        config.senders = vec![("LAB".to_owned(), "HOSP".to_owned())];
    })
    .await;
    let mut client = connect(&server).await;
    let refused = exchange(&mut client, &adt("INTRUDER", "X1")).await;
    assert_eq!(refused.code, "AR");
    assert!(refused.has_err);
    assert_eq!(exchange(&mut client, &adt("LAB", "X2")).await.code, "AA");
    assert_eq!(count(&db.app, server.tenant_id, "true").await, 1);
}

#[tokio::test]
async fn an_oversized_frame_closes_the_connection() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let server = start(&db, |config| config.frame_bytes_max = 1024).await;
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
    assert_eq!(count(&db.app, server.tenant_id, "true").await, 0);
}

#[tokio::test]
async fn another_tenant_sees_no_messages() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let server = start(&db, |_| {}).await;
    let mut client = connect(&server).await;
    assert_eq!(exchange(&mut client, &adt("LAB", "T1")).await.code, "AA");
    assert_eq!(count(&db.app, server.tenant_id, "true").await, 1);
    let other = TenantId::new_unchecked(Uuid::now_v7());
    assert_eq!(count(&db.app, other, "true").await, 0);
}

#[tokio::test]
async fn a_message_whose_commit_fails_gets_no_ack_and_its_resend_is_stored_once() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let server = start(&db, |_| {}).await;
    sqlx::query("REVOKE INSERT ON ingest.messages FROM tenet_app")
        .execute(&db.admin)
        .await
        .unwrap();
    let mut client = connect(&server).await;
    client.send(adt("LAB", "F1").as_bytes()).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), client.next())
        .await
        .expect("the server answers or closes within 10 s");
    assert!(
        matches!(next, None | Some(Err(_))),
        "no ACK for an uncommitted message"
    );
    sqlx::query("GRANT INSERT ON ingest.messages TO tenet_app")
        .execute(&db.admin)
        .await
        .unwrap();
    let mut client = connect(&server).await;
    assert_eq!(exchange(&mut client, &adt("LAB", "F1")).await.code, "AA");
    assert_eq!(exchange(&mut client, &adt("LAB", "F1")).await.code, "AA");
    assert_eq!(
        count(&db.app, server.tenant_id, "control_id = 'F1'").await,
        1
    );
}

#[tokio::test]
async fn a_raw_message_is_stored_sealed_and_opens_only_for_its_own_row() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let server = start(&db, |_| {}).await;
    let mut client = connect(&server).await;
    let message = adt("LAB", "SEALED1");
    assert_eq!(exchange(&mut client, &message).await.code, "AA");
    assert_eq!(
        exchange(&mut client, &adt("LAB", "SEALED2")).await.code,
        "AA"
    );

    // What an attacker with the disk sees: no patient name anywhere in the table.
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ingest.messages WHERE position('DOE^JANE'::bytea IN raw_sealed) > 0
            OR position('12345'::bytea IN raw_sealed) > 0",
    )
    .fetch_one(&db.admin)
    .await
    .unwrap();
    assert_eq!(leaked, 0, "a raw message is stored in plaintext");

    let rows: Vec<(Uuid, Uuid, Vec<u8>)> = sqlx::query_as(
        "SELECT id, data_key_id, raw_sealed FROM ingest.messages
         WHERE tenant_id = $1 ORDER BY control_id",
    )
    .bind(server.tenant_id.as_uuid())
    .fetch_all(&db.admin)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    let mut tx = TenantTx::begin_as(&db.app, server.tenant_id, "system", None)
        .await
        .unwrap();
    let data_key = server.keyring.key(&mut tx, rows[0].1).await.unwrap();
    tx.rollback().await.unwrap();
    let opened = open_raw(&data_key, server.tenant_id, rows[0].0, &rows[0].2)
        .expect("the message's own row opens");
    assert_eq!(opened, message.as_bytes());
    // Moved to another message, or to another tenant, it does not open.
    assert!(open_raw(&data_key, server.tenant_id, rows[1].0, &rows[0].2).is_none());
    assert!(open_raw(&data_key, TenantId::generate(), rows[0].0, &rows[0].2).is_none());
}
