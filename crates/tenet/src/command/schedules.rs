//! `tenet schedules create|list|enable|disable|delete`: recurring jobs. Changes run in
//! a transaction of the schedule's tenant; the list reads across tenants as the owner.

use std::process::ExitCode;

use kernel::TenantId;
use platform::schedules::{self, CatchUp, ErasedScheduleSpec, ScheduleError, ScheduleId};

use super::jobs::timestamp;
use super::tenant_tx;
use crate::cli::{Global, SchedulesCommand};
use crate::output::{say, tell};

pub async fn run(global: &Global, command: SchedulesCommand) -> anyhow::Result<ExitCode> {
    super::with_pools(global, async |owner, app| match command {
        SchedulesCommand::Create {
            tenant,
            name,
            cron,
            time_zone,
            kind,
            args,
            args_version,
            catch_up,
        } => {
            let Some(catch_up) = CatchUp::from_name(&catch_up) else {
                tell(format!(
                    "--catch-up must be skip, all or none, not {catch_up:?}"
                ));
                return Ok(ExitCode::FAILURE);
            };
            let args: serde_json::Value = match serde_json::from_str(&args) {
                Ok(args) => args,
                Err(err) => {
                    tell(format!("--args is not JSON: {err}"));
                    return Ok(ExitCode::FAILURE);
                }
            };
            // Refuse what no worker of this binary could run, now rather than at
            // every slot.
            // Read for kinds and versions only: it never runs a job, so the key it is
            // built with is never used.
            let registry = crate::wiring::job_registry(
                &identity::keyring::Keyring::new(identity::keyring::MasterKey::generate()),
                false,
                &documents::Storage::in_memory(),
            );
            let Some(version) = args_version.or_else(|| registry.version(&kind)) else {
                tell(format!(
                    "no job kind is named {kind}; known kinds: {}",
                    registry.names().join(", ")
                ));
                return Ok(ExitCode::FAILURE);
            };
            if !registry.is_schedulable(&kind) {
                tell(format!(
                    "{kind} is run by its own machinery and cannot be scheduled"
                ));
                return Ok(ExitCode::FAILURE);
            }
            if let Err(err) = registry.check_args(&kind, version, args.clone()) {
                tell(format!("the arguments do not fit {kind}: {err}"));
                return Ok(ExitCode::FAILURE);
            }
            let mut tx = tenant_tx(app, tenant).await?;
            let now: time::OffsetDateTime = sqlx::query_scalar("SELECT now()")
                .fetch_one(&mut *tx)
                .await?;
            let spec = ErasedScheduleSpec {
                name,
                cron,
                time_zone,
                job_kind: kind,
                args_version: version,
                args,
                queue: "default".to_owned(),
                priority: 0,
                attempts_max: 10,
                catch_up,
                enabled: true,
            };
            match schedules::create_erased(&mut tx, spec, now).await {
                Ok(id) => {
                    let row = schedules::get(&mut tx, id).await?;
                    tx.commit().await?;
                    say(format!("schedule {}", row.id));
                    say(format!(
                        "next slot {}",
                        row.next_slot_at.map(timestamp).unwrap_or_default()
                    ));
                    Ok(ExitCode::SUCCESS)
                }
                Err(err) => refused(err),
            }
        }
        SchedulesCommand::List { tenant } => {
            let rows = schedules::list_all(owner, tenant.map(TenantId::new_unchecked)).await?;
            say(format!(
                "{:<36}  {:<36}  {:<24}  {:<16}  {:<20}  {:<8}  {:<25}  last slot",
                "id", "tenant", "name", "cron", "time zone", "enabled", "next slot"
            ));
            for row in &rows {
                say(format!(
                    "{:<36}  {:<36}  {:<24}  {:<16}  {:<20}  {:<8}  {:<25}  {}",
                    row.id,
                    row.tenant_id,
                    row.name,
                    row.cron,
                    row.time_zone,
                    row.enabled,
                    row.next_slot_at
                        .map(timestamp)
                        .unwrap_or_else(|| "-".to_owned()),
                    row.last_slot_at
                        .map(timestamp)
                        .unwrap_or_else(|| "-".to_owned()),
                ));
            }
            say(format!("{} schedule(s)", rows.len()));
            Ok(ExitCode::SUCCESS)
        }
        SchedulesCommand::Enable { tenant, id } => {
            let mut tx = tenant_tx(app, tenant).await?;
            let now: time::OffsetDateTime = sqlx::query_scalar("SELECT now()")
                .fetch_one(&mut *tx)
                .await?;
            done(
                schedules::enable(&mut tx, ScheduleId::new_unchecked(id), now).await,
                tx,
                id,
                "enabled",
            )
            .await
        }
        SchedulesCommand::Disable { tenant, id } => {
            let mut tx = tenant_tx(app, tenant).await?;
            done(
                schedules::disable(&mut tx, ScheduleId::new_unchecked(id)).await,
                tx,
                id,
                "disabled",
            )
            .await
        }
        SchedulesCommand::Delete { tenant, id } => {
            let mut tx = tenant_tx(app, tenant).await?;
            done(
                schedules::delete(&mut tx, ScheduleId::new_unchecked(id)).await,
                tx,
                id,
                "deleted",
            )
            .await
        }
    })
    .await
}

async fn done(
    result: Result<(), ScheduleError>,
    tx: db::TenantTx,
    id: uuid::Uuid,
    what: &str,
) -> anyhow::Result<ExitCode> {
    match result {
        Ok(()) => {
            tx.commit().await?;
            say(format!("schedule {id} {what}"));
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => refused(err),
    }
}

fn refused(err: ScheduleError) -> anyhow::Result<ExitCode> {
    match err {
        ScheduleError::Unexpected(err) => Err(err.into()),
        err => {
            tell(err);
            Ok(ExitCode::FAILURE)
        }
    }
}
