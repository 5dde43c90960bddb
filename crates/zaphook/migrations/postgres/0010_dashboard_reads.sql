-- Attempts counted per endpoint and minute, by outcome and latency bucket: the dashboard's
-- success rates, latency percentiles and charts add these up instead of reading attempts.
-- `shard` keeps each writer connection's counts apart (PostgreSQL has several; SQLite's one
-- writer uses 0), so no two transactions wait on one counter. No foreign key: a counter must
-- never fail or hold up the batch that records an attempt; readers join the endpoints, and
-- retention prunes the rows of removed ones with the rest.
CREATE TABLE attempt_minutes (
    webhook_id      BIGINT NOT NULL,
    minute          BIGINT NOT NULL,
    shard           BIGINT NOT NULL,
    delivered       BIGINT NOT NULL,
    failed          BIGINT NOT NULL,
    dead            BIGINT NOT NULL,
    latency_ms_sum  BIGINT NOT NULL,
    le_50           BIGINT NOT NULL,
    le_100          BIGINT NOT NULL,
    le_250          BIGINT NOT NULL,
    le_500          BIGINT NOT NULL,
    le_1000         BIGINT NOT NULL,
    le_2500         BIGINT NOT NULL,
    le_5000         BIGINT NOT NULL,
    le_10000        BIGINT NOT NULL,
    over_10000      BIGINT NOT NULL,
    PRIMARY KEY (webhook_id, minute, shard)
);
CREATE INDEX attempt_minutes_age ON attempt_minutes (minute);
