//! The two database roles Tenet uses, and the database they share.
//!
//! - [`OWNER_ROLE`] owns every schema, table and type and runs the migrations and the
//!   operator commands.
//! - [`APP_ROLE`] is what `tenet serve` connects as: it owns nothing, is not a
//!   superuser, has `NOBYPASSRLS`, and holds only the grants the migrations give it,
//!   so row-level security applies to every query it makes.
//!
//! Roles are cluster-wide; this module must never grant either role `SUPERUSER`,
//! `BYPASSRLS` or `CREATEROLE`.

use sqlx::{Executor, PgPool};

pub const OWNER_ROLE: &str = "tenet_owner";
pub const APP_ROLE: &str = "tenet_app";

/// Creates the owner and service roles if they do not exist. Needs a connection with
/// `CREATEROLE` (the embedded cluster's superuser, or an operator's role).
pub async fn ensure_roles(admin: &PgPool) -> Result<(), sqlx::Error> {
    // Two concurrent bootstraps (parallel test binaries) may race to create a role;
    // the second sees a unique violation, which is harmless.
    for (role, attributes) in [
        (
            OWNER_ROLE,
            "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE",
        ),
        (
            APP_ROLE,
            "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT",
        ),
    ] {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                .bind(role)
                .fetch_one(admin)
                .await?;
        if !exists {
            match admin
                .execute(format!("CREATE ROLE {role} {attributes}").as_str())
                .await
            {
                Ok(_) => {}
                Err(sqlx::Error::Database(e))
                    if e.code().as_deref() == Some("23505")
                        || e.code().as_deref() == Some("42710") => {}
                Err(e) => return Err(e),
            }
        } else {
            // A role someone altered (say, to BYPASSRLS) is put back on every start.
            admin
                .execute(format!("ALTER ROLE {role} {attributes}").as_str())
                .await?;
        }
    }
    Ok(())
}

/// Creates `database` owned by [`OWNER_ROLE`] if it does not exist, optionally as a
/// copy of `template`, and lets only our two roles connect to it.
pub async fn ensure_database(
    admin: &PgPool,
    database: &str,
    template: Option<&str>,
) -> Result<bool, sqlx::Error> {
    assert!(
        is_identifier(database),
        "BUG: database name {database:?} is not a plain identifier"
    );
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(database)
            .fetch_one(admin)
            .await?;
    if exists {
        return Ok(false);
    }
    let template_clause = match template {
        Some(template) => {
            assert!(
                is_identifier(template),
                "BUG: template name {template:?} is not a plain identifier"
            );
            format!(" TEMPLATE {template}")
        }
        None => " TEMPLATE template0".to_owned(),
    };
    admin
        .execute(format!("CREATE DATABASE {database} OWNER {OWNER_ROLE}{template_clause}").as_str())
        .await?;
    admin
        .execute(format!("REVOKE ALL ON DATABASE {database} FROM PUBLIC").as_str())
        .await?;
    admin
        .execute(
            format!("GRANT CONNECT ON DATABASE {database} TO {APP_ROLE}, {OWNER_ROLE}").as_str(),
        )
        .await?;
    Ok(true)
}

/// Whether `name` is safe to splice into SQL as an identifier.
pub fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
