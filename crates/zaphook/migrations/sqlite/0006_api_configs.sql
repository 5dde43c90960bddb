-- Keys to the WHAZING external API (/v1/api/external/{apiId}): each belongs to one
-- connection; its token is kept as a hash.
CREATE TABLE api_configs (
    id            TEXT PRIMARY KEY,
    company_id    INTEGER NOT NULL,
    connection_id INTEGER NOT NULL,
    name          TEXT NOT NULL,
    token_prefix  TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    revoked_at    INTEGER
);
CREATE INDEX api_configs_connection ON api_configs (company_id, connection_id);
