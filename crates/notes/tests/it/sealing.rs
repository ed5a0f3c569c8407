//! I2 and I3 for note bodies: sealed at rest, bound to their row, never in events,
//! audit details or `Debug`; every read and write audited in its transaction.

use kernel::UserId;
use notes::note::{self, NoteError};

use crate::{CANARY, world};

#[tokio::test]
async fn the_body_is_sealed_at_rest_and_appears_in_no_event_audit_detail_or_debug() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let author_id = UserId::generate();
    let signed = world.signed(tenant_id, author_id).await;
    let mut tx = world.tx(tenant_id).await;
    let read = note::read_chain(&mut tx, &world.keyring, signed.id())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(read.note.content().section("subjective"), Some(CANARY));

    let canary_hits: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM notes.notes n
                  WHERE position(convert_to($1, 'UTF8') IN n.body_sealed) > 0 OR n::text LIKE '%' || $1 || '%')
              + (SELECT count(*) FROM notes.outbox o WHERE o::text LIKE '%' || $1 || '%')
              + (SELECT count(*) FROM audit.events e WHERE e::text LIKE '%' || $1 || '%')",
    )
    .bind("Zqxcanary")
    .fetch_one(&world.db.admin)
    .await
    .unwrap();
    assert_eq!(canary_hits, 0);
    for printed in [format!("{signed:?}"), format!("{read:?}")] {
        assert!(!printed.contains("Zqxcanary"), "{printed}");
    }
}

#[tokio::test]
async fn a_sealed_body_moved_to_another_note_does_not_open() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let author_id = UserId::generate();
    let source = world.draft(tenant_id, author_id, None).await;
    let target = world.draft(tenant_id, author_id, None).await;
    // A superuser copies one draft's ciphertext onto the other.
    sqlx::query(
        "UPDATE notes.notes t SET body_sealed = s.body_sealed FROM notes.notes s
         WHERE s.id = $1 AND t.id = $2",
    )
    .bind(source.id().as_uuid())
    .bind(target.id().as_uuid())
    .execute(&world.db.admin)
    .await
    .unwrap();
    let mut tx = world.tx(tenant_id).await;
    assert!(matches!(
        note::read(&mut tx, &world.keyring, target.id()).await,
        Err(NoteError::Undecryptable)
    ));
}

#[tokio::test]
async fn every_read_and_write_of_a_note_leaves_an_audit_event() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let author_id = UserId::generate();
    let draft = world.draft(tenant_id, author_id, None).await;
    let mut tx = world.tx(tenant_id).await;
    let edited = draft
        .edit(
            &mut tx,
            &world.keyring,
            author_id,
            crate::soap_content("Edited."),
        )
        .await
        .unwrap();
    let signed = edited.sign(&mut tx, author_id).await.unwrap();
    let amendment = signed
        .amend(
            &mut tx,
            &world.keyring,
            author_id,
            crate::soap_content("Corrected.").with_reason("Typo"),
        )
        .await
        .unwrap();
    note::read_chain(&mut tx, &world.keyring, signed.id())
        .await
        .unwrap();
    notes::listing::for_patient(&mut tx, signed.header().patient_id)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let actions: Vec<(String, Option<uuid::Uuid>)> = sqlx::query_as(
        "SELECT action, (details->>'note_id')::uuid FROM audit.events WHERE tenant_id = $1 AND patient_id = $2
         ORDER BY occurred_at, seq",
    )
    .bind(tenant_id.as_uuid())
    .bind(signed.header().patient_id.as_uuid())
    .fetch_all(&world.db.admin)
    .await
    .unwrap();
    let note_id = Some(signed.id().into_uuid());
    let amendment_id = Some(amendment.id().into_uuid());
    assert_eq!(
        actions,
        [
            ("note.create".to_owned(), note_id),
            ("note.update".to_owned(), note_id),
            ("note.sign".to_owned(), note_id),
            ("note.amend".to_owned(), amendment_id),
            ("note.read".to_owned(), note_id),
            ("note.read".to_owned(), amendment_id),
            ("note.list".to_owned(), None),
        ]
    );
}
