//! Embedded, ordered migrations with a down step each.
//!
//! Each context crate embeds its own migrations (`include_str!`) and hands them to
//! the [`Migrator`] as [`Migration`] values; the binary decides the order of contexts.
//! Every migration runs in its own transaction as the owner role and is recorded in
//! `public.tenet_schema_migrations` with a checksum, so an edited migration that was
//! already applied is refused rather than silently diverging.
//!
//! This module must never run a migration as the service role.

use sha2::{Digest, Sha256};
use sqlx::{Connection, Executor, PgPool};

/// One schema change, with the SQL that undoes it.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Global order across contexts: `YYYYMMDDNN`.
    pub version: i64,
    /// The context (schema) that owns it.
    pub context: &'static str,
    pub name: &'static str,
    pub up: &'static str,
    pub down: &'static str,
}

impl Migration {
    fn checksum(&self) -> Vec<u8> {
        Sha256::digest(self.up.as_bytes()).to_vec()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(
        "migration {version} ({name}) was changed after it was applied; write a new migration instead"
    )]
    Edited { version: i64, name: String },
    #[error("the database has migration {version}, which this build does not know; upgrade Tenet")]
    Unknown { version: i64 },
    #[error("migration {version} ({name}) failed")]
    Failed {
        version: i64,
        name: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("reading the migration ledger")]
    Ledger(#[source] sqlx::Error),
}

/// What `status` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    pub applied: Vec<i64>,
    pub pending: Vec<i64>,
}

impl MigrationStatus {
    pub fn is_current(&self) -> bool {
        self.pending.is_empty()
    }
}

/// Applies and reverts a fixed, ordered set of migrations.
#[derive(Debug, Clone)]
pub struct Migrator {
    migrations: Vec<Migration>,
}

const LEDGER: &str = "CREATE TABLE IF NOT EXISTS public.tenet_schema_migrations (
    version bigint PRIMARY KEY,
    context text NOT NULL,
    name text NOT NULL,
    checksum bytea NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT ON public.tenet_schema_migrations TO tenet_app";

impl Migrator {
    /// Panics on a wiring mistake: duplicate versions.
    pub fn new(mut migrations: Vec<Migration>) -> Self {
        migrations.sort_by_key(|migration| migration.version);
        for pair in migrations.windows(2) {
            assert!(
                pair[0].version != pair[1].version,
                "BUG: two migrations share version {}",
                pair[0].version
            );
        }
        Self { migrations }
    }

    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    /// A digest of every migration, naming a template database built from exactly them.
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        for migration in &self.migrations {
            hasher.update(migration.version.to_be_bytes());
            hasher.update(migration.up.as_bytes());
            hasher.update(migration.down.as_bytes());
        }
        hex::encode(hasher.finalize())
    }

    async fn applied(&self, owner: &PgPool) -> Result<Vec<(i64, Vec<u8>)>, MigrationError> {
        sqlx::raw_sql(LEDGER)
            .execute(owner)
            .await
            .map_err(MigrationError::Ledger)?;
        sqlx::query_as(
            "SELECT version, checksum FROM public.tenet_schema_migrations ORDER BY version",
        )
        .fetch_all(owner)
        .await
        .map_err(MigrationError::Ledger)
    }

    pub async fn status(&self, owner: &PgPool) -> Result<MigrationStatus, MigrationError> {
        let applied = self.applied(owner).await?;
        let applied_versions: Vec<i64> = applied.iter().map(|(version, _)| *version).collect();
        let pending = self
            .migrations
            .iter()
            .map(|migration| migration.version)
            .filter(|version| !applied_versions.contains(version))
            .collect();
        Ok(MigrationStatus {
            applied: applied_versions,
            pending,
        })
    }

    /// Applies every pending migration in order; returns how many ran.
    pub async fn up(&self, owner: &PgPool) -> Result<usize, MigrationError> {
        let applied = self.applied(owner).await?;
        for (version, checksum) in &applied {
            match self.migrations.iter().find(|m| m.version == *version) {
                None => return Err(MigrationError::Unknown { version: *version }),
                Some(migration) if &migration.checksum() != checksum => {
                    return Err(MigrationError::Edited {
                        version: *version,
                        name: migration.name.to_owned(),
                    });
                }
                Some(_) => {}
            }
        }
        let mut n_applied = 0;
        for migration in &self.migrations {
            if applied
                .iter()
                .any(|(version, _)| *version == migration.version)
            {
                continue;
            }
            let failed = |source| MigrationError::Failed {
                version: migration.version,
                name: migration.name,
                source,
            };
            let mut conn = owner.acquire().await.map_err(failed)?;
            let mut tx = conn.begin().await.map_err(failed)?;
            // A lock per database, so two nodes starting at once do not both migrate.
            tx.execute("SELECT pg_advisory_xact_lock(7346020001)")
                .await
                .map_err(failed)?;
            let already: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM public.tenet_schema_migrations WHERE version = $1)",
            )
            .bind(migration.version)
            .fetch_one(&mut *tx)
            .await
            .map_err(failed)?;
            if already {
                continue;
            }
            sqlx::raw_sql(migration.up)
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
            sqlx::query(
                "INSERT INTO public.tenet_schema_migrations (version, context, name, checksum) VALUES ($1, $2, $3, $4)",
            )
            .bind(migration.version)
            .bind(migration.context)
            .bind(migration.name)
            .bind(migration.checksum())
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            tracing::info!(
                version = migration.version,
                context = migration.context,
                name = migration.name,
                "migration applied"
            );
            n_applied += 1;
        }
        Ok(n_applied)
    }

    /// Reverts the newest `steps` applied migrations; returns how many were reverted.
    pub async fn down(&self, owner: &PgPool, steps: usize) -> Result<usize, MigrationError> {
        let applied = self.applied(owner).await?;
        let mut n_reverted = 0;
        for (version, _) in applied.iter().rev().take(steps) {
            let migration = self
                .migrations
                .iter()
                .find(|m| m.version == *version)
                .ok_or(MigrationError::Unknown { version: *version })?;
            let failed = |source| MigrationError::Failed {
                version: migration.version,
                name: migration.name,
                source,
            };
            let mut conn = owner.acquire().await.map_err(failed)?;
            let mut tx = conn.begin().await.map_err(failed)?;
            tx.execute("SELECT pg_advisory_xact_lock(7346020001)")
                .await
                .map_err(failed)?;
            sqlx::raw_sql(migration.down)
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
            sqlx::query("DELETE FROM public.tenet_schema_migrations WHERE version = $1")
                .bind(migration.version)
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            tracing::info!(
                version = migration.version,
                name = migration.name,
                "migration reverted"
            );
            n_reverted += 1;
        }
        Ok(n_reverted)
    }
}
