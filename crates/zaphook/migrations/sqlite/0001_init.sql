-- zaphook schema, SQLite. Times are Unix milliseconds.

CREATE TABLE companies (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    id          INTEGER PRIMARY KEY,
    company_id  INTEGER NOT NULL REFERENCES companies(id),
    prefix      TEXT NOT NULL,
    hash        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE TABLE connections (
    id            INTEGER PRIMARY KEY,
    company_id    INTEGER NOT NULL REFERENCES companies(id),
    name          TEXT NOT NULL,
    channel       TEXT NOT NULL,
    cloud_config  TEXT,
    created_at    INTEGER NOT NULL
);

CREATE TABLE queues (
    id          INTEGER PRIMARY KEY,
    company_id  INTEGER NOT NULL REFERENCES companies(id),
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE users (
    id          INTEGER PRIMARY KEY,
    company_id  INTEGER NOT NULL REFERENCES companies(id),
    name        TEXT NOT NULL,
    email       TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE contacts (
    id               INTEGER PRIMARY KEY,
    company_id       INTEGER NOT NULL REFERENCES companies(id),
    number           TEXT NOT NULL,
    name             TEXT NOT NULL,
    pushname         TEXT,
    email            TEXT,
    profile_pic_url  TEXT,
    is_group         INTEGER NOT NULL DEFAULT 0,
    lid              TEXT,
    kanban_id        INTEGER,
    followup_id      INTEGER,
    created_at       INTEGER NOT NULL,
    UNIQUE (company_id, number)
);

CREATE TABLE tickets (
    id             INTEGER PRIMARY KEY,
    company_id     INTEGER NOT NULL REFERENCES companies(id),
    connection_id  INTEGER NOT NULL REFERENCES connections(id),
    contact_id     INTEGER NOT NULL REFERENCES contacts(id),
    status         TEXT NOT NULL,
    protocol       TEXT NOT NULL,
    queue_id       INTEGER REFERENCES queues(id),
    user_id        INTEGER REFERENCES users(id),
    is_group       INTEGER NOT NULL DEFAULT 0,
    external_key   TEXT,
    last_message   TEXT NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
CREATE INDEX tickets_active ON tickets (connection_id, contact_id) WHERE status IN ('pending', 'open');
CREATE INDEX tickets_company ON tickets (company_id, id);

CREATE TABLE messages (
    id                 TEXT PRIMARY KEY,
    company_id         INTEGER NOT NULL REFERENCES companies(id),
    connection_id      INTEGER NOT NULL REFERENCES connections(id),
    ticket_id          INTEGER NOT NULL REFERENCES tickets(id),
    contact_id         INTEGER NOT NULL REFERENCES contacts(id),
    message_id         TEXT,
    body               TEXT NOT NULL,
    timestamp          INTEGER NOT NULL,
    status             TEXT NOT NULL,
    from_me            INTEGER NOT NULL,
    media_type         TEXT NOT NULL,
    media_url          TEXT,
    is_deleted         INTEGER NOT NULL DEFAULT 0,
    send_type          TEXT,
    edited             INTEGER NOT NULL DEFAULT 0,
    quoted_message_id  TEXT,
    user_id            INTEGER REFERENCES users(id),
    created_at         INTEGER NOT NULL
) WITHOUT ROWID;
CREATE UNIQUE INDEX messages_channel_id ON messages (connection_id, message_id) WHERE message_id IS NOT NULL;
CREATE INDEX messages_company_channel_id ON messages (company_id, message_id);
CREATE INDEX messages_ticket ON messages (ticket_id, id);

CREATE TABLE reactions (
    message_id  TEXT NOT NULL REFERENCES messages(id),
    reactor     TEXT NOT NULL,
    emoji       TEXT NOT NULL,
    from_me     INTEGER NOT NULL,
    user_id     INTEGER,
    contact_id  INTEGER,
    timestamp   INTEGER NOT NULL,
    PRIMARY KEY (message_id, reactor)
) WITHOUT ROWID;

CREATE TABLE send_jobs (
    message_id       TEXT PRIMARY KEY REFERENCES messages(id),
    company_id       INTEGER NOT NULL,
    connection_id    INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX send_jobs_due ON send_jobs (next_attempt_at);

CREATE TABLE webhooks (
    id                     INTEGER PRIMARY KEY,
    company_id             INTEGER NOT NULL REFERENCES companies(id),
    url                    TEXT NOT NULL,
    events                 TEXT NOT NULL,
    connection_id          INTEGER,
    queue_id               INTEGER,
    include_groups         INTEGER NOT NULL,
    ordering               TEXT NOT NULL,
    token                  TEXT,
    secret                 TEXT NOT NULL,
    previous_secret        TEXT,
    previous_secret_until  INTEGER,
    description            TEXT,
    enabled                INTEGER NOT NULL,
    disabled_reason        TEXT,
    rate_limit             INTEGER,
    failing_since          INTEGER,
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL
);

CREATE TABLE events (
    id          TEXT PRIMARY KEY,
    company_id  INTEGER NOT NULL,
    event_type  TEXT NOT NULL,
    ticket_id   INTEGER,
    payload     TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;

-- One row per (event, endpoint). `seq` is the commit order that per-ticket ordering follows.
-- state: pending | delivering (leased until next_attempt_at) | delivered | failed | dead.
-- `blocked`: an older delivery of the same endpoint and ticket is not finished yet; the one
-- that finishes unblocks the next, so claims never scan deliveries that must wait.
CREATE TABLE deliveries (
    seq               INTEGER PRIMARY KEY,
    id                TEXT NOT NULL UNIQUE,
    webhook_id        INTEGER NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_id          TEXT NOT NULL REFERENCES events(id),
    event_type        TEXT NOT NULL,
    ordering_key      INTEGER,
    state             TEXT NOT NULL,
    blocked           INTEGER NOT NULL DEFAULT 0,
    attempts          INTEGER NOT NULL DEFAULT 0,
    lease             INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   INTEGER NOT NULL,
    last_status_code  INTEGER,
    created_at        INTEGER NOT NULL,
    delivered_at      INTEGER,
    recovered_at      INTEGER
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at)
    WHERE state IN ('pending', 'delivering', 'failed') AND blocked = 0;
CREATE INDEX deliveries_webhook_due ON deliveries (webhook_id, next_attempt_at)
    WHERE state IN ('pending', 'delivering', 'failed') AND blocked = 0;
CREATE INDEX deliveries_order ON deliveries (webhook_id, ordering_key, seq)
    WHERE state IN ('pending', 'delivering', 'failed') AND ordering_key IS NOT NULL;
CREATE INDEX deliveries_webhook ON deliveries (webhook_id, seq);
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_finished ON deliveries (created_at) WHERE state IN ('delivered', 'dead');
CREATE INDEX events_created ON events (created_at);

CREATE TABLE attempts (
    id             INTEGER PRIMARY KEY,
    delivery_seq   INTEGER NOT NULL REFERENCES deliveries(seq) ON DELETE CASCADE,
    at             INTEGER NOT NULL,
    status_code    INTEGER,
    latency_ms     INTEGER NOT NULL,
    error          TEXT,
    response_body  TEXT
);
CREATE INDEX attempts_delivery ON attempts (delivery_seq);
