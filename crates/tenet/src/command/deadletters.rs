//! `tenet deadletters list|show|retry|discard`: work that failed past its attempts —
//! dead jobs and dead relay deliveries — across tenants, as the owner role.

use std::process::ExitCode;

use kernel::TenantId;
use platform::dead_letters::{self, DeadLetterError, Detail};

use super::jobs::{print_job, timestamp};
use crate::cli::{DeadLettersCommand, Global};
use crate::output::say;

pub async fn run(global: &Global, command: DeadLettersCommand) -> anyhow::Result<ExitCode> {
    super::with_pools(global, async |owner, _app| {
        let mut conn = owner.acquire().await?;
        match command {
            DeadLettersCommand::List { tenant, limit } => {
                let letters =
                    dead_letters::list(&mut conn, tenant.map(TenantId::new_unchecked), limit)
                        .await?;
                say(format!(
                    "{:<36}  {:<36}  {:<8}  {:<40}  {:<25}  last error",
                    "id", "tenant", "source", "what", "dead since"
                ));
                for letter in &letters {
                    let error = letter.last_error.as_deref().unwrap_or("-");
                    say(format!(
                        "{:<36}  {:<36}  {:<8}  {:<40}  {:<25}  {}",
                        letter.id,
                        letter.tenant_id,
                        letter.source,
                        letter.what,
                        letter.dead_since.map(timestamp).unwrap_or_default(),
                        error.chars().take(80).collect::<String>()
                    ));
                }
                say(format!("{} dead letter(s)", letters.len()));
                Ok(ExitCode::SUCCESS)
            }
            DeadLettersCommand::Show { id } => match dead_letters::show(&mut conn, id).await? {
                Some(Detail::Job(job)) => {
                    print_job(&job);
                    Ok(ExitCode::SUCCESS)
                }
                Some(Detail::Delivery(detail)) => {
                    let delivery = &detail.delivery;
                    say(format!("id:           {}", delivery.id));
                    say(format!("tenant:       {}", delivery.tenant_id));
                    say(format!(
                        "delivery:     {} ({}) of event {} {}",
                        delivery.consumer, delivery.sink, delivery.event_type, delivery.event_id
                    ));
                    say(format!(
                        "aggregate:    {} {}",
                        delivery.aggregate_type, delivery.aggregate_id
                    ));
                    say(format!("state:        {}", delivery.state));
                    say(format!(
                        "attempts:     {} of {}",
                        delivery.attempts, delivery.attempts_max
                    ));
                    say(format!(
                        "last error:   {}",
                        delivery.last_error.as_deref().unwrap_or("-")
                    ));
                    for attempt in &detail.attempts {
                        say(format!(
                            "  attempt {:>3} at {} by {}: {} in {} ms{}{}",
                            attempt.attempt,
                            timestamp(attempt.started_at),
                            attempt.relay_id,
                            if attempt.succeeded { "ok" } else { "failed" },
                            attempt.duration_ms,
                            attempt
                                .status_code
                                .map(|code| format!(", HTTP {code}"))
                                .unwrap_or_default(),
                            attempt
                                .error
                                .as_deref()
                                .map(|error| format!(", {error}"))
                                .unwrap_or_default(),
                        ));
                    }
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    say(format!("no dead letter {id}"));
                    Ok(ExitCode::FAILURE)
                }
            },
            DeadLettersCommand::Retry { id } => outcome(
                dead_letters::retry(&mut conn, id).await,
                id,
                "runs again now, with fresh attempts",
            ),
            DeadLettersCommand::Discard { id } => outcome(
                dead_letters::discard(&mut conn, id).await,
                id,
                "discarded (kept for the record, off the list)",
            ),
        }
    })
    .await
}

fn outcome(
    result: Result<dead_letters::Source, DeadLetterError>,
    id: uuid::Uuid,
    done: &str,
) -> anyhow::Result<ExitCode> {
    match result {
        Ok(source) => {
            say(format!("{source} {id} {done}"));
            Ok(ExitCode::SUCCESS)
        }
        Err(
            DeadLetterError::Unexpected(err)
            | DeadLetterError::Job(platform::jobs::admin::AdminError::Unexpected(err)),
        ) => Err(err.into()),
        Err(err) => {
            say(err);
            Ok(ExitCode::FAILURE)
        }
    }
}
