//! The notes context: progress notes written from versioned templates (SOAP, DAP,
//! BIRP, intake), sealed at rest, signed, co-signed and amended — and never changed
//! once signed (I7).
//!
//! - [`mod@template`]: the template catalogue, pure data.
//! - [`mod@content`]: a note's section texts (PHI), checked against its template,
//!   hashed for signing; `Debug` prints no text.
//! - [`mod@note`]: the typestate API — [`Note<Draft>`] has `edit` and `sign`,
//!   [`Note<Signed>`] only `cosign` and `amend` — over `notes.notes`, whose trigger
//!   refuses any change to a signed row whoever asks.
//! - [`mod@settings`]: the tenant's co-signature rule, late-signing deadline and
//!   supervisors.
//! - [`mod@listing`]: metadata lists, including the late-signing list.
//! - [`mod@pdf`]: a signed note rendered to a reproducible PDF, the renditions
//!   recorded, and the job `notes.render_pdf`.
//!
//! Bodies are sealed with the tenant's data key (AES-256-GCM, bound to tenant, note
//! and version) and every read or write of one is audited in its transaction. This
//! crate never knows HTTP, never logs content, and never puts content in an event,
//! an error or a job argument.

pub mod content;
pub mod listing;
pub mod note;
pub mod pdf;
pub mod settings;
pub mod template;

pub use content::{Content, ContentError};
pub use listing::{LateNote, Status, Summary};
pub use note::{
    AnyNote, Chain, Cosignature, Draft, Header, Kind, NewNote, Note, NoteError, NoteId, Signed,
};
pub use settings::Settings;
pub use template::{Section, Template};

use db::Migration;

/// The notes context's migrations: schema `notes`.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 2026112701,
        context: "notes",
        name: "notes",
        up: include_str!("../migrations/2026112701_notes.up.sql"),
        down: include_str!("../migrations/2026112701_notes.down.sql"),
    },
    Migration {
        version: 2026112705,
        context: "notes",
        name: "notes_operations",
        up: include_str!("../migrations/2026112705_notes_operations.up.sql"),
        down: include_str!("../migrations/2026112705_notes_operations.down.sql"),
    },
    Migration {
        version: 2026112841,
        context: "notes",
        name: "renditions",
        up: include_str!("../migrations/2026112841_renditions.up.sql"),
        down: include_str!("../migrations/2026112841_renditions.down.sql"),
    },
];
