//! `cargo xtask bench api|audit`: release-build benchmarks that print our figure and
//! the reference figure measured in the same run, and their ratio.
//!
//! - `api`: create-patient and read-patient through the real server (PHI vault +
//!   audit + RLS) at 1 and 32 concurrent clients, beside pgbench's single-row insert
//!   (one durable commit per transaction) on the same PostgreSQL cluster.
//! - `audit`: `verify` over N chained audit events (default 1 M), beside the
//!   in-memory hashing rate of the same chain (the ceiling).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Subcommand;
use tokio::sync::Mutex;

use crate::{output, root, shell};

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
}

pub async fn run(bench: Bench) -> anyhow::Result<()> {
    match bench {
        Bench::Api { secs, clients } => api(Duration::from_secs(secs), &clients).await,
        Bench::Audit { events } => audit_verify(events).await,
    }
}

/// Latency samples and the rate they make.
struct Sample {
    n: usize,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl Sample {
    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
        sorted[rank] as f64 / 1e3
    }

    fn rate(&self) -> f64 {
        self.n as f64 / self.elapsed.as_secs_f64()
    }
}

struct Server {
    child: Child,
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
    let tenet = root().join("target/release/tenet");
    output(
        tenet.to_str().expect("BUG: UTF-8 path"),
        args,
        &[
            ("TENET_HOME", home.to_str().expect("BUG: UTF-8 path")),
            ("TENET_LOG_FORMAT", "json"),
        ],
    )
}

fn free_port() -> anyhow::Result<u16> {
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
        child: Command::new(root().join("target/release/tenet"))
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
        let pgbench = pgbench_ins1(home, clients, secs)?;
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

#[allow(clippy::print_stdout, reason = "benchmark output")]
fn println_line(line: &str) {
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

/// pgbench's single-row insert (one ~1 KB row per durable commit) at `clients`, on
/// the embedded cluster, using the shared peer script.
fn pgbench_ins1(home: &Path, clients: usize, secs: Duration) -> anyhow::Result<f64> {
    let script = root().join("../shared/peers/pgbench/ins1.sql");
    let schema = root().join("../shared/peers/pgbench/schema.sql");
    if !script.exists() {
        eprintln!("bench: ../shared/peers/pgbench is missing; no pgbench reference");
        return Ok(f64::NAN);
    }
    let cluster = db::cluster::Cluster::at(home)?;
    let bin = pg_bin()?;
    let socket = cluster
        .socket_dir()
        .to_str()
        .expect("BUG: UTF-8 path")
        .to_owned();
    let psql = |args: &[&str]| -> anyhow::Result<String> {
        let mut all = vec!["-h", &socket, "-U", db::cluster::SUPERUSER, "-q", "-X"];
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
    let out = output(
        bin.join("pgbench").to_str().expect("BUG: UTF-8 path"),
        &[
            "-h",
            &socket,
            "-U",
            db::cluster::SUPERUSER,
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
        ],
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
    let verifying = Instant::now();
    let out = output(
        root()
            .join("target/release/tenet")
            .to_str()
            .expect("BUG: UTF-8 path"),
        &["audit", "verify"],
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
    let rate = n_events as f64 / elapsed.as_secs_f64();
    println_line(&format!(
        "audit verify events={n_events} secs={:.2} events_per_s={rate:.0} (whole command: connect, stream, hash) | in-memory chain hashing events_per_s={hash_rate:.0} | ratio={:.2}",
        elapsed.as_secs_f64(),
        rate / hash_rate
    ));
    Ok(())
}
