//! Notes without their content: a patient's list, and the late-signing list for the
//! compliance view. Nothing here decrypts a body.

use db::TenantTx;
use kernel::{PatientId, UserId};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::note::NoteId;
use crate::settings;

/// The most rows one list returns.
pub const LIST_LIMIT_MAX: i64 = 500;

/// Where a note stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Draft,
    /// Signed; a co-signature is required and missing.
    AwaitingCosign,
    /// Signed, and co-signed where required.
    Complete,
}

impl Status {
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::AwaitingCosign => "awaiting_cosign",
            Status::Complete => "complete",
        }
    }
}

/// A note's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub id: NoteId,
    pub patient_id: PatientId,
    pub author_id: UserId,
    pub template_code: String,
    pub template_version: i32,
    pub amends: Option<NoteId>,
    pub status: Status,
    pub version: i32,
    pub service_at: OffsetDateTime,
    pub signed_at: Option<OffsetDateTime>,
}

/// A note past the tenant's signing deadline.
#[derive(Debug, Clone, PartialEq)]
pub struct LateNote {
    pub summary: Summary,
    /// When it became late.
    pub due_at: OffsetDateTime,
}

type SummaryRow = (
    Uuid,
    Uuid,
    Uuid,
    String,
    i32,
    Option<Uuid>,
    bool,
    bool,
    i32,
    OffsetDateTime,
    Option<OffsetDateTime>,
);

const SUMMARY: &str =
    "SELECT id, patient_id, author_id, template_code, template_version, amends_id,
         status = 'signed', cosign_required AND cosigned_at IS NULL, version, service_at, signed_at
     FROM notes.notes";

fn summary(row: SummaryRow) -> Summary {
    let (
        id,
        patient_id,
        author_id,
        template_code,
        template_version,
        amends,
        signed,
        awaiting,
        version,
        service_at,
        signed_at,
    ) = row;
    Summary {
        id: NoteId::new_unchecked(id),
        patient_id: PatientId::new_unchecked(patient_id),
        author_id: UserId::new_unchecked(author_id),
        template_code,
        template_version,
        amends: amends.map(NoteId::new_unchecked),
        status: match (signed, awaiting) {
            (false, _) => Status::Draft,
            (true, true) => Status::AwaitingCosign,
            (true, false) => Status::Complete,
        },
        version,
        service_at,
        signed_at,
    }
}

/// A patient's notes and amendments, newest care first, recording `note.list`.
pub async fn for_patient(
    tx: &mut TenantTx,
    patient_id: PatientId,
) -> Result<Vec<Summary>, audit::AuditError> {
    let rows: Vec<SummaryRow> = sqlx::query_as(&format!(
        "{SUMMARY} WHERE tenant_id = $1 AND patient_id = $2 ORDER BY service_at DESC, id DESC LIMIT $3"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(patient_id.as_uuid())
    .bind(LIST_LIMIT_MAX)
    .fetch_all(&mut **tx)
    .await?;
    audit::append(
        tx,
        audit::AuditEntry::patient("note.list", patient_id)
            .purpose(
                tx.purpose_of_use()
                    .purpose
                    .clone()
                    .unwrap_or_else(|| "treatment".to_owned()),
            )
            .break_glass(tx.purpose_of_use().break_glass),
    )
    .await?;
    Ok(rows.into_iter().map(summary).collect())
}

/// The late-signing rule: notes still unsigned, or still awaiting a required
/// co-signature, longer than the tenant's `late_after_minutes` after their care,
/// as of `now`. Oldest first.
pub async fn late(tx: &mut TenantTx, now: OffsetDateTime) -> Result<Vec<LateNote>, sqlx::Error> {
    let late_after_minutes = settings::get(tx).await?.late_after_minutes;
    let rows: Vec<SummaryRow> = sqlx::query_as(&format!(
        "{SUMMARY} WHERE tenant_id = $1
             AND (status = 'draft' OR (cosign_required AND cosigned_at IS NULL))
             AND service_at + make_interval(mins => $2) < $3
         ORDER BY service_at, id LIMIT $4"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(late_after_minutes)
    .bind(now)
    .bind(LIST_LIMIT_MAX)
    .fetch_all(&mut **tx)
    .await?;
    let late_after = time::Duration::minutes(i64::from(late_after_minutes));
    Ok(rows
        .into_iter()
        .map(summary)
        .map(|summary| LateNote {
            due_at: summary.service_at + late_after,
            summary,
        })
        .collect())
}

/// What `tenet check` reports for the compliance view: per tenant, how many notes
/// are late (a draft, or awaiting its co-signature, past the tenant's deadline after
/// their care). Counts only. Needs the owner role, which reads across tenants.
pub async fn findings(owner: &sqlx::PgPool) -> Result<Vec<platform::health::Finding>, sqlx::Error> {
    let rows: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT n.tenant_id, count(*)
         FROM notes.notes n LEFT JOIN notes.settings s ON s.tenant_id = n.tenant_id
         WHERE (n.status = 'draft' OR (n.cosign_required AND n.cosigned_at IS NULL))
           AND n.service_at + make_interval(mins => coalesce(s.late_after_minutes, $1)) < now()
         GROUP BY 1 ORDER BY 1",
    )
    .bind(settings::Settings::default().late_after_minutes)
    .fetch_all(owner)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(tenant_id, n)| platform::health::Finding {
            severity: platform::health::Severity::Notice,
            check: "notes-late",
            object: format!("progress notes of tenant {tenant_id}"),
            detail: format!(
                "{n} note(s) not signed (or not co-signed) within the tenant's deadline after their care: `tenet notes late --tenant {tenant_id}` lists them"
            ),
        })
        .collect())
}

/// The patient a note is about, without reading its content: what an API checks
/// access against before opening the note. `None` if the tenant has no such note.
pub async fn patient_of(
    tx: &mut TenantTx,
    note_id: NoteId,
) -> Result<Option<PatientId>, sqlx::Error> {
    let patient_id: Option<Uuid> =
        sqlx::query_scalar("SELECT patient_id FROM notes.notes WHERE tenant_id = $1 AND id = $2")
            .bind(tx.tenant_id().as_uuid())
            .bind(note_id.as_uuid())
            .fetch_optional(&mut **tx)
            .await?;
    Ok(patient_id.map(PatientId::new_unchecked))
}

/// A note's metadata and its amendments' (oldest first), without content; `None` if
/// the tenant has no such note.
pub async fn chain(
    tx: &mut TenantTx,
    note_id: NoteId,
) -> Result<Option<(Summary, Vec<Summary>)>, sqlx::Error> {
    let rows: Vec<SummaryRow> = sqlx::query_as(&format!(
        "{SUMMARY} WHERE tenant_id = $1 AND (id = $2 OR amends_id = $2)
         ORDER BY amends_id IS NOT NULL, created_at, id"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(note_id.as_uuid())
    .fetch_all(&mut **tx)
    .await?;
    let mut summaries = rows.into_iter().map(summary);
    Ok(summaries
        .next()
        .filter(|note| note.id == note_id)
        .map(|note| (note, summaries.collect())))
}
