//! `cargo xtask fuzz [--secs N]`: runs each fuzz target of the `hl7` crate
//! (`crates/hl7/fuzz`) for N seconds under libFuzzer, for developers. It is not
//! part of `cargo xtask ci`: CI's time budget has no room for fuzzing.
//!
//! cargo-fuzz needs nightly-only compiler flags; `RUSTC_BOOTSTRAP=1` lets the
//! stable toolchain accept them, so no nightly toolchain is needed. New inputs
//! go to a scratch corpus under the fuzz project's `target/`; the committed
//! seeds in `corpus/<target>` are only read. A crash leaves its input in
//! `crates/hl7/fuzz/artifacts/<target>/`: keep it as a named regression test in
//! `crates/hl7/tests/it/regression.rs`.

use std::process::Command;

use anyhow::{Context, bail};

use crate::{root, shell};

/// The fuzz targets, in the order they run.
const TARGETS: [&str; 2] = ["parse", "mllp"];

/// Installs cargo-fuzz if it is missing, then runs every target for `secs` seconds.
pub fn run(secs: u64) -> anyhow::Result<()> {
    let installed = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !installed {
        shell("cargo", &["install", "cargo-fuzz", "--locked"])?;
    }
    let project = root().join("crates/hl7/fuzz");
    for target in TARGETS {
        let scratch = project.join("target/corpus").join(target);
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("creating {}", scratch.display()))?;
        let seeds = format!("corpus/{target}");
        let max_total_time = format!("-max_total_time={secs}");
        let args = [
            "-n",
            "10",
            "cargo",
            "fuzz",
            "run",
            target,
            scratch
                .to_str()
                .context("a UTF-8 path to the fuzz project")?,
            &seeds,
            "--",
            &max_total_time,
        ];
        eprintln!("$ RUSTC_BOOTSTRAP=1 nice {}", args.join(" "));
        let status = Command::new("nice")
            .args(args)
            .env("RUSTC_BOOTSTRAP", "1")
            .current_dir(&project)
            .status()
            .context("running cargo fuzz")?;
        if !status.success() {
            bail!(
                "fuzz target `{target}` failed ({status}): see crates/hl7/fuzz/artifacts/{target}/"
            );
        }
    }
    Ok(())
}
