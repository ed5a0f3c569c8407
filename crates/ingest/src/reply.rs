//! Application acknowledgements (enhanced mode): when a sender asks for one in MSH-16
//! (`AL`, or `SU`/`ER` for the matching outcome), the answer after processing — `AA`
//! when the message was processed, `AE` with an ERR naming why when it failed — is
//! sent as a new MLLP message to the sender's own listener (the receiving listener's
//! configured reply address), by a durable job ([`ApplicationAck`]) enqueued in the
//! transaction that decided the outcome. The job retries with backoff until the
//! sender answers it with `CA` or `AA`; it is recorded on the message once delivered.
//!
//! The commit ACK (`CA`) on the sender's own connection is the listener's business;
//! this module never writes to that connection.

use std::time::Duration;

use db::TenantTx;
use futures::{SinkExt, StreamExt};
use hl7::Message;
use hl7::ack::{AckBuilder, AckCode, AckError, ErrorCode};
use hl7::mllp::MllpCodec;
use hl7::typed::AckCondition;
use identity::keyring::Keyring;
use platform::jobs::{EnqueueError, JobContext, JobError, JobKind, JobSpec};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;
use uuid::Uuid;

use crate::listener::{ack_control_id, hl7_timestamp};
use crate::store::open_raw;

/// The job queue application acknowledgements go on: apart from processing, so a
/// slow or unreachable sender never ties up the workers that process messages.
pub const REPLY_QUEUE: &str = "ingest.reply";

/// How long connecting to the sender, and then its answer, may take.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// The job that delivers one application acknowledgement.
pub struct ApplicationAck {
    pub keyring: Keyring,
}

/// The arguments of [`ApplicationAck`]: the message, the outcome and, for a failure,
/// its reason (field positions and rule names, never content).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplicationAckArgs {
    pub message_id: Uuid,
    pub processed: bool,
    pub error: Option<String>,
}

/// The sealed message, its data key, the reply address and when it was acknowledged.
type ReplyRow = (Vec<u8>, Uuid, Option<String>, Option<OffsetDateTime>);

impl JobKind for ApplicationAck {
    const NAME: &'static str = "ingest.application_ack";
    const VERSION: u32 = 1;
    const TIMEOUT: Duration = Duration::from_secs(30);
    const SCHEDULABLE: bool = false;
    type Args = ApplicationAckArgs;

    async fn run(
        &self,
        _ctx: &JobContext,
        tx: &mut TenantTx,
        args: ApplicationAckArgs,
    ) -> Result<(), JobError> {
        let row: Option<ReplyRow> = sqlx::query_as(
            "SELECT raw_sealed, data_key_id, reply_to, application_acked_at FROM ingest.messages
             WHERE tenant_id = $1 AND id = $2 AND received_at BETWEEN ingest.id_instant($2) - interval '1 day' AND ingest.id_instant($2) + interval '1 day'",
        )
        .bind(tx.tenant_id().as_uuid())
        .bind(args.message_id)
        .fetch_optional(&mut **tx)
        .await?;
        let Some((raw_sealed, data_key_id, reply_to, acked_at)) = row else {
            return Err(JobError::Fail(format!("no message {}", args.message_id)));
        };
        if acked_at.is_some() {
            return Ok(());
        }
        let Some(reply_to) = reply_to else {
            return Err(JobError::Fail(format!(
                "message {} has no reply address",
                args.message_id
            )));
        };
        let data_key = self
            .keyring
            .key(tx, data_key_id)
            .await
            .map_err(|error| JobError::Fail(format!("the message's data key: {error}")))?;
        let raw = open_raw(&data_key, tx.tenant_id(), args.message_id, &raw_sealed)
            .ok_or_else(|| JobError::Fail("the stored message does not decrypt".to_owned()))?;
        // Building the ACK reads the stored message: a read of PHI (I3).
        tx.set_actor("integration:application_ack").await?;
        audit::append(tx, crate::process::message_read(args.message_id))
            .await
            .map_err(|error| match error {
                audit::AuditError::Database(error) => JobError::Database(error),
                other => JobError::Fail(other.to_string()),
            })?;
        let message = Message::parse(&raw).map_err(|error| {
            JobError::Fail(format!("the stored message does not parse: {error}"))
        })?;
        let code = if args.processed {
            AckCode::ApplicationAccept
        } else {
            AckCode::ApplicationError
        };
        let mut ack = AckBuilder::new(
            &message,
            code,
            // The same control id on every attempt: the sender can tell a resend.
            &ack_control_id(args.message_id),
            hl7_timestamp(OffsetDateTime::now_utc()),
        );
        if let Some(error) = &args.error {
            ack = ack.error(AckError::new(
                ErrorCode::ApplicationInternalError,
                error.clone(),
            ));
        }
        let answer = deliver(&reply_to, ack.build())
            .await
            .map_err(JobError::Retry)?;
        if !matches!(answer.as_str(), "CA" | "AA") {
            return Err(JobError::Retry(format!(
                "the sender answered the application acknowledgement with {answer}"
            )));
        }
        sqlx::query(
            "UPDATE ingest.messages SET application_ack_code = $3, application_acked_at = now()
             WHERE tenant_id = $1 AND id = $2 AND received_at BETWEEN ingest.id_instant($2) - interval '1 day' AND ingest.id_instant($2) + interval '1 day'",
        )
        .bind(tx.tenant_id().as_uuid())
        .bind(args.message_id)
        .bind(code.code())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// Sends one framed message to `addr` and returns the MSA-1 of the answer.
async fn deliver(addr: &str, frame: Vec<u8>) -> Result<String, String> {
    let stream = tokio::time::timeout(REPLY_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connecting to {addr} timed out"))?
        .map_err(|error| format!("connecting to {addr}: {error}"))?;
    let mut framed = Framed::new(stream, MllpCodec::new());
    framed
        .send(frame)
        .await
        .map_err(|error| format!("sending to {addr}: {error}"))?;
    let answer = tokio::time::timeout(REPLY_TIMEOUT, framed.next())
        .await
        .map_err(|_| format!("{addr} did not answer within {}s", REPLY_TIMEOUT.as_secs()))?
        .ok_or_else(|| format!("{addr} closed the connection without an answer"))?
        .map_err(|error| format!("reading the answer from {addr}: {error}"))?;
    let answer = Message::parse(&answer)
        .map_err(|error| format!("the answer from {addr} does not parse: {error}"))?;
    answer
        .segment("MSA")
        .and_then(|msa| msa.field(1))
        .map(|field| field.as_str().to_owned())
        .ok_or_else(|| format!("the answer from {addr} has no MSA-1"))
}

/// Whether the sender asked (MSH-16, `condition`) for an application acknowledgement
/// of this outcome, and the listener knows where to send it.
pub(crate) fn wanted(condition: Option<&str>, reply_to: Option<&str>, processed: bool) -> bool {
    reply_to.is_some()
        && condition
            .and_then(AckCondition::from_code)
            .is_some_and(|condition| condition.wants_ack(processed))
}

/// Enqueues an application acknowledgement, in `tx`.
pub(crate) async fn enqueue(
    tx: &mut TenantTx,
    args: ApplicationAckArgs,
) -> Result<(), sqlx::Error> {
    platform::jobs::enqueue(tx, JobSpec::<ApplicationAck>::new(args).queue(REPLY_QUEUE))
        .await
        .map_err(|error| match error {
            EnqueueError::Unexpected(error) => error,
            other => sqlx::Error::Protocol(other.to_string()),
        })?;
    Ok(())
}
