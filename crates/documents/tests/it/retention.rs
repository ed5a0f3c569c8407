//! Retention: the lifecycle pass deletes exactly what expired, nothing under legal
//! hold, nothing of a patient still in care, audits each deletion, and removes
//! orphaned objects.

use documents::document::{self, DeleteError, DeletionReason};
use documents::lifecycle;
use documents::retention::{self, Anchor, HoldError, RetentionRule};
use documents::{Category, Status};
use time::{Duration, OffsetDateTime};

use crate::world;

#[tokio::test]
async fn the_lifecycle_deletes_exactly_what_expired_and_nothing_on_hold() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let other_id = world.tenant("Other clinic").await;
    let patient_id = world.patient(tenant_id).await;
    let seen_again = world.patient(tenant_id).await;
    let in_care = world.patient(tenant_id).await;
    let now = OffsetDateTime::now_utc();

    // Correspondence: 30 days after creation. Intake: 30 days after the last encounter.
    // Lab results: 400 days after creation. Imaging: no rule, kept for ever.
    let mut tx = world.tx(tenant_id).await;
    for (category, anchor, keep_days) in [
        (Category::Correspondence, Anchor::Created, 30),
        (Category::IntakeForm, Anchor::LastEncounter, 30),
        (Category::LabResult, Anchor::Created, 400),
    ] {
        retention::set_rule(
            &mut tx,
            RetentionRule {
                category,
                anchor,
                keep_days,
            },
        )
        .await
        .unwrap();
    }
    // `seen_again` had an encounter that ended 80 days from now; `in_care` has one open.
    clinical::encounter::start(
        &mut tx,
        seen_again,
        Some("O"),
        Some(now + Duration::days(79)),
    )
    .await
    .unwrap();
    clinical::encounter::finish_latest(&mut tx, seen_again, Some(now + Duration::days(80)))
        .await
        .unwrap();
    clinical::encounter::start(&mut tx, in_care, Some("I"), Some(now))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let letter = world
        .stored(tenant_id, patient_id, Category::Correspondence, "letter")
        .await;
    let held_letter = world
        .stored(tenant_id, patient_id, Category::Correspondence, "held")
        .await;
    let intake = world
        .stored(tenant_id, patient_id, Category::IntakeForm, "intake")
        .await;
    let intake_seen_again = world
        .stored(tenant_id, seen_again, Category::IntakeForm, "intake 2")
        .await;
    let intake_in_care = world
        .stored(tenant_id, in_care, Category::IntakeForm, "intake 3")
        .await;
    let lab = world
        .stored(tenant_id, patient_id, Category::LabResult, "lab")
        .await;
    let scan = world
        .stored(tenant_id, patient_id, Category::Imaging, "scan")
        .await;
    // Another tenant's expired document is not this tenant's pass's business.
    let mut tx = world.tx(other_id).await;
    retention::set_rule(
        &mut tx,
        RetentionRule {
            category: Category::Correspondence,
            anchor: Anchor::Created,
            keep_days: 1,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let other_patient = world.patient(other_id).await;
    let other_letter = world
        .stored(other_id, other_patient, Category::Correspondence, "theirs")
        .await;

    let mut tx = world.tx(tenant_id).await;
    retention::place_hold(&mut tx, held_letter.id, "Matter 2026-17")
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // 100 days on: the letter and the first intake expired; the held letter too, but it
    // is held; the second intake's anchor is the encounter at +80 days.
    let mut tx = TenantTxSystem::begin(&world, tenant_id).await;
    let report = lifecycle::try_run_once(&mut tx, &world.storage, now + Duration::days(100))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut deleted = report.deleted.clone();
    deleted.sort();
    let mut expected = vec![letter.id, intake.id];
    expected.sort();
    assert_eq!(deleted, expected);
    assert_eq!(report.n_held, 1);
    assert_eq!(report.n_active_patient, 1);

    let mut tx = world.tx(tenant_id).await;
    for (document, status) in [
        (&letter, Status::Deleted),
        (&intake, Status::Deleted),
        (&held_letter, Status::Stored),
        (&intake_seen_again, Status::Stored),
        (&intake_in_care, Status::Stored),
        (&lab, Status::Stored),
        (&scan, Status::Stored),
    ] {
        let now_stored = document::get(&mut tx, document.id).await.unwrap().unwrap();
        assert_eq!(now_stored.status, status, "{:?}", document.category);
        assert_eq!(
            world.object_path(tenant_id, document).exists(),
            status == Status::Stored
        );
        if status == Status::Deleted {
            assert_eq!(
                now_stored.deletion_reason,
                Some(DeletionReason::RetentionExpired)
            );
        }
    }
    drop(tx);
    assert_eq!(
        world
            .audit_actions(tenant_id, &letter)
            .await
            .last()
            .unwrap(),
        &("document.delete".to_owned(), "system".to_owned())
    );
    let mut tx = world.tx(other_id).await;
    assert_eq!(
        document::get(&mut tx, other_letter.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        Status::Stored
    );
    drop(tx);

    // Released, the held letter goes at the next pass; 120 days on, the second intake too.
    let mut tx = world.tx(tenant_id).await;
    retention::release_hold(&mut tx, held_letter.id)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = TenantTxSystem::begin(&world, tenant_id).await;
    let report = lifecycle::try_run_once(&mut tx, &world.storage, now + Duration::days(120))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut deleted = report.deleted;
    deleted.sort();
    let mut expected = vec![held_letter.id, intake_seen_again.id];
    expected.sort();
    assert_eq!(deleted, expected);
    assert_eq!(report.n_held, 0);
}

/// The lifecycle job's transaction: the tenant, acting as the system.
struct TenantTxSystem;

impl TenantTxSystem {
    async fn begin(world: &crate::World, tenant_id: kernel::TenantId) -> db::TenantTx {
        db::TenantTx::begin_as(&world.db.app, tenant_id, "system", None)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_document_on_legal_hold_cannot_be_deleted_until_released() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let patient_id = world.patient(tenant_id).await;
    let document = world
        .stored(tenant_id, patient_id, Category::ConsentForm, "consent")
        .await;
    let mut tx = world.tx(tenant_id).await;
    let held = retention::place_hold(&mut tx, document.id, "Litigation hold 42")
        .await
        .unwrap();
    assert_eq!(held.hold.as_ref().unwrap().reason, "Litigation hold 42");
    assert!(matches!(
        retention::place_hold(&mut tx, document.id, "again").await,
        Err(HoldError::AlreadyHeld)
    ));
    assert!(matches!(
        document::delete(&mut tx, document.id).await,
        Err(DeleteError::OnHold)
    ));
    tx.commit().await.unwrap();
    assert!(world.object_path(tenant_id, &document).exists());

    let mut tx = world.tx(tenant_id).await;
    retention::release_hold(&mut tx, document.id).await.unwrap();
    document::delete(&mut tx, document.id).await.unwrap();
    tx.commit().await.unwrap();
    let actions: Vec<String> = world
        .audit_actions(tenant_id, &document)
        .await
        .into_iter()
        .map(|(action, _)| action)
        .collect();
    assert_eq!(
        actions,
        [
            "document.create",
            "document.hold",
            "document.release",
            "document.delete"
        ]
    );
}

#[tokio::test]
async fn an_object_whose_upload_never_committed_is_removed_once_old_enough() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let patient_id = world.patient(tenant_id).await;
    let kept = world
        .stored(tenant_id, patient_id, Category::Other, "kept")
        .await;
    let mut tx = world.tx(tenant_id).await;
    let orphan = documents::put_bytes(
        &mut tx,
        &world.keyring,
        &world.storage,
        crate::text_document(patient_id, Category::Other),
        bytes::Bytes::from_static(b"never committed"),
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    assert!(world.object_path(tenant_id, &orphan).exists());

    let now = OffsetDateTime::now_utc();
    let mut tx = world.tx(tenant_id).await;
    let young = lifecycle::try_run_once(&mut tx, &world.storage, now)
        .await
        .unwrap();
    assert_eq!(
        young.n_orphans_removed, 0,
        "an upload may still be committing"
    );
    let old = lifecycle::try_run_once(
        &mut tx,
        &world.storage,
        now + lifecycle::ORPHAN_AGE + Duration::minutes(1),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(old.n_orphans_removed, 1);
    assert!(!world.object_path(tenant_id, &orphan).exists());
    assert_eq!(world.read(tenant_id, &kept).await.unwrap(), b"kept");
}
