-- The Cloud API channel.
-- * connections: the Cloud API settings in columns, the secrets sealed (encrypted with the
--   server's secret key; the plaintext `cloud_config` of earlier versions is sealed at start
--   and cleared), and the connection's health.
-- * contacts: a user may be known by BSUID alone (no phone number) and has a username.
-- * messages: why an outbound message failed, and the channel's original object.
-- * send_jobs: a job per send (a message, or a reaction), with a lease token and the request.
-- * cloud_inbox: verified callback bodies, durable before Meta gets its 200.
-- * media_jobs / media: downloads of inbound media, and the stored files by unguessable key.

ALTER TABLE connections ADD COLUMN phone_number_id TEXT;
ALTER TABLE connections ADD COLUMN graph_base_url TEXT;
ALTER TABLE connections ADD COLUMN graph_version TEXT;
ALTER TABLE connections ADD COLUMN sealed_secrets BLOB;
ALTER TABLE connections ADD COLUMN last_callback_at INTEGER;
ALTER TABLE connections ADD COLUMN last_send_error TEXT;
ALTER TABLE connections ADD COLUMN last_send_error_at INTEGER;
ALTER TABLE connections ADD COLUMN token_refused_at INTEGER;
UPDATE connections SET phone_number_id = json_extract(cloud_config, '$.phoneNumberId'),
    graph_base_url = json_extract(cloud_config, '$.graphBaseUrl')
    WHERE cloud_config IS NOT NULL;
CREATE INDEX connections_phone_number ON connections (company_id, phone_number_id)
    WHERE phone_number_id IS NOT NULL;

CREATE TABLE contacts_new (
    id               INTEGER PRIMARY KEY,
    company_id       INTEGER NOT NULL REFERENCES companies(id),
    number           TEXT,
    bsuid            TEXT,
    username         TEXT,
    name             TEXT NOT NULL,
    pushname         TEXT,
    email            TEXT,
    profile_pic_url  TEXT,
    is_group         INTEGER NOT NULL DEFAULT 0,
    lid              TEXT,
    kanban_id        INTEGER,
    followup_id      INTEGER,
    created_at       INTEGER NOT NULL,
    CHECK (number IS NOT NULL OR bsuid IS NOT NULL)
);
INSERT INTO contacts_new (id, company_id, number, name, pushname, email, profile_pic_url,
        is_group, lid, kanban_id, followup_id, created_at)
    SELECT id, company_id, number, name, pushname, email, profile_pic_url, is_group, lid,
        kanban_id, followup_id, created_at FROM contacts;
DROP TABLE contacts;
ALTER TABLE contacts_new RENAME TO contacts;
CREATE UNIQUE INDEX contacts_number ON contacts (company_id, number) WHERE number IS NOT NULL;
CREATE UNIQUE INDEX contacts_bsuid ON contacts (company_id, bsuid) WHERE bsuid IS NOT NULL;

ALTER TABLE messages ADD COLUMN error_code INTEGER;
ALTER TABLE messages ADD COLUMN error_title TEXT;
ALTER TABLE messages ADD COLUMN original TEXT;

CREATE TABLE send_jobs_new (
    id               TEXT PRIMARY KEY,
    message_id       TEXT NOT NULL,
    company_id       INTEGER NOT NULL,
    connection_id    INTEGER NOT NULL,
    -- `message`: send the message; `reaction`: send a reaction to it.
    kind             TEXT NOT NULL,
    -- What to send beyond the message's own fields (a template, a file name, an emoji), JSON.
    request          TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO send_jobs_new (id, message_id, company_id, connection_id, kind, attempts, next_attempt_at)
    SELECT message_id, message_id, company_id, connection_id, 'message', attempts, next_attempt_at
    FROM send_jobs;
DROP TABLE send_jobs;
ALTER TABLE send_jobs_new RENAME TO send_jobs;
CREATE INDEX send_jobs_due ON send_jobs (next_attempt_at);

CREATE TABLE cloud_inbox (
    id               INTEGER PRIMARY KEY,
    company_id       INTEGER NOT NULL,
    connection_id    INTEGER NOT NULL,
    body             BLOB NOT NULL,
    received_at      INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease            INTEGER NOT NULL DEFAULT 0,
    -- Due when unprocessed; NULL once processed.
    next_attempt_at  INTEGER,
    processed_at     INTEGER,
    error            TEXT
);
CREATE INDEX cloud_inbox_due ON cloud_inbox (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
CREATE INDEX cloud_inbox_waiting ON cloud_inbox (connection_id, id) WHERE next_attempt_at IS NOT NULL;
CREATE INDEX cloud_inbox_processed ON cloud_inbox (processed_at) WHERE processed_at IS NOT NULL;

CREATE TABLE media_jobs (
    message_id       TEXT PRIMARY KEY,
    company_id       INTEGER NOT NULL,
    connection_id    INTEGER NOT NULL,
    media_id         TEXT NOT NULL,
    sha256           TEXT,
    mime_type        TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    last_error       TEXT
) WITHOUT ROWID;
CREATE INDEX media_jobs_due ON media_jobs (next_attempt_at);

CREATE TABLE media (
    key         TEXT PRIMARY KEY,
    company_id  INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    mime_type   TEXT,
    size        INTEGER NOT NULL,
    file_name   TEXT,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;

-- A value sealed with the secret key the database was set up with, so a server started with
-- another key says so at once instead of failing on the first callback.
CREATE TABLE secret_check (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    sealed  BLOB NOT NULL
);
