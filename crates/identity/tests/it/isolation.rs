//! Invariant I1 at the SQL level: the service role never reads or writes another
//! tenant's rows, whatever it tries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use db::TenantTx;
use kernel::{PatientId, TenantId, UserId};
use sqlx::postgres::PgPoolOptions;

use crate::support::{self, database, demographics, keyring};

#[tokio::test]
async fn the_service_role_with_no_tenant_set_sees_no_row_of_any_table() {
    let db = database().await;
    let keyring = keyring();
    for name in ["A", "B"] {
        let tenant_id = identity::tenant::create(&db.app, &keyring, name)
            .await
            .unwrap();
        support::patient(&db, &keyring, tenant_id, &demographics("Rivera", "MRN1")).await;
    }
    let tables = support::context_tables(&db).await;
    assert!(
        tables.len() >= 15,
        "expected every context table, got {tables:?}"
    );
    for table in &tables {
        let n_superuser: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&db.admin)
            .await
            .unwrap();
        let n_app: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&db.app)
            .await
            .unwrap();
        assert_eq!(
            n_app, 0,
            "{table}: the service role saw rows without a tenant"
        );
        // An empty setting, as a pooled connection has after a transaction, is no tenant either.
        let mut tx = db.app.begin().await.unwrap();
        sqlx::query("SELECT set_config('tenet.tenant_id', '', true)")
            .execute(&mut *tx)
            .await
            .unwrap();
        let n_empty: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(n_empty, 0, "{table}: an empty tenant setting matched rows");
        if [
            "identity.tenants",
            "identity.patient_phi",
            "clinical.patients",
            "audit.events",
        ]
        .contains(&table.as_str())
        {
            assert!(n_superuser > 0, "{table} should hold fixture rows");
        }
    }
}

#[tokio::test]
async fn with_tenant_a_set_each_table_shows_only_tenant_a_rows() {
    let db = database().await;
    let keyring = keyring();
    let a = identity::tenant::create(&db.app, &keyring, "A")
        .await
        .unwrap();
    let b = identity::tenant::create(&db.app, &keyring, "B")
        .await
        .unwrap();
    support::patient(&db, &keyring, a, &demographics("Rivera", "MRN1")).await;
    support::patient(&db, &keyring, b, &demographics("Okafor", "MRN1")).await;
    for table in support::context_tables(&db).await {
        let mut tx = TenantTx::begin_as(&db.app, a, "system", None)
            .await
            .unwrap();
        let foreign: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {table} WHERE tenant_id <> $1"
        ))
        .bind(a.as_uuid())
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        assert_eq!(foreign, 0, "{table}: tenant A saw another tenant's rows");
    }
}

/// The error a write gets, as (SQLSTATE, constraint).
fn failure(err: sqlx::Error) -> (String, Option<String>) {
    match err {
        sqlx::Error::Database(e) => (
            e.code().unwrap_or_default().into_owned(),
            e.constraint().map(str::to_owned),
        ),
        other => panic!("expected a database error, got {other:?}"),
    }
}

#[tokio::test]
async fn referencing_another_tenants_patient_fails_exactly_like_a_nonexistent_one() {
    let db = database().await;
    let keyring = keyring();
    let a = identity::tenant::create(&db.app, &keyring, "A")
        .await
        .unwrap();
    let b = identity::tenant::create(&db.app, &keyring, "B")
        .await
        .unwrap();
    let b_patient = support::patient(&db, &keyring, b, &demographics("Okafor", "MRN9")).await;
    let mut tx = TenantTx::begin_as(&db.app, a, "system", None)
        .await
        .unwrap();
    let a_user = identity::user::create(&mut tx, "dr-a", kernel::Role::Clinician, None)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // Two writes that name a patient: a care-team membership (clinical) and a
    // break-glass grant (identity). Each is tried with B's patient and with an id
    // that exists nowhere; the failures must be indistinguishable.
    async fn care_team(
        db: &db::testing::TestDb,
        a: TenantId,
        patient: PatientId,
        user: UserId,
    ) -> (String, Option<String>) {
        let mut tx = TenantTx::begin_as(&db.app, a, "system", None)
            .await
            .unwrap();
        let err = sqlx::query("INSERT INTO clinical.care_team_members (tenant_id, patient_id, user_id) VALUES ($1, $2, $3)")
            .bind(a.as_uuid())
            .bind(patient.as_uuid())
            .bind(user.as_uuid())
            .execute(&mut *tx)
            .await
            .unwrap_err();
        failure(err)
    }
    async fn grant(
        db: &db::testing::TestDb,
        a: TenantId,
        patient: PatientId,
        user: UserId,
    ) -> (String, Option<String>) {
        let mut tx = TenantTx::begin_as(&db.app, a, "system", None)
            .await
            .unwrap();
        let err = identity::break_glass::open(
            &mut tx,
            user,
            patient,
            "emergency department arrival",
            600,
        )
        .await
        .unwrap_err();
        match err {
            identity::break_glass::BreakGlassError::Database(e) => failure(e),
            other => panic!("expected a database error, got {other:?}"),
        }
    }
    let nowhere = PatientId::generate();
    let via_b = care_team(&db, a, b_patient, a_user).await;
    assert_eq!(
        via_b.0, "23503",
        "a foreign-key violation, not a permission error"
    );
    assert_eq!(via_b, care_team(&db, a, nowhere, a_user).await);
    let via_b = grant(&db, a, b_patient, a_user).await;
    assert_eq!(via_b.0, "23503");
    assert_eq!(via_b, grant(&db, a, nowhere, a_user).await);
    // And the clinical context's own lookup says "no such patient" for both.
    let mut tx = TenantTx::begin_as(&db.app, a, "system", None)
        .await
        .unwrap();
    assert!(
        clinical::patient::get(&mut tx, b_patient)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !clinical::care_team::add(&mut tx, b_patient, a_user)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn the_service_role_cannot_write_a_row_into_another_tenant() {
    let db = database().await;
    let keyring = keyring();
    let a = identity::tenant::create(&db.app, &keyring, "A")
        .await
        .unwrap();
    let b = identity::tenant::create(&db.app, &keyring, "B")
        .await
        .unwrap();
    let mut tx = TenantTx::begin_as(&db.app, a, "system", None)
        .await
        .unwrap();
    let err = sqlx::query("INSERT INTO clinical.patients (tenant_id, id) VALUES ($1, $2)")
        .bind(b.as_uuid())
        .bind(PatientId::generate().as_uuid())
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert_eq!(
        failure(err).0,
        "42501",
        "row-level security refuses the write"
    );
    drop(tx);
    // Updating another tenant's rows silently matches nothing.
    let b_patient = support::patient(&db, &keyring, b, &demographics("Okafor", "M2")).await;
    let mut tx = TenantTx::begin_as(&db.app, a, "system", None)
        .await
        .unwrap();
    let n = sqlx::query("UPDATE clinical.patients SET status = 'inactive' WHERE id = $1")
        .bind(b_patient.as_uuid())
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn a_pooled_connection_carries_no_tenant_into_the_next_transaction() {
    let db = database().await;
    let keyring = keyring();
    let mut tenants = Vec::new();
    for i in 0..12 {
        tenants.push(
            identity::tenant::create(&db.app, &keyring, &format!("T{i}"))
                .await
                .unwrap(),
        );
    }
    // A small pool, so every connection serves many tenants in turn.
    let pool = PgPoolOptions::new()
        .max_connections(3)
        .connect_with(db.config.app.clone())
        .await
        .unwrap();
    let mismatches = Arc::new(AtomicU64::new(0));
    let n_checks = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for worker in 0..16usize {
        let pool = pool.clone();
        let tenants = tenants.clone();
        let mismatches = mismatches.clone();
        let n_checks = n_checks.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..60usize {
                let tenant_id = tenants[(worker * 7 + round) % tenants.len()];
                let mut tx = TenantTx::begin_as(&pool, tenant_id, "system", None).await.unwrap();
                let seen: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT tenant_id FROM identity.tenants")
                    .fetch_all(&mut *tx)
                    .await
                    .unwrap();
                if seen != vec![tenant_id.into_uuid()] {
                    mismatches.fetch_add(1, Ordering::Relaxed);
                }
                if round % 3 == 0 {
                    tx.rollback().await.unwrap();
                } else {
                    tx.commit().await.unwrap();
                }
                // Between tenant transactions, a bare query on the same pool sees nothing.
                let (setting, n_rows): (Option<String>, i64) = sqlx::query_as(
                    "SELECT current_setting('tenet.tenant_id', true), (SELECT count(*) FROM identity.tenants)",
                )
                .fetch_one(&pool)
                .await
                .unwrap();
                if n_rows != 0 || setting.is_some_and(|s| !s.is_empty()) {
                    mismatches.fetch_add(1, Ordering::Relaxed);
                }
                n_checks.fetch_add(2, Ordering::Relaxed);
            }
        }));
    }
    for task in futures::future::join_all(tasks).await {
        task.unwrap();
    }
    assert_eq!(n_checks.load(Ordering::Relaxed), 16 * 60 * 2);
    assert_eq!(
        mismatches.load(Ordering::Relaxed),
        0,
        "a connection leaked a tenant between transactions"
    );
}
