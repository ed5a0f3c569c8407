//! Batch enrolment: many patients into one plan from a file (CSV or JSON) or from a
//! filter (a clinician's care-team patients, or every patient).
//!
//! A file's batch is keyed by the SHA-256 of its bytes and the plan
//! (`assessments.enrollment_batches`): running the same file again resumes the same
//! batch. Rows are enrolled [`ROWS_PER_TX`] to a transaction, and each row's outcome
//! is written in the transaction that enrolled it (`enrollment_batch_rows`), so after
//! an interruption — a crash, Ctrl-C, a lost connection — a re-run skips exactly the
//! rows that committed and does the rest: every row once. Re-running a finished
//! batch changes nothing and reports the same outcomes.
//!
//! A row is **enrolled**, **already enrolled** (an active enrolment existed; not an
//! error) or **invalid**, with a code saying why (`invalid_patient_id`,
//! `patient_not_found`, `invalid_time_zone`, ...). Reports name rows by number (the
//! header is not a row; the first data row is 1), never by their content.
//!
//! **CSV**: a header naming the columns, `patient_id` required, `clinician_id`,
//! `time_zone` and `anchor_at` (RFC 3339) optional; blank cells take the defaults;
//! no quoting (the cells are ids, zone names and instants). **JSON**: an array of
//! objects with the same fields.

use std::collections::HashSet;

use db::TenantTx;
use kernel::{PatientId, TenantId, UserId};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::enrollment::{self, EnrollError, Enrolled, NewEnrollment};

/// Rows enrolled per transaction.
pub const ROWS_PER_TX: usize = 500;
/// The most rows one file may hold.
pub const ROWS_MAX: usize = 1_000_000;
/// Patients read per page when enrolling from a filter.
pub const FILTER_PAGE_LEN: i64 = 100;

/// One row as read from the file: text, checked when it is enrolled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRow {
    #[serde(default)]
    pub patient_id: Option<String>,
    #[serde(default)]
    pub clinician_id: Option<String>,
    #[serde(default)]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub anchor_at: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Csv,
    Json,
}

impl FileFormat {
    /// By the file name's extension: `.json` is JSON, anything else CSV.
    pub fn from_path(path: &str) -> Self {
        if path.to_ascii_lowercase().ends_with(".json") {
            FileFormat::Json
        } else {
            FileFormat::Csv
        }
    }
}

/// Why a file could not be read at all (before any row is enrolled).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("the file is not UTF-8")]
    NotUtf8,
    #[error("the CSV file has no header line")]
    NoHeader,
    #[error("the CSV header names an unknown column {0:?}")]
    UnknownColumn(String),
    #[error("the CSV header has no patient_id column")]
    NoPatientColumn,
    #[error("the file holds more than {ROWS_MAX} rows")]
    TooManyRows,
    #[error("the JSON is not an array of rows: {0}")]
    Json(String),
}

/// Reads a file's rows.
pub fn parse(bytes: &[u8], format: FileFormat) -> Result<Vec<BatchRow>, FileError> {
    let text = std::str::from_utf8(bytes).map_err(|_| FileError::NotUtf8)?;
    let rows = match format {
        FileFormat::Json => serde_json::from_str::<Vec<BatchRow>>(text).map_err(|err| {
            // serde's message names the position and field, never a value.
            FileError::Json(format!("line {} column {}", err.line(), err.column()))
        })?,
        FileFormat::Csv => parse_csv(text)?,
    };
    if rows.len() > ROWS_MAX {
        return Err(FileError::TooManyRows);
    }
    Ok(rows)
}

fn parse_csv(text: &str) -> Result<Vec<BatchRow>, FileError> {
    let mut lines = text.lines();
    let header = lines
        .by_ref()
        .find(|line| !line.trim().is_empty())
        .ok_or(FileError::NoHeader)?;
    let columns: Vec<String> = header
        .trim_start_matches('\u{feff}')
        .split(',')
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    for column in &columns {
        if !["patient_id", "clinician_id", "time_zone", "anchor_at"].contains(&column.as_str()) {
            return Err(FileError::UnknownColumn(column.clone()));
        }
    }
    if !columns.iter().any(|column| column == "patient_id") {
        return Err(FileError::NoPatientColumn);
    }
    let mut rows = Vec::new();
    for line in lines {
        // A blank line is still a row (an invalid one), so row numbers match the
        // file's data lines — except trailing blank lines, dropped below.
        let mut row = BatchRow::default();
        for (column, cell) in columns.iter().zip(line.split(',')) {
            let cell = cell.trim();
            if cell.is_empty() {
                continue;
            }
            let cell = Some(cell.to_owned());
            match column.as_str() {
                "patient_id" => row.patient_id = cell,
                "clinician_id" => row.clinician_id = cell,
                "time_zone" => row.time_zone = cell,
                _ => row.anchor_at = cell,
            }
        }
        rows.push(row);
        if rows.len() > ROWS_MAX {
            return Err(FileError::TooManyRows);
        }
    }
    while rows.last().is_some_and(|row| *row == BatchRow::default()) {
        rows.pop();
    }
    Ok(rows)
}

/// What a row's blank cells take.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub time_zone: String,
    pub clinician_id: Option<UserId>,
    /// `None`: the moment of enrolment.
    pub anchor_at: Option<OffsetDateTime>,
}

/// How a run goes.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    pub rows_per_tx: usize,
    /// Stop after this many rows of this run have been enrolled and committed, as an
    /// interruption would (for tests and for enrolling a file in parts).
    pub stop_after_rows: Option<usize>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            rows_per_tx: ROWS_PER_TX,
            stop_after_rows: None,
        }
    }
}

/// A row's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOutcome {
    Enrolled(Uuid),
    AlreadyEnrolled(Uuid),
    /// A code: why the row was refused.
    Invalid(&'static str),
}

/// A batch's outcomes so far (all runs together).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchReport {
    pub batch_id: Uuid,
    pub n_rows: usize,
    pub n_enrolled: usize,
    pub n_already_enrolled: usize,
    /// Rows done by earlier runs, skipped by this one.
    pub n_skipped: usize,
    /// (row number, reason code), by row number.
    pub invalid: Vec<(usize, String)>,
    /// Every row has its outcome.
    pub finished: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("plan_id: no such plan")]
    PlanNotFound,
    #[error("enrolling a row: {0}")]
    Enroll(#[source] EnrollError),
    #[error(transparent)]
    Unexpected(#[from] sqlx::Error),
}

/// The SHA-256 of a batch file: the batch's identity with the plan.
pub fn file_sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A batch's identity with the plan: the file and the defaults its blank cells take,
/// so the same file run again with another default time zone, clinician or anchor is
/// a new batch rather than the resumption of the old one.
fn batch_key(file_sha256: &[u8; 32], defaults: &Defaults) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(file_sha256);
    hasher.update(defaults.time_zone.as_bytes());
    hasher.update([0]);
    if let Some(clinician_id) = defaults.clinician_id {
        hasher.update(clinician_id.as_uuid().as_bytes());
    }
    hasher.update([0]);
    if let Some(anchor_at) = defaults.anchor_at {
        hasher.update(anchor_at.unix_timestamp_nanos().to_be_bytes());
    }
    hasher.finalize().into()
}

/// Enrols (or resumes enrolling) the rows of a file into a plan, in transactions of
/// `tenant_id` as `actor`. `progress` is told how many rows each committed
/// transaction did (skipped rows are told first, at once).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    pool: &PgPool,
    tenant_id: TenantId,
    actor: &str,
    plan_id: Uuid,
    file_sha256: [u8; 32],
    rows: &[BatchRow],
    defaults: &Defaults,
    options: RunOptions,
    now: OffsetDateTime,
    mut progress: impl FnMut(u64),
) -> Result<BatchReport, BatchError> {
    assert!(options.rows_per_tx >= 1, "BUG: rows_per_tx is at least 1");
    let mut tx = TenantTx::begin_as(pool, tenant_id, actor, None).await?;
    if crate::plan_store::get(&mut tx, plan_id).await?.is_none() {
        return Err(BatchError::PlanNotFound);
    }
    let n_rows = i32::try_from(rows.len()).expect("BUG: rows are bounded by ROWS_MAX");
    let file_sha256 = batch_key(&file_sha256, defaults);
    sqlx::query(
        "INSERT INTO assessments.enrollment_batches (tenant_id, id, plan_id, file_sha256, n_rows)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (tenant_id, plan_id, file_sha256) DO NOTHING",
    )
    .bind(tenant_id.as_uuid())
    .bind(Uuid::now_v7())
    .bind(plan_id)
    .bind(&file_sha256[..])
    .bind(n_rows)
    .execute(&mut *tx)
    .await?;
    let batch_id: Uuid = sqlx::query_scalar(
        "SELECT id FROM assessments.enrollment_batches
         WHERE tenant_id = $1 AND plan_id = $2 AND file_sha256 = $3",
    )
    .bind(tenant_id.as_uuid())
    .bind(plan_id)
    .bind(&file_sha256[..])
    .fetch_one(&mut *tx)
    .await?;
    let done: Vec<i32> = sqlx::query_scalar(
        "SELECT row_number FROM assessments.enrollment_batch_rows WHERE tenant_id = $1 AND batch_id = $2",
    )
    .bind(tenant_id.as_uuid())
    .bind(batch_id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let done: HashSet<usize> = done
        .into_iter()
        .map(|n| usize::try_from(n).expect("BUG: row numbers are positive"))
        .collect();
    let n_skipped = done.len();
    progress(n_skipped as u64);

    let pending: Vec<(usize, &BatchRow)> = rows
        .iter()
        .enumerate()
        .map(|(index, row)| (index + 1, row))
        .filter(|(number, _)| !done.contains(number))
        .collect();
    let budget = options.stop_after_rows.unwrap_or(usize::MAX);
    let mut n_done_now = 0;
    for chunk in pending.chunks(options.rows_per_tx) {
        if n_done_now >= budget {
            break;
        }
        let chunk = &chunk[..chunk.len().min(budget - n_done_now)];
        let mut tx = TenantTx::begin_as(pool, tenant_id, actor, None).await?;
        let mut numbers = Vec::with_capacity(chunk.len());
        let mut outcomes = Vec::with_capacity(chunk.len());
        let mut reasons = Vec::with_capacity(chunk.len());
        let mut enrollment_ids = Vec::with_capacity(chunk.len());
        for (number, row) in chunk {
            let outcome = enroll_row(&mut tx, plan_id, row, defaults, now).await?;
            numbers.push(i32::try_from(*number).expect("BUG: row numbers are bounded"));
            let (kind, reason, id) = match outcome {
                RowOutcome::Enrolled(id) => ("enrolled", None, Some(id)),
                RowOutcome::AlreadyEnrolled(id) => ("already_enrolled", None, Some(id)),
                RowOutcome::Invalid(code) => ("invalid", Some(code), None),
            };
            outcomes.push(kind);
            reasons.push(reason);
            enrollment_ids.push(id);
        }
        sqlx::query(
            "INSERT INTO assessments.enrollment_batch_rows
                 (tenant_id, batch_id, row_number, outcome, reason, enrollment_id)
             SELECT $1, $2, u.n, u.outcome::assessments.batch_outcome, u.reason, u.enrollment_id
             FROM unnest($3::int[], $4::text[], $5::text[], $6::uuid[]) AS u(n, outcome, reason, enrollment_id)
             ON CONFLICT DO NOTHING",
        )
        .bind(tenant_id.as_uuid())
        .bind(batch_id)
        .bind(&numbers)
        .bind(&outcomes)
        .bind(&reasons)
        .bind(&enrollment_ids)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        n_done_now += chunk.len();
        progress(chunk.len() as u64);
    }

    let mut tx = TenantTx::begin_as(pool, tenant_id, actor, None).await?;
    let report = report(&mut tx, batch_id, rows.len(), n_skipped).await?;
    if report.finished {
        sqlx::query(
            "UPDATE assessments.enrollment_batches SET status = 'done', finished_at = now()
             WHERE tenant_id = $1 AND id = $2 AND status = 'running'",
        )
        .bind(tenant_id.as_uuid())
        .bind(batch_id)
        .execute(&mut *tx)
        .await?;
        enqueue_backfill(&mut tx, plan_id, now).await?;
    }
    tx.commit().await?;
    Ok(report)
}

/// A batch's outcomes so far.
pub async fn report(
    tx: &mut TenantTx,
    batch_id: Uuid,
    n_rows: usize,
    n_skipped: usize,
) -> Result<BatchReport, sqlx::Error> {
    let rows: Vec<(i32, String, Option<String>)> = sqlx::query_as(
        "SELECT row_number, outcome::text, reason FROM assessments.enrollment_batch_rows
         WHERE tenant_id = $1 AND batch_id = $2 ORDER BY row_number",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(batch_id)
    .fetch_all(&mut **tx)
    .await?;
    let mut report = BatchReport {
        batch_id,
        n_rows,
        n_enrolled: 0,
        n_already_enrolled: 0,
        n_skipped,
        invalid: Vec::new(),
        finished: rows.len() == n_rows,
    };
    for (number, outcome, reason) in rows {
        match outcome.as_str() {
            "enrolled" => report.n_enrolled += 1,
            "already_enrolled" => report.n_already_enrolled += 1,
            _ => report.invalid.push((
                usize::try_from(number).expect("BUG: row numbers are positive"),
                reason.unwrap_or_default(),
            )),
        }
    }
    Ok(report)
}

/// Enrols one row; refusals are outcomes, only unexpected failures are errors.
async fn enroll_row(
    tx: &mut TenantTx,
    plan_id: Uuid,
    row: &BatchRow,
    defaults: &Defaults,
    now: OffsetDateTime,
) -> Result<RowOutcome, BatchError> {
    let Some(patient_id) = row.patient_id.as_deref() else {
        return Ok(RowOutcome::Invalid("missing_patient_id"));
    };
    let Ok(patient_id) = patient_id.parse::<PatientId>() else {
        return Ok(RowOutcome::Invalid("invalid_patient_id"));
    };
    let clinician_id = match row.clinician_id.as_deref() {
        None => defaults.clinician_id,
        Some(text) => match text.parse::<UserId>() {
            Ok(id) => Some(id),
            Err(_) => return Ok(RowOutcome::Invalid("invalid_clinician_id")),
        },
    };
    let anchor_at = match row.anchor_at.as_deref() {
        None => defaults.anchor_at,
        Some(text) => match OffsetDateTime::parse(text, &Rfc3339) {
            Ok(at) => Some(at),
            Err(_) => return Ok(RowOutcome::Invalid("invalid_anchor_at")),
        },
    };
    let new = NewEnrollment {
        plan_id,
        patient_id,
        clinician_id,
        time_zone: row
            .time_zone
            .clone()
            .unwrap_or_else(|| defaults.time_zone.clone()),
        anchor_at,
    };
    match enrollment::enroll(tx, &new, now).await {
        Ok(Enrolled::New(id)) => Ok(RowOutcome::Enrolled(id)),
        Ok(Enrolled::Already(id)) => Ok(RowOutcome::AlreadyEnrolled(id)),
        Err(
            err @ (EnrollError::PatientNotFound
            | EnrollError::InvalidTimeZone
            | EnrollError::PlanRetired
            | EnrollError::PlanNotFound),
        ) => Ok(RowOutcome::Invalid(err.code())),
        Err(err) => Err(BatchError::Enroll(err)),
    }
}

/// Which patients a filter enrolment takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatientFilter {
    /// The patients on this user's care teams.
    CareTeamOf(UserId),
    /// Every patient of the tenant.
    All,
}

/// What a filter enrolment did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterReport {
    pub n_enrolled: usize,
    pub n_already_enrolled: usize,
    pub n_invalid: usize,
}

/// Enrols every patient the filter selects, a page per transaction. Idempotent: a
/// re-run (after an interruption too) reports the patients enrolled before as
/// already enrolled.
#[allow(clippy::too_many_arguments)]
pub async fn run_filter(
    pool: &PgPool,
    tenant_id: TenantId,
    actor: &str,
    plan_id: Uuid,
    filter: PatientFilter,
    defaults: &Defaults,
    now: OffsetDateTime,
    mut progress: impl FnMut(u64),
) -> Result<FilterReport, BatchError> {
    let mut report = FilterReport::default();
    let mut after = None;
    loop {
        let mut tx = TenantTx::begin_as(pool, tenant_id, actor, None).await?;
        if after.is_none() && crate::plan_store::get(&mut tx, plan_id).await?.is_none() {
            return Err(BatchError::PlanNotFound);
        }
        let page = match filter {
            PatientFilter::CareTeamOf(user_id) => {
                clinical::care_team::patient_ids_of(&mut tx, user_id, after, FILTER_PAGE_LEN)
                    .await?
            }
            PatientFilter::All => {
                clinical::patient::list_ids(&mut tx, after, FILTER_PAGE_LEN).await?
            }
        };
        let Some(last) = page.last().copied() else {
            enqueue_backfill(&mut tx, plan_id, now).await?;
            tx.commit().await?;
            return Ok(report);
        };
        for patient_id in &page {
            let row = BatchRow {
                patient_id: Some(patient_id.to_string()),
                ..BatchRow::default()
            };
            match enroll_row(&mut tx, plan_id, &row, defaults, now).await? {
                RowOutcome::Enrolled(_) => report.n_enrolled += 1,
                RowOutcome::AlreadyEnrolled(_) => report.n_already_enrolled += 1,
                RowOutcome::Invalid(_) => report.n_invalid += 1,
            }
        }
        tx.commit().await?;
        progress(page.len() as u64);
        after = Some(last);
    }
}

/// Once a batch has enrolled everyone it will, the plan's backfill (if it asks for
/// one) covers them all in one durable job chain rather than one job per row.
async fn enqueue_backfill(
    tx: &mut TenantTx,
    plan_id: Uuid,
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    match crate::plan_store::get(tx, plan_id).await? {
        Some(plan) => crate::backfill::enqueue_for_plan(tx, plan_id, &plan.definition, now).await,
        None => Ok(()),
    }
}
