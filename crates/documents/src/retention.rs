//! Retention rules per category and legal holds.
//!
//! A category without a rule is kept for ever. A rule keeps a document `keep_days`
//! after its anchor: the later of the patient's last encounter and the document's
//! creation ([`Anchor::LastEncounter`]), or its creation alone ([`Anchor::Created`]).
//! A legal hold blocks every deletion, by a user or by the lifecycle job, until it is
//! released; placing and releasing one are audited. This module never deletes: the
//! lifecycle job does.

use audit::AuditEntry;
use db::TenantTx;

use crate::category::{Category, DocumentId};
use crate::document::{self, Document, Status};

/// What a retention period counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "documents.retention_anchor", rename_all = "snake_case")]
pub enum Anchor {
    /// The patient's last encounter (its end, or its start while it has none), or the
    /// document's creation if later or if the patient has no encounter.
    LastEncounter,
    /// The document's creation.
    Created,
}

impl Anchor {
    pub const fn as_str(self) -> &'static str {
        match self {
            Anchor::LastEncounter => "last_encounter",
            Anchor::Created => "created",
        }
    }
}

impl std::str::FromStr for Anchor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "last_encounter" => Ok(Anchor::LastEncounter),
            "created" => Ok(Anchor::Created),
            _ => Err("unknown anchor; expected last_encounter or created".to_owned()),
        }
    }
}

/// How long one category is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionRule {
    pub category: Category,
    pub anchor: Anchor,
    pub keep_days: i32,
}

/// The longest retention a rule may set: 200 years.
pub const KEEP_DAYS_MAX: i32 = 73_000;

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("keep_days must be between 1 and {KEEP_DAYS_MAX}")]
    InvalidKeepDays,
    #[error("writing retention rules")]
    Database(#[from] sqlx::Error),
}

/// Sets (or replaces) a category's rule.
pub async fn set_rule(tx: &mut TenantTx, rule: RetentionRule) -> Result<(), RuleError> {
    if !(1..=KEEP_DAYS_MAX).contains(&rule.keep_days) {
        return Err(RuleError::InvalidKeepDays);
    }
    sqlx::query(
        "INSERT INTO documents.retention_rules (tenant_id, category, anchor, keep_days)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant_id, category)
         DO UPDATE SET anchor = EXCLUDED.anchor, keep_days = EXCLUDED.keep_days, updated_at = now()",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(rule.category)
    .bind(rule.anchor)
    .bind(rule.keep_days)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Removes a category's rule (kept for ever again); whether there was one.
pub async fn clear_rule(tx: &mut TenantTx, category: Category) -> Result<bool, sqlx::Error> {
    let done =
        sqlx::query("DELETE FROM documents.retention_rules WHERE tenant_id = $1 AND category = $2")
            .bind(tx.tenant_id().as_uuid())
            .bind(category)
            .execute(&mut **tx)
            .await?;
    Ok(done.rows_affected() > 0)
}

/// The tenant's rules, by category.
pub async fn rules(tx: &mut TenantTx) -> Result<Vec<RetentionRule>, sqlx::Error> {
    let rows: Vec<(Category, Anchor, i32)> = sqlx::query_as(
        "SELECT category, anchor, keep_days FROM documents.retention_rules WHERE tenant_id = $1 ORDER BY category",
    )
    .bind(tx.tenant_id().as_uuid())
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(category, anchor, keep_days)| RetentionRule {
            category,
            anchor,
            keep_days,
        })
        .collect())
}

/// The outcomes of placing or releasing a hold.
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error("no such document")]
    NotFound,
    #[error("the document was deleted")]
    Deleted,
    #[error("the document is already under legal hold")]
    AlreadyHeld,
    #[error("the document is not under legal hold")]
    NotHeld,
    #[error("a hold needs a reason of 1 to 500 characters")]
    InvalidReason,
    #[error("writing the audit event")]
    Audit(#[from] audit::AuditError),
    #[error("writing the hold")]
    Database(#[from] sqlx::Error),
}

async fn audit_hold(
    tx: &mut TenantTx,
    action: &'static str,
    document: &Document,
) -> Result<(), HoldError> {
    let mut entry = AuditEntry::patient(action, document.patient_id).purpose("legal");
    entry.details = serde_json::json!({
        "document_id": document.id.as_uuid(),
        "category": document.category.as_str(),
    });
    audit::append(tx, entry).await?;
    Ok(())
}

/// Places a legal hold: no one deletes the document until it is released.
pub async fn place_hold(
    tx: &mut TenantTx,
    document_id: DocumentId,
    reason: &str,
) -> Result<Document, HoldError> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(HoldError::InvalidReason);
    }
    let document = document::lock(tx, document_id)
        .await?
        .ok_or(HoldError::NotFound)?;
    if document.status == Status::Deleted {
        return Err(HoldError::Deleted);
    }
    if document.hold.is_some() {
        return Err(HoldError::AlreadyHeld);
    }
    sqlx::query(
        "UPDATE documents.documents
         SET legal_hold = true, legal_hold_reason = $3, legal_hold_by = $4, legal_hold_at = now()
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(document_id.as_uuid())
    .bind(reason)
    .bind(tx.actor().to_owned())
    .execute(&mut **tx)
    .await?;
    audit_hold(tx, "document.hold", &document).await?;
    document::get(tx, document_id)
        .await?
        .ok_or(HoldError::NotFound)
}

/// Releases a legal hold.
pub async fn release_hold(
    tx: &mut TenantTx,
    document_id: DocumentId,
) -> Result<Document, HoldError> {
    let document = document::lock(tx, document_id)
        .await?
        .ok_or(HoldError::NotFound)?;
    if document.hold.is_none() {
        return Err(HoldError::NotHeld);
    }
    sqlx::query(
        "UPDATE documents.documents
         SET legal_hold = false, legal_hold_reason = NULL, legal_hold_by = NULL, legal_hold_at = NULL
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(document_id.as_uuid())
    .execute(&mut **tx)
    .await?;
    audit_hold(tx, "document.release", &document).await?;
    document::get(tx, document_id)
        .await?
        .ok_or(HoldError::NotFound)
}
