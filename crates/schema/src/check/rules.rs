//! The catalog query behind each rule of `tenet check`.
//!
//! Every query returns `(object text, detail text)`, one row per violation, and takes
//! the same parameters:
//!
//! | param | type   | meaning                                              |
//! |-------|--------|------------------------------------------------------|
//! | `$1`  | text[] | the context schemas                                  |
//! | `$2`  | text   | the service role                                     |
//! | `$3`  | text   | the owner role                                       |
//! | `$4`  | text[] | the vault tables, `schema.table`                     |
//! | `$5`  | text[] | the append-only audit tables, `schema.table`         |
//! | `$6`  | text[] | the PHI column-name words                            |
//!
//! "What the service role can do" always includes every role it can `SET ROLE` to
//! (`pg_has_role(.., 'MEMBER')`): it is `NOINHERIT`, so `has_*_privilege` alone would
//! miss a privilege one `SET ROLE` away. Superusers are left out of those privilege
//! tests: a superuser may do anything, and `role-bypasses-rls` reports it once instead
//! of every rule reporting it once per object. Role names reach PostgreSQL functions as
//! `name` arguments, which fail loudly on a role that does not exist.
//!
//! These queries must never write, and must never depend on `search_path`: every
//! catalog object is named with its schema.

use super::Rule;

pub(super) fn query(rule: Rule) -> &'static str {
    match rule {
        Rule::RlsNotEnabled => RLS_NOT_ENABLED,
        Rule::RlsNotForced => RLS_NOT_FORCED,
        Rule::PolicyMissing => POLICY_MISSING,
        Rule::TableOwnedByServiceRole => TABLE_OWNED_BY_SERVICE_ROLE,
        Rule::RoleBypassesRls => ROLE_BYPASSES_RLS,
        Rule::SecurityDefinerReachable => SECURITY_DEFINER_REACHABLE,
        Rule::ViewWithoutSecurityInvoker => VIEW_WITHOUT_SECURITY_INVOKER,
        Rule::UniqueWithoutTenant => UNIQUE_WITHOUT_TENANT,
        Rule::ForeignKeyWithoutTenant => FOREIGN_KEY_WITHOUT_TENANT,
        Rule::ForeignKeyAcrossSchemas => FOREIGN_KEY_ACROSS_SCHEMAS,
        Rule::StatusNotEnum => STATUS_NOT_ENUM,
        Rule::TimestampWithoutTimeZone => TIMESTAMP_WITHOUT_TIME_ZONE,
        Rule::PhiColumnOutsideVault => PHI_COLUMN_OUTSIDE_VAULT,
        Rule::MissingOutbox => MISSING_OUTBOX,
        Rule::AuditTriggerMissing => AUDIT_TRIGGER_MISSING,
    }
}

/// Without row-level security a table answers every tenant's rows to any query: the
/// database, not the application, must keep tenants apart (I1). Partitions count too:
/// a partition queried directly applies its own policies, not its parent's.
const RLS_NOT_ENABLED: &str = r#"
SELECT n.nspname || '.' || c.relname,
       'row-level security is not enabled: every query sees every tenant''s rows'
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY ($1) AND c.relkind IN ('r', 'p') AND NOT c.relrowsecurity
"#;

/// A table's owner skips its policies unless they are forced; the owner runs
/// migrations and operator commands, which must see one tenant at a time too.
const RLS_NOT_FORCED: &str = r#"
SELECT n.nspname || '.' || c.relname,
       'row-level security is not forced: the table''s owner bypasses every policy'
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY ($1) AND c.relkind IN ('r', 'p') AND NOT c.relforcerowsecurity
"#;

/// Enabled row-level security with no policy hides every row; a policy that does not
/// compare `tenant_id` with the transaction's `tenet.tenant_id` lets tenants see each
/// other. Permissive policies are OR-ed, so one loose policy (`USING (true)`) for the
/// service role undoes every tight one; restrictive policies only narrow and are
/// harmless. A policy applies to the service role when it names PUBLIC or a role
/// whose privileges the service role has (PostgreSQL's own test).
const POLICY_MISSING: &str = r#"
WITH tables AS (
    SELECT c.oid, n.nspname || '.' || c.relname AS object
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = ANY ($1) AND c.relkind IN ('r', 'p')
),
policies AS (
    SELECT p.polrelid, p.polname, p.polpermissive,
           pg_catalog.pg_get_expr(p.polqual, p.polrelid) AS qual,
           pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) AS with_check
    FROM pg_catalog.pg_policy p
    WHERE p.polrelid IN (SELECT oid FROM tables)
      AND EXISTS (
          SELECT 1 FROM unnest(p.polroles) AS r(oid)
          WHERE r.oid = 0 OR pg_catalog.pg_has_role($2::name, r.oid, 'USAGE'))
),
judged AS (
    -- An expression binds the tenant when it reads the tenant setting and, outside
    -- string literals, names tenant_id.
    SELECT policies.*,
           (SELECT bool_and(e IS NULL OR (
                        e LIKE '%current\_setting(''tenet.tenant\_id''%'
                        AND regexp_replace(e, '''[^'']*''', '', 'g') ~ '\mtenant_id\M'))
            FROM unnest(ARRAY[qual, with_check]) AS e)
           AND (qual IS NOT NULL OR with_check IS NOT NULL) AS bound,
           qual IS NOT NULL
           AND qual LIKE '%current\_setting(''tenet.tenant\_id''%'
           AND regexp_replace(qual, '''[^'']*''', '', 'g') ~ '\mtenant_id\M' AS using_bound
    FROM policies
)
SELECT t.object,
       format('no policy for %s restricts rows to the transaction''s tenant (USING tenant_id = current_setting(''tenet.tenant_id''))', $2)
FROM tables t
WHERE NOT EXISTS (SELECT 1 FROM judged j WHERE j.polrelid = t.oid AND j.using_bound)
UNION ALL
SELECT t.object,
       format('permissive policy %s applies to %s but does not restrict rows to the transaction''s tenant (USING %s, WITH CHECK %s)',
              j.polname, $2, coalesce(j.qual, '-'), coalesce(j.with_check, '-'))
FROM tables t
JOIN judged j ON j.polrelid = t.oid
WHERE j.polpermissive AND NOT j.bound
"#;

/// An owner can drop policies, turn row-level security off, or grant itself anything:
/// the service role must own nothing at all. `pg_shdepend` records the owner of every
/// kind of object (tables, views, sequences, functions, types, schemas, ...) and of
/// this database itself, so no kind is forgotten.
const TABLE_OWNED_BY_SERVICE_ROLE: &str = r#"
WITH here AS (
    SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()
)
SELECT o.identity,
       format('%s %s is owned by %s', o.type, o.identity, $2)
FROM pg_catalog.pg_shdepend d
CROSS JOIN LATERAL pg_catalog.pg_identify_object(d.classid, d.objid, d.objsubid) AS o
WHERE d.refclassid = 'pg_catalog.pg_authid'::regclass
  AND d.refobjid = pg_catalog.quote_ident($2)::regrole
  AND d.deptype = 'o'
  AND (d.dbid = (SELECT oid FROM here)
       OR (d.classid = 'pg_catalog.pg_database'::regclass AND d.objid = (SELECT oid FROM here)))
"#;

/// Superusers and BYPASSRLS roles skip every policy, and so does any role the service
/// role can `SET ROLE` to. The service role must also not be able to become a role
/// that owns objects here: an owner can switch row-level security off. The owner role
/// is held to the same attributes, since its policies are forced for a reason.
const ROLE_BYPASSES_RLS: &str = r#"
WITH subjects(subject, is_app) AS (VALUES ($2::text, true), ($3::text, false)),
reachable AS (
    SELECT s.subject, s.is_app, r.oid, r.rolname::text AS rolname, r.rolsuper, r.rolbypassrls
    FROM subjects s
    JOIN pg_catalog.pg_roles r ON pg_catalog.pg_has_role(s.subject::name, r.oid, 'MEMBER')
)
SELECT subject,
       CASE WHEN rolname = subject THEN format('%s has %s', subject, attribute)
            ELSE format('%s can SET ROLE %s, which has %s', subject, rolname, attribute) END
FROM reachable
CROSS JOIN LATERAL (VALUES ('SUPERUSER', rolsuper), ('BYPASSRLS', rolbypassrls)) AS a(attribute, has)
WHERE a.has
UNION ALL
SELECT subject,
       format('%s can SET ROLE %s, which owns objects in this database and can turn row-level security off', subject, rolname)
FROM reachable
WHERE is_app AND rolname <> subject
  AND EXISTS (
      SELECT 1 FROM pg_catalog.pg_shdepend d
      WHERE d.refclassid = 'pg_catalog.pg_authid'::regclass AND d.refobjid = reachable.oid
        AND d.deptype = 'o'
        AND d.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()))
"#;

/// A SECURITY DEFINER function runs with its owner's rights — usually the table owner,
/// whose policies a careless body can step around — so the service role must not be
/// able to call one in a context schema or in `public` (where `search_path` finds it).
const SECURITY_DEFINER_REACHABLE: &str = r#"
SELECT n.nspname || '.' || p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')',
       format('SECURITY DEFINER function owned by %s can be executed by %s',
              pg_catalog.pg_get_userbyid(p.proowner), $2)
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE p.prosecdef
  AND (n.nspname = ANY ($1) OR n.nspname = 'public')
  AND EXISTS (
      SELECT 1 FROM pg_catalog.pg_roles r
      WHERE pg_catalog.pg_has_role($2::name, r.oid, 'MEMBER') AND NOT r.rolsuper
        AND pg_catalog.has_function_privilege(r.oid, p.oid, 'EXECUTE'))
"#;

/// A view reads its tables with its owner's rights unless it is `security_invoker`,
/// and the owner is not filtered by the reader's tenant; a materialized view holds a
/// copy of every tenant's rows with no row-level security at all.
const VIEW_WITHOUT_SECURITY_INVOKER: &str = r#"
SELECT n.nspname || '.' || c.relname,
       CASE c.relkind
           WHEN 'm' THEN format('materialized view readable by %s: it has no row-level security', $2)
           ELSE format('view readable by %s runs with its owner''s rights; create it WITH (security_invoker = true)', $2)
       END
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY ($1) AND c.relkind IN ('v', 'm')
  AND EXISTS (
      SELECT 1 FROM pg_catalog.pg_roles r
      WHERE pg_catalog.pg_has_role($2::name, r.oid, 'MEMBER') AND NOT r.rolsuper
        AND pg_catalog.has_any_column_privilege(r.oid, c.oid, 'SELECT'))
  AND (c.relkind = 'm' OR NOT EXISTS (
      SELECT 1 FROM pg_catalog.pg_options_to_table(c.reloptions) AS o
      WHERE o.option_name = 'security_invoker' AND o.option_value::boolean))
"#;

/// A uniqueness that ignores the tenant lets one tenant's row block another's (and
/// tells it, by the error, that the value exists elsewhere). Only key columns count:
/// INCLUDE columns take no part in uniqueness.
const UNIQUE_WITHOUT_TENANT: &str = r#"
SELECT n.nspname || '.' || c.relname,
       format('%s %s does not include tenant_id: %s',
              CASE WHEN i.indisprimary THEN 'primary key'
                   WHEN con.oid IS NOT NULL THEN 'unique constraint'
                   ELSE 'unique index' END,
              ic.relname, pg_catalog.pg_get_indexdef(i.indexrelid))
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_constraint con ON con.conindid = i.indexrelid AND con.contype IN ('p', 'u')
WHERE n.nspname = ANY ($1) AND c.relkind IN ('r', 'p') AND i.indisunique
  AND NOT EXISTS (
      SELECT 1 FROM pg_catalog.pg_attribute a
      WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
        AND a.attnum = ANY ((i.indkey::int2[])[0:i.indnkeyatts - 1]))
"#;

/// A foreign key that does not carry the tenant on both sides, column to column, can
/// point a row at another tenant's row. Clones of a partitioned table's key
/// (`conparentid <> 0`) are reported once, through their parent.
const FOREIGN_KEY_WITHOUT_TENANT: &str = r#"
SELECT n.nspname || '.' || c.relname,
       format('foreign key %s does not match tenant_id to the referenced tenant_id: %s',
              con.conname, pg_catalog.pg_get_constraintdef(con.oid))
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE con.contype = 'f' AND con.conparentid = 0 AND n.nspname = ANY ($1)
  AND NOT EXISTS (
      SELECT 1
      FROM unnest(con.conkey, con.confkey) AS k(local, remote)
      JOIN pg_catalog.pg_attribute la ON la.attrelid = con.conrelid AND la.attnum = k.local
      JOIN pg_catalog.pg_attribute ra ON ra.attrelid = con.confrelid AND ra.attnum = k.remote
      WHERE la.attname = 'tenant_id' AND ra.attname = 'tenant_id')
"#;

/// Contexts own their tables and talk through events: a foreign key into another
/// schema couples two contexts' migrations and lets one block the other's deletes.
const FOREIGN_KEY_ACROSS_SCHEMAS: &str = r#"
SELECT n.nspname || '.' || c.relname,
       format('foreign key %s references %s.%s in another schema',
              con.conname, fn.nspname, fc.relname)
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_class fc ON fc.oid = con.confrelid
JOIN pg_catalog.pg_namespace fn ON fn.oid = fc.relnamespace
WHERE con.contype = 'f' AND con.conparentid = 0 AND n.oid <> fn.oid
  AND (n.nspname = ANY ($1) OR fn.nspname = ANY ($1))
"#;

/// Every workflow ends in a known state (I5): an enum makes the database refuse a
/// state nobody wrote a transition for; free text would accept a typo.
const STATUS_NOT_ENUM: &str = r#"
SELECT n.nspname || '.' || c.relname || '.' || a.attname,
       format('column is %s, not an enum type', pg_catalog.format_type(a.atttypid, a.atttypmod))
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_catalog.pg_type base ON base.oid = t.typbasetype
WHERE n.nspname = ANY ($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND a.attnum > 0 AND NOT a.attisdropped
  AND a.attname ~ '^(status|state)$|_(status|state)$'
  AND NOT (t.typtype = 'e' OR (t.typtype = 'd' AND base.typtype = 'e'))
"#;

/// A timestamp without time zone means a different instant in every session time
/// zone; clinical times (doses, escalation deadlines) must mean one instant.
const TIMESTAMP_WITHOUT_TIME_ZONE: &str = r#"
SELECT n.nspname || '.' || c.relname || '.' || a.attname,
       format('column is %s; use timestamptz', pg_catalog.format_type(a.atttypid, a.atttypmod))
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
WHERE n.nspname = ANY ($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND a.attnum > 0 AND NOT a.attisdropped
  AND (t.oid IN ('pg_catalog.timestamp'::regtype, 'pg_catalog._timestamp'::regtype)
       OR (t.typtype = 'd' AND t.typbasetype IN ('pg_catalog.timestamp'::regtype, 'pg_catalog._timestamp'::regtype)))
"#;

/// Structured PHI lives only in the vault, encrypted, and is read only through
/// audited paths (I2); a column named like PHI anywhere else is plaintext PHI waiting
/// to happen. Views count: a view can expose vault columns under the same names.
const PHI_COLUMN_OUTSIDE_VAULT: &str = r#"
SELECT n.nspname || '.' || c.relname || '.' || a.attname,
       format('column is named like PHI (%s) outside the vault (%s)', w.word, array_to_string($4, ', '))
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL (
    SELECT min(u.word) AS word FROM unnest($6) AS u(word)
    WHERE a.attname ~ ('(^|_)' || u.word || 's?(_|$)')
) AS w
WHERE n.nspname = ANY ($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND a.attnum > 0 AND NOT a.attisdropped
  AND w.word IS NOT NULL
  AND NOT (n.nspname || '.' || c.relname = ANY ($4))
"#;

/// Each context publishes its events through its own transactional outbox, written in
/// the same transaction as the change (I4); without one, events are lost or invented.
const MISSING_OUTBOX: &str = r#"
SELECT s.nsp,
       CASE WHEN n.oid IS NULL THEN 'the context schema does not exist'
            ELSE format('the context has no %s.outbox table', s.nsp) END
FROM unnest($1) AS s(nsp)
LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = s.nsp
WHERE NOT EXISTS (
    SELECT 1 FROM pg_catalog.pg_class c
    WHERE c.relnamespace = n.oid AND c.relname = 'outbox' AND c.relkind IN ('r', 'p'))
"#;

/// The audit log is append-only (I3) twice over: the service role holds no UPDATE,
/// DELETE or TRUNCATE privilege, and BEFORE triggers refuse those for every role that
/// does (the owner). A trigger counts only if it fires in ordinary sessions
/// (`tgenabled` 'O' or 'A'; 'R' fires only in replica mode, 'D' never) and has no
/// WHEN condition that could let a change through.
const AUDIT_TRIGGER_MISSING: &str = r#"
WITH tables AS (
    SELECT t.name, pg_catalog.to_regclass(t.name) AS oid FROM unnest($5) AS t(name)
),
triggers AS (
    SELECT g.tgrelid, g.tgtype
    FROM pg_catalog.pg_trigger g
    WHERE g.tgenabled IN ('O', 'A') AND g.tgqual IS NULL AND NOT g.tgisinternal
      AND (g.tgtype & 2) <> 0  -- BEFORE
),
required(operation, row_level, bit) AS (
    VALUES ('UPDATE', true, 16), ('DELETE', true, 8), ('TRUNCATE', false, 32)
)
SELECT t.name, 'the append-only table does not exist'
FROM tables t WHERE t.oid IS NULL
UNION ALL
SELECT t.name, format('no enabled BEFORE %s%s trigger refuses %s', q.operation,
                      CASE WHEN q.row_level THEN ' row' ELSE '' END, q.operation)
FROM tables t CROSS JOIN required q
WHERE t.oid IS NOT NULL
  AND NOT EXISTS (
      SELECT 1 FROM triggers g
      WHERE g.tgrelid = t.oid AND (g.tgtype & q.bit) <> 0
        AND (NOT q.row_level OR (g.tgtype & 1) <> 0))
UNION ALL
SELECT t.name, CASE WHEN r.rolname = $2 THEN format('%s has %s privilege', $2, q.operation)
                    ELSE format('%s can SET ROLE %s, which has %s privilege', $2, r.rolname, q.operation) END
FROM tables t CROSS JOIN required q
JOIN pg_catalog.pg_roles r ON pg_catalog.pg_has_role($2::name, r.oid, 'MEMBER') AND NOT r.rolsuper
WHERE t.oid IS NOT NULL
  AND CASE q.operation
          WHEN 'UPDATE' THEN pg_catalog.has_any_column_privilege(r.oid, t.oid, 'UPDATE')
          ELSE pg_catalog.has_table_privilege(r.oid, t.oid, q.operation) END
"#;
