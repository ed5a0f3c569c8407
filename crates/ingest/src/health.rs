//! What `tenet check` reports about received messages: ones waiting for processing
//! longer than work should (no worker is running their jobs), and ones whose
//! processing failed (dead letters waiting on an operator).

use platform::health::{Finding, Severity};
use sqlx::PgPool;

/// Pending messages received longer ago than `overdue_after`, and failed ones, by
/// listener. Needs the owner role (it reads every tenant's messages).
pub async fn findings(
    owner: &PgPool,
    overdue_after: std::time::Duration,
) -> Result<Vec<Finding>, sqlx::Error> {
    let rows: Vec<(String, String, i64, f64)> = sqlx::query_as(
        "SELECT listener, processing::text, count(*),
             extract(epoch FROM now() - min(received_at))::float8
         FROM ingest.messages
         WHERE (processing = 'pending' AND received_at < now() - make_interval(secs => $1))
            OR processing = 'failed'
         GROUP BY listener, processing
         ORDER BY listener, processing",
    )
    .bind(overdue_after.as_secs_f64())
    .fetch_all(owner)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(listener, processing, n, age_secs)| {
            let object = format!("ingest listener {listener}");
            if processing == "pending" {
                Finding {
                    severity: Severity::Problem,
                    check: "ingest-unprocessed",
                    object,
                    detail: format!(
                        "{n} received message(s) not processed (the oldest received {:.0} s ago): are workers running?",
                        age_secs
                    ),
                }
            } else {
                Finding {
                    severity: Severity::Notice,
                    check: "ingest-failed",
                    object,
                    detail: format!(
                        "{n} message(s) failed processing: see `tenet deadletters list`, fix the cause, then `tenet ingest reprocess ID`"
                    ),
                }
            }
        })
        .collect())
}
