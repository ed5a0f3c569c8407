//! The tenant's transaction: the only way a context reads or writes tenant rows.
//!
//! [`TenantTx::begin`] opens a transaction and, in the same round trip, sets
//! `tenet.tenant_id`, `tenet.actor` and `tenet.request_id` with
//! `set_config(..., true)`: transaction-local, so the settings end with the
//! transaction and a pooled connection carries nothing into the next one. Row-level
//! security policies read `tenet.tenant_id`; with it unset they match no row.
//!
//! Architecture invariant: no query on a tenant table runs outside a `TenantTx`.

use std::ops::{Deref, DerefMut};

use kernel::{Actor, RequestId, TenantId};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

/// An open transaction bound to one tenant and one actor.
pub struct TenantTx {
    tx: Transaction<'static, Postgres>,
    tenant_id: TenantId,
    actor: String,
    request_id: Option<RequestId>,
    purpose_of_use: PurposeOfUse,
}

/// Why the actor is touching patient data in this transaction, once the edge has
/// decided it (a care-team member's routine purpose, or a break-glass grant's reason):
/// contexts whose operations do not take an access argument audit with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurposeOfUse {
    /// E.g. `treatment`; `None`: not decided, the context's own default applies.
    pub purpose: Option<String>,
    /// The access rests on a break-glass grant.
    pub break_glass: bool,
}

impl TenantTx {
    /// Begins a transaction for `actor`'s tenant.
    pub async fn begin(
        pool: &PgPool,
        actor: &Actor,
        request_id: Option<RequestId>,
    ) -> Result<Self, sqlx::Error> {
        Self::begin_as(pool, actor.tenant_id, &actor.audit_name(), request_id).await
    }

    /// Begins a transaction for `tenant_id` acting as `actor_name` (the audit name of
    /// the principal: `user:…`, `api_key:…`, `system`).
    pub async fn begin_as(
        pool: &PgPool,
        tenant_id: TenantId,
        actor_name: &str,
        request_id: Option<RequestId>,
    ) -> Result<Self, sqlx::Error> {
        Self::begin_inner(pool, tenant_id, actor_name, request_id, None, false).await
    }

    /// A read-only transaction that sees one snapshot throughout (`REPEATABLE READ`),
    /// for reads that must agree with each other while others write (a verifier's
    /// rows and the heads it compares them with). With `snapshot`, an id from
    /// [`TenantTx::export_snapshot`], it sees exactly that transaction's snapshot, so
    /// several connections can read disjoint parts of one consistent state at once.
    pub async fn begin_as_snapshot(
        pool: &PgPool,
        tenant_id: TenantId,
        actor_name: &str,
        snapshot: Option<&str>,
    ) -> Result<Self, sqlx::Error> {
        let import = match snapshot {
            None => String::new(),
            // Spliced, so checked: PostgreSQL's snapshot ids are hex digits and dashes.
            Some(id)
                if !id.is_empty()
                    && id
                        .bytes()
                        .all(|byte| byte.is_ascii_hexdigit() || byte == b'-') =>
            {
                format!(" SET TRANSACTION SNAPSHOT '{id}';")
            }
            Some(_) => {
                return Err(sqlx::Error::Protocol(
                    "not a PostgreSQL snapshot id".to_owned(),
                ));
            }
        };
        let begin = format!("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;{import}");
        Self::begin_with(pool, &begin, tenant_id, actor_name, None, None, false).await
    }

    /// Exports this transaction's snapshot for [`TenantTx::begin_as_snapshot`]; valid
    /// while this transaction is open.
    pub async fn export_snapshot(&mut self) -> Result<String, sqlx::Error> {
        sqlx::query_scalar("SELECT pg_export_snapshot()")
            .fetch_one(&mut *self.tx)
            .await
    }

    /// Like [`TenantTx::begin_as`], with `synchronous_commit` on for this transaction
    /// whatever the server's default, set in the same round trip: for a commit that is
    /// promised to someone outside as soon as it returns (an HL7 ACK, invariant I4).
    pub async fn begin_as_durable(
        pool: &PgPool,
        tenant_id: TenantId,
        actor_name: &str,
    ) -> Result<Self, sqlx::Error> {
        Self::begin_inner(pool, tenant_id, actor_name, None, None, true).await
    }

    /// Like [`TenantTx::begin_as`], with every statement and every lock wait of the
    /// transaction bounded by `timeout` (`statement_timeout` and `lock_timeout`,
    /// transaction-local): for background work, whose hung query must be cancelled
    /// by the server, not merely abandoned by the client (the rollback would wait
    /// for it).
    pub async fn begin_as_bounded(
        pool: &PgPool,
        tenant_id: TenantId,
        actor_name: &str,
        timeout: std::time::Duration,
    ) -> Result<Self, sqlx::Error> {
        Self::begin_inner(pool, tenant_id, actor_name, None, Some(timeout), false).await
    }

    async fn begin_inner(
        pool: &PgPool,
        tenant_id: TenantId,
        actor_name: &str,
        request_id: Option<RequestId>,
        timeout: Option<std::time::Duration>,
        durable: bool,
    ) -> Result<Self, sqlx::Error> {
        Self::begin_with(
            pool, "BEGIN;", tenant_id, actor_name, request_id, timeout, durable,
        )
        .await
    }

    async fn begin_with(
        pool: &PgPool,
        begin: &str,
        tenant_id: TenantId,
        actor_name: &str,
        request_id: Option<RequestId>,
        timeout: Option<std::time::Duration>,
        durable: bool,
    ) -> Result<Self, sqlx::Error> {
        // BEGIN and the settings travel in one round trip (a simple-protocol batch).
        // The values are spliced, not bound: ids are UUIDs we format, the timeout a
        // number, and the actor name is quoted below; set_config(..., true) keeps them
        // transaction-local.
        let bounds = timeout.map_or_else(String::new, |timeout| {
            let ms = timeout.as_millis().clamp(1, i32::MAX as u128);
            format!(
                ", set_config('statement_timeout', '{ms}', true), set_config('lock_timeout', '{ms}', true)"
            )
        });
        let durable = if durable {
            ", set_config('synchronous_commit', 'on', true)"
        } else {
            ""
        };
        let statement = format!(
            "{begin} SELECT set_config('tenet.tenant_id', '{tenant_id}', true), \
             set_config('tenet.actor', {}, true), set_config('tenet.request_id', '{}', true){bounds}{durable}",
            quote_literal(actor_name),
            request_id.map(|id| id.to_string()).unwrap_or_default(),
        );
        let tx = pool.begin_with(statement).await?;
        Ok(Self {
            tx,
            tenant_id,
            actor: actor_name.to_owned(),
            request_id,
            purpose_of_use: PurposeOfUse::default(),
        })
    }

    /// Names the acting principal once it is known (e.g. after a token's subject was
    /// looked up in this transaction).
    pub async fn set_actor(&mut self, actor_name: &str) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT set_config('tenet.actor', $1, true)")
            .bind(actor_name)
            .execute(&mut *self.tx)
            .await?;
        actor_name.clone_into(&mut self.actor);
        Ok(())
    }

    pub fn tenant_id(&self) -> TenantId {
        self.tenant_id
    }

    /// The audit name of the acting principal.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    pub fn request_id(&self) -> Option<RequestId> {
        self.request_id
    }

    /// Records why patient data is touched in this transaction (see [`PurposeOfUse`]).
    pub fn set_purpose_of_use(&mut self, purpose_of_use: PurposeOfUse) {
        self.purpose_of_use = purpose_of_use;
    }

    pub fn purpose_of_use(&self) -> &PurposeOfUse {
        &self.purpose_of_use
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

/// A SQL string literal: quotes doubled (`standard_conforming_strings` is on in every
/// supported PostgreSQL), NUL refused by construction of the callers' names.
fn quote_literal(text: &str) -> String {
    assert!(!text.contains('\0'), "BUG: an actor name contains NUL");
    format!("'{}'", text.replace('\'', "''"))
}

impl Deref for TenantTx {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl DerefMut for TenantTx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}
