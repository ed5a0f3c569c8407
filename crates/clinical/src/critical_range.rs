//! Critical ranges: per observation code, the values outside which a result is
//! critical whatever flags the sending system set.

use db::TenantTx;

/// The bounds of one code's critical range; a value below `low` or above `high` is
/// critical. At least one bound is set.
#[derive(Debug, Clone, PartialEq)]
pub struct CriticalRange {
    pub code_system: String,
    pub code: String,
    pub low: Option<f64>,
    pub high: Option<f64>,
}

impl CriticalRange {
    /// Whether `value` lies outside the range.
    pub fn is_critical(&self, value: f64) -> bool {
        self.low.is_some_and(|low| value < low) || self.high.is_some_and(|high| value > high)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CriticalRangeError {
    #[error("a critical range needs a low or a high bound")]
    NoBound,
    #[error("the low bound must be below the high bound")]
    Inverted,
    #[error("a bound must be a finite number")]
    NotFinite,
    #[error(transparent)]
    Unexpected(#[from] sqlx::Error),
}

/// Sets (or replaces) the critical range of a code.
pub async fn set(tx: &mut TenantTx, range: &CriticalRange) -> Result<(), CriticalRangeError> {
    if range.low.is_none() && range.high.is_none() {
        return Err(CriticalRangeError::NoBound);
    }
    if range.low.is_some_and(|v| !v.is_finite()) || range.high.is_some_and(|v| !v.is_finite()) {
        return Err(CriticalRangeError::NotFinite);
    }
    if let (Some(low), Some(high)) = (range.low, range.high)
        && low >= high
    {
        return Err(CriticalRangeError::Inverted);
    }
    sqlx::query(
        "INSERT INTO clinical.critical_ranges (tenant_id, code_system, code, low, high)
         VALUES ($1, $2, $3, $4::float8::numeric, $5::float8::numeric)
         ON CONFLICT (tenant_id, code_system, code)
         DO UPDATE SET low = excluded.low, high = excluded.high, updated_at = now()",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(&range.code_system)
    .bind(&range.code)
    .bind(range.low)
    .bind(range.high)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Removes a code's critical range; false if it had none.
pub async fn remove(tx: &mut TenantTx, code_system: &str, code: &str) -> Result<bool, sqlx::Error> {
    let removed = sqlx::query(
        "DELETE FROM clinical.critical_ranges WHERE tenant_id = $1 AND code_system = $2 AND code = $3",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(code_system)
    .bind(code)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(removed > 0)
}

/// The tenant's critical ranges, by code.
pub async fn list(tx: &mut TenantTx) -> Result<Vec<CriticalRange>, sqlx::Error> {
    let rows: Vec<(String, String, Option<f64>, Option<f64>)> = sqlx::query_as(
        "SELECT code_system, code, low::float8, high::float8 FROM clinical.critical_ranges
         WHERE tenant_id = $1 ORDER BY code_system, code",
    )
    .bind(tx.tenant_id().as_uuid())
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(code_system, code, low, high)| CriticalRange {
            code_system,
            code,
            low,
            high,
        })
        .collect())
}

/// The critical range of one code, if set.
pub async fn get(
    tx: &mut TenantTx,
    code_system: &str,
    code: &str,
) -> Result<Option<CriticalRange>, sqlx::Error> {
    let row: Option<(Option<f64>, Option<f64>)> = sqlx::query_as(
        "SELECT low::float8, high::float8 FROM clinical.critical_ranges
         WHERE tenant_id = $1 AND code_system = $2 AND code = $3",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(code_system)
    .bind(code)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|(low, high)| CriticalRange {
        code_system: code_system.to_owned(),
        code: code.to_owned(),
        low,
        high,
    }))
}
