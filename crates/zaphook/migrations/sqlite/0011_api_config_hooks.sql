-- izing's per-API-config hooks (`urlMessageStatus`, `urlServiceStatus`, `authToken`).
-- * api_configs: the integrator's `authToken`, sent as a raw `authorization` header with
--   every hook request.
-- * webhooks: what body an endpoint takes (`whazing`, every endpoint until now; or one of
--   the hooks), and the API config that owns a hook endpoint: at most one of each hook.
-- * tickets: the API config that last used the ticket (its acks go to that config's
--   `urlMessageStatus`).
ALTER TABLE api_configs ADD COLUMN auth_token TEXT;
ALTER TABLE webhooks ADD COLUMN format TEXT NOT NULL DEFAULT 'whazing';
ALTER TABLE webhooks ADD COLUMN api_config_id TEXT;
CREATE UNIQUE INDEX webhooks_api_config_hook ON webhooks (api_config_id, format)
    WHERE api_config_id IS NOT NULL;
ALTER TABLE tickets ADD COLUMN api_config_id TEXT;
