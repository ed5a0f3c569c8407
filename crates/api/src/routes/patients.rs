//! Patients: registration, reading, updating, search, care teams, break-glass and
//! the access report.
//!
//! Identity goes to the vault (`identity::vault`), which audits every read and
//! write in the request's transaction; the pseudonymous record goes to `clinical`.
//! Search criteria travel in request bodies, never in URLs.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use db::TenantTx;
use identity::vault::{self, Access, Address, Demographics, Identifier, Sex};
use kernel::{Actor, PatientId, Role, UserId};
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use utoipa::ToSchema;
use uuid::Uuid;

use super::idempotency::{self, Idempotency};
use crate::auth::{AuditReader, CareTeamManager, Clinician, PhiAccess, Session};
use crate::body::JsonBody;
use crate::{ApiError, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/patients", post(create).get(list))
        .route("/patients/search", post(search))
        .route("/patients/{id}", get(read).put(update))
        .route("/patients/{id}/access-log", get(access_log))
        .route("/patients/{id}/break-glass", post(break_glass))
        .route("/patients/{id}/care-team", post(add_care_team_member))
}

/// Administrative sex (FHIR `AdministrativeGender`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SexDto {
    Female,
    Male,
    Other,
    Unknown,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressDto {
    #[serde(default)]
    pub lines: Vec<String>,
    pub city: Option<String>,
    pub region: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentifierDto {
    /// The assigning authority (HL7 CX-4), e.g. `GENERAL-HOSPITAL`.
    pub authority: String,
    /// The identifier type (HL7 table 0203); `MR` when omitted.
    #[serde(default = "default_identifier_kind")]
    pub kind: String,
    pub value: String,
}

fn default_identifier_kind() -> String {
    "MR".to_owned()
}

/// A patient's identity, as sent to create or replace it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatientInput {
    pub family_name: String,
    #[serde(default)]
    pub given_names: Vec<String>,
    /// `YYYY-MM-DD`.
    #[schema(format = Date)]
    pub birth_date: Option<String>,
    pub sex: Option<SexDto>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<AddressDto>,
    #[serde(default)]
    pub identifiers: Vec<IdentifierDto>,
}

/// A patient: the pseudonymous record and their identity.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PatientView {
    pub id: Uuid,
    pub status: &'static str,
    /// Increases with every change; send it back in `If-Match` to update safely.
    pub version: i32,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    pub family_name: String,
    pub given_names: Vec<String>,
    #[schema(format = Date)]
    pub birth_date: Option<String>,
    pub sex: Option<SexDto>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<AddressDto>,
    pub identifiers: Vec<IdentifierDto>,
}

fn check_len(field: &str, value: &str, min: usize, max: usize) -> Result<(), ApiError> {
    let n = value.trim().chars().count();
    if n < min || n > max {
        return Err(ApiError::InvalidInput(format!(
            "{field} must be {min} to {max} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::InvalidInput(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(())
}

fn parse_date(field: &str, text: &str) -> Result<Date, ApiError> {
    let date = Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|_| ApiError::InvalidInput(format!("{field} must be a date written YYYY-MM-DD")))?;
    let today = OffsetDateTime::now_utc().date();
    if date > today || date.year() < 1850 {
        return Err(ApiError::InvalidInput(format!(
            "{field} must be between 1850-01-01 and today"
        )));
    }
    Ok(date)
}

const GIVEN_NAMES_MAX: usize = 10;
const IDENTIFIERS_MAX: usize = 20;
const ADDRESS_LINES_MAX: usize = 5;

impl PatientInput {
    /// Validates every field; messages name fields, never values.
    fn into_demographics(self) -> Result<Demographics, ApiError> {
        check_len("family_name", &self.family_name, 1, 200)?;
        if self.given_names.len() > GIVEN_NAMES_MAX {
            return Err(ApiError::InvalidInput(format!(
                "at most {GIVEN_NAMES_MAX} given_names"
            )));
        }
        for given in &self.given_names {
            check_len("given_names[]", given, 1, 100)?;
        }
        let birth_date = self
            .birth_date
            .as_deref()
            .map(|text| parse_date("birth_date", text))
            .transpose()?;
        if let Some(phone) = &self.phone {
            check_len("phone", phone, 3, 50)?;
            if !phone
                .chars()
                .all(|c| c.is_ascii_digit() || " +-().x".contains(c))
            {
                return Err(ApiError::InvalidInput(
                    "phone may hold digits, spaces and + - ( ) . x only".into(),
                ));
            }
        }
        if let Some(email) = &self.email {
            check_len("email", email, 3, 254)?;
            if !email.contains('@') || email.contains(char::is_whitespace) {
                return Err(ApiError::InvalidInput(
                    "email must be an address like name@example.org".into(),
                ));
            }
        }
        if let Some(address) = &self.address {
            if address.lines.len() > ADDRESS_LINES_MAX {
                return Err(ApiError::InvalidInput(format!(
                    "at most {ADDRESS_LINES_MAX} address.lines"
                )));
            }
            for line in &address.lines {
                check_len("address.lines[]", line, 1, 200)?;
            }
            for (field, value) in [
                ("address.city", &address.city),
                ("address.region", &address.region),
                ("address.postal_code", &address.postal_code),
                ("address.country", &address.country),
            ] {
                if let Some(value) = value {
                    check_len(field, value, 1, 100)?;
                }
            }
        }
        if self.identifiers.len() > IDENTIFIERS_MAX {
            return Err(ApiError::InvalidInput(format!(
                "at most {IDENTIFIERS_MAX} identifiers"
            )));
        }
        for identifier in &self.identifiers {
            check_len("identifiers[].authority", &identifier.authority, 1, 100)?;
            check_len("identifiers[].kind", &identifier.kind, 1, 10)?;
            check_len("identifiers[].value", &identifier.value, 1, 100)?;
        }
        Ok(Demographics {
            family_name: self.family_name.trim().to_owned(),
            given_names: self
                .given_names
                .iter()
                .map(|given| given.trim().to_owned())
                .collect(),
            birth_date,
            sex: self.sex.map(|sex| match sex {
                SexDto::Female => Sex::Female,
                SexDto::Male => Sex::Male,
                SexDto::Other => Sex::Other,
                SexDto::Unknown => Sex::Unknown,
            }),
            phone: self.phone.map(|phone| phone.trim().to_owned()),
            email: self.email.map(|email| email.trim().to_owned()),
            address: self.address.map(|address| Address {
                lines: address.lines,
                city: address.city,
                region: address.region,
                postal_code: address.postal_code,
                country: address.country,
            }),
            identifiers: self
                .identifiers
                .into_iter()
                .map(|identifier| Identifier {
                    authority: identifier.authority.trim().to_owned(),
                    kind: identifier.kind.trim().to_owned(),
                    value: identifier.value.trim().to_owned(),
                })
                .collect(),
        })
    }
}

fn view(patient: &clinical::patient::Patient, record: vault::Record) -> PatientView {
    let d = record.demographics;
    PatientView {
        id: patient.id.into_uuid(),
        status: patient.status.as_str(),
        version: record.version,
        created_at: patient.created_at,
        updated_at: patient.updated_at,
        family_name: d.family_name,
        given_names: d.given_names,
        birth_date: d.birth_date.map(|date| date.to_string()),
        sex: d.sex.map(|sex| match sex {
            Sex::Female => SexDto::Female,
            Sex::Male => SexDto::Male,
            Sex::Other => SexDto::Other,
            Sex::Unknown => SexDto::Unknown,
        }),
        phone: d.phone,
        email: d.email,
        address: d.address.map(|address| AddressDto {
            lines: address.lines,
            city: address.city,
            region: address.region,
            postal_code: address.postal_code,
            country: address.country,
        }),
        identifiers: d
            .identifiers
            .into_iter()
            .map(|identifier| IdentifierDto {
                authority: identifier.authority,
                kind: identifier.kind,
                value: identifier.value,
            })
            .collect(),
    }
}

pub(crate) fn parse_patient_id(text: &str) -> Result<PatientId, ApiError> {
    // A malformed id names no patient: the same 404 as an unknown one.
    text.parse().map_err(|_| ApiError::NotFound)
}

/// The purpose of use recorded for a role's routine access.
pub(crate) fn routine_purpose(role: Role) -> &'static str {
    match role {
        Role::Clinician | Role::CareCoordinator => "treatment",
        Role::Admin | Role::Integration | Role::Auditor => "operations",
    }
}

/// [`decide_access`], and records the purpose it rests on in the transaction
/// (`TenantTx::set_purpose_of_use`), which the contexts audit their reads and writes
/// with — a break-glass grant's reason, flagged.
pub(crate) async fn access_for(
    tx: &mut TenantTx,
    actor: &Actor,
    patient_id: PatientId,
) -> Result<(clinical::patient::Patient, Access), ApiError> {
    let (patient, access) = decide_access(tx, actor, patient_id).await?;
    tx.set_purpose_of_use(db::PurposeOfUse {
        purpose: access.purpose.clone(),
        break_glass: access.break_glass,
    });
    Ok((patient, access))
}

/// Decides on what basis `actor` may access the patient: role, care team or an
/// active break-glass grant. Another tenant's patient is not found.
async fn decide_access(
    tx: &mut TenantTx,
    actor: &Actor,
    patient_id: PatientId,
) -> Result<(clinical::patient::Patient, Access), ApiError> {
    let patient = require_patient(tx, patient_id).await?;
    let routine = Access {
        purpose: Some(routine_purpose(actor.role).to_owned()),
        break_glass: false,
    };
    match actor.role {
        Role::Admin | Role::Integration => Ok((patient, routine)),
        Role::Clinician | Role::CareCoordinator => {
            let Some(user_id) = actor.user_id else {
                return Err(ApiError::Forbidden(
                    "a clinical role needs a personal credential to open patient records",
                ));
            };
            if clinical::care_team::is_member(tx, patient_id, user_id).await? {
                return Ok((patient, routine));
            }
            if actor.role == Role::Clinician
                && let Some(grant) =
                    identity::break_glass::active_grant(tx, user_id, patient_id).await?
            {
                return Ok((
                    patient,
                    Access {
                        purpose: Some(grant.reason),
                        break_glass: true,
                    },
                ));
            }
            Err(ApiError::BreakGlassRequired)
        }
        Role::Auditor => Err(ApiError::Forbidden(
            "this role does not access patient records",
        )),
    }
}

/// The patient of the transaction's tenant, or 404 (another tenant's id included).
async fn require_patient(
    tx: &mut TenantTx,
    patient_id: PatientId,
) -> Result<clinical::patient::Patient, ApiError> {
    clinical::patient::get(tx, patient_id)
        .await?
        .ok_or(ApiError::NotFound)
}

async fn read_view(
    tx: &mut TenantTx,
    state: &AppState,
    actor: &Actor,
    patient_id: PatientId,
) -> Result<PatientView, ApiError> {
    let (patient, access) = access_for(tx, actor, patient_id).await?;
    let record = vault::read(tx, &state.keyring, patient_id, &access).await?;
    Ok(view(&patient, record))
}

pub(crate) fn created(location: String, body: impl Serialize) -> Response {
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Register a patient.
#[utoipa::path(post, path = "/v1/patients", tag = "patients",
    request_body = PatientInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key and body return the first response")),
    responses(
        (status = 201, description = "Registered", body = PatientView),
        (status = 409, description = "An identifier belongs to another patient", body = crate::error::Problem),
        (status = 422, description = "Invalid input, or the idempotency key was used for another request", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    credential: PhiAccess,
    headers: HeaderMap,
    body: JsonBody<PatientInput>,
) -> Result<Response, ApiError> {
    let demographics = body.value.into_demographics()?;
    let Session { actor, mut tx } = credential.open(&state).await?;
    let idempotency = idempotency::claim(&mut tx, &headers, "/v1/patients", &body.bytes).await?;
    if let Idempotency::Replay(outcome) = &idempotency {
        let patient_id = PatientId::new_unchecked(outcome.resource_id.ok_or(ApiError::NotFound)?);
        let view = read_view(&mut tx, &state, &actor, patient_id).await?;
        tx.commit().await?;
        return Ok(created(format!("/v1/patients/{patient_id}"), view));
    }
    let patient_id = PatientId::generate();
    let patient = clinical::patient::insert(&mut tx, patient_id).await?;
    let access = Access {
        purpose: Some(routine_purpose(actor.role).to_owned()),
        break_glass: false,
    };
    vault::insert(&mut tx, &state.keyring, patient_id, &demographics, &access).await?;
    if matches!(actor.role, Role::Clinician | Role::CareCoordinator)
        && let Some(user_id) = actor.user_id
    {
        // Whoever registers a patient in a clinical role cares for them.
        clinical::care_team::add(&mut tx, patient_id, user_id).await?;
    }
    idempotency
        .record(&mut tx, 201, "patient", Some(patient_id.into_uuid()))
        .await?;
    tx.commit().await?;
    let record = vault::Record {
        patient_id,
        demographics,
        version: 1,
    };
    Ok(created(
        format!("/v1/patients/{patient_id}"),
        view(&patient, record),
    ))
}

/// Read a patient.
#[utoipa::path(get, path = "/v1/patients/{id}", tag = "patients",
    params(("id" = Uuid, Path, description = "Patient id")),
    responses(
        (status = 200, body = PatientView),
        (status = 403, description = "No care relationship: break the glass first", body = crate::error::Problem),
        (status = 404, body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn read(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
) -> Result<Json<PatientView>, ApiError> {
    let patient_id = parse_patient_id(&id)?;
    let Session { actor, mut tx } = credential.open(&state).await?;
    let view = read_view(&mut tx, &state, &actor, patient_id).await?;
    tx.commit().await?;
    Ok(Json(view))
}

/// Replace a patient's identity. Send `If-Match: "<version>"` to refuse a stale write.
#[utoipa::path(put, path = "/v1/patients/{id}", tag = "patients",
    params(("id" = Uuid, Path, description = "Patient id"), ("If-Match" = Option<String>, Header, description = "The version last read, quoted")),
    request_body = PatientInput,
    responses(
        (status = 200, body = PatientView),
        (status = 404, body = crate::error::Problem),
        (status = 409, description = "Stale version, or an identifier belongs to another patient", body = crate::error::Problem),
        (status = 422, body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: JsonBody<PatientInput>,
) -> Result<Json<PatientView>, ApiError> {
    let patient_id = parse_patient_id(&id)?;
    let demographics = body.value.into_demographics()?;
    let expected_version = match headers.get(header::IF_MATCH) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .map(|text| text.trim().trim_start_matches("W/").trim_matches('"'))
                .and_then(|text| text.parse::<i32>().ok())
                .ok_or_else(|| {
                    ApiError::InvalidInput("If-Match must be a quoted version number".into())
                })?,
        ),
    };
    let Session { actor, mut tx } = credential.open(&state).await?;
    let (mut patient, access) = access_for(&mut tx, &actor, patient_id).await?;
    let version = vault::update(
        &mut tx,
        &state.keyring,
        patient_id,
        &demographics,
        expected_version,
        &access,
    )
    .await?;
    clinical::patient::touch(&mut tx, patient_id).await?;
    tx.commit().await?;
    patient.updated_at = OffsetDateTime::now_utc();
    Ok(Json(view(
        &patient,
        vault::Record {
            patient_id,
            demographics,
            version,
        },
    )))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Return patients after this id (the last id of the previous page).
    pub after: Option<Uuid>,
    /// Page size, 1 to 100 (default 50).
    pub limit: Option<i64>,
}

/// A page of patients.
#[derive(Debug, Serialize, ToSchema)]
pub struct PatientPage {
    pub patients: Vec<PatientView>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next_after: Option<Uuid>,
}

/// List patients: every patient for admins and integrations, one's care team's
/// patients for clinical roles.
#[utoipa::path(get, path = "/v1/patients", tag = "patients", params(ListQuery),
    responses((status = 200, body = PatientPage)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    credential: PhiAccess,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PatientPage>, ApiError> {
    let Query(query) = query.map_err(|_| {
        ApiError::InvalidInput(
            "query parameters are `after` (a patient id) and `limit` (1 to 100)".into(),
        )
    })?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=clinical::patient::PAGE_LEN_MAX).contains(&limit) {
        return Err(ApiError::InvalidInput("limit must be 1 to 100".into()));
    }
    let after = query.after.map(PatientId::new_unchecked);
    let Session { actor, mut tx } = credential.open(&state).await?;
    let ids = match (actor.role, actor.user_id) {
        (Role::Admin | Role::Integration, _) => {
            clinical::patient::list_ids(&mut tx, after, limit).await?
        }
        (_, Some(user_id)) => {
            clinical::care_team::patient_ids_of(&mut tx, user_id, after, limit).await?
        }
        (_, None) => Vec::new(),
    };
    let patients = disclose(&mut tx, &state, &actor, &ids).await?;
    tx.commit().await?;
    let next_after = (ids.len() as i64 == limit)
        .then(|| ids.last().map(|id| id.into_uuid()))
        .flatten();
    Ok(Json(PatientPage {
        patients,
        next_after,
    }))
}

/// Reads the given patients the actor may see routinely, auditing each.
async fn disclose(
    tx: &mut TenantTx,
    state: &AppState,
    actor: &Actor,
    ids: &[PatientId],
) -> Result<Vec<PatientView>, ApiError> {
    let access = Access {
        purpose: Some(routine_purpose(actor.role).to_owned()),
        break_glass: false,
    };
    let patients = clinical::patient::get_many(tx, ids).await?;
    let records = vault::read_many(tx, &state.keyring, ids, &access).await?;
    Ok(records
        .into_iter()
        .filter_map(|record| {
            let patient = patients
                .iter()
                .find(|patient| patient.id == record.patient_id)?;
            Some(view(patient, record))
        })
        .collect())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentifierQuery {
    pub authority: String,
    pub value: String,
}

/// Find patients by an identifier, or by family name + first given name + birth date.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchInput {
    pub identifier: Option<IdentifierQuery>,
    pub family_name: Option<String>,
    pub given_name: Option<String>,
    #[schema(format = Date)]
    pub birth_date: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResult {
    /// Matches the caller may read (each disclosure is audited).
    pub patients: Vec<PatientView>,
    /// Ids of matches outside the caller's care team: break the glass to open them.
    pub restricted: Vec<Uuid>,
}

/// Search patients. Criteria go in the body so they never appear in a URL or log.
#[utoipa::path(post, path = "/v1/patients/search", tag = "patients", request_body = SearchInput,
    responses((status = 200, body = SearchResult), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn search(
    State(state): State<AppState>,
    credential: PhiAccess,
    body: JsonBody<SearchInput>,
) -> Result<Json<SearchResult>, ApiError> {
    let input = body.value;
    let Session { actor, mut tx } = credential.open(&state).await?;
    let ids = match (
        &input.identifier,
        &input.family_name,
        &input.given_name,
        &input.birth_date,
    ) {
        (Some(identifier), None, None, None) => {
            check_len("identifier.authority", &identifier.authority, 1, 100)?;
            check_len("identifier.value", &identifier.value, 1, 100)?;
            vault::find_by_identifier(
                &mut tx,
                &state.keyring,
                &identifier.authority,
                &identifier.value,
            )
            .await?
            .into_iter()
            .collect::<Vec<_>>()
        }
        (None, Some(family_name), Some(given_name), Some(birth_date)) => {
            check_len("family_name", family_name, 1, 200)?;
            check_len("given_name", given_name, 1, 100)?;
            let birth_date = parse_date("birth_date", birth_date)?;
            vault::find_by_name_birth(&mut tx, &state.keyring, family_name, given_name, birth_date)
                .await?
        }
        _ => {
            return Err(ApiError::InvalidInput(
                "search by `identifier` alone, or by `family_name`, `given_name` and `birth_date` together".into(),
            ));
        }
    };
    let mut readable = Vec::new();
    let mut restricted = Vec::new();
    for patient_id in ids {
        match access_for(&mut tx, &actor, patient_id).await {
            Ok((_, access)) if !access.break_glass => readable.push(patient_id),
            // A match readable only under a grant is still listed as restricted: a
            // search is not the place to use a break-glass grant silently.
            Ok(_) | Err(ApiError::BreakGlassRequired) => restricted.push(patient_id.into_uuid()),
            Err(ApiError::NotFound) => {}
            Err(other) => return Err(other),
        }
    }
    let patients = disclose(&mut tx, &state, &actor, &readable).await?;
    tx.commit().await?;
    Ok(Json(SearchResult {
        patients,
        restricted,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccessLogEntry {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    /// Who: `user:<id>`, `api_key:<id>` or `system`.
    pub actor: String,
    /// What: e.g. `patient.read`.
    pub action: String,
    /// Why: the purpose of use, or the break-glass reason.
    pub purpose: Option<String>,
    pub break_glass: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccessLog {
    pub patient_id: Uuid,
    pub entries: Vec<AccessLogEntry>,
}

/// The patient's access report: who touched the record, when, what and why.
#[utoipa::path(get, path = "/v1/patients/{id}/access-log", tag = "audit",
    params(("id" = Uuid, Path, description = "Patient id")),
    responses((status = 200, body = AccessLog), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn access_log(
    State(state): State<AppState>,
    credential: AuditReader,
    Path(id): Path<String>,
) -> Result<Json<AccessLog>, ApiError> {
    let patient_id = parse_patient_id(&id)?;
    let Session { mut tx, .. } = credential.open(&state).await?;
    require_patient(&mut tx, patient_id).await?;
    let entries =
        audit::access_log(&mut tx, patient_id, audit::access::ACCESS_LOG_LIMIT_MAX).await?;
    // Reading who accessed a record is itself recorded.
    audit::append(
        &mut tx,
        audit::AuditEntry::patient("access_log.read", patient_id).purpose("operations"),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(AccessLog {
        patient_id: patient_id.into_uuid(),
        entries: entries
            .into_iter()
            .map(|entry| AccessLogEntry {
                at: entry.occurred_at,
                actor: entry.actor,
                action: entry.action,
                purpose: entry.purpose,
                break_glass: entry.break_glass,
            })
            .collect(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassInput {
    /// Why you need this record now (10 to 500 characters). Recorded in the audit log.
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BreakGlassGrant {
    pub id: Uuid,
    pub patient_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

/// Open a time-boxed emergency grant on a patient outside your care team.
#[utoipa::path(post, path = "/v1/patients/{id}/break-glass", tag = "patients",
    params(("id" = Uuid, Path, description = "Patient id")),
    request_body = BreakGlassInput,
    responses((status = 201, body = BreakGlassGrant), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn break_glass(
    State(state): State<AppState>,
    credential: Clinician,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: JsonBody<BreakGlassInput>,
) -> Result<Response, ApiError> {
    let patient_id = parse_patient_id(&id)?;
    let (Session { mut tx, .. }, user_id) = credential.open(&state).await?;
    require_patient(&mut tx, patient_id).await?;
    let path = format!("/v1/patients/{patient_id}/break-glass");
    let idempotency = idempotency::claim(&mut tx, &headers, &path, &body.bytes).await?;
    let grant = if let Idempotency::Replay(outcome) = &idempotency {
        identity::break_glass::get(&mut tx, outcome.resource_id.ok_or(ApiError::NotFound)?)
            .await?
            .ok_or(ApiError::NotFound)?
    } else {
        let grant = identity::break_glass::open(
            &mut tx,
            user_id,
            patient_id,
            &body.value.reason,
            state.settings.break_glass_secs,
        )
        .await?;
        idempotency
            .record(&mut tx, 201, "break_glass_grant", Some(grant.id))
            .await?;
        grant
    };
    tx.commit().await?;
    Ok(created(
        path,
        BreakGlassGrant {
            id: grant.id,
            patient_id: patient_id.into_uuid(),
            expires_at: grant.expires_at,
        },
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CareTeamInput {
    pub user_id: Uuid,
}

/// Add a user to a patient's care team.
#[utoipa::path(post, path = "/v1/patients/{id}/care-team", tag = "patients",
    params(("id" = Uuid, Path, description = "Patient id")),
    request_body = CareTeamInput,
    responses((status = 204), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn add_care_team_member(
    State(state): State<AppState>,
    credential: CareTeamManager,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: JsonBody<CareTeamInput>,
) -> Result<StatusCode, ApiError> {
    let patient_id = parse_patient_id(&id)?;
    let user_id = UserId::new_unchecked(body.value.user_id);
    let Session { mut tx, .. } = credential.open(&state).await?;
    // The patient named by the path comes first: another tenant's patient is "not
    // found" whatever the body says, never "invalid user".
    require_patient(&mut tx, patient_id).await?;
    let path = format!("/v1/patients/{patient_id}/care-team");
    let idempotency = idempotency::claim(&mut tx, &headers, &path, &body.bytes).await?;
    if let Idempotency::Replay(_) = idempotency {
        tx.commit().await?;
        return Ok(StatusCode::NO_CONTENT);
    }
    if identity::user::get(&mut tx, user_id).await?.is_none() {
        return Err(ApiError::InvalidInput(
            "user_id names no user of this tenant".into(),
        ));
    }
    if !clinical::care_team::add(&mut tx, patient_id, user_id).await? {
        return Err(ApiError::NotFound);
    }
    audit::append(
        &mut tx,
        audit::AuditEntry::patient("care_team.add", patient_id).purpose("operations"),
    )
    .await?;
    idempotency
        .record(&mut tx, 204, "care_team_member", None)
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
