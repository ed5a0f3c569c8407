//! `cargo xtask ci`: the whole check, runnable on a fresh Debian machine as root.

use std::path::{Path, PathBuf};
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
    step(
        "Python hl7 package (the third-party MLLP client of the ingest tests)",
        ensure_python_hl7,
    )?;
    step(
        "Python aiosmtpd (the SMTP server of the reminder tests)",
        ensure_python_aiosmtpd,
    )?;
    step(
        "poppler-utils (the PDF reader of the notes PDF tests)",
        ensure_poppler_utils,
    )?;
    // moto's install waits on PyPI more than on the CPU (about 90 s on a fresh
    // machine): it runs beside fmt and clippy, and the tests wait for it.
    let moto = std::thread::spawn(|| {
        step(
            "moto's S3-compatible server (the documents store's S3 test)",
            ensure_moto_server,
        )
    });
    let checks = step("cargo fmt --check", || {
        cargo(&["fmt", "--all", "--", "--check"])
    })
    .and_then(|()| {
        step("cargo clippy -D warnings", || {
            cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                // Features off by default (`hl7`'s `serde`) have code and tests too.
                "--all-features",
                "--",
                "-D",
                "warnings",
            ])
        })
    });
    let moto = moto
        .join()
        .unwrap_or_else(|_| bail!("BUG: installing moto panicked"));
    checks?;
    moto?;
    step("cargo test", || {
        cargo(&["test", "--workspace", "--all-features"])
    })?;
    step("tenet check on a freshly migrated database", tenet_check)?;
    eprintln!("ci: all green in {:.0}s", started.elapsed().as_secs_f64());
    Ok(())
}

pub fn run() -> anyhow::Result<()> {
    let result = run_ci();
    // The tests' cluster is ours to stop once everything has run.
    if let Err(error) = stop_test_cluster() {
        eprintln!("ci: stopping the tests' PostgreSQL failed: {error:#}");
    }
    result
}

/// Builds every test binary and the debug `tenet` binary the tests run (a no-op when
/// the tests were built): the very build `cargo test` makes, so nothing compiles twice.
pub fn build_tests() -> anyhow::Result<()> {
    cargo(&[
        "test",
        "--workspace",
        "--all-features",
        "--no-run",
        "--quiet",
    ])
}

/// Runs cargo in the workspace root. Where `CI` is set (a fresh clone, built once),
/// without incremental compilation unless `CARGO_INCREMENTAL` says otherwise: its
/// bookkeeping only pays on a rebuild. Every cargo of a CI run gets the same setting,
/// since it is part of what a build's artifacts are reused for.
fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let mut command = xtask::command("cargo", args);
    if std::env::var_os("CI").is_some_and(|ci| !ci.is_empty())
        && std::env::var_os("CARGO_INCREMENTAL").is_none()
    {
        command.env("CARGO_INCREMENTAL", "0");
    }
    xtask::succeed(command, "cargo", args)
}

/// The debug `tenet` binary of the tests' build.
pub fn debug_tenet() -> PathBuf {
    xtask::debug_bin("tenet")
}

/// Stops the throwaway cluster the tests start and leave running, at
/// `TENET_TEST_PG_HOME` or its default: with `tenet db stop`, whose embedded cluster
/// has the same layout. Nothing to stop when the tests were never built.
pub fn stop_test_cluster() -> anyhow::Result<()> {
    let tenet = debug_tenet();
    if !tenet.is_file() {
        return Ok(());
    }
    // Where `db::testing` keeps it.
    let home = std::env::var_os("TENET_TEST_PG_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("tenet-test-pg"));
    if !home.join("pgdata").is_dir() {
        return Ok(());
    }
    let status = std::process::Command::new(&tenet)
        .args(["db", "stop"])
        .env("TENET_HOME", &home)
        .env_remove("DATABASE_URL")
        .status()
        .with_context(|| format!("running {}", tenet.display()))?;
    if !status.success() {
        bail!("`tenet db stop` of the tests' cluster failed ({status})");
    }
    Ok(())
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
    apt_install("nats-server")?;
    if !installed() {
        bail!("installing nats-server failed");
    }
    Ok(())
}

/// Installs Debian's `python3-hl7` when its `mllp_send` is not on `PATH`: the `tenet`
/// crate's ingest tests talk to the MLLP listener through it, a client that is not
/// ours, and fail, naming the package, without it.
pub fn ensure_python_hl7() -> anyhow::Result<()> {
    let installed = || {
        std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| dir.join("mllp_send").is_file())
        })
    };
    if installed() {
        return Ok(());
    }
    if !Path::new("/usr/bin/apt-get").exists() {
        bail!(
            "mllp_send (the Python hl7 package) is missing and this is not a Debian-like system: install it"
        );
    }
    apt_install("python3-hl7")?;
    if !installed() {
        bail!("installing python3-hl7 failed: mllp_send is not on PATH");
    }
    Ok(())
}

/// The reminder tests send email to a real SMTP server: Python's `aiosmtpd`, run by
/// whichever of `python3` on PATH and the system's `/usr/bin/python3` has it.
pub fn ensure_python_aiosmtpd() -> anyhow::Result<()> {
    let installed = || {
        ["python3", "/usr/bin/python3"].into_iter().any(|python| {
            std::process::Command::new(python)
                .args(["-c", "import aiosmtpd"])
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        })
    };
    if installed() {
        return Ok(());
    }
    if !Path::new("/usr/bin/apt-get").exists() {
        bail!(
            "the Python aiosmtpd package is missing and this is not a Debian-like system: install it"
        );
    }
    apt_install("python3-aiosmtpd")?;
    if !installed() {
        bail!("installing python3-aiosmtpd failed: no python3 imports aiosmtpd");
    }
    Ok(())
}

/// Installs Debian's `poppler-utils` when `pdftoppm` or `pdftotext` is not on `PATH`:
/// the notes crate's PDF tests turn a rendered note into PNG pages and text with a
/// PDF reader that is not ours, and fail, naming the package, without it.
pub fn ensure_poppler_utils() -> anyhow::Result<()> {
    let installed = || {
        std::env::var_os("PATH").is_some_and(|path| {
            ["pdftoppm", "pdftotext"]
                .iter()
                .all(|program| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
        })
    };
    if installed() {
        return Ok(());
    }
    if !Path::new("/usr/bin/apt-get").exists() {
        bail!(
            "pdftoppm (poppler-utils) is missing and this is not a Debian-like system: install it"
        );
    }
    apt_install("poppler-utils")?;
    if !installed() {
        bail!("installing poppler-utils failed: pdftoppm is not on PATH");
    }
    Ok(())
}

/// The moto release the S3 storage test runs against.
const MOTO_VERSION: &str = "5.2.5";

/// The documents crate's S3 test stores through a real S3-compatible server: moto's
/// `moto_server`, installed from PyPI into a virtualenv at `target/s3-test-server`
/// (where the test looks for it). Debian's `python3-venv` is installed first when
/// `python3 -m venv` is missing.
pub fn ensure_moto_server() -> anyhow::Result<()> {
    let venv = root().join("target/s3-test-server");
    let binary = venv.join("bin/moto_server");
    if binary.is_file() {
        return Ok(());
    }
    let has_venv = || {
        std::process::Command::new("python3")
            .args(["-c", "import venv, ensurepip"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if !has_venv() {
        if !Path::new("/usr/bin/apt-get").exists() {
            bail!("python3 with venv is missing and this is not a Debian-like system: install it");
        }
        apt_install("python3-venv")?;
    }
    let venv_text = venv.to_str().context("the workspace path is not UTF-8")?;
    shell("python3", &["-m", "venv", venv_text])?;
    let pip = venv.join("bin/pip");
    shell(
        pip.to_str().context("the workspace path is not UTF-8")?,
        &[
            "install",
            "--quiet",
            &format!("moto[server]=={MOTO_VERSION}"),
        ],
    )?;
    if !binary.is_file() {
        bail!(
            "installing moto[server] failed: {} is missing",
            binary.display()
        );
    }
    Ok(())
}

/// `apt-get update`, then `apt-get install` of one package without its recommends.
fn apt_install(package: &str) -> anyhow::Result<()> {
    shell("apt-get", &["update", "-q"])?;
    let status = std::process::Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get install")?;
    if !status.success() {
        bail!("apt-get install {package} failed ({status})");
    }
    Ok(())
}

/// Migrates a fresh embedded database and runs `tenet check` on it.
fn tenet_check() -> anyhow::Result<()> {
    // The binary the tests ran (a no-op after the test step). `cargo build -p tenet`
    // would build it again, with other features and profile: two minutes in CI.
    build_tests()?;
    let home = root().join("target/ci-tenet-home");
    if home.exists() {
        std::fs::remove_dir_all(&home).context("clearing the previous CI database")?;
    }
    for args in [&["migrate"][..], &["check"][..]] {
        let status = std::process::Command::new(debug_tenet())
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
