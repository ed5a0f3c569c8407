//! The shared kernel: the vocabulary every Tenet context speaks.
//!
//! Typed ids, roles, the acting principal and the PHI wrapper live here. This crate
//! must never depend on a database, on HTTP or on any context crate: it is the
//! bottom of the dependency graph.

pub mod actor;
pub mod id;
pub mod phi;
pub mod role;

pub use actor::{Actor, ActorKind};
pub use id::{
    ApiKeyId, AuditEventId, JobId, PatientId, PersonId, RequestId, SagaId, ScheduleId, TenantId,
    UserId,
};
pub use phi::Phi;
pub use role::Role;
