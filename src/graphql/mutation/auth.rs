//! Session mutations: `login`, `logout`, `refreshToken`.
//!
//! The shapes are the Go service's (`LogoutInput`, `RefreshTokenPayload`, …); `logout`
//! and `refreshToken` take their `input` optionally, so operations written against the
//! Go SDL (`input: LogoutInput!`) stay valid. The token they act on is the request's own
//! bearer token ([`Credentials`]); the gate (`crate::graphql::auth`) has already checked
//! it for them, and they check it again because they need its claims.

use async_graphql::{Context, InputObject, Object, Result, SimpleObject};

use crate::auth::{Credentials, Session};
use crate::graphql::auth::{AuthHandle, auth_error};
use crate::graphql::error::coded;
use crate::graphql::scalars::DateTime;
use crate::graphql::types::{AuthSession, User};

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

/// Result of `login`.
#[derive(SimpleObject)]
pub struct LoginPayload {
    /// Echo of the input's id.
    pub client_mutation_id: Option<String>,
    /// The new session.
    pub session: Option<AuthSession>,
}

/// Input of `logout`.
#[derive(InputObject, Default)]
pub struct LogoutInput {
    /// Echoed in the payload.
    pub client_mutation_id: Option<String>,
}

/// Result of `logout`.
#[derive(SimpleObject)]
pub struct LogoutPayload {
    /// Echo of the input's id.
    pub client_mutation_id: Option<String>,
    /// Whether the token was revoked.
    pub success: bool,
}

/// Input of `refreshToken`.
#[derive(InputObject, Default)]
pub struct RefreshTokenInput {
    /// Echoed in the payload.
    pub client_mutation_id: Option<String>,
}

/// Result of `refreshToken`.
#[derive(SimpleObject)]
pub struct RefreshTokenPayload {
    /// Echo of the input's id.
    pub client_mutation_id: Option<String>,
    /// The new session; the presented token is revoked.
    pub session: Option<AuthSession>,
}

/// Why every session mutation fails until authentication is configured.
fn auth_not_configured() -> async_graphql::Error {
    coded(
        "UNAUTHENTICATED",
        "authentication is not configured on this server; mutations are open",
    )
}

fn authenticator<'a>(ctx: &Context<'a>) -> Result<&'a crate::auth::AppAuth> {
    ctx.data_opt::<AuthHandle>()
        .and_then(|handle| handle.0.as_deref())
        .ok_or_else(auth_not_configured)
}

fn credentials<'a>(ctx: &Context<'a>) -> Option<&'a Credentials> {
    ctx.data_opt::<Credentials>()
}

fn authorization<'a>(ctx: &Context<'a>) -> Option<&'a str> {
    credentials(ctx).and_then(|c| c.authorization.as_deref())
}

impl From<Session> for AuthSession {
    fn from(session: Session) -> Self {
        Self {
            token: session.token,
            expires_at: DateTime(session.expires_at),
            user: User {
                username: session.username,
                is_admin: session.is_admin,
            },
        }
    }
}

/// Sessions.
#[derive(Default)]
pub struct AuthMutation;

#[Object]
impl AuthMutation {
    /// Exchanges credentials for a token (needs the `GITSTORE_AUTH_*` settings). Failed
    /// attempts are rate-limited per username and per client address.
    async fn login(&self, ctx: &Context<'_>, input: LoginInput) -> Result<LoginPayload> {
        let auth = authenticator(ctx)?;
        let client = credentials(ctx).and_then(|c| c.client);
        let session = auth
            .login(&input.username, &input.password, client)
            .await
            .map_err(auth_error)?;
        Ok(LoginPayload {
            client_mutation_id: input.client_mutation_id,
            session: Some(session.into()),
        })
    }

    /// Revokes the presented token until it would have expired.
    async fn logout(&self, ctx: &Context<'_>, input: Option<LogoutInput>) -> Result<LogoutPayload> {
        let auth = authenticator(ctx)?;
        auth.logout(authorization(ctx)).await.map_err(auth_error)?;
        Ok(LogoutPayload {
            client_mutation_id: input.unwrap_or_default().client_mutation_id,
            success: true,
        })
    }

    /// Swaps the presented, valid token for a fresh one and revokes the old one.
    async fn refresh_token(
        &self,
        ctx: &Context<'_>,
        input: Option<RefreshTokenInput>,
    ) -> Result<RefreshTokenPayload> {
        let auth = authenticator(ctx)?;
        let session = auth.refresh(authorization(ctx)).await.map_err(auth_error)?;
        Ok(RefreshTokenPayload {
            client_mutation_id: input.unwrap_or_default().client_mutation_id,
            session: Some(session.into()),
        })
    }
}
