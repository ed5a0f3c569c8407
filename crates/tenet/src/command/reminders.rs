//! `tenet reminders configure|show|preferences|list`: a tenant's reminder settings, a
//! patient's opt-outs and quiet hours, and what became of an instance's reminders.
//! Each runs in a transaction of the tenant; nothing here prints PHI.

use std::process::ExitCode;
use std::time::Duration;

use assessments::reminder::{self, Channel, Personalisation, Preferences, QuietHours, Settings};
use kernel::PatientId;
use time::OffsetDateTime;

use super::tenant_tx;
use crate::cli::{Global, RemindersCommand};
use crate::output::{say, tell};

pub async fn run(global: &Global, command: RemindersCommand) -> anyhow::Result<ExitCode> {
    super::with_pools(global, async |_owner, app| match command {
        RemindersCommand::Configure {
            tenant,
            quiet_hours,
            closing_lead_hours,
            channels,
            first_name,
        } => {
            let (Some(quiet_hours), Some(channels)) =
                (parse_quiet_hours(&quiet_hours), parse_channels(&channels))
            else {
                tell("--quiet-hours is HH:MM-HH:MM and --channels lists email and/or webhook");
                return Ok(ExitCode::FAILURE);
            };
            let settings = Settings {
                channels,
                quiet_hours,
                closing_lead: Duration::from_secs(u64::from(closing_lead_hours) * 3600),
                personalisation: if first_name {
                    Personalisation::FirstName
                } else {
                    Personalisation::None
                },
            };
            let mut tx = tenant_tx(app, tenant).await?;
            reminder::configure(&mut tx, &settings, OffsetDateTime::now_utc()).await?;
            tx.commit().await?;
            say(describe(&settings));
            Ok(ExitCode::SUCCESS)
        }
        RemindersCommand::Show { tenant } => {
            let mut tx = tenant_tx(app, tenant).await?;
            let settings = reminder::settings(&mut tx).await?;
            tx.commit().await?;
            say(describe(&settings));
            Ok(ExitCode::SUCCESS)
        }
        RemindersCommand::Preferences {
            tenant,
            patient,
            opt_out,
            quiet_hours,
        } => {
            let Some(opted_out) = parse_channels(&opt_out) else {
                tell("--opt-out lists email and/or webhook");
                return Ok(ExitCode::FAILURE);
            };
            let quiet_hours = match quiet_hours.as_deref().map(parse_quiet_hours) {
                None => None,
                Some(Some(quiet_hours)) => Some(quiet_hours),
                Some(None) => {
                    tell("--quiet-hours is HH:MM-HH:MM");
                    return Ok(ExitCode::FAILURE);
                }
            };
            let mut tx = tenant_tx(app, tenant).await?;
            reminder::set_preferences(
                &mut tx,
                PatientId::new_unchecked(patient),
                &Preferences {
                    opted_out,
                    quiet_hours,
                },
            )
            .await?;
            tx.commit().await?;
            say("preferences saved");
            Ok(ExitCode::SUCCESS)
        }
        RemindersCommand::List { tenant, instance } => {
            let mut tx = tenant_tx(app, tenant).await?;
            let rows = reminder::of_instance(&mut tx, instance).await?;
            tx.commit().await?;
            if rows.is_empty() {
                say("no reminders for this instance (yet)");
            }
            for row in rows {
                say(format!(
                    "{} {:<8} {:<8} {:<8} due {} attempts {} {}",
                    row.id,
                    row.kind,
                    row.channel,
                    row.state,
                    row.due_at,
                    row.attempts,
                    row.skip_reason.or(row.last_error).unwrap_or_default()
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
    })
    .await
}

fn describe(settings: &Settings) -> String {
    let channels: Vec<&str> = settings.channels.iter().map(|c| c.as_str()).collect();
    format!(
        "channels {}; quiet hours {}-{}; closing reminder {} h before the window closes; greeting {}",
        channels.join(","),
        settings.quiet_hours.start.strftime("%H:%M"),
        settings.quiet_hours.end.strftime("%H:%M"),
        settings.closing_lead.as_secs() / 3600,
        match settings.personalisation {
            Personalisation::FirstName => "by first name",
            Personalisation::None => "anonymous",
        }
    )
}

fn parse_quiet_hours(text: &str) -> Option<QuietHours> {
    let (start, end) = text.split_once('-')?;
    let time = |text: &str| jiff::civil::Time::strptime("%H:%M", text.trim()).ok();
    Some(QuietHours {
        start: time(start)?,
        end: time(end)?,
    })
}

fn parse_channels(names: &[String]) -> Option<Vec<Channel>> {
    names
        .iter()
        .filter(|name| !name.is_empty())
        .map(|name| Channel::from_name(name.trim()))
        .collect()
}
