//! Who is calling: API Gateway authorizer claims, or a user token (HS256 with
//! `SKYE_USER_JWT_SECRET`, or RS256/ES256 from SkyeCONNEX's identity provider's JWKS).

use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use crate::error::{Error, Result};

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub name: String,
}

#[derive(Deserialize)]
struct UserClaims {
    sub: String,
    #[serde(default)]
    name: Option<String>,
}

/// How long fetched signing keys are trusted before a refetch.
const JWKS_TTL: Duration = Duration::from_secs(600);

pub struct UserAuth {
    secret: Option<String>,
    jwks_url: Option<String>,
    jwks: RwLock<Option<(Instant, JwkSet)>>,
}

pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl UserAuth {
    pub fn new(secret: Option<String>, jwks_url: Option<String>) -> Self {
        Self {
            secret,
            jwks_url,
            jwks: RwLock::new(None),
        }
    }

    /// Mints an HS256 user token (what `skye token` prints).
    pub fn mint(&self, user: &User, ttl_secs: u64) -> Result<String> {
        let secret = self.secret.as_deref().ok_or_else(|| {
            Error::Config("SKYE_USER_JWT_SECRET is needed to mint user tokens".into())
        })?;
        let now = crate::ids::now();
        super::jwt::sign_raw(
            secret,
            &serde_json::json!({"sub": user.id, "name": user.name, "iat": now, "exp": now + ttl_secs as i64}),
        )
    }

    pub async fn verify(&self, token: &str) -> Result<User> {
        let header = decode_header(token).map_err(|_| Error::InvalidToken("malformed".into()))?;
        let claims: UserClaims = match header.alg {
            Algorithm::HS256 => {
                let secret = self.secret.as_deref().ok_or_else(|| {
                    Error::InvalidToken("HS256 user tokens are not accepted".into())
                })?;
                let key = DecodingKey::from_secret(secret.as_bytes()).map_err(Error::internal)?;
                decode_user(token, &key, Algorithm::HS256)?
            }
            alg @ (Algorithm::RS256 | Algorithm::ES256) => {
                let kid = header
                    .kid
                    .ok_or_else(|| Error::InvalidToken("no key id".into()))?;
                let key = self.jwks_key(&kid).await?;
                decode_user(token, &key, alg)?
            }
            _ => return Err(Error::InvalidToken("algorithm not allowed".into())),
        };
        if claims.sub.is_empty() || claims.sub.len() > 128 {
            return Err(Error::InvalidToken("bad subject".into()));
        }
        Ok(User {
            name: claims.name.unwrap_or_else(|| claims.sub.clone()),
            id: claims.sub,
        })
    }

    async fn jwks_key(&self, kid: &str) -> Result<DecodingKey> {
        let url = self
            .jwks_url
            .as_deref()
            .ok_or_else(|| Error::InvalidToken("signed user tokens are not accepted".into()))?;
        if let Some((fetched, set)) = &*self.jwks.read().await
            && fetched.elapsed() < JWKS_TTL
            && let Some(jwk) = set.find(kid)
        {
            return DecodingKey::from_jwk(jwk)
                .map_err(|_| Error::InvalidToken("unusable key".into()));
        }
        // Unknown key id or stale set: refetch once (the provider may have rotated keys).
        let set: JwkSet = reqwest::get(url)
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| Error::unavailable("identity provider", e))?
            .json()
            .await
            .map_err(|e| Error::unavailable("identity provider", e))?;
        let key = set.find(kid).map(DecodingKey::from_jwk);
        *self.jwks.write().await = Some((Instant::now(), set));
        match key {
            Some(Ok(k)) => Ok(k),
            _ => Err(Error::InvalidToken("unknown key id".into())),
        }
    }
}

fn decode_user(token: &str, key: &DecodingKey, alg: Algorithm) -> Result<UserClaims> {
    let mut validation = Validation::new(alg);
    validation.validate_aud = false;
    validation.leeway = 60;
    decode::<UserClaims>(token, key, &validation)
        .map(|d| d.claims)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                Error::InvalidToken("expired".into())
            }
            _ => Error::InvalidToken("not valid".into()),
        })
}
