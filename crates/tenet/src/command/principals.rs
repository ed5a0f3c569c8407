//! `tenet tenant|user|apikey ...`: operator management of tenants and principals.

use std::process::ExitCode;

use db::TenantTx;
use identity::keyring::Keyring;
use kernel::{TenantId, UserId};

use crate::cli::{ApiKeyCommand, Global, TenantCommand, UserCommand};
use crate::output::{say, tell};
use crate::settings;

pub async fn tenant(global: &Global, command: TenantCommand) -> anyhow::Result<ExitCode> {
    super::with_pools(global, async |owner, app| {
        match command {
            TenantCommand::Create { name } => {
                let keyring = Keyring::new(settings::master_key(global)?);
                let tenant_id = identity::tenant::create(app, &keyring, &name).await?;
                say(tenant_id);
            }
            TenantCommand::List => {
                for tenant in identity::tenant::list_all(owner).await? {
                    say(format!("{}  {}", tenant.tenant_id, tenant.name));
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
    .await
}

/// Begins an operator transaction in `tenant`, failing clearly if it does not exist.
async fn tenant_tx(app: &sqlx::PgPool, tenant: uuid::Uuid) -> anyhow::Result<TenantTx> {
    let mut tx = TenantTx::begin_as(app, TenantId::new_unchecked(tenant), "system", None).await?;
    if !identity::tenant::is_active(&mut tx).await? {
        anyhow::bail!("no active tenant {tenant}");
    }
    Ok(tx)
}

pub async fn user(global: &Global, command: UserCommand) -> anyhow::Result<ExitCode> {
    super::with_pools(global, async |_owner, app| {
        let UserCommand::Create {
            tenant,
            handle,
            role,
            oidc_subject,
        } = command;
        let mut tx = tenant_tx(app, tenant).await?;
        let user_id =
            identity::user::create(&mut tx, &handle, role, oidc_subject.as_deref()).await?;
        tx.commit().await?;
        say(user_id);
        Ok(ExitCode::SUCCESS)
    })
    .await
}

pub async fn api_key(global: &Global, command: ApiKeyCommand) -> anyhow::Result<ExitCode> {
    super::with_pools(global, async |_owner, app| {
        let ApiKeyCommand::Create {
            tenant,
            role,
            label,
            user,
        } = command;
        let mut tx = tenant_tx(app, tenant).await?;
        let key = identity::api_key::create(&mut tx, role, &label, user.map(UserId::new_unchecked))
            .await?;
        tx.commit().await?;
        tell(format!("API key {} created; it is shown once:", key.id));
        say(&key.token);
        Ok(ExitCode::SUCCESS)
    })
    .await
}
