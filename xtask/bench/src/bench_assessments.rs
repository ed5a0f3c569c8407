//! `cargo xtask bench assessments`: measurement-based care at scale, in process on
//! the test cluster (release build; the task re-runs itself with `--release` when
//! started from a debug build).
//!
//! 1. Set-up (timed apart): N patients, each a clinical record and a sealed vault
//!    identity with a birth date (the adult rule reads it through the vault).
//! 2. Batch enrolment of the N patients from one CSV into a monthly PHQ-9 plan,
//!    anchored a year ago, spread over `clinicians` clinicians — `batch::run`, the
//!    code `tenet assessments enroll --file` runs: rows/s.
//! 3. Backfill of that year: every closed monthly slot of every enrolment,
//!    `backfill::run`: instances/s.
//! 4. The materialiser making the current slot of every enrolment (runs of
//!    `run_due` until no work is left): enrolments/s.
//! 5. The due list of one clinician (100 rows, each patient audited), repeated:
//!    p50/p99 latency.

use std::time::Instant;

use anyhow::Context;
use assessments::backfill::{self, BackfillOptions};
use assessments::batch::{self, Defaults, FileFormat, RunOptions};
use assessments::due::{self, DueList};
use assessments::{PlanDefinition, materialize, plan_store};
use db::TenantTx;
use identity::keyring::{Keyring, MasterKey};
use identity::vault::{self, Access, Demographics};
use kernel::{PatientId, UserId};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::bench::println_line;

const SETUP_PER_TX: usize = 500;

pub async fn run(n_patients: usize, n_clinicians: usize, n_queries: usize) -> anyhow::Result<()> {
    let machine = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!(
        "bench assessments: {n_patients} patients, {n_clinicians} clinicians; load average {}",
        machine
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let db = db::testing::TestDb::migrated(&schema::migrator()).await;
    let keyring = Keyring::new(MasterKey::generate());
    let tenant_id = identity::tenant::create(&db.app, &keyring, "Bench Clinic")
        .await
        .context("creating the tenant")?;
    let clinicians: Vec<UserId> = (0..n_clinicians.max(1))
        .map(|_| UserId::new_unchecked(Uuid::now_v7()))
        .collect();

    // 1. Set-up.
    let started = Instant::now();
    let birth_date = time::Date::from_calendar_date(1975, time::Month::March, 3)?;
    let mut patients = Vec::with_capacity(n_patients);
    for chunk_start in (0..n_patients).step_by(SETUP_PER_TX) {
        let mut tx = TenantTx::begin_as(&db.app, tenant_id, "system", None).await?;
        for _ in chunk_start..(chunk_start + SETUP_PER_TX).min(n_patients) {
            let patient_id = PatientId::generate();
            clinical::patient::insert(&mut tx, patient_id).await?;
            let demographics = Demographics {
                family_name: "Bench".to_owned(),
                given_names: vec!["Pat".to_owned()],
                birth_date: Some(birth_date),
                ..Demographics::default()
            };
            vault::insert(
                &mut tx,
                &keyring,
                patient_id,
                &demographics,
                &Access::default(),
            )
            .await?;
            patients.push(patient_id);
        }
        tx.commit().await?;
    }
    let setup_secs = started.elapsed().as_secs_f64();
    eprintln!("  set-up: {n_patients} patients in {setup_secs:.1} s");

    let now = OffsetDateTime::now_utc();
    let anchor = now - time::Duration::days(365);
    let def: PlanDefinition = serde_json::from_value(serde_json::json!({
        "rules": [{ "when": { "age_from": 18 }, "instrument": "phq-9", "respondent": "patient" }],
        "cadence": { "every_months": 1 },
        "window": { "before_days": 3, "after_days": 7 },
        "stop": { "after_days": 400 }
    }))?;
    let plan = {
        let mut tx = TenantTx::begin_as(&db.app, tenant_id, "system", None).await?;
        let plan = plan_store::create(&mut tx, "monthly PHQ-9", &def, None, now).await?;
        tx.commit().await?;
        plan
    };

    // 2. Batch enrolment from a CSV.
    let mut csv = String::from("patient_id,clinician_id\n");
    for (n, patient_id) in patients.iter().enumerate() {
        csv.push_str(&format!(
            "{patient_id},{}\n",
            clinicians[n % clinicians.len()]
        ));
    }
    let rows = batch::parse(csv.as_bytes(), FileFormat::Csv)?;
    let started = Instant::now();
    let report = batch::run(
        &db.app,
        tenant_id,
        "system",
        plan.id,
        batch::file_sha256(csv.as_bytes()),
        &rows,
        &Defaults {
            time_zone: "America/New_York".to_owned(),
            clinician_id: None,
            anchor_at: Some(anchor),
        },
        RunOptions::default(),
        now,
        |_| {},
    )
    .await?;
    let enrol_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        report.n_enrolled == n_patients,
        "every row enrolled: {report:?}"
    );
    eprintln!("  batch enrolment: {n_patients} rows in {enrol_secs:.1} s");

    // 3. Backfill of the year.
    let started = Instant::now();
    let backfilled = backfill::run(
        &db.app,
        &keyring,
        tenant_id,
        "system",
        plan.id,
        anchor - time::Duration::days(1),
        now,
        now,
        BackfillOptions::default(),
        |_| {},
    )
    .await?;
    let backfill_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "  backfill: {} instances for {} enrolments in {backfill_secs:.1} s",
        backfilled.n_created, backfilled.n_enrollments
    );

    // 4. The materialiser: the current slot of every enrolment.
    let started = Instant::now();
    let (mut n_evaluated, mut n_created) = (0, 0);
    loop {
        let mut tx = TenantTx::begin_as(&db.app, tenant_id, "system", None).await?;
        let report = materialize::run_due(&mut tx, &keyring, now, 48).await?;
        tx.commit().await?;
        n_evaluated += report.n_evaluated;
        n_created += report.n_created;
        if !report.more {
            break;
        }
    }
    let materialize_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "  materialiser: {n_evaluated} enrolments, {n_created} instances in {materialize_secs:.1} s"
    );

    // 5. One clinician's due list.
    let mut latencies_ms = Vec::with_capacity(n_queries);
    let mut n_items = 0;
    for _ in 0..n_queries {
        let started = Instant::now();
        let mut tx = TenantTx::begin_as(&db.app, tenant_id, "system", None).await?;
        let items = due::list(
            &mut tx,
            clinicians[0],
            DueList::Due {
                until: now + time::Duration::days(7),
            },
            now,
            100,
        )
        .await?;
        tx.commit().await?;
        latencies_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        n_items = items.len();
    }
    latencies_ms.sort_by(f64::total_cmp);
    let quantile = |q: f64| latencies_ms[((latencies_ms.len() - 1) as f64 * q).round() as usize];

    println_line("| step | rows | wall s | rows/s |");
    println_line("|---|---|---|---|");
    println_line(&format!(
        "| set-up: patients (clinical + vault) | {n_patients} | {setup_secs:.1} | {:.0} |",
        n_patients as f64 / setup_secs
    ));
    println_line(&format!(
        "| batch enrolment (CSV) | {n_patients} | {enrol_secs:.1} | {:.0} |",
        n_patients as f64 / enrol_secs
    ));
    println_line(&format!(
        "| backfill, a year of monthly PHQ-9 | {} instances | {backfill_secs:.1} | {:.0} |",
        backfilled.n_created,
        backfilled.n_created as f64 / backfill_secs
    ));
    println_line(&format!(
        "| materialiser, current slot | {n_evaluated} enrolments | {materialize_secs:.1} | {:.0} |",
        n_evaluated as f64 / materialize_secs
    ));
    println_line(&format!(
        "due list of one clinician ({} patients, {n_items} rows per page, {n_queries} queries, each patient audited): p50 {:.2} ms, p99 {:.2} ms",
        n_patients.div_ceil(clinicians.len()),
        quantile(0.5),
        quantile(0.99)
    ));
    Ok(())
}
