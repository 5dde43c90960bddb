-- At most one open or pending ticket per contact and connection, held by the database rather
-- than by a check before the insert (which a second writer, or a second node on a shared
-- database, could race). Should an older database hold two, the newer stays active and the
-- older is closed, so the index can be built.
UPDATE tickets SET status = 'closed'
    WHERE status IN ('pending', 'open')
      AND EXISTS (SELECT 1 FROM tickets newer
                  WHERE newer.connection_id = tickets.connection_id
                    AND newer.contact_id = tickets.contact_id
                    AND newer.status IN ('pending', 'open')
                    AND newer.id > tickets.id);
DROP INDEX tickets_active;
CREATE UNIQUE INDEX tickets_active ON tickets (connection_id, contact_id)
    WHERE status IN ('pending', 'open');
