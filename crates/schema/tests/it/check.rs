//! `tenet check` on the migrated schema, and on schemas broken one rule at a time.
//!
//! Each breaking test alters its own database as the cluster superuser (what a careless
//! migration or operator could do) and asserts that exactly the broken rule fires, for
//! exactly the broken object.

use db::testing::TestDb;
use schema::check::{self, CheckConfig, Rule, Violation};
use sqlx::PgPool;

/// A migrated database of its own, altered by `sql` run as the superuser.
async fn broken(sql: &str) -> TestDb {
    let db = TestDb::migrated(&schema::migrator()).await;
    sqlx::raw_sql(sql)
        .execute(&db.admin)
        .await
        .expect("breaking the schema");
    db
}

/// The check as an operator runs it: as the owner role.
async fn check_after(sql: &str) -> Vec<Violation> {
    let db = broken(sql).await;
    check::run(&db.owner).await.expect("running the check")
}

#[track_caller]
fn assert_only(violations: &[Violation], rule: Rule, object: &str) {
    assert!(
        !violations.is_empty()
            && violations
                .iter()
                .all(|violation| violation.rule == rule && violation.object == object),
        "expected only {rule} on {object}, got:\n{}",
        check::render_text(violations)
    );
}

/// A role of this test process, created for one test and dropped at its end. Roles of
/// test processes that died before dropping theirs are dropped first.
struct ThrowawayRole {
    name: String,
}

impl ThrowawayRole {
    const PREFIX: &str = "tenet_chk_";

    async fn create(admin: &PgPool, purpose: &str, attributes: &str) -> Self {
        let stale: Vec<String> =
            sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE starts_with(rolname, $1)")
                .bind(Self::PREFIX)
                .fetch_all(admin)
                .await
                .unwrap();
        for role in stale {
            let pid = role[Self::PREFIX.len()..]
                .split('_')
                .next()
                .unwrap_or_default();
            if !std::path::Path::new("/proc").join(pid).exists() {
                // Another process may be dropping it too; either way it goes.
                let _ = sqlx::raw_sql(&format!("DROP ROLE IF EXISTS {role}"))
                    .execute(admin)
                    .await;
            }
        }
        let name = format!("{}{}_{purpose}", Self::PREFIX, std::process::id());
        assert!(db::roles::is_identifier(&name), "BUG: role name {name}");
        sqlx::raw_sql(&format!(
            "DROP ROLE IF EXISTS {name}; CREATE ROLE {name} NOLOGIN {attributes}"
        ))
        .execute(admin)
        .await
        .expect("creating a throwaway role");
        Self { name }
    }

    async fn drop(self, admin: &PgPool) {
        sqlx::raw_sql(&format!("DROP ROLE {}", self.name))
            .execute(admin)
            .await
            .expect("dropping a throwaway role");
    }
}

#[tokio::test]
async fn a_freshly_migrated_schema_has_no_violations() {
    let db = TestDb::migrated(&schema::migrator()).await;

    let violations = check::run(&db.owner).await.unwrap();

    assert!(violations.is_empty(), "{}", check::render_text(&violations));
    assert_eq!(
        check::render_text(&violations),
        "tenet check: 0 violations\n"
    );
}

#[tokio::test]
async fn the_check_runs_as_the_service_role_too() {
    let db = TestDb::migrated(&schema::migrator()).await;

    let violations = check::run(&db.app).await.unwrap();

    assert!(violations.is_empty(), "{}", check::render_text(&violations));
}

#[tokio::test]
async fn a_check_naming_a_role_that_does_not_exist_fails_instead_of_passing() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let config = CheckConfig {
        app_role: "tenet_no_such_role",
        ..CheckConfig::TENET
    };

    let result = check::run_with(&db.owner, &config).await;

    assert!(result.is_err(), "{result:?}");
}

#[tokio::test]
async fn a_table_without_row_level_security_breaks_rls_not_enabled() {
    let violations = check_after("ALTER TABLE clinical.patients DISABLE ROW LEVEL SECURITY").await;

    assert_only(&violations, Rule::RlsNotEnabled, "clinical.patients");
}

#[tokio::test]
async fn a_table_whose_row_level_security_is_not_forced_breaks_rls_not_forced() {
    let violations = check_after("ALTER TABLE clinical.patients NO FORCE ROW LEVEL SECURITY").await;

    assert_only(&violations, Rule::RlsNotForced, "clinical.patients");
}

#[tokio::test]
async fn a_table_without_a_tenant_policy_breaks_policy_missing() {
    let violations =
        check_after("DROP POLICY tenant_isolation ON clinical.care_team_members").await;

    assert_only(
        &violations,
        Rule::PolicyMissing,
        "clinical.care_team_members",
    );
}

#[tokio::test]
async fn a_policy_using_true_for_the_service_role_breaks_policy_missing() {
    let violations =
        check_after("CREATE POLICY read_all ON clinical.patients FOR SELECT USING (true)").await;

    assert_only(&violations, Rule::PolicyMissing, "clinical.patients");
    assert!(violations[0].detail.contains("read_all"), "{violations:?}");
}

#[tokio::test]
async fn an_insert_policy_that_checks_no_tenant_breaks_policy_missing() {
    let violations = check_after(
        "CREATE POLICY insert_any ON clinical.patients FOR INSERT TO tenet_app WITH CHECK (true)",
    )
    .await;

    assert_only(&violations, Rule::PolicyMissing, "clinical.patients");
}

#[tokio::test]
async fn a_restrictive_policy_for_the_service_role_is_allowed() {
    // Restrictive policies are AND-ed with the tenant policy: they can only narrow.
    let violations = check_after(
        "CREATE POLICY active_only ON clinical.patients AS RESTRICTIVE FOR SELECT USING (status = 'active')",
    )
    .await;

    assert!(violations.is_empty(), "{}", check::render_text(&violations));
}

#[tokio::test]
async fn a_table_owned_by_the_service_role_breaks_table_owned_by_service_role() {
    let violations = check_after(
        "CREATE TABLE public.app_scratch (id integer);
         ALTER TABLE public.app_scratch OWNER TO tenet_app",
    )
    .await;

    assert_only(
        &violations,
        Rule::TableOwnedByServiceRole,
        "public.app_scratch",
    );
    assert_eq!(violations.len(), 1, "{violations:?}");
}

#[tokio::test]
async fn a_function_owned_by_the_service_role_breaks_table_owned_by_service_role() {
    let violations = check_after(
        "CREATE FUNCTION public.app_helper() RETURNS integer LANGUAGE sql AS 'SELECT 1';
         ALTER FUNCTION public.app_helper() OWNER TO tenet_app",
    )
    .await;

    assert_only(
        &violations,
        Rule::TableOwnedByServiceRole,
        "public.app_helper()",
    );
    assert_eq!(violations.len(), 1, "{violations:?}");
}

/// Runs the check with `configure` pointing it at throwaway roles, then drops them
/// whatever the outcome, so a failing check leaves no role behind.
async fn check_with_roles(
    db: &TestDb,
    roles: Vec<ThrowawayRole>,
    config: CheckConfig<'_>,
) -> Vec<Violation> {
    let violations = check::run_with(&db.owner, &config).await;
    for role in roles {
        role.drop(&db.admin).await;
    }
    violations.expect("running the check")
}

#[tokio::test]
async fn a_service_role_with_bypassrls_breaks_role_bypasses_rls() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let app = ThrowawayRole::create(&db.admin, "bypass", "NOINHERIT BYPASSRLS").await;
    let app_role = app.name.clone();
    let config = CheckConfig {
        app_role: &app_role,
        ..CheckConfig::TENET
    };

    let violations = check_with_roles(&db, vec![app], config).await;

    assert_only(&violations, Rule::RoleBypassesRls, &app_role);
    assert!(violations[0].detail.contains("BYPASSRLS"), "{violations:?}");
}

#[tokio::test]
async fn a_service_role_that_can_become_a_superuser_breaks_role_bypasses_rls() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let superuser = ThrowawayRole::create(&db.admin, "super", "SUPERUSER").await;
    let app = ThrowawayRole::create(&db.admin, "app", "NOINHERIT").await;
    sqlx::raw_sql(&format!("GRANT {} TO {}", superuser.name, app.name))
        .execute(&db.admin)
        .await
        .unwrap();
    let (app_role, superuser_role) = (app.name.clone(), superuser.name.clone());
    let config = CheckConfig {
        app_role: &app_role,
        ..CheckConfig::TENET
    };

    let violations = check_with_roles(&db, vec![app, superuser], config).await;

    assert_only(&violations, Rule::RoleBypassesRls, &app_role);
    assert!(
        violations[0]
            .detail
            .contains(&format!("SET ROLE {superuser_role}, which has SUPERUSER")),
        "{violations:?}"
    );
}

#[tokio::test]
async fn an_owner_role_with_bypassrls_breaks_role_bypasses_rls() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let owner = ThrowawayRole::create(&db.admin, "owner", "BYPASSRLS").await;
    let owner_role = owner.name.clone();
    let config = CheckConfig {
        owner_role: &owner_role,
        ..CheckConfig::TENET
    };

    let violations = check_with_roles(&db, vec![owner], config).await;

    assert_only(&violations, Rule::RoleBypassesRls, &owner_role);
}

#[tokio::test]
async fn a_service_role_that_can_become_the_owner_breaks_role_bypasses_rls() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let app = ThrowawayRole::create(&db.admin, "member", "NOINHERIT").await;
    sqlx::raw_sql(&format!("GRANT {} TO {}", db::roles::OWNER_ROLE, app.name))
        .execute(&db.admin)
        .await
        .unwrap();
    let app_role = app.name.clone();
    let config = CheckConfig {
        app_role: &app_role,
        ..CheckConfig::TENET
    };

    let violations = check_with_roles(&db, vec![app], config).await;

    let bypasses: Vec<&Violation> = violations
        .iter()
        .filter(|violation| violation.rule == Rule::RoleBypassesRls)
        .collect();
    assert_eq!(bypasses.len(), 1, "{}", check::render_text(&violations));
    assert_eq!(bypasses[0].object, app_role);
    assert!(
        bypasses[0].detail.contains(db::roles::OWNER_ROLE),
        "{bypasses:?}"
    );
    // Through the owner it could also rewrite the audit log: that is reported too, and
    // nothing else is.
    assert!(
        violations.iter().all(|violation| matches!(
            violation.rule,
            Rule::RoleBypassesRls | Rule::AuditTriggerMissing
        )),
        "{}",
        check::render_text(&violations)
    );
}

#[tokio::test]
async fn a_security_definer_function_the_service_role_can_execute_breaks_security_definer_reachable()
 {
    let violations = check_after(
        "CREATE FUNCTION clinical.count_patients() RETURNS bigint LANGUAGE sql SECURITY DEFINER
             AS 'SELECT count(*) FROM clinical.patients'",
    )
    .await;

    assert_only(
        &violations,
        Rule::SecurityDefinerReachable,
        "clinical.count_patients()",
    );
}

#[tokio::test]
async fn a_security_definer_function_the_service_role_cannot_execute_is_allowed() {
    let violations = check_after(
        "CREATE FUNCTION clinical.count_patients() RETURNS bigint LANGUAGE sql SECURITY DEFINER
             AS 'SELECT count(*) FROM clinical.patients';
         REVOKE ALL ON FUNCTION clinical.count_patients() FROM PUBLIC",
    )
    .await;

    assert!(violations.is_empty(), "{}", check::render_text(&violations));
}

#[tokio::test]
async fn a_readable_view_without_security_invoker_breaks_view_without_security_invoker() {
    let violations = check_after(
        "CREATE VIEW clinical.active_patients AS
             SELECT tenant_id, id FROM clinical.patients WHERE status = 'active';
         GRANT SELECT ON clinical.active_patients TO tenet_app",
    )
    .await;

    assert_only(
        &violations,
        Rule::ViewWithoutSecurityInvoker,
        "clinical.active_patients",
    );
}

#[tokio::test]
async fn a_readable_view_with_security_invoker_is_allowed() {
    let violations = check_after(
        "CREATE VIEW clinical.active_patients WITH (security_invoker = on) AS
             SELECT tenant_id, id FROM clinical.patients WHERE status = 'active';
         GRANT SELECT ON clinical.active_patients TO tenet_app",
    )
    .await;

    assert!(violations.is_empty(), "{}", check::render_text(&violations));
}

#[tokio::test]
async fn a_unique_index_without_tenant_id_breaks_unique_without_tenant() {
    let violations =
        check_after("CREATE UNIQUE INDEX patients_id_key ON clinical.patients (id)").await;

    assert_only(&violations, Rule::UniqueWithoutTenant, "clinical.patients");
    assert!(
        violations[0].detail.contains("patients_id_key"),
        "{violations:?}"
    );
}

#[tokio::test]
async fn a_foreign_key_that_does_not_carry_the_tenant_breaks_foreign_key_without_tenant() {
    // The referencing side names some other uuid where its tenant_id belongs.
    let violations = check_after(
        "ALTER TABLE clinical.care_team_members
             ADD COLUMN origin_tenant_id uuid,
             ADD CONSTRAINT care_team_members_origin_fkey FOREIGN KEY (origin_tenant_id, patient_id)
                 REFERENCES clinical.patients (tenant_id, id)",
    )
    .await;

    assert_only(
        &violations,
        Rule::ForeignKeyWithoutTenant,
        "clinical.care_team_members",
    );
}

#[tokio::test]
async fn a_foreign_key_pairing_tenant_id_with_another_column_breaks_foreign_key_without_tenant() {
    // Both sides include tenant_id, but not matched to each other.
    let violations = check_after(
        "ALTER TABLE clinical.care_team_members
             ADD CONSTRAINT care_team_members_swapped_fkey FOREIGN KEY (patient_id, tenant_id)
                 REFERENCES clinical.patients (tenant_id, id)",
    )
    .await;

    assert_only(
        &violations,
        Rule::ForeignKeyWithoutTenant,
        "clinical.care_team_members",
    );
}

#[tokio::test]
async fn a_foreign_key_into_another_context_breaks_foreign_key_across_schemas() {
    let violations = check_after(
        "ALTER TABLE clinical.care_team_members
             ADD CONSTRAINT care_team_members_user_fkey FOREIGN KEY (tenant_id, user_id)
                 REFERENCES identity.users (tenant_id, id)",
    )
    .await;

    assert_only(
        &violations,
        Rule::ForeignKeyAcrossSchemas,
        "clinical.care_team_members",
    );
}

/// A new table that keeps every rule except the one a test breaks.
const VISITS: &str = "
    CREATE TABLE clinical.visits (tenant_id uuid NOT NULL, id uuid NOT NULL, status text NOT NULL,
                                  PRIMARY KEY (tenant_id, id));
    ALTER TABLE clinical.visits ENABLE ROW LEVEL SECURITY;
    ALTER TABLE clinical.visits FORCE ROW LEVEL SECURITY;
    CREATE POLICY tenant_isolation ON clinical.visits
        USING (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid);
    GRANT SELECT, INSERT ON clinical.visits TO tenet_app;
";

#[tokio::test]
async fn a_status_column_of_text_breaks_status_not_enum() {
    let violations = check_after(VISITS).await;

    assert_only(&violations, Rule::StatusNotEnum, "clinical.visits.status");
}

#[tokio::test]
async fn a_column_ending_in_state_that_is_not_an_enum_breaks_status_not_enum() {
    let violations = check_after(
        "ALTER TABLE clinical.patients ADD COLUMN billing_state text NOT NULL DEFAULT 'open'",
    )
    .await;

    assert_only(
        &violations,
        Rule::StatusNotEnum,
        "clinical.patients.billing_state",
    );
}

#[tokio::test]
async fn a_timestamp_without_time_zone_breaks_timestamp_without_time_zone() {
    let violations =
        check_after("ALTER TABLE clinical.patients ADD COLUMN discharged_at timestamp").await;

    assert_only(
        &violations,
        Rule::TimestampWithoutTimeZone,
        "clinical.patients.discharged_at",
    );
}

#[tokio::test]
async fn a_phone_column_outside_the_vault_breaks_phi_column_outside_vault() {
    let violations =
        check_after("ALTER TABLE clinical.patients ADD COLUMN phone_number text").await;

    assert_only(
        &violations,
        Rule::PhiColumnOutsideVault,
        "clinical.patients.phone_number",
    );
}

#[tokio::test]
async fn a_column_that_only_contains_a_phi_word_inside_another_word_is_allowed() {
    let violations = check_after(
        "ALTER TABLE clinical.patients ADD COLUMN gzip_level integer, ADD COLUMN doberman boolean",
    )
    .await;

    assert!(violations.is_empty(), "{}", check::render_text(&violations));
}

#[tokio::test]
async fn a_context_without_its_outbox_breaks_missing_outbox() {
    let violations = check_after("DROP TABLE clinical.outbox").await;

    assert_only(&violations, Rule::MissingOutbox, "clinical");
}

#[tokio::test]
async fn a_disabled_audit_trigger_breaks_audit_trigger_missing() {
    let violations =
        check_after("ALTER TABLE audit.events DISABLE TRIGGER events_append_only").await;

    assert_only(&violations, Rule::AuditTriggerMissing, "audit.events");
    assert_eq!(violations.len(), 2, "UPDATE and DELETE: {violations:?}");
}

#[tokio::test]
async fn a_truncate_trigger_that_fires_only_on_replicas_breaks_audit_trigger_missing() {
    let violations =
        check_after("ALTER TABLE audit.events ENABLE REPLICA TRIGGER events_no_truncate").await;

    assert_only(&violations, Rule::AuditTriggerMissing, "audit.events");
    assert!(violations[0].detail.contains("TRUNCATE"), "{violations:?}");
}

#[tokio::test]
async fn a_delete_grant_on_the_audit_log_to_the_service_role_breaks_audit_trigger_missing() {
    let violations = check_after("GRANT DELETE ON audit.checkpoints TO tenet_app").await;

    assert_only(&violations, Rule::AuditTriggerMissing, "audit.checkpoints");
    assert!(violations[0].detail.contains("DELETE"), "{violations:?}");
}
