//! The co-signature rule: where the tenant requires it, a signed note is complete
//! only once a supervisor who neither wrote nor signed it co-signs.

use kernel::UserId;
use notes::note::{self, NoteError};
use notes::{Status, listing, settings};
use time::{Duration, OffsetDateTime};

use crate::world;

#[tokio::test]
async fn a_note_is_complete_only_once_a_supervisor_other_than_its_author_cosigns() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let author_id = UserId::generate();
    let supervisor_id = UserId::generate();
    let colleague_id = UserId::generate();
    let mut tx = world.tx(tenant_id).await;
    settings::configure(
        &mut tx,
        &settings::Settings {
            cosign_required: true,
            late_after_minutes: 60,
        },
    )
    .await
    .unwrap();
    settings::add_supervisor(&mut tx, supervisor_id)
        .await
        .unwrap();
    // The author is a supervisor too: still not for their own note.
    settings::add_supervisor(&mut tx, author_id).await.unwrap();
    tx.commit().await.unwrap();

    let signed = world.signed(tenant_id, author_id).await;
    assert!(signed.state().cosign_required);
    assert!(!signed.is_complete());

    let mut tx = world.tx(tenant_id).await;
    let summaries = listing::for_patient(&mut tx, signed.header().patient_id)
        .await
        .unwrap();
    assert_eq!(summaries[0].status, Status::AwaitingCosign);
    // Awaiting its co-signature past the deadline, it is late.
    let late = listing::late(&mut tx, OffsetDateTime::now_utc() + Duration::hours(2))
        .await
        .unwrap();
    assert_eq!(late.len(), 1);
    assert!(matches!(
        signed.clone().cosign(&mut tx, author_id).await,
        Err(NoteError::OwnNote)
    ));
    assert!(matches!(
        signed.clone().cosign(&mut tx, colleague_id).await,
        Err(NoteError::NotSupervisor)
    ));
    let cosigned = signed.clone().cosign(&mut tx, supervisor_id).await.unwrap();
    assert!(cosigned.is_complete());
    tx.commit().await.unwrap();

    let mut tx = world.tx(tenant_id).await;
    let again = note::load_signed(&mut tx, &world.keyring, signed.id())
        .await
        .unwrap();
    assert_eq!(
        again.state().cosignature.as_ref().unwrap().by,
        supervisor_id
    );
    assert!(matches!(
        again.cosign(&mut tx, supervisor_id).await,
        Err(NoteError::AlreadyCosigned)
    ));
    // The stale in-memory copy cannot co-sign a second time either: the row says no.
    settings::add_supervisor(&mut tx, colleague_id)
        .await
        .unwrap();
    assert!(matches!(
        signed.cosign(&mut tx, colleague_id).await,
        Err(NoteError::AlreadyCosigned)
    ));
    tx.rollback().await.unwrap();

    let mut tx = world.tx(tenant_id).await;
    let summaries = listing::for_patient(&mut tx, cosigned.header().patient_id)
        .await
        .unwrap();
    assert_eq!(summaries[0].status, Status::Complete);
}

#[tokio::test]
async fn a_note_signed_before_the_rule_keeps_the_rule_it_was_signed_under() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let author_id = UserId::generate();
    let before = world.signed(tenant_id, author_id).await;
    let mut tx = world.tx(tenant_id).await;
    settings::configure(
        &mut tx,
        &settings::Settings {
            cosign_required: true,
            ..settings::Settings::default()
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let after = world.signed(tenant_id, author_id).await;
    assert!(before.is_complete());
    assert!(!after.is_complete());
}
