//! Developer tasks for Tenet, in Rust rather than shell (matklad's cargo-xtask).
//!
//! - `cargo xtask up`: install what is missing, build, and `tenet up --demo`.
//! - `cargo xtask ci`: what CI runs — installs PostgreSQL, nats-server and the Python
//!   `hl7` package if missing, then fmt, clippy, every test, and `tenet check` on a
//!   freshly migrated database.
//! - `cargo xtask bench api|audit|hl7|jobs|ingest|assessments`: the benchmarks; they print our figure beside the
//!   reference figure from the same run, and the ratio.
//! - `cargo xtask fuzz [--secs N]`: each fuzz target of the `hl7` crate for N
//!   seconds (developers only, not CI).
//! - `cargo xtask test-db stop`: stops the throwaway cluster the tests keep running.

mod bench;
mod bench_assessments;
mod bench_ingest;
mod bench_jobs;
mod ci;
mod fuzz;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what is missing (PostgreSQL), build Tenet in release mode and run
    /// `tenet up --demo`; extra arguments go to `tenet up` (e.g. `-- --http 127.0.0.1:9000`).
    Up {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Everything CI checks, with set-up: PostgreSQL, fmt, clippy, tests, `tenet check`.
    Ci,
    /// Benchmarks (release builds; numbers go to BENCHMARKS.md).
    Bench {
        #[command(subcommand)]
        what: bench::Bench,
    },
    /// Fuzz the `hl7` crate's parser and MLLP codec (installs cargo-fuzz if missing;
    /// runs on stable with RUSTC_BOOTSTRAP=1). For developers, not CI.
    Fuzz {
        /// Seconds per fuzz target.
        #[arg(long, default_value_t = 60)]
        secs: u64,
    },
    /// The tests' throwaway PostgreSQL cluster.
    TestDb {
        #[command(subcommand)]
        command: TestDbCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TestDbCommand {
    /// Stop it (the next test run starts it again).
    Stop,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.task {
        Task::Up { args } => {
            ci::ensure_postgres()?;
            let mut command = vec![
                "run",
                "--release",
                "--quiet",
                "-p",
                "tenet",
                "--",
                "up",
                "--demo",
            ];
            command.extend(args.iter().map(String::as_str));
            shell("cargo", &command)
        }
        Task::Ci => ci::run(&runtime),
        Task::Bench { what } => {
            if cfg!(debug_assertions) {
                // Benchmarks measure optimised code: run this task again from a release build.
                let args: Vec<String> = std::env::args().skip(1).collect();
                let mut release = vec!["run", "--release", "--quiet", "-p", "xtask", "--"];
                release.extend(args.iter().map(String::as_str));
                return shell("cargo", &release);
            }
            runtime.block_on(bench::run(what))
        }
        Task::Fuzz { secs } => fuzz::run(secs),
        Task::TestDb {
            command: TestDbCommand::Stop,
        } => runtime.block_on(async {
            let home = std::env::var_os("TENET_TEST_PG_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| std::env::temp_dir().join("tenet-test-pg"));
            db::cluster::Cluster::at(&home)?.stop().await?;
            Ok(())
        }),
    }
}

/// The workspace root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("BUG: xtask lives in the workspace")
        .to_path_buf()
}

/// A binary of the workspace's release build, in Cargo's target directory (which
/// `CARGO_TARGET_DIR` may move out of the workspace).
fn release_bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    // A relative target directory is relative to where cargo ran: the workspace root.
    root().join(target).join("release").join(name)
}

/// Runs a command in the workspace root, failing on a non-zero exit.
fn shell(program: &str, args: &[&str]) -> anyhow::Result<()> {
    eprintln!("$ {program} {}", args.join(" "));
    let mut command = Command::new(program);
    // `cargo run` described xtask itself in these; a cargo started with them would
    // rerun every build script that watches them (ring's does) and so rebuild half
    // the workspace, and the next cargo started without them would rebuild it back.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || matches!(
                &*name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            )
        {
            command.env_remove(&*name);
        }
    }
    let status = command
        .args(args)
        .current_dir(root())
        .status()
        .with_context(|| format!("running {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Runs a command and returns its stdout.
fn output(program: &str, args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(root())
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
