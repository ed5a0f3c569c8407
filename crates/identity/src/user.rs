//! Users: the people and systems of a tenant, each with one role.

use db::TenantTx;
use kernel::{Role, UserId};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    #[error("a user handle is 1 to 200 characters")]
    InvalidHandle,
    #[error("the handle is already taken in this tenant")]
    HandleTaken,
    #[error("the OIDC subject is already mapped to another user of this tenant")]
    SubjectTaken,
    #[error("creating the user")]
    Database(#[from] sqlx::Error),
}

/// A user of one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub handle: String,
    pub role: Role,
    pub active: bool,
}

/// Creates a user in the transaction's tenant.
pub async fn create(
    tx: &mut TenantTx,
    handle: &str,
    role: Role,
    oidc_subject: Option<&str>,
) -> Result<UserId, CreateUserError> {
    let handle = handle.trim();
    if handle.is_empty() || handle.chars().count() > 200 {
        return Err(CreateUserError::InvalidHandle);
    }
    let user_id = UserId::generate();
    sqlx::query(
        "INSERT INTO identity.users (tenant_id, id, handle, role, oidc_subject) VALUES ($1, $2, $3, $4::identity.role, $5)",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(user_id.as_uuid())
    .bind(handle)
    .bind(role.as_str())
    .bind(oidc_subject)
    .execute(&mut **tx)
    .await
    .map_err(|err| match crate::violated_constraint(&err) {
        Some("users_tenant_id_handle_key") => CreateUserError::HandleTaken,
        Some("users_tenant_id_oidc_subject_key") => CreateUserError::SubjectTaken,
        _ => CreateUserError::Database(err),
    })?;
    Ok(user_id)
}

/// A `users` row as [`SELECT_USERS`] selects it.
type UserRow = (Uuid, String, String, bool);

const SELECT_USERS: &str =
    "SELECT id, handle, role::text, status = 'active' FROM identity.users WHERE tenant_id = $1";

fn user_of((id, handle, role, active): UserRow) -> User {
    User {
        id: UserId::new_unchecked(id),
        handle,
        role: role
            .parse()
            .expect("BUG: identity.role enum and kernel::Role disagree"),
        active,
    }
}

/// The user an OIDC subject is mapped to in the transaction's tenant.
pub async fn find_by_subject(
    tx: &mut TenantTx,
    subject: &str,
) -> Result<Option<User>, sqlx::Error> {
    let row: Option<UserRow> = sqlx::query_as(&format!("{SELECT_USERS} AND oidc_subject = $2"))
        .bind(tx.tenant_id().as_uuid())
        .bind(subject)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.map(user_of))
}

/// A user of the transaction's tenant by id.
pub async fn get(tx: &mut TenantTx, user_id: UserId) -> Result<Option<User>, sqlx::Error> {
    let row: Option<UserRow> = sqlx::query_as(&format!("{SELECT_USERS} AND id = $2"))
        .bind(tx.tenant_id().as_uuid())
        .bind(user_id.as_uuid())
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.map(user_of))
}

/// Every user of the transaction's tenant.
pub async fn list(tx: &mut TenantTx) -> Result<Vec<User>, sqlx::Error> {
    let rows: Vec<UserRow> = sqlx::query_as(&format!("{SELECT_USERS} ORDER BY handle"))
        .bind(tx.tenant_id().as_uuid())
        .fetch_all(&mut **tx)
        .await?;
    Ok(rows.into_iter().map(user_of).collect())
}
