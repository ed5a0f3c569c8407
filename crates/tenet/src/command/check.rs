//! `tenet check`: the live schema against invariants I1 and I8.

use std::process::ExitCode;

use crate::cli::Global;
use crate::output::say;

pub async fn run(global: &Global, json: bool) -> anyhow::Result<ExitCode> {
    super::with_pools(global, async |owner, _app| {
        let violations = schema::check::run(owner).await?;
        if json {
            say(serde_json::to_string_pretty(&violations)?);
        } else {
            say(schema::check::render_text(&violations).trim_end());
        }
        Ok(if violations.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
    .await
}
