//! Tenants: one clinic or organisation each, kept apart by row-level security.
//!
//! A tenant is created in one transaction together with its first data key and its
//! audit chain, so a tenant never exists without them. The transaction's tenant is
//! the new tenant itself: the insert passes the same RLS check as every other row.

use db::TenantTx;
use kernel::TenantId;
use sqlx::PgPool;

use crate::keyring::{Keyring, KeyringError};

#[derive(Debug, thiserror::Error)]
pub enum CreateTenantError {
    #[error("a tenant name is 1 to 200 characters")]
    InvalidName,
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error("creating the tenant")]
    Database(#[from] sqlx::Error),
}

/// A tenant as listed to operators.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub tenant_id: TenantId,
    pub name: String,
}

/// Creates a tenant named `name`.
pub async fn create(
    pool: &PgPool,
    keyring: &Keyring,
    name: &str,
) -> Result<TenantId, CreateTenantError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(CreateTenantError::InvalidName);
    }
    let tenant_id = TenantId::generate();
    let mut tx = TenantTx::begin_as(pool, tenant_id, "system", None).await?;
    sqlx::query("INSERT INTO identity.tenants (tenant_id, name) VALUES ($1, $2)")
        .bind(tenant_id.as_uuid())
        .bind(name)
        .execute(&mut *tx)
        .await?;
    keyring.create_data_key(&mut tx).await?;
    audit::init_tenant_chain(&mut tx).await?;
    tx.commit().await?;
    Ok(tenant_id)
}

/// Every tenant. Needs the owner's pool: only the owner's directory policy sees
/// across tenants.
pub async fn list_all(owner: &PgPool) -> Result<Vec<Tenant>, sqlx::Error> {
    let rows: Vec<(uuid::Uuid, String)> = sqlx::query_as(
        "SELECT tenant_id, name FROM identity.tenants ORDER BY created_at, tenant_id",
    )
    .fetch_all(owner)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(tenant_id, name)| Tenant {
            tenant_id: TenantId::new_unchecked(tenant_id),
            name,
        })
        .collect())
}

/// Whether the transaction's tenant exists and is active.
pub async fn is_active(tx: &mut TenantTx) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM identity.tenants WHERE tenant_id = $1 AND status = 'active')",
    )
    .bind(tx.tenant_id().as_uuid())
    .fetch_one(&mut **tx)
    .await
}
