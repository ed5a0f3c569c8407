//! `cargo xtask bench …` runs this binary from a release build: the benchmarks live in
//! a package of their own so that `cargo xtask ci` builds a small xtask, not the
//! database, HTTP and crypto stack a second time with other features.

mod bench;
mod bench_assessments;
mod bench_ingest;
mod bench_jobs;

use clap::Parser;
use xtask::{output, release_bin, root, shell};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask bench", bin_name = "cargo xtask bench")]
struct Cli {
    #[command(subcommand)]
    what: bench::Bench,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cfg!(debug_assertions) {
        anyhow::bail!("benchmarks measure optimised code: run them with `cargo xtask bench`");
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench::run(cli.what))
}
