//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use std::sync::OnceLock;

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::routes::{
    admin, assessment_responses, assessments, audit_log, consents, documents, jobs, notes,
    patients, sagas, schedules, webhooks,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Tenet", description = "A clinical backend: tenants kept apart by the database, a PHI vault, a tamper-evident audit log."),
    paths(
        patients::create, patients::read, patients::update, patients::list, patients::search,
        patients::access_log, patients::break_glass, patients::add_care_team_member,
        admin::me, admin::create_user, admin::list_users, admin::create_api_key, admin::list_api_keys, admin::revoke_api_key,
        audit_log::checkpoint,
        jobs::list, jobs::read, jobs::retry, jobs::cancel, jobs::dead_letters, jobs::retry_dead_letter, jobs::discard,
        webhooks::create, webhooks::list, webhooks::read, webhooks::disable, webhooks::enable,
        schedules::create, schedules::list, schedules::read, schedules::update, schedules::enable, schedules::disable, schedules::remove,
        sagas::read,
        assessments::create_plan, assessments::list_plans, assessments::read_plan, assessments::update_plan, assessments::retire_plan,
        assessments::enroll, assessments::read_enrollment, assessments::stop_enrollment, assessments::enroll_batch,
        assessments::add_guardian, assessments::end_guardian, assessments::run_backfill, assessments::due_list,
        assessment_responses::submit, assessment_responses::read, assessment_responses::scores,
        assessment_responses::issue_link, assessment_responses::link_form, assessment_responses::link_submit,
        assessment_responses::safety_events, assessment_responses::acknowledge,
        notes::create_v2, notes::read_v2, notes::edit_v2, notes::sign_v2, notes::cosign_v2, notes::amend_v2, notes::list,
        notes::create_v1, notes::read_v1, notes::edit_v1, notes::sign_v1, notes::cosign_v1, notes::amend_v1,
        notes::late, notes::configure, notes::add_supervisor, notes::render_pdf, notes::pdf_status,
        consents::grant, consents::list, consents::read, consents::revoke,
        consents::record_release, consents::patient_disclosures, consents::disclosure_report,
        documents::upload, documents::list, documents::read, documents::download, documents::remove,
        documents::create_link, documents::download_by_link, documents::place_hold, documents::release_hold,
        documents::retention_rules, documents::set_retention_rule, documents::clear_retention_rule,
        documents::scope_rules, documents::set_scope_rule,
    ),
    components(schemas(crate::error::Problem)),
    modifiers(&BearerAuth),
    tags(
        (name = "patients", description = "Patients and their identity (PHI vault)"),
        (name = "admin", description = "Users and API keys"),
        (name = "audit", description = "Access reports and checkpoints"),
        (name = "jobs", description = "The tenant's durable jobs and dead letters"),
        (name = "webhooks", description = "Webhook subscriptions to the tenant's events; a subscription's signing secret is shown once, when it is created"),
        (name = "schedules", description = "Recurring jobs on a cron in a time zone"),
        (name = "sagas", description = "Multi-step workflows with compensations: state and step log"),
        (name = "assessments", description = "Measurement-based care: plans, enrolments (one or a batch), guardianships, backfills, the clinician's due lists; responses, score history, one-time links, safety events"),
        (name = "notes", description = "Progress notes (v2: structured sections): drafts, signatures, co-signatures, amendments; a signed note never changes"),
        (name = "consents", description = "Consents (treatment, telehealth, release of information to a named recipient, research), granted and revoked; releases of information, refused without a consent in force for the recipient (problem `consent-required`, 403); the accounting of disclosures"),
        (name = "documents", description = "Documents: streamed, sniffed, size-limited uploads sealed before they reach object storage; downloads, short-lived signed links, legal holds, retention rules and role × category × care-team permission scopes"),
        (name = "notes-v1", description = "Deprecated: progress notes with one text body; responses carry Deprecation, Sunset and Link headers. Use /v2"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A Tenet API key (`tk_…`) or an OIDC access token"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "link",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A one-time assessment link token (`at_…`), for the respondent's form only",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document as JSON, rendered once.
pub fn document_json() -> String {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT
        .get_or_init(|| {
            ApiDoc::openapi()
                .to_pretty_json()
                .expect("BUG: OpenAPI document serialises")
        })
        .clone()
}
