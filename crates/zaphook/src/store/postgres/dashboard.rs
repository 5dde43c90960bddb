//! What the dashboard reads, in PostgreSQL, and the attempt counts a batch writes with one
//! statement before it commits, into its connection's own rows.

use std::sync::LazyLock;

use postgres::types::ToSql;

use super::rows::{col, wire};
use super::tx::{PgConn, PgTx};
use crate::domain::{DeliveryStatus, EventType};
use crate::store::dashboard::{
    AttemptTally, Counts, DashboardTx, EventDelivery, TALLY_COLUMNS, TICKET_EVENT_ROWS,
    TicketEvent, group_events, message_of,
};
use crate::store::{EndpointBacklog, StoreResult};

/// Adds arrays of counts (one element per endpoint and minute) to the connection's rows.
static WRITE_COUNTS: LazyLock<String> = LazyLock::new(|| {
    let arrays = (0..2 + TALLY_COLUMNS.len())
        .map(|i| format!("${}::bigint[]", i + 2))
        .collect::<Vec<_>>()
        .join(", ");
    let adds = TALLY_COLUMNS
        .iter()
        .map(|c| format!("{c} = attempt_minutes.{c} + excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO attempt_minutes (webhook_id, minute, {names}, shard)
         SELECT *, $1::bigint FROM unnest({arrays})
         ON CONFLICT (webhook_id, minute, shard) DO UPDATE SET {adds}",
        names = TALLY_COLUMNS.join(", ")
    )
});

/// Writes a batch's counts, inside its transaction.
pub(super) fn write_counts(conn: &mut PgConn, counts: &Counts) -> Result<(), postgres::Error> {
    if counts.is_empty() {
        return Ok(());
    }
    let rows = counts.rows();
    let mut arrays: Vec<Vec<i64>> = vec![Vec::with_capacity(rows.len()); 2 + TALLY_COLUMNS.len()];
    for (webhook_id, minute, tally) in rows {
        arrays[0].push(webhook_id);
        arrays[1].push(minute);
        for (array, value) in arrays[2..].iter_mut().zip(tally.columns()) {
            array.push(value);
        }
    }
    let shard = conn.shard;
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&shard];
    params.extend(arrays.iter().map(|a| a as &(dyn ToSql + Sync)));
    let statement = conn.statement(&WRITE_COUNTS)?;
    conn.client.execute(&statement, &params)?;
    Ok(())
}

/// `sum(delivered), sum(failed), …` over the counters.
static SUMS: LazyLock<String> = LazyLock::new(|| {
    TALLY_COLUMNS
        .iter()
        .map(|c| format!("coalesce(sum({c}), 0)::bigint"))
        .collect::<Vec<_>>()
        .join(", ")
});

fn tally(row: &postgres::Row, from: usize) -> StoreResult<AttemptTally> {
    let mut columns = [0; TALLY_COLUMNS.len()];
    for (i, c) in columns.iter_mut().enumerate() {
        *c = col(row, from + i)?;
    }
    Ok(AttemptTally::from_columns(columns))
}

impl DashboardTx for PgTx<'_> {
    fn attempt_tally(&mut self, webhook_id: i64, since: i64) -> StoreResult<AttemptTally> {
        let sql = format!(
            "SELECT {} FROM attempt_minutes WHERE webhook_id = $1 AND minute >= $2",
            *SUMS
        );
        let row = self.query_one(&sql, &[&webhook_id, &since])?;
        tally(&row, 0)
    }

    fn attempt_minutes(
        &mut self,
        company_id: i64,
        webhook_id: Option<i64>,
        since: i64,
    ) -> StoreResult<Vec<(i64, AttemptTally)>> {
        let sql = format!(
            "SELECT m.minute, {} FROM attempt_minutes m JOIN webhooks w ON w.id = m.webhook_id
             WHERE w.company_id = $1 AND ($2::bigint IS NULL OR m.webhook_id = $2)
               AND m.minute >= $3
             GROUP BY m.minute ORDER BY m.minute",
            *SUMS
        );
        self.query(&sql, &[&company_id, &webhook_id, &since])?
            .iter()
            .map(|row| Ok((col(row, 0)?, tally(row, 1)?)))
            .collect()
    }

    fn backlog(&mut self, webhook_id: i64) -> StoreResult<Option<EndpointBacklog>> {
        // As `backlogs`, for one endpoint: its part of the two partial indexes.
        let row = self.query_one(
            "SELECT count(*), min(created_at) FROM (
                SELECT created_at FROM deliveries
                WHERE webhook_id = $1 AND state IN ('pending', 'delivering', 'failed')
                  AND NOT blocked
                UNION ALL
                SELECT created_at FROM deliveries
                WHERE webhook_id = $1 AND state IN ('pending', 'delivering', 'failed')
                  AND ordering_key IS NOT NULL AND blocked) AS backlog",
            &[&webhook_id],
        )?;
        let (pending, oldest): (i64, Option<i64>) = (col(&row, 0)?, col(&row, 1)?);
        Ok(oldest
            .filter(|_| pending > 0)
            .map(|oldest_created_at| EndpointBacklog {
                webhook_id,
                pending,
                oldest_created_at,
            }))
    }

    fn ticket_events(&mut self, company_id: i64, ticket_id: i64) -> StoreResult<Vec<TicketEvent>> {
        let rows = self.query(
            "SELECT e.id, e.event_type, e.created_at, e.payload, d.id, d.webhook_id, d.state,
                    d.attempts
             FROM deliveries d JOIN events e ON e.id = d.event_id
             WHERE d.company_id = $1 AND d.ticket_id = $2
             ORDER BY d.created_at, d.event_id, d.seq
             LIMIT $3",
            &[&company_id, &ticket_id, &TICKET_EVENT_ROWS],
        )?;
        let mut joined = Vec::with_capacity(rows.len());
        for r in &rows {
            let event_type = wire(r, 1, EventType::parse)?;
            let payload: String = col(r, 3)?;
            let event = TicketEvent {
                id: col(r, 0)?,
                event_type,
                created_at: col(r, 2)?,
                message_id: message_of(event_type, &payload),
                deliveries: Vec::new(),
            };
            let delivery = EventDelivery {
                id: col(r, 4)?,
                webhook_id: col(r, 5)?,
                status: wire(r, 6, DeliveryStatus::parse)?,
                attempts: col(r, 7)?,
            };
            joined.push((event, delivery));
        }
        Ok(group_events(joined))
    }
}
