//! Authentication settings (`GITSTORE_AUTH_*`) and their validation.

use std::time::Duration;

use clap::Args;

use super::{Secret, parse_duration};

/// Authentication settings: all three of username, password hash and JWT secret turn
/// authentication on; none leaves mutations open; some but not all is refused
/// ([`AuthConfig::settings`]).
#[derive(Args, Debug, Clone)]
pub struct AuthConfig {
    /// Login name of the administrator.
    #[arg(
        long = "auth-admin-username",
        env = "GITSTORE_AUTH_ADMIN_USERNAME",
        global = true
    )]
    pub admin_username: Option<String>,
    /// bcrypt hash of the administrator's password (`gitstore-api hash-password` makes one;
    /// never logged).
    #[arg(
        long = "auth-admin-password-hash",
        env = "GITSTORE_AUTH_ADMIN_PASSWORD_HASH",
        hide_env_values = true,
        global = true
    )]
    pub admin_password_hash: Option<Secret>,
    /// Key that signs tokens (HS256), at least 32 bytes (never logged).
    #[arg(
        long = "auth-jwt-secret",
        env = "GITSTORE_AUTH_JWT_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub jwt_secret: Option<Secret>,
    /// Lifetime of a token (e.g. `24h`, `30m`).
    #[arg(long = "auth-jwt-duration", env = "GITSTORE_AUTH_JWT_DURATION", default_value = "24h", value_parser = parse_duration, global = true)]
    pub jwt_duration: Duration,
    /// Issuer written into tokens and required of presented ones.
    #[arg(
        long = "auth-jwt-issuer",
        env = "GITSTORE_AUTH_JWT_ISSUER",
        default_value = "gitstore",
        global = true
    )]
    pub jwt_issuer: String,
}

/// Shortest accepted JWT secret, in bytes (HS256 keys should be as long as the hash).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// Validated authentication settings: what [`crate::auth::Auth`] needs.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Login name of the administrator.
    pub admin_username: String,
    /// bcrypt hash of the administrator's password.
    pub admin_password_hash: Secret,
    /// HS256 signing key.
    pub jwt_secret: Secret,
    /// Lifetime of a token.
    pub jwt_duration: Duration,
    /// Issuer of tokens.
    pub jwt_issuer: String,
}

impl AuthConfig {
    /// The settings when authentication is on, `None` when none of the three required
    /// settings is given.
    ///
    /// # Errors
    /// A message naming the missing variables when only some are set, or saying what is
    /// wrong with the secret, the hash, the duration or the issuer (never their values).
    pub fn settings(&self) -> Result<Option<AuthSettings>, String> {
        let username = self
            .admin_username
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty());
        let hash = self
            .admin_password_hash
            .as_ref()
            .filter(|h| !h.expose().trim().is_empty());
        let secret = self.jwt_secret.as_ref().filter(|s| !s.expose().is_empty());
        let missing: Vec<&str> = [
            ("GITSTORE_AUTH_ADMIN_USERNAME", username.is_none()),
            ("GITSTORE_AUTH_ADMIN_PASSWORD_HASH", hash.is_none()),
            ("GITSTORE_AUTH_JWT_SECRET", secret.is_none()),
        ]
        .into_iter()
        .filter_map(|(name, absent)| absent.then_some(name))
        .collect();
        let (Some(username), Some(hash), Some(secret)) = (username, hash, secret) else {
            if missing.len() == 3 {
                return Ok(None);
            }
            return Err(format!(
                "authentication is only partly configured: {} must be set too \
                 (set all three of GITSTORE_AUTH_ADMIN_USERNAME, \
                 GITSTORE_AUTH_ADMIN_PASSWORD_HASH and GITSTORE_AUTH_JWT_SECRET, or none)",
                missing.join(", ")
            ));
        };
        let secret_len = secret.expose().len();
        if secret_len < MIN_JWT_SECRET_BYTES {
            return Err(format!(
                "GITSTORE_AUTH_JWT_SECRET is {secret_len} bytes long; it must be at least \
                 {MIN_JWT_SECRET_BYTES} (e.g. `openssl rand -base64 48`)"
            ));
        }
        let hash_text = hash.expose().trim();
        let is_bcrypt = ["$2a$", "$2b$", "$2y$"]
            .iter()
            .any(|p| hash_text.starts_with(p))
            && hash_text.len() == 60;
        if !is_bcrypt {
            return Err(
                "GITSTORE_AUTH_ADMIN_PASSWORD_HASH is not a bcrypt hash (60 characters \
                 starting with $2a$, $2b$ or $2y$; `gitstore-api hash-password` makes one)"
                    .to_owned(),
            );
        }
        if self.jwt_duration.is_zero() {
            return Err("GITSTORE_AUTH_JWT_DURATION must be longer than zero".to_owned());
        }
        if self.jwt_issuer.trim().is_empty() {
            return Err("GITSTORE_AUTH_JWT_ISSUER must not be empty".to_owned());
        }
        Ok(Some(AuthSettings {
            admin_username: username.to_owned(),
            admin_password_hash: Secret(hash_text.to_owned()),
            jwt_secret: secret.clone(),
            jwt_duration: self.jwt_duration,
            jwt_issuer: self.jwt_issuer.clone(),
        }))
    }
}
