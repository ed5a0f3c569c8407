//! Processing: accepted ADT and ORU messages become patients, encounters and
//! observations, through a durable job per message ([`Process`], `ingest.process`).
//!
//! - ADT A01 (admit) and A04 (register) create or update the patient from PID and
//!   open an encounter; A08 updates the patient; A03 finishes the patient's open
//!   encounter; A40 merges the patient named by MRG-1 into the one named by PID-3 (the
//!   merged-away record points at the survivor; nothing is deleted).
//! - ORU^R01 records each OBX as an observation on the patient, critical when flagged
//!   `HH`/`LL`/`AA` or outside the code's configured critical range; each emits
//!   `observation.recorded`.
//! - Patients are matched by their PID-3 identifier (the `MR` one, else the first)
//!   and its assigning authority; an unknown patient in an ORU or A08 is registered
//!   from its PID. PHI goes into the identity vault only, and every PHI read and write
//!   is audited, as the actor `integration:<listener>`.
//!
//! Order: messages about one patient (one ordering key, a keyed hash of the PID-3
//! identifier) are processed in the order they were received. A job first processes
//! any earlier message of its patient still pending, under a transaction-scoped lock
//! on the key, so a later message never overtakes an earlier one that is merely
//! waiting. A message that **fails** (bad data) is set aside: its job is dead (a dead
//! letter, with the reason), the message is `failed`, and the patient's later
//! messages go on. Other patients are never held up by it.
//!
//! Effects happen once: the message's `processed` mark commits with its effects, a
//! job finding its message processed does nothing, and each observation is unique by
//! its source (message, position).

use std::borrow::Cow;

use clinical::observation::{NewObservation, ObservationStatus, ObservationValue};
use db::TenantTx;
use hl7::typed::{Cx, Pid};
use hl7::{DateTime, Message};
use identity::keyring::{Keyring, KeyringError};
use identity::vault::{self, Access, Address, Demographics, Identifier, Sex, VaultError};
use kernel::PatientId;
use platform::jobs::{JobContext, JobError, JobKind};
use serde::{Deserialize, Serialize};
use time::{Date, Month, OffsetDateTime, UtcOffset};
use uuid::Uuid;

use crate::reply::{self, ApplicationAckArgs};
use crate::store::open_raw;

/// What a message of a supported type does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// ADT^A01: admit.
    Admit,
    /// ADT^A04: register an outpatient.
    Register,
    /// ADT^A08: update patient information.
    Update,
    /// ADT^A03: discharge.
    Discharge,
    /// ADT^A40: merge patient.
    Merge,
    /// ORU^R01: observation results.
    Results,
}

impl Event {
    /// The event of a message type (MSH-9.1) and trigger (MSH-9.2); `None` for a type
    /// Tenet does not process (answered `AR`).
    pub fn of(message_type: Option<&str>, trigger: Option<&str>) -> Option<Self> {
        match (message_type?, trigger?) {
            ("ADT", "A01") => Some(Self::Admit),
            ("ADT", "A04") => Some(Self::Register),
            ("ADT", "A08") => Some(Self::Update),
            ("ADT", "A03") => Some(Self::Discharge),
            ("ADT", "A40") => Some(Self::Merge),
            ("ORU", "R01") => Some(Self::Results),
            _ => None,
        }
    }
}

/// Why a message of a type Tenet does not process is rejected (ERR-8, and the stored
/// error): the types and triggers it does process.
pub const UNSUPPORTED: &str = "MSH-9: this message type is not processed here (supported: ADT^A01, ADT^A04, ADT^A08, ADT^A03, ADT^A40, ORU^R01)";

/// The identifier a message's patient is matched by: PID-3's `MR` identifier, else
/// its first, as (assigning authority, value). PHI: never log it.
pub fn patient_identifier(pid: &Pid<'_>) -> Option<(String, String)> {
    let mut first = None;
    for cx in pid.identifiers() {
        let Some(value) = cx.id().filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        let entry = (authority(&cx), value.into_owned());
        if cx.identifier_type_code().as_deref() == Some("MR") {
            return Some(entry);
        }
        first.get_or_insert(entry);
    }
    first
}

fn authority(cx: &Cx<'_>) -> String {
    let hd = cx.assigning_authority();
    hd.namespace_id()
        .filter(|v| !v.is_empty())
        .or_else(|| hd.universal_id())
        .map(Cow::into_owned)
        .unwrap_or_default()
}

/// How many earlier pending messages of one patient a job processes before its own.
pub const EARLIER_MAX: i64 = 64;

/// The job that processes one stored message.
pub struct Process {
    pub keyring: Keyring,
}

/// The arguments of [`Process`]: ids only.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ProcessArgs {
    pub message_id: Uuid,
}

/// Why a message could not be processed. `Invalid` is about the message (retrying
/// cannot help); its text names fields and rules, never their contents.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{0}")]
    Invalid(String),
    /// Something that may pass on a later attempt.
    #[error("{0}")]
    Retry(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl From<VaultError> for ProcessError {
    fn from(error: VaultError) -> Self {
        match error {
            VaultError::Database(error) => Self::Database(error),
            VaultError::Audit(audit::AuditError::Database(error)) => Self::Database(error),
            VaultError::Keyring(KeyringError::Database(error)) => Self::Database(error),
            // Someone else (an API edit) changed the record meanwhile: run again.
            VaultError::VersionConflict => Self::Retry(
                "the patient's record changed while this message was processed".to_owned(),
            ),
            // Names an authority and type, never a value.
            other @ VaultError::DuplicateIdentifier { .. } => Self::Invalid(other.to_string()),
            other => Self::Invalid(format!("the identity vault: {other}")),
        }
    }
}

impl From<clinical::patient::MergeError> for ProcessError {
    fn from(error: clinical::patient::MergeError) -> Self {
        match error {
            clinical::patient::MergeError::Unexpected(error) => Self::Database(error),
            other => Self::Invalid(format!("A40: {other}")),
        }
    }
}

impl JobKind for Process {
    const NAME: &'static str = "ingest.process";
    const VERSION: u32 = 1;
    // Not batched: a batch would hold the locks of several patients at once until it
    // commits, and two batches taking them in different orders would deadlock.
    const BATCHABLE: bool = false;
    // Enqueued by the store, one per accepted message.
    const SCHEDULABLE: bool = false;
    type Args = ProcessArgs;

    async fn run(
        &self,
        _ctx: &JobContext,
        tx: &mut TenantTx,
        args: ProcessArgs,
    ) -> Result<(), JobError> {
        let Some(state) = state(tx, args.message_id).await? else {
            return Err(JobError::Fail(format!("no message {}", args.message_id)));
        };
        match state.processing.as_deref() {
            Some("processed") => return Ok(()),
            Some("pending" | "failed") => {}
            _ => {
                return Err(JobError::Fail(format!(
                    "message {} is not to be processed: it was not accepted",
                    args.message_id
                )));
            }
        }
        if let Some(order_key) = &state.order_key {
            lock(tx, order_key).await?;
            // The lock may have waited for another job of this patient: look again.
            if processing(tx, args.message_id).await?.as_deref() == Some("processed") {
                return Ok(());
            }
            for earlier in earlier_pending(tx, order_key, args.message_id).await? {
                sqlx::query("SAVEPOINT earlier").execute(&mut **tx).await?;
                match self.process_one(tx, earlier).await {
                    Ok(()) => {
                        sqlx::query("RELEASE SAVEPOINT earlier")
                            .execute(&mut **tx)
                            .await?;
                    }
                    // Its own job records the failure; later messages go on.
                    Err(ProcessError::Invalid(_)) => {
                        sqlx::query("ROLLBACK TO SAVEPOINT earlier")
                            .execute(&mut **tx)
                            .await?;
                    }
                    Err(ProcessError::Database(error)) => return Err(error.into()),
                    Err(ProcessError::Retry(why)) => return Err(JobError::Retry(why)),
                }
            }
        }
        match self.process_one(tx, args.message_id).await {
            Ok(()) => Ok(()),
            Err(ProcessError::Invalid(reason)) => Err(JobError::Fail(reason)),
            Err(ProcessError::Retry(why)) => Err(JobError::Retry(why)),
            Err(ProcessError::Database(error)) => Err(error.into()),
        }
    }

    async fn on_dead(
        &self,
        tx: &mut TenantTx,
        args: ProcessArgs,
        error: &str,
    ) -> Result<(), sqlx::Error> {
        let marked: Option<(Option<String>, Option<String>)> = sqlx::query_as(
            "UPDATE ingest.messages SET processing = 'failed', processing_error = $3
             WHERE tenant_id = $1 AND id = $2 AND received_at BETWEEN ingest.id_instant($2) - interval '1 day' AND ingest.id_instant($2) + interval '1 day' AND processing IN ('pending', 'failed')
             RETURNING application_ack_type, reply_to",
        )
        .bind(tx.tenant_id().as_uuid())
        .bind(args.message_id)
        .bind(error)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some((condition, reply_to)) = marked
            && reply::wanted(condition.as_deref(), reply_to.as_deref(), false)
        {
            reply::enqueue(
                tx,
                ApplicationAckArgs {
                    message_id: args.message_id,
                    processed: false,
                    error: Some(error.to_owned()),
                },
            )
            .await?;
        }
        Ok(())
    }
}

/// Why a message was not put back for processing.
#[derive(Debug, thiserror::Error)]
pub enum ReprocessError {
    #[error("no message {0}")]
    NotFound(Uuid),
    #[error("message {0} was not accepted (it is kept as rejected); there is nothing to process")]
    NotProcessable(Uuid),
    #[error("message {0} was processed already; processing it again could undo later messages")]
    AlreadyProcessed(Uuid),
    #[error(
        "{n_later} later message(s) of this patient were processed since; applying message {message_id} now could undo them (--force applies it anyway)"
    )]
    LaterProcessed { message_id: Uuid, n_later: i64 },
    #[error("message {message_id} is waiting for its job {job_id} already")]
    AlreadyQueued { message_id: Uuid, job_id: Uuid },
    #[error(transparent)]
    Unexpected(#[from] sqlx::Error),
}

/// Puts a message whose processing failed (or never ran) back for processing, on the
/// owner role (an operator's `tenet ingest reprocess`): its dead jobs leave the
/// dead-letter view (kept, for the record), it is `pending` again, and a new job runs
/// it. Returns the new job's id.
pub async fn reprocess(
    owner: &sqlx::PgPool,
    message_id: Uuid,
    force: bool,
) -> Result<Uuid, ReprocessError> {
    let row: Option<(Uuid, Option<String>)> =
        sqlx::query_as("SELECT tenant_id, processing::text FROM ingest.messages WHERE id = $1 \
             AND received_at BETWEEN ingest.id_instant($1) - interval '1 day' AND ingest.id_instant($1) + interval '1 day'")
            .bind(message_id)
            .fetch_optional(owner)
            .await?;
    let Some((tenant_id, processing)) = row else {
        return Err(ReprocessError::NotFound(message_id));
    };
    match processing.as_deref() {
        None => return Err(ReprocessError::NotProcessable(message_id)),
        Some("processed") => return Err(ReprocessError::AlreadyProcessed(message_id)),
        _ => {}
    }
    let tenant_id = kernel::TenantId::new_unchecked(tenant_id);
    let mut tx = TenantTx::begin_as(owner, tenant_id, "operator:ingest.reprocess", None).await?;
    // An ADT applied after later ones of its patient would undo them (an old A08's
    // name over a newer one): refused unless the operator insists. Results are
    // recorded by source and in no order, so they are always safe.
    if !force {
        let n_later: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM ingest.messages later
             JOIN ingest.messages m ON m.tenant_id = later.tenant_id AND m.order_key = later.order_key
             WHERE m.tenant_id = $1 AND m.id = $2 AND m.message_type = 'ADT'
               AND m.received_at BETWEEN ingest.id_instant($2) - interval '1 day' AND ingest.id_instant($2) + interval '1 day'
               AND later.id > m.id AND later.processing = 'processed'",
        )
        .bind(tenant_id.as_uuid())
        .bind(message_id)
        .fetch_one(&mut *tx)
        .await?;
        if n_later > 0 {
            return Err(ReprocessError::LaterProcessed {
                message_id,
                n_later,
            });
        }
    }
    let jobs = platform::jobs::admin::find_by_args(
        &mut tx,
        Process::NAME,
        &serde_json::json!({ "message_id": message_id }),
    )
    .await?;
    if let Some(job) = jobs
        .iter()
        .find(|job| matches!(job.state.as_str(), "scheduled" | "retrying" | "running"))
    {
        return Err(ReprocessError::AlreadyQueued {
            message_id,
            job_id: job.id,
        });
    }
    for job in jobs
        .iter()
        .filter(|job| job.state == "dead" && job.discarded_at.is_none())
    {
        match platform::jobs::admin::discard(&mut tx, kernel::JobId::new_unchecked(job.id)).await {
            Ok(()) => {}
            Err(platform::jobs::admin::AdminError::Unexpected(error)) => return Err(error.into()),
            // Discarded meanwhile: nothing left to do for it.
            Err(_) => {}
        }
    }
    sqlx::query(
        "UPDATE ingest.messages SET processing = 'pending', processing_error = NULL,
             application_ack_code = NULL, application_acked_at = NULL
         WHERE tenant_id = $1 AND id = $2 AND received_at BETWEEN ingest.id_instant($2) - interval '1 day' AND ingest.id_instant($2) + interval '1 day'",
    )
    .bind(tenant_id.as_uuid())
    .bind(message_id)
    .execute(&mut *tx)
    .await?;
    let job_id = platform::jobs::enqueue(
        &mut tx,
        platform::jobs::JobSpec::<Process>::new(ProcessArgs { message_id })
            .queue(crate::store::PROCESS_QUEUE),
    )
    .await
    .map_err(|error| match error {
        platform::jobs::EnqueueError::Unexpected(error) => error,
        other => sqlx::Error::Protocol(other.to_string()),
    })?
    .job_id();
    tx.commit().await?;
    Ok(job_id.into_uuid())
}

struct State {
    processing: Option<String>,
    order_key: Option<Vec<u8>>,
}

async fn state(tx: &mut TenantTx, message_id: Uuid) -> Result<Option<State>, sqlx::Error> {
    let row: Option<(Option<String>, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT processing::text, order_key FROM ingest.messages WHERE tenant_id = $1 AND id = $2 AND received_at BETWEEN ingest.id_instant($2) - interval '1 day' AND ingest.id_instant($2) + interval '1 day'",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(message_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|(processing, order_key)| State {
        processing,
        order_key,
    }))
}

async fn processing(tx: &mut TenantTx, message_id: Uuid) -> Result<Option<String>, sqlx::Error> {
    Ok(state(tx, message_id).await?.and_then(|s| s.processing))
}

/// Serializes the processing of one patient's messages until the transaction ends.
async fn lock(tx: &mut TenantTx, order_key: &[u8]) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text || encode($2, 'hex'), 7))")
        .bind(tx.tenant_id().as_uuid().to_string())
        .bind(order_key)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn earlier_pending(
    tx: &mut TenantTx,
    order_key: &[u8],
    message_id: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM ingest.messages
         WHERE tenant_id = $1 AND order_key = $2 AND processing = 'pending' AND id < $3
         ORDER BY id LIMIT $4",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(order_key)
    .bind(message_id)
    .bind(EARLIER_MAX)
    .fetch_all(&mut **tx)
    .await
}

impl Process {
    /// Processes one message and marks it processed, in `tx`.
    async fn process_one(&self, tx: &mut TenantTx, message_id: Uuid) -> Result<(), ProcessError> {
        let (listener, raw_sealed, data_key_id, ack_condition, reply_to): (
            String,
            Vec<u8>,
            Uuid,
            Option<String>,
            Option<String>,
        ) = sqlx::query_as(
            "SELECT listener, raw_sealed, data_key_id, application_ack_type, reply_to
             FROM ingest.messages WHERE tenant_id = $1 AND id = $2 AND received_at BETWEEN ingest.id_instant($2) - interval '1 day' AND ingest.id_instant($2) + interval '1 day'",
        )
        .bind(tx.tenant_id().as_uuid())
        .bind(message_id)
        .fetch_one(&mut **tx)
        .await?;
        // A key that cannot be read now (the database) may be readable on a retry.
        let data_key = self
            .keyring
            .key(tx, data_key_id)
            .await
            .map_err(|error| match error {
                KeyringError::Database(error) => ProcessError::Database(error),
                other => ProcessError::Invalid(format!("the message's data key: {other}")),
            })?;
        let raw =
            open_raw(&data_key, tx.tenant_id(), message_id, &raw_sealed).ok_or_else(|| {
                ProcessError::Invalid(
                    "the stored message does not decrypt: it was altered or moved".to_owned(),
                )
            })?;
        // Audit events name the integration, not the worker.
        tx.set_actor(&format!("integration:{listener}")).await?;
        // Reading a stored message is a read of PHI (I3).
        audit::append(tx, message_read(message_id))
            .await
            .map_err(audit_error)?;
        let message = Message::parse(&raw).map_err(|error| {
            ProcessError::Invalid(format!("the stored message does not parse: {error}"))
        })?;
        let access = Access {
            purpose: Some("operations".to_owned()),
            break_glass: false,
        };
        let zone = message_zone(&message);
        let msh = message.msh();
        let message_type = msh.message_type();
        let event = Event::of(
            message_type.code().as_deref(),
            message_type.trigger().as_deref(),
        )
        .ok_or_else(|| ProcessError::Invalid(UNSUPPORTED.to_owned()))?;
        let groups = patient_groups(&message);
        let Some(first) = groups.first() else {
            return Err(ProcessError::Invalid(
                "PID: the segment is missing".to_owned(),
            ));
        };
        let pid = first.pid;
        if groups.len() > 1 && !matches!(event, Event::Results | Event::Merge) {
            return Err(ProcessError::Invalid(
                "PID: an ADT message of this type is about one patient, this one names several"
                    .to_owned(),
            ));
        }
        match event {
            Event::Admit | Event::Register => {
                let patient_id = self.upsert_patient(tx, &pid, &access).await?;
                let pv1 = message.pv1();
                let class = pv1.as_ref().and_then(|pv1| pv1.patient_class());
                let admitted = match &pv1 {
                    Some(pv1) => pv1
                        .admit_datetime()
                        .map_err(|_| invalid_field("PV1-44", "not a valid date and time"))?,
                    None => None,
                };
                let started_at = instant_of(admitted.or(event_time(&message)?), zone, "PV1-44")?;
                clinical::encounter::start(tx, patient_id, class.as_deref(), started_at).await?;
            }
            Event::Update => {
                self.upsert_patient(tx, &pid, &access).await?;
            }
            Event::Discharge => {
                let patient_id = self
                    .find_patient(tx, &pid)
                    .await?
                    .ok_or_else(|| invalid_field("PID-3", "no patient holds this identifier"))?;
                let discharged = match message.pv1() {
                    Some(pv1) => pv1
                        .discharge_datetime()
                        .map_err(|_| invalid_field("PV1-45", "not a valid date and time"))?,
                    None => None,
                };
                let ended_at = instant_of(discharged.or(event_time(&message)?), zone, "PV1-45")?;
                clinical::encounter::finish_latest(tx, patient_id, ended_at)
                    .await?
                    .ok_or_else(|| {
                        ProcessError::Invalid("A03: the patient has no open encounter".to_owned())
                    })?;
            }
            Event::Merge => {
                // One merge per patient group (PID + MRG), in order.
                for group in &groups {
                    let prior = group
                        .segments
                        .iter()
                        .find(|segment| segment.id() == "MRG")
                        .and_then(|mrg| mrg.field(1))
                        .and_then(|field| field.repetition(1))
                        .map(Cx::from_repetition)
                        .and_then(|cx| {
                            let value = cx.id().filter(|v| !v.trim().is_empty())?;
                            Some((authority(&cx), value.into_owned()))
                        })
                        .ok_or_else(|| invalid_field("MRG-1", "no prior patient identifier"))?;
                    let merged = vault::find_by_identifier(tx, &self.keyring, &prior.0, &prior.1)
                        .await?
                        .ok_or_else(|| {
                            invalid_field("MRG-1", "no patient holds this identifier")
                        })?;
                    let survivor = self.upsert_patient(tx, &group.pid, &access).await?;
                    let merged = clinical::patient::resolve(tx, merged)
                        .await?
                        .ok_or_else(|| invalid_field("MRG-1", "the patient record is missing"))?;
                    if merged != survivor {
                        clinical::patient::merge(tx, merged, survivor).await?;
                        audit::append(
                            tx,
                            audit::AuditEntry::patient("patient.merge", merged)
                                .purpose("operations"),
                        )
                        .await
                        .map_err(audit_error)?;
                    }
                }
            }
            Event::Results => {
                // Each patient group's results go to its own patient.
                let mut position = 0;
                for group in &groups {
                    let observations =
                        observations(&group.segments, message_id, &mut position, zone)?;
                    let patient_id = match self.find_patient(tx, &group.pid).await? {
                        Some(patient_id) => patient_id,
                        None => self.register_patient(tx, &group.pid, &access).await?,
                    };
                    for observation in &observations {
                        clinical::observation::record(tx, patient_id, observation).await?;
                    }
                    audit::append(
                        tx,
                        audit::AuditEntry::patient("observation.record", patient_id)
                            .purpose("operations"),
                    )
                    .await
                    .map_err(audit_error)?;
                }
            }
        }
        sqlx::query(
            "UPDATE ingest.messages SET processing = 'processed', processed_at = now(), processing_error = NULL
             WHERE tenant_id = $1 AND id = $2 AND received_at BETWEEN ingest.id_instant($2) - interval '1 day' AND ingest.id_instant($2) + interval '1 day'",
        )
        .bind(tx.tenant_id().as_uuid())
        .bind(message_id)
        .execute(&mut **tx)
        .await?;
        if reply::wanted(ack_condition.as_deref(), reply_to.as_deref(), true) {
            reply::enqueue(
                tx,
                ApplicationAckArgs {
                    message_id,
                    processed: true,
                    error: None,
                },
            )
            .await?;
        }
        Ok(())
    }

    /// The patient holding the message's PID-3 identifier now (following merges).
    async fn find_patient(
        &self,
        tx: &mut TenantTx,
        pid: &Pid<'_>,
    ) -> Result<Option<PatientId>, ProcessError> {
        let (authority, value) = patient_identifier(pid)
            .ok_or_else(|| invalid_field("PID-3", "no patient identifier"))?;
        let Some(patient_id) =
            vault::find_by_identifier(tx, &self.keyring, &authority, &value).await?
        else {
            return Ok(None);
        };
        Ok(clinical::patient::resolve(tx, patient_id).await?)
    }

    async fn register_patient(
        &self,
        tx: &mut TenantTx,
        pid: &Pid<'_>,
        access: &Access,
    ) -> Result<PatientId, ProcessError> {
        let demographics = demographics(pid)?;
        let patient_id = PatientId::generate();
        clinical::patient::insert(tx, patient_id).await?;
        vault::insert(tx, &self.keyring, patient_id, &demographics, access).await?;
        Ok(patient_id)
    }

    /// Creates the patient from PID, or updates the one holding its identifier: PID's
    /// demographics replace the stored ones; identifiers are added to those held, never
    /// taken from another patient.
    async fn upsert_patient(
        &self,
        tx: &mut TenantTx,
        pid: &Pid<'_>,
        access: &Access,
    ) -> Result<PatientId, ProcessError> {
        let Some(patient_id) = self.find_patient(tx, pid).await? else {
            return self.register_patient(tx, pid, access).await;
        };
        let mut demographics = demographics(pid)?;
        let record = vault::read(tx, &self.keyring, patient_id, access).await?;
        let mut identifiers = record.demographics.identifiers;
        for identifier in demographics.identifiers {
            let held = identifiers.iter().any(|i| same_identifier(i, &identifier));
            if held {
                continue;
            }
            let holder = vault::find_by_identifier(
                tx,
                &self.keyring,
                &identifier.authority,
                &identifier.value,
            )
            .await?;
            if holder.is_none() {
                identifiers.push(identifier);
            }
        }
        demographics.identifiers = identifiers;
        vault::update(
            tx,
            &self.keyring,
            patient_id,
            &demographics,
            Some(record.version),
            access,
        )
        .await?;
        clinical::patient::touch(tx, patient_id).await?;
        Ok(patient_id)
    }
}

fn same_identifier(a: &Identifier, b: &Identifier) -> bool {
    a.authority.trim().eq_ignore_ascii_case(b.authority.trim()) && a.value.trim() == b.value.trim()
}

/// The audit entry of reading a stored message's contents.
pub(crate) fn message_read(message_id: Uuid) -> audit::AuditEntry {
    audit::AuditEntry {
        action: "ingest_message.read",
        patient_id: None,
        purpose: Some("operations".to_owned()),
        break_glass: false,
        details: serde_json::json!({ "message_id": message_id }),
    }
}

fn invalid_field(field: &str, why: &str) -> ProcessError {
    ProcessError::Invalid(format!("{field}: {why}"))
}

fn audit_error(error: audit::AuditError) -> ProcessError {
    match error {
        audit::AuditError::Database(error) => ProcessError::Database(error),
        other => ProcessError::Invalid(other.to_string()),
    }
}

/// EVN-2 (recorded), else MSH-7: when the event happened, if PV1 does not say.
fn event_time(message: &Message<'_>) -> Result<Option<DateTime>, ProcessError> {
    if let Some(evn) = message.evn()
        && let Some(at) = evn
            .recorded_datetime()
            .map_err(|_| invalid_field("EVN-2", "not a valid date and time"))?
    {
        return Ok(Some(at));
    }
    message
        .msh()
        .datetime()
        .map_err(|_| invalid_field("MSH-7", "not a valid date and time"))
}

/// An HL7 timestamp as an instant: with its own UTC offset, or in `zone` when it has
/// none (HL7 v2 times without an offset are in the sender's local time). `None` for a
/// date that does not exist.
fn instant(at: DateTime, zone: UtcOffset) -> Option<OffsetDateTime> {
    let month = Month::try_from(at.month().unwrap_or(1)).ok()?;
    let date = Date::from_calendar_date(i32::from(at.year()), month, at.day().unwrap_or(1)).ok()?;
    let offset = match at.offset_minutes() {
        Some(minutes) => UtcOffset::from_whole_seconds(i32::from(minutes) * 60).ok()?,
        None => zone,
    };
    date.with_hms_nano(
        at.hour().unwrap_or(0),
        at.minute().unwrap_or(0),
        at.second().unwrap_or(0),
        at.nanosecond().unwrap_or(0),
    )
    .ok()
    .map(|at| at.assume_offset(offset))
}

/// The offset a message's times without one are in: MSH-7's, when it has one (the
/// sender's clock), else UTC.
fn message_zone(message: &Message<'_>) -> UtcOffset {
    message
        .msh()
        .datetime()
        .ok()
        .flatten()
        .and_then(|at| at.offset_minutes())
        .and_then(|minutes| UtcOffset::from_whole_seconds(i32::from(minutes) * 60).ok())
        .unwrap_or(UtcOffset::UTC)
}

/// `at` as an instant, or why not.
fn instant_of(
    at: Option<DateTime>,
    zone: UtcOffset,
    field: &str,
) -> Result<Option<OffsetDateTime>, ProcessError> {
    match at {
        Some(at) => instant(at, zone)
            .map(Some)
            .ok_or_else(|| invalid_field(field, "not a real date")),
        None => Ok(None),
    }
}

/// The patient's demographics as PID states them. PHI.
fn demographics(pid: &Pid<'_>) -> Result<Demographics, ProcessError> {
    let names: Vec<_> = pid.names().collect();
    let name = names
        .iter()
        .find(|name| name.name_type_code().as_deref() == Some("L"))
        .or(names.first());
    let family_name = name
        .and_then(|name| name.family_name())
        .map(Cow::into_owned)
        .unwrap_or_default();
    let given_names = name
        .map(|name| {
            [name.given_name(), name.middle_names()]
                .into_iter()
                .flatten()
                .filter(|part| !part.trim().is_empty())
                .map(Cow::into_owned)
                .collect()
        })
        .unwrap_or_default();
    let birth_date = pid
        .birth_datetime()
        .map_err(|_| invalid_field("PID-7", "not a valid date"))?
        .and_then(|at| {
            let month = Month::try_from(at.month()?).ok()?;
            Date::from_calendar_date(i32::from(at.year()), month, at.day()?).ok()
        });
    let sex = pid.sex().and_then(|code| match code.as_ref() {
        "F" => Some(Sex::Female),
        "M" => Some(Sex::Male),
        "O" | "A" | "N" | "X" => Some(Sex::Other),
        "U" => Some(Sex::Unknown),
        _ => None,
    });
    let phones: Vec<_> = pid.home_phones().collect();
    let phone = phones.iter().find_map(|xtn| {
        xtn.telephone_number()
            .or_else(|| xtn.unformatted_number())
            .filter(|v| !v.trim().is_empty())
            .map(Cow::into_owned)
    });
    let email = phones.iter().find_map(|xtn| {
        xtn.email()
            .filter(|v| !v.trim().is_empty())
            .map(Cow::into_owned)
    });
    let address = pid.addresses().next().map(|xad| Address {
        lines: [xad.street(), xad.other_designation()]
            .into_iter()
            .flatten()
            .filter(|line| !line.trim().is_empty())
            .map(Cow::into_owned)
            .collect(),
        city: xad.city().map(Cow::into_owned),
        region: xad.state().map(Cow::into_owned),
        postal_code: xad.postal_code().map(Cow::into_owned),
        country: xad.country().map(Cow::into_owned),
    });
    let identifiers = pid
        .identifiers()
        .filter_map(|cx| {
            let value = cx.id().filter(|v| !v.trim().is_empty())?;
            Some(Identifier {
                authority: authority(&cx),
                kind: cx
                    .identifier_type_code()
                    .map(Cow::into_owned)
                    .unwrap_or_default(),
                value: value.into_owned(),
            })
        })
        .collect();
    Ok(Demographics {
        family_name,
        given_names,
        birth_date,
        sex,
        phone,
        email,
        address,
        identifiers,
    })
}

/// One patient's part of a message: a PID and the segments after it, up to the next
/// PID. An ORU^R01 may carry several patients' results; an A40 several merges.
struct PatientGroup<'m> {
    pid: Pid<'m>,
    segments: Vec<hl7::Segment<'m>>,
}

fn patient_groups<'m>(message: &'m Message<'m>) -> Vec<PatientGroup<'m>> {
    let mut groups: Vec<PatientGroup<'m>> = Vec::new();
    for segment in message.segments() {
        if let Some(pid) = Pid::new(segment) {
            groups.push(PatientGroup {
                pid,
                segments: Vec::new(),
            });
        } else if let Some(group) = groups.last_mut() {
            group.segments.push(segment);
        }
    }
    groups
}

/// The observations of one patient's part of an ORU^R01: every OBX, in order, each
/// sourced at its position (1-based) among the message's OBX segments, counted by
/// `position` across the whole message. OBX-14 is the observation's time, else its
/// OBR-7; a time without an offset is in `zone`.
fn observations(
    segments: &[hl7::Segment<'_>],
    message_id: Uuid,
    position: &mut i32,
    zone: UtcOffset,
) -> Result<Vec<NewObservation>, ProcessError> {
    let mut observations = Vec::new();
    let mut fallback: Option<DateTime> = None;
    for segment in segments {
        if let Some(obr) = hl7::typed::Obr::new(*segment) {
            fallback = obr
                .observation_datetime()
                .map_err(|_| invalid_field("OBR-7", "not a valid date and time"))?;
            continue;
        }
        let Some(obx) = hl7::typed::Obx::new(*segment) else {
            continue;
        };
        *position += 1;
        let position = *position;
        let field = |n: u8| format!("OBX-{n} of OBX {position}");
        let identifier = obx.identifier().ok_or_else(|| {
            ProcessError::Invalid(format!("{}: the observation has no code", field(3)))
        })?;
        let code = identifier
            .identifier()
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                ProcessError::Invalid(format!("{}: the observation has no code", field(3)))
            })?
            .into_owned();
        let code_system = identifier
            .coding_system()
            .map(Cow::into_owned)
            .unwrap_or_default();
        let value = match obx.value_type().as_deref() {
            Some("NM") => match obx.value() {
                Some(text) if clinical::observation::is_decimal(text.trim()) => {
                    ObservationValue::Numeric(text.trim().to_owned())
                }
                // "<0.5", ">1000": kept as written, in the source.
                Some(_) => ObservationValue::Text,
                None => ObservationValue::None,
            },
            Some("SN") => structured_number(&obx),
            Some("CE" | "CWE" | "CNE" | "CF") => match obx
                .coded_value()
                .and_then(|cwe| cwe.identifier())
            {
                Some(code) if !code.trim().is_empty() => ObservationValue::Coded(code.into_owned()),
                _ => ObservationValue::None,
            },
            _ => match obx.value() {
                Some(_) => ObservationValue::Text,
                None => ObservationValue::None,
            },
        };
        let effective = obx
            .observation_datetime()
            .map_err(|_| {
                ProcessError::Invalid(format!("{}: not a valid date and time", field(14)))
            })?
            .or(fallback);
        let effective_at =
            match effective {
                Some(at) => Some(instant(at, zone).ok_or_else(|| {
                    ProcessError::Invalid(format!("{}: not a real date", field(14)))
                })?),
                None => None,
            };
        observations.push(NewObservation {
            code_system,
            code,
            value,
            units: obx
                .units()
                .and_then(|units| units.identifier())
                .filter(|v| !v.trim().is_empty())
                .map(Cow::into_owned),
            reference_range: obx.reference_range().map(Cow::into_owned),
            abnormal_flags: obx.abnormal_flags().map(Cow::into_owned).collect(),
            status: status(obx.result_status().as_deref()),
            effective_at,
            source: Some((message_id, position)),
        });
    }
    Ok(observations)
}

/// An SN value (`comparator^number^separator^number`) is numeric when it is a plain
/// number (no comparator other than `=`, no range); else it is kept as text.
fn structured_number(obx: &hl7::typed::Obx<'_>) -> ObservationValue {
    let Some(repetition) = obx.values().next().filter(|r| !r.is_empty()) else {
        return ObservationValue::None;
    };
    let part = |n: usize| {
        repetition
            .component(n)
            .map(|c| c.decoded().trim().to_owned())
            .unwrap_or_default()
    };
    let (comparator, number, separator) = (part(1), part(2), part(3));
    if (comparator.is_empty() || comparator == "=")
        && separator.is_empty()
        && clinical::observation::is_decimal(&number)
    {
        ObservationValue::Numeric(number)
    } else {
        ObservationValue::Text
    }
}

/// OBX-11 (table 0085) as an observation status.
fn status(code: Option<&str>) -> ObservationStatus {
    match code {
        Some("F") => ObservationStatus::Final,
        Some("P" | "R" | "S") => ObservationStatus::Preliminary,
        Some("C") => ObservationStatus::Corrected,
        Some("X") => ObservationStatus::Cancelled,
        Some("D" | "W") => ObservationStatus::EnteredInError,
        Some("I" | "O") => ObservationStatus::Registered,
        _ => ObservationStatus::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORU: &str = "MSH|^~\\&|LAB|HOSP|TENET|CLINIC|20261123101500+0000||ORU^R01|C1|P|2.5.1\r\
PID|1||MRN-1^^^HOSP^MR~SSN-9^^^USSSA^SS||Doe^Jane^Q||19800101|F\r\
OBR|1|||24323-8^Panel^LN|||20261123100000+0000\r\
OBX|1|NM|2823-3^Potassium^LN||6.9|mmol/L|3.5-5.1|HH|||F\r\
OBX|2|NM|2951-2^Sodium^LN||<120|mmol/L|135-145|L|||P|||20261123100500+0000\r\
OBX|3|SN|2345-7^Glucose^LN||^5.4|mmol/L|||||C\r\
OBX|4|CWE|5778-6^Color^LN||YEL^Yellow^HL7||||||F\r\
OBX|5|TX|8251-1^Comment^LN||Patient was seen by Dr. Canary||||||F\r";

    #[test]
    fn the_mr_identifier_is_the_one_patients_are_matched_by() {
        let message = Message::parse(ORU.as_bytes()).unwrap();
        let pid = message.pid().unwrap();
        assert_eq!(
            patient_identifier(&pid),
            Some(("HOSP".to_owned(), "MRN-1".to_owned()))
        );
    }

    #[test]
    fn every_obx_becomes_an_observation_with_its_value_units_flags_status_and_time() {
        let message = Message::parse(ORU.as_bytes()).unwrap();
        let id = Uuid::now_v7();
        let groups = patient_groups(&message);
        assert_eq!(groups.len(), 1);
        let observations =
            observations(&groups[0].segments, id, &mut 0, message_zone(&message)).unwrap();
        assert_eq!(observations.len(), 5);
        let potassium = &observations[0];
        assert_eq!(
            (potassium.code_system.as_str(), potassium.code.as_str()),
            ("LN", "2823-3")
        );
        assert_eq!(potassium.value, ObservationValue::Numeric("6.9".to_owned()));
        assert_eq!(potassium.units.as_deref(), Some("mmol/L"));
        assert_eq!(potassium.reference_range.as_deref(), Some("3.5-5.1"));
        assert_eq!(potassium.abnormal_flags, vec!["HH".to_owned()]);
        assert_eq!(potassium.status, ObservationStatus::Final);
        assert_eq!(potassium.source, Some((id, 1)));
        // OBX-14 missing: the OBR-7 time.
        assert_eq!(
            potassium.effective_at.unwrap().unix_timestamp(),
            time::macros::datetime!(2026-11-23 10:00:00 UTC).unix_timestamp()
        );
        // A comparator is not a number: kept in the source as text.
        assert_eq!(observations[1].value, ObservationValue::Text);
        assert_eq!(observations[1].status, ObservationStatus::Preliminary);
        assert_eq!(
            observations[1].effective_at.unwrap().unix_timestamp(),
            time::macros::datetime!(2026-11-23 10:05:00 UTC).unix_timestamp()
        );
        assert_eq!(
            observations[2].value,
            ObservationValue::Numeric("5.4".to_owned())
        );
        assert_eq!(observations[2].status, ObservationStatus::Corrected);
        assert_eq!(
            observations[3].value,
            ObservationValue::Coded("YEL".to_owned())
        );
        assert_eq!(observations[4].value, ObservationValue::Text);
    }

    #[test]
    fn pid_fills_the_demographics() {
        let message = Message::parse(ORU.as_bytes()).unwrap();
        let demographics = demographics(&message.pid().unwrap()).unwrap();
        assert_eq!(demographics.family_name, "Doe");
        assert_eq!(
            demographics.given_names,
            vec!["Jane".to_owned(), "Q".to_owned()]
        );
        assert_eq!(
            demographics.birth_date,
            Some(time::macros::date!(1980 - 01 - 01))
        );
        assert_eq!(demographics.sex, Some(Sex::Female));
        assert_eq!(demographics.identifiers.len(), 2);
        assert_eq!(demographics.identifiers[0].authority, "HOSP");
        assert_eq!(demographics.identifiers[0].kind, "MR");
    }

    #[test]
    fn each_patient_of_a_multi_patient_message_gets_only_its_own_results() {
        let text = ORU.to_owned()
            + "PID|2||MRN-2^^^HOSP^MR||Roe^Richard||19700101|M\r\
               OBR|1|||24323-8^Panel^LN|||20261123110000\r\
               OBX|1|NM|2823-3^Potassium^LN||4.0|mmol/L|3.5-5.1|N|||F\r";
        let message = Message::parse(text.as_bytes()).unwrap();
        let groups = patient_groups(&message);
        assert_eq!(groups.len(), 2);
        assert_eq!(
            patient_identifier(&groups[1].pid),
            Some(("HOSP".to_owned(), "MRN-2".to_owned()))
        );
        let id = Uuid::now_v7();
        let zone = message_zone(&message);
        let mut position = 0;
        let first = observations(&groups[0].segments, id, &mut position, zone).unwrap();
        let second = observations(&groups[1].segments, id, &mut position, zone).unwrap();
        assert_eq!((first.len(), second.len()), (5, 1));
        // Positions count across the message, so each source is unique.
        assert_eq!(second[0].source, Some((id, 6)));
        // OBR-7 without an offset is in MSH-7's (+0000 here).
        assert_eq!(
            second[0].effective_at.unwrap(),
            time::macros::datetime!(2026-11-23 11:00:00 UTC)
        );
    }

    #[test]
    fn a_time_without_an_offset_is_in_the_senders_zone_from_msh_7() {
        let message = Message::parse(
            b"MSH|^~\\&|LAB|HOSP|TENET|CLINIC|20261123101500-0500||ORU^R01|C1|P|2.5.1\r",
        )
        .unwrap();
        let zone = message_zone(&message);
        let naive = DateTime::parse("20261123080000").unwrap();
        assert_eq!(
            instant(naive, zone).unwrap(),
            time::macros::datetime!(2026-11-23 13:00:00 UTC)
        );
        let explicit = DateTime::parse("20261123080000+0100").unwrap();
        assert_eq!(
            instant(explicit, zone).unwrap(),
            time::macros::datetime!(2026-11-23 07:00:00 UTC)
        );
    }

    #[test]
    fn only_the_documented_types_are_processed() {
        assert_eq!(Event::of(Some("ADT"), Some("A01")), Some(Event::Admit));
        assert_eq!(Event::of(Some("ORU"), Some("R01")), Some(Event::Results));
        assert_eq!(Event::of(Some("ADT"), Some("A02")), None);
        assert_eq!(Event::of(Some("SIU"), Some("S12")), None);
        assert_eq!(Event::of(None, None), None);
    }
}
