//! `tenet sagas list`: sagas across tenants, as the owner role.

use std::process::ExitCode;

use kernel::TenantId;
use platform::sagas::{self, SagaState};

use super::jobs::timestamp;
use crate::cli::{Global, SagasCommand};
use crate::output::{say, tell};

pub async fn run(global: &Global, command: SagasCommand) -> anyhow::Result<ExitCode> {
    let SagasCommand::List {
        state,
        tenant,
        limit,
    } = command;
    let state = match state.as_deref().map(SagaState::from_name) {
        None => None,
        Some(Some(state)) => Some(state),
        Some(None) => {
            tell("--state must be running, compensating, completed, compensated or failed");
            return Ok(ExitCode::FAILURE);
        }
    };
    super::with_pools(global, async |owner, _app| {
        let rows =
            sagas::list_all(owner, state, tenant.map(TenantId::new_unchecked), limit).await?;
        say(format!(
            "{:<36}  {:<36}  {:<24}  {:<12}  {:<7}  {:<25}  last error",
            "id", "tenant", "kind", "state", "step", "updated"
        ));
        for row in &rows {
            say(format!(
                "{:<36}  {:<36}  {:<24}  {:<12}  {:>3}/{:<3}  {:<25}  {}",
                row.id,
                row.tenant_id,
                row.kind,
                row.state,
                row.step,
                row.n_steps,
                timestamp(row.updated_at),
                row.last_error.as_deref().unwrap_or("-")
            ));
        }
        say(format!("{} saga(s)", rows.len()));
        Ok(ExitCode::SUCCESS)
    })
    .await
}
