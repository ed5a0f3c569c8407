//! `tenet check`: the live schema against invariants I1 and I8, and the work in
//! flight against "known end states" (nothing neither done nor on its way), HL7
//! messages left in the default partition and reminder emails whose outcome is
//! unknown included.

use std::process::ExitCode;

use platform::health::{self, HealthConfig, Severity};

use crate::cli::Global;
use crate::output::say;

pub async fn run(global: &Global, json: bool, config: &HealthConfig) -> anyhow::Result<ExitCode> {
    super::with_pools(global, async |owner, _app| {
        let violations = schema::check::run(owner).await?;
        let mut findings = health::run(owner, config).await?;
        findings.extend(ingest::health::findings(owner, config.overdue_after).await?);
        findings.extend(ingest::partitions::findings(owner).await?);
        findings.extend(assessments::reminder::findings(owner).await?);
        findings.extend(notes::listing::findings(owner).await?);
        findings.sort();
        if json {
            say(serde_json::to_string_pretty(&serde_json::json!({
                "violations": violations,
                "work": findings,
            }))?);
        } else {
            say(schema::check::render_text(&violations).trim_end());
            say(health::render_text(&findings).trim_end());
        }
        let passes = violations.is_empty()
            && findings
                .iter()
                .all(|finding| finding.severity != Severity::Problem);
        Ok(if passes {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
    .await
}
