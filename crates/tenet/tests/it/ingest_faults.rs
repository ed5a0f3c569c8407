//! HL7 v2 ingestion under faults, through the real binary (`tenet serve --no-http
//! --mllp`) on real sockets and a real PostgreSQL: the server killed with SIGKILL under
//! load, the database stopped immediately under load, two servers on one database,
//! malformed input, and a third-party MLLP client.
//!
//! What must hold (PRODUCT.md): a message is acknowledged only after it is committed
//! (I4), and a duplicate is harmless (I6). The load client behaves as a careful sender
//! does: many connections, one message at a time on each, and whatever was not
//! ACKed (a connection dropped, a server died, an ACK took too long) is sent again
//! with the same control id until it is. [`verify`] then compares what the senders
//! were told with what the database holds.
//!
//! Every message carries [`PHI_CANARY`] as the patient's name; no server log may
//! contain it (I2).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use db::TenantTx;
use db::cluster::Cluster;
use futures::{SinkExt, StreamExt};
use hl7::Message;
use hl7::mllp::MllpCodec;
use kernel::TenantId;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;

use crate::Tenet;
use crate::jobs::{create_tenant, embedded_command, free_port};

/// Messages of the SIGKILL run: the issue asks for tens of thousands. 20 000 over
/// [`N_CONNECTIONS`] connections, each stored and then processed into observations,
/// take three to five minutes on two cores (a debug build): the suite's longest test.
const N_KILL_MESSAGES: usize = 20_000;
/// Kills in the SIGKILL run: one each time another share of the run was ACKed.
const N_KILLS: usize = 8;
/// Messages of the database-outage and two-server runs: enough that an outage at a
/// quarter of them cuts commits in flight and both servers take traffic at once.
const N_MESSAGES: usize = 2_000;
/// Connections per load.
const N_CONNECTIONS: usize = 16;
/// How long the database stays down in the outage run.
const OUTAGE: Duration = Duration::from_secs(2);
/// How long a sender waits for an ACK before it gives up on the connection and
/// resends on a new one.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a sender waits before it connects again after a failure.
const RECONNECT_PAUSE: Duration = Duration::from_millis(20);
/// How long one message may go unACKed, a wait or a server's start take, or the
/// processing of a load stall, before the test gives up.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);
/// The patient's family name in every message: a name no log may ever show.
const PHI_CANARY: &str = "QUILLFEATHERBY";

// ---------------------------------------------------------------------------------
// Messages

/// One message of a load.
#[derive(Clone, Debug)]
struct Outgoing {
    /// MSH-3.1; MSH-4.1 is always `HOSP`.
    sender: &'static str,
    /// MSH-10.
    control_id: String,
    /// The answer it must get: `AA`, or `CA` when it asks for enhanced mode.
    expected: &'static str,
    bytes: Vec<u8>,
}

/// The `k`th message of a load: an ORU^R01 from `LAB` or an ADT^A01/A08 from `REG`,
/// MSH-10 `{prefix}{k}`, every fifth asking for enhanced mode (answered `CA`), so a
/// resend answered with another message's code shows.
fn message(prefix: &str, k: usize) -> Outgoing {
    let control_id = format!("{prefix}{k:06}");
    let enhanced = k % 5 == 4;
    let ack_fields = if enhanced { "|||AL|NE" } else { "" };
    let mrn = 100_000 + k % 997;
    let (sender, text) = if k.is_multiple_of(2) {
        let (cholesterol, triglycerides) = (150 + k % 60, 90 + k % 70);
        (
            "LAB",
            format!(
                "MSH|^~\\&|LAB|HOSP|TENET|CLINIC|20240102030405||ORU^R01^ORU_R01|{control_id}|P|2.5.1{ack_fields}\r\
                 PID|1||{mrn}^^^HOSP^MR||{PHI_CANARY}^ADA||19800101|F\r\
                 OBR|1|ORD{k}|FIL{k}|24331-1^Lipid panel^LN|||20240102030000\r\
                 OBX|1|NM|2093-3^Cholesterol^LN||{cholesterol}|mg/dL|<200|N|||F\r\
                 OBX|2|NM|2571-8^Triglyceride^LN||{triglycerides}|mg/dL|<150|N|||F\r"
            ),
        )
    } else {
        let event = if k % 4 == 1 { "A01" } else { "A08" };
        (
            "REG",
            format!(
                "MSH|^~\\&|REG|HOSP|TENET|CLINIC|20240102030405||ADT^{event}^ADT_A01|{control_id}|P|2.5.1{ack_fields}\r\
                 EVN|{event}|20240102030405\r\
                 PID|1||{mrn}^^^HOSP^MR||{PHI_CANARY}^ADA||19800101|F\r\
                 PV1|1|O\r"
            ),
        )
    };
    Outgoing {
        sender,
        control_id,
        expected: if enhanced { "CA" } else { "AA" },
        bytes: text.into_bytes(),
    }
}

fn messages(prefix: &str, n: usize) -> Vec<Outgoing> {
    (0..n).map(|k| message(prefix, k)).collect()
}

// ---------------------------------------------------------------------------------
// The sender

type Client = Framed<TcpStream, MllpCodec>;

/// An ACK as read off the wire.
#[derive(Debug)]
struct Ack {
    /// MSA-1.
    code: String,
    /// MSA-2: the control id of the message it answers.
    control_id: String,
    /// ERR-3.1, the HL7 error code, when there is an ERR segment.
    err_code: Option<String>,
}

impl Ack {
    /// Parses an ACK, which must echo nothing of the patient (I2).
    #[track_caller]
    fn parse(frame: &[u8]) -> Self {
        assert!(
            !String::from_utf8_lossy(frame).contains(PHI_CANARY),
            "an ACK holds a patient's name"
        );
        let ack = Message::parse(frame).expect("an ACK that parses");
        let get = |path: &str| {
            ack.get(&path.parse().expect("BUG: a valid path"))
                .map(|value| value.as_str().to_owned())
        };
        Ack {
            code: get("MSA-1").unwrap_or_default(),
            control_id: get("MSA-2").unwrap_or_default(),
            err_code: ack
                .segment("ERR")
                .map(|_| get("ERR-3.1").unwrap_or_default()),
        }
    }
}

impl Ack {
    /// MSA-1, MSA-2 and ERR-3.1, for comparing an answer whole.
    fn summary(&self) -> (&str, &str, Option<&str>) {
        (&self.code, &self.control_id, self.err_code.as_deref())
    }
}

async fn connect(addr: SocketAddr) -> Option<Client> {
    let stream = tokio::time::timeout(ACK_TIMEOUT, TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    Some(Framed::new(stream, MllpCodec::new()))
}

/// Sends one framed message and reads one ACK; `None` when the connection failed or
/// the ACK did not come in time.
async fn exchange(client: &mut Client, payload: &[u8]) -> Option<Ack> {
    client.send(payload).await.ok()?;
    match tokio::time::timeout(ACK_TIMEOUT, client.next()).await {
        Ok(Some(Ok(frame))) => Some(Ack::parse(&frame)),
        _ => None,
    }
}

/// One try at delivering a message.
#[derive(Clone, Debug)]
struct Attempt {
    sent_at: Instant,
    /// The ACK's code and when it arrived; `None` when the connection failed first.
    ack: Option<(String, Instant)>,
}

/// What a sender did for one message, and what it was told.
#[derive(Clone, Debug)]
struct Delivery {
    sender: &'static str,
    control_id: String,
    expected: &'static str,
    attempts: Vec<Attempt>,
}

impl Delivery {
    fn codes(&self) -> impl Iterator<Item = &str> {
        self.attempts
            .iter()
            .filter_map(|attempt| attempt.ack.as_ref().map(|(code, _)| code.as_str()))
    }

    fn is_acked(&self) -> bool {
        self.codes().next().is_some()
    }
}

/// A load's progress, for the test that decides when to strike.
#[derive(Default)]
struct Progress {
    n_acked: AtomicUsize,
    n_in_flight: AtomicUsize,
}

impl Progress {
    fn acked(&self) -> usize {
        self.n_acked.load(Ordering::SeqCst)
    }

    fn in_flight(&self) -> usize {
        self.n_in_flight.load(Ordering::SeqCst)
    }
}

/// Sends `messages` over [`N_CONNECTIONS`] connections, each message on connection
/// `k % N_CONNECTIONS`; connection `c` starts on `addrs[(c + offset) % addrs.len()]`
/// and moves to the next address after each failure. Returns every delivery once all
/// are ACKed.
fn spawn_load(
    addrs: &[SocketAddr],
    messages: &[Outgoing],
    offset: usize,
    progress: &Arc<Progress>,
) -> JoinHandle<Vec<Delivery>> {
    let mut shares = vec![Vec::new(); N_CONNECTIONS];
    for (k, message) in messages.iter().enumerate() {
        shares[k % N_CONNECTIONS].push(message.clone());
    }
    let senders: Vec<_> = shares
        .into_iter()
        .enumerate()
        .map(|(c, share)| {
            tokio::spawn(send_all(
                addrs.to_vec(),
                c + offset,
                share,
                progress.clone(),
            ))
        })
        .collect();
    tokio::spawn(async move {
        let mut deliveries = Vec::new();
        for sender in senders {
            deliveries.extend(sender.await.expect("a sender panicked"));
        }
        deliveries
    })
}

/// One connection's sender: each message in turn, resent with the same control id
/// until it is ACKed.
async fn send_all(
    addrs: Vec<SocketAddr>,
    mut n_addr: usize,
    messages: Vec<Outgoing>,
    progress: Arc<Progress>,
) -> Vec<Delivery> {
    let mut client: Option<Client> = None;
    let mut deliveries = Vec::with_capacity(messages.len());
    for message in messages {
        // Each message's own deadline: a slow machine may take longer over the whole
        // load, but no message may go unanswered for long.
        let started = Instant::now();
        let mut delivery = Delivery {
            sender: message.sender,
            control_id: message.control_id.clone(),
            expected: message.expected,
            attempts: Vec::new(),
        };
        loop {
            assert!(
                started.elapsed() < RUN_TIMEOUT,
                "{} was not ACKed within {RUN_TIMEOUT:?} ({} attempts)",
                message.control_id,
                delivery.attempts.len()
            );
            let connection = match &mut client {
                Some(connection) => connection,
                None => match connect(addrs[n_addr % addrs.len()]).await {
                    Some(connection) => client.insert(connection),
                    None => {
                        n_addr += 1;
                        tokio::time::sleep(RECONNECT_PAUSE).await;
                        continue;
                    }
                },
            };
            let sent_at = Instant::now();
            progress.n_in_flight.fetch_add(1, Ordering::SeqCst);
            let ack = exchange(connection, &message.bytes).await;
            progress.n_in_flight.fetch_sub(1, Ordering::SeqCst);
            match ack {
                Some(ack) => {
                    assert_eq!(
                        ack.control_id, message.control_id,
                        "an ACK answered another message"
                    );
                    delivery.attempts.push(Attempt {
                        sent_at,
                        ack: Some((ack.code, Instant::now())),
                    });
                    progress.n_acked.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                None => {
                    delivery.attempts.push(Attempt { sent_at, ack: None });
                    client = None;
                    n_addr += 1;
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
            }
        }
        deliveries.push(delivery);
    }
    deliveries
}

/// Waits until `done` holds, or the load ends; false if the load ended first.
async fn wait_for(load: &JoinHandle<Vec<Delivery>>, what: &str, done: impl Fn() -> bool) -> bool {
    let started = Instant::now();
    while !done() {
        if load.is_finished() {
            return false;
        }
        assert!(started.elapsed() < RUN_TIMEOUT, "{what} never happened");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

// ---------------------------------------------------------------------------------
// What the database holds

/// What the database holds for a load, against what its senders were told.
#[derive(Debug, PartialEq, Eq)]
struct Verdict {
    /// Distinct messages sent (sender + control id).
    n_messages: usize,
    /// Of those, ACKed at least once.
    n_acked: usize,
    /// ACKed, yet not stored.
    n_lost: usize,
    /// Stored more than once.
    n_stored_twice: usize,
    /// An ACK (first or on a resend) whose code is not the one stored, or not the one
    /// the message asked for.
    n_wrong_code: usize,
    /// Rows of the tenant that no sender sent.
    n_unexpected: usize,
    /// Accepted messages not processed (still pending once the workers are idle, or
    /// failed).
    n_unprocessed: usize,
    /// Lab results whose observations are not exactly their two OBX segments.
    n_observations_wrong: usize,
    /// Patients beyond one per identifier: a message processed twice, or two
    /// messages of one patient processed at once, would register them again.
    n_patients_doubled: usize,
}

impl Verdict {
    /// Every one of `n` messages ACKed, stored once, always with its own code.
    fn clean(n: usize) -> Self {
        Verdict {
            n_messages: n,
            n_acked: n,
            n_lost: 0,
            n_stored_twice: 0,
            n_wrong_code: 0,
            n_unexpected: 0,
            n_unprocessed: 0,
            n_observations_wrong: 0,
            n_patients_doubled: 0,
        }
    }
}

/// Compares `deliveries` (the same message may appear several times: sent by two
/// senders, or resent later) with the tenant's rows in `ingest.messages`, read as
/// the owner role in the tenant's transaction.
///
/// This is the one place where "exactly once" is judged for every fault test.
async fn verify(owner: &PgPool, tenant_id: TenantId, deliveries: &[Delivery]) -> Verdict {
    let mut tx = TenantTx::begin_as(owner, tenant_id, "system:test", None)
        .await
        .unwrap();
    // A message that did not parse has no routing fields: '' here, which no sender
    // sends, so it counts as unexpected.
    let rows: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT coalesce(sending_application, ''), coalesce(sending_facility, ''),
                coalesce(control_id, ''), ack_code
         FROM ingest.messages",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut stored: HashMap<(String, String), Vec<String>> = HashMap::new();
    let mut n_unexpected = 0;
    for (application, facility, control_id, ack_code) in rows {
        if facility == "HOSP" {
            stored
                .entry((application, control_id))
                .or_default()
                .push(ack_code);
        } else {
            n_unexpected += 1;
        }
    }
    let mut sent: HashMap<(String, String), Vec<&Delivery>> = HashMap::new();
    for delivery in deliveries {
        sent.entry((delivery.sender.to_owned(), delivery.control_id.clone()))
            .or_default()
            .push(delivery);
    }
    n_unexpected += stored.keys().filter(|key| !sent.contains_key(*key)).count();
    let mut verdict = Verdict {
        n_messages: sent.len(),
        n_acked: 0,
        n_lost: 0,
        n_stored_twice: 0,
        n_wrong_code: 0,
        n_unexpected,
        n_unprocessed: 0,
        n_observations_wrong: 0,
        n_patients_doubled: 0,
    };
    for (key, deliveries) in &sent {
        let acked = deliveries.iter().any(|delivery| delivery.is_acked());
        let codes = stored.get(key).map(Vec::as_slice).unwrap_or_default();
        verdict.n_acked += usize::from(acked);
        verdict.n_lost += usize::from(acked && codes.is_empty());
        verdict.n_stored_twice += usize::from(codes.len() > 1);
        let wrong = deliveries.iter().any(|delivery| {
            delivery
                .codes()
                .any(|code| code != delivery.expected || codes.first().is_some_and(|c| c != code))
        });
        verdict.n_wrong_code += usize::from(wrong);
    }
    // Processed exactly once in effect: a server's workers (still running) process
    // what was stored, through crashes; once nothing is pending, every accepted
    // message is processed, each lab result has exactly its observations, and each
    // patient was registered once.
    // A slow machine processes slowly: what fails the run is a backlog that stops
    // shrinking, not one that takes long.
    let mut last_progress = Instant::now();
    let mut last_pending = usize::MAX;
    loop {
        let pending = count(
            owner,
            tenant_id,
            "SELECT count(*) FROM ingest.messages WHERE processing = 'pending'",
        )
        .await;
        if pending == 0 {
            break;
        }
        if pending < last_pending {
            last_pending = pending;
            last_progress = Instant::now();
        }
        assert!(
            last_progress.elapsed() < RUN_TIMEOUT,
            "{pending} stored messages were never processed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    verdict.n_unprocessed = count(
        owner,
        tenant_id,
        "SELECT count(*) FROM ingest.messages
         WHERE status = 'accepted' AND processing IS DISTINCT FROM 'processed'",
    )
    .await;
    verdict.n_observations_wrong = count(
        owner,
        tenant_id,
        "SELECT count(*) FROM ingest.messages m
         WHERE m.status = 'accepted' AND m.sending_application = 'LAB' AND 2 <> (
             SELECT count(*) FROM clinical.observations o
             WHERE o.tenant_id = m.tenant_id AND o.source_message_id = m.id)",
    )
    .await;
    let n_patients = count(owner, tenant_id, "SELECT count(*) FROM clinical.patients").await;
    let n_identifiers = count(
        owner,
        tenant_id,
        "SELECT count(DISTINCT order_key) FROM ingest.messages WHERE processing = 'processed'",
    )
    .await;
    verdict.n_patients_doubled = n_patients.saturating_sub(n_identifiers);
    verdict
}

/// `sql` (a count) in the tenant's transaction on `owner`.
async fn count(owner: &PgPool, tenant_id: TenantId, sql: &str) -> usize {
    let mut tx = TenantTx::begin_as(owner, tenant_id, "system:test", None)
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut *tx).await.unwrap();
    tx.rollback().await.unwrap();
    usize::try_from(n).unwrap()
}

/// Delivered messages resent at least once.
fn n_resent(deliveries: &[Delivery]) -> usize {
    deliveries
        .iter()
        .filter(|delivery| delivery.attempts.len() > 1)
        .count()
}

// ---------------------------------------------------------------------------------
// The server

/// A running `tenet serve --no-http --mllp`, logging to `logs/<name>.log`.
struct MllpServer {
    child: Child,
    log: PathBuf,
}

impl MllpServer {
    /// Starts `command` (a `tenet` command with its environment) as an MLLP-only node
    /// for `tenant` on `addr`; returns once the listener accepts connections.
    async fn start(mut command: Command, addr: SocketAddr, tenant: &str, log: PathBuf) -> Self {
        let file = std::fs::File::create(&log).expect("creating a server log");
        let addr_text = addr.to_string();
        let child = command
            .args([
                "serve",
                "--no-http",
                // Workers process what is stored, and are killed with the server; a
                // short lease lets the next server rescue the jobs a kill cut off.
                "--workers",
                "4",
                "--job-lease-secs",
                "3",
                "--checkpoint-secs",
                "0",
                "--mllp",
                &addr_text,
                "--mllp-tenant",
                tenant,
            ])
            .stdout(Stdio::null())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("starting tenet serve");
        let mut server = MllpServer { child, log };
        let started = Instant::now();
        while TcpStream::connect(addr).await.is_err() {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("tenet serve exited ({status}):\n{}", server.log_text());
            }
            assert!(
                started.elapsed() < RUN_TIMEOUT,
                "the MLLP listener never opened"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server
    }

    /// SIGKILL: no shutdown, no flush, connections cut.
    async fn kill(&mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A directory for the servers' logs under `home`.
fn logs_dir(home: &Path) -> PathBuf {
    let dir = home.join("logs");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Asserts no server log in `dir` holds the patient's name, and returns how many
/// bytes of logs were read (so a test can tell it read something).
#[track_caller]
fn assert_no_phi_in_logs(dir: &Path) -> usize {
    let mut n_bytes = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains(PHI_CANARY),
            "{} holds a patient's name",
            path.display()
        );
        n_bytes += text.len();
    }
    n_bytes
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn tenant(tenet: &Tenet) -> (String, TenantId) {
    let tenant = create_tenant(async |args| tenet.run(args).await).await;
    let tenant_id = TenantId::new_unchecked(tenant.parse().expect("a tenant id"));
    (tenant, tenant_id)
}

// ---------------------------------------------------------------------------------
// The tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_again_and_again_under_load_loses_no_acked_message_and_stores_none_twice() {
    let tenet = Tenet::new().await;
    let (tenant, tenant_id) = tenant(&tenet).await;
    let logs = logs_dir(tenet.home.path());
    let addr = local(free_port());
    let start = async |n: usize| {
        MllpServer::start(
            tenet.command(&[]),
            addr,
            &tenant,
            logs.join(format!("serve-{n}.log")),
        )
        .await
    };
    let mut server = start(0).await;
    let messages = messages("K", N_KILL_MESSAGES);
    let progress = Arc::new(Progress::default());
    let load = spawn_load(&[addr], &messages, 0, &progress);

    // SIGKILL the server each time another share of the run was ACKed since it
    // started, and start it again on the same port; count the kills that found
    // messages in flight.
    let (mut n_kills, mut n_kills_mid_flight) = (0, 0);
    let share = N_KILL_MESSAGES / (N_KILLS + 1);
    loop {
        let next = progress.acked() + share;
        if !wait_for(&load, "the next share of ACKs", || progress.acked() >= next).await {
            break;
        }
        let in_flight = progress.in_flight();
        server.kill().await;
        n_kills += 1;
        n_kills_mid_flight += usize::from(in_flight > 0);
        server = start(n_kills).await;
    }
    let mut deliveries = load.await.unwrap();
    // Every tenth message once more, on new connections: what a sender that never saw
    // its ACKs resends. Each must be answered as it was the first time.
    let resends: Vec<Outgoing> = messages.iter().step_by(10).cloned().collect();
    deliveries.extend(
        spawn_load(&[addr], &resends, 0, &Arc::new(Progress::default()))
            .await
            .unwrap(),
    );
    // The last server stays up while the verdict waits for its workers.
    assert_eq!(
        verify(&tenet.db.owner, tenant_id, &deliveries).await,
        Verdict::clean(N_KILL_MESSAGES)
    );
    server.kill().await;
    assert!(
        n_kills >= N_KILLS / 2 && n_kills_mid_flight >= 3,
        "only {n_kills_mid_flight} of {n_kills} kills found messages in flight"
    );
    assert!(
        n_resent(&deliveries) > 0,
        "no message needed a resend: the kills cut nothing"
    );
    assert!(assert_no_phi_in_logs(&logs) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_stopped_immediately_under_load_gets_no_ack_for_uncommitted_work_and_the_server_recovers()
 {
    // A cluster of the test's own (stopping the shared test cluster would cut every
    // other test), the embedded one under a home of its own, with the test cluster's
    // settings: no fsync, and `synchronous_commit` off unless a transaction turns it
    // on. An immediate stop kills PostgreSQL's processes, not the kernel, so what was
    // written survives without fsync; but a commit that did not wait for its WAL to be
    // written is lost. So only the store's own `synchronous_commit = on` keeps an
    // ACKed message through the crash, and this test fails without it.
    let home = tempfile::tempdir().unwrap();
    let run = async |args: &[&str]| {
        let output = embedded_command(home.path(), args)
            .output()
            .await
            .expect("running tenet");
        crate::Run::new(args, output)
    };
    let mut cluster = Cluster::at(home.path()).unwrap().non_durable();
    cluster.ensure_running().await.unwrap();
    run(&["migrate"]).await.ok();
    let tenant = create_tenant(run).await;
    let tenant_id = TenantId::new_unchecked(tenant.parse().unwrap());
    let logs = logs_dir(home.path());
    let addr = local(free_port());
    let mut server = MllpServer::start(
        embedded_command(home.path(), &[]),
        addr,
        &tenant,
        logs.join("serve.log"),
    )
    .await;
    let messages = messages("D", N_MESSAGES);
    let progress = Arc::new(Progress::default());
    let load = spawn_load(&[addr], &messages, 0, &progress);

    // Once a quarter is ACKed, the database crashes and stays down for a while.
    assert!(
        wait_for(&load, "a quarter of the ACKs", || progress.acked()
            >= N_MESSAGES / 4)
        .await,
        "the load ended before the outage"
    );
    cluster.stop_immediate().await.unwrap();
    let stopped_at = Instant::now();
    tokio::time::sleep(OUTAGE).await;
    let restarting_at = Instant::now();
    cluster.ensure_running().await.unwrap();
    let deliveries = load.await.unwrap();
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server died with the database"
    );

    let owner = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(cluster.connect_options(db::roles::OWNER_ROLE, "tenet"))
        .await
        .unwrap();
    assert_eq!(
        verify(&owner, tenant_id, &deliveries).await,
        Verdict::clean(N_MESSAGES)
    );
    owner.close().await;
    server.kill().await;
    // Sent while the database was down: nothing can have committed them, so nothing
    // may have answered them before it was back.
    let attempts_while_down: Vec<&Attempt> = deliveries
        .iter()
        .flat_map(|delivery| &delivery.attempts)
        .filter(|attempt| attempt.sent_at > stopped_at && attempt.sent_at < restarting_at)
        .collect();
    assert!(
        !attempts_while_down.is_empty(),
        "nothing was sent while the database was down"
    );
    let n_answered_while_down = attempts_while_down
        .iter()
        .filter(|attempt| matches!(&attempt.ack, Some((_, at)) if *at < restarting_at))
        .count();
    assert_eq!(
        n_answered_while_down, 0,
        "messages sent while the database was down were ACKed before it was back"
    );
    assert!(assert_no_phi_in_logs(&logs) > 0);
    cluster.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_database_share_a_load_sent_to_both_and_lose_and_double_nothing() {
    let tenet = Tenet::new().await;
    let (tenant, tenant_id) = tenant(&tenet).await;
    let logs = logs_dir(tenet.home.path());
    let addrs = [local(free_port()), local(free_port())];
    let start = async |n: usize, addr: SocketAddr| {
        MllpServer::start(
            tenet.command(&[]),
            addr,
            &tenant,
            logs.join(format!("serve-{n}.log")),
        )
        .await
    };
    let mut first = start(0, addrs[0]).await;
    let mut second = start(1, addrs[1]).await;

    // Every message is sent twice at about the same time, once to each server (the
    // second load's connection c starts where the first's connection c + 1 does).
    let messages = messages("T", N_MESSAGES);
    let progress = Arc::new(Progress::default());
    let loads = [
        spawn_load(&addrs, &messages, 0, &progress),
        spawn_load(&addrs, &messages, 1, &progress),
    ];
    // Halfway, the second server dies and comes back; its senders move to the first.
    let halfway = wait_for(&loads[0], "half of the ACKs", || {
        progress.acked() >= N_MESSAGES
    })
    .await;
    assert!(halfway, "the load ended before the kill");
    second.kill().await;
    second = start(2, addrs[1]).await;
    let mut deliveries = Vec::new();
    for load in loads {
        deliveries.extend(load.await.unwrap());
    }

    assert_eq!(deliveries.len(), 2 * N_MESSAGES);
    assert_eq!(
        verify(&tenet.db.owner, tenant_id, &deliveries).await,
        Verdict::clean(N_MESSAGES)
    );
    first.kill().await;
    second.kill().await;
    assert!(
        n_resent(&deliveries) > 0,
        "no message needed a resend: the kill cut nothing"
    );
    assert!(assert_no_phi_in_logs(&logs) > 0);
}

/// A message of the malformed-input test: an ADT from `LAB` with the canary in PID.
fn adt(control_id: &str, ack_fields: &str) -> String {
    format!(
        "MSH|^~\\&|LAB|HOSP|TENET|CLINIC|20240102030405||ADT^A01^ADT_A01|{control_id}|P|2.5.1{ack_fields}\r\
         EVN|A01|20240102030405\r\
         PID|1||4242^^^HOSP^MR||{PHI_CANARY}^ADA||19800101|F\r"
    )
}

/// Frames a payload by hand, for the tests that need framing to go wrong.
fn framed(payload: &str, end: &[u8]) -> Vec<u8> {
    let mut bytes = vec![hl7::mllp::START_BLOCK];
    bytes.extend_from_slice(payload.as_bytes());
    bytes.extend_from_slice(end);
    bytes
}

/// Sends `payload` on a new connection and returns the ACK.
async fn ask(addr: SocketAddr, payload: &str) -> Ack {
    let mut client = connect(addr).await.expect("connecting");
    exchange(&mut client, payload.as_bytes())
        .await
        .expect("an ACK")
}

/// Reads what comes next on `client`: an ACK, or `None` if the server closed the
/// connection without one.
async fn next_ack(client: &mut Client) -> Option<Ack> {
    match tokio::time::timeout(ACK_TIMEOUT, client.next()).await {
        Ok(Some(Ok(frame))) => Some(Ack::parse(&frame)),
        Ok(None | Some(Err(_))) => None,
        Err(_) => panic!("neither an ACK nor a closed connection within {ACK_TIMEOUT:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_gets_its_documented_answer_and_the_valid_messages_around_it_are_untouched()
{
    let tenet = Tenet::new().await;
    let (tenant, tenant_id) = tenant(&tenet).await;
    let logs = logs_dir(tenet.home.path());
    let addr = local(free_port());
    let mut server =
        MllpServer::start(tenet.command(&[]), addr, &tenant, logs.join("serve.log")).await;

    // A well-behaved neighbour sends valid messages on its own connection throughout.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let neighbour = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut client = connect(addr).await.unwrap();
            let mut codes = Vec::new();
            while !stop.load(Ordering::SeqCst) || codes.len() < 20 {
                let control_id = format!("N{:04}", codes.len());
                let ack = exchange(&mut client, adt(&control_id, "").as_bytes())
                    .await
                    .expect("the neighbour's connection is never cut");
                assert_eq!(ack.control_id, control_id);
                codes.push(ack.code);
            }
            codes
        }
    });

    // Bytes outside any frame (a stray HTTP request) get no answer and are skipped:
    // the next frame on the connection is answered.
    let mut client = connect(addr).await.unwrap();
    client
        .get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost: tenet\r\n\r\n")
        .await
        .unwrap();
    let ack = exchange(&mut client, adt("G1", "").as_bytes())
        .await
        .unwrap();
    assert_eq!(ack.summary(), ("AA", "G1", None));

    // A frame closed by 0x1C 0x0A instead of 0x1C 0x0D never ends; the next start
    // block abandons it. Only the next message is answered, and only it is stored.
    client
        .get_mut()
        .write_all(&framed(&adt("W1", ""), &[0x1C, 0x0A]))
        .await
        .unwrap();
    let ack = exchange(&mut client, adt("W2", "").as_bytes())
        .await
        .unwrap();
    assert_eq!(ack.summary(), ("AA", "W2", None));

    // No MSH: rejected with an ERR, and kept as `rejected`.
    let no_header = format!("PID|1||4242^^^HOSP^MR||{PHI_CANARY}^ADA\rPV1|1|O\r");
    let ack = ask(addr, &no_header).await;
    assert_eq!(ack.code, "AR");
    assert_eq!(ack.err_code.as_deref(), Some("100"), "{ack:?}");
    // Unusable delimiters in MSH-2 (one used twice), in enhanced mode: a commit
    // reject, with an ERR.
    let ack = ask(addr, &adt("B1", "|||AL|NE").replacen("^~\\&", "^^\\&", 1)).await;
    assert_eq!(ack.code, "CR");
    assert_eq!(ack.err_code.as_deref(), Some("102"), "{ack:?}");
    // A character set we do not read (MSH-18): rejected with an ERR.
    let ack = ask(addr, &adt("B2", "||||||EBCDIC")).await;
    assert_eq!(ack.code, "AR");
    assert_eq!(ack.err_code.as_deref(), Some("103"), "{ack:?}");
    // A byte the character set does not allow (MSH-18 is empty: ASCII), in the
    // patient's name: rejected with an ERR that names its place, not the name.
    let ack = ask(
        addr,
        &adt("B3", "").replace(PHI_CANARY, &format!("{PHI_CANARY}É")),
    )
    .await;
    assert_eq!(ack.code, "AR");
    assert_eq!(ack.err_code.as_deref(), Some("102"), "{ack:?}");
    // Line feeds instead of carriage returns are read leniently: accepted.
    let ack = ask(addr, &adt("LF1", "").replace('\r', "\n")).await;
    assert_eq!(ack.summary(), ("AA", "LF1", None));
    // Other, valid, delimiters are read from MSH-1/MSH-2 and echoed in the ACK.
    let other = adt("OD1", "").replace('|', "#").replace('^', "@");
    let ack = ask(addr, &other).await;
    assert_eq!(ack.summary(), ("AA", "OD1", None));

    // A duplicate control id is answered with the first answer and not stored again,
    // whatever the connection, even when its content differs. The same control id
    // from another sender is another message.
    let first = adt("DUP1", "|||AL|NE");
    for (sent, answer) in [
        (first.clone(), "CA"),
        (first.clone(), "CA"),
        (first.replace("A01", "A08"), "CA"),
        (adt("DUP1", "").replace("|LAB|", "|RAD|"), "AA"),
    ] {
        assert_eq!(ask(addr, &sent).await.summary(), (answer, "DUP1", None));
    }

    // Out of order: a patient's results before their admission, and an update before
    // the admission. Each is accepted and stored as it came: processing, which will
    // relate them, is a later slice (when it lands, its answer to these goes here).
    let results = format!(
        "MSH|^~\\&|LAB|HOSP|TENET|CLINIC|20240102030405||ORU^R01^ORU_R01|O1|P|2.5.1\r\
         PID|1||5151^^^HOSP^MR||{PHI_CANARY}^ADA||19800101|F\r\
         OBR|1|ORD1|FIL1|24331-1^Lipid panel^LN|||20240102030000\r\
         OBX|1|NM|2093-3^Cholesterol^LN||182|mg/dL|<200|N|||F\r"
    );
    let admission = adt("O3", "").replace("4242^", "5151^");
    let update = admission.replace("A01", "A08").replace("|O3|", "|O2|");
    for (control_id, text) in [("O1", results), ("O2", update), ("O3", admission)] {
        let ack = ask(addr, &text).await;
        assert_eq!(ack.summary(), ("AA", control_id, None));
    }

    // A frame cut off by the end of the stream: nothing stored, nothing answered.
    let mut client = connect(addr).await.unwrap();
    client
        .get_mut()
        .write_all(&framed(&adt("CUT1", ""), &[]))
        .await
        .unwrap();
    client.get_mut().shutdown().await.unwrap();
    assert!(next_ack(&mut client).await.is_none());

    // A frame over the limit (8 MiB): the connection closes without an answer.
    let client = connect(addr).await.unwrap();
    let mut big = adt("BIG1", "");
    big.push_str(&format!(
        "NTE|1||{PHI_CANARY} {}\r",
        "x".repeat(hl7::mllp::FRAME_BYTES_MAX)
    ));
    let (mut reader, mut writer) = client.into_inner().into_split();
    // The server may close while the frame is still being written.
    let written = tokio::spawn(async move {
        let _ = writer.write_all(&framed(&big, &[0x1C, 0x0D])).await;
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        ACK_TIMEOUT,
        tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut answer),
    )
    .await
    .expect("the server closes the connection");
    written.await.unwrap();
    assert!(
        answer.is_empty(),
        "an oversized frame was answered ({read:?})"
    );
    // The server still serves new connections.
    assert_eq!(
        ask(addr, &adt("AFTER1", "")).await.summary(),
        ("AA", "AFTER1", None)
    );

    stop.store(true, Ordering::SeqCst);
    let neighbour = neighbour.await.unwrap();
    assert!(neighbour.iter().all(|code| code == "AA"), "{neighbour:?}");
    server.kill().await;

    let mut tx = TenantTx::begin_as(&tenet.db.owner, tenant_id, "system:test", None)
        .await
        .unwrap();
    let mut accepted: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT sending_application, control_id, ack_code FROM ingest.messages
         WHERE status = 'accepted' AND control_id NOT LIKE 'N%'
         ORDER BY control_id, sending_application",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    let (n_neighbours, n_rejected): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE control_id LIKE 'N%' AND status = 'accepted'),
                count(*) FILTER (WHERE status = 'rejected' AND strpos(error, $1) = 0)
         FROM ingest.messages",
    )
    .bind(PHI_CANARY)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    accepted.sort();
    let expected: Vec<(String, String, String)> = [
        ("LAB", "AFTER1", "AA"),
        ("LAB", "DUP1", "CA"),
        ("RAD", "DUP1", "AA"),
        ("LAB", "G1", "AA"),
        ("LAB", "LF1", "AA"),
        ("LAB", "O1", "AA"),
        ("LAB", "O2", "AA"),
        ("LAB", "O3", "AA"),
        ("LAB", "OD1", "AA"),
        ("LAB", "W2", "AA"),
    ]
    .iter()
    .map(|(a, c, k)| (a.to_string(), c.to_string(), k.to_string()))
    .collect::<std::collections::BTreeSet<_>>()
    .into_iter()
    .collect();
    assert_eq!(accepted, expected);
    assert_eq!(
        n_neighbours,
        i64::try_from(neighbour.len()).unwrap(),
        "every neighbour message stored"
    );
    assert_eq!(
        n_rejected, 4,
        "the four unreadable messages are kept, each with a reason that holds no PHI"
    );
    let log = server.log_text();
    assert!(
        log.contains("an MLLP frame is over the limit"),
        "the oversized frame is logged:\n{log}"
    );
    assert!(assert_no_phi_in_logs(&logs) > 0);
}

/// Where `program` is on `PATH`.
fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_mllp_client_python_hl7_mllp_send_is_answered_and_its_resend_is_stored_once()
{
    let mllp_send = on_path("mllp_send").unwrap_or_else(|| {
        panic!(
            "`mllp_send`, the MLLP client of the Python `hl7` package (Debian: python3-hl7), \
             is not on PATH: install it (`apt-get install python3-hl7`; `cargo xtask ci` does)"
        )
    });
    let tenet = Tenet::new().await;
    let (tenant, tenant_id) = tenant(&tenet).await;
    let logs = logs_dir(tenet.home.path());
    let addr = local(free_port());
    let mut server =
        MllpServer::start(tenet.command(&[]), addr, &tenant, logs.join("serve.log")).await;

    // mllp_send reads MLLP frames from a file and prints each ACK it gets, framing
    // bytes included, one per line.
    let sent = [message("P", 0), message("P", 1), message("P", 4)];
    let mut file = Vec::new();
    for message in &sent {
        file.push(hl7::mllp::START_BLOCK);
        file.extend_from_slice(&message.bytes);
        file.extend_from_slice(&[hl7::mllp::END_BLOCK, hl7::mllp::CARRIAGE_RETURN]);
    }
    let path = tenet.home.path().join("messages.mllp");
    std::fs::write(&path, file).unwrap();
    let mut deliveries = Vec::new();
    for attempt in ["first", "resend"] {
        let sent_at = Instant::now();
        let output = tokio::time::timeout(
            RUN_TIMEOUT,
            Command::new(&mllp_send)
                .args(["--port", &addr.port().to_string(), "--file"])
                .arg(&path)
                .arg("127.0.0.1")
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("mllp_send finishes")
        .expect("running mllp_send");
        assert!(
            output.status.success(),
            "{attempt}: mllp_send failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let acks: Vec<Ack> = output
            .stdout
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| {
                let line = line.strip_prefix(&[hl7::mllp::START_BLOCK]).unwrap_or(line);
                let end = [hl7::mllp::END_BLOCK, hl7::mllp::CARRIAGE_RETURN];
                Ack::parse(line.strip_suffix(&end).unwrap_or(line))
            })
            .collect();
        let answers: Vec<(&str, &str)> = acks
            .iter()
            .map(|ack| (ack.control_id.as_str(), ack.code.as_str()))
            .collect();
        let expected: Vec<(&str, &str)> = sent
            .iter()
            .map(|message| (message.control_id.as_str(), message.expected))
            .collect();
        assert_eq!(answers, expected, "{attempt}");
        deliveries.extend(sent.iter().zip(&acks).map(|(message, ack)| Delivery {
            sender: message.sender,
            control_id: message.control_id.clone(),
            expected: message.expected,
            attempts: vec![Attempt {
                sent_at,
                ack: Some((ack.code.clone(), Instant::now())),
            }],
        }));
    }

    assert_eq!(
        verify(&tenet.db.owner, tenant_id, &deliveries).await,
        Verdict::clean(sent.len())
    );
    server.kill().await;
    assert!(assert_no_phi_in_logs(&logs) > 0);
}
