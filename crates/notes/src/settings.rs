//! A tenant's note rules (co-signature, late-signing deadline) and its supervisors.

use db::TenantTx;
use kernel::UserId;
use uuid::Uuid;

/// The longest late-signing deadline: a year, in minutes.
pub const LATE_AFTER_MINUTES_MAX: i32 = 525_600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// A signed note is complete only once a supervisor co-signs it.
    pub cosign_required: bool,
    /// A note unsigned (or awaiting its co-signature) this long after its care is late.
    pub late_after_minutes: i32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cosign_required: false,
            late_after_minutes: 72 * 60,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("late_after_minutes must be 1 to {LATE_AFTER_MINUTES_MAX}")]
    LateAfter,
    #[error("writing note settings")]
    Database(#[from] sqlx::Error),
}

/// The tenant's settings, or the defaults.
pub async fn get(tx: &mut TenantTx) -> Result<Settings, sqlx::Error> {
    let row: Option<(bool, i32)> = sqlx::query_as(
        "SELECT cosign_required, late_after_minutes FROM notes.settings WHERE tenant_id = $1",
    )
    .bind(tx.tenant_id().as_uuid())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row
        .map(|(cosign_required, late_after_minutes)| Settings {
            cosign_required,
            late_after_minutes,
        })
        .unwrap_or_default())
}

/// Replaces the tenant's settings. Notes signed before keep the rule they were
/// signed under.
pub async fn configure(tx: &mut TenantTx, settings: &Settings) -> Result<(), SettingsError> {
    if !(1..=LATE_AFTER_MINUTES_MAX).contains(&settings.late_after_minutes) {
        return Err(SettingsError::LateAfter);
    }
    sqlx::query(
        "INSERT INTO notes.settings (tenant_id, cosign_required, late_after_minutes) VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id) DO UPDATE SET cosign_required = $2, late_after_minutes = $3, updated_at = now()",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(settings.cosign_required)
    .bind(settings.late_after_minutes)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Lets `user_id` co-sign other authors' notes.
pub async fn add_supervisor(tx: &mut TenantTx, user_id: UserId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO notes.supervisors (tenant_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(user_id.as_uuid())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Stops `user_id` co-signing; returns whether they were a supervisor.
pub async fn remove_supervisor(tx: &mut TenantTx, user_id: UserId) -> Result<bool, sqlx::Error> {
    let result = sqlx::query("DELETE FROM notes.supervisors WHERE tenant_id = $1 AND user_id = $2")
        .bind(tx.tenant_id().as_uuid())
        .bind(user_id.as_uuid())
        .execute(&mut **tx)
        .await?;
    Ok(result.rows_affected() > 0)
}

pub async fn is_supervisor(tx: &mut TenantTx, user_id: UserId) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM notes.supervisors WHERE tenant_id = $1 AND user_id = $2)",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(user_id.as_uuid())
    .fetch_one(&mut **tx)
    .await
}

/// Every supervisor of the tenant.
pub async fn supervisors(tx: &mut TenantTx) -> Result<Vec<UserId>, sqlx::Error> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT user_id FROM notes.supervisors WHERE tenant_id = $1 ORDER BY user_id",
    )
    .bind(tx.tenant_id().as_uuid())
    .fetch_all(&mut **tx)
    .await?;
    Ok(ids.into_iter().map(UserId::new_unchecked).collect())
}

/// Which patient identifiers, besides the pseudonym, a note's PDF may show. The
/// default shows the pseudonym only; each other identifier is read from the identity
/// vault, audited, when allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PdfIdentifiers {
    /// The medical record number (the vault's `MR` identifier).
    pub record_number: bool,
    pub name: bool,
    pub birth_date: bool,
}

impl PdfIdentifiers {
    /// The database enum `notes.pdf_identifier` values allowed.
    fn to_labels(self) -> Vec<&'static str> {
        [
            (self.record_number, "record_number"),
            (self.name, "name"),
            (self.birth_date, "date_of_birth"),
        ]
        .into_iter()
        .filter_map(|(allowed, label)| allowed.then_some(label))
        .collect()
    }

    fn from_labels(labels: &[String]) -> Self {
        let has = |label: &str| labels.iter().any(|l| l == label);
        Self {
            record_number: has("record_number"),
            name: has("name"),
            birth_date: has("date_of_birth"),
        }
    }
}

/// The identifiers the tenant lets a note's PDF show.
pub async fn pdf_identifiers(tx: &mut TenantTx) -> Result<PdfIdentifiers, sqlx::Error> {
    let labels: Option<Vec<String>> = sqlx::query_scalar(
        "SELECT pdf_identifiers::text[] FROM notes.settings WHERE tenant_id = $1",
    )
    .bind(tx.tenant_id().as_uuid())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(labels.map_or_else(PdfIdentifiers::default, |labels| {
        PdfIdentifiers::from_labels(&labels)
    }))
}

/// Replaces the identifiers a note's PDF may show; the other settings stay.
pub async fn configure_pdf_identifiers(
    tx: &mut TenantTx,
    identifiers: PdfIdentifiers,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO notes.settings (tenant_id, pdf_identifiers)
         VALUES ($1, $2::text[]::notes.pdf_identifier[])
         ON CONFLICT (tenant_id) DO UPDATE SET pdf_identifiers = EXCLUDED.pdf_identifiers, updated_at = now()",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(identifiers.to_labels())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
