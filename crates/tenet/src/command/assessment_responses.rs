//! `tenet assessments responses|scores|safety`: the operator's view of a patient's
//! measurement-based care and of urgent safety events. Each runs in a transaction
//! of the tenant as `operator`; every read is audited (purpose `operations`), like
//! the API's. Output is the command's answer on stdout, never a log line.

use std::process::ExitCode;

use assessments::InstrumentCode;
use assessments::response::{self, Answerer, ScorePoint};
use assessments::safety::{self, AcknowledgeError, Filter, Scope};
use identity::vault::Access;
use kernel::{PatientId, UserId};

use super::tenant_tx;
use crate::cli::{AssessmentCareCommand, Global, SafetyCommand};
use crate::output::{say, tell};

fn operations() -> Access {
    Access {
        purpose: Some("operations".to_owned()),
        break_glass: false,
    }
}

fn instrument(code: &str) -> anyhow::Result<InstrumentCode> {
    InstrumentCode::parse(code)
        .map_err(|_| anyhow::anyhow!("--instrument must be an instrument code such as phq-9"))
}

fn respondent(answerer: Answerer) -> String {
    match answerer {
        Answerer::Patient => "patient".to_owned(),
        Answerer::Guardian(person_id) => format!("guardian:{person_id}"),
        Answerer::Clinician => "clinician".to_owned(),
    }
}

fn change(point: &ScorePoint) -> String {
    let Some(progress) = &point.progress else {
        return "-".to_owned();
    };
    let mut words = vec![format!(
        "baseline {:+} {}",
        progress.since_baseline.delta,
        progress.since_baseline.reliability.as_str()
    )];
    if let Some(previous) = progress.since_previous {
        words.push(format!(
            "previous {:+} {}",
            previous.delta,
            previous.reliability.as_str()
        ));
    }
    if progress.response {
        words.push("response".to_owned());
    }
    if progress.remission {
        words.push("remission".to_owned());
    }
    words.join(", ")
}

pub async fn run(global: &Global, command: AssessmentCareCommand) -> anyhow::Result<ExitCode> {
    super::with_pools(global, async |_owner, app| match command {
        AssessmentCareCommand::Responses {
            tenant,
            patient,
            instrument: code,
        } => {
            let code = code.as_deref().map(instrument).transpose()?;
            let mut tx = tenant_tx(app, tenant).await?;
            let points = response::history(
                &mut tx,
                PatientId::new_unchecked(patient),
                code.as_ref(),
                &operations(),
            )
            .await?;
            tx.commit().await?;
            if points.is_empty() {
                say("no responses");
            }
            for point in points {
                say(format!(
                    "{}  {}  {} v{}  {:<20} total {:>3}  {:<18} {}",
                    point.response_id,
                    point.submitted_at,
                    point.instrument,
                    point.version,
                    respondent(point.respondent),
                    point.total,
                    point.band,
                    point.flags.join(",")
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
        AssessmentCareCommand::Scores {
            tenant,
            patient,
            instrument: code,
        } => {
            let code = instrument(&code)?;
            let mut tx = tenant_tx(app, tenant).await?;
            let points = response::history(
                &mut tx,
                PatientId::new_unchecked(patient),
                Some(&code),
                &operations(),
            )
            .await?;
            tx.commit().await?;
            if points.is_empty() {
                say(format!("no {code} scores"));
            }
            for point in &points {
                say(format!(
                    "{}  {:>3}  {:<18} {}",
                    point.submitted_at,
                    point.total,
                    point.band,
                    change(point)
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
        AssessmentCareCommand::Safety {
            command: SafetyCommand::List { tenant, all, limit },
        } => {
            let mut tx = tenant_tx(app, tenant).await?;
            let events = safety::list(
                &mut tx,
                Scope::Tenant,
                Filter {
                    open_only: !all,
                    patient_id: None,
                    limit,
                },
                &operations(),
            )
            .await?;
            tx.commit().await?;
            if events.is_empty() {
                say(if all {
                    "no safety events"
                } else {
                    "no open safety events"
                });
            }
            for event in events {
                let state = match (event.acknowledged_at, event.acknowledged_by) {
                    (Some(at), Some(by)) => format!("acknowledged {at} by {by}"),
                    _ => "OPEN".to_owned(),
                };
                say(format!(
                    "{}  {}  {}  patient {}  response {}  {}",
                    event.id,
                    event.raised_at,
                    event.kind,
                    event.patient_id,
                    event.response_id,
                    state
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
        AssessmentCareCommand::Safety {
            command: SafetyCommand::Ack { tenant, user, id },
        } => {
            let mut tx = tenant_tx(app, tenant).await?;
            let user_id = UserId::new_unchecked(user);
            if identity::user::get(&mut tx, user_id).await?.is_none() {
                tell(format!("no user {user} in this tenant"));
                return Ok(ExitCode::FAILURE);
            }
            match safety::acknowledge(&mut tx, id, user_id).await {
                Ok(event) => {
                    tx.commit().await?;
                    say(format!("{}: acknowledged by {user}", event.id));
                    Ok(ExitCode::SUCCESS)
                }
                Err(AcknowledgeError::Unexpected(err)) => Err(err.into()),
                Err(err) => {
                    tell(format!("{id}: {err}"));
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    })
    .await
}
