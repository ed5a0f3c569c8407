//! `tenet check`: the live schema against invariants I1 and I8.

use std::process::ExitCode;

use crate::cli::Global;

#[allow(clippy::print_stdout, reason = "command output")]
pub async fn run(global: &Global, json: bool) -> anyhow::Result<ExitCode> {
    let (owner, _app) = super::pools(global).await?;
    let violations = schema::check::run(&owner).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&violations)?);
    } else {
        print!("{}", schema::check::render_text(&violations));
    }
    Ok(if violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
