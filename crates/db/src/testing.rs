//! Test support: one throwaway cluster per machine, a fresh database per test.
//!
//! The cluster lives in `$TENET_TEST_PG_HOME` (default: `tenet-test-pg` in the
//! temporary directory), runs without fsync (tests need no durability), and stays up
//! between runs so a second run starts in milliseconds. For each distinct set of
//! migrations a template database is migrated once; each test gets its own database
//! cloned from it, so tests never see each other's rows and can run in parallel.
//!
//! Pools are created per test because every `#[tokio::test]` has its own runtime.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::postgres::PgPoolOptions;
use sqlx::{Executor, PgPool};

use crate::cluster::{Cluster, SUPERUSER};
use crate::roles::{APP_ROLE, OWNER_ROLE, ensure_database, ensure_roles};
use crate::{DatabaseConfig, Migrator};

static PREPARED: Mutex<Vec<String>> = Mutex::new(Vec::new());
static N_DATABASES: AtomicU32 = AtomicU32::new(0);

/// A database of its own for one test, with pools for each role.
pub struct TestDb {
    pub name: String,
    /// The cluster superuser, connected to this test's database: for doing what an
    /// attacker with superuser rights would do, and for inspecting the catalog.
    pub admin: PgPool,
    /// The owner role: migrations and operator commands.
    pub owner: PgPool,
    /// The service role: what requests run as.
    pub app: PgPool,
    pub config: DatabaseConfig,
    pub cluster: Cluster,
}

fn test_home() -> PathBuf {
    std::env::var_os("TENET_TEST_PG_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("tenet-test-pg"))
}

/// Runs `f` while holding a lock shared by every test process on the machine.
async fn with_machine_lock<T>(f: impl AsyncFnOnce() -> T) -> T {
    let home = test_home();
    let lock_path = home.with_extension("lock");
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .expect("opening the test cluster lock file");
    let lock_file = tokio::task::spawn_blocking(move || {
        lock_file.lock().expect("locking the test cluster");
        lock_file
    })
    .await
    .expect("BUG: lock task panicked");
    let result = f().await;
    drop(lock_file);
    result
}

async fn admin_pool(cluster: &Cluster, database: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .connect_with(cluster.connect_options(SUPERUSER, database))
        .await
        .expect("connecting to the test cluster as superuser")
}

impl TestDb {
    /// A fresh database with every migration of `migrator` applied.
    pub async fn migrated(migrator: &Migrator) -> Self {
        let template = format!("tenet_tpl_{}", &migrator.fingerprint()[..16]);
        let mut cluster = Cluster::at(&test_home())
            .expect("locating PostgreSQL binaries")
            .non_durable();
        let prepared = PREPARED.lock().unwrap().contains(&template);
        if !prepared {
            with_machine_lock(async || {
                prepare_cluster(&mut cluster).await;
                let admin = admin_pool(&cluster, "postgres").await;
                let done: Option<bool> =
                    sqlx::query_scalar("SELECT datistemplate FROM pg_database WHERE datname = $1")
                        .bind(&template)
                        .fetch_optional(&admin)
                        .await
                        .unwrap();
                if done != Some(true) {
                    if done.is_some() {
                        // A build that was interrupted: start it again.
                        admin
                            .execute(format!("DROP DATABASE {template}").as_str())
                            .await
                            .unwrap();
                    }
                    ensure_database(&admin, &template, None).await.unwrap();
                    let owner = PgPoolOptions::new()
                        .max_connections(1)
                        .connect_with(cluster.connect_options(OWNER_ROLE, &template))
                        .await
                        .unwrap();
                    migrator
                        .up(&owner)
                        .await
                        .expect("migrating the template database");
                    owner.close().await;
                    admin
                        .execute(format!("ALTER DATABASE {template} IS_TEMPLATE true").as_str())
                        .await
                        .unwrap();
                }
                admin.close().await;
            })
            .await;
            PREPARED.lock().unwrap().push(template.clone());
        } else {
            cluster
                .ensure_running()
                .await
                .expect("starting the test cluster");
        }
        Self::create(cluster, Some(&template)).await
    }

    /// A fresh database with no migrations applied (for testing the migrations).
    pub async fn empty() -> Self {
        let mut cluster = Cluster::at(&test_home())
            .expect("locating PostgreSQL binaries")
            .non_durable();
        with_machine_lock(async || prepare_cluster(&mut cluster).await).await;
        Self::create(cluster, None).await
    }

    async fn create(cluster: Cluster, template: Option<&str>) -> Self {
        let name = format!(
            "tenet_t_{}_{}",
            std::process::id(),
            N_DATABASES.fetch_add(1, Ordering::Relaxed)
        );
        let admin = admin_pool(&cluster, "postgres").await;
        ensure_database(&admin, &name, template)
            .await
            .expect("creating the test database");
        admin.close().await;
        let config = DatabaseConfig {
            owner: cluster.connect_options(OWNER_ROLE, &name),
            app: cluster.connect_options(APP_ROLE, &name),
        };
        let admin = admin_pool(&cluster, &name).await;
        let (owner, app) = config
            .connect(16)
            .await
            .expect("connecting to the test database");
        Self {
            name,
            admin,
            owner,
            app,
            config,
            cluster,
        }
    }
}

/// Starts the shared cluster, creates the roles, and drops databases left behind by
/// test processes that have exited. Called under the machine lock.
async fn prepare_cluster(cluster: &mut Cluster) {
    cluster
        .ensure_running()
        .await
        .expect("starting the test cluster");
    let admin = admin_pool(cluster, "postgres").await;
    ensure_roles(&admin).await.expect("creating the roles");
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'tenet\\_t\\_%'")
            .fetch_all(&admin)
            .await
            .unwrap();
    for name in names {
        let pid = name.split('_').nth(2).unwrap_or_default();
        let alive = PathBuf::from("/proc").join(pid).exists();
        if !alive {
            let _ = admin
                .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                .await;
        }
    }
    admin.close().await;
}
