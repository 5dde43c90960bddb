-- Attempts counted per endpoint and minute, by outcome and latency bucket: the dashboard's
-- success rates, latency percentiles and charts add these up instead of reading attempts.
-- `shard` keeps each writer connection's counts apart (PostgreSQL has several; SQLite's one
-- writer uses 0), so no two transactions wait on one counter. No foreign key: a counter must
-- never fail or hold up the batch that records an attempt; readers join the endpoints, and
-- retention prunes the rows of removed ones with the rest.
CREATE TABLE attempt_minutes (
    webhook_id      INTEGER NOT NULL,
    minute          INTEGER NOT NULL,
    shard           INTEGER NOT NULL,
    delivered       INTEGER NOT NULL,
    failed          INTEGER NOT NULL,
    dead            INTEGER NOT NULL,
    latency_ms_sum  INTEGER NOT NULL,
    le_50           INTEGER NOT NULL,
    le_100          INTEGER NOT NULL,
    le_250          INTEGER NOT NULL,
    le_500          INTEGER NOT NULL,
    le_1000         INTEGER NOT NULL,
    le_2500         INTEGER NOT NULL,
    le_5000         INTEGER NOT NULL,
    le_10000        INTEGER NOT NULL,
    over_10000      INTEGER NOT NULL,
    PRIMARY KEY (webhook_id, minute, shard)
);
CREATE INDEX attempt_minutes_age ON attempt_minutes (minute);
