//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::telemetry::LogFormat;

/// Tenet: a clinical backend that keeps tenants apart in the database, holds PHI in
/// an encrypted vault and audits every touch of it in a tamper-evident log.
#[derive(Debug, Parser)]
#[command(name = "tenet", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    pub fn log_format(&self) -> LogFormat {
        self.global.log_format
    }
}

#[derive(Debug, Args)]
pub struct Global {
    /// Where the embedded database, master key and signing key live.
    #[arg(long, global = true, env = "TENET_HOME", default_value = ".tenet")]
    pub home: PathBuf,
    /// Use this PostgreSQL database (as its owner role) instead of the embedded one.
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// The service role's connection; by default DATABASE_URL with user `tenet_app`.
    #[arg(
        long,
        global = true,
        env = "TENET_APP_DATABASE_URL",
        hide_env_values = true
    )]
    pub app_database_url: Option<String>,
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        env = "TENET_LOG_FORMAT",
        value_enum,
        default_value = "json"
    )]
    pub log_format: LogFormat,
    /// Where document content is kept, sealed: a path or `file:///path` (default
    /// `<home>/documents`), or `s3://bucket[/prefix]`, configured by the standard
    /// `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT` (for an
    /// S3-compatible server) and `AWS_ALLOW_HTTP` variables.
    #[arg(long, global = true, env = "TENET_DOCUMENTS_STORE")]
    pub documents_store: Option<String>,
    /// The largest document an upload may carry, in bytes.
    #[arg(
        long,
        global = true,
        env = "TENET_DOCUMENTS_SIZE_MAX_BYTES",
        default_value_t = documents::storage::SIZE_MAX_BYTES_DEFAULT,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub documents_size_max_bytes: u64,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start everything: the embedded PostgreSQL (unless DATABASE_URL is set),
    /// migrations, and the HTTP API. Ctrl-C stops it all.
    Up(UpArgs),
    /// Serve the API on an already migrated database.
    Serve(ServeArgs),
    /// Apply or revert schema migrations.
    Migrate {
        #[command(subcommand)]
        direction: Option<MigrateDirection>,
    },
    /// Manage tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage API keys.
    Apikey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// Verify and checkpoint the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Check the live schema against Tenet's rules (RLS forced, no PHI outside the
    /// vault, ...) and the work in flight (jobs stuck past their lease or overdue,
    /// schedule slots not fired, sagas with no job driving them, outbox events not
    /// relayed; dead letters are notices). Exits non-zero on any violation or problem.
    Check {
        /// Print the report as JSON: `{"violations": [...], "work": [...]}`.
        #[arg(long)]
        json: bool,
        /// A job running this many seconds past its expired lease is stuck.
        #[arg(long, default_value_t = 60)]
        lease_grace_secs: u64,
        /// A runnable job due this many seconds ago and not claimed is stuck, and so
        /// is an outbox event not relayed for as long.
        #[arg(long, default_value_t = 900)]
        overdue_secs: u64,
        /// A schedule slot this many seconds late has not fired.
        #[arg(long, default_value_t = 300)]
        slot_late_secs: u64,
        /// A saga unchanged this many seconds is noted.
        #[arg(long, default_value_t = 3600)]
        saga_idle_secs: u64,
    },
    /// Manage encryption keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Durable jobs: list, inspect, retry or cancel them (across tenants, as the
    /// owner role), or probe the workers end to end.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// A tenant's webhook subscriptions: events POSTed to a URL, signed with
    /// HMAC-SHA256 (header `Tenet-Signature: t=<unix>,v1=<hex>`).
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// Recurring jobs on a cron schedule in a time zone, each slot run once.
    Schedules {
        #[command(subcommand)]
        command: SchedulesCommand,
    },
    /// Measurement-based care: plans, enrolments (one, a file, a care team),
    /// guardians, backfills, the due lists; responses, scores and safety events.
    Assessments {
        #[command(subcommand)]
        command: AssessmentsCommand,
    },
    /// Critical ranges: per observation code, the values outside which a result is
    /// critical whatever flags the sender set.
    CriticalRanges {
        #[command(subcommand)]
        command: CriticalRangesCommand,
    },
    /// Assessment reminders: a tenant's quiet hours, lead time, channels and
    /// personalisation; a patient's opt-outs; an instance's reminders.
    Reminders {
        #[command(subcommand)]
        command: RemindersCommand,
    },
    /// Progress notes of a tenant, without their content: a patient's list, one
    /// note's signatures and amendment chain, and the notes signed late.
    Notes {
        #[command(subcommand)]
        command: NotesCommand,
    },
    /// A patient's consents: grant, revoke, list, show. Recipients are sealed and
    /// never printed (read them through the API, audited).
    Consents {
        #[command(subcommand)]
        command: ConsentsCommand,
    },
    /// Releases of information: record one (refused without a release-of-information
    /// consent in force for its recipient), list a patient's, report a tenant's period.
    /// Recipients are never printed.
    Releases {
        #[command(subcommand)]
        command: ReleasesCommand,
    },
    /// Documents of a tenant: list, show, upload, download, delete; legal holds,
    /// retention rules, permission scopes and the lifecycle sweep.
    Documents {
        #[command(subcommand)]
        command: DocumentsCommand,
    },
    /// Sagas: workflows of steps with compensations (across tenants, read only).
    Sagas {
        #[command(subcommand)]
        command: SagasCommand,
    },
    /// Dead letters: work that failed past its attempts. List, inspect, retry or
    /// discard them (across tenants, as the owner role).
    Deadletters {
        #[command(subcommand)]
        command: DeadLettersCommand,
    },
    /// Start, stop or inspect the embedded PostgreSQL under --home.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Received HL7 v2 messages: list and inspect them (across tenants, as the owner
    /// role), and apply the retention that drops whole days of them.
    Ingest {
        #[command(subcommand)]
        command: IngestCommand,
    },
    /// HL7 v2 tools: read a message file, or send messages to an MLLP endpoint.
    /// They need no database.
    Hl7 {
        #[command(subcommand)]
        command: Hl7Command,
    },
}

#[derive(Debug, Subcommand)]
pub enum Hl7Command {
    /// Print a message, or each message of a batch file (FHS/BHS, or messages one
    /// after another), as a tree: segments, fields by their standard index (`PID-5`),
    /// repetitions (`PID-3(2)`), components (`PID-5.1`) and sub-components. Exits
    /// non-zero if a message does not parse, naming where.
    Parse {
        /// The file to read; `-` reads standard input.
        file: PathBuf,
        /// Print the tree as JSON: an object for a file of one message, an array of
        /// trees (or `{"error": ...}` where one does not parse) for a batch file.
        #[arg(long)]
        json: bool,
    },
    /// Send messages to an MLLP endpoint over one connection, one at a time, each
    /// waiting for its ACK; print each message's control id and ACK code (MSA-1),
    /// and the error for AE/AR/CE/CR. Exits non-zero unless every message got AA or CA.
    /// A message that does not parse here is not sent.
    Send {
        /// The endpoint, HOST:PORT.
        #[arg(long, value_name = "HOST:PORT")]
        to: String,
        /// How long to wait for each ACK (and to connect), in seconds.
        #[arg(long, default_value_t = 10)]
        timeout_secs: u64,
        /// Files of one message, or batch files (split into their messages); `-`
        /// reads standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Start the embedded cluster (initialising it on first use) and leave it running.
    Start,
    /// Stop the embedded cluster.
    Stop,
    /// Say whether it runs, and where its socket is.
    Status,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The HTTP listen address.
    #[arg(long, env = "TENET_HTTP", default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// Seconds between automatic audit checkpoints (0: never).
    #[arg(long, env = "TENET_CHECKPOINT_SECS", default_value_t = 300)]
    pub checkpoint_secs: u64,
    /// Maximum connections in the service role's pool.
    #[arg(long, env = "TENET_DB_CONNECTIONS", default_value_t = 32)]
    pub db_connections: u32,
    /// The OIDC issuer whose bearer tokens are accepted (exact `iss`).
    #[arg(long, env = "TENET_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// The audience tokens must name.
    #[arg(long, env = "TENET_OIDC_AUDIENCE", default_value = "tenet")]
    pub oidc_audience: String,
    /// The issuer's JWKS URL (default: found by OIDC discovery).
    #[arg(long, env = "TENET_OIDC_JWKS_URL")]
    pub oidc_jwks_url: Option<String>,
    /// The token claim that names the Tenet tenant.
    #[arg(long, env = "TENET_OIDC_TENANT_CLAIM", default_value = "tenet_tenant")]
    pub oidc_tenant_claim: String,
    /// How long a break-glass grant lasts, in seconds.
    #[arg(long, env = "TENET_BREAK_GLASS_SECS", default_value_t = 3600)]
    pub break_glass_secs: i64,
    /// What this node runs: `api` (the HTTP API), `worker` (durable jobs, the outbox
    /// relay, schedules and audit checkpoints), `mllp` (the MLLP listeners) or `all`.
    /// Repeatable or comma-separated (`--role api,mllp`). `all` runs the MLLP
    /// listeners only if some are configured; `mllp` refuses to start without one.
    #[arg(
        long = "role",
        env = "TENET_ROLE",
        value_enum,
        value_delimiter = ',',
        default_value = "all"
    )]
    pub roles: Vec<NodeRole>,
    /// Durable jobs run at once by this process's worker (0: run no worker).
    #[arg(long, env = "TENET_WORKERS", default_value_t = 4, value_parser = clap::value_parser!(u16).range(0..=1024))]
    pub workers: u16,
    /// Serve no HTTP API: the same as `--role worker,mllp` (kept for existing scripts).
    #[arg(long, env = "TENET_NO_HTTP", conflicts_with = "roles")]
    pub no_http: bool,
    /// Also serve the operations endpoints (`/healthz`, `/readyz`, `/metrics`) here:
    /// for nodes without the `api` role, or to scrape off the API's port.
    #[arg(long, env = "TENET_OPS_HTTP")]
    pub ops_http: Option<SocketAddr>,
    /// How long a worker holds a job without renewing its lease, in seconds. A job
    /// whose worker died runs again after about one and a half leases.
    #[arg(long, env = "TENET_JOB_LEASE_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub job_lease_secs: u64,
    /// At most N jobs of queue NAME run at once across every worker of the database:
    /// `--queue-limit NAME=N`, repeatable (`TENET_QUEUE_LIMITS=a=2,b=5`). Give every
    /// node the same limits.
    #[arg(long = "queue-limit", env = "TENET_QUEUE_LIMITS", value_delimiter = ',', value_parser = parse_queue_limit)]
    pub queue_limits: Vec<(String, u32)>,
    /// Also publish every event to this NATS server's JetStream (`nats://host:4222`);
    /// the outbox relay runs wherever the job worker runs.
    #[arg(long, env = "TENET_NATS_URL")]
    pub nats_url: Option<String>,
    /// The JetStream stream events go to (created if missing, capturing `tenet.>`).
    #[arg(long, env = "TENET_NATS_STREAM", default_value = "TENET_EVENTS")]
    pub nats_stream: String,
    /// Send assessment reminders by email through this SMTP server:
    /// `smtp://host:25` (plain, for a local relay), `smtp+starttls://user:pass@host:587`
    /// (STARTTLS required) or `smtps://user:pass@host:465`. Without it reminders go by
    /// webhook only.
    #[arg(long, env = "TENET_SMTP_URL", requires_all = ["smtp_from", "reminder_link_base"])]
    pub smtp_url: Option<String>,
    /// The sender of reminder emails: `Clinic reminders <reminders@clinic.example>`.
    #[arg(long, env = "TENET_SMTP_FROM")]
    pub smtp_from: Option<String>,
    /// Where respondents answer a questionnaire; a reminder's one-time token is
    /// appended: `https://answer.clinic.example/a/`.
    #[arg(long, env = "TENET_REMINDER_LINK_BASE")]
    pub reminder_link_base: Option<String>,
    /// Let tenants register webhooks to loopback, private and link-local addresses
    /// (for development only: in production it lets a tenant reach internal services).
    #[arg(long, env = "TENET_WEBHOOK_ALLOW_PRIVATE_HOSTS")]
    pub webhook_allow_private_hosts: bool,
    /// The MLLP listeners, from a TOML file: `[[listener]]` tables, each with `name`,
    /// `addr`, `tenant`, and optionally `senders` (`["LAB^HOSP"]`: MSH-3.1^MSH-4.1),
    /// `frame_bytes_max`, `idle_timeout_secs`, `connections_max` and a `[listener.tls]`
    /// table (`cert`, `key`, `client_ca`). Checked whole before anything starts.
    #[arg(long, env = "TENET_MLLP_CONFIG", value_name = "FILE")]
    pub mllp_config: Option<PathBuf>,
    /// One more MLLP listener, named `mllp`, on this address (`127.0.0.1:2575`), with
    /// the default limits, no allow-list and no TLS; every message is stored before it
    /// is acknowledged.
    #[arg(long, env = "TENET_MLLP", requires = "mllp_tenant")]
    pub mllp: Option<SocketAddr>,
    /// The tenant every message received on `--mllp` belongs to.
    #[arg(long, env = "TENET_MLLP_TENANT", requires = "mllp")]
    pub mllp_tenant: Option<uuid::Uuid>,
    /// How many groups of received HL7 messages commit at once (group commit), each
    /// in its own transaction on a connection of the service role's pool
    /// (`--db-connections`). A message arriving while a slot is free is written at
    /// once; messages arriving while every slot is busy form the next group together.
    #[arg(long, env = "TENET_MLLP_COMMITS_IN_FLIGHT", default_value_t = ingest::store::COMMITS_IN_FLIGHT_DEFAULT as u16, value_parser = clap::value_parser!(u16).range(1..=ingest::store::COMMITS_IN_FLIGHT_MAX as i64))]
    pub mllp_commits_in_flight: u16,
    /// Keep received HL7 messages this many days (0: forever). Whole days older than
    /// that are dropped, hourly, with their de-duplication keys: a resend is
    /// recognised as a duplicate within this window only.
    #[arg(long, env = "TENET_INGEST_RETENTION_DAYS", default_value_t = ingest::partitions::RETENTION_DAYS_DEFAULT)]
    pub ingest_retention_days: u32,
}

/// What a `tenet serve` node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NodeRole {
    /// The HTTP API (and its `/metrics`).
    Api,
    /// Durable jobs, the outbox relay, schedules and audit checkpoints.
    Worker,
    /// The MLLP listeners.
    Mllp,
    /// Everything; MLLP listeners only if configured.
    All,
}

/// Whether a node runs its MLLP listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MllpRole {
    Off,
    /// If any is configured (`--role all`, `--no-http`).
    IfConfigured,
    /// Asked for by name: a node without a listener refuses to start.
    Required,
}

/// The parts a node runs, from `--role` (or `--no-http`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub api: bool,
    pub worker: bool,
    pub mllp: MllpRole,
}

impl ServeArgs {
    pub fn roles(&self) -> Roles {
        if self.no_http {
            return Roles {
                api: false,
                worker: true,
                mllp: MllpRole::IfConfigured,
            };
        }
        let all = self.roles.contains(&NodeRole::All);
        Roles {
            api: all || self.roles.contains(&NodeRole::Api),
            worker: all || self.roles.contains(&NodeRole::Worker),
            mllp: if self.roles.contains(&NodeRole::Mllp) {
                MllpRole::Required
            } else if all {
                MllpRole::IfConfigured
            } else {
                MllpRole::Off
            },
        }
    }
}

/// `NAME=N`, N from 1 to 1024.
fn parse_queue_limit(text: &str) -> Result<(String, u32), String> {
    let (name, limit) = text
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=N, got {text:?}"))?;
    let name = name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(format!("a queue name is 1 to 100 characters, got {name:?}"));
    }
    let limit: u32 = limit
        .trim()
        .parse()
        .map_err(|_| format!("the limit of queue {name} is not a number: {limit:?}"))?;
    if !(1..=1024).contains(&limit) {
        return Err(format!(
            "the limit of queue {name} must be 1 to 1024, got {limit}"
        ));
    }
    Ok((name.to_owned(), limit))
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest first.
    List {
        /// Only jobs in this state.
        #[arg(long, value_enum)]
        state: Option<JobState>,
        /// Only this tenant's jobs.
        #[arg(long)]
        tenant: Option<uuid::Uuid>,
        /// At most this many (up to 1000).
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Show one job: its arguments (ids only), attempts, lease and last error.
    Show { id: uuid::Uuid },
    /// Run a dead, cancelled or retrying job again now, with its attempts reset.
    Retry { id: uuid::Uuid },
    /// Cancel a job that has not finished; a running job loses its lease and its
    /// effects roll back.
    Cancel { id: uuid::Uuid },
    /// Enqueue probe jobs for a tenant and, with --wait, follow them until they end:
    /// proves the workers of this database run jobs end to end, and that each ran
    /// exactly once.
    Probe {
        /// The tenant whose jobs they are.
        #[arg(long)]
        tenant: uuid::Uuid,
        /// How many probe jobs.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        count: u32,
        /// How long each one works, in milliseconds.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=60_000))]
        work_ms: u32,
        /// Wait until every probe has ended, then report; exits non-zero if one did
        /// not succeed exactly once.
        #[arg(long)]
        wait: bool,
        /// With --wait, give up after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum IngestCommand {
    /// List received messages, newest first: routing fields, status, ACK and error,
    /// never contents.
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<uuid::Uuid>,
        /// Only messages stored as accepted, or kept as rejected.
        #[arg(long, value_enum)]
        status: Option<MessageStatus>,
        /// Only messages received on this listener.
        #[arg(long)]
        listener: Option<String>,
        /// Only messages received since: an RFC 3339 instant
        /// (`2026-11-25T08:00:00Z`), a UTC date (`2026-11-25`) or an age (`30m`, `12h`,
        /// `7d`).
        #[arg(long, value_parser = parse_since)]
        since: Option<Since>,
        /// At most this many (up to 1000).
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Show one message: every header field, its status, ACK and error. With --raw
    /// also its contents, decrypted: PHI, so the read is recorded in the tenant's
    /// audit log.
    Show {
        id: uuid::Uuid,
        /// Also print the message as received (segments one per line). It is PHI:
        /// the read is audited.
        #[arg(long)]
        raw: bool,
        /// Why the raw message is read, recorded in the audit event.
        #[arg(long, default_value = "operations", requires = "raw")]
        purpose: String,
    },
    /// Process a message again whose processing failed (after fixing the cause: the
    /// patient it needs now exists, a critical range was set, ...): its dead letter is
    /// discarded, it is pending again and a new job runs it.
    Reprocess {
        /// The message's id (from `tenet ingest list` or the dead letter's arguments).
        id: uuid::Uuid,
        /// Apply an ADT message even though later messages of its patient were
        /// processed since (it may undo what they changed).
        #[arg(long)]
        force: bool,
    },
    /// Drop whole days of received messages older than the retention, with their
    /// de-duplication keys, and make the partitions of the days ahead (what
    /// `tenet serve` does hourly). Prints what it drops.
    Retention {
        /// Keep this many days (0: forever).
        #[arg(long, env = "TENET_INGEST_RETENTION_DAYS", default_value_t = ingest::partitions::RETENTION_DAYS_DEFAULT)]
        days: u32,
        /// Only print what would be dropped; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// The statuses of a stored message, as `ingest.message_status` spells them.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum MessageStatus {
    Accepted,
    Rejected,
}

impl From<MessageStatus> for ingest::store::Status {
    fn from(status: MessageStatus) -> Self {
        match status {
            MessageStatus::Accepted => Self::Accepted,
            MessageStatus::Rejected => Self::Rejected,
        }
    }
}

/// `--since`: an instant, or an age to subtract from now when the command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    At(time::OffsetDateTime),
    Ago(time::Duration),
}

impl Since {
    pub fn instant(self, now: time::OffsetDateTime) -> time::OffsetDateTime {
        match self {
            Since::At(at) => at,
            Since::Ago(age) => now - age,
        }
    }
}

/// An RFC 3339 instant, a UTC date `YYYY-MM-DD`, or an age `N` + `m`/`h`/`d`.
fn parse_since(text: &str) -> Result<Since, String> {
    use time::format_description::well_known::Rfc3339;
    let text = text.trim();
    if let Ok(at) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(Since::At(at));
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(date) = time::Date::parse(text, &date_format) {
        return Ok(Since::At(date.midnight().assume_utc()));
    }
    let split = text.len().saturating_sub(1);
    let (number, unit) = text.split_at(split);
    let n: u32 = number.parse().map_err(|_| {
        format!("expected an RFC 3339 instant, a date YYYY-MM-DD or an age like 12h, got {text:?}")
    })?;
    let age = match unit {
        "m" => time::Duration::minutes(i64::from(n)),
        "h" => time::Duration::hours(i64::from(n)),
        "d" => time::Duration::days(i64::from(n)),
        _ => return Err(format!("an age ends in m, h or d, got {text:?}")),
    };
    Ok(Since::Ago(age))
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Subscribe a URL to a tenant's events; prints the signing secret once.
    Create {
        /// The tenant whose events are sent.
        #[arg(long)]
        tenant: uuid::Uuid,
        /// `https://…` (or `http://`).
        #[arg(long)]
        url: String,
        /// Only these event types (`patient.registered`), comma-separated; all if none.
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        /// Allow a loopback, private or link-local host (refused by default, as over
        /// the API: such a URL reaches internal services).
        #[arg(long)]
        allow_private_host: bool,
    },
    /// A tenant's subscriptions.
    List {
        /// The subscriptions' tenant.
        #[arg(long)]
        tenant: uuid::Uuid,
    },
    /// Stop sending to a subscription; its pending deliveries wait.
    Disable {
        /// The subscription's tenant.
        #[arg(long)]
        tenant: uuid::Uuid,
        id: uuid::Uuid,
    },
    /// Send to a subscription again (after repeated failures disabled it, say).
    Enable {
        /// The subscription's tenant.
        #[arg(long)]
        tenant: uuid::Uuid,
        id: uuid::Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// Create a schedule: job KIND with ARGS (ids only, JSON) at each slot of CRON.
    Create {
        #[arg(long)]
        tenant: uuid::Uuid,
        /// Unique within the tenant.
        #[arg(long)]
        name: String,
        /// Five fields, `min hour day-of-month month day-of-week`: `0 7 * * 1-5`.
        #[arg(long)]
        cron: String,
        /// An IANA zone: `America/New_York`.
        #[arg(long, default_value = "UTC")]
        time_zone: String,
        /// The job kind each slot enqueues.
        #[arg(long)]
        kind: String,
        /// Its arguments, as JSON (ids and codes only).
        #[arg(long, default_value = "null")]
        args: String,
        /// The arguments' version (default: the kind's current one).
        #[arg(long)]
        args_version: Option<u32>,
        /// After downtime: `skip` (fire the latest missed slot), `all` (each, up to
        /// 100) or `none`.
        #[arg(long, default_value = "skip")]
        catch_up: String,
    },
    /// Schedules with their next and last slot (all tenants, or one).
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<uuid::Uuid>,
    },
    /// Fire again, from the next slot after now (slots missed while disabled are
    /// not caught up).
    Enable {
        /// The schedule's tenant.
        #[arg(long)]
        tenant: uuid::Uuid,
        id: uuid::Uuid,
    },
    /// Stop firing; jobs already enqueued still run.
    Disable {
        /// The schedule's tenant.
        #[arg(long)]
        tenant: uuid::Uuid,
        id: uuid::Uuid,
    },
    /// Delete a schedule; the jobs it fired stay.
    Delete {
        /// The schedule's tenant.
        #[arg(long)]
        tenant: uuid::Uuid,
        id: uuid::Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum AssessmentCareCommand {
    /// A patient's responses, oldest first: instrument, version, total, band, flags.
    Responses {
        #[arg(long)]
        tenant: uuid::Uuid,
        #[arg(long)]
        patient: uuid::Uuid,
        /// Only this instrument (`phq-9`, `gad-7`, ...).
        #[arg(long)]
        instrument: Option<String>,
    },
    /// A patient's score history on one instrument, with change since the baseline
    /// and the previous response, reliable change, response and remission.
    Scores {
        #[arg(long)]
        tenant: uuid::Uuid,
        #[arg(long)]
        patient: uuid::Uuid,
        #[arg(long)]
        instrument: String,
    },
    /// Urgent safety events (a self-harm answer).
    Safety {
        #[command(subcommand)]
        command: SafetyCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum SafetyCommand {
    /// Safety events, newest first: open ones unless --all.
    List {
        #[arg(long)]
        tenant: uuid::Uuid,
        /// Acknowledged ones too.
        #[arg(long)]
        all: bool,
        /// At most this many (up to 200).
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Acknowledge a safety event on behalf of a user who has taken charge of it.
    Ack {
        #[arg(long)]
        tenant: uuid::Uuid,
        /// The user (a clinician) who has taken charge.
        #[arg(long)]
        user: uuid::Uuid,
        id: uuid::Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum CriticalRangesCommand {
    /// Set (or replace) a code's critical range: a value below --low or above --high
    /// is critical.
    Set {
        #[arg(long)]
        tenant: uuid::Uuid,
        /// The coding system, as in OBX-3.3: `LN` for LOINC.
        #[arg(long)]
        system: String,
        /// The code, as in OBX-3.1: `2823-3`.
        #[arg(long)]
        code: String,
        #[arg(long, allow_negative_numbers = true)]
        low: Option<f64>,
        #[arg(long, allow_negative_numbers = true)]
        high: Option<f64>,
    },
    /// The tenant's critical ranges.
    List {
        #[arg(long)]
        tenant: uuid::Uuid,
    },
    /// Remove a code's critical range.
    Remove {
        #[arg(long)]
        tenant: uuid::Uuid,
        #[arg(long)]
        system: String,
        #[arg(long)]
        code: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RemindersCommand {
    /// Set the tenant's reminder settings (and start its reminder sweep, every minute).
    Configure {
        #[arg(long)]
        tenant: uuid::Uuid,
        /// Quiet hours on the patient's wall clock, `HH:MM-HH:MM` (`21:00-08:00`);
        /// `00:00-00:00` for none. A reminder due inside them waits for their end.
        #[arg(long, default_value = "21:00-08:00")]
        quiet_hours: String,
        /// The closing reminder goes out this many hours before an instance closes.
        #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(0..=672))]
        closing_lead_hours: u32,
        /// The channels reminders go by: `email`, `webhook`, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "email,webhook")]
        channels: Vec<String>,
        /// Greet the respondent by first name (otherwise a reminder names nobody).
        #[arg(long)]
        first_name: bool,
    },
    /// Show the tenant's reminder settings.
    Show {
        #[arg(long)]
        tenant: uuid::Uuid,
    },
    /// Set a patient's opt-outs (replacing the previous ones) and quiet hours.
    Preferences {
        #[arg(long)]
        tenant: uuid::Uuid,
        #[arg(long)]
        patient: uuid::Uuid,
        /// Channels never used for reminders about this patient: `email`, `webhook`.
        #[arg(long, value_delimiter = ',')]
        opt_out: Vec<String>,
        /// The patient's own quiet hours, `HH:MM-HH:MM`, instead of the tenant's.
        #[arg(long)]
        quiet_hours: Option<String>,
    },
    /// An instance's reminders: kind, channel, state, due time, attempts, reason.
    List {
        #[arg(long)]
        tenant: uuid::Uuid,
        #[arg(long)]
        instance: uuid::Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum NotesCommand {
    /// A patient's notes and amendments, newest care first (recorded in the audit log).
    List {
        #[arg(long)]
        tenant: uuid::Uuid,
        #[arg(long)]
        patient: uuid::Uuid,
    },
    /// One note's status, signature, co-signature and amendment chain; never its text
    /// (read that through the API, audited).
    Show {
        #[arg(long)]
        tenant: uuid::Uuid,
        #[arg(long)]
        note: uuid::Uuid,
    },
    /// Notes past the tenant's signing deadline: unsigned, or awaiting a required
    /// co-signature. Exits non-zero when there is any.
    Late {
        #[arg(long)]
        tenant: uuid::Uuid,
    },
    /// Render a signed note (with its signed amendments) to PDF and record the
    /// rendition's SHA-256. The same note always gives the same bytes. The read is
    /// recorded in the audit log; a draft is refused.
    Pdf {
        #[arg(long)]
        tenant: uuid::Uuid,
        note: uuid::Uuid,
        /// Where to write the PDF.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConsentsCommand {
    /// Record a patient's consent; prints its id.
    Grant {
        #[arg(long)]
        tenant: uuid::Uuid,
        #[arg(long)]
        patient: uuid::Uuid,
        /// treatment, telehealth, release_of_information or research.
        #[arg(long)]
        scope: String,
        /// Whom information may be released to (release_of_information only); `-`
        /// reads it from standard input, out of the process list.
        #[arg(long)]
        recipient: Option<String>,
        /// When it lapses (RFC 3339).
        #[arg(long)]
        valid_until: Option<String>,
        /// The signed form's document id.
        #[arg(long)]
        evidence_document: Option<uuid::Uuid>,
    },
    /// Revoke a consent, for good.
    Revoke {
        #[arg(long)]
        tenant: uuid::Uuid,
        #[arg(long)]
        consent: uuid::Uuid,
        /// patient_request, entered_in_error, superseded or other.
        #[arg(long)]
        reason: String,
    },
    /// A patient's consents, newest first (recorded in the audit log).
    List {
        #[arg(long)]
        tenant: uuid::Uuid,
        #[arg(long)]
        patient: uuid::Uuid,
    },
    /// One consent (recorded in the audit log).
    Show {
        #[arg(long)]
        tenant: uuid::Uuid,
        #[arg(long)]
        consent: uuid::Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReleasesCommand {
    /// Record a release of a patient's information to a recipient; prints its id.
    /// Exits non-zero, recording nothing, without a consent in force.
    Record {
        #[arg(long)]
        tenant: uuid::Uuid,
        #[arg(long)]
        patient: uuid::Uuid,
        /// Whom it was released to; `-` reads it from standard input, out of the
        /// process list.
        #[arg(long)]
        recipient: String,
        /// treatment, payment, healthcare_operations, patient_request, legal,
        /// public_health, research or other.
        #[arg(long)]
        purpose: String,
        /// A released document's id (repeat for several).
        #[arg(long = "document")]
        documents: Vec<uuid::Uuid>,
        /// What was released, in words; `-` reads it from standard input.
        #[arg(long)]
        description: Option<String>,
    },
    /// A patient's accounting of disclosures, newest first.
    List {
        #[arg(long)]
        tenant: uuid::Uuid,
        #[arg(long)]
        patient: uuid::Uuid,
    },
    /// The tenant's releases in [--from, --to) (RFC 3339), oldest first.
    Report {
        #[arg(long)]
        tenant: uuid::Uuid,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DocumentsCommand {
    /// A patient's documents (metadata only), newest first.
    List {
        #[arg(long)]
        tenant: uuid::Uuid,
        #[arg(long)]
        patient: uuid::Uuid,
        /// Include deleted documents.
        #[arg(long)]
        deleted: bool,
    },
    /// One document's metadata: category, type, size, hash, status, hold.
    Show {
        #[arg(long)]
        tenant: uuid::Uuid,
        #[arg(long)]
        document: uuid::Uuid,
    },
    /// Store a file as a patient's document (sealed; audited as the operator).
    Upload {
        #[arg(long)]
        tenant: uuid::Uuid,
        #[arg(long)]
        patient: uuid::Uuid,
        /// clinical_note, intake_form, consent_form, lab_result, imaging,
        /// correspondence, identification or other.
        #[arg(long)]
        category: String,
        /// The declared content type; the file's bytes must agree.
        #[arg(long)]
        content_type: String,
        /// The file to store; its name is stored, sealed.
        file: PathBuf,
    },
    /// Write a document's content to a file (audited as the operator).
    Download {
        #[arg(long)]
        tenant: uuid::Uuid,
        #[arg(long)]
        document: uuid::Uuid,
        /// Where to write it; refuses to overwrite.
        #[arg(long)]
        out: PathBuf,
    },
    /// Delete a document's content (its metadata stays, as deleted).
    Delete {
        #[arg(long)]
        tenant: uuid::Uuid,
        #[arg(long)]
        document: uuid::Uuid,
    },
    /// Place a legal hold: no deletion until it is released.
    Hold {
        #[arg(long)]
        tenant: uuid::Uuid,
        #[arg(long)]
        document: uuid::Uuid,
        /// A matter or case reference; not PHI.
        #[arg(long)]
        reason: String,
    },
    /// Release a legal hold.
    Release {
        #[arg(long)]
        tenant: uuid::Uuid,
        #[arg(long)]
        document: uuid::Uuid,
    },
    /// Show the tenant's retention rules, or set (`--keep-days`) or clear (`--clear`)
    /// one category's.
    Retention {
        #[arg(long)]
        tenant: uuid::Uuid,
        #[arg(long)]
        category: Option<String>,
        /// Keep this many days after the anchor.
        #[arg(long, requires = "category", conflicts_with = "clear")]
        keep_days: Option<i32>,
        /// `last_encounter` (the later of the patient's last encounter and the
        /// document's creation) or `created`.
        #[arg(long, default_value = "last_encounter")]
        anchor: String,
        /// Remove the category's rule (kept for ever).
        #[arg(long, requires = "category")]
        clear: bool,
    },
    /// Show the tenant's effective permission scope, or override one cell.
    Scopes {
        #[arg(long)]
        tenant: uuid::Uuid,
        /// admin, clinician, care_coordinator, auditor or integration.
        #[arg(long, requires_all = ["category", "permission"])]
        role: Option<String>,
        #[arg(long, requires = "role")]
        category: Option<String>,
        /// The cell for care-team members (otherwise, for everyone else).
        #[arg(long, requires = "role")]
        on_care_team: bool,
        /// none, read, write or delete.
        #[arg(long, requires = "role")]
        permission: Option<String>,
    },
    /// Run the lifecycle pass now for one tenant: delete what expired (not what is
    /// held) and remove orphaned objects.
    Sweep {
        #[arg(long)]
        tenant: uuid::Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum SagasCommand {
    /// Sagas, newest first.
    List {
        /// Only sagas in this state: running, compensating, completed, compensated,
        /// failed.
        #[arg(long)]
        state: Option<String>,
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<uuid::Uuid>,
        /// At most this many (up to 1000).
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// List dead letters, most recently dead first.
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<uuid::Uuid>,
        /// At most this many (up to 1000).
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Show one dead letter: what it was, its attempts and its last error.
    Show { id: uuid::Uuid },
    /// Run it again now, with its attempts reset.
    Retry { id: uuid::Uuid },
    /// Take it off the dead-letter list; it stays recorded as dead.
    Discard { id: uuid::Uuid },
}

/// The states of a job, as `platform.job_state` spells them.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum JobState {
    Scheduled,
    Running,
    Succeeded,
    Retrying,
    Dead,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Scheduled => "scheduled",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Retrying => "retrying",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Create a demo tenant with users and API keys (printed once).
    #[arg(long)]
    pub demo: bool,
}

#[derive(Debug, Subcommand)]
pub enum MigrateDirection {
    /// Apply every pending migration (the default).
    Up,
    /// Revert the newest migrations.
    Down {
        /// How many to revert.
        #[arg(long, default_value_t = 1)]
        steps: usize,
    },
    /// Show applied and pending migrations.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant, with its data key and audit chain.
    Create {
        /// The tenant's display name.
        name: String,
    },
    /// List tenants.
    List,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user in a tenant.
    Create {
        #[arg(long)]
        tenant: uuid::Uuid,
        /// A login handle, unique in the tenant.
        #[arg(long)]
        handle: String,
        /// admin, clinician, care_coordinator, auditor or integration.
        #[arg(long)]
        role: kernel::Role,
        /// The `sub` of this user's OIDC tokens.
        #[arg(long)]
        oidc_subject: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create an API key; the key is printed once.
    Create {
        #[arg(long)]
        tenant: uuid::Uuid,
        /// admin, clinician, care_coordinator, auditor or integration.
        #[arg(long)]
        role: kernel::Role,
        /// What the key is for.
        #[arg(long, default_value = "created by tenet apikey create")]
        label: String,
        /// The user the key acts as.
        #[arg(long)]
        user: Option<uuid::Uuid>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Re-walk every chain and checkpoint; report any edit, deletion, insertion,
    /// reordering or truncation, and exit non-zero if there is one.
    Verify {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<uuid::Uuid>,
        /// Database connections reading a large tenant's log at once (default: the
        /// machine's cores, at most 4). The hashing stays on one core either way.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=4))]
        streams: Option<u16>,
    },
    /// Sign the current chain heads of every tenant (or one).
    Checkpoint {
        #[arg(long)]
        tenant: Option<uuid::Uuid>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Replace the master key: every tenant's data key is re-wrapped, no record is
    /// re-encrypted. Resumes if interrupted.
    Rotate,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reads_an_instant_a_date_or_an_age() {
        use time::macros::datetime;
        assert_eq!(
            parse_since("2026-11-25T08:00:00Z"),
            Ok(Since::At(datetime!(2026-11-25 08:00 UTC)))
        );
        assert_eq!(
            parse_since("2026-11-25"),
            Ok(Since::At(datetime!(2026-11-25 00:00 UTC)))
        );
        assert_eq!(
            parse_since("30m"),
            Ok(Since::Ago(time::Duration::minutes(30)))
        );
        assert_eq!(
            parse_since("12h"),
            Ok(Since::Ago(time::Duration::hours(12)))
        );
        assert_eq!(parse_since("7d"), Ok(Since::Ago(time::Duration::days(7))));
        assert!(parse_since("7w").is_err());
        assert!(parse_since("yesterday").is_err());
        assert!(parse_since("").is_err());
    }
}

#[derive(Debug, Subcommand)]
pub enum AssessmentsCommand {
    /// Measurement plans: create, update (a new version each time), list, retire.
    Plans {
        #[command(subcommand)]
        command: PlansCommand,
    },
    /// Enrol patients into a plan: one (--patient), a CSV or JSON file (--file;
    /// resumable: run the same file again after an interruption), or a filter
    /// (--care-team-of USER, --all-patients). Already enrolled patients are reported,
    /// not refused.
    Enroll {
        #[arg(long)]
        tenant: uuid::Uuid,
        #[arg(long)]
        plan: uuid::Uuid,
        #[arg(long, conflicts_with_all = ["patient", "care_team_of", "all_patients"])]
        file: Option<PathBuf>,
        #[arg(long, conflicts_with_all = ["care_team_of", "all_patients"])]
        patient: Option<uuid::Uuid>,
        #[arg(long, conflicts_with = "all_patients")]
        care_team_of: Option<uuid::Uuid>,
        #[arg(long)]
        all_patients: bool,
        /// The IANA time zone of rows that name none.
        #[arg(long, default_value = "UTC")]
        time_zone: String,
        /// The clinician whose due list rows that name none go to.
        #[arg(long)]
        clinician: Option<uuid::Uuid>,
        /// Where the cadence counts from (RFC 3339), for rows that name none; default now.
        #[arg(long)]
        anchor_at: Option<String>,
    },
    /// Stop an enrolment; its unanswered instances are cancelled.
    Stop {
        #[arg(long)]
        tenant: uuid::Uuid,
        enrollment: uuid::Uuid,
    },
    /// Guardianships that the family rules read.
    Guardian {
        #[command(subcommand)]
        command: GuardianCommand,
    },
    /// Make the instances a plan's enrolments should have had over a past window
    /// (marked backfilled: never reminded or escalated). Resumable and idempotent.
    Backfill {
        #[arg(long)]
        tenant: uuid::Uuid,
        #[arg(long)]
        plan: uuid::Uuid,
        /// RFC 3339.
        #[arg(long)]
        from: String,
        /// RFC 3339; default now.
        #[arg(long)]
        until: Option<String>,
    },
    /// A clinician's due list (scheduled or open, due within --days), or with
    /// --overdue their overdue list.
    Due {
        #[arg(long)]
        tenant: uuid::Uuid,
        #[arg(long)]
        clinician: uuid::Uuid,
        #[arg(long)]
        overdue: bool,
        #[arg(long, default_value_t = 7)]
        days: i64,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Run the materialiser once now for a tenant (the schedule runs it every minute).
    Materialize {
        #[arg(long)]
        tenant: uuid::Uuid,
    },
    /// A patient's responses, scores and urgent safety events.
    #[command(flatten)]
    Care(AssessmentCareCommand),
}

#[derive(Debug, Subcommand)]
pub enum PlansCommand {
    /// Create a plan from a PlanDefinition JSON file.
    Create {
        #[arg(long)]
        tenant: uuid::Uuid,
        #[arg(long)]
        name: String,
        #[arg(long)]
        file: PathBuf,
        /// Hours an instance may stay open past due before the care team is told.
        #[arg(long)]
        overdue_grace_hours: Option<u32>,
    },
    /// Replace a plan's definition: a new version; active enrolments follow it.
    Update {
        #[arg(long)]
        tenant: uuid::Uuid,
        id: uuid::Uuid,
        #[arg(long)]
        file: PathBuf,
        #[arg(long)]
        overdue_grace_hours: Option<u32>,
    },
    List {
        #[arg(long)]
        tenant: uuid::Uuid,
    },
    /// Retire a plan: no new enrolments; existing ones run on.
    Retire {
        #[arg(long)]
        tenant: uuid::Uuid,
        id: uuid::Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum GuardianCommand {
    /// PERSON (an identity related-person id) is PATIENT's guardian from --since.
    Add {
        #[arg(long)]
        tenant: uuid::Uuid,
        #[arg(long)]
        patient: uuid::Uuid,
        #[arg(long)]
        person: uuid::Uuid,
        /// YYYY-MM-DD.
        #[arg(long)]
        since: String,
    },
    /// The guardianship ends: from --until, PERSON no longer answers for PATIENT.
    End {
        #[arg(long)]
        tenant: uuid::Uuid,
        #[arg(long)]
        patient: uuid::Uuid,
        #[arg(long)]
        person: uuid::Uuid,
        /// YYYY-MM-DD.
        #[arg(long)]
        until: String,
    },
}
