//! Session mutations: `login`, `logout`, `refreshToken`.

use async_graphql::{InputObject, Object, Result, SimpleObject};

use crate::graphql::error::coded;
use crate::graphql::types::AuthSession;

/// Input of `login`.
#[derive(InputObject)]
pub struct LoginInput {
    /// Echoed in the payload.
    pub client_mutation_id: Option<String>,
    /// Login name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// Result of `login` and `refreshToken`.
#[derive(SimpleObject)]
pub struct LoginPayload {
    /// Echo of the input's id.
    pub client_mutation_id: Option<String>,
    /// The new session.
    pub session: Option<AuthSession>,
}

/// Result of `logout`.
#[derive(SimpleObject)]
pub struct LogoutPayload {
    /// Whether the token was revoked.
    pub success: bool,
}

/// Why every session mutation fails until authentication is configured.
fn auth_not_configured() -> async_graphql::Error {
    coded(
        "UNAUTHENTICATED",
        "authentication is not configured on this server; mutations are open",
    )
}

/// Sessions.
#[derive(Default)]
pub struct AuthMutation;

#[Object]
impl AuthMutation {
    /// Exchanges credentials for a token (needs the `GITSTORE_AUTH_*` settings).
    async fn login(&self, input: LoginInput) -> Result<LoginPayload> {
        let _ = (input.username, input.password, input.client_mutation_id);
        Err(auth_not_configured())
    }

    /// Revokes the current token (needs the `GITSTORE_AUTH_*` settings).
    async fn logout(&self) -> Result<LogoutPayload> {
        Err(auth_not_configured())
    }

    /// Swaps a valid token for a fresh one (needs the `GITSTORE_AUTH_*` settings).
    async fn refresh_token(&self) -> Result<LoginPayload> {
        Err(auth_not_configured())
    }
}
