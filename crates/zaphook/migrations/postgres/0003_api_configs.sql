-- Keys to the WHAZING external API (/v1/api/external/{apiId}): each belongs to one
-- connection; its token is kept as a hash.
CREATE TABLE api_configs (
    id            TEXT PRIMARY KEY,
    company_id    BIGINT NOT NULL,
    connection_id BIGINT NOT NULL,
    name          TEXT NOT NULL,
    token_prefix  TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    created_at    BIGINT NOT NULL,
    revoked_at    BIGINT
);
CREATE INDEX api_configs_connection ON api_configs (company_id, connection_id);
