-- WHAZING's webhook filters and its "start the integration on transfer" option. The defaults
-- are what every endpoint received before them: everything, without the media's bytes.
ALTER TABLE webhooks ADD COLUMN filter_received INTEGER NOT NULL DEFAULT 1;
ALTER TABLE webhooks ADD COLUMN filter_sent INTEGER NOT NULL DEFAULT 1;
ALTER TABLE webhooks ADD COLUMN filter_ticket_open INTEGER NOT NULL DEFAULT 1;
ALTER TABLE webhooks ADD COLUMN filter_ticket_pending INTEGER NOT NULL DEFAULT 1;
ALTER TABLE webhooks ADD COLUMN media_base64 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE webhooks ADD COLUMN start_on_transfer INTEGER NOT NULL DEFAULT 0;
-- The stored file (its SHA-256) whose bytes go in `mediaBase64` for the endpoints that ask.
ALTER TABLE events ADD COLUMN media_sha256 TEXT;
