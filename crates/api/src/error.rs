//! Problem JSON (RFC 9457) for every error the API returns.
//!
//! Each domain error maps, exhaustively (no `_ =>`), to a stable problem `type` and
//! status. A 5xx never shows its cause; the cause chain goes to the log (the
//! domain errors carry no PHI, so logging them is safe).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error response.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("authentication required")]
    Unauthenticated,
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("break-glass required")]
    BreakGlassRequired,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("document larger than {0} bytes")]
    DocumentTooLarge(u64),
    #[error("document type refused: {0}")]
    UnsupportedDocumentType(String),
    #[error("document link refused")]
    LinkRefused { expired: bool },
    #[error("idempotency key reused with a different request")]
    IdempotencyKeyReused,
    #[error("conflict: {0}")]
    Conflict(String),
    /// The patient's consent this needs is missing, revoked or expired.
    #[error("consent required: {0}")]
    ConsentRequired(String),
    #[error("gone: {0}")]
    Gone(&'static str),
    #[error("service unavailable")]
    Unavailable,
    #[error("unexpected error")]
    Unexpected(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The problem document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A stable URI reference naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ApiError {
    pub fn unexpected(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unexpected(Box::new(err))
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str, Option<String>) {
        match self {
            Self::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Authentication required",
                Some("present a valid API key or OIDC bearer token".into()),
            ),
            Self::Forbidden(why) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden", Some((*why).into())),
            Self::BreakGlassRequired => (
                StatusCode::FORBIDDEN,
                "break-glass-required",
                "No care relationship with this patient",
                Some("you are not on this patient's care team; open a break-glass grant with a reason to proceed".into()),
            ),
            Self::NotFound => (StatusCode::NOT_FOUND, "not-found", "Not found", None),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                None,
            ),
            Self::MalformedJson(detail) => (StatusCode::BAD_REQUEST, "malformed-json", "Malformed JSON", Some(detail.clone())),
            Self::InvalidInput(detail) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-input",
                "Invalid input",
                Some(detail.clone()),
            ),
            Self::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Request body too large",
                Some(format!("the limit is {} bytes", crate::BODY_LEN_MAX)),
            ),
            Self::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                Some("send Content-Type: application/json".into()),
            ),
            Self::DocumentTooLarge(limit_bytes) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "document-too-large",
                "Document too large",
                Some(format!("a document may be at most {limit_bytes} bytes")),
            ),
            Self::UnsupportedDocumentType(detail) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-document-type",
                "Unsupported document type",
                Some(detail.clone()),
            ),
            Self::LinkRefused { expired: true } => (
                StatusCode::FORBIDDEN,
                "link-expired",
                "Link expired",
                Some("ask for a new link".into()),
            ),
            Self::LinkRefused { expired: false } => (
                StatusCode::FORBIDDEN,
                "link-invalid",
                "Link invalid",
                Some("the link was altered or is not a document link".into()),
            ),
            Self::IdempotencyKeyReused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency key reused",
                Some("this Idempotency-Key was used for a different request".into()),
            ),
            Self::Conflict(detail) => (StatusCode::CONFLICT, "conflict", "Conflict", Some(detail.clone())),
            Self::ConsentRequired(detail) => (
                StatusCode::FORBIDDEN,
                "consent-required",
                "The patient's consent is required",
                Some(detail.clone()),
            ),
            Self::Gone(why) => (StatusCode::GONE, "gone", "Gone", Some((*why).into())),
            Self::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                Some("try again shortly".into()),
            ),
            Self::Unexpected(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error", None),
        }
    }
}

/// Writes the full cause chain of an error into one line.
pub fn cause_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Unexpected(err) = &self {
            tracing::error!(error = %cause_chain(err.as_ref()), "request failed");
        }
        let (status, slug, title, detail) = self.parts();
        let problem = Problem {
            kind: format!("/problems/{slug}"),
            title,
            status: status.as_u16(),
            detail,
        };
        let mut response = (status, axum::Json(problem)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => Self::Unavailable,
            other => Self::unexpected(other),
        }
    }
}

impl From<identity::vault::VaultError> for ApiError {
    fn from(err: identity::vault::VaultError) -> Self {
        use identity::vault::VaultError;
        match err {
            VaultError::DuplicateIdentifier { .. } => Self::Conflict(err.to_string()),
            VaultError::NotFound => Self::NotFound,
            VaultError::VersionConflict => Self::Conflict(err.to_string()),
            VaultError::Undecryptable | VaultError::Keyring(_) | VaultError::Audit(_) => {
                Self::unexpected(err)
            }
            VaultError::Database(db_err) => db_err.into(),
        }
    }
}

impl From<identity::user::CreateUserError> for ApiError {
    fn from(err: identity::user::CreateUserError) -> Self {
        use identity::user::CreateUserError;
        match err {
            CreateUserError::InvalidHandle => Self::InvalidInput(err.to_string()),
            CreateUserError::HandleTaken | CreateUserError::SubjectTaken => {
                Self::Conflict(err.to_string())
            }
            CreateUserError::Database(db_err) => db_err.into(),
        }
    }
}

impl From<identity::api_key::CreateApiKeyError> for ApiError {
    fn from(err: identity::api_key::CreateApiKeyError) -> Self {
        use identity::api_key::CreateApiKeyError;
        match err {
            CreateApiKeyError::InvalidLabel | CreateApiKeyError::UnknownUser => {
                Self::InvalidInput(err.to_string())
            }
            CreateApiKeyError::Database(db_err) => db_err.into(),
        }
    }
}

impl From<identity::break_glass::BreakGlassError> for ApiError {
    fn from(err: identity::break_glass::BreakGlassError) -> Self {
        use identity::break_glass::BreakGlassError;
        match err {
            BreakGlassError::InvalidReason => Self::InvalidInput(err.to_string()),
            BreakGlassError::Audit(_) => Self::unexpected(err),
            BreakGlassError::Database(db_err) => db_err.into(),
        }
    }
}

impl From<audit::AuditError> for ApiError {
    fn from(err: audit::AuditError) -> Self {
        match err {
            audit::AuditError::NoChain => Self::unexpected(err),
            audit::AuditError::Database(db_err) => db_err.into(),
        }
    }
}
