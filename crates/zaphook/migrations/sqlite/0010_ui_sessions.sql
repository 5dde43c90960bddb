-- Dashboard sign-ins: the hash of a session cookie, the API token it was opened with (a
-- revoked token ends its sessions), the token its forms must carry, and when it ends.
CREATE TABLE ui_sessions (
    id_hash     TEXT PRIMARY KEY,
    company_id  INTEGER NOT NULL,
    token_hash  TEXT NOT NULL,
    csrf        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX ui_sessions_expiry ON ui_sessions (expires_at);
