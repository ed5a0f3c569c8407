//! `tenet critical-ranges set|list|remove`: per observation code, the values outside
//! which a received result is critical (besides the sender's HH/LL/AA flags). Each
//! runs in a transaction of the tenant.

use std::process::ExitCode;

use clinical::critical_range::{self, CriticalRange, CriticalRangeError};

use super::tenant_tx;
use crate::cli::{CriticalRangesCommand, Global};
use crate::output::{say, tell};

pub async fn run(global: &Global, command: CriticalRangesCommand) -> anyhow::Result<ExitCode> {
    super::with_pools(global, async |_owner, app| match command {
        CriticalRangesCommand::Set {
            tenant,
            system,
            code,
            low,
            high,
        } => {
            let mut tx = tenant_tx(app, tenant).await?;
            let range = CriticalRange {
                code_system: system,
                code,
                low,
                high,
            };
            match critical_range::set(&mut tx, &range).await {
                Ok(()) => {
                    tx.commit().await?;
                    say(format!(
                        "{}^{}: critical below {} or above {}",
                        range.code_system,
                        range.code,
                        bound(range.low),
                        bound(range.high)
                    ));
                    Ok(ExitCode::SUCCESS)
                }
                Err(CriticalRangeError::Unexpected(err)) => Err(err.into()),
                Err(err) => {
                    tell(err.to_string());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        CriticalRangesCommand::List { tenant } => {
            let mut tx = tenant_tx(app, tenant).await?;
            let ranges = critical_range::list(&mut tx).await?;
            tx.commit().await?;
            if ranges.is_empty() {
                say("no critical ranges: only the sender's HH, LL and AA flags mark a result critical");
            }
            for range in ranges {
                say(format!(
                    "{:<8} {:<12} low {:<10} high {}",
                    range.code_system,
                    range.code,
                    bound(range.low),
                    bound(range.high)
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
        CriticalRangesCommand::Remove {
            tenant,
            system,
            code,
        } => {
            let mut tx = tenant_tx(app, tenant).await?;
            let removed = critical_range::remove(&mut tx, &system, &code).await?;
            tx.commit().await?;
            if removed {
                say(format!("{system}^{code}: critical range removed"));
                Ok(ExitCode::SUCCESS)
            } else {
                tell(format!("{system}^{code} has no critical range"));
                Ok(ExitCode::FAILURE)
            }
        }
    })
    .await
}

fn bound(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}
