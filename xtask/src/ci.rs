//! `cargo xtask ci`: the whole check, runnable on a fresh Debian machine as root.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::{root, shell};

pub fn run_ci() -> anyhow::Result<()> {
    let started = Instant::now();
    step("PostgreSQL server binaries", ensure_postgres)?;
    step(
        "NATS server (the relay's JetStream tests)",
        ensure_nats_server,
    )?;
    step("cargo fmt --check", || {
        shell("cargo", &["fmt", "--all", "--", "--check"])
    })?;
    step("cargo clippy -D warnings", || {
        shell(
            "cargo",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                // Features off by default (`hl7`'s `serde`) have code and tests too.
                "--all-features",
                "--",
                "-D",
                "warnings",
            ],
        )
    })?;
    step("cargo test", || {
        shell("cargo", &["test", "--workspace", "--all-features"])
    })?;
    step("tenet check on a freshly migrated database", tenet_check)?;
    eprintln!("ci: all green in {:.0}s", started.elapsed().as_secs_f64());
    Ok(())
}

pub fn run(runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let result = run_ci();
    // The tests' cluster is ours to stop once everything has run.
    runtime.block_on(async {
        let home = std::env::var_os("TENET_TEST_PG_HOME")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("tenet-test-pg"));
        if let Ok(cluster) = db::cluster::Cluster::at(&home) {
            let _ = cluster.stop().await;
        }
    });
    result
}

fn step(name: &str, f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    eprintln!("ci: == {name}");
    let started = Instant::now();
    f().with_context(|| format!("ci step `{name}`"))?;
    eprintln!("ci: ok {name} ({:.0}s)", started.elapsed().as_secs_f64());
    Ok(())
}

fn has_postgres() -> bool {
    let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") else {
        return false;
    };
    entries.flatten().any(|entry| {
        entry
            .file_name()
            .to_string_lossy()
            .parse::<u32>()
            .is_ok_and(|major| major >= 15)
            && entry.path().join("bin/initdb").is_file()
    })
}

/// Installs PostgreSQL's server binaries from Debian's packages when missing, without
/// letting the package create and start a cluster of its own.
pub fn ensure_postgres() -> anyhow::Result<()> {
    if has_postgres() {
        return Ok(());
    }
    if !Path::new("/usr/bin/apt-get").exists() {
        bail!(
            "PostgreSQL 15+ server binaries are missing and this is not a Debian-like system: install them"
        );
    }
    std::fs::create_dir_all("/etc/postgresql-common")
        .context("preparing /etc/postgresql-common")?;
    std::fs::write(
        "/etc/postgresql-common/createcluster.conf",
        "create_main_cluster = false\n",
    )
    .context("configuring postgresql-common")?;
    shell("apt-get", &["update", "-q"])?;
    let status = std::process::Command::new("apt-get")
        .args([
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "postgresql",
            "postgresql-contrib",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get install")?;
    if !status.success() || !has_postgres() {
        bail!("installing PostgreSQL failed");
    }
    Ok(())
}

/// Where Debian's `nats-server` package puts the binary (`/usr/sbin`), or where an
/// installation by hand usually does.
const NATS_SERVER_PATHS: &[&str] = &["/usr/sbin/nats-server", "/usr/bin/nats-server"];

/// Installs Debian's `nats-server` when missing: the platform crate's relay tests run a
/// real JetStream server and fail, naming the package, without one.
pub fn ensure_nats_server() -> anyhow::Result<()> {
    let installed = || {
        NATS_SERVER_PATHS
            .iter()
            .any(|path| Path::new(path).is_file())
    };
    if installed() {
        return Ok(());
    }
    if !Path::new("/usr/bin/apt-get").exists() {
        bail!("nats-server is missing and this is not a Debian-like system: install it");
    }
    shell("apt-get", &["update", "-q"])?;
    let status = std::process::Command::new("apt-get")
        .args([
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "nats-server",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get install")?;
    if !status.success() || !installed() {
        bail!("installing nats-server failed");
    }
    Ok(())
}

/// Migrates a fresh embedded database and runs `tenet check` on it.
fn tenet_check() -> anyhow::Result<()> {
    shell("cargo", &["build", "--quiet", "-p", "tenet"])?;
    let home = root().join("target/ci-tenet-home");
    if home.exists() {
        std::fs::remove_dir_all(&home).context("clearing the previous CI database")?;
    }
    for args in [&["migrate"][..], &["check"][..]] {
        let status = std::process::Command::new(root().join("target/debug/tenet"))
            .args(args)
            .current_dir(root())
            .env("TENET_HOME", &home)
            .env("TENET_LOG_FORMAT", "pretty")
            .env_remove("DATABASE_URL")
            .status()
            .with_context(|| format!("running tenet {}", args.join(" ")))?;
        if !status.success() {
            bail!("`tenet {}` failed ({status})", args.join(" "));
        }
    }
    Ok(())
}
