//! The log refuses change before verification ever has to find it: the service role
//! has no UPDATE, DELETE or TRUNCATE privilege, and a trigger refuses them for the
//! roles that do (the owner, a superuser who has not disabled it).

use audit::CheckpointKey;
use db::TenantTx;
use kernel::TenantId;
use sqlx::PgPool;

use crate::{append_events, checkpoint, create_tenant, database, problems};

/// The statements an attacker tries, on `table`.
fn changes(table: &str) -> [String; 3] {
    [
        format!("UPDATE {table} SET tenant_id = tenant_id"),
        format!("DELETE FROM {table}"),
        format!("TRUNCATE {table}"),
    ]
}

/// Runs `sql` in a transaction of `tenant_id` on `pool` (so row-level security lets
/// the rows through and the row triggers fire), and returns the SQLSTATE and message
/// it failed with.
async fn refusal(pool: &PgPool, tenant_id: TenantId, sql: &str) -> (String, String) {
    let mut tx = TenantTx::begin_as(pool, tenant_id, "system", None)
        .await
        .unwrap();
    let err = sqlx::raw_sql(sql)
        .execute(&mut *tx)
        .await
        .expect_err(&format!("`{sql}` must be refused"));
    tx.rollback().await.unwrap();
    let err = err.into_database_error().expect("a database error");
    (
        err.code().expect("an SQLSTATE").into_owned(),
        err.message().to_owned(),
    )
}

#[tokio::test]
async fn the_owner_and_the_superuser_are_refused_update_delete_and_truncate_by_the_trigger() {
    let db = database().await;
    let tenant_id = create_tenant(&db, "Clinic").await;
    let key = CheckpointKey::generate();
    append_events(&db, tenant_id, 10).await;
    checkpoint(&db, tenant_id, &key).await;

    for (role, pool) in [("owner", &db.owner), ("superuser", &db.admin)] {
        for table in ["audit.events", "audit.checkpoints"] {
            for sql in changes(table) {
                let (code, message) = refusal(pool, tenant_id, &sql).await;
                assert_eq!(code, "42501", "{role}: `{sql}`: {message}");
                assert!(
                    message.contains("append-only"),
                    "{role}: `{sql}` is refused by the trigger, not by chance: {message}"
                );
            }
        }
    }

    let n_events: i64 = sqlx::query_scalar("SELECT count(*) FROM audit.events")
        .fetch_one(&db.admin)
        .await
        .unwrap();
    assert_eq!(n_events, 10);
    assert_eq!(problems(&db, tenant_id, &key).await, vec![]);
}

#[tokio::test]
async fn the_service_role_has_no_privilege_to_update_delete_or_truncate() {
    let db = database().await;
    let tenant_id = create_tenant(&db, "Clinic").await;
    let key = CheckpointKey::generate();
    append_events(&db, tenant_id, 10).await;
    checkpoint(&db, tenant_id, &key).await;

    for table in ["audit.events", "audit.checkpoints"] {
        for sql in changes(table) {
            let (code, message) = refusal(&db.app, tenant_id, &sql).await;
            assert_eq!(code, "42501", "`{sql}`: {message}");
            assert!(
                message.contains("permission denied"),
                "`{sql}` is refused by the grants: {message}"
            );
        }
    }
    assert_eq!(problems(&db, tenant_id, &key).await, vec![]);
}
