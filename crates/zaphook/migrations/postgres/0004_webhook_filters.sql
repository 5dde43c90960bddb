-- WHAZING's webhook filters and its "start the integration on transfer" option. The defaults
-- are what every endpoint received before them: everything, without the media's bytes.
ALTER TABLE webhooks
    ADD COLUMN filter_received BOOLEAN NOT NULL DEFAULT TRUE,
    ADD COLUMN filter_sent BOOLEAN NOT NULL DEFAULT TRUE,
    ADD COLUMN filter_ticket_open BOOLEAN NOT NULL DEFAULT TRUE,
    ADD COLUMN filter_ticket_pending BOOLEAN NOT NULL DEFAULT TRUE,
    ADD COLUMN media_base64 BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN start_on_transfer BOOLEAN NOT NULL DEFAULT FALSE;
-- The stored file (its SHA-256) whose bytes go in `mediaBase64` for the endpoints that ask.
ALTER TABLE events ADD COLUMN media_sha256 TEXT;
