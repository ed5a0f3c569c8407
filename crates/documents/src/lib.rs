//! The documents context: files about a patient (forms, letters, results, rendered
//! notes) whose content is sealed before it leaves the process and kept in object
//! storage, with metadata, permission scopes, signed links, retention and legal holds
//! in the `documents` schema.
//!
//! - [`mod@category`]: ids, categories and permission levels.
//! - [`mod@sniff`]: the content-type allow list and magic-byte sniffing.
//! - [`mod@sealing`]: chunked AES-256-GCM with the tenant's data key, bound to tenant,
//!   document, chunk index and a last-chunk flag.
//! - [`mod@storage`]: the object store (local filesystem or S3) and the size limit.
//! - [`mod@document`]: upload ([`put`], [`put_bytes`]), [`open`], list, delete — and how
//!   an upload is kept consistent between the store and the database.
//! - [`mod@scope`]: role × category × care-team permissions, defaults and overrides.
//! - [`mod@link`]: short-lived signed download links.
//! - [`mod@retention`]: retention rules and legal holds.
//! - [`mod@lifecycle`]: the job that deletes what expired and removes orphans.
//!
//! Every read or write of content is audited in its transaction. This crate never
//! knows HTTP, never logs content or file names, and never puts either in an event,
//! an error, an object key or a job argument.

pub mod category;
pub mod document;
pub mod lifecycle;
pub mod link;
pub mod retention;
pub mod scope;
pub mod sealing;
pub mod sniff;
pub mod storage;

pub use category::{Category, DocumentId, Permission};
pub use document::{
    DeleteError, Document, NewDocument, OpenError, Opened, PutError, Staged, Status, discard,
    exists, open, put, put_bytes, record, stage,
};
pub use storage::Storage;

use db::Migration;

/// The documents context's migrations: schema `documents`.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 2026112815,
    context: "documents",
    name: "documents",
    up: include_str!("../migrations/2026112815_documents.up.sql"),
    down: include_str!("../migrations/2026112815_documents.down.sql"),
}];
