//! The rules a signed token's claims must meet: `exp`, `nbf`, `iss`, `aud`, `sub` and
//! the tenant claim.
//!
//! These are pure rules over an already verified payload and a given time, so they are
//! tested without keys or clocks. They must never run on a payload whose signature has
//! not verified, and must never copy a claim's value into an error.

use std::str::FromStr;

use kernel::TenantId;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::{OidcConfig, TokenError, VerifiedToken};

/// Checks the claims of a verified payload at `now_unix` (seconds since the epoch).
pub(crate) fn validate(
    payload: &[u8],
    config: &OidcConfig,
    now_unix: i64,
) -> Result<VerifiedToken, TokenError> {
    // serde_json's errors quote the offending input, so they are dropped, not wrapped.
    let claims: Map<String, Value> =
        serde_json::from_slice(payload).map_err(|_| TokenError::Malformed)?;
    let leeway_secs = i64::try_from(config.leeway_secs).unwrap_or(i64::MAX);

    let exp = numeric_date(claims.get("exp").ok_or(TokenError::MissingClaim("exp"))?)?;
    // RFC 7519 §4.1.4: the token must not be accepted on or after `exp`.
    if now_unix >= exp.saturating_add(leeway_secs) {
        return Err(TokenError::Expired);
    }
    if let Some(nbf) = claims.get("nbf") {
        // RFC 7519 §4.1.5: the token must not be accepted before `nbf`.
        if now_unix.saturating_add(leeway_secs) < numeric_date(nbf)? {
            return Err(TokenError::NotYetValid);
        }
    }

    match claims.get("iss").ok_or(TokenError::MissingClaim("iss"))? {
        Value::String(iss) if *iss == config.issuer => {}
        _ => return Err(TokenError::WrongIssuer),
    }

    let audience_matches = match claims.get("aud").ok_or(TokenError::MissingClaim("aud"))? {
        Value::String(aud) => *aud == config.audience,
        Value::Array(auds) => auds
            .iter()
            .any(|aud| aud.as_str() == Some(&config.audience)),
        _ => false,
    };
    if !audience_matches {
        return Err(TokenError::WrongAudience);
    }

    let subject = match claims.get("sub") {
        Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
        _ => return Err(TokenError::MissingClaim("sub")),
    };

    let tenant_id = match claims.get(&config.tenant_claim) {
        Some(Value::String(tenant)) => {
            TenantId::from_str(tenant).map_err(|_| TokenError::BadTenant)?
        }
        Some(_) => return Err(TokenError::BadTenant),
        None => return Err(TokenError::MissingClaim("tenant")),
    };

    let expires_at = OffsetDateTime::from_unix_timestamp(exp).map_err(|_| TokenError::Malformed)?;
    Ok(VerifiedToken {
        subject,
        tenant_id,
        expires_at,
    })
}

/// A NumericDate (RFC 7519 §2): seconds since the epoch, possibly fractional.
fn numeric_date(value: &Value) -> Result<i64, TokenError> {
    let Value::Number(number) = value else {
        return Err(TokenError::Malformed);
    };
    if let Some(secs) = number.as_i64() {
        return Ok(secs);
    }
    match number.as_f64() {
        // The cast saturates, and far-future dates are refused later by `time`.
        Some(secs) if secs.is_finite() => Ok(secs.floor() as i64),
        _ => Err(TokenError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_700_000_000;
    const TENANT: &str = "0190f0c8-9a4e-7c3b-8d2a-5e6f7a8b9c0d";

    fn config() -> OidcConfig {
        OidcConfig::new("https://issuer.test", "tenet-api")
    }

    fn good_claims() -> Value {
        json!({
            "iss": "https://issuer.test",
            "aud": "tenet-api",
            "sub": "user-1",
            "exp": NOW + 300,
            "tenet_tenant": TENANT,
        })
    }

    fn validate_with(
        edit: impl FnOnce(&mut Map<String, Value>),
    ) -> Result<VerifiedToken, TokenError> {
        let mut claims = good_claims();
        edit(claims.as_object_mut().unwrap());
        validate(claims.to_string().as_bytes(), &config(), NOW)
    }

    #[test]
    fn good_claims_yield_subject_tenant_and_expiry() {
        let verified = validate_with(|_| {}).unwrap();
        assert_eq!(verified.subject, "user-1");
        assert_eq!(verified.tenant_id.to_string(), TENANT);
        assert_eq!(verified.expires_at.unix_timestamp(), NOW + 300);
    }

    #[test]
    fn expiry_allows_the_leeway_and_not_a_second_more() {
        let leeway = OidcConfig::LEEWAY_SECS_DEFAULT as i64;
        assert!(validate_with(|c| _ = c.insert("exp".into(), json!(NOW - leeway + 1))).is_ok());
        assert!(matches!(
            validate_with(|c| _ = c.insert("exp".into(), json!(NOW - leeway))),
            Err(TokenError::Expired)
        ));
    }

    #[test]
    fn not_before_allows_the_leeway_and_not_a_second_more() {
        let leeway = OidcConfig::LEEWAY_SECS_DEFAULT as i64;
        assert!(validate_with(|c| _ = c.insert("nbf".into(), json!(NOW + leeway))).is_ok());
        assert!(matches!(
            validate_with(|c| _ = c.insert("nbf".into(), json!(NOW + leeway + 1))),
            Err(TokenError::NotYetValid)
        ));
    }

    #[test]
    fn fractional_dates_are_accepted_and_non_numeric_ones_refused() {
        assert!(
            validate_with(|c| _ = c.insert("exp".into(), json!((NOW + 10) as f64 + 0.5))).is_ok()
        );
        assert!(matches!(
            validate_with(|c| _ = c.insert("exp".into(), json!("tomorrow"))),
            Err(TokenError::Malformed)
        ));
    }

    #[test]
    fn audience_may_be_an_array_containing_ours_but_nothing_else() {
        assert!(
            validate_with(|c| _ = c.insert("aud".into(), json!(["other", "tenet-api"]))).is_ok()
        );
        for aud in [
            json!("other"),
            json!(["other"]),
            json!([]),
            json!(7),
            json!(["tenet-api-x"]),
        ] {
            assert!(matches!(
                validate_with(|c| _ = c.insert("aud".into(), aud)),
                Err(TokenError::WrongAudience)
            ));
        }
    }

    #[test]
    fn the_issuer_must_match_exactly() {
        for iss in [
            json!("https://issuer.test/"),
            json!("https://ISSUER.test"),
            json!(["https://issuer.test"]),
        ] {
            assert!(matches!(
                validate_with(|c| _ = c.insert("iss".into(), iss)),
                Err(TokenError::WrongIssuer)
            ));
        }
    }

    #[test]
    fn each_required_claim_is_named_when_missing() {
        for (claim, name) in [
            ("exp", "exp"),
            ("iss", "iss"),
            ("aud", "aud"),
            ("sub", "sub"),
            ("tenet_tenant", "tenant"),
        ] {
            assert!(
                matches!(validate_with(|c| _ = c.remove(claim)), Err(TokenError::MissingClaim(n)) if n == name),
                "{claim}"
            );
        }
        assert!(matches!(
            validate_with(|c| _ = c.insert("sub".into(), json!(""))),
            Err(TokenError::MissingClaim("sub"))
        ));
    }

    #[test]
    fn a_tenant_that_is_not_a_uuid_string_is_refused() {
        for tenant in [json!("acme"), json!(42), json!(null)] {
            assert!(matches!(
                validate_with(|c| _ = c.insert("tenet_tenant".into(), tenant)),
                Err(TokenError::BadTenant)
            ));
        }
    }

    #[test]
    fn a_payload_that_is_not_a_json_object_is_malformed() {
        assert!(matches!(
            validate(b"[1,2]", &config(), NOW),
            Err(TokenError::Malformed)
        ));
    }
}
