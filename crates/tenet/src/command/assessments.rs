//! `tenet assessments plans|enroll|stop|guardian|backfill|due|materialize`:
//! measurement-based care from the command line, in transactions of the tenant as
//! `operator`. Batch enrolment shows a progress bar and reports rows by number only;
//! run the same file again to resume it.

use std::process::ExitCode;

use anyhow::Context;
use assessments::batch::{self, Defaults, FileFormat, PatientFilter, RunOptions};
use assessments::due::{self, DueList};
use assessments::enrollment::{self, EnrollError, Enrolled, NewEnrollment, StopError};
use assessments::plan_store::{self, PlanStoreError};
use assessments::{PlanDefinition, backfill, guardian, materialize};
use identity::keyring::Keyring;
use indicatif::{ProgressBar, ProgressStyle};
use kernel::{PatientId, TenantId, UserId};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::tenant_tx;
use crate::cli::{AssessmentsCommand, Global, GuardianCommand, PlansCommand};
use crate::output::{say, tell};
use crate::settings;

const ACTOR: &str = "operator";

fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "[{{bar:30}}] {{pos}}/{{len}} {what} ({{per_sec}}, {{eta}} left)"
        ))
        .expect("BUG: progress template")
        .progress_chars("=> "),
    );
    bar
}

fn read_plan(path: &std::path::Path) -> anyhow::Result<PlanDefinition> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a plan definition", path.display()))
}

fn instant(text: &str, what: &str) -> anyhow::Result<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).with_context(|| format!("{what}: expected RFC 3339"))
}

fn date(text: &str, what: &str) -> anyhow::Result<jiff::civil::Date> {
    text.parse()
        .ok()
        .with_context(|| format!("{what}: expected YYYY-MM-DD"))
}

fn refused(err: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    tell(err);
    Ok(ExitCode::FAILURE)
}

pub async fn run(global: &Global, command: AssessmentsCommand) -> anyhow::Result<ExitCode> {
    let keyring = match &command {
        AssessmentsCommand::Backfill { .. } | AssessmentsCommand::Materialize { .. } => {
            Some(Keyring::new(settings::master_key(global)?))
        }
        _ => None,
    };
    let command = match command {
        AssessmentsCommand::Care(command) => {
            return super::assessment_responses::run(global, command).await;
        }
        command => command,
    };
    super::with_pools(global, async |_owner, app| match command {
        AssessmentsCommand::Care(_) => unreachable!("handled above"),
        AssessmentsCommand::Plans { command } => plans(app, command).await,
        AssessmentsCommand::Enroll {
            tenant,
            plan,
            file,
            patient,
            care_team_of,
            all_patients,
            time_zone,
            clinician,
            anchor_at,
        } => {
            let defaults = Defaults {
                time_zone,
                clinician_id: clinician.map(UserId::new_unchecked),
                anchor_at: anchor_at
                    .as_deref()
                    .map(|text| instant(text, "--anchor-at"))
                    .transpose()?,
            };
            let tenant_id = TenantId::new_unchecked(tenant);
            tenant_tx(app, tenant).await?.commit().await?;
            let now = OffsetDateTime::now_utc();
            if let Some(path) = file {
                let bytes =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                let rows = match batch::parse(
                    &bytes,
                    FileFormat::from_path(&path.to_string_lossy()),
                ) {
                    Ok(rows) => rows,
                    Err(err) => return refused(format!("{}: {err}", path.display())),
                };
                let bar = progress(rows.len() as u64, "rows");
                let report = batch::run(
                    app,
                    tenant_id,
                    ACTOR,
                    plan,
                    batch::file_sha256(&bytes),
                    &rows,
                    &defaults,
                    RunOptions::default(),
                    now,
                    |n| bar.inc(n),
                )
                .await;
                bar.finish_and_clear();
                let report = match report {
                    Ok(report) => report,
                    Err(batch::BatchError::PlanNotFound) => return refused("no such plan"),
                    Err(err) => return Err(err.into()),
                };
                for (row, reason) in &report.invalid {
                    say(format!("row {row}: invalid ({reason})"));
                }
                say(format!(
                    "batch {}: {} rows — {} enrolled, {} already enrolled, {} invalid{}",
                    report.batch_id,
                    report.n_rows,
                    report.n_enrolled,
                    report.n_already_enrolled,
                    report.invalid.len(),
                    if report.n_skipped > 0 {
                        format!(" ({} done by an earlier run)", report.n_skipped)
                    } else {
                        String::new()
                    }
                ));
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(patient) = patient {
                let mut tx = tenant_tx(app, tenant).await?;
                let new = NewEnrollment {
                    plan_id: plan,
                    patient_id: PatientId::new_unchecked(patient),
                    clinician_id: defaults.clinician_id,
                    time_zone: defaults.time_zone,
                    anchor_at: defaults.anchor_at,
                };
                return match enrollment::enroll_one(&mut tx, &new, now).await {
                    Ok(Enrolled::New(id)) => {
                        tx.commit().await?;
                        say(format!("enrolled: enrolment {id}"));
                        Ok(ExitCode::SUCCESS)
                    }
                    Ok(Enrolled::Already(id)) => {
                        say(format!("already enrolled: enrolment {id}"));
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(err @ (EnrollError::Audit(_) | EnrollError::Unexpected(_))) => {
                        Err(err.into())
                    }
                    Err(err) => refused(err),
                };
            }
            let filter = match (care_team_of, all_patients) {
                (Some(user), _) => PatientFilter::CareTeamOf(UserId::new_unchecked(user)),
                (None, true) => PatientFilter::All,
                (None, false) => {
                    return refused(
                        "say whom to enrol: --file, --patient, --care-team-of or --all-patients",
                    );
                }
            };
            let bar = ProgressBar::new_spinner();
            let report = batch::run_filter(
                app,
                tenant_id,
                ACTOR,
                plan,
                filter,
                &defaults,
                now,
                |n| bar.inc(n),
            )
            .await;
            bar.finish_and_clear();
            match report {
                Ok(report) => {
                    say(format!(
                        "{} enrolled, {} already enrolled, {} invalid",
                        report.n_enrolled, report.n_already_enrolled, report.n_invalid
                    ));
                    Ok(ExitCode::SUCCESS)
                }
                Err(batch::BatchError::PlanNotFound) => refused("no such plan"),
                Err(err) => Err(err.into()),
            }
        }
        AssessmentsCommand::Stop { tenant, enrollment } => {
            let mut tx = tenant_tx(app, tenant).await?;
            match enrollment::stop(&mut tx, enrollment, OffsetDateTime::now_utc()).await {
                Ok(n) => {
                    tx.commit().await?;
                    say(format!("enrolment {enrollment} stopped; {n} instance(s) cancelled"));
                    Ok(ExitCode::SUCCESS)
                }
                Err(err @ (StopError::Audit(_) | StopError::Unexpected(_))) => Err(err.into()),
                Err(err) => refused(err),
            }
        }
        AssessmentsCommand::Guardian { command } => {
            let (tenant, result) = match command {
                GuardianCommand::Add {
                    tenant,
                    patient,
                    person,
                    since,
                } => {
                    let since = date(&since, "--since")?;
                    let mut tx = tenant_tx(app, tenant).await?;
                    let result =
                        guardian::add(&mut tx, PatientId::new_unchecked(patient), person, since)
                            .await;
                    (tx, result.map(|()| "guardianship recorded"))
                }
                GuardianCommand::End {
                    tenant,
                    patient,
                    person,
                    until,
                } => {
                    let until = date(&until, "--until")?;
                    let mut tx = tenant_tx(app, tenant).await?;
                    let result =
                        guardian::end(&mut tx, PatientId::new_unchecked(patient), person, until)
                            .await;
                    (tx, result.map(|()| "guardianship ended"))
                }
            };
            match result {
                Ok(done) => {
                    tenant.commit().await?;
                    say(format!("{done}; the patient's enrolments are re-evaluated"));
                    Ok(ExitCode::SUCCESS)
                }
                Err(
                    err @ (guardian::GuardianError::Audit(_)
                    | guardian::GuardianError::Unexpected(_)),
                ) => Err(err.into()),
                Err(err) => refused(err),
            }
        }
        AssessmentsCommand::Backfill {
            tenant,
            plan,
            from,
            until,
        } => {
            let keyring = keyring.expect("BUG: loaded for backfill");
            tenant_tx(app, tenant).await?.commit().await?;
            let now = OffsetDateTime::now_utc();
            let from = instant(&from, "--from")?;
            let until = until
                .as_deref()
                .map(|text| instant(text, "--until"))
                .transpose()?
                .unwrap_or(now);
            let bar = ProgressBar::new_spinner();
            bar.set_message("enrolments backfilled");
            let report = backfill::run(
                app,
                &keyring,
                TenantId::new_unchecked(tenant),
                ACTOR,
                plan,
                from,
                until,
                now,
                backfill::BackfillOptions::default(),
                |n| bar.inc(n),
            )
            .await;
            bar.finish_and_clear();
            match report {
                Ok(report) => {
                    say(format!(
                        "backfill {}: {} enrolment(s), {} instance(s) created",
                        report.backfill_id, report.n_enrollments, report.n_created
                    ));
                    Ok(ExitCode::SUCCESS)
                }
                Err(
                    err @ (backfill::BackfillError::PlanNotFound
                    | backfill::BackfillError::InvalidWindow),
                ) => refused(err),
                Err(err) => Err(err.into()),
            }
        }
        AssessmentsCommand::Due {
            tenant,
            clinician,
            overdue,
            days,
            limit,
        } => {
            let now = OffsetDateTime::now_utc();
            let which = if overdue {
                DueList::Overdue
            } else {
                DueList::Due {
                    until: now + time::Duration::days(days),
                }
            };
            let mut tx = tenant_tx(app, tenant).await?;
            let items = due::list(&mut tx, UserId::new_unchecked(clinician), which, now, limit).await?;
            tx.commit().await?;
            if items.is_empty() {
                say("nothing due");
            }
            for item in items {
                say(format!(
                    "{}  {:<9} {:<7} {:<9} patient {} instance {}{}",
                    item.due_at.format(&Rfc3339).unwrap_or_default(),
                    item.status,
                    item.instrument_code,
                    item.respondent,
                    item.patient_id,
                    item.instance_id,
                    if item.escalated_at.is_some() { " (escalated)" } else { "" }
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
        AssessmentsCommand::Materialize { tenant } => {
            let keyring = keyring.expect("BUG: loaded for materialize");
            let mut total = materialize::Report::default();
            loop {
                let mut tx = tenant_tx(app, tenant).await?;
                let report = materialize::run_due(
                    &mut tx,
                    &keyring,
                    OffsetDateTime::now_utc(),
                    materialize::OVERDUE_GRACE_HOURS_DEFAULT,
                )
                .await?;
                tx.commit().await?;
                total.n_evaluated += report.n_evaluated;
                total.n_created += report.n_created;
                total.n_opened += report.n_opened;
                total.n_missed += report.n_missed;
                total.n_escalated += report.n_escalated;
                total.n_failed += report.n_failed;
                if !report.more {
                    break;
                }
            }
            say(format!(
                "{} enrolment(s) evaluated, {} instance(s) created, {} opened, {} missed, {} escalated",
                total.n_evaluated, total.n_created, total.n_opened, total.n_missed, total.n_escalated
            ));
            if total.n_failed > 0 {
                say(format!(
                    "{} enrolment(s) skipped: their patient's record could not be read (see the log); each is tried again in an hour",
                    total.n_failed
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
    })
    .await
}

async fn plans(app: &sqlx::PgPool, command: PlansCommand) -> anyhow::Result<ExitCode> {
    let result = match command {
        PlansCommand::Create {
            tenant,
            name,
            file,
            overdue_grace_hours,
        } => {
            let definition = read_plan(&file)?;
            let mut tx = tenant_tx(app, tenant).await?;
            let result = plan_store::create(
                &mut tx,
                &name,
                &definition,
                overdue_grace_hours,
                OffsetDateTime::now_utc(),
            )
            .await;
            (
                tx,
                result.map(|plan| format!("plan {} created (version {})", plan.id, plan.version)),
            )
        }
        PlansCommand::Update {
            tenant,
            id,
            file,
            overdue_grace_hours,
        } => {
            let definition = read_plan(&file)?;
            let mut tx = tenant_tx(app, tenant).await?;
            let result = plan_store::update(&mut tx, id, &definition, overdue_grace_hours).await;
            (
                tx,
                result.map(|plan| format!("plan {} is now version {}", plan.id, plan.version)),
            )
        }
        PlansCommand::List { tenant } => {
            let mut tx = tenant_tx(app, tenant).await?;
            let plans = plan_store::list(&mut tx).await?;
            tx.commit().await?;
            if plans.is_empty() {
                say("no plans");
            }
            for plan in plans {
                say(format!(
                    "{}  v{:<3} {:<8} {}",
                    plan.id,
                    plan.version,
                    if plan.retired { "retired" } else { "active" },
                    plan.name
                ));
            }
            return Ok(ExitCode::SUCCESS);
        }
        PlansCommand::Retire { tenant, id } => {
            let mut tx = tenant_tx(app, tenant).await?;
            let result = plan_store::retire(&mut tx, id).await;
            (tx, result.map(|plan| format!("plan {} retired", plan.id)))
        }
    };
    match result {
        (tx, Ok(done)) => {
            tx.commit().await?;
            say(done);
            Ok(ExitCode::SUCCESS)
        }
        (_, Err(err @ (PlanStoreError::Audit(_) | PlanStoreError::Unexpected(_)))) => {
            Err(err.into())
        }
        (_, Err(err)) => refused(err),
    }
}
