//! The platform context: the machinery every other context uses to be safe under
//! retries and to tell the world what happened.
//!
//! - [`idempotency`]: API writes made with an `Idempotency-Key` happen once (I6).
//! - [`outbox`]: events written in the same transaction as the change they announce.
//! - [`dead_letters`]: failed jobs and deliveries, in one list for operators and admins.
//! - [`health`]: what `tenet check` reports about work in flight.
//! - [`jobs`]: durable background jobs, enqueued in the caller's transaction and marked
//!   done by the transaction that did their work (I4, I5).
//! - [`relay`]: delivers outbox events, in order per aggregate, to in-process handlers
//!   (idempotent by construction), signed webhooks and NATS JetStream; a delivery is
//!   marked delivered only after its sink confirmed (I4), ends `dead` past its attempts
//!   (I5), and a redelivery is harmless (I6).
//! - [`schedules`]: cron-like recurring jobs in a time zone, one run per slot however
//!   many schedulers run (I5, I6).
//! - [`sagas`]: workflows of steps with compensations, driven by jobs, that end
//!   `completed`, `compensated` or `failed` with the reason — never in between (I5).
//!
//! This crate must never store PHI: idempotency records keep a request hash and the
//! id of what was made, never a body; event payloads and job arguments carry ids only.

pub mod dead_letters;
pub mod health;
pub mod idempotency;
pub mod jobs;
pub mod outbox;
pub mod relay;
pub mod sagas;
pub mod schedules;

use db::Migration;

/// The platform context's migrations.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 2026112301,
        context: "platform",
        name: "platform",
        up: include_str!("../migrations/2026112301_platform.up.sql"),
        down: include_str!("../migrations/2026112301_platform.down.sql"),
    },
    Migration {
        version: 2026112401,
        context: "platform",
        name: "jobs",
        up: include_str!("../migrations/2026112401_jobs.up.sql"),
        down: include_str!("../migrations/2026112401_jobs.down.sql"),
    },
    Migration {
        version: 2026112402,
        context: "platform",
        name: "relay",
        up: include_str!("../migrations/2026112402_relay.up.sql"),
        down: include_str!("../migrations/2026112402_relay.down.sql"),
    },
    Migration {
        version: 2026112403,
        context: "platform",
        name: "schedules",
        up: include_str!("../migrations/2026112403_schedules.up.sql"),
        down: include_str!("../migrations/2026112403_schedules.down.sql"),
    },
    Migration {
        version: 2026112404,
        context: "platform",
        name: "sagas",
        up: include_str!("../migrations/2026112404_sagas.up.sql"),
        down: include_str!("../migrations/2026112404_sagas.down.sql"),
    },
    Migration {
        version: 2026112405,
        context: "platform",
        name: "job_operations",
        up: include_str!("../migrations/2026112405_job_operations.up.sql"),
        down: include_str!("../migrations/2026112405_job_operations.down.sql"),
    },
    Migration {
        version: 2026112406,
        context: "platform",
        name: "dead_letter_grants",
        up: include_str!("../migrations/2026112406_dead_letter_grants.up.sql"),
        down: include_str!("../migrations/2026112406_dead_letter_grants.down.sql"),
    },
    Migration {
        version: 2026113001,
        context: "platform",
        name: "jobs_hot",
        up: include_str!("../migrations/2026113001_jobs_hot.up.sql"),
        down: include_str!("../migrations/2026113001_jobs_hot.down.sql"),
    },
];
