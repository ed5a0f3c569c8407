//! Responses: a submitted questionnaire, checked, scored and stored, in the caller's
//! tenant transaction.
//!
//! [`submit`] validates the answers against the instrument version ([`crate::score`],
//! refusing with its item-naming reason), checks that the respondent may answer
//! (a guardian only while they have access under the plan's family rules, a
//! clinician-rated instrument only from a clinician), stores the response with its
//! instrument version and score (`assessments.responses` is insert-only), completes
//! the instance it answers, compares it with the patient's baseline and previous
//! response ([`crate::progress`]) and, when an answer raises [`Flag::SelfHarm`],
//! raises an urgent safety event ([`crate::safety`]) in the same transaction,
//! whatever the total. Every read and write is audited in the same transaction.
//!
//! This module must never put an answer, a score or a band in an error, an event,
//! a log line or an audit detail: errors name items and states, events carry ids and
//! codes only.

use std::fmt;

use audit::AuditEntry;
use db::TenantTx;
use identity::keyring::Keyring;
use identity::vault::Access;
use kernel::{Actor, PatientId, Role};
use platform::outbox::{Event, Outbox};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::change::{Progress, Reliability, progress};
use crate::instrument::{Flag, Instrument, InstrumentCode, Respondent};
use crate::plan::PlanDefinition;
use crate::rules::{Guardian, PatientFacts, has_access};
use crate::scoring::{Answers, Score, ScoreError, score};

/// The most answers one submission may carry (the longest instrument has 20 items).
pub const ANSWERS_MAX: usize = 100;
/// The most points one score history returns.
pub const HISTORY_LEN_MAX: i64 = 500;

/// Who answered the questions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answerer {
    /// The patient, about themself (also when a clinician types in a paper form).
    Patient,
    /// A parent or guardian (an identity related-person id), about the patient.
    Guardian(Uuid),
    /// A clinician rating what they observed.
    Clinician,
}

impl Answerer {
    pub const fn respondent(self) -> Respondent {
        match self {
            Answerer::Patient => Respondent::Patient,
            Answerer::Guardian(_) => Respondent::ParentGuardian,
            Answerer::Clinician => Respondent::Clinician,
        }
    }

    pub const fn person_id(self) -> Option<Uuid> {
        match self {
            Answerer::Guardian(person_id) => Some(person_id),
            Answerer::Patient | Answerer::Clinician => None,
        }
    }

    /// The `assessments.respondent` value.
    pub const fn as_sql(self) -> &'static str {
        respondent_sql(self.respondent())
    }

    fn from_sql(respondent: &str, person_id: Option<Uuid>) -> Self {
        match (respondent, person_id) {
            ("patient", _) => Answerer::Patient,
            ("clinician", _) => Answerer::Clinician,
            ("guardian", Some(person_id)) => Answerer::Guardian(person_id),
            (other, _) => panic!("BUG: assessments.respondent {other:?} without its person"),
        }
    }
}

/// The SQL enum value of a respondent (`parent_guardian` is `guardian` there).
pub const fn respondent_sql(respondent: Respondent) -> &'static str {
    match respondent {
        Respondent::Patient => "patient",
        Respondent::ParentGuardian => "guardian",
        Respondent::Clinician => "clinician",
    }
}

/// Who handed the answers in.
#[derive(Debug, Clone)]
pub enum Submitter {
    /// A user or API key of the tenant, already allowed to access the patient.
    Staff(Actor),
    /// A one-time link token (its id), already checked and spent by [`crate::link`].
    Link(Uuid),
}

impl Submitter {
    /// `user:<id>`, `api_key:<id>`, `system` or `link:<token id>`.
    pub fn name(&self) -> String {
        match self {
            Submitter::Staff(actor) => actor.audit_name(),
            Submitter::Link(token_id) => format!("link:{token_id}"),
        }
    }
}

/// A questionnaire handed in. `Debug` shows no answer.
#[derive(Clone)]
pub struct Submission {
    pub patient_id: PatientId,
    /// The due instance it answers; `None` for an unscheduled response.
    pub instance_id: Option<Uuid>,
    pub instrument: InstrumentCode,
    /// `None`: the instance's version, or the latest without an instance.
    pub version: Option<u16>,
    /// `None`: the instance's respondent (required without an instance).
    pub answerer: Option<Answerer>,
    /// Item codes with the value of the option chosen; unanswered items absent.
    pub answers: Vec<(String, u8)>,
}

impl fmt::Debug for Submission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Submission")
            .field("patient_id", &self.patient_id)
            .field("instance_id", &self.instance_id)
            .field("instrument", &self.instrument)
            .field("version", &self.version)
            .field("answerer", &self.answerer)
            .field("n_answers", &self.answers.len())
            .finish()
    }
}

/// A failure that is no business outcome. Names causes, never values.
#[derive(Debug, thiserror::Error)]
pub enum Unexpected {
    #[error("assessments storage")]
    Database(#[from] sqlx::Error),
    #[error("writing the audit event")]
    Audit(#[from] audit::AuditError),
    #[error("reading the patient's birth date from the vault")]
    Vault(#[from] identity::vault::VaultError),
    #[error("a stored plan definition or score does not parse")]
    Stored(#[from] serde_json::Error),
}

/// Why a submission was refused. Messages name items, instruments and states only.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("no such patient")]
    PatientNotFound,
    #[error("no such assessment instance for this patient")]
    InstanceNotFound,
    #[error("no instrument {instrument} version {version}")]
    UnknownInstrument {
        instrument: InstrumentCode,
        version: u16,
    },
    #[error("no instrument {instrument}")]
    UnknownInstrumentCode { instrument: InstrumentCode },
    #[error("this instance asks for {instrument} version {version}")]
    InstrumentMismatch {
        instrument: InstrumentCode,
        version: u16,
    },
    #[error("this instance is to be answered by its {expected} respondent")]
    RespondentMismatch { expected: &'static str },
    #[error("say who answered (respondent): there is no instance to take it from")]
    RespondentRequired,
    #[error("this instance was already answered")]
    AlreadyAnswered,
    #[error("this instance is not open yet")]
    NotOpenYet,
    #[error("this instance is closed ({status})")]
    Closed { status: &'static str },
    #[error("only a clinician may answer a clinician-rated instrument")]
    NotAClinician,
    #[error("this guardian has no access to the patient's assessments")]
    GuardianWithoutAccess,
    #[error("too many answers: at most {ANSWERS_MAX}")]
    TooManyAnswers,
    #[error("the answers cannot be scored: {0}")]
    Invalid(#[from] ScoreError),
    #[error(transparent)]
    Unexpected(#[from] Unexpected),
}

macro_rules! unexpected_from {
    ($target:ty: $($source:ty),+) => {
        $(impl From<$source> for $target {
            fn from(err: $source) -> Self {
                Self::Unexpected(Unexpected::from(err))
            }
        })+
    };
}
pub(crate) use unexpected_from;

unexpected_from!(SubmitError: sqlx::Error, audit::AuditError, identity::vault::VaultError, serde_json::Error);

/// A change between two scores, as stored.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRecord {
    /// Later minus earlier: negative is fewer symptoms.
    pub delta: i32,
    /// `reliably_improved`, `reliably_deteriorated` or `not_reliable`.
    pub reliability: ReliabilityRecord,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReliabilityRecord {
    ReliablyImproved,
    ReliablyDeteriorated,
    NotReliable,
}

impl ReliabilityRecord {
    pub const fn as_str(self) -> &'static str {
        match self {
            ReliabilityRecord::ReliablyImproved => "reliably_improved",
            ReliabilityRecord::ReliablyDeteriorated => "reliably_deteriorated",
            ReliabilityRecord::NotReliable => "not_reliable",
        }
    }
}

impl From<Reliability> for ReliabilityRecord {
    fn from(reliability: Reliability) -> Self {
        match reliability {
            Reliability::ReliablyImproved => ReliabilityRecord::ReliablyImproved,
            Reliability::ReliablyDeteriorated => ReliabilityRecord::ReliablyDeteriorated,
            Reliability::NotReliable => ReliabilityRecord::NotReliable,
        }
    }
}

/// Progress as stored with a response: since the patient's first response to the
/// instrument (the baseline) and since the one before.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressRecord {
    /// The first response on this instrument; this response's own id when it is the
    /// first.
    pub baseline_response_id: Uuid,
    pub since_baseline: ChangeRecord,
    pub previous_response_id: Option<Uuid>,
    pub since_previous: Option<ChangeRecord>,
    /// At least a 50% fall from the baseline.
    pub response: bool,
    /// Below the instrument's remission threshold.
    pub remission: bool,
}

impl ProgressRecord {
    fn new(baseline: Uuid, previous: Option<Uuid>, progress: &Progress) -> Self {
        let record = |change: crate::Change| ChangeRecord {
            delta: change.delta(),
            reliability: change.reliability().into(),
        };
        Self {
            baseline_response_id: baseline,
            since_baseline: record(progress.since_baseline()),
            previous_response_id: previous,
            since_previous: progress.since_previous().map(record),
            response: progress.is_response(),
            remission: progress.is_remission(),
        }
    }
}

impl fmt::Debug for ProgressRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProgressRecord { [redacted] }")
    }
}

/// One subscale of a stored score.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscaleRecord {
    pub code: String,
    pub total: u16,
    pub n_endorsed: u8,
    pub criterion_met: Option<bool>,
    pub positive_screen: Option<bool>,
}

/// A score as stored in `responses.score`: what [`Score`] said, frozen with the
/// instrument version that produced it, plus progress where the instrument defines
/// change. `Debug` prints no value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreRecord {
    pub total: u16,
    pub band: String,
    pub band_label: String,
    pub positive_screen: Option<bool>,
    pub subscales: Vec<SubscaleRecord>,
    pub provisional_diagnosis: Option<bool>,
    pub flags: Vec<String>,
    pub prorated_items: Vec<String>,
    pub unanswered_items: Vec<String>,
    pub progress: Option<ProgressRecord>,
}

impl ScoreRecord {
    fn new(score: &Score, progress: Option<ProgressRecord>) -> Self {
        Self {
            total: score.total(),
            band: score.band().code().to_owned(),
            band_label: score.band().label().to_owned(),
            positive_screen: score.positive_screen(),
            subscales: score
                .subscales()
                .iter()
                .map(|subscale| SubscaleRecord {
                    code: subscale.code().to_owned(),
                    total: subscale.total(),
                    n_endorsed: subscale.n_endorsed(),
                    criterion_met: subscale.criterion_met(),
                    positive_screen: subscale.positive_screen(),
                })
                .collect(),
            provisional_diagnosis: score.provisional_diagnosis(),
            flags: score
                .flags()
                .iter()
                .map(|flag| flag.as_str().to_owned())
                .collect(),
            prorated_items: score
                .prorated_items()
                .iter()
                .map(|&item| item.to_owned())
                .collect(),
            unanswered_items: score
                .unanswered_items()
                .iter()
                .map(|&item| item.to_owned())
                .collect(),
            progress,
        }
    }
}

impl fmt::Debug for ScoreRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ScoreRecord { [redacted] }")
    }
}

/// What [`submit`] stored.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub response_id: Uuid,
    pub instance_id: Option<Uuid>,
    pub instrument: InstrumentCode,
    pub version: u16,
    pub score: ScoreRecord,
    /// The urgent safety event raised by this response, if any.
    pub safety_event_id: Option<Uuid>,
    pub submitted_at: OffsetDateTime,
}

/// The instance being answered, locked for the transaction.
#[derive(sqlx::FromRow)]
struct InstanceRow {
    patient_id: Uuid,
    enrollment_id: Uuid,
    instrument_code: String,
    instrument_version: i32,
    respondent: String,
    respondent_person_id: Option<Uuid>,
    status: String,
    not_open_yet: bool,
    past_close: bool,
}

async fn lock_instance(
    tx: &mut TenantTx,
    instance_id: Uuid,
) -> Result<Option<InstanceRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT patient_id, enrollment_id, instrument_code, instrument_version,
                respondent::text AS respondent, respondent_person_id, status::text AS status,
                now() < opens_at AS not_open_yet, now() > closes_at AS past_close
         FROM assessments.instances WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(instance_id)
    .fetch_optional(&mut **tx)
    .await
}

/// Checks, scores and stores `submission` for `submitter` in `tx`; see the module.
///
/// The caller has decided that `submitter` may act for the patient (the API checks
/// the care team; [`crate::link`] checks the token). This function decides who may
/// *answer*: the instance's respondent, a guardian only with access on today's date
/// (their relationship active and the patient under the plan's
/// `guardian_access_until_age`), a clinician-rated form only from a clinician.
pub async fn submit(
    tx: &mut TenantTx,
    keyring: &Keyring,
    submitter: &Submitter,
    submission: Submission,
) -> Result<Submitted, SubmitError> {
    if submission.answers.len() > ANSWERS_MAX {
        return Err(SubmitError::TooManyAnswers);
    }
    let patient_id = submission.patient_id;
    if clinical::patient::get(tx, patient_id).await?.is_none() {
        return Err(SubmitError::PatientNotFound);
    }

    // The instance, when there is one, fixes the instrument, its version and who
    // answers; without one the submission says.
    let mut plan: Option<(PlanDefinition, String)> = None;
    let (instrument, answerer) = match submission.instance_id {
        Some(instance_id) => {
            let instance = lock_instance(tx, instance_id)
                .await?
                .filter(|instance| instance.patient_id == patient_id.into_uuid())
                .ok_or(SubmitError::InstanceNotFound)?;
            match instance.status.as_str() {
                "completed" => return Err(SubmitError::AlreadyAnswered),
                "missed" => return Err(SubmitError::Closed { status: "missed" }),
                "cancelled" => {
                    return Err(SubmitError::Closed {
                        status: "cancelled",
                    });
                }
                _ if instance.past_close => {
                    return Err(SubmitError::Closed {
                        status: "past its window",
                    });
                }
                _ if instance.not_open_yet => return Err(SubmitError::NotOpenYet),
                _ => {}
            }
            let code = InstrumentCode::parse(&instance.instrument_code)
                .expect("BUG: an instance names an invalid instrument code");
            let version = u16::try_from(instance.instrument_version)
                .expect("BUG: an instance's instrument version is out of range");
            if code != submission.instrument || submission.version.is_some_and(|v| v != version) {
                return Err(SubmitError::InstrumentMismatch {
                    instrument: code,
                    version,
                });
            }
            let instrument =
                Instrument::by_code(&code, version).ok_or(SubmitError::UnknownInstrument {
                    instrument: code.clone(),
                    version,
                })?;
            let expected = Answerer::from_sql(&instance.respondent, instance.respondent_person_id);
            if submission
                .answerer
                .is_some_and(|answerer| answerer != expected)
            {
                return Err(SubmitError::RespondentMismatch {
                    expected: expected.as_sql(),
                });
            }
            plan = Some(plan_of(tx, instance.enrollment_id).await?);
            (instrument, expected)
        }
        None => {
            let instrument = match submission.version {
                Some(version) => Instrument::by_code(&submission.instrument, version).ok_or(
                    SubmitError::UnknownInstrument {
                        instrument: submission.instrument.clone(),
                        version,
                    },
                )?,
                None => Instrument::latest(&submission.instrument).ok_or(
                    SubmitError::UnknownInstrumentCode {
                        instrument: submission.instrument.clone(),
                    },
                )?,
            };
            let answerer = submission.answerer.ok_or(SubmitError::RespondentRequired)?;
            (instrument, answerer)
        }
    };

    let mut answers = Answers::new(answerer.respondent());
    for (item, value) in &submission.answers {
        answers.push(item.clone(), *value);
    }
    let score = score(instrument, &answers)?;

    match (answerer, submitter) {
        (Answerer::Clinician, Submitter::Staff(actor)) if actor.role == Role::Clinician => {}
        (Answerer::Clinician, _) => return Err(SubmitError::NotAClinician),
        (Answerer::Guardian(person_id), _) => {
            let (definition, time_zone) = match plan {
                Some(plan) => plan,
                None => (default_plan(), "UTC".to_owned()),
            };
            if !guardian_has_access(tx, keyring, patient_id, person_id, &definition, &time_zone)
                .await?
            {
                return Err(SubmitError::GuardianWithoutAccess);
            }
        }
        (Answerer::Patient, _) => {}
    }

    let response_id = Uuid::now_v7();
    let progress = progress_of(tx, patient_id, instrument, answerer, response_id, &score).await?;
    let record = ScoreRecord::new(&score, progress);
    let answers_json = serde_json::Value::Object(
        answers
            .iter()
            .map(|(item, value)| (item.to_owned(), json!(value)))
            .collect(),
    );
    let flags: Vec<&str> = score.flags().iter().map(|flag| flag.as_str()).collect();
    let inserted = sqlx::query_scalar::<_, OffsetDateTime>(
        "INSERT INTO assessments.responses
             (tenant_id, id, patient_id, instance_id, instrument_code, instrument_version, respondent,
              respondent_person_id, submitted_by, answers, total, band, score, flags)
         VALUES ($1, $2, $3, $4, $5, $6, $7::assessments.respondent, $8, $9, $10, $11::integer, $12, $13, $14)
         RETURNING submitted_at",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(response_id)
    .bind(patient_id.as_uuid())
    .bind(submission.instance_id)
    .bind(instrument.code().as_str())
    .bind(i32::from(instrument.version()))
    .bind(answerer.as_sql())
    .bind(answerer.person_id())
    .bind(submitter.name())
    .bind(&answers_json)
    .bind(i32::from(score.total()))
    .bind(score.band().code())
    .bind(serde_json::to_value(&record)?)
    .bind(&flags)
    .fetch_one(&mut **tx)
    .await;
    let submitted_at = match inserted {
        Ok(at) => at,
        Err(err) if violated_constraint(&err) == Some("responses_one_per_instance") => {
            return Err(SubmitError::AlreadyAnswered);
        }
        Err(err) => return Err(err.into()),
    };

    if let Some(instance_id) = submission.instance_id {
        sqlx::query(
            "UPDATE assessments.instances
             SET status = 'completed', completed_at = now(), response_id = $3, updated_at = now()
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tx.tenant_id().as_uuid())
        .bind(instance_id)
        .bind(response_id)
        .execute(&mut **tx)
        .await?;
    }

    let mut audit_entry =
        AuditEntry::patient("assessment_response.create", patient_id).purpose("treatment");
    audit_entry.details = json!({
        "response_id": response_id,
        "instance_id": submission.instance_id,
        "instrument": instrument.code().as_str(),
        "instrument_version": instrument.version(),
    });
    audit::append(tx, audit_entry).await?;
    platform::outbox::emit(
        tx,
        Outbox::Assessments,
        Event {
            event_type: "assessment.response_recorded",
            event_version: 1,
            aggregate_type: "assessment_response",
            aggregate_id: response_id,
            payload: json!({
                "response_id": response_id,
                "patient_id": patient_id,
                "instance_id": submission.instance_id,
                "instrument": instrument.code().as_str(),
                "instrument_version": instrument.version(),
            }),
        },
    )
    .await?;

    // Whatever the total: one positive self-harm answer reaches a person now.
    let safety_event_id = if score.has_flag(Flag::SelfHarm) {
        Some(
            crate::safety::raise(
                tx,
                patient_id,
                response_id,
                instrument.code(),
                crate::safety::SafetyKind::SelfHarm,
            )
            .await?,
        )
    } else {
        None
    };

    Ok(Submitted {
        response_id,
        instance_id: submission.instance_id,
        instrument: instrument.code().clone(),
        version: instrument.version(),
        score: record,
        safety_event_id,
        submitted_at,
    })
}

/// The plan version an enrolment follows, and the patient's time zone.
async fn plan_of(
    tx: &mut TenantTx,
    enrollment_id: Uuid,
) -> Result<(PlanDefinition, String), SubmitError> {
    let (definition, time_zone): (serde_json::Value, String) = sqlx::query_as(
        "SELECT v.definition, e.time_zone
         FROM assessments.enrollments e
         JOIN assessments.plan_versions v
           ON v.tenant_id = e.tenant_id AND v.plan_id = e.plan_id AND v.version = e.plan_version
         WHERE e.tenant_id = $1 AND e.id = $2",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(enrollment_id)
    .fetch_one(&mut **tx)
    .await?;
    Ok((serde_json::from_value(definition)?, time_zone))
}

/// The access rules without a plan: guardians answer until the default age.
fn default_plan() -> PlanDefinition {
    serde_json::from_value(json!({
        "rules": [],
        "cadence": { "every_days": 30 },
        "window": { "before_days": 0, "after_days": 0 },
    }))
    .expect("BUG: the default access plan parses")
}

/// Whether `person_id` is one of the patient's guardians with access today (on the
/// patient's wall clock). Reads the birth date through the vault, which audits it.
async fn guardian_has_access(
    tx: &mut TenantTx,
    keyring: &Keyring,
    patient_id: PatientId,
    person_id: Uuid,
    definition: &PlanDefinition,
    time_zone: &str,
) -> Result<bool, SubmitError> {
    let rows: Vec<(Uuid, time::Date, Option<time::Date>)> = sqlx::query_as(
        "SELECT person_id, since, until FROM assessments.guardians
         WHERE tenant_id = $1 AND patient_id = $2",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(patient_id.as_uuid())
    .fetch_all(&mut **tx)
    .await?;
    if !rows.iter().any(|(id, _, _)| *id == person_id) {
        return Ok(false);
    }
    let access = Access {
        purpose: Some("treatment".to_owned()),
        break_glass: false,
    };
    let birth_date = match identity::vault::read(tx, keyring, patient_id, &access).await {
        Ok(record) => record.demographics.birth_date,
        Err(identity::vault::VaultError::NotFound) => None,
        Err(err) => return Err(err.into()),
    };
    let facts = PatientFacts {
        birth_date: birth_date.map(civil),
        guardians: rows
            .into_iter()
            .map(|(person_id, since, until)| Guardian {
                person_id,
                since: civil(since),
                until: until.map(civil),
            })
            .collect(),
    };
    let now: OffsetDateTime = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut **tx)
        .await?;
    let zone = jiff::tz::TimeZone::get(time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
    let today = jiff::Timestamp::from_second(now.unix_timestamp())
        .expect("BUG: the database clock is within jiff's range")
        .to_zoned(zone)
        .date();
    Ok(has_access(definition, &facts, person_id, today))
}

fn civil(date: time::Date) -> jiff::civil::Date {
    jiff::civil::date(
        i16::try_from(date.year()).expect("BUG: a stored date beyond year 32767"),
        u8::from(date.month()) as i8,
        date.day() as i8,
    )
}

/// Progress since the baseline and the previous response on the same instrument by
/// the same kind of respondent; `None` for instruments that define no change.
async fn progress_of(
    tx: &mut TenantTx,
    patient_id: PatientId,
    instrument: &'static Instrument,
    answerer: Answerer,
    response_id: Uuid,
    current: &Score,
) -> Result<Option<ProgressRecord>, SubmitError> {
    if instrument.change_criteria().is_none() {
        return Ok(None);
    }
    let earlier = |order: &'static str| {
        format!(
            "SELECT id, instrument_version, answers FROM assessments.responses
             WHERE tenant_id = $1 AND patient_id = $2 AND instrument_code = $3
               AND respondent = $4::assessments.respondent
             ORDER BY submitted_at {order}, id {order} LIMIT 1"
        )
    };
    let mut found = Vec::with_capacity(2);
    for order in ["ASC", "DESC"] {
        let row: Option<(Uuid, i32, serde_json::Value)> = sqlx::query_as(&earlier(order))
            .bind(tx.tenant_id().as_uuid())
            .bind(patient_id.as_uuid())
            .bind(instrument.code().as_str())
            .bind(answerer.as_sql())
            .fetch_optional(&mut **tx)
            .await?;
        found.push(row);
    }
    let previous_row = found.pop().flatten();
    let baseline_row = found.pop().flatten();
    let rescore = |row: &(Uuid, i32, serde_json::Value)| -> Option<Score> {
        let version = u16::try_from(row.1).ok()?;
        let stored = Instrument::by_code(instrument.code(), version)?;
        let answers = answers_from_json(answerer.respondent(), &row.2)?;
        score(stored, &answers).ok()
    };
    let (baseline_id, baseline) = match &baseline_row {
        None => (response_id, current.clone()),
        Some(row) => match rescore(row) {
            Some(baseline) => (row.0, baseline),
            None => return Ok(None),
        },
    };
    let previous = match &previous_row {
        // The baseline is not also "the previous one".
        Some(row) if row.0 != baseline_id => rescore(row).map(|score| (row.0, score)),
        _ => None,
    };
    match progress(
        &baseline,
        previous.as_ref().map(|(_, score)| score),
        current,
    ) {
        Ok(progress) => Ok(Some(ProgressRecord::new(
            baseline_id,
            previous.map(|(id, _)| id),
            &progress,
        ))),
        // A new version on another scale starts a new baseline in spirit; we report none.
        Err(_) => Ok(None),
    }
}

fn answers_from_json(respondent: Respondent, value: &serde_json::Value) -> Option<Answers> {
    let mut answers = Answers::new(respondent);
    for (item, value) in value.as_object()? {
        answers.push(item.clone(), u8::try_from(value.as_u64()?).ok()?);
    }
    Some(answers)
}

/// A stored response. `Debug` prints ids and codes only.
#[derive(Clone)]
pub struct StoredResponse {
    pub id: Uuid,
    pub patient_id: PatientId,
    pub instance_id: Option<Uuid>,
    pub instrument: String,
    pub version: u16,
    pub answerer: Answerer,
    pub submitted_by: String,
    /// Item codes and values, in the instrument's order.
    pub answers: Vec<(String, u8)>,
    pub score: ScoreRecord,
    pub submitted_at: OffsetDateTime,
}

impl fmt::Debug for StoredResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredResponse")
            .field("id", &self.id)
            .field("patient_id", &self.patient_id)
            .field("instrument", &self.instrument)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

type ResponseRow = (
    Uuid,
    Uuid,
    Option<Uuid>,
    String,
    i32,
    String,
    Option<Uuid>,
    String,
    serde_json::Value,
    serde_json::Value,
    OffsetDateTime,
);

const SELECT_RESPONSE: &str =
    "SELECT id, patient_id, instance_id, instrument_code, instrument_version, respondent::text,
        respondent_person_id, submitted_by, answers, score, submitted_at
 FROM assessments.responses";

fn stored(row: ResponseRow) -> Result<StoredResponse, Unexpected> {
    let (
        id,
        patient_id,
        instance_id,
        instrument,
        version,
        respondent,
        person_id,
        submitted_by,
        answers,
        score,
        submitted_at,
    ) = row;
    let version = u16::try_from(version).expect("BUG: a stored instrument version is out of range");
    // In the instrument's order, as a form shows them.
    let order = InstrumentCode::parse(&instrument)
        .ok()
        .and_then(|code| Instrument::by_code(&code, version));
    let mut answers: Vec<(String, u8)> = answers
        .as_object()
        .map(|object| {
            object
                .iter()
                .filter_map(|(item, value)| {
                    Some((item.clone(), u8::try_from(value.as_u64()?).ok()?))
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(instrument) = order {
        answers.sort_by_key(|(item, _)| {
            instrument
                .items()
                .iter()
                .position(|known| known.code() == item)
        });
    }
    Ok(StoredResponse {
        id,
        patient_id: PatientId::new_unchecked(patient_id),
        instance_id,
        instrument,
        version,
        answerer: Answerer::from_sql(&respondent, person_id),
        submitted_by,
        answers,
        score: serde_json::from_value(score)?,
        submitted_at,
    })
}

/// Reads one response of the transaction's tenant and records
/// `assessment_response.read`; `None` when there is none (another tenant's included).
/// The caller checks that the actor may read the patient first; see [`patient_of`].
pub async fn get(
    tx: &mut TenantTx,
    response_id: Uuid,
    access: &Access,
) -> Result<Option<StoredResponse>, Unexpected> {
    let row: Option<ResponseRow> = sqlx::query_as(&format!(
        "{SELECT_RESPONSE} WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(response_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let response = stored(row)?;
    let mut entry = audit_entry("assessment_response.read", response.patient_id, access);
    entry.details = json!({ "response_id": response.id });
    audit::append(tx, entry).await?;
    Ok(Some(response))
}

/// The patient a response is about, without reading it (for access checks).
pub async fn patient_of(
    tx: &mut TenantTx,
    response_id: Uuid,
) -> Result<Option<PatientId>, sqlx::Error> {
    let patient_id: Option<Uuid> = sqlx::query_scalar(
        "SELECT patient_id FROM assessments.responses WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(response_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(patient_id.map(PatientId::new_unchecked))
}

/// One point of a score history: ready for a chart. `Debug` prints no value.
#[derive(Clone)]
pub struct ScorePoint {
    pub response_id: Uuid,
    pub instrument: String,
    pub version: u16,
    pub respondent: Answerer,
    pub submitted_at: OffsetDateTime,
    pub total: u16,
    pub band: String,
    pub flags: Vec<String>,
    pub progress: Option<ProgressRecord>,
}

impl fmt::Debug for ScorePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScorePoint")
            .field("response_id", &self.response_id)
            .finish_non_exhaustive()
    }
}

/// A patient's scores, oldest first, on one instrument or all, and records
/// `assessment_scores.read`. At most [`HISTORY_LEN_MAX`] points (the latest ones).
pub async fn history(
    tx: &mut TenantTx,
    patient_id: PatientId,
    instrument: Option<&InstrumentCode>,
    access: &Access,
) -> Result<Vec<ScorePoint>, Unexpected> {
    let rows: Vec<ResponseRow> = sqlx::query_as(&format!(
        "SELECT * FROM ({SELECT_RESPONSE}
           WHERE tenant_id = $1 AND patient_id = $2 AND ($3::text IS NULL OR instrument_code = $3)
           ORDER BY submitted_at DESC, id DESC LIMIT $4) latest
         ORDER BY submitted_at, id"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(patient_id.as_uuid())
    .bind(instrument.map(InstrumentCode::as_str))
    .bind(HISTORY_LEN_MAX)
    .fetch_all(&mut **tx)
    .await?;
    let mut points = Vec::with_capacity(rows.len());
    for row in rows {
        let response = stored(row)?;
        points.push(ScorePoint {
            response_id: response.id,
            instrument: response.instrument,
            version: response.version,
            respondent: response.answerer,
            submitted_at: response.submitted_at,
            total: response.score.total,
            band: response.score.band,
            flags: response.score.flags,
            progress: response.score.progress,
        });
    }
    let mut entry = audit_entry("assessment_scores.read", patient_id, access);
    entry.details =
        json!({ "instrument": instrument.map(InstrumentCode::as_str), "n_points": points.len() });
    audit::append(tx, entry).await?;
    Ok(points)
}

/// The unique constraint a statement violated, if that is why it failed.
pub(crate) fn violated_constraint(err: &sqlx::Error) -> Option<&str> {
    match err {
        sqlx::Error::Database(db_err)
            if db_err.kind() == sqlx::error::ErrorKind::UniqueViolation =>
        {
            db_err.constraint()
        }
        _ => None,
    }
}

/// An audit entry for a read on `access`'s basis (a purpose, or a break-glass reason).
pub(crate) fn audit_entry(
    action: &'static str,
    patient_id: PatientId,
    access: &Access,
) -> AuditEntry {
    let entry = AuditEntry::patient(action, patient_id).break_glass(access.break_glass);
    match &access.purpose {
        Some(purpose) => entry.purpose(purpose.clone()),
        None => entry,
    }
}
