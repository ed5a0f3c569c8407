//! Permission scopes: what a role may do with a category's documents, for the
//! patient's care team and for everyone else.
//!
//! [`default_permission`] is the product's rule; a tenant overrides single cells in
//! `documents.scope_rules`. Deciding care-team membership (and break-glass) is the
//! caller's part: this module only answers for a membership already decided. It never
//! grants more because a rule is missing: no rule means the default.

use db::TenantTx;
use kernel::Role;

use crate::category::{Category, Permission};

/// A role as the `documents.role` enum (the roles of identity, mirrored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "documents.role", rename_all = "snake_case")]
enum DbRole {
    Admin,
    Clinician,
    CareCoordinator,
    Auditor,
    Integration,
}

impl From<Role> for DbRole {
    fn from(role: Role) -> Self {
        match role {
            Role::Admin => DbRole::Admin,
            Role::Clinician => DbRole::Clinician,
            Role::CareCoordinator => DbRole::CareCoordinator,
            Role::Auditor => DbRole::Auditor,
            Role::Integration => DbRole::Integration,
        }
    }
}

impl From<DbRole> for Role {
    fn from(role: DbRole) -> Self {
        match role {
            DbRole::Admin => Role::Admin,
            DbRole::Clinician => Role::Clinician,
            DbRole::CareCoordinator => Role::CareCoordinator,
            DbRole::Auditor => Role::Auditor,
            DbRole::Integration => Role::Integration,
        }
    }
}

/// The product's default scope.
///
/// - Admins may do anything, including delete; integrations may read and upload
///   (lab systems, EHR interfaces) but not delete.
/// - Clinicians read and upload every category for patients on their care team.
/// - Care coordinators handle the administrative record of their care team's
///   patients (intake, consent, correspondence, identification, other) and see no
///   clinical content (notes, lab results, imaging).
/// - Auditors never see a document's content or metadata through this path.
/// - Off the care team, clinical roles get nothing.
pub const fn default_permission(role: Role, category: Category, on_care_team: bool) -> Permission {
    match role {
        Role::Admin => Permission::Delete,
        Role::Integration => Permission::Write,
        Role::Auditor => Permission::None,
        Role::Clinician if on_care_team => Permission::Write,
        Role::CareCoordinator if on_care_team => match category {
            Category::IntakeForm
            | Category::ConsentForm
            | Category::Correspondence
            | Category::Identification
            | Category::Other => Permission::Write,
            Category::ClinicalNote | Category::LabResult | Category::Imaging => Permission::None,
        },
        Role::Clinician | Role::CareCoordinator => Permission::None,
    }
}

/// One tenant override.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScopeRule {
    pub role: Role,
    pub category: Category,
    pub on_care_team: bool,
    pub permission: Permission,
}

/// What `role` may do with `category` in the transaction's tenant.
pub async fn permission(
    tx: &mut TenantTx,
    role: Role,
    category: Category,
    on_care_team: bool,
) -> Result<Permission, sqlx::Error> {
    let rule: Option<Permission> = sqlx::query_scalar(
        "SELECT permission FROM documents.scope_rules
         WHERE tenant_id = $1 AND role = $2 AND category = $3 AND on_care_team = $4",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(DbRole::from(role))
    .bind(category)
    .bind(on_care_team)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(rule.unwrap_or(default_permission(role, category, on_care_team)))
}

/// The categories `role` may at least read.
pub async fn readable(
    tx: &mut TenantTx,
    role: Role,
    on_care_team: bool,
) -> Result<Vec<Category>, sqlx::Error> {
    let mut categories = Vec::new();
    for category in Category::ALL {
        if permission(tx, role, category, on_care_team).await? >= Permission::Read {
            categories.push(category);
        }
    }
    Ok(categories)
}

/// Sets the tenant's rule for one cell (replacing any earlier one).
pub async fn set_rule(tx: &mut TenantTx, rule: ScopeRule) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO documents.scope_rules (tenant_id, role, category, on_care_team, permission)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (tenant_id, role, category, on_care_team)
         DO UPDATE SET permission = EXCLUDED.permission, updated_at = now()",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(DbRole::from(rule.role))
    .bind(rule.category)
    .bind(rule.on_care_team)
    .bind(rule.permission)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Removes the tenant's rule for one cell, back to the default; whether there was one.
pub async fn clear_rule(
    tx: &mut TenantTx,
    role: Role,
    category: Category,
    on_care_team: bool,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM documents.scope_rules WHERE tenant_id = $1 AND role = $2 AND category = $3 AND on_care_team = $4",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(DbRole::from(role))
    .bind(category)
    .bind(on_care_team)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// The tenant's effective scope: every cell, with its override where there is one.
pub async fn effective(tx: &mut TenantTx) -> Result<Vec<ScopeRule>, sqlx::Error> {
    let mut rules = Vec::new();
    for role in Role::ALL {
        for category in Category::ALL {
            for on_care_team in [true, false] {
                rules.push(ScopeRule {
                    role,
                    category,
                    on_care_team,
                    permission: default_permission(role, category, on_care_team),
                });
            }
        }
    }
    let overrides: Vec<(DbRole, Category, bool, Permission)> = sqlx::query_as(
        "SELECT role, category, on_care_team, permission FROM documents.scope_rules WHERE tenant_id = $1",
    )
    .bind(tx.tenant_id().as_uuid())
    .fetch_all(&mut **tx)
    .await?;
    for (role, category, on_care_team, permission) in overrides {
        let role = Role::from(role);
        if let Some(rule) = rules.iter_mut().find(|rule| {
            rule.role == role && rule.category == category && rule.on_care_team == on_care_team
        }) {
            rule.permission = permission;
        }
    }
    Ok(rules)
}
