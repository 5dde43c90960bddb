-- A group commit's deliveries in one round trip: `insert_delivery` (migration 11) for each
-- element of the arrays, in their order, answering each one's seq and whether it is blocked.
-- Each insert is a statement of its own, so it sees the ones before it in the transaction
-- (a later delivery of the same pair waits behind an earlier one), and it runs after its
-- pair's lock, as the order rule needs.
CREATE FUNCTION insert_deliveries(
    p_ids TEXT[], p_webhook_ids BIGINT[], p_event_ids TEXT[], p_event_types TEXT[],
    p_ordering_keys BIGINT[], p_leases BOOLEAN[], p_lease_ids BIGINT[],
    p_lease_untils BIGINT[], p_nows BIGINT[], p_company_ids BIGINT[], p_ticket_ids BIGINT[],
    p_pairs BIGINT[])
RETURNS TABLE (inserted_seq BIGINT, inserted_blocked BOOLEAN)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
        SELECT d.new_seq, d.new_blocked INTO inserted_seq, inserted_blocked
        FROM insert_delivery(p_ids[i], p_webhook_ids[i], p_event_ids[i], p_event_types[i],
            p_ordering_keys[i], p_leases[i], p_lease_ids[i], p_lease_untils[i], p_nows[i],
            p_company_ids[i], p_ticket_ids[i], p_pairs[i]) AS d;
        RETURN NEXT;
    END LOOP;
END
$$;
