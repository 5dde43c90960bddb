-- A delivery's insert after its pair's lock, in one round trip instead of two. The function
-- is VOLATILE, so its INSERT takes a snapshot of its own after the lock is held: it sees
-- every delivery of the pair that a writer holding the lock before committed, and every
-- finish of one, as the order rule needs (see `deliveries`). In a single statement the
-- snapshot would be taken before the lock's wait and miss them.
-- `pair` is the pair's lock key, NULL for a delivery without an order key.
CREATE FUNCTION insert_delivery(
    p_id TEXT, p_webhook_id BIGINT, p_event_id TEXT, p_event_type TEXT, p_ordering_key BIGINT,
    p_lease BOOLEAN, p_lease_id BIGINT, p_lease_until BIGINT, p_now BIGINT,
    p_company_id BIGINT, p_ticket_id BIGINT, p_pair BIGINT,
    OUT new_seq BIGINT, OUT new_blocked BOOLEAN)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    waits BOOLEAN;
BEGIN
    IF p_pair IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(p_pair);
    END IF;
    -- Blocked behind an unfinished older delivery of the pair; else leased at once when the
    -- caller hands it off.
    waits := p_ordering_key IS NOT NULL AND EXISTS (
        SELECT 1 FROM deliveries
        WHERE webhook_id = p_webhook_id AND ordering_key = p_ordering_key
          AND state IN ('pending', 'delivering', 'failed'));
    INSERT INTO deliveries (id, webhook_id, event_id, event_type, ordering_key, state, blocked,
        lease, next_attempt_at, created_at, company_id, ticket_id)
    VALUES (p_id, p_webhook_id, p_event_id, p_event_type, p_ordering_key,
        CASE WHEN p_lease AND NOT waits THEN 'delivering' ELSE 'pending' END, waits,
        CASE WHEN p_lease AND NOT waits THEN p_lease_id ELSE 0 END,
        CASE WHEN p_lease AND NOT waits THEN p_lease_until ELSE p_now END,
        p_now, p_company_id, p_ticket_id)
    RETURNING seq, blocked INTO new_seq, new_blocked;
END
$$;
