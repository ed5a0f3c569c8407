//! JSON request bodies: size-limited, strictly typed, and with errors that name the
//! offending field but never echo its value (the value may be PHI).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

use crate::ApiError;

/// A JSON body and the bytes it came from (for idempotency fingerprints).
pub struct JsonBody<T> {
    pub value: T,
    pub bytes: Bytes,
}

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim();
                mime.eq_ignore_ascii_case("application/json")
                    || mime.to_ascii_lowercase().ends_with("+json")
            });
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::MalformedJson("the body could not be read".into())
                }
            })?;
        let value = parse(&bytes)?;
        Ok(Self { value, bytes })
    }
}

/// Parses `bytes` as `T`, describing errors by position and field path only.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        describe(&path, &inner)
    })?;
    deserializer.end().map_err(|err| {
        ApiError::MalformedJson(format!(
            "trailing characters at line {} column {}",
            err.line(),
            err.column()
        ))
    })?;
    Ok(value)
}

fn describe(path: &str, err: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::MalformedJson(format!(
            "not valid JSON at line {} column {}",
            err.line(),
            err.column()
        )),
        Category::Data => {
            let message = err.to_string();
            // serde's messages for unknown and missing fields carry only field names,
            // which are safe to echo; every other data message may carry a value.
            let field_message = [
                "unknown field",
                "missing field",
                "duplicate field",
                "unknown variant",
            ]
            .iter()
            .find(|prefix| message.starts_with(*prefix))
            .map(|_| message.split(" at line").next().unwrap_or("").to_owned());
            match field_message {
                Some(text) if !text.starts_with("unknown variant") => {
                    let text: String = text.chars().take(200).collect();
                    ApiError::InvalidInput(if path == "." {
                        text
                    } else {
                        format!("{path}: {text}")
                    })
                }
                _ => ApiError::InvalidInput(format!("{path}: wrong type or value")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Person {
        name: String,
        age: u8,
    }

    fn detail(err: ApiError) -> String {
        match err {
            ApiError::InvalidInput(d) | ApiError::MalformedJson(d) => d,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_type_error_names_the_field_but_not_the_value() {
        let err = parse::<Person>(br#"{"name": "Canary", "age": "Secretvalue"}"#).unwrap_err();
        let text = detail(err);
        assert!(text.contains("age"), "{text}");
        assert!(!text.contains("Secretvalue"), "{text}");
    }

    #[test]
    fn an_unknown_field_is_named() {
        let text = detail(parse::<Person>(br#"{"name": "x", "age": 1, "ssn": "1"}"#).unwrap_err());
        assert!(text.contains("unknown field `ssn`"), "{text}");
    }

    #[test]
    fn broken_json_reports_its_position() {
        let text = detail(parse::<Person>(br#"{"name": "Canary""#).unwrap_err());
        assert!(text.starts_with("not valid JSON at line 1"), "{text}");
        assert!(!text.contains("Canary"));
    }
}
