//! `cargo xtask bench api|audit|hl7|jobs|ingest`: release-build benchmarks that print our figure and
//! the reference figure measured in the same run, and their ratio.
//!
//! - `api`: create-patient and read-patient through the real server (PHI vault +
//!   audit + RLS) at 1 and 32 concurrent clients, beside pgbench's single-row insert
//!   (one durable commit per transaction) on the same PostgreSQL cluster.
//! - `audit`: `verify` over N chained audit events (default 1 M), beside the
//!   in-memory hashing rate of the same chain (the ceiling).
//! - `hl7`: parsing ORU^R01 and ADT^A01 messages with every value touched, beside a
//!   single-pass byte scan of the same buffers (the ceiling) and the Python `hl7`
//!   package (the peer script `../shared/peers/hl7/run.sh`) on the same messages,
//!   which the peer's own `msgs.py` generates.
//! - `jobs` (`bench_jobs`) and `ingest` (`bench_ingest`): on the peers' PostgreSQL,
//!   beside the peers that run there.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Subcommand;
use tokio::sync::Mutex;

use crate::{output, release_bin, root, shell};

#[derive(Debug, Subcommand)]
pub enum Bench {
    /// The HTTP API: create and read patients at 1 and 32 clients.
    Api {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Client counts to measure.
        #[arg(long, value_delimiter = ',', default_value = "1,32")]
        clients: Vec<usize>,
    },
    /// Audit chain verification.
    Audit {
        /// How many events to verify.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
    },
    /// HL7 v2 parsing, every value touched, beside a byte scan and the Python `hl7` package.
    Hl7 {
        /// How many distinct messages of each kind (msgs.py's `oru_r01(i)` and
        /// `adt_a01(i)` for i in 1..=N), for us and for the peer.
        #[arg(long, default_value_t = 5_000)]
        messages: usize,
        /// Seconds per measurement of ours and of the scan.
        #[arg(long, default_value_t = 3)]
        secs: u64,
        /// Measurements of each; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Seconds the peer may spend on one measurement (its MAXSEC).
        #[arg(long, default_value_t = 10)]
        peer_secs: u64,
        /// Which of the peer's parsers to run: substrings of their names, comma-separated
        /// (`hl7.parse` also runs `hl7.parse+extract`; `hl7apy default` is hl7apy's
        /// default tolerant parse).
        #[arg(long, default_value = "hl7.parse,hl7apy default")]
        peer_only: String,
    },
    /// Durable jobs: enqueue + run + complete, beside graphile-worker and Celery.
    Jobs {
        /// How many trivial jobs, per run: comma-separated for several runs.
        #[arg(long, value_delimiter = ',', default_value = "20000,100000")]
        n: Vec<u64>,
        /// Worker processes.
        #[arg(long, default_value_t = 2)]
        processes: usize,
        /// Concurrent jobs per process.
        #[arg(long, default_value_t = 128)]
        workers: u16,
        /// How many tenants the jobs belong to (round-robin).
        #[arg(long, default_value_t = 8)]
        tenants: u64,
        /// Leave out the peers (graphile-worker, Celery).
        #[arg(long)]
        no_peers: bool,
    },
    /// Measurement-based care: batch-enrol N patients into a monthly PHQ-9 plan,
    /// backfill a year of it, materialise the current slot, then one clinician's due
    /// list latency (p50/p99).
    Assessments {
        #[arg(long, default_value_t = 100_000)]
        patients: usize,
        /// The patients are spread over this many clinicians' due lists.
        #[arg(long, default_value_t = 100)]
        clinicians: usize,
        /// Due-list queries measured.
        #[arg(long, default_value_t = 1_000)]
        queries: usize,
        /// A smoke run: 2 000 patients, 200 queries.
        #[arg(long, conflicts_with = "patients")]
        quick: bool,
    },
    /// HL7 v2 over MLLP, ACK after a durable commit: N connections each sending
    /// ORU^R01 and waiting for its ACK, beside two peer MLLP servers and pgbench.
    Ingest {
        /// Seconds per measurement (after a one-second warm-up at the same load).
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
        /// Connection counts to measure.
        #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
        connections: Vec<usize>,
        /// Leave out the peer MLLP servers (Python `hl7`, `node-hl7-server`);
        /// pgbench still runs.
        #[arg(long)]
        no_peers: bool,
        /// A smoke run: 2 s per measurement at 1 and 32 connections (figures too
        /// short to quote; the full run is the default).
        #[arg(long, conflicts_with_all = ["duration_secs", "connections"])]
        quick: bool,
    },
}

pub async fn run(bench: Bench) -> anyhow::Result<()> {
    match bench {
        Bench::Assessments {
            patients,
            clinicians,
            queries,
            quick,
        } => {
            // The work runs in this process: measure an optimised build.
            if cfg!(debug_assertions) {
                let mut args: Vec<String> = [
                    "run",
                    "--release",
                    "--quiet",
                    "-p",
                    "xtask",
                    "--",
                    "bench",
                    "assessments",
                ]
                .map(str::to_owned)
                .to_vec();
                if quick {
                    args.push("--quick".to_owned());
                } else {
                    args.extend([
                        format!("--patients={patients}"),
                        format!("--clinicians={clinicians}"),
                        format!("--queries={queries}"),
                    ]);
                }
                let status = std::process::Command::new(
                    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()),
                )
                .args(&args)
                .status()
                .context("re-running the benchmark in a release build")?;
                anyhow::ensure!(status.success(), "the release run failed");
                return Ok(());
            }
            let (patients, queries) = if quick {
                (2_000, 200)
            } else {
                (patients, queries)
            };
            crate::bench_assessments::run(patients, clinicians, queries).await
        }
        Bench::Api { secs, clients } => api(Duration::from_secs(secs), &clients).await,
        Bench::Audit { events } => audit_verify(events).await,
        Bench::Hl7 {
            messages,
            secs,
            runs,
            peer_secs,
            peer_only,
        } => hl7_parse(
            messages,
            Duration::from_secs(secs),
            runs,
            peer_secs,
            &peer_only,
        ),
        Bench::Jobs {
            n,
            processes,
            workers,
            tenants,
            no_peers,
        } => crate::bench_jobs::run(&n, processes, workers, tenants, !no_peers),
        Bench::Ingest {
            duration_secs,
            connections,
            no_peers,
            quick,
        } => {
            let (duration_secs, connections) = if quick {
                (2, vec![1, 32])
            } else {
                (duration_secs, connections)
            };
            crate::bench_ingest::run(Duration::from_secs(duration_secs), &connections, !no_peers)
                .await
        }
    }
}

/// Latency samples and the rate they make.
pub(crate) struct Sample {
    pub(crate) n: usize,
    pub(crate) elapsed: Duration,
    pub(crate) latencies_us: Vec<u64>,
}

impl Sample {
    pub(crate) fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
        sorted[rank] as f64 / 1e3
    }

    pub(crate) fn rate(&self) -> f64 {
        self.n as f64 / self.elapsed.as_secs_f64()
    }
}

/// A server process, stopped (SIGTERM, then waited for) when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM for a graceful stop; the server's own shutdown closes its pools.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn tenet(home: &Path, args: &[&str]) -> anyhow::Result<String> {
    let tenet = release_bin("tenet");
    output(
        tenet.to_str().expect("BUG: UTF-8 path"),
        args,
        &[
            ("TENET_HOME", home.to_str().expect("BUG: UTF-8 path")),
            ("TENET_LOG_FORMAT", "json"),
        ],
    )
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn api(secs: Duration, client_counts: &[usize]) -> anyhow::Result<()> {
    shell("cargo", &["build", "--release", "--quiet", "-p", "tenet"])?;
    let home = root().join("target/bench-api-home");
    if home.exists() {
        std::fs::remove_dir_all(&home)?;
    }
    tenet(&home, &["db", "start"])?;
    let result = api_against(&home, secs, client_counts).await;
    tenet(&home, &["db", "stop"])?;
    result
}

async fn api_against(home: &Path, secs: Duration, client_counts: &[usize]) -> anyhow::Result<()> {
    tenet(home, &["migrate"])?;
    let tenant = tenet(home, &["tenant", "create", "bench"])?;
    let token = tenet(
        home,
        &[
            "apikey",
            "create",
            "--tenant",
            &tenant,
            "--role",
            "integration",
        ],
    )?;
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let _server = Server {
        child: Command::new(release_bin("tenet"))
            .args(["serve", "--http", &addr, "--db-connections", "40"])
            .env("TENET_HOME", home)
            .env("TENET_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting tenet serve")?,
    };
    let base = format!("http://{addr}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let ready = Instant::now();
    while !client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        if ready.elapsed() > Duration::from_secs(30) {
            bail!("tenet serve did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ids = Arc::new(Mutex::new(Vec::<String>::new()));
    println_line(
        "bench api: Tenet (vault + audit + RLS, durable commits) vs pgbench single-row insert on the same cluster",
    );
    for &clients in client_counts {
        // Warm up connections and caches.
        load(
            &client,
            &base,
            &token,
            clients,
            Duration::from_secs(1),
            true,
            &ids,
        )
        .await?;
        let create = load(&client, &base, &token, clients, secs, true, &ids).await?;
        let read = load(&client, &base, &token, clients, secs, false, &ids).await?;
        let cluster = db::cluster::Cluster::at(home)?;
        let socket = cluster.socket_dir().to_str().expect("BUG: UTF-8 path");
        let pgbench = pgbench_ins1(&["-h", socket, "-U", db::cluster::SUPERUSER], clients, secs)?;
        for (what, sample) in [("create-patient", &create), ("read-patient", &read)] {
            println_line(&format!(
                "api {what:<15} clients={clients:<3} rps={:>8.0} p50_ms={:>6.2} p99_ms={:>6.2} | pgbench ins1 tps={:>8.0} | ratio={:.2}",
                sample.rate(),
                sample.percentile_ms(50.0),
                sample.percentile_ms(99.0),
                pgbench,
                sample.rate() / pgbench
            ));
        }
    }
    Ok(())
}

/// Prints one line of benchmark results on stdout.
#[allow(clippy::print_stdout, reason = "benchmark output")]
pub fn println_line(line: &str) {
    println!("{line}");
}

/// Runs `clients` tasks for `secs`, each creating (or reading) patients back to back.
async fn load(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    clients: usize,
    secs: Duration,
    create: bool,
    ids: &Arc<Mutex<Vec<String>>>,
) -> anyhow::Result<Sample> {
    let started = Instant::now();
    let deadline = started + secs;
    let known: Arc<Vec<String>> = Arc::new(ids.lock().await.clone());
    if !create && known.is_empty() {
        bail!("no patients to read");
    }
    let mut tasks = Vec::new();
    for worker in 0..clients {
        let client = client.clone();
        let base = base.to_owned();
        let token = token.to_owned();
        let ids = ids.clone();
        let known = known.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                let begun = Instant::now();
                let response = if create {
                    let mrn = format!("B{worker}-{n}-{}", uuid::Uuid::new_v4().simple());
                    client
                        .post(format!("{base}/v1/patients"))
                        .bearer_auth(&token)
                        .json(&serde_json::json!({
                            "family_name": "Benchmark",
                            "given_names": ["Patient"],
                            "birth_date": "1980-01-01",
                            "identifiers": [{"authority": "BENCH", "value": mrn}],
                        }))
                        .send()
                        .await?
                } else {
                    let id = &known[(rand::random::<u64>() % known.len() as u64) as usize];
                    client
                        .get(format!("{base}/v1/patients/{id}"))
                        .bearer_auth(&token)
                        .send()
                        .await?
                };
                let status = response.status();
                let body: serde_json::Value = response.json().await?;
                if !status.is_success() {
                    anyhow::bail!("request failed: {status} {body}");
                }
                latencies.push(begun.elapsed().as_micros() as u64);
                if create && let Some(id) = body["id"].as_str() {
                    ids.lock().await.push(id.to_owned());
                }
                n += 1;
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies_us = Vec::new();
    for task in tasks {
        latencies_us.extend(task.await??);
    }
    Ok(Sample {
        n: latencies_us.len(),
        elapsed: started.elapsed(),
        latencies_us,
    })
}

/// pgbench's single-row insert (one ~1 KB row per durable commit) at `clients`, the
/// way the shared peer script runs it (`pgbench/run.sh`: its schema and `ins1.sql`,
/// a checkpoint first, prepared statements, 2 threads), on the cluster that
/// `server` names (psql's `-h HOST [-p PORT] -U USER`).
pub(crate) fn pgbench_ins1(server: &[&str], clients: usize, secs: Duration) -> anyhow::Result<f64> {
    let script = root().join("../shared/peers/pgbench/ins1.sql");
    let schema = root().join("../shared/peers/pgbench/schema.sql");
    if !script.exists() {
        eprintln!("bench: ../shared/peers/pgbench is missing; no pgbench reference");
        return Ok(f64::NAN);
    }
    let bin = pg_bin()?;
    let psql = |args: &[&str]| -> anyhow::Result<String> {
        let mut all = server.to_vec();
        all.extend_from_slice(&["-q", "-X"]);
        all.extend_from_slice(args);
        output(
            bin.join("psql").to_str().expect("BUG: UTF-8 path"),
            &all,
            &[],
        )
    };
    let _ = psql(&["-d", "postgres", "-c", "CREATE DATABASE bench"]);
    psql(&[
        "-d",
        "bench",
        "-f",
        schema.to_str().expect("BUG: UTF-8 path"),
    ])?;
    psql(&["-d", "bench", "-c", "TRUNCATE ingest", "-c", "CHECKPOINT"])?;
    let clients_text = clients.to_string();
    let threads = if clients < 2 { "1" } else { "2" };
    let secs_text = secs.as_secs().to_string();
    let mut args = server.to_vec();
    args.extend_from_slice(&[
        "-n",
        "-M",
        "prepared",
        "-f",
        script.to_str().expect("BUG: UTF-8 path"),
        "-c",
        &clients_text,
        "-j",
        threads,
        "-T",
        &secs_text,
        "bench",
    ]);
    let out = output(
        bin.join("pgbench").to_str().expect("BUG: UTF-8 path"),
        &args,
        &[],
    )?;
    let tps = out
        .lines()
        .find_map(|line| line.trim().strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse::<f64>().ok())
        .context("reading pgbench's tps")?;
    Ok(tps)
}

fn pg_bin() -> anyhow::Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")?
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|dir| dir.join("pgbench").is_file())
        .collect();
    dirs.sort();
    dirs.pop().context("no pgbench found")
}

async fn audit_verify(n_events: u64) -> anyhow::Result<()> {
    use audit::chain::{ChainedEvent, genesis};
    use kernel::{PatientId, TenantId};
    use sqlx::Executor;

    let db = db::testing::TestDb::migrated(&schema::migrator()).await;
    let tenant_id = TenantId::generate();
    let lanes = audit::LANES;
    eprintln!("bench audit: generating {n_events} chained events…");
    let mut heads: Vec<(i64, [u8; 32])> = (0..lanes)
        .map(|lane| (0, genesis(tenant_id, lane)))
        .collect();
    let mut conn = db.admin.acquire().await?;
    let mut copy = conn
        .copy_in_raw(
            "COPY audit.events (tenant_id, lane, seq, id, occurred_at, actor, action, patient_id, purpose, request_id, break_glass, details, prev_hash, hash) FROM STDIN",
        )
        .await?;
    let mut buffer = String::with_capacity(1 << 20);
    let mut scratch = Vec::new();
    let base_time = time::OffsetDateTime::now_utc();
    let actor = format!("user:{}", uuid::Uuid::now_v7());
    let generated = Instant::now();
    for i in 0..n_events {
        let lane = (i % lanes as u64) as i16;
        let (seq, prev) = heads[lane as usize];
        let event = ChainedEvent {
            tenant_id,
            lane,
            seq: seq + 1,
            id: uuid::Uuid::now_v7(),
            occurred_at: audit::chain::to_stored_precision(
                base_time + time::Duration::microseconds(i as i64),
            ),
            actor: actor.clone(),
            action: "patient.read".to_owned(),
            patient_id: Some(PatientId::generate()),
            purpose: Some("treatment".to_owned()),
            request_id: None,
            break_glass: false,
            details: serde_json::json!({}),
        };
        let hash = event.hash(&prev, &mut scratch);
        heads[lane as usize] = (seq + 1, hash);
        use std::fmt::Write;
        let _ = writeln!(
            buffer,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\ttreatment\t\\N\tf\t{{}}\t\\\\x{}\t\\\\x{}",
            tenant_id,
            lane,
            event.seq,
            event.id,
            event
                .occurred_at
                .format(&time::format_description::well_known::Rfc3339)
                .expect("BUG: timestamp formats"),
            event.actor,
            event.action,
            event.patient_id.expect("BUG: set above"),
            hex::encode(prev),
            hex::encode(hash)
        );
        if buffer.len() > (1 << 20) {
            copy.send(buffer.as_bytes()).await?;
            buffer.clear();
        }
    }
    copy.send(buffer.as_bytes()).await?;
    copy.finish().await?;
    for (lane, (seq, hash)) in heads.iter().enumerate() {
        sqlx::query(
            "INSERT INTO audit.chain_heads (tenant_id, lane, seq, hash) VALUES ($1, $2, $3, $4)",
        )
        .bind(tenant_id.as_uuid())
        .bind(lane as i16)
        .bind(seq)
        .bind(&hash[..])
        .execute(&mut *conn)
        .await?;
    }
    conn.execute("ANALYZE audit.events").await?;
    drop(conn);
    eprintln!(
        "bench audit: loaded in {:.1}s",
        generated.elapsed().as_secs_f64()
    );

    // The ceiling: hashing the same chain in memory on one core.
    let template = ChainedEvent {
        tenant_id,
        lane: 0,
        seq: 1,
        id: uuid::Uuid::now_v7(),
        occurred_at: audit::chain::to_stored_precision(base_time),
        actor: actor.clone(),
        action: "patient.read".to_owned(),
        patient_id: Some(PatientId::generate()),
        purpose: Some("treatment".to_owned()),
        request_id: None,
        break_glass: false,
        details: serde_json::json!({}),
    };
    let hashing = Instant::now();
    let mut prev = [0u8; 32];
    let mut event = template;
    for seq in 1..=n_events as i64 {
        event.seq = seq;
        prev = event.hash(&prev, &mut scratch);
    }
    let hash_rate = n_events as f64 / hashing.elapsed().as_secs_f64();
    std::hint::black_box(prev);

    // The tenant must be listed for `tenet audit verify` to walk it.
    sqlx::query("INSERT INTO identity.tenants (tenant_id, name) VALUES ($1, 'bench')")
        .bind(tenant_id.as_uuid())
        .execute(&db.admin)
        .await?;
    shell("cargo", &["build", "--release", "--quiet", "-p", "tenet"])?;
    let home = root().join("target/bench-audit-home");
    std::fs::create_dir_all(&home)?;
    let url = format!(
        "postgres://{}@localhost/{}?host={}",
        db::roles::OWNER_ROLE,
        db.name,
        db.cluster.socket_dir().display()
    );
    // One reader, then the default (one connection per core, at most 4, reading
    // block ranges in one snapshot; the hashing on one core either way).
    let mut rates = Vec::new();
    for streams in ["1", "default"] {
        let mut args = vec!["audit", "verify"];
        if streams != "default" {
            args.extend(["--streams", streams]);
        }
        let verifying = Instant::now();
        let out = output(
            release_bin("tenet").to_str().expect("BUG: UTF-8 path"),
            &args,
            &[
                ("DATABASE_URL", &url),
                ("TENET_HOME", home.to_str().expect("BUG: UTF-8 path")),
                ("TENET_LOG_FORMAT", "json"),
            ],
        )?;
        let elapsed = verifying.elapsed();
        let line = out.lines().last().unwrap_or_default().to_owned();
        if !line.contains(&format!("{n_events} event(s)")) || !line.ends_with("intact") {
            bail!("tenet audit verify did not verify the chain: {line}");
        }
        rates.push((streams, elapsed, n_events as f64 / elapsed.as_secs_f64()));
    }
    for (streams, elapsed, rate) in rates {
        println_line(&format!(
            "audit verify streams={streams} events={n_events} secs={:.2} events_per_s={rate:.0} (whole command: connect, stream, hash) | in-memory chain hashing events_per_s={hash_rate:.0} | ratio={:.2}",
            elapsed.as_secs_f64(),
            rate / hash_rate
        ));
    }
    Ok(())
}

/// The peer scripts for HL7 (msgs.py, run.sh), beside the workspace.
fn hl7_peer_dir() -> PathBuf {
    root().join("../shared/peers/hl7")
}

/// `oru_r01(i)` or `adt_a01(i)` of the peer's msgs.py for i in 1..=n, exactly as the
/// peer parses them.
pub(crate) fn hl7_peer_messages(generator: &str, n: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    // Messages are separated by 0x1C, a byte HL7 text never holds.
    const CODE: &str = "import sys; sys.path.insert(0, sys.argv[1]); import msgs; \
        f = getattr(msgs, sys.argv[2]); out = sys.stdout.buffer; \
        [out.write(f(i).encode() + b'\x1c') for i in range(1, int(sys.argv[3]) + 1)]";
    let dir = hl7_peer_dir();
    let out = Command::new("python3")
        .args(["-c", CODE])
        .arg(&dir)
        .args([generator, &n.to_string()])
        .output()
        .context("running python3 to generate the peer's messages")?;
    if !out.status.success() {
        bail!(
            "generating messages with {}/msgs.py failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let messages: Vec<Vec<u8>> = out
        .stdout
        .split(|&b| b == 0x1C)
        .filter(|m| !m.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    if messages.len() != n {
        bail!("msgs.py gave {} messages, not {n}", messages.len());
    }
    Ok(messages)
}

/// Parses a message and reads every value down to the sub-component, decoded, so
/// that nothing can be skipped; returns the decoded bytes seen.
fn hl7_touch_every_value(bytes: &[u8]) -> usize {
    let Ok(message) = hl7::Message::parse(bytes) else {
        return 0;
    };
    let mut n = 0;
    for segment in message.segments() {
        for field in segment.fields() {
            for repetition in field.repetitions() {
                for component in repetition.components() {
                    for subcomponent in component.subcomponents() {
                        n += std::hint::black_box(subcomponent.decoded()).len();
                    }
                }
            }
        }
    }
    n
}

/// One pass over the bytes counting segment terminators and field separators: what
/// any parser must at least do.
fn hl7_scan(bytes: &[u8]) -> usize {
    memchr::memchr2_iter(b'\r', b'|', bytes).count()
}

/// Messages per second of `f` over `messages` (cycled) for `secs`, the median of `runs`.
fn hl7_rate(messages: &[Vec<u8>], secs: Duration, runs: usize, f: fn(&[u8]) -> usize) -> f64 {
    let mut rates: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let started = Instant::now();
            let mut n = 0usize;
            let mut sink = 0usize;
            'measure: loop {
                for message in messages {
                    sink = sink.wrapping_add(f(std::hint::black_box(message)));
                    n += 1;
                    if n.is_multiple_of(64) && started.elapsed() >= secs {
                        break 'measure;
                    }
                }
            }
            std::hint::black_box(sink);
            n as f64 / started.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// One parser's median from the peer's output, per message kind.
struct PeerFigure {
    kind: String,
    parser: String,
    messages_per_s: f64,
}

/// Runs the peer script: its whole output, and the medians read from it; `Err` when
/// it cannot run here.
fn hl7_peer(
    n_messages: usize,
    runs: usize,
    peer_secs: u64,
    only: &str,
) -> anyhow::Result<(String, Vec<PeerFigure>)> {
    let script = hl7_peer_dir().join("run.sh");
    if !script.exists() {
        bail!("{} is missing", script.display());
    }
    let out = output(
        "bash",
        &[
            script.to_str().expect("BUG: UTF-8 path"),
            &n_messages.to_string(),
            &runs.to_string(),
            only,
        ],
        &[("MAXSEC", &peer_secs.to_string())],
    )?;
    // `python 3.11.7 hl7==0.4.5 …`, then per kind `ORU^R01: …` and one line per
    // parser: `  hl7.parse   median   320 msg/s …`.
    let mut kind = String::new();
    let mut figures = Vec::new();
    for line in out.lines() {
        if line.starts_with("python ") {
            continue;
        } else if !line.starts_with(' ') {
            if let Some((name, _)) = line.split_once(':') {
                kind = name.to_owned();
            }
        } else if let Some((parser, rest)) = line.trim().split_once(" median ") {
            let rate = rest
                .split_whitespace()
                .next()
                .and_then(|number| number.parse::<f64>().ok());
            if let Some(messages_per_s) = rate {
                figures.push(PeerFigure {
                    kind: kind.clone(),
                    parser: parser.trim().to_owned(),
                    messages_per_s,
                });
            }
        }
    }
    if figures.is_empty() {
        bail!("no figures in the peer's output:\n{out}");
    }
    Ok((out, figures))
}

fn hl7_parse(
    n_messages: usize,
    secs: Duration,
    runs: usize,
    peer_secs: u64,
    peer_only: &str,
) -> anyhow::Result<()> {
    let kinds = [("ORU^R01", "oru_r01"), ("ADT^A01", "adt_a01")];
    let mut ours = Vec::new();
    for (kind, generator) in kinds {
        let messages = hl7_peer_messages(generator, n_messages)?;
        // Every message must parse, or the figures would measure error paths.
        for message in &messages {
            hl7::Message::parse(message)
                .with_context(|| format!("our parser refuses a {kind} from msgs.py"))?;
        }
        let n_bytes: usize = messages.iter().map(Vec::len).sum();
        let bytes_avg = n_bytes as f64 / messages.len() as f64;
        let segments = messages[0].iter().filter(|&&b| b == b'\r').count();
        eprintln!("bench hl7: measuring {kind} ({n_messages} distinct messages)…");
        let parse = hl7_rate(&messages, secs, runs, hl7_touch_every_value);
        let scan = hl7_rate(&messages, secs, runs, hl7_scan);
        ours.push((kind, segments, bytes_avg, parse, scan));
    }
    eprintln!(
        "bench hl7: running the Python peer on the same messages ({runs} runs of up to {peer_secs} s per parser and kind)…"
    );
    let peer = hl7_peer(n_messages, runs, peer_secs, peer_only);
    println_line(&format!(
        "bench hl7: parse with every value touched (ours) vs one memchr pass over the same bytes (the ceiling) vs the Python peers, on msgs.py's messages ({n_messages} distinct of each kind; medians of {runs})"
    ));
    match &peer {
        Ok((output, _)) => {
            // Its own lines too: per-run rates and the CPU other processes took.
            for line in output.lines() {
                println_line(&format!("peer| {line}"));
            }
        }
        Err(error) => println_line(&format!(
            "peer: unavailable ({}); our figures only",
            format!("{error:#}").lines().next().unwrap_or_default()
        )),
    }
    for (kind, segments, bytes_avg, parse, scan) in &ours {
        let mb_per_s = |rate: f64| rate * bytes_avg / 1e6;
        let mut line = format!(
            "hl7 {kind} ({segments} segments, {bytes_avg:.0} B): ours msg_per_s={parse:.0} ({:.0} MB/s) | scan msg_per_s={scan:.0} ({:.0} MB/s) | ours/scan={:.3}",
            mb_per_s(*parse),
            mb_per_s(*scan),
            parse / scan
        );
        if let Ok((_, figures)) = &peer {
            for figure in figures.iter().filter(|f| f.kind == *kind) {
                let _ = std::fmt::Write::write_fmt(
                    &mut line,
                    format_args!(
                        " | {} msg_per_s={:.0} ours/peer={:.0}x",
                        figure.parser,
                        figure.messages_per_s,
                        parse / figure.messages_per_s
                    ),
                );
            }
        }
        println_line(&line);
    }
    Ok(())
}
