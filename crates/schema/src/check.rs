//! `tenet check`: proves, on a live database, that the schema keeps Tenet's rules.
//!
//! Each [`Rule`] is one catalog query (in [`rules`]) that returns the objects breaking
//! it. The queries read `pg_catalog` only, so they see what is really installed — a
//! hand-made table, a dropped policy, a role altered by an operator — not what the
//! migrations meant to install. CI runs the check on a freshly migrated database and
//! fails on any violation; operators run it on production.
//!
//! This module must never change the database: every query runs in one `READ ONLY`
//! transaction (which also gives all rules one consistent snapshot), and the
//! transaction is rolled back.

mod rules;

use std::fmt;

use serde::Serialize;
use sqlx::PgPool;

/// The schemas owned by Tenet's bounded contexts. A new context adds its schema
/// here and nowhere else; every rule scoped to "a context schema" reads this list.
pub const CONTEXT_SCHEMAS: &[&str] = &[
    "identity",
    "clinical",
    "audit",
    "platform",
    "ingest",
    "assessments",
    "notes",
    "compliance",
    "documents",
];

/// The PHI vault: the only tables whose columns may be named like PHI (their values
/// are ciphertext and keyed hashes). Written `schema.table`.
pub const VAULT_TABLES: &[&str] = &[
    "identity.patient_phi",
    "identity.patient_identifier_index",
    "identity.related_person_phi",
];

/// The append-only, hash-chained audit tables. Written `schema.table`.
pub const APPEND_ONLY_TABLES: &[&str] = &["audit.events", "audit.checkpoints"];

/// Column-name words that mean PHI. A column matches when one of them is a whole
/// `_`-separated part of its name, optionally plural (`phone_number`, `given_names`,
/// `home_address` match; `gzip_level` does not).
pub const PHI_COLUMN_WORDS: &[&str] = &[
    "family_name",
    "given_name",
    "first_name",
    "last_name",
    "full_name",
    "birth_date",
    "date_of_birth",
    "dob",
    "ssn",
    "social_security",
    "mrn",
    "medical_record",
    "phone",
    "email",
    "address",
    "street",
    "postal_code",
    "zip",
];

/// What the check looks at. [`CheckConfig::TENET`] is the installed product; tests
/// point the role rules at throwaway roles because roles are cluster-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckConfig<'a> {
    /// The role requests run as.
    pub app_role: &'a str,
    /// The role that owns the schema and runs migrations.
    pub owner_role: &'a str,
    /// The context schemas; see [`CONTEXT_SCHEMAS`].
    pub schemas: &'a [&'a str],
    /// See [`VAULT_TABLES`].
    pub vault_tables: &'a [&'a str],
    /// See [`APPEND_ONLY_TABLES`].
    pub append_only_tables: &'a [&'a str],
}

impl CheckConfig<'static> {
    /// The roles, schemas and tables of an installed Tenet.
    pub const TENET: Self = Self {
        app_role: db::roles::APP_ROLE,
        owner_role: db::roles::OWNER_ROLE,
        schemas: CONTEXT_SCHEMAS,
        vault_tables: VAULT_TABLES,
        append_only_tables: APPEND_ONLY_TABLES,
    };
}

impl Default for CheckConfig<'static> {
    fn default() -> Self {
        Self::TENET
    }
}

/// One rule of invariants I1 and I8. The kebab-case [`Rule::name`] is stable: CI
/// output, JSON and operators' scripts refer to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    RlsNotEnabled,
    RlsNotForced,
    PolicyMissing,
    TableOwnedByServiceRole,
    RoleBypassesRls,
    SecurityDefinerReachable,
    ViewWithoutSecurityInvoker,
    UniqueWithoutTenant,
    ForeignKeyWithoutTenant,
    ForeignKeyAcrossSchemas,
    StatusNotEnum,
    TimestampWithoutTimeZone,
    PhiColumnOutsideVault,
    MissingOutbox,
    AuditTriggerMissing,
}

impl Rule {
    /// Every rule, in the order the check runs and reports them.
    pub const ALL: [Rule; 15] = [
        Rule::RlsNotEnabled,
        Rule::RlsNotForced,
        Rule::PolicyMissing,
        Rule::TableOwnedByServiceRole,
        Rule::RoleBypassesRls,
        Rule::SecurityDefinerReachable,
        Rule::ViewWithoutSecurityInvoker,
        Rule::UniqueWithoutTenant,
        Rule::ForeignKeyWithoutTenant,
        Rule::ForeignKeyAcrossSchemas,
        Rule::StatusNotEnum,
        Rule::TimestampWithoutTimeZone,
        Rule::PhiColumnOutsideVault,
        Rule::MissingOutbox,
        Rule::AuditTriggerMissing,
    ];

    /// The stable kebab-case name.
    pub fn name(self) -> &'static str {
        match self {
            Rule::RlsNotEnabled => "rls-not-enabled",
            Rule::RlsNotForced => "rls-not-forced",
            Rule::PolicyMissing => "policy-missing",
            Rule::TableOwnedByServiceRole => "table-owned-by-service-role",
            Rule::RoleBypassesRls => "role-bypasses-rls",
            Rule::SecurityDefinerReachable => "security-definer-reachable",
            Rule::ViewWithoutSecurityInvoker => "view-without-security-invoker",
            Rule::UniqueWithoutTenant => "unique-without-tenant",
            Rule::ForeignKeyWithoutTenant => "foreign-key-without-tenant",
            Rule::ForeignKeyAcrossSchemas => "foreign-key-across-schemas",
            Rule::StatusNotEnum => "status-not-enum",
            Rule::TimestampWithoutTimeZone => "timestamp-without-time-zone",
            Rule::PhiColumnOutsideVault => "phi-column-outside-vault",
            Rule::MissingOutbox => "missing-outbox",
            Rule::AuditTriggerMissing => "audit-trigger-missing",
        }
    }

    /// What the rule requires, in one line.
    pub fn description(self) -> &'static str {
        match self {
            Rule::RlsNotEnabled => "every table in a context schema has row-level security enabled",
            Rule::RlsNotForced => {
                "every table in a context schema forces row-level security, so its owner is filtered too"
            }
            Rule::PolicyMissing => {
                "every table in a context schema has a policy restricting the service role to the transaction's tenant, and none that opens it wider"
            }
            Rule::TableOwnedByServiceRole => {
                "the service role owns nothing: an owner can alter, disable or bypass row-level security"
            }
            Rule::RoleBypassesRls => {
                "neither the service role nor the owner role, nor any role they can become, is a superuser, has BYPASSRLS or (for the service role) owns objects"
            }
            Rule::SecurityDefinerReachable => {
                "the service role can execute no SECURITY DEFINER function in a context schema or public"
            }
            Rule::ViewWithoutSecurityInvoker => {
                "every view the service role can read has security_invoker, so row-level security filters for the reader"
            }
            Rule::UniqueWithoutTenant => {
                "every primary key, unique constraint and unique index on a tenant table includes tenant_id"
            }
            Rule::ForeignKeyWithoutTenant => {
                "every foreign key on a tenant table pairs its tenant_id with the referenced table's tenant_id"
            }
            Rule::ForeignKeyAcrossSchemas => {
                "no foreign key crosses schemas: contexts never reference each other's tables"
            }
            Rule::StatusNotEnum => {
                "every status or state column in a context schema is an enum type"
            }
            Rule::TimestampWithoutTimeZone => {
                "no column in a context schema is a timestamp without time zone"
            }
            Rule::PhiColumnOutsideVault => {
                "no column named like PHI exists in a context schema outside the identity vault"
            }
            Rule::MissingOutbox => "each context schema has its own outbox table",
            Rule::AuditTriggerMissing => {
                "the audit tables have enabled triggers refusing UPDATE, DELETE and TRUNCATE, and the service role holds none of those privileges"
            }
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One object breaking one rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Violation {
    pub rule: Rule,
    /// What breaks it: a schema (`clinical`), a relation (`clinical.patients`), a
    /// column (`clinical.patients.status`), a function (`clinical.f(uuid)`) or a role.
    pub object: String,
    /// Why, in words an operator can act on.
    pub detail: String,
}

/// Checks the database `pool` is connected to against the installed product's
/// configuration ([`CheckConfig::TENET`]).
pub async fn run(pool: &PgPool) -> Result<Vec<Violation>, sqlx::Error> {
    run_with(pool, &CheckConfig::TENET).await
}

/// Checks the database `pool` is connected to. Any role may run it (the catalog is
/// readable by all); a role named in `config` that does not exist is an error, never a
/// silent pass. Violations come back sorted by rule, then object.
pub async fn run_with(
    pool: &PgPool,
    config: &CheckConfig<'_>,
) -> Result<Vec<Violation>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let mut violations = Vec::new();
    for rule in Rule::ALL {
        // Every query takes the same parameters, so adding a rule is adding a query.
        let rows: Vec<(String, String)> = sqlx::query_as(rules::query(rule))
            .bind(config.schemas)
            .bind(config.app_role)
            .bind(config.owner_role)
            .bind(config.vault_tables)
            .bind(config.append_only_tables)
            .bind(PHI_COLUMN_WORDS)
            .fetch_all(&mut *tx)
            .await?;
        violations.extend(rows.into_iter().map(|(object, detail)| Violation {
            rule,
            object,
            detail,
        }));
    }
    tx.rollback().await?;
    violations.sort();
    violations.dedup();
    Ok(violations)
}

/// A report for people: a summary line, then the violations grouped by rule.
pub fn render_text(violations: &[Violation]) -> String {
    use std::fmt::Write as _;

    let n_violations = violations.len();
    let mut text = format!(
        "tenet check: {n_violations} violation{}\n",
        if n_violations == 1 { "" } else { "s" }
    );
    for rule in Rule::ALL {
        let of_rule: Vec<&Violation> = violations.iter().filter(|v| v.rule == rule).collect();
        if of_rule.is_empty() {
            continue;
        }
        // Writing to a String cannot fail.
        let _ = write!(
            text,
            "\n{} ({}): {}\n",
            rule.name(),
            of_rule.len(),
            rule.description()
        );
        for violation in of_rule {
            let _ = writeln!(text, "  {}: {}", violation.object, violation.detail);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_is_listed_once_with_a_distinct_kebab_case_name() {
        let mut names: Vec<&str> = Rule::ALL.iter().map(|rule| rule.name()).collect();
        for name in &names {
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{name} is not kebab-case"
            );
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Rule::ALL.len());
    }

    #[test]
    fn a_rule_serializes_as_its_name() {
        for rule in Rule::ALL {
            assert_eq!(
                serde_json::to_value(rule).unwrap(),
                serde_json::Value::String(rule.name().to_owned())
            );
        }
    }

    #[test]
    fn a_clean_report_says_zero_violations() {
        assert_eq!(render_text(&[]), "tenet check: 0 violations\n");
    }

    #[test]
    fn a_report_groups_violations_under_their_rule() {
        let violations = [
            Violation {
                rule: Rule::RlsNotForced,
                object: "clinical.patients".to_owned(),
                detail: "forced row-level security is off".to_owned(),
            },
            Violation {
                rule: Rule::MissingOutbox,
                object: "clinical".to_owned(),
                detail: "no outbox table".to_owned(),
            },
        ];
        let text = render_text(&violations);
        assert!(text.starts_with("tenet check: 2 violations\n"), "{text}");
        assert!(
            text.contains("\nrls-not-forced (1): ")
                && text.contains("  clinical.patients: forced row-level security is off\n"),
            "{text}"
        );
        assert!(
            text.find("rls-not-forced").unwrap() < text.find("missing-outbox").unwrap(),
            "{text}"
        );
    }
}
