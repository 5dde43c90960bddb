//! What the dashboard reads, in SQLite, and the attempt counts a batch writes before it
//! commits.

use std::sync::LazyLock;

use rusqlite::{Connection, OptionalExtension, ToSql, params};

use super::rows::wire;
use super::tx::SqliteTx;
use crate::domain::{DeliveryStatus, EventType};
use crate::store::dashboard::{
    AttemptTally, Counts, DashboardTx, EventDelivery, TALLY_COLUMNS, TICKET_EVENT_ROWS,
    TicketEvent, group_events, message_of,
};
use crate::store::{EndpointBacklog, StoreResult};

/// `sum(delivered), sum(failed), …` over the counters.
fn sums() -> String {
    TALLY_COLUMNS
        .iter()
        .map(|c| format!("coalesce(sum({c}), 0)"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn tally(r: &rusqlite::Row<'_>, from: usize) -> rusqlite::Result<AttemptTally> {
    let mut columns = [0; TALLY_COLUMNS.len()];
    for (i, c) in columns.iter_mut().enumerate() {
        *c = r.get(from + i)?;
    }
    Ok(AttemptTally::from_columns(columns))
}

/// Adds an attempt's counts to its endpoint's row of that minute.
static COUNT_ATTEMPT: LazyLock<String> = LazyLock::new(|| {
    let values = (4..4 + TALLY_COLUMNS.len())
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let adds = TALLY_COLUMNS
        .iter()
        .map(|c| format!("{c} = {c} + excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO attempt_minutes (webhook_id, minute, shard, {})
         VALUES (?1, ?2, ?3, {values})
         ON CONFLICT (webhook_id, minute, shard) DO UPDATE SET {adds}",
        TALLY_COLUMNS.join(", ")
    )
});

/// Writes a batch's counts, inside its transaction (SQLite has one writer, so one shard).
pub(super) fn write_counts(conn: &Connection, counts: &Counts) -> rusqlite::Result<()> {
    if counts.is_empty() {
        return Ok(());
    }
    let mut stmt = conn.prepare_cached(&COUNT_ATTEMPT)?;
    for (webhook_id, minute, tally) in counts.rows() {
        let columns = tally.columns();
        let mut values: Vec<&dyn ToSql> = vec![&webhook_id, &minute, &0i64];
        values.extend(columns.iter().map(|c| c as &dyn ToSql));
        stmt.execute(values.as_slice())?;
    }
    Ok(())
}

impl DashboardTx for SqliteTx<'_> {
    fn attempt_tally(&mut self, webhook_id: i64, since: i64) -> StoreResult<AttemptTally> {
        let sql = format!(
            "SELECT {} FROM attempt_minutes WHERE webhook_id = ?1 AND minute >= ?2",
            sums()
        );
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row(params![webhook_id, since], |r| tally(r, 0))?)
    }

    fn attempt_minutes(
        &mut self,
        company_id: i64,
        webhook_id: Option<i64>,
        since: i64,
    ) -> StoreResult<Vec<(i64, AttemptTally)>> {
        let sql = format!(
            "SELECT m.minute, {} FROM attempt_minutes m JOIN webhooks w ON w.id = m.webhook_id
             WHERE w.company_id = ?1 AND (?2 IS NULL OR m.webhook_id = ?2) AND m.minute >= ?3
             GROUP BY m.minute ORDER BY m.minute",
            sums()
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![company_id, webhook_id, since], |r| {
            Ok((r.get(0)?, tally(r, 1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn backlog(&mut self, webhook_id: i64) -> StoreResult<Option<EndpointBacklog>> {
        // As `backlogs`, for one endpoint: its part of the two partial indexes.
        let found: Option<(i64, Option<i64>)> = self
            .conn
            .prepare_cached(
                "SELECT count(*), min(created_at) FROM (
                    SELECT created_at FROM deliveries INDEXED BY deliveries_webhook_due
                    WHERE webhook_id = ?1 AND state NOT IN ('delivered', 'dead') AND blocked = 0
                    UNION ALL
                    SELECT created_at FROM deliveries INDEXED BY deliveries_order
                    WHERE webhook_id = ?1 AND state NOT IN ('delivered', 'dead')
                      AND ordering_key IS NOT NULL AND blocked = 1)",
            )?
            .query_row([webhook_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok(match found {
            Some((pending, Some(oldest))) if pending > 0 => Some(EndpointBacklog {
                webhook_id,
                pending,
                oldest_created_at: oldest,
            }),
            _ => None,
        })
    }

    fn ticket_events(&mut self, company_id: i64, ticket_id: i64) -> StoreResult<Vec<TicketEvent>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT e.id, e.event_type, e.created_at, e.payload, d.id, d.webhook_id, d.state,
                    d.attempts
             FROM deliveries d INDEXED BY deliveries_log_ticket
             JOIN events e ON e.id = d.event_id
             WHERE d.company_id = ?1 AND d.ticket_id = ?2
             ORDER BY d.created_at, d.event_id, d.seq
             LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![company_id, ticket_id, TICKET_EVENT_ROWS], |r| {
            let event_type = wire(r, 1, EventType::parse)?;
            let payload: String = r.get(3)?;
            let event = TicketEvent {
                id: r.get(0)?,
                event_type,
                created_at: r.get(2)?,
                message_id: message_of(event_type, &payload),
                deliveries: Vec::new(),
            };
            let delivery = EventDelivery {
                id: r.get(4)?,
                webhook_id: r.get(5)?,
                status: wire(r, 6, DeliveryStatus::parse)?,
                attempts: r.get(7)?,
            };
            Ok((event, delivery))
        })?;
        Ok(group_events(rows.collect::<Result<Vec<_>, _>>()?))
    }
}
