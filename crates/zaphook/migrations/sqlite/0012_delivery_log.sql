-- The dashboard's delivery log and recoveries.
-- * Each delivery carries its company and its event's ticket, so the log of one company,
--   narrowed by ticket or state or endpoint, walks one index newest first (by creation time,
--   then seq, the rowid every index ends with) and never the whole table.
-- * The state index holds only deliveries not delivered (the few that change state, or
--   failed and dead ones): a delivered one leaves it, so the common path does not pay for it.
-- * A recovery is a row of its own; the deliveries it queued again carry its id, so its
--   progress is counted over them alone.
-- * An attempt keeps the request's headers as sent (the signature depends on the attempt).
ALTER TABLE deliveries ADD COLUMN company_id INTEGER;
ALTER TABLE deliveries ADD COLUMN ticket_id INTEGER;
ALTER TABLE deliveries ADD COLUMN recovery_id INTEGER;
UPDATE deliveries SET
    company_id = (SELECT e.company_id FROM events e WHERE e.id = deliveries.event_id),
    ticket_id = (SELECT e.ticket_id FROM events e WHERE e.id = deliveries.event_id);
CREATE INDEX deliveries_log ON deliveries (company_id, created_at);
CREATE INDEX deliveries_log_webhook ON deliveries (webhook_id, created_at);
CREATE INDEX deliveries_log_state ON deliveries (company_id, state, created_at)
    WHERE state <> 'delivered';
CREATE INDEX deliveries_log_ticket ON deliveries (company_id, ticket_id, created_at)
    WHERE ticket_id IS NOT NULL;
CREATE INDEX deliveries_recovery ON deliveries (recovery_id) WHERE recovery_id IS NOT NULL;

CREATE TABLE recoveries (
    id          INTEGER PRIMARY KEY,
    company_id  INTEGER NOT NULL,
    webhook_id  INTEGER NOT NULL,
    since       INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    queued      INTEGER NOT NULL
);
CREATE INDEX recoveries_company ON recoveries (company_id, id);

ALTER TABLE attempts ADD COLUMN request_headers TEXT;
