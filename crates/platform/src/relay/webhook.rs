//! Signed webhooks: each delivery POSTs the event's envelope as JSON, signed so the
//! receiver can tell it came from us and was not replayed long after.
//!
//! The signature scheme (Stripe-style), a public contract:
//!
//! ```text
//! Tenet-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
//! ```
//!
//! The key is the subscription's secret as given at creation (its UTF-8 bytes, prefix
//! included); `<body>` is the exact request body. A receiver recomputes the HMAC over
//! the timestamp it was sent and the raw body, compares in constant time, and refuses
//! a timestamp outside its tolerance (replays). [`verify_signature`] does all of that;
//! it accepts several `v1=` entries, so a future secret rotation can sign with both.
//! The event id travels in `Tenet-Event-Id`: receivers de-duplicate on it, because
//! delivery is at-least-once.
//!
//! This module must never log or store the body or the secret: it records only the
//! status, a bounded excerpt of the receiver's answer and the cause of a failure.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Attempt, Envelope};

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Tenet-Signature";
/// The header carrying the event id, the receiver's de-duplication key.
pub const EVENT_ID_HEADER: &str = "Tenet-Event-Id";
/// The header carrying the event type.
pub const EVENT_TYPE_HEADER: &str = "Tenet-Event-Type";
/// The most bytes of a receiver's answer recorded with an attempt.
pub const RESPONSE_EXCERPT_LEN_MAX: usize = 512;
/// The longest signature header [`verify_signature`] reads.
pub const SIGNATURE_HEADER_LEN_MAX: usize = 1024;

/// The `consumer` of a subscription's deliveries.
pub(crate) fn consumer(subscription_id: Uuid) -> String {
    format!("webhook:{subscription_id}")
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("BUG: HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `Tenet-Signature` value for `body` sent at `timestamp` (unix seconds).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(tag))
}

/// Why a signature was refused. Receivers answer 400 on any of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is malformed")]
    Malformed,
    #[error("the signature's timestamp is outside the tolerance")]
    Expired,
    #[error("no signature matches")]
    Mismatch,
}

/// Verifies a `Tenet-Signature` header for `body`, received at `now`, allowing the
/// sender's clock to differ by `tolerance` either way. The comparison is constant-time.
pub fn verify_signature(
    secret: &str,
    header: &str,
    body: &[u8],
    now: OffsetDateTime,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    if header.len() > SIGNATURE_HEADER_LEN_MAX {
        return Err(SignatureError::Malformed);
    }
    let mut timestamp: Option<i64> = None;
    let mut tags: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => {
                let parsed = value.parse().map_err(|_| SignatureError::Malformed)?;
                if timestamp.replace(parsed).is_some() {
                    return Err(SignatureError::Malformed);
                }
            }
            Some(("v1", value)) => {
                tags.push(hex::decode(value).map_err(|_| SignatureError::Malformed)?);
            }
            // Other schemes (a future v2) are skipped, not refused.
            Some(_) => {}
            None => return Err(SignatureError::Malformed),
        }
    }
    let (Some(timestamp), false) = (timestamp, tags.is_empty()) else {
        return Err(SignatureError::Malformed);
    };
    let skew = now.unix_timestamp().abs_diff(timestamp);
    if skew > tolerance.as_secs() {
        return Err(SignatureError::Expired);
    }
    let expected = mac(secret, timestamp, body);
    // `verify_slice` compares in constant time.
    if tags
        .iter()
        .any(|tag| expected.clone().verify_slice(tag).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Delivers `event` to `url`: one POST, signed with `secret`. A 2xx answer is success;
/// anything else is a failure to retry (a receiver's 4xx may be a deploy in progress,
/// and the attempts are bounded anyway).
pub(crate) async fn post(
    http: &reqwest::Client,
    url: &str,
    secret: &str,
    delivery_id: Uuid,
    event: &Envelope,
) -> Attempt {
    let body = serde_json::to_vec(&event.to_json()).expect("BUG: JSON values serialize");
    let signature = sign(secret, OffsetDateTime::now_utc().unix_timestamp(), &body);
    let sent = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .header(EVENT_ID_HEADER, event.id.to_string())
        .header(EVENT_TYPE_HEADER, &event.event_type)
        .header("Tenet-Delivery-Id", delivery_id.to_string())
        .body(body)
        .send()
        .await;
    let mut response = match sent {
        Ok(response) => response,
        // reqwest's error names the URL and the cause (connect, timeout), no body.
        Err(err) => return Attempt::failed(format!("request failed: {}", error_chain(&err))),
    };
    let status = response.status();
    let mut excerpt = Vec::new();
    while excerpt.len() < RESPONSE_EXCERPT_LEN_MAX {
        match response.chunk().await {
            Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    excerpt.truncate(RESPONSE_EXCERPT_LEN_MAX);
    let excerpt = String::from_utf8_lossy(&excerpt).into_owned();
    Attempt {
        succeeded: status.is_success(),
        permanent: false,
        status_code: Some(status.as_u16()),
        response_excerpt: (!excerpt.is_empty()).then_some(excerpt),
        error: (!status.is_success()).then(|| format!("receiver answered {status}")),
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_0123456789abcdef0123456789abcdef";

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    #[test]
    fn a_signature_verifies_with_its_secret_and_body_within_the_tolerance() {
        let header = sign(SECRET, 1_700_000_000, b"{\"id\":1}");
        let tolerance = Duration::from_secs(300);
        assert_eq!(
            verify_signature(SECRET, &header, b"{\"id\":1}", at(1_700_000_100), tolerance),
            Ok(())
        );
        assert_eq!(
            verify_signature(SECRET, &header, b"{\"id\":2}", at(1_700_000_100), tolerance),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(
                "whsec_another_secret_entirely",
                &header,
                b"{\"id\":1}",
                at(1_700_000_100),
                tolerance
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(SECRET, &header, b"{\"id\":1}", at(1_700_000_301), tolerance),
            Err(SignatureError::Expired)
        );
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body_in_hex() {
        // Computed independently: printf '1700000000.hello' | openssl dgst -sha256 -hmac key
        assert_eq!(
            sign("key", 1_700_000_000, b"hello"),
            "t=1700000000,v1=4d583a269f4f276a3fa80ff31b5a01879a848096983222a17893d198418939aa"
        );
    }

    #[test]
    fn malformed_headers_are_refused_and_unknown_schemes_skipped() {
        let now = at(1_700_000_000);
        let tolerance = Duration::from_secs(300);
        for header in [
            "",
            "v1=00",
            "t=1700000000",
            "t=x,v1=00",
            "t=1,t=2,v1=00",
            "garbage",
        ] {
            assert_eq!(
                verify_signature(SECRET, header, b"", now, tolerance),
                Err(SignatureError::Malformed),
                "{header}"
            );
        }
        let signed = sign(SECRET, 1_700_000_000, b"x");
        assert_eq!(
            verify_signature(SECRET, &format!("{signed},v2=zz"), b"x", now, tolerance),
            Ok(())
        );
    }
}
