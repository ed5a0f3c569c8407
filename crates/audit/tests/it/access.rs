//! The access report: who touched one patient's record, when, what and why.

use audit::AuditEntry;
use db::TenantTx;
use db::testing::TestDb;
use kernel::{PatientId, TenantId};

use crate::{create_tenant, database};

async fn record(db: &TestDb, tenant_id: TenantId, actor: &str, entry: AuditEntry) {
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, actor, None)
        .await
        .unwrap();
    audit::append(&mut tx, entry).await.unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn the_access_report_lists_who_when_what_and_why_newest_first_for_one_patient_of_one_tenant()
{
    let db = database().await;
    let tenant_id = create_tenant(&db, "Clinic").await;
    let other_tenant_id = create_tenant(&db, "Other clinic").await;
    let patient_id = PatientId::generate();
    let other_patient_id = PatientId::generate();

    record(
        &db,
        tenant_id,
        "user:alice",
        AuditEntry::patient("patient.create", patient_id).purpose("treatment"),
    )
    .await;
    record(
        &db,
        tenant_id,
        "user:bob",
        AuditEntry::patient("patient.read", other_patient_id).purpose("treatment"),
    )
    .await;
    record(
        &db,
        tenant_id,
        "api_key:lab",
        AuditEntry::patient("patient.read", patient_id).purpose("operations"),
    )
    .await;
    // The same patient id in another tenant is another tenant's business.
    record(
        &db,
        other_tenant_id,
        "user:mallory",
        AuditEntry::patient("patient.read", patient_id).purpose("treatment"),
    )
    .await;
    record(
        &db,
        tenant_id,
        "user:carol",
        AuditEntry::patient("patient.update", patient_id)
            .purpose("unconscious on arrival")
            .break_glass(true),
    )
    .await;
    record(
        &db,
        tenant_id,
        "system",
        AuditEntry {
            action: "tenant.settings",
            patient_id: None,
            purpose: None,
            break_glass: false,
            details: serde_json::json!({}),
        },
    )
    .await;

    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "user:auditor", None)
        .await
        .unwrap();
    let report = audit::access_log(&mut tx, patient_id, 100).await.unwrap();
    let newest_two = audit::access_log(&mut tx, patient_id, 2).await.unwrap();
    tx.rollback().await.unwrap();

    let lines: Vec<(&str, &str, Option<&str>, bool)> = report
        .iter()
        .map(|entry| {
            (
                entry.actor.as_str(),
                entry.action.as_str(),
                entry.purpose.as_deref(),
                entry.break_glass,
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            (
                "user:carol",
                "patient.update",
                Some("unconscious on arrival"),
                true
            ),
            ("api_key:lab", "patient.read", Some("operations"), false),
            ("user:alice", "patient.create", Some("treatment"), false),
        ]
    );
    assert!(
        report
            .windows(2)
            .all(|pair| pair[0].occurred_at >= pair[1].occurred_at),
        "newest first"
    );
    let now = time::OffsetDateTime::now_utc();
    assert!(
        report
            .iter()
            .all(|entry| (now - entry.occurred_at).abs() < time::Duration::minutes(5)),
        "when it happened"
    );
    assert_eq!(
        newest_two
            .iter()
            .map(|entry| entry.actor.as_str())
            .collect::<Vec<_>>(),
        vec!["user:carol", "api_key:lab"],
        "a limited report keeps the newest"
    );

    let mut tx = TenantTx::begin_as(&db.app, other_tenant_id, "user:auditor", None)
        .await
        .unwrap();
    let other_report = audit::access_log(&mut tx, patient_id, 100).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(
        other_report
            .iter()
            .map(|entry| entry.actor.as_str())
            .collect::<Vec<_>>(),
        vec!["user:mallory"]
    );
}
