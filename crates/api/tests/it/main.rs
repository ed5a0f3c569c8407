//! End-to-end tests of the HTTP API: the router driven without a socket, against a
//! real PostgreSQL database of its own per test.
//!
//! - [`assessments`]: plans, enrolments (one and batch), stop, guardians and the due list, per tenant.
//! - [`cross_tenant`]: tenant B's credentials never reach tenant A's rows (I1).
//! - [`audit_trail`]: every PHI read or write leaves exactly one audit event per
//!   patient touched, and a failed request leaves none (I3).
//! - [`idempotency`]: a repeated write is harmless, even when the copies race (I6).
//! - [`authentication`]: every bad credential is the same 401; good ones work.
//! - [`permissions`]: roles, care teams and break-glass decide who reads a patient.
//! - [`bad_input`]: every malformed request is a clear problem and writes nothing.
//! - [`phi_canary`]: PHI never reaches logs, headers, error bodies, metrics, URLs or
//!   the disk in plaintext (I2).
//! - [`wire_format`]: snapshots of the problem JSON and patient representations.
//! - [`jobs`]: a tenant's admins see and handle its own jobs and dead letters only.
//! - [`automation`]: a tenant's admins manage its own webhook subscriptions (whose URLs
//!   may not reach private hosts), schedules and sagas only.
//! - [`assessment_responses`]: responses, score history, one-time links and safety events:
//!   care-team scoping, tenants apart, links once, no answers or tokens in logs.
//! - [`notes`]: progress notes in v1 and v2, signing, amendments, co-signing.
//! - [`consents`]: consents, the consent gate on releases, the disclosure reports.
//! - [`operations`]: health, readiness, metrics and the OpenAPI document.
//!
//! Shared fixtures live in [`support`]: two tenants with a principal per role.

mod assessment_responses;
mod assessments;
mod audit_trail;
mod authentication;
mod automation;
mod bad_input;
mod consents;
mod cross_tenant;
mod documents;
mod idempotency;
mod jobs;
mod notes;
mod operations;
mod permissions;
mod phi_canary;
mod support;
mod wire_format;
