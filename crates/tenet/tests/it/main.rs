//! Integration tests of the real `tenet` binary, run as an operator runs it, against
//! a database of its own on the test cluster.
//!
//! - [`help`]: every subcommand explains itself.
//! - [`assessments`]: plans, a batch enrolment killed mid-file and resumed, the due list.
//! - [`assessment_responses`]: a patient's scores and safety events, as the operator sees them.
//! - [`principals`]: `tenant create`, `user create`, `apikey create`.
//! - [`audit_log`]: `audit verify` on a clean log, and after each kind of tampering.
//! - [`check`]: `tenet check` on the migrated schema and on a broken one.
//! - [`consents`]: `consents grant|revoke|list|show`, `releases record|list|report`:
//!   a release refused without consent, recorded with one; recipients never printed.
//! - [`keys`]: `keys rotate` re-wraps every data key under a new master key.
//! - [`migrate`]: `migrate down` then `migrate` round-trips.
//! - [`hl7`]: `hl7 parse` and `hl7 send` (no database; an MLLP server in the test).
//! - [`events`]: a webhook gets a signed event from `serve`'s relay; a schedule fires.
//! - [`ingest`]: `serve --mllp` stores what `hl7 send` sends, once, before its AA.
//! - [`processing`]: `critical-ranges` and received ADT/ORU becoming patients,
//!   encounters and (critical) observations through `serve`'s workers.
//! - [`ingest_faults`]: MLLP ingestion with the server killed with SIGKILL under load,
//!   the database stopped immediately under load, two servers on one database,
//!   malformed input, and a third-party client (the Python `hl7` package's `mllp_send`).
//! - [`listeners`]: `serve --role mllp --mllp-config FILE` runs each listener of the
//!   file for its tenant and reports it on `/metrics`; configuration mistakes stop
//!   the start.
//! - [`reminders`]: `reminders configure|show|preferences|list`, and `serve` refusing a bad SMTP URL.
//! - [`jobs`]: worker processes killed with SIGKILL mid-job, a database crash-restart
//!   under load, `jobs probe` and `deadletters`.
//!
//! The binary gets `DATABASE_URL` (the owner role over the cluster's unix socket),
//! `TENET_APP_DATABASE_URL` (the service role), key files in a temporary directory
//! and JSON logs; nothing from the environment of the test run leaks in.

mod assessment_responses;
mod assessments;
mod audit_log;
mod check;
mod consents;
mod documents;
mod events;
mod help;
mod hl7;
mod ingest;
mod ingest_faults;
mod jobs;
mod keys;
mod listeners;
mod migrate;
mod notes;
mod principals;
mod processing;
mod reminders;

use std::path::PathBuf;
use std::process::Output;

use db::testing::TestDb;
use identity::keyring::MasterKey;

/// The `tenet` binary, a database and a home for its keys.
struct Tenet {
    db: TestDb,
    home: tempfile::TempDir,
}

impl Tenet {
    /// A migrated database of its own, and a master key file.
    async fn new() -> Self {
        let db = TestDb::migrated(&schema::migrator()).await;
        let home = tempfile::tempdir().expect("creating a temporary home");
        let tenet = Self { db, home };
        std::fs::write(
            tenet.master_key_path(),
            format!("{}\n", MasterKey::generate().to_hex()),
        )
        .unwrap();
        tenet
    }

    fn master_key_path(&self) -> PathBuf {
        self.home.path().join("master.key")
    }

    fn checkpoint_key_path(&self) -> PathBuf {
        self.home.path().join("audit-signing.key")
    }

    /// `postgres://<role>@localhost/<db>?host=<socket dir>`: the role over the
    /// cluster's unix socket.
    fn url(&self, role: &str) -> String {
        let socket_dir = self.db.cluster.socket_dir().to_str().expect("a UTF-8 path");
        format!(
            "postgres://{role}@localhost/{}?host={socket_dir}",
            self.db.name
        )
    }

    /// `tenet args...`, with the test's environment only.
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenet"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", self.url(db::roles::OWNER_ROLE))
            .env("TENET_APP_DATABASE_URL", self.url(db::roles::APP_ROLE))
            .env("TENET_HOME", self.home.path())
            .env("TENET_MASTER_KEY_FILE", self.master_key_path())
            .env("TENET_CHECKPOINT_KEY_FILE", self.checkpoint_key_path())
            .env("TENET_LOG_FORMAT", "json")
            .current_dir(self.home.path());
        command
    }

    /// Runs `tenet args...` to completion.
    async fn run(&self, args: &[&str]) -> Run {
        let output = self.command(args).output().await.expect("running tenet");
        Run::new(args, output)
    }

    /// Runs `tenet args...` to completion with `stdin` on its standard input.
    async fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Run {
        use tokio::io::AsyncWriteExt;
        let mut child = self
            .command(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("running tenet");
        let mut input = child.stdin.take().expect("a piped stdin");
        // A run that stops before it reads its input is judged by its output.
        if let Err(err) = input.write_all(stdin).await {
            assert_eq!(
                err.kind(),
                std::io::ErrorKind::BrokenPipe,
                "writing stdin: {err}"
            );
        }
        drop(input);
        let output = child.wait_with_output().await.expect("tenet's output");
        Run::new(args, output)
    }

    /// Runs `sql` as the cluster superuser.
    async fn as_superuser(&self, sql: &str) {
        sqlx::raw_sql(sql)
            .execute(&self.db.admin)
            .await
            .expect("the superuser's change");
    }

    /// Runs `sql` as the cluster superuser with user triggers off: what an attacker
    /// does, since the append-only trigger refuses the change otherwise.
    async fn as_attacker(&self, sql: &str) {
        self.as_superuser(&format!(
            "BEGIN; SET LOCAL session_replication_role = replica; {sql}; COMMIT;"
        ))
        .await;
    }
}

/// A finished run of the binary.
struct Run {
    command: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn new(args: &[&str], output: Output) -> Self {
        Self {
            command: format!("tenet {}", args.join(" ")),
            code: output.status.code(),
            stdout: String::from_utf8(output.stdout).expect("UTF-8 on stdout"),
            stderr: String::from_utf8(output.stderr).expect("UTF-8 on stderr"),
        }
    }

    /// Asserts the run succeeded, and returns its stdout.
    #[track_caller]
    fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "`{}` failed:\n{self}", self.command);
        &self.stdout
    }

    /// Asserts the run failed with an exit code (not a signal), and returns its stdout.
    #[track_caller]
    fn failed(&self) -> &str {
        assert!(
            matches!(self.code, Some(code) if code != 0),
            "`{}` should fail:\n{self}",
            self.command
        );
        &self.stdout
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// The first line of `text`, trimmed: what a command prints as its result.
fn single_line(text: &str) -> &str {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected, got {text:?}");
    lines[0].trim()
}
