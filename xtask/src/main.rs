//! Developer tasks for Tenet, in Rust rather than shell (matklad's cargo-xtask).
//!
//! - `cargo xtask up`: install what is missing, build, and `tenet up --demo`.
//! - `cargo xtask ci`: what CI runs — installs PostgreSQL, nats-server and the Python
//!   `hl7` package if missing, then fmt, clippy, every test, and `tenet check` on a
//!   freshly migrated database.
//! - `cargo xtask bench api|audit|hl7|jobs|ingest|assessments`: the benchmarks; they
//!   print our figure beside the reference figure from the same run, and the ratio.
//!   They live in the `xtask-bench` package and run from a release build of it.
//! - `cargo xtask fuzz [--secs N]`: each fuzz target of the `hl7` crate for N
//!   seconds (developers only, not CI).
//! - `cargo xtask test-db stop`: stops the throwaway cluster the tests keep running.
//!
//! xtask itself depends on `anyhow` and `clap` only: CI builds it before anything
//! else, and everything heavier it would build with other features than the tests
//! do, so twice.

mod ci;
mod fuzz;

use clap::{Parser, Subcommand};
use xtask::{root, shell};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
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
    /// Benchmarks (release builds; numbers go to BENCHMARKS.md): api, audit, hl7,
    /// jobs, ingest, assessments. `cargo xtask bench --help` lists their options.
    #[command(disable_help_flag = true)]
    Bench {
        /// The benchmark and its options, handed to the release-built `xtask-bench`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
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
    match Cli::parse().task {
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
        Task::Ci => ci::run(),
        Task::Bench { args } => {
            let mut command = vec!["run", "--release", "--quiet", "-p", "xtask-bench", "--"];
            command.extend(args.iter().map(String::as_str));
            // The benchmark reports its own errors; its exit status is ours.
            let status = xtask::command("cargo", &command).status()?;
            if !status.success() {
                std::process::exit(status.code().unwrap_or(1));
            }
            Ok(())
        }
        Task::Fuzz { secs } => fuzz::run(secs),
        Task::TestDb {
            command: TestDbCommand::Stop,
        } => {
            // Any debug build of `tenet` can stop it; build one only when there is none.
            if !ci::debug_tenet().is_file() {
                ci::build_tests()?;
            }
            ci::stop_test_cluster()
        }
    }
}
