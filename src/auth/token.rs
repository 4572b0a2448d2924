//! JWTs: HS256 only, with an issuer, an expiry and a random `jti` that revocations name.
//!
//! The header is read by hand before `jsonwebtoken` sees the token, so a token with
//! `alg: none` (or any algorithm but HS256) is refused by name instead of as "malformed".

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::AuthError;
use crate::datastore::Timestamp;

/// The claims of a session token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: String,
    /// Who issued it (`GITSTORE_AUTH_JWT_ISSUER`).
    pub iss: String,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expires at, seconds since the epoch.
    pub exp: i64,
    /// Random token id, the key of revocations.
    pub jti: String,
    /// Whether the user is an administrator.
    #[serde(default)]
    pub admin: bool,
}

impl Claims {
    /// When the token expires.
    #[must_use]
    pub fn expires_at(&self) -> Timestamp {
        Timestamp::from_millis(self.exp.saturating_mul(1000))
    }
}

/// Signs and checks tokens with one HS256 key.
pub struct Codec {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
}

impl Codec {
    /// A codec for `secret`, issuing and accepting `issuer`.
    ///
    /// # Errors
    /// The key library refuses the secret (an empty one).
    pub fn new(secret: &[u8], issuer: &str) -> Result<Self, String> {
        let refused = |e: jsonwebtoken::errors::Error| format!("the JWT secret is not usable: {e}");
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        // Tokens are issued and checked by servers that share a clock source; a few
        // seconds absorb drift between instances without extending a token noticeably.
        validation.leeway = 5;
        Ok(Self {
            encoding: EncodingKey::from_secret(secret).map_err(refused)?,
            decoding: DecodingKey::from_secret(secret).map_err(refused)?,
            validation,
            issuer: issuer.to_owned(),
        })
    }

    /// The issuer this codec writes.
    #[must_use]
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Signs `claims`.
    ///
    /// # Errors
    /// [`AuthError::Internal`] if signing fails (it does not for HMAC keys).
    pub fn encode(&self, claims: &Claims) -> Result<String, AuthError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding).map_err(
            |err| {
                tracing::error!(error = %err, "signing a token failed");
                AuthError::Internal
            },
        )
    }

    /// Checks the signature, algorithm, issuer and expiry of `token` (not revocation).
    ///
    /// # Errors
    /// The [`AuthError`] that says what is wrong with the token.
    pub fn decode(&self, token: &str) -> Result<Claims, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::MissingToken);
        }
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() != 3 {
            return Err(AuthError::Malformed(
                "a JWT has three dot-separated parts".to_owned(),
            ));
        }
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[0].trim_end_matches('='))
            .ok()
            .and_then(|raw: Vec<u8>| serde_json::from_slice::<serde_json::Value>(&raw).ok())
            .ok_or_else(|| AuthError::Malformed("its header is not base64url JSON".to_owned()))?;
        match header.get("alg").and_then(serde_json::Value::as_str) {
            Some("HS256") => {}
            Some(other) => return Err(AuthError::Algorithm(shown_alg(other))),
            None => {
                return Err(AuthError::Malformed(
                    "its header names no algorithm".to_owned(),
                ));
            }
        }
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|err| match err.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    AuthError::Malformed("its algorithm is not accepted".to_owned())
                }
                ErrorKind::ImmatureSignature => {
                    AuthError::Malformed("it is not valid yet".to_owned())
                }
                ErrorKind::MissingRequiredClaim(claim) => {
                    AuthError::Malformed(format!("it has no {claim:?} claim"))
                }
                ErrorKind::Json(_) | ErrorKind::InvalidClaimFormat(_) => {
                    AuthError::Malformed("its claims are not the expected JSON".to_owned())
                }
                _ => AuthError::Malformed("it cannot be decoded".to_owned()),
            })
    }
}

/// An algorithm name as shown in a message: short and printable (it came from a client).
fn shown_alg(alg: &str) -> String {
    alg.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(16)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp_offset: i64) -> Claims {
        let now = chrono::Utc::now().timestamp();
        Claims {
            sub: "admin".to_owned(),
            iss: "gitstore".to_owned(),
            iat: now,
            exp: now + exp_offset,
            jti: "01JTEST".to_owned(),
            admin: true,
        }
    }

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn round_trip_and_each_refusal() {
        let codec = Codec::new(KEY, "gitstore").unwrap();
        let token = codec.encode(&claims(60)).unwrap();
        assert_eq!(codec.decode(&token).unwrap().sub, "admin");

        let expired = codec.encode(&claims(-3600)).unwrap();
        assert!(matches!(codec.decode(&expired), Err(AuthError::Expired)));

        let other = Codec::new(b"another key of at least 32 bytes!!", "gitstore").unwrap();
        assert!(matches!(other.decode(&token), Err(AuthError::BadSignature)));

        let elsewhere = Codec::new(KEY, "elsewhere").unwrap();
        assert!(matches!(
            elsewhere.decode(&token),
            Err(AuthError::WrongIssuer)
        ));

        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let body = token.split('.').nth(1).unwrap();
        let none = format!("{}.{body}.", b64.encode(br#"{"alg":"none","typ":"JWT"}"#));
        assert!(matches!(codec.decode(&none), Err(AuthError::Algorithm(a)) if a == "none"));

        assert!(matches!(
            codec.decode("not-a-token"),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(codec.decode(""), Err(AuthError::MissingToken)));
    }
}
