//! Document Server's JWTs: HS256 with the shared secret, both ways.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Clock skew tolerated on Document Server's tokens (its own tolerance is 60 s too).
pub const LEEWAY_SECS: u64 = 60;

/// Signs `claims` (a JSON object) with HS256, adding `iat` and `exp`.
pub fn sign(secret: &str, claims: &Value, ttl_secs: u64) -> Result<String> {
    let mut object = claims
        .as_object()
        .cloned()
        .ok_or_else(|| Error::internal("claims must be an object"))?;
    let now = crate::ids::now();
    object.insert("iat".into(), now.into());
    object.insert("exp".into(), (now + ttl_secs as i64).into());
    sign_raw(secret, &Value::Object(object))
}

/// Signs exactly the given claims.
pub fn sign_raw<T: Serialize>(secret: &str, claims: &T) -> Result<String> {
    let key = EncodingKey::from_secret(secret.as_bytes()).map_err(Error::internal)?;
    encode(&Header::new(Algorithm::HS256), claims, &key).map_err(Error::internal)
}

/// Verifies an HS256 token from Document Server and returns its claims. Anything else —
/// another algorithm, `alg: none`, a bad signature, no or past `exp` — is refused.
pub fn verify(secret: &str, token: &str) -> Result<Map<String, Value>> {
    let key = DecodingKey::from_secret(secret.as_bytes()).map_err(Error::internal)?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = LEEWAY_SECS;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);
    let data = decode::<Map<String, Value>>(token, &key, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        let why = match e.kind() {
            ErrorKind::ExpiredSignature => "expired",
            ErrorKind::InvalidSignature => "bad signature",
            ErrorKind::InvalidAlgorithm => "algorithm not allowed",
            ErrorKind::MissingRequiredClaim(_) => "missing exp",
            _ => "malformed",
        };
        Error::InvalidToken(why.into())
    })?;
    Ok(data.claims)
}

/// Takes the token out of `Authorization: Bearer <token>` (or a bare token in a custom header).
pub fn bearer(value: &str) -> Option<&str> {
    let value = value.trim();
    let token = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        Some(_) => return None,
        None => value,
    };
    (!token.is_empty()).then_some(token)
}

/// The claims Document Server means: a header token wraps them in `payload`.
pub fn unwrap_payload(mut claims: Map<String, Value>) -> Map<String, Value> {
    match claims.remove("payload") {
        Some(Value::Object(payload)) => payload,
        Some(other) => {
            claims.insert("payload".into(), other);
            claims
        }
        None => claims,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn round_trip_and_refusals() {
        let token = sign(SECRET, &json!({"payload": {"url": "http://x/f"}}), 300).unwrap();
        let claims = unwrap_payload(verify(SECRET, &token).unwrap());
        assert_eq!(claims["url"], "http://x/f");
        assert!(matches!(
            verify("another-secret-another-secret-xx", &token),
            Err(Error::InvalidToken(_))
        ));
        let expired = sign_raw(
            SECRET,
            &json!({"url": "u", "exp": crate::ids::now() - 3600}),
        )
        .unwrap();
        assert!(matches!(verify(SECRET, &expired), Err(Error::InvalidToken(m)) if m == "expired"));
        let no_exp = sign_raw(SECRET, &json!({"url": "u"})).unwrap();
        assert!(verify(SECRET, &no_exp).is_err());
        // alg: none, unsigned
        let none = format!(
            "{}.{}.",
            crate::protocol::identity::b64url(br#"{"alg":"none","typ":"JWT"}"#),
            crate::protocol::identity::b64url(
                format!(r#"{{"url":"u","exp":{}}}"#, crate::ids::now() + 60).as_bytes()
            )
        );
        assert!(verify(SECRET, &none).is_err());
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
    }
}
