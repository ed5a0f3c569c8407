//! What `cargo xtask` and its benchmarks share: the workspace root, and running
//! commands in it.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("BUG: xtask lives in the workspace")
        .to_path_buf()
}

/// A binary of the workspace's release build, in Cargo's target directory (which
/// `CARGO_TARGET_DIR` may move out of the workspace).
pub fn release_bin(name: &str) -> PathBuf {
    target_dir().join("release").join(name)
}

/// A binary of the workspace's debug build (the one the tests run).
pub fn debug_bin(name: &str) -> PathBuf {
    target_dir().join("debug").join(name)
}

fn target_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    // A relative target directory is relative to where cargo ran: the workspace root.
    root().join(target)
}

/// Runs a command in the workspace root, failing on a non-zero exit.
pub fn shell(program: &str, args: &[&str]) -> anyhow::Result<()> {
    succeed(command(program, args), program, args)
}

/// Runs `command` (`program` with `args`), failing on a non-zero exit.
pub fn succeed(mut command: Command, program: &str, args: &[&str]) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// A command to run in the workspace root, echoed to stderr, without the variables
/// `cargo run` set to describe xtask.
pub fn command(program: &str, args: &[&str]) -> Command {
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
    command.args(args).current_dir(root());
    command
}

/// Runs a command and returns its stdout.
pub fn output(program: &str, args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<String> {
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
