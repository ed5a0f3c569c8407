//! `tenet tenant|user|apikey ...`: operator management of tenants and principals.

use std::process::ExitCode;

use db::TenantTx;
use identity::keyring::Keyring;
use kernel::{TenantId, UserId};

use crate::cli::{ApiKeyCommand, Global, TenantCommand, UserCommand};
use crate::settings;

#[allow(clippy::print_stdout, reason = "command output")]
pub async fn tenant(global: &Global, command: TenantCommand) -> anyhow::Result<ExitCode> {
    let (owner, app) = super::pools(global).await?;
    match command {
        TenantCommand::Create { name } => {
            let keyring = Keyring::new(settings::master_key(global)?);
            let tenant_id = identity::tenant::create(&app, &keyring, &name).await?;
            println!("{tenant_id}");
        }
        TenantCommand::List => {
            for tenant in identity::tenant::list_all(&owner).await? {
                println!("{}  {}", tenant.tenant_id, tenant.name);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Begins an operator transaction in `tenant`, failing clearly if it does not exist.
async fn tenant_tx(app: &sqlx::PgPool, tenant: uuid::Uuid) -> anyhow::Result<TenantTx> {
    let mut tx = TenantTx::begin_as(app, TenantId::new_unchecked(tenant), "system", None).await?;
    if !identity::tenant::is_active(&mut tx).await? {
        anyhow::bail!("no active tenant {tenant}");
    }
    Ok(tx)
}

#[allow(clippy::print_stdout, reason = "command output")]
pub async fn user(global: &Global, command: UserCommand) -> anyhow::Result<ExitCode> {
    let (_owner, app) = super::pools(global).await?;
    match command {
        UserCommand::Create {
            tenant,
            handle,
            role,
            oidc_subject,
        } => {
            let mut tx = tenant_tx(&app, tenant).await?;
            let user_id =
                identity::user::create(&mut tx, &handle, role, oidc_subject.as_deref()).await?;
            tx.commit().await?;
            println!("{user_id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout, reason = "the key is shown to the operator once")]
pub async fn api_key(global: &Global, command: ApiKeyCommand) -> anyhow::Result<ExitCode> {
    let (_owner, app) = super::pools(global).await?;
    match command {
        ApiKeyCommand::Create {
            tenant,
            role,
            label,
            user,
        } => {
            let mut tx = tenant_tx(&app, tenant).await?;
            let key =
                identity::api_key::create(&mut tx, role, &label, user.map(UserId::new_unchecked))
                    .await?;
            tx.commit().await?;
            eprintln!("API key {} created; it is shown once:", key.id);
            println!("{}", key.token);
        }
    }
    Ok(ExitCode::SUCCESS)
}
