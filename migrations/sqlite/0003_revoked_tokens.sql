-- Revoked session tokens (logout, refreshToken), shared by every instance on this file.
-- A row is only needed until the token would have expired anyway (`expires_at`, Unix
-- milliseconds); expired rows are deleted by the next revocation.

CREATE TABLE revoked_tokens (
    jti TEXT PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX revoked_tokens_by_expiry ON revoked_tokens (expires_at);
