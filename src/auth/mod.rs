//! Authentication: one administrator, bcrypt-checked passwords, HS256 session tokens,
//! revocations kept in the datastore, failed-login rate limiting.
//!
//! [`Auth`] is framework-free: the GraphQL layer guards mutations with it and serves
//! `login`/`logout`/`refreshToken`, the HTTP layer serves `POST /api/login` and hands the
//! raw `Authorization` header and the client address down as [`Credentials`].
//!
//! # Revocation
//! `logout` and `refreshToken` store the token's `jti` with its expiry through the
//! [`Datastore`] (`revoke_token`), and every check asks the datastore
//! (`is_token_revoked`), so instances that share a SQLite file or a Scylla keyspace
//! agree at once; a revocation is dropped when the token would have expired anyway.
//!
//! # Passwords
//! bcrypt verification (constant-time, deliberately slow) runs on the blocking pool
//! (`spawn_blocking`), never on an async worker. An unknown username is verified against
//! the configured hash all the same, so timing does not tell which part was wrong.

pub mod limiter;
pub mod token;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::AuthSettings;
use crate::datastore::{AnyDatastore, Datastore, Instrumented, Timestamp};
pub use limiter::Limiter;
pub use token::{Claims, Codec};

/// Name of the failed-login counter.
pub const FAILED_LOGINS_METRIC: &str = "gitstore_auth_failed_logins_total";

/// The authenticator as the server runs it.
pub type AppAuth = Auth<Instrumented<AnyDatastore>>;

/// What a request carries for authentication, as the transport received it.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    /// The raw `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The client's address, if known (rate limiting).
    pub client: Option<IpAddr>,
}

/// A signed-in session.
#[derive(Clone, Debug)]
pub struct Session {
    /// The bearer token.
    pub token: String,
    /// When it stops being accepted.
    pub expires_at: Timestamp,
    /// Its user.
    pub username: String,
    /// Whether the user is an administrator.
    pub is_admin: bool,
}

/// Why a request is not authenticated. Messages say which problem it is and never
/// contain the secret or the token.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The server has no `GITSTORE_AUTH_*` settings.
    #[error("authentication is not configured on this server; mutations are open")]
    NotConfigured,
    /// No `Authorization` header (or an empty token).
    #[error(
        "authentication required: send the header Authorization: Bearer <token> (log in to get one)"
    )]
    MissingToken,
    /// The header is not `Bearer <token>`.
    #[error("the Authorization header must be Bearer <token>")]
    NotBearer,
    /// Not a decodable JWT.
    #[error("token is malformed: {0}")]
    Malformed(String),
    /// Past its expiry.
    #[error("token has expired; log in again")]
    Expired,
    /// Not signed with this server's key.
    #[error("token signature is invalid")]
    BadSignature,
    /// Issued by someone else.
    #[error("token was not issued by this server (wrong issuer)")]
    WrongIssuer,
    /// Signed with another algorithm, or `none`.
    #[error("token algorithm {0:?} is not accepted; tokens are HS256")]
    Algorithm(String),
    /// Logged out or refreshed.
    #[error("token has been revoked; log in again")]
    Revoked,
    /// Wrong username or password.
    #[error("invalid username or password")]
    BadCredentials,
    /// Too many failed logins for this username or address.
    #[error("too many attempts: login failed too often; try again in {} s", .retry_after.as_secs().max(1))]
    TooManyAttempts {
        /// When the next attempt may succeed.
        retry_after: Duration,
    },
    /// The revocation store did not answer (already logged).
    #[error("{0}")]
    Store(#[from] crate::error::Error),
    /// A bug (already logged).
    #[error("internal error")]
    Internal,
}

impl AuthError {
    /// Whether this is the client's authentication problem (`UNAUTHENTICATED`), as
    /// opposed to a backend failure.
    #[must_use]
    pub const fn is_unauthenticated(&self) -> bool {
        !matches!(self, Self::Store(_) | Self::Internal)
    }
}

/// The authenticator: checks credentials, issues, verifies and revokes tokens.
pub struct Auth<D> {
    username: String,
    password_hash: Arc<str>,
    duration: Duration,
    codec: Codec,
    limiter: Limiter,
    store: D,
}

impl<D> std::fmt::Debug for Auth<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("username", &self.username)
            .field("issuer", &self.codec.issuer())
            .field("duration", &self.duration)
            .finish_non_exhaustive()
    }
}

impl<D: Datastore> Auth<D> {
    /// An authenticator for `settings`, keeping revocations in `store`.
    ///
    /// # Errors
    /// The signing key cannot be built from the secret.
    pub fn new(settings: &AuthSettings, store: D) -> Result<Self, String> {
        Ok(Self {
            username: settings.admin_username.clone(),
            password_hash: Arc::from(settings.admin_password_hash.expose()),
            duration: settings.jwt_duration,
            codec: Codec::new(
                settings.jwt_secret.expose().as_bytes(),
                &settings.jwt_issuer,
            )?,
            limiter: Limiter::default(),
            store,
        })
    }

    /// Checks `username` and `password` and opens a session.
    ///
    /// # Errors
    /// [`AuthError::TooManyAttempts`] after too many failures for the username or the
    /// client address; [`AuthError::BadCredentials`]; [`AuthError::Internal`].
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<Session, AuthError> {
        let mut keys = vec![format!("user:{}", username.to_lowercase())];
        if let Some(addr) = client {
            keys.push(format!("addr:{addr}"));
        }
        if let Err(retry_after) = self.limiter.check(&keys) {
            metrics::counter!(FAILED_LOGINS_METRIC, "reason" => "rate_limited").increment(1);
            tracing::warn!(client = ?client, "login refused: too many failed attempts");
            return Err(AuthError::TooManyAttempts { retry_after });
        }
        let hash = self.password_hash.clone();
        let password = password.to_owned();
        let password_ok = tokio::task::spawn_blocking(move || {
            bcrypt::verify(password.as_bytes(), &hash).unwrap_or(false)
        })
        .await
        .map_err(|err| {
            tracing::error!(error = %err, "password check task failed");
            AuthError::Internal
        })?;
        // Both parts are always evaluated (the hash above runs for any username).
        let user_ok = username == self.username;
        if !(user_ok & password_ok) {
            self.limiter.fail(&keys);
            metrics::counter!(FAILED_LOGINS_METRIC, "reason" => "bad_credentials").increment(1);
            tracing::info!(client = ?client, "login failed: invalid username or password");
            return Err(AuthError::BadCredentials);
        }
        self.limiter.clear(&keys[0]);
        self.issue()
    }

    /// A fresh token for the administrator.
    fn issue(&self) -> Result<Session, AuthError> {
        let now = chrono::Utc::now().timestamp();
        let lifetime = i64::try_from(self.duration.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = Claims {
            sub: self.username.clone(),
            iss: self.codec.issuer().to_owned(),
            iat: now,
            exp: now.saturating_add(lifetime.max(1)),
            jti: ulid::Ulid::new().to_string(),
            admin: true,
        };
        let token = self.codec.encode(&claims)?;
        Ok(Session {
            token,
            expires_at: claims.expires_at(),
            username: claims.sub,
            is_admin: claims.admin,
        })
    }

    /// Verifies the bearer token of an `Authorization` header value: signature,
    /// algorithm, issuer, expiry and revocation.
    ///
    /// # Errors
    /// The [`AuthError`] saying what is wrong, or [`AuthError::Store`] when revocations
    /// cannot be read.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Claims, AuthError> {
        let token = bearer(authorization)?;
        let claims = self.codec.decode(token)?;
        if self
            .store
            .is_token_revoked(&claims.jti)
            .await
            .map_err(crate::error::Error::from)?
        {
            return Err(AuthError::Revoked);
        }
        Ok(claims)
    }

    /// Revokes the presented token until it would have expired.
    ///
    /// # Errors
    /// As [`Auth::authenticate`].
    pub async fn logout(&self, authorization: Option<&str>) -> Result<(), AuthError> {
        let claims = self.authenticate(authorization).await?;
        self.revoke(&claims).await
    }

    /// Swaps a valid token for a fresh one and revokes the old one.
    ///
    /// # Errors
    /// As [`Auth::authenticate`].
    pub async fn refresh(&self, authorization: Option<&str>) -> Result<Session, AuthError> {
        let claims = self.authenticate(authorization).await?;
        let session = self.issue()?;
        self.revoke(&claims).await?;
        Ok(session)
    }

    async fn revoke(&self, claims: &Claims) -> Result<(), AuthError> {
        self.store
            .revoke_token(&claims.jti, claims.expires_at())
            .await
            .map_err(crate::error::Error::from)?;
        Ok(())
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
fn bearer(authorization: Option<&str>) -> Result<&str, AuthError> {
    let value = authorization.map(str::trim).unwrap_or_default();
    if value.is_empty() || value.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::MissingToken);
    }
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::NotBearer);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::MissingToken);
    }
    Ok(token)
}

/// A bcrypt hash of `password` at `cost` (`bcrypt::DEFAULT_COST` is 12).
///
/// # Errors
/// An empty password, or a cost bcrypt refuses.
pub fn hash_password(password: &str, cost: u32) -> Result<String, String> {
    if password.is_empty() {
        return Err("the password is empty".to_owned());
    }
    bcrypt::hash(password, cost).map_err(|e| format!("cannot hash the password: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_headers() {
        assert_eq!(bearer(Some("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer(Some("bearer  abc ")).unwrap(), "abc");
        assert!(matches!(bearer(None), Err(AuthError::MissingToken)));
        assert!(matches!(
            bearer(Some("Bearer ")),
            Err(AuthError::MissingToken)
        ));
        assert!(matches!(
            bearer(Some("Basic YTpi")),
            Err(AuthError::NotBearer)
        ));
        assert!(matches!(bearer(Some("abc")), Err(AuthError::NotBearer)));
    }
}
