-- Cheaper upkeep of the indexes over unfinished deliveries, which change on every hand-off
-- and every finish:
-- * claims look for due deliveries per endpoint, so the global due index goes;
-- * "unfinished" is `state NOT IN ('delivered', 'dead')`: SQLite checks a list of two or
--   fewer inline, but builds a temporary table for every statement that checks a longer one
--   (as `state IN ('pending', 'delivering', 'failed')` did, in each partial index too).
DROP INDEX deliveries_due;
DROP INDEX deliveries_webhook_due;
DROP INDEX deliveries_order;
CREATE INDEX deliveries_webhook_due ON deliveries (webhook_id, next_attempt_at)
    WHERE state NOT IN ('delivered', 'dead') AND blocked = 0;
CREATE INDEX deliveries_order ON deliveries (webhook_id, ordering_key, seq)
    WHERE state NOT IN ('delivered', 'dead') AND ordering_key IS NOT NULL;
