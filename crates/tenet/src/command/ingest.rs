//! `tenet ingest list|show|reprocess|retention`: received HL7 v2 messages, across
//! tenants, through the owner role's `ingest_operations` policy.
//!
//! Listings show routing fields, status, ACK and error — never contents. `show --raw`
//! is the one command that prints a message's contents: it reads them in the
//! tenant's own transaction as the service role, appends the audit event there
//! (I3), commits, and only then prints. Nothing read from a message is logged.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use identity::keyring::Keyring;
use ingest::admin::{self, ListFilter, MessageRow};
use ingest::partitions::{self, Retention};
use kernel::TenantId;
use time::OffsetDateTime;

use super::jobs::timestamp;
use crate::cli::{Global, IngestCommand};
use crate::output::say;
use crate::settings;

/// How long `tenet ingest retention` waits for a table lock (the server waits much
/// less: an operator asked for this, and may wait a little).
const LOCK_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn run(global: &Global, command: IngestCommand) -> anyhow::Result<ExitCode> {
    super::with_pools(global, async |owner, app| match command {
        IngestCommand::List {
            tenant,
            status,
            listener,
            since,
            limit,
        } => {
            let filter = ListFilter {
                tenant_id: tenant.map(TenantId::new_unchecked),
                status: status.map(Into::into),
                listener,
                since: since.map(|since| since.instant(OffsetDateTime::now_utc())),
                limit,
            };
            let messages = admin::list(&mut *owner.acquire().await?, &filter).await?;
            say(format!(
                "{:<36}  {:<25}  {:<12}  {:<24}  {:<20}  {:<12}  {:<8}  {:<3}  error",
                "id", "received at", "listener", "sender", "control id", "type", "status", "ack"
            ));
            for message in &messages {
                say(format!(
                    "{:<36}  {:<25}  {:<12}  {:<24}  {:<20}  {:<12}  {:<8}  {:<3}  {}",
                    message.id,
                    timestamp(message.received_at),
                    message.listener,
                    sender(message),
                    message.control_id.as_deref().unwrap_or("-"),
                    message_type(message),
                    message.status,
                    message.ack_code,
                    message
                        .error
                        .as_deref()
                        .unwrap_or("-")
                        .chars()
                        .take(80)
                        .collect::<String>(),
                ));
            }
            say(format!("{} message(s)", messages.len()));
            Ok(ExitCode::SUCCESS)
        }
        IngestCommand::Show { id, raw, purpose } => {
            let Some(message) = admin::show(&mut *owner.acquire().await?, id).await? else {
                say(format!("no message {id}"));
                return Ok(ExitCode::FAILURE);
            };
            print_message(&message);
            if raw {
                let keyring = Keyring::new(settings::master_key(global)?);
                let mut tx = super::tenant_tx(app, message.tenant_id).await?;
                let contents = admin::read_raw(&mut tx, &keyring, message.id, &purpose).await?;
                // The read is recorded before anything is shown.
                tx.commit().await?;
                say(format!(
                    "raw ({} bytes; segments one per line; the read is in the audit log):",
                    contents.expose().len()
                ));
                let text: Vec<u8> = contents
                    .expose()
                    .iter()
                    .map(|&byte| if byte == b'\r' { b'\n' } else { byte })
                    .collect();
                let mut stdout = std::io::stdout().lock();
                let _ = stdout.write_all(&text);
                if !text.ends_with(b"\n") {
                    let _ = stdout.write_all(b"\n");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        IngestCommand::Reprocess { id, force } => {
            match ingest::process::reprocess(owner, id, force).await {
                Ok(job_id) => {
                    say(format!(
                        "message {id} is pending again; job {job_id} processes it"
                    ));
                    Ok(ExitCode::SUCCESS)
                }
                Err(ingest::process::ReprocessError::Unexpected(err)) => Err(err.into()),
                Err(err) => {
                    crate::output::tell(err.to_string());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        IngestCommand::Retention { days, dry_run } => {
            retention(owner, Retention::from_days(days), dry_run).await
        }
    })
    .await
}

async fn retention(
    owner: &sqlx::PgPool,
    retention: Retention,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    if !dry_run {
        for created in partitions::ensure(owner, LOCK_TIMEOUT).await? {
            say(format!("created partition ingest.{created}"));
        }
    }
    if retention == Retention::Forever {
        say("retention is off (0 days): no message is dropped");
        return Ok(ExitCode::SUCCESS);
    }
    // What is due, with the messages each partition holds, counted before it goes.
    let plan = partitions::expired(owner, retention).await?;
    let mut n_messages: HashMap<String, i64> = HashMap::new();
    for partition in &plan.partitions {
        n_messages.insert(
            partition.name.clone(),
            partitions::count_messages(owner, partition).await?,
        );
    }
    let report = if dry_run {
        plan
    } else {
        partitions::apply_retention(owner, retention, LOCK_TIMEOUT).await?
    };
    let verb = if dry_run { "would drop" } else { "dropped" };
    let mut n_total = 0;
    for partition in &report.partitions {
        let n = n_messages.get(&partition.name).copied().unwrap_or(0);
        n_total += n;
        say(format!(
            "{verb} ingest.{}: {} to {} (UTC), {n} message(s)",
            partition.name,
            timestamp(partition.lower_bound),
            timestamp(partition.upper_bound),
        ));
    }
    let cutoff = report
        .cutoff
        .map_or_else(|| "-".to_owned(), |date| date.to_string());
    if dry_run {
        say(format!(
            "{} partition(s), {n_total} message(s) received before {cutoff} (UTC) would be dropped, with their de-duplication keys",
            report.partitions.len()
        ));
    } else {
        say(format!(
            "{} partition(s) dropped, {n_total} message(s) received before {cutoff} (UTC); {} de-duplication key(s) deleted",
            report.partitions.len(),
            report.n_keys_deleted
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// MSH-3^MSH-4, or `-` for a message that did not parse.
fn sender(message: &MessageRow) -> String {
    match (&message.sending_application, &message.sending_facility) {
        (None, None) => "-".to_owned(),
        (application, facility) => format!(
            "{}^{}",
            application.as_deref().unwrap_or(""),
            facility.as_deref().unwrap_or("")
        ),
    }
}

/// MSH-9.1^MSH-9.2, or `-`.
fn message_type(message: &MessageRow) -> String {
    match (&message.message_type, &message.trigger_event) {
        (None, None) => "-".to_owned(),
        (code, trigger) => format!(
            "{}^{}",
            code.as_deref().unwrap_or(""),
            trigger.as_deref().unwrap_or("")
        ),
    }
}

fn print_message(message: &MessageRow) {
    let optional = |value: &Option<String>| value.as_deref().unwrap_or("-").to_owned();
    say(format!("id:                   {}", message.id));
    say(format!("tenant:               {}", message.tenant_id));
    say(format!(
        "received at:          {}",
        timestamp(message.received_at)
    ));
    say(format!("listener:             {}", message.listener));
    say(format!(
        "sending application:  {} (MSH-3)",
        optional(&message.sending_application)
    ));
    say(format!(
        "sending facility:     {} (MSH-4)",
        optional(&message.sending_facility)
    ));
    say(format!(
        "control id:           {} (MSH-10)",
        optional(&message.control_id)
    ));
    say(format!(
        "message type:         {} (MSH-9)",
        message_type(message)
    ));
    say(format!(
        "processing id:        {} (MSH-11)",
        optional(&message.processing_id)
    ));
    say(format!(
        "version:              {} (MSH-12)",
        optional(&message.version)
    ));
    say(format!("ack mode:             {}", message.ack_mode));
    say(format!("status:               {}", message.status));
    say(format!("ack code:             {}", message.ack_code));
    say(format!(
        "error:                {}",
        optional(&message.error)
    ));
    say(format!(
        "sealed:               {} bytes under data key {}",
        message.sealed_bytes, message.data_key_id
    ));
}
