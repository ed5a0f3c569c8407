//! The embedded cluster's life cycle and the tenant context, against real PostgreSQL.

use db::cluster::{Cluster, SUPERUSER, Startup};
use db::roles::{APP_ROLE, OWNER_ROLE, ensure_database, ensure_roles};
use sqlx::postgres::PgPoolOptions;

fn scratch_home(name: &str) -> std::path::PathBuf {
    let home = std::env::temp_dir().join(format!("tenet-db-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    home
}

#[tokio::test]
async fn a_cluster_initialises_once_then_restarts_with_its_data() {
    let home = scratch_home("lifecycle");
    let mut cluster = Cluster::at(&home).unwrap().non_durable();
    assert_eq!(
        cluster.ensure_running().await.unwrap(),
        Startup::Initialized
    );
    assert_eq!(
        cluster.ensure_running().await.unwrap(),
        Startup::AlreadyRunning
    );

    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(cluster.connect_options(SUPERUSER, "postgres"))
        .await
        .unwrap();
    ensure_roles(&admin).await.unwrap();
    assert!(ensure_database(&admin, "kept", None).await.unwrap());
    assert!(
        !ensure_database(&admin, "kept", None).await.unwrap(),
        "a second ensure is a no-op"
    );
    // The service role is what the issue says: no superuser, no BYPASSRLS, owns nothing.
    let (superuser, bypass): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1")
            .bind(APP_ROLE)
            .fetch_one(&admin)
            .await
            .unwrap();
    assert!(!superuser && !bypass);
    admin.close().await;

    cluster.stop().await.unwrap();
    assert!(!cluster.is_running().await.unwrap());
    assert_eq!(cluster.ensure_running().await.unwrap(), Startup::Started);
    let owner = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(cluster.connect_options(OWNER_ROLE, "kept"))
        .await
        .expect("the database made before the restart is still there");
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&owner)
        .await
        .unwrap();
    assert_eq!(one, 1);
    owner.close().await;
    cluster.stop().await.unwrap();
    std::fs::remove_dir_all(&home).unwrap();
}

#[tokio::test]
async fn a_directory_that_is_not_a_data_directory_is_refused_not_wiped() {
    let home = scratch_home("foreign");
    std::fs::create_dir_all(home.join("pgdata")).unwrap();
    std::fs::write(home.join("pgdata/precious.txt"), "keep me").unwrap();
    let mut cluster = Cluster::at(&home).unwrap();
    let err = cluster.ensure_running().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("is not a PostgreSQL data directory"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(home.join("pgdata/precious.txt")).unwrap(),
        "keep me"
    );
    std::fs::remove_dir_all(&home).unwrap();
}

#[tokio::test]
async fn the_tenant_setting_lives_only_as_long_as_its_transaction() {
    let home = scratch_home("setting");
    let mut cluster = Cluster::at(&home).unwrap().non_durable();
    cluster.ensure_running().await.unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(cluster.connect_options(SUPERUSER, "postgres"))
        .await
        .unwrap();
    let tenant_id = kernel::TenantId::generate();
    let mut tx = db::TenantTx::begin_as(&pool, tenant_id, "user:x", None)
        .await
        .unwrap();
    let inside: String = sqlx::query_scalar("SELECT current_setting('tenet.tenant_id', true)")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(inside, tenant_id.to_string());
    tx.commit().await.unwrap();
    // An actor name is data, never SQL: a quote in it is stored as written.
    let tricky = "user:o'brien'); SELECT pg_sleep(10); --";
    let mut tx = db::TenantTx::begin_as(&pool, tenant_id, tricky, None)
        .await
        .unwrap();
    let actor: String = sqlx::query_scalar("SELECT current_setting('tenet.actor', true)")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(actor, tricky);
    tx.rollback().await.unwrap();
    // Same (only) connection, next statement: the setting is gone.
    let after: Option<String> =
        sqlx::query_scalar("SELECT nullif(current_setting('tenet.tenant_id', true), '')")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(after, None);
    pool.close().await;
    cluster.stop().await.unwrap();
    std::fs::remove_dir_all(&home).unwrap();
}

#[tokio::test]
async fn a_fresh_handle_sees_and_stops_a_cluster_another_process_started() {
    // Regression: as root, `pg_ctl status` from a handle that had not started the
    // cluster ran as root, was refused, and read as "not running", so `tenet db stop`
    // left the cluster up.
    let home = scratch_home("fresh-handle");
    let mut starter = Cluster::at(&home).unwrap().non_durable();
    starter.ensure_running().await.unwrap();
    let fresh = Cluster::at(&home).unwrap();
    assert!(
        fresh.is_running().await.unwrap(),
        "a running cluster reads as running"
    );
    fresh.stop().await.unwrap();
    assert!(
        !starter.is_running().await.unwrap(),
        "stop through the fresh handle stopped it"
    );
    std::fs::remove_dir_all(&home).unwrap();
}

#[tokio::test]
async fn a_running_cluster_whose_socket_was_removed_is_restarted_and_reachable() {
    let home = scratch_home("lost-socket");
    let mut cluster = Cluster::at(&home).unwrap().non_durable();
    cluster.ensure_running().await.unwrap();
    std::fs::remove_file(cluster.socket_dir().join(".s.PGSQL.5432")).unwrap();
    assert_eq!(cluster.ensure_running().await.unwrap(), Startup::Started);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(cluster.connect_options(SUPERUSER, "postgres"))
        .await
        .expect("the socket is back");
    pool.close().await;
    cluster.stop().await.unwrap();
    std::fs::remove_dir_all(&home).unwrap();
}
