//! HL7 v2 ingestion over MLLP: the first slice.
//!
//! - [`listener`] accepts MLLP connections, parses each message with the `hl7` crate
//!   and answers it with an ACK, which is written to the socket only after the
//!   message is committed (invariant I4).
//! - [`store`] commits messages from every connection in groups: one transaction per
//!   tenant per group, several groups committing at once, so a burst of messages costs
//!   a few commits, not one each, and a lone message is written at once.
//!   A duplicate (same MSH-3, MSH-4 and MSH-10) is stored once and answered with the
//!   first message's ACK code (invariant I6), found in `ingest.message_keys`.
//! - [`partitions`] keeps `ingest.messages` in daily partitions: made ahead, and
//!   dropped whole once older than the retention (no row-by-row deletes).
//! - [`admin`] is what operators see (`tenet ingest list|show`); reading a raw
//!   message is audited (invariant I3).
//! - [`tls`] sets up a listener's TLS (rustls), with optional client certificates.
//! - [`metrics`] holds each listener's counters (messages by ACK code, ACK latency,
//!   connections, refused frames) for the `api` crate to render.
//!
//! - [`process`] turns accepted ADT (A01, A04, A08, A03, A40) and ORU^R01 messages
//!   into patients, encounters and observations, by a durable job per message, in
//!   order per patient; [`reply`] sends enhanced mode's application ACKs afterwards.
//!
//! Messages that cannot be parsed, and messages of other types, are kept, as
//! `rejected`, with the reason (field positions and rule names, never content) and
//! answered `AR` (`CR` in enhanced mode).
//!
//! This crate holds PHI only in `ingest.messages.raw_sealed`, encrypted. It must never
//! log, or put into an error, anything read from a message but its routing fields'
//! positions, its size and ids, and never decrypt one without an audit event.

pub mod admin;
pub mod health;
pub mod listener;
pub mod metrics;
pub mod partitions;
pub mod process;
pub mod reply;
pub mod store;
pub mod tls;

use db::Migration;

/// The ingest context's migrations.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 2026112501,
        context: "ingest",
        name: "ingest",
        up: include_str!("../migrations/2026112501_ingest.up.sql"),
        down: include_str!("../migrations/2026112501_ingest.down.sql"),
    },
    Migration {
        version: 2026112502,
        context: "ingest",
        name: "message_partitions",
        up: include_str!("../migrations/2026112502_message_partitions.up.sql"),
        down: include_str!("../migrations/2026112502_message_partitions.down.sql"),
    },
    Migration {
        version: 2026112504,
        context: "ingest",
        name: "processing",
        up: include_str!("../migrations/2026112504_processing.up.sql"),
        down: include_str!("../migrations/2026112504_processing.down.sql"),
    },
    Migration {
        version: 2026112606,
        context: "ingest",
        name: "raw_inline",
        up: include_str!("../migrations/2026112606_raw_inline.up.sql"),
        down: include_str!("../migrations/2026112606_raw_inline.down.sql"),
    },
];
