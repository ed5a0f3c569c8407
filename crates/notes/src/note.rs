//! Progress notes in two states, as types: a [`Note<Draft>`] can be edited and
//! signed; a [`Note<Signed>`] can only be co-signed or amended (I7).
//!
//! Every function takes the tenant's transaction first, seals content with the
//! tenant's data key before it reaches the database, and records each read and
//! write in the audit log in that transaction. The database trigger
//! `notes.refuse_signed_change` refuses any change to a signed note whatever the
//! caller; the types here make the application never try.

use std::fmt;

use audit::AuditEntry;
use db::TenantTx;
use identity::keyring::{DataKey, Keyring, KeyringError};
use kernel::{PatientId, TenantId, UserId};
use platform::outbox::{self, Event, Outbox};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::content::{Content, ContentError};
use crate::settings;
use crate::template::Template;

/// A note's id. Carries no PHI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NoteId(Uuid);

impl NoteId {
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    pub const fn new_unchecked(uuid: Uuid) -> Self {
        Self(uuid)
    }

    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    pub const fn into_uuid(self) -> Uuid {
        self.0
    }
}

impl fmt::Display for NoteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An original note, or an amendment of a signed one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Original,
    /// Corrects the signed note it points at.
    Amendment {
        amends: NoteId,
    },
}

/// What a note is about and who wrote it: no PHI.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub id: NoteId,
    pub patient_id: PatientId,
    pub author_id: UserId,
    pub encounter_id: Option<Uuid>,
    pub appointment_id: Option<Uuid>,
    pub template: &'static Template,
    pub kind: Kind,
    /// Counts content edits; a write naming an older one is refused.
    pub version: i32,
    /// When the documented care happened; the late-signing rule counts from here.
    pub service_at: OffsetDateTime,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// The state of a note being written.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft;

/// A supervisor's co-signature.
#[derive(Debug, Clone, PartialEq)]
pub struct Cosignature {
    pub by: UserId,
    pub at: OffsetDateTime,
}

/// The state of a signed note: frozen.
#[derive(Debug, Clone, PartialEq)]
pub struct Signed {
    pub signed_by: UserId,
    pub signed_at: OffsetDateTime,
    /// SHA-256 of the content's canonical payload.
    pub content_sha256: [u8; 32],
    /// The tenant's rule when it was signed.
    pub cosign_required: bool,
    pub cosignature: Option<Cosignature>,
}

/// A note in state `S`. Only this module makes one, from what the database holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Note<S> {
    header: Header,
    content: Content,
    state: S,
}

/// A note read back, in whichever state it is.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyNote {
    Draft(Note<Draft>),
    Signed(Note<Signed>),
}

/// A note and its amendments, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Chain {
    pub note: AnyNote,
    pub amendments: Vec<AnyNote>,
}

/// What is to be written.
#[derive(Debug, Clone)]
pub struct NewNote {
    pub patient_id: PatientId,
    pub author_id: UserId,
    pub template: &'static Template,
    pub encounter_id: Option<Uuid>,
    pub appointment_id: Option<Uuid>,
    /// When the care happened; `None`: now.
    pub service_at: Option<OffsetDateTime>,
    pub content: Content,
}

/// The business outcomes of note operations, plus the unexpected.
#[derive(Debug, thiserror::Error)]
pub enum NoteError {
    #[error("no such note")]
    NotFound,
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error("only the note's author may edit or sign it")]
    NotAuthor,
    #[error("the note was changed by someone else (now version {current}); reload and retry")]
    VersionConflict { current: i32 },
    #[error("the note is signed: it cannot be changed, only amended")]
    Signed,
    #[error("the note is a draft: sign it first")]
    NotSigned,
    #[error("only a supervisor may co-sign a note")]
    NotSupervisor,
    #[error("a note cannot be co-signed by its author or signer")]
    OwnNote,
    #[error("the note is already co-signed")]
    AlreadyCosigned,
    #[error("the note's content does not decrypt: it was altered or moved")]
    Undecryptable,
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error("writing the audit event")]
    Audit(#[from] audit::AuditError),
    #[error("reading or writing notes")]
    Database(#[from] sqlx::Error),
}

impl<S> Note<S> {
    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn id(&self) -> NoteId {
        self.header.id
    }

    /// The content: PHI, for an audited path only.
    pub fn content(&self) -> &Content {
        &self.content
    }

    pub fn state(&self) -> &S {
        &self.state
    }
}

#[cfg(test)]
impl<S> Note<S> {
    /// A note as the database would give it back: for the pure renderer's tests.
    pub(crate) fn assemble(header: Header, content: Content, state: S) -> Self {
        Self {
            header,
            content,
            state,
        }
    }
}

impl Note<Signed> {
    /// Signed, and co-signed where that was required.
    pub fn is_complete(&self) -> bool {
        !self.state.cosign_required || self.state.cosignature.is_some()
    }
}

impl AnyNote {
    pub fn header(&self) -> &Header {
        match self {
            AnyNote::Draft(note) => &note.header,
            AnyNote::Signed(note) => &note.header,
        }
    }

    pub fn content(&self) -> &Content {
        match self {
            AnyNote::Draft(note) => &note.content,
            AnyNote::Signed(note) => &note.content,
        }
    }

    pub fn signed(&self) -> Option<&Signed> {
        match self {
            AnyNote::Draft(_) => None,
            AnyNote::Signed(note) => Some(&note.state),
        }
    }
}

/// The associated data of a sealed body: a ciphertext moved to another tenant, note
/// or version does not open.
fn body_aad(tenant_id: TenantId, note_id: NoteId, version: i32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(13 + 16 + 16 + 4);
    aad.extend_from_slice(b"tenet-note-v1");
    aad.extend_from_slice(tenant_id.as_uuid().as_bytes());
    aad.extend_from_slice(note_id.as_uuid().as_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

fn seal(
    data_key: &DataKey,
    tenant_id: TenantId,
    note_id: NoteId,
    version: i32,
    content: &Content,
) -> Vec<u8> {
    data_key.key.seal(
        &content.to_payload(),
        &body_aad(tenant_id, note_id, version),
    )
}

async fn audit_note(
    tx: &mut TenantTx,
    action: &'static str,
    header: &Header,
) -> Result<(), NoteError> {
    // The purpose the edge decided for this transaction (a break-glass grant's reason,
    // flagged), else treatment: notes are written and read for care.
    let purpose_of_use = tx.purpose_of_use().clone();
    let mut entry = AuditEntry::patient(action, header.patient_id)
        .purpose(
            purpose_of_use
                .purpose
                .unwrap_or_else(|| "treatment".to_owned()),
        )
        .break_glass(purpose_of_use.break_glass);
    entry.details = serde_json::json!({
        "note_id": header.id.as_uuid(),
        "version": header.version,
    });
    audit::append(tx, entry).await?;
    Ok(())
}

async fn emit(
    tx: &mut TenantTx,
    event_type: &'static str,
    header: &Header,
) -> Result<(), NoteError> {
    outbox::emit(
        tx,
        Outbox::Notes,
        Event {
            event_type,
            event_version: 1,
            aggregate_type: "note",
            aggregate_id: header.id.into_uuid(),
            payload: serde_json::json!({
                "note_id": header.id.as_uuid(),
                "patient_id": header.patient_id.as_uuid(),
                "template": header.template.code,
                "version": header.version,
            }),
        },
    )
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    patient_id: Uuid,
    author_id: Uuid,
    encounter_id: Option<Uuid>,
    appointment_id: Option<Uuid>,
    template_code: String,
    template_version: i32,
    amends_id: Option<Uuid>,
    version: i32,
    data_key_id: Uuid,
    body_sealed: Vec<u8>,
    service_at: OffsetDateTime,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    signed_by: Option<Uuid>,
    signed_at: Option<OffsetDateTime>,
    content_sha256: Option<Vec<u8>>,
    cosign_required: bool,
    cosigned_by: Option<Uuid>,
    cosigned_at: Option<OffsetDateTime>,
}

const COLUMNS: &str = "id, patient_id, author_id, encounter_id, appointment_id, template_code, template_version,
     amends_id, version, data_key_id, body_sealed, service_at, created_at, updated_at, signed_by, signed_at,
     content_sha256, cosign_required, cosigned_by, cosigned_at";

async fn open_row(tx: &mut TenantTx, keyring: &Keyring, row: Row) -> Result<AnyNote, NoteError> {
    let tenant_id = tx.tenant_id();
    let note_id = NoteId(row.id);
    let data_key = keyring.key(tx, row.data_key_id).await?;
    let content = data_key
        .key
        .open(&row.body_sealed, &body_aad(tenant_id, note_id, row.version))
        .and_then(|payload| Content::from_payload(&payload))
        .ok_or(NoteError::Undecryptable)?;
    let template = u32::try_from(row.template_version)
        .ok()
        .and_then(|version| Template::find(&row.template_code, version))
        .expect("BUG: a stored note names a published template");
    let header = Header {
        id: note_id,
        patient_id: PatientId::new_unchecked(row.patient_id),
        author_id: UserId::new_unchecked(row.author_id),
        encounter_id: row.encounter_id,
        appointment_id: row.appointment_id,
        template,
        kind: match row.amends_id {
            Some(amends) => Kind::Amendment {
                amends: NoteId(amends),
            },
            None => Kind::Original,
        },
        version: row.version,
        service_at: row.service_at,
        created_at: row.created_at,
        updated_at: row.updated_at,
    };
    Ok(match (row.signed_by, row.signed_at, row.content_sha256) {
        (Some(signed_by), Some(signed_at), Some(content_sha256)) => AnyNote::Signed(Note {
            header,
            content,
            state: Signed {
                signed_by: UserId::new_unchecked(signed_by),
                signed_at,
                content_sha256: content_sha256
                    .try_into()
                    .expect("BUG: the table checks a 32-byte hash"),
                cosign_required: row.cosign_required,
                cosignature: row
                    .cosigned_by
                    .zip(row.cosigned_at)
                    .map(|(by, at)| Cosignature {
                        by: UserId::new_unchecked(by),
                        at,
                    }),
            },
        }),
        _ => AnyNote::Draft(Note {
            header,
            content,
            state: Draft,
        }),
    })
}

async fn fetch(
    tx: &mut TenantTx,
    keyring: &Keyring,
    note_id: NoteId,
    for_update: bool,
) -> Result<AnyNote, NoteError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM notes.notes WHERE tenant_id = $1 AND id = $2{}",
        if for_update { " FOR UPDATE" } else { "" }
    );
    let row: Row = sqlx::query_as(&sql)
        .bind(tx.tenant_id().as_uuid())
        .bind(note_id.as_uuid())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(NoteError::NotFound)?;
    open_row(tx, keyring, row).await
}

async fn insert(
    tx: &mut TenantTx,
    keyring: &Keyring,
    header: &Header,
    content: &Content,
) -> Result<(), NoteError> {
    let tenant_id = tx.tenant_id();
    let data_key = keyring.active_key(tx).await?;
    let (kind, amends_id) = match header.kind {
        Kind::Original => ("original", None),
        Kind::Amendment { amends } => ("amendment", Some(amends.into_uuid())),
    };
    sqlx::query(
        "INSERT INTO notes.notes (tenant_id, id, patient_id, author_id, encounter_id, appointment_id,
             template_code, template_version, kind, amends_id, version, data_key_id, body_sealed,
             service_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::notes.note_kind, $10, $11, $12, $13, $14, $15, $15)",
    )
    .bind(tenant_id.as_uuid())
    .bind(header.id.as_uuid())
    .bind(header.patient_id.as_uuid())
    .bind(header.author_id.as_uuid())
    .bind(header.encounter_id)
    .bind(header.appointment_id)
    .bind(header.template.code)
    .bind(i32::try_from(header.template.version).expect("BUG: template versions are small"))
    .bind(kind)
    .bind(amends_id)
    .bind(header.version)
    .bind(data_key.id)
    .bind(seal(&data_key, tenant_id, header.id, header.version, content))
    .bind(header.service_at)
    .bind(header.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// `t` at PostgreSQL's microsecond precision, so a returned note equals its row.
fn to_stored_precision(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .expect("BUG: a truncated nanosecond is in range")
}

/// Starts a draft note and records `note.create`.
pub async fn create(
    tx: &mut TenantTx,
    keyring: &Keyring,
    new: NewNote,
) -> Result<Note<Draft>, NoteError> {
    new.content.check_draft(new.template)?;
    if new.content.reason().is_some() {
        return Err(ContentError::Reason.into());
    }
    let now: OffsetDateTime = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut **tx)
        .await?;
    let header = Header {
        id: NoteId::generate(),
        patient_id: new.patient_id,
        author_id: new.author_id,
        encounter_id: new.encounter_id,
        appointment_id: new.appointment_id,
        template: new.template,
        kind: Kind::Original,
        version: 1,
        service_at: new.service_at.map_or(now, to_stored_precision),
        created_at: now,
        updated_at: now,
    };
    insert(tx, keyring, &header, &new.content).await?;
    audit_note(tx, "note.create", &header).await?;
    emit(tx, "note.created", &header).await?;
    Ok(Note {
        header,
        content: new.content,
        state: Draft,
    })
}

/// Reads a note in whichever state, recording `note.read`.
pub async fn read(
    tx: &mut TenantTx,
    keyring: &Keyring,
    note_id: NoteId,
) -> Result<AnyNote, NoteError> {
    let note = fetch(tx, keyring, note_id, false).await?;
    audit_note(tx, "note.read", note.header()).await?;
    Ok(note)
}

/// Reads a note and every amendment of it (oldest first), recording one `note.read`
/// per note disclosed.
pub async fn read_chain(
    tx: &mut TenantTx,
    keyring: &Keyring,
    note_id: NoteId,
) -> Result<Chain, NoteError> {
    let note = read(tx, keyring, note_id).await?;
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM notes.notes WHERE tenant_id = $1 AND amends_id = $2
         ORDER BY created_at, id"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(note_id.as_uuid())
    .fetch_all(&mut **tx)
    .await?;
    let mut amendments = Vec::with_capacity(rows.len());
    for row in rows {
        let amendment = open_row(tx, keyring, row).await?;
        audit_note(tx, "note.read", amendment.header()).await?;
        amendments.push(amendment);
    }
    Ok(Chain { note, amendments })
}

/// The draft `note_id`, locked for this transaction; [`NoteError::Signed`] if signed.
pub async fn load_draft(
    tx: &mut TenantTx,
    keyring: &Keyring,
    note_id: NoteId,
) -> Result<Note<Draft>, NoteError> {
    match fetch(tx, keyring, note_id, true).await? {
        AnyNote::Draft(note) => Ok(note),
        AnyNote::Signed(_) => Err(NoteError::Signed),
    }
}

/// The signed note `note_id`, locked for this transaction; [`NoteError::NotSigned`]
/// if it is a draft.
pub async fn load_signed(
    tx: &mut TenantTx,
    keyring: &Keyring,
    note_id: NoteId,
) -> Result<Note<Signed>, NoteError> {
    match fetch(tx, keyring, note_id, true).await? {
        AnyNote::Signed(note) => Ok(note),
        AnyNote::Draft(_) => Err(NoteError::NotSigned),
    }
}

/// Why an optimistic write touched no row: the note moved on, or was signed.
async fn refused_write(tx: &mut TenantTx, note_id: NoteId) -> NoteError {
    let current: Result<Option<(i32, bool)>, sqlx::Error> = sqlx::query_as(
        "SELECT version, status = 'signed' FROM notes.notes WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(note_id.as_uuid())
    .fetch_optional(&mut **tx)
    .await;
    match current {
        Ok(Some((_, true))) => NoteError::Signed,
        Ok(Some((current, false))) => NoteError::VersionConflict { current },
        Ok(None) => NoteError::NotFound,
        Err(err) => err.into(),
    }
}

impl Note<Draft> {
    /// Refuses a write from a client that read version `expected`, when the note is
    /// now at another.
    pub fn expect_version(&self, expected: i32) -> Result<(), NoteError> {
        if expected == self.header.version {
            Ok(())
        } else {
            Err(NoteError::VersionConflict {
                current: self.header.version,
            })
        }
    }

    /// Replaces the content, as its author, and records `note.update`. The write
    /// names the version this draft was read at: a concurrent edit makes it a
    /// [`NoteError::VersionConflict`].
    pub async fn edit(
        self,
        tx: &mut TenantTx,
        keyring: &Keyring,
        editor_id: UserId,
        content: Content,
    ) -> Result<Note<Draft>, NoteError> {
        if editor_id != self.header.author_id {
            return Err(NoteError::NotAuthor);
        }
        content.check_draft(self.header.template)?;
        if content.reason().is_some() != matches!(self.header.kind, Kind::Amendment { .. }) {
            return Err(ContentError::Reason.into());
        }
        let tenant_id = tx.tenant_id();
        let data_key = keyring.active_key(tx).await?;
        let version = self.header.version + 1;
        let updated_at: Option<OffsetDateTime> = sqlx::query_scalar(
            "UPDATE notes.notes SET version = $3, data_key_id = $4, body_sealed = $5, updated_at = now()
             WHERE tenant_id = $1 AND id = $2 AND status = 'draft' AND version = $3 - 1
             RETURNING updated_at",
        )
        .bind(tenant_id.as_uuid())
        .bind(self.header.id.as_uuid())
        .bind(version)
        .bind(data_key.id)
        .bind(seal(&data_key, tenant_id, self.header.id, version, &content))
        .fetch_optional(&mut **tx)
        .await?;
        let Some(updated_at) = updated_at else {
            return Err(refused_write(tx, self.header.id).await);
        };
        let header = Header {
            version,
            updated_at,
            ..self.header
        };
        audit_note(tx, "note.update", &header).await?;
        Ok(Note {
            header,
            content,
            state: Draft,
        })
    }

    /// Signs the note as its author: every required section filled, the content's
    /// hash fixed, the tenant's co-signature rule recorded. Records `note.sign`.
    pub async fn sign(
        self,
        tx: &mut TenantTx,
        signer_id: UserId,
    ) -> Result<Note<Signed>, NoteError> {
        if signer_id != self.header.author_id {
            return Err(NoteError::NotAuthor);
        }
        self.content.check_signable(self.header.template)?;
        let cosign_required = settings::get(tx).await?.cosign_required;
        let content_sha256 = self.content.sha256();
        let signed_at: Option<OffsetDateTime> = sqlx::query_scalar(
            "UPDATE notes.notes SET status = 'signed', signed_by = $4, signed_at = now(),
                 content_sha256 = $5, cosign_required = $6, updated_at = now()
             WHERE tenant_id = $1 AND id = $2 AND status = 'draft' AND version = $3
             RETURNING signed_at",
        )
        .bind(tx.tenant_id().as_uuid())
        .bind(self.header.id.as_uuid())
        .bind(self.header.version)
        .bind(signer_id.as_uuid())
        .bind(content_sha256.as_slice())
        .bind(cosign_required)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(signed_at) = signed_at else {
            return Err(refused_write(tx, self.header.id).await);
        };
        let header = Header {
            updated_at: signed_at,
            ..self.header
        };
        audit_note(tx, "note.sign", &header).await?;
        emit(tx, "note.signed", &header).await?;
        Ok(Note {
            header,
            content: self.content,
            state: Signed {
                signed_by: signer_id,
                signed_at,
                content_sha256,
                cosign_required,
                cosignature: None,
            },
        })
    }
}

impl Note<Signed> {
    /// Co-signs the note as a supervisor who neither wrote nor signed it. Records
    /// `note.cosign`.
    pub async fn cosign(
        self,
        tx: &mut TenantTx,
        supervisor_id: UserId,
    ) -> Result<Note<Signed>, NoteError> {
        if supervisor_id == self.header.author_id || supervisor_id == self.state.signed_by {
            return Err(NoteError::OwnNote);
        }
        if self.state.cosignature.is_some() {
            return Err(NoteError::AlreadyCosigned);
        }
        if !settings::is_supervisor(tx, supervisor_id).await? {
            return Err(NoteError::NotSupervisor);
        }
        let cosigned_at: Option<OffsetDateTime> = sqlx::query_scalar(
            "UPDATE notes.notes SET cosigned_by = $3, cosigned_at = now(), updated_at = now()
             WHERE tenant_id = $1 AND id = $2 AND status = 'signed' AND cosigned_at IS NULL
             RETURNING cosigned_at",
        )
        .bind(tx.tenant_id().as_uuid())
        .bind(self.header.id.as_uuid())
        .bind(supervisor_id.as_uuid())
        .fetch_optional(&mut **tx)
        .await?;
        let Some(cosigned_at) = cosigned_at else {
            return Err(NoteError::AlreadyCosigned);
        };
        let header = Header {
            updated_at: cosigned_at,
            ..self.header
        };
        audit_note(tx, "note.cosign", &header).await?;
        emit(tx, "note.cosigned", &header).await?;
        Ok(Note {
            header,
            content: self.content,
            state: Signed {
                cosignature: Some(Cosignature {
                    by: supervisor_id,
                    at: cosigned_at,
                }),
                ..self.state
            },
        })
    }

    /// Starts an amendment: a draft of the same template for the same patient, with
    /// a reason, pointing at the original note (an amendment of an amendment points
    /// at the same original, so the chain stays one list). Records `note.amend`.
    pub async fn amend(
        &self,
        tx: &mut TenantTx,
        keyring: &Keyring,
        author_id: UserId,
        content: Content,
    ) -> Result<Note<Draft>, NoteError> {
        if content.reason().is_none() {
            return Err(ContentError::Reason.into());
        }
        content.check_draft(self.header.template)?;
        let original = match self.header.kind {
            Kind::Original => self.header.id,
            Kind::Amendment { amends } => amends,
        };
        let now: OffsetDateTime = sqlx::query_scalar("SELECT now()")
            .fetch_one(&mut **tx)
            .await?;
        let header = Header {
            id: NoteId::generate(),
            patient_id: self.header.patient_id,
            author_id,
            encounter_id: self.header.encounter_id,
            appointment_id: self.header.appointment_id,
            template: self.header.template,
            kind: Kind::Amendment { amends: original },
            version: 1,
            service_at: now,
            created_at: now,
            updated_at: now,
        };
        insert(tx, keyring, &header, &content).await?;
        audit_note(tx, "note.amend", &header).await?;
        emit(tx, "note.amended", &header).await?;
        Ok(Note {
            header,
            content,
            state: Draft,
        })
    }
}
