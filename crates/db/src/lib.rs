//! The database layer every context stands on.
//!
//! - [`cluster`]: a private PostgreSQL cluster run from the installed binaries (the
//!   embedded default of `tenet up`, and the throwaway cluster of the tests).
//! - [`roles`]: the owner role that migrates and the service role that owns nothing.
//! - [`migration`]: embedded, ordered migrations with tested down steps.
//! - [`tenant`]: the per-transaction tenant and actor context that row-level
//!   security reads.
//!
//! This crate must never set the tenant per connection: a pooled connection carries no
//! tenant from one transaction into the next (`set_config(..., true)` only).

pub mod cluster;
pub mod migration;
pub mod roles;
pub mod tenant;
#[cfg(feature = "testing")]
pub mod testing;

pub use migration::{Migration, MigrationError, Migrator};
pub use tenant::{PurposeOfUse, TenantTx};

/// The connection settings Tenet needs: one for the owner (migrations and operator
/// commands) and one for the service role (every request).
#[derive(Clone, Debug)]
pub struct DatabaseConfig {
    pub owner: sqlx::postgres::PgConnectOptions,
    pub app: sqlx::postgres::PgConnectOptions,
}

impl DatabaseConfig {
    /// Both pools, from the two sets of options.
    pub async fn connect(
        &self,
        app_connections_max: u32,
    ) -> Result<(sqlx::PgPool, sqlx::PgPool), sqlx::Error> {
        let owner = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect_with(self.owner.clone())
            .await?;
        let app = sqlx::postgres::PgPoolOptions::new()
            .max_connections(app_connections_max)
            .connect_with(self.app.clone())
            .await?;
        Ok((owner, app))
    }
}
