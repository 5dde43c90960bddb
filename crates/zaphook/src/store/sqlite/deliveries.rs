//! The outbox: events, deliveries, claims, attempts, recovery and housekeeping, in SQLite.

use std::sync::Arc;

use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params};

use super::rows::*;
use super::tx::SqliteTx;
use crate::domain::{
    Attempt, Delivery, DeliveryDetail, DeliveryStatus, EventType, Ordering, WebhookFormat,
};
use crate::store::dashboard::minute_of;
use crate::store::deliveries::{LogArg, LogDialect, progress_of, read_log_page};
use crate::store::{
    AttemptRecord, AttemptTally, Claimed, DeliveryTx, DueWebhook, EndpointBacklog, EventScope,
    Handoffs, LogFilter, LogKey, LogPage, LogPath, LogRow, NewDelivery, NextLease, NextStep,
    Recorded, Recovery, RecoveryProgress, StoreError, StoreResult, Subscriber, Target, Topic,
};

fn recovery_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Recovery> {
    Ok(Recovery {
        id: r.get(0)?,
        webhook_id: r.get(1)?,
        since: r.get(2)?,
        started_at: r.get(3)?,
        queued: r.get(4)?,
    })
}

/// What a claim reads of a delivery (`d`), its endpoint (`w`) and its event (`e`), `?1` the
/// time of the claim; a statement adds its condition on `d`. Read by [`claimed_row`].
const CLAIMED_FROM: &str = "SELECT d.seq, d.id, d.event_id, d.event_type, d.attempts, e.payload,
        w.id, w.url, w.secret,
        CASE WHEN w.previous_secret_until > ?1 THEN w.previous_secret END, w.token,
        d.ordering_key, w.rate_limit, CASE WHEN w.media_base64 = 1 THEN e.media_sha256 END,
        w.format
     FROM deliveries d
     JOIN webhooks w ON w.id = d.webhook_id
     JOIN events e ON e.id = d.event_id";

fn claimed_row(r: &rusqlite::Row<'_>, lease: i64, lease_until: i64) -> rusqlite::Result<Claimed> {
    Ok(Claimed {
        seq: r.get(0)?,
        ordering_key: r.get(11)?,
        id: r.get(1)?,
        event_id: r.get(2)?,
        event_type: wire(r, 3, EventType::parse)?,
        attempts: r.get(4)?,
        lease,
        lease_until,
        payload: Arc::from(r.get::<_, String>(5)?),
        media: r.get::<_, Option<String>>(13)?.map(Arc::from),
        target: Target {
            webhook_id: r.get(6)?,
            url: r.get(7)?,
            secret: r.get(8)?,
            previous_secret: r.get(9)?,
            token: r.get(10)?,
            format: wire(r, 14, WebhookFormat::parse)?,
            rate_limit: r.get(12)?,
        },
    })
}

impl SqliteTx<'_> {
    /// Leases the delivery `seq` as a claim would, if its endpoint is enabled.
    fn lease_one(&mut self, seq: i64, lease: NextLease) -> StoreResult<Option<Claimed>> {
        let token: i64 = rand::random::<u32>() as i64;
        let claimed = self
            .conn
            .prepare_cached(&format!(
                "{CLAIMED_FROM} WHERE d.seq = ?2 AND w.enabled = 1"
            ))?
            .query_row(params![lease.now, seq], |r| {
                claimed_row(r, token, lease.until)
            })
            .optional()?;
        if claimed.is_some() {
            self.conn
                .prepare_cached(
                    "UPDATE deliveries SET state = 'delivering', next_attempt_at = ?2, lease = ?3
                     WHERE seq = ?1",
                )?
                .execute(params![seq, lease.until, token])?;
        }
        Ok(claimed)
    }

    /// Keeps the endpoint's health after a failed attempt: failing since then, and disabled
    /// on `410 Gone` or after failing too long. Answers why it was disabled, if it was.
    fn note_failure(&mut self, a: &AttemptRecord) -> StoreResult<Option<String>> {
        self.conn
            .prepare_cached(
                "UPDATE webhooks SET failing_since = ?2 WHERE id = ?1 AND failing_since IS NULL",
            )?
            .execute(params![a.webhook_id, a.at])?;
        let reason = if a.disable_webhook {
            "the endpoint answered 410 Gone".to_string()
        } else {
            let days = a.disable_after_ms as f64 / 86_400_000.0;
            format!("no successful delivery for {days:.0} days")
        };
        let disabled = self
            .conn
            .prepare_cached(
                "UPDATE webhooks SET enabled = 0, disabled_reason = ?2
                 WHERE id = ?1 AND enabled = 1 AND (?3 OR failing_since <= ?4)",
            )?
            .execute(params![
                a.webhook_id,
                reason,
                a.disable_webhook,
                a.at - a.disable_after_ms
            ])?;
        Ok((disabled > 0).then_some(reason))
    }

    /// Logs one attempt (see [`DeliveryTx::record_attempts`]).
    fn record_one(
        &mut self,
        a: &AttemptRecord,
        lease_next: Option<NextLease>,
    ) -> StoreResult<Recorded> {
        self.conn
            .prepare_cached(
                "INSERT INTO attempts (delivery_seq, at, status_code, latency_ms, error, response_body,
                    request_headers)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                a.seq,
                a.at,
                a.status_code,
                a.latency_ms,
                a.error,
                a.response_body,
                a.request_headers
            ])?;
        let (state, next, delivered_at) = match a.next {
            NextStep::Delivered => ("delivered", a.at, Some(a.at)),
            NextStep::RetryAt(at) => ("failed", at, None),
            NextStep::Dead => ("dead", a.at, None),
        };
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE deliveries SET state = ?3, attempts = attempts + 1, next_attempt_at = ?4,
                    last_status_code = ?5, delivered_at = ?6
                 WHERE seq = ?1 AND lease = ?2 AND state = 'delivering'",
            )?
            .execute(params![
                a.seq,
                a.lease,
                state,
                next,
                a.status_code,
                delivered_at
            ])?;
        let mut recorded = Recorded {
            applied: changed > 0,
            ..Recorded::default()
        };
        if changed > 0 {
            self.counts
                .add(a.webhook_id, minute_of(a.at), &AttemptTally::of(a));
        }
        // Before the next delivery is leased: an endpoint this attempt disabled gets no more.
        if a.next != NextStep::Delivered {
            recorded.disabled = self.note_failure(a)?;
        }
        if changed > 0
            && let Some(key) = a.ordering_key
            && matches!(a.next, NextStep::Delivered | NextStep::Dead)
        {
            // Finished: the next delivery of the same endpoint and ticket may go.
            let freed: Option<i64> = self
                .conn
                .prepare_cached(
                    "UPDATE deliveries SET blocked = 0 WHERE blocked AND seq = (
                        SELECT seq FROM deliveries
                        WHERE webhook_id = ?1 AND ordering_key = ?2
                          AND state NOT IN ('delivered', 'dead')
                        ORDER BY seq LIMIT 1)
                     RETURNING seq",
                )?
                .query_row([a.webhook_id, key], |r| r.get(0))
                .optional()?;
            recorded.unblocked = freed.is_some();
            if let (Some(seq), Some(lease)) = (freed, lease_next) {
                recorded.next = self.lease_one(seq, lease)?;
            }
        }
        Ok(recorded)
    }
}

impl DeliveryTx for SqliteTx<'_> {
    fn subscribers(&mut self, s: &EventScope<'_>, now: i64) -> StoreResult<Vec<Subscriber>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, ordering, url, secret,
                    CASE WHEN previous_secret_until > ?6 THEN previous_secret END, token, rate_limit,
                    media_base64, format
             FROM webhooks
             WHERE company_id = ?1 AND enabled = 1
               AND instr(',' || events || ',', ',' || ?2 || ',') > 0
               AND (connection_id IS NULL OR connection_id = ?3)
               AND (queue_id IS NULL OR queue_id = ?4 OR queue_id = ?7)
               AND (include_groups = 1 OR ?5 = 0)
               AND (?8 IS NULL OR CASE WHEN ?8 THEN filter_sent ELSE filter_received END = 1)
               AND (?8 IS NULL OR CASE ?9
                        WHEN 'open' THEN filter_ticket_open = 1
                        WHEN 'pending' THEN filter_ticket_pending = 1
                        ELSE filter_ticket_open = 1 OR filter_ticket_pending = 1 END)
               AND (?10 = 0 OR (start_on_transfer = 1 AND queue_id = ?4))
               AND (?11 IS NULL OR api_config_id = ?11)
             ORDER BY id",
        )?;
        let rows = stmt.query_map(
            params![
                s.company_id,
                s.event_type.as_str(),
                s.connection_id,
                s.queue_id,
                s.is_group,
                now,
                s.previous_queue_id,
                s.message.map(|m| m.from_me),
                s.message.map(|m| m.ticket_status.as_str()),
                s.transfer_start,
                s.api_config,
            ],
            |r| {
                Ok(Subscriber {
                    ordering: wire(r, 1, Ordering::parse)?,
                    media_base64: r.get(7)?,
                    target: Target {
                        webhook_id: r.get(0)?,
                        url: r.get(2)?,
                        secret: r.get(3)?,
                        previous_secret: r.get(4)?,
                        token: r.get(5)?,
                        format: wire(r, 8, WebhookFormat::parse)?,
                        rate_limit: r.get(6)?,
                    },
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn insert_event(
        &mut self,
        id: &str,
        s: &EventScope<'_>,
        payload: &str,
        media: Option<&str>,
        now: i64,
    ) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO events (id, company_id, event_type, ticket_id, payload, media_sha256,
                    created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                id,
                s.company_id,
                s.event_type.as_str(),
                s.ticket_id,
                payload,
                media,
                now
            ])?;
        Ok(())
    }

    fn insert_delivery(
        &mut self,
        d: &NewDelivery<'_>,
        now: i64,
        handoff: Option<Claimed>,
    ) -> StoreResult<()> {
        let (webhook_id, ordering_key) = (d.webhook_id, d.ordering_key);
        let handoff = handoff.filter(|_| self.handoffs.is_some());
        let blocked = match ordering_key {
            None => false,
            Some(key) => self
                .conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM deliveries
                     WHERE webhook_id = ?1 AND ordering_key = ?2
                       AND state NOT IN ('delivered', 'dead'))",
                )?
                .query_row([webhook_id, key], |r| r.get(0))?,
        };
        // A delivery nothing holds back may be leased at once, for a hand-off.
        let (state, next_attempt_at, lease_id) = match handoff.as_ref().filter(|_| !blocked) {
            Some(h) => ("delivering", h.lease_until, h.lease),
            None => ("pending", now, 0),
        };
        self.conn
            .prepare_cached(
                "INSERT INTO deliveries (id, webhook_id, event_id, event_type, ordering_key, state,
                    blocked, lease, next_attempt_at, created_at, company_id, ticket_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?
            .execute(params![
                d.id,
                webhook_id,
                d.event_id,
                d.event_type.as_str(),
                ordering_key,
                state,
                blocked,
                lease_id,
                next_attempt_at,
                now,
                d.company_id,
                d.ticket_id
            ])?;
        // When the caller hands deliveries off, this process's dispatcher is in charge of them
        // (also of those queued behind a busy endpoint); otherwise a worker must claim them.
        self.announce_if(handoff.is_none() && !blocked, Topic::Deliveries);
        if let Some(mut claimed) = handoff.filter(|_| !blocked) {
            claimed.seq = self.conn.last_insert_rowid();
            if let Some(mut handed) = self.handoffs.as_ref().and_then(|h| h.claimed.lock().ok()) {
                handed.push(claimed);
            }
        }
        Ok(())
    }

    fn handoffs(&mut self) -> &mut Option<Handoffs> {
        &mut self.handoffs
    }

    fn due_webhooks(&mut self, now: i64) -> StoreResult<Vec<DueWebhook>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT w.id, w.rate_limit FROM webhooks w WHERE w.enabled = 1 AND EXISTS (
                SELECT 1 FROM deliveries d
                WHERE d.webhook_id = w.id AND d.state NOT IN ('delivered', 'dead')
                  AND d.blocked = 0 AND d.next_attempt_at <= ?1)
             ORDER BY w.id",
        )?;
        let rows = stmt.query_map([now], |r| {
            Ok(DueWebhook {
                id: r.get(0)?,
                rate_limit: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn claim_deliveries(
        &mut self,
        now: i64,
        lease_until: i64,
        webhook_id: i64,
        limit: i64,
    ) -> StoreResult<Vec<Claimed>> {
        let sql = format!(
            "{CLAIMED_FROM}
             WHERE d.webhook_id = ?3 AND d.state NOT IN ('delivered', 'dead')
               AND d.blocked = 0 AND d.next_attempt_at <= ?1
             ORDER BY d.next_attempt_at, d.seq
             LIMIT ?2"
        );
        let lease: i64 = rand::random::<u32>() as i64;
        let claimed = {
            let mut stmt = self.conn.prepare_cached(&sql)?;
            stmt.query_map(params![now, limit, webhook_id], |r| {
                claimed_row(r, lease, lease_until)
            })?
            .collect::<Result<Vec<_>, _>>()?
        };
        let mut take = self.conn.prepare_cached(
            "UPDATE deliveries SET state = 'delivering', next_attempt_at = ?2, lease = ?3 WHERE seq = ?1",
        )?;
        for c in &claimed {
            take.execute(params![c.seq, lease_until, lease])?;
        }
        Ok(claimed)
    }

    fn record_attempts(
        &mut self,
        records: &[AttemptRecord],
        lease_next: Option<NextLease>,
    ) -> StoreResult<Vec<Recorded>> {
        records
            .iter()
            .map(|a| self.record_one(a, lease_next))
            .collect()
    }

    fn mark_healthy(&mut self, webhook_ids: &[i64]) -> StoreResult<()> {
        let mut stmt = self.conn.prepare_cached(
            "UPDATE webhooks SET failing_since = NULL WHERE id = ?1 AND failing_since IS NOT NULL",
        )?;
        for id in webhook_ids {
            stmt.execute([id])?;
        }
        Ok(())
    }

    fn release_deliveries(&mut self, leases: &[(i64, i64)], now: i64) -> StoreResult<usize> {
        let mut stmt = self.conn.prepare_cached(
            "UPDATE deliveries SET state = 'pending', next_attempt_at = ?3
             WHERE seq = ?1 AND lease = ?2 AND state = 'delivering'",
        )?;
        let mut released = 0;
        for (seq, lease) in leases {
            released += stmt.execute(params![seq, lease, now])?;
        }
        self.announce_if(released > 0, Topic::Deliveries);
        Ok(released)
    }

    fn next_delivery_due(&mut self) -> StoreResult<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT min((SELECT min(next_attempt_at) FROM deliveries
                             WHERE webhook_id = w.id AND state NOT IN ('delivered', 'dead')
                               AND blocked = 0))
                 FROM webhooks w",
            )?
            .query_row([], |r| r.get(0))?)
    }

    fn deliveries(
        &mut self,
        webhook_id: i64,
        status: Option<DeliveryStatus>,
        after: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<Delivery>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {DELIVERY_COLS} FROM deliveries d
             WHERE d.webhook_id = ?1 AND (?2 IS NULL OR d.state = ?2)
               AND (?3 IS NULL OR (d.created_at, d.seq) <
                    (SELECT created_at, seq FROM deliveries WHERE id = ?3))
             ORDER BY d.created_at DESC, d.seq DESC LIMIT ?4"
        ))?;
        let rows = stmt.query_map(
            params![webhook_id, status.map(|s| s.as_str()), after, limit],
            delivery_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn delivery(&mut self, company_id: i64, id: &str) -> StoreResult<Option<DeliveryDetail>> {
        let found = {
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT {DELIVERY_COLS}, d.seq, e.payload FROM deliveries d
                 JOIN events e ON e.id = d.event_id
                 WHERE d.id = ?2 AND e.company_id = ?1"
            ))?;
            stmt.query_row(params![company_id, id], |r| {
                Ok((
                    delivery_row(r)?,
                    r.get::<_, i64>(10)?,
                    r.get::<_, String>(11)?,
                ))
            })
            .optional()?
        };
        let Some((delivery, seq, payload)) = found else {
            return Ok(None);
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT at, status_code, latency_ms, error, response_body, request_headers
             FROM attempts WHERE delivery_seq = ?1 ORDER BY id",
        )?;
        let attempts_log = stmt
            .query_map([seq], |r| {
                Ok(Attempt {
                    at: r.get(0)?,
                    status_code: r.get(1)?,
                    latency_ms: r.get(2)?,
                    error: r.get(3)?,
                    response_body: r.get(4)?,
                    request_headers: r.get(5)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let payload =
            serde_json::from_str(&payload).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Some(DeliveryDetail {
            delivery,
            payload,
            attempts_log,
        }))
    }

    fn retry_delivery(&mut self, company_id: i64, id: &str, now: i64) -> StoreResult<bool> {
        let queued = self.conn.execute(
            "UPDATE deliveries SET state = 'pending', blocked = 0, next_attempt_at = ?3
             WHERE id = ?2 AND state <> 'delivering'
               AND EXISTS (SELECT 1 FROM webhooks w WHERE w.id = webhook_id AND w.company_id = ?1)",
            params![company_id, id, now],
        )? > 0;
        self.announce_if(queued, Topic::Deliveries);
        Ok(queued)
    }

    fn recover_deliveries(&mut self, webhook_id: i64, since: i64, now: i64) -> StoreResult<usize> {
        let queued = self.conn.execute(
            "UPDATE deliveries SET state = 'pending', blocked = 0, next_attempt_at = ?3,
                recovered_at = ?3
             WHERE webhook_id = ?1 AND created_at >= ?2 AND state IN ('failed', 'dead')",
            params![webhook_id, since, now],
        )?;
        self.announce_if(queued > 0, Topic::Deliveries);
        Ok(queued)
    }

    fn recovery_progress(
        &mut self,
        webhook_id: i64,
        recovered_at: i64,
    ) -> StoreResult<RecoveryProgress> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT state, count(*) FROM deliveries
             WHERE webhook_id = ?1 AND recovered_at = ?2 GROUP BY state",
        )?;
        let mut progress = RecoveryProgress::default();
        let rows = stmt.query_map([webhook_id, recovered_at], |r| {
            Ok((wire(r, 0, DeliveryStatus::parse)?, r.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (state, n) = row?;
            match state {
                DeliveryStatus::Pending | DeliveryStatus::Delivering => progress.waiting += n,
                DeliveryStatus::Delivered => progress.delivered += n,
                DeliveryStatus::Failed => progress.failed += n,
                DeliveryStatus::Dead => progress.dead += n,
            }
        }
        Ok(progress)
    }

    fn start_recovery(
        &mut self,
        company_id: i64,
        webhook_id: i64,
        since: i64,
        now: i64,
    ) -> StoreResult<Option<Recovery>> {
        let owned: bool = self
            .conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM webhooks WHERE id = ?1 AND company_id = ?2)",
            )?
            .query_row([webhook_id, company_id], |r| r.get(0))?;
        if !owned {
            return Ok(None);
        }
        self.conn
            .prepare_cached(
                "INSERT INTO recoveries (company_id, webhook_id, since, started_at, queued)
                 VALUES (?1, ?2, ?3, ?4, 0)",
            )?
            .execute(params![company_id, webhook_id, since, now])?;
        let id = self.conn.last_insert_rowid();
        // Failed and dead deliveries are not delivered: the state index holds them.
        let queued = self
            .conn
            .prepare_cached(
                "UPDATE deliveries SET state = 'pending', blocked = 0, next_attempt_at = ?4,
                    recovered_at = ?4, recovery_id = ?5
                 WHERE seq IN (
                    SELECT seq FROM deliveries INDEXED BY deliveries_log_state
                    WHERE company_id = ?1 AND state <> 'delivered' AND state IN ('failed', 'dead')
                      AND created_at >= ?3 AND webhook_id = ?2)",
            )?
            .execute(params![company_id, webhook_id, since, now, id])?;
        self.conn
            .prepare_cached("UPDATE recoveries SET queued = ?2 WHERE id = ?1")?
            .execute(params![id, queued as i64])?;
        self.announce_if(queued > 0, Topic::Deliveries);
        Ok(Some(Recovery {
            id,
            webhook_id,
            since,
            started_at: now,
            queued: queued as i64,
        }))
    }

    fn recovery(
        &mut self,
        company_id: i64,
        id: i64,
    ) -> StoreResult<Option<(Recovery, RecoveryProgress)>> {
        let found = self
            .conn
            .prepare_cached(
                "SELECT id, webhook_id, since, started_at, queued FROM recoveries
                 WHERE id = ?1 AND company_id = ?2",
            )?
            .query_row([id, company_id], recovery_row)
            .optional()?;
        let Some(recovery) = found else {
            return Ok(None);
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT state, count(*) FROM deliveries INDEXED BY deliveries_recovery
             WHERE recovery_id = ?1 GROUP BY state",
        )?;
        let rows = stmt.query_map([id], |r| {
            Ok((wire(r, 0, DeliveryStatus::parse)?, r.get::<_, i64>(1)?))
        })?;
        let mut counts = Vec::new();
        for row in rows {
            counts.push(row?);
        }
        Ok(Some((recovery, progress_of(counts))))
    }

    fn recoveries(&mut self, company_id: i64, limit: i64) -> StoreResult<Vec<Recovery>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, webhook_id, since, started_at, queued FROM recoveries
             WHERE company_id = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map([company_id, limit], recovery_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn delivery_log(
        &mut self,
        filter: &LogFilter,
        before: Option<LogKey>,
        limit: i64,
        scan: i64,
    ) -> StoreResult<LogPage> {
        if let Some(webhook_id) = filter.webhook_id {
            let owned: bool = self
                .conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM webhooks WHERE id = ?1 AND company_id = ?2)",
                )?
                .query_row([webhook_id, filter.company_id], |r| r.get(0))?;
            if !owned {
                return Ok(LogPage::default());
            }
        }
        let query = filter.query(
            DELIVERY_COLS,
            &LogDialect {
                placeholder: "?",
                position: "instr",
                table: |path| {
                    let index = match path {
                        LogPath::Ticket => "deliveries_log_ticket",
                        LogPath::State => "deliveries_log_state",
                        LogPath::Webhook => "deliveries_log_webhook",
                        LogPath::Company => "deliveries_log",
                    };
                    format!("deliveries d INDEXED BY {index}")
                },
            },
        );
        let args: Vec<Value> = query
            .args
            .iter()
            .map(|a| match a {
                LogArg::Int(v) => Value::Integer(*v),
                LogArg::Text(v) => Value::Text(v.clone()),
            })
            .collect();
        let (first, next) = (&query.first, &query.next);
        let conn = self.conn;
        read_log_page(before, limit, scan, query.residual, |before, n| {
            let mut all = args.clone();
            let mut stmt = match before {
                None => conn.prepare_cached(first)?,
                Some(k) => {
                    all.push(Value::Integer(k.created_at));
                    all.push(Value::Integer(k.seq));
                    conn.prepare_cached(next)?
                }
            };
            all.push(Value::Integer(n));
            let rows = stmt.query_map(rusqlite::params_from_iter(all), |r| {
                let delivery = delivery_row(r)?;
                Ok((
                    LogRow {
                        key: LogKey {
                            created_at: delivery.created_at,
                            seq: r.get(10)?,
                        },
                        delivery,
                        ticket_id: r.get(11)?,
                    },
                    r.get::<_, bool>(12)?,
                ))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn prune(&mut self, before: i64, batch: i64) -> StoreResult<usize> {
        let finished = self
            .conn
            .prepare_cached(
                "SELECT seq FROM deliveries
                 WHERE state IN ('delivered', 'dead') AND created_at < ?1 LIMIT ?2",
            )?
            .query_map(params![before, batch], |r| r.get::<_, i64>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        let mut attempts = self
            .conn
            .prepare_cached("DELETE FROM attempts WHERE delivery_seq = ?1")?;
        let mut delivery = self
            .conn
            .prepare_cached("DELETE FROM deliveries WHERE seq = ?1")?;
        let mut deliveries = 0;
        for seq in finished {
            attempts.execute([seq])?;
            deliveries += delivery.execute([seq])?;
        }
        let events = self
            .conn
            .prepare_cached(
                "DELETE FROM events WHERE id IN (
                    SELECT e.id FROM events e
                    WHERE e.created_at < ?1
                      AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)
                    LIMIT ?2)",
            )?
            .execute(params![before, batch])?;
        let counts = self
            .conn
            .prepare_cached(
                "DELETE FROM attempt_minutes WHERE rowid IN (
                    SELECT rowid FROM attempt_minutes WHERE minute < ?1 LIMIT ?2)",
            )?
            .execute(params![minute_of(before), batch])?;
        Ok(deliveries + events + counts)
    }

    fn free_orphaned(&mut self) -> StoreResult<usize> {
        // Blocked deliveries are unfinished and ordered: the order index holds them all, so
        // this reads the backlog, not every delivery ever kept.
        let freed = self
            .conn
            .prepare_cached(
                "UPDATE deliveries SET blocked = 0 WHERE seq IN (
                    SELECT d.seq FROM deliveries d INDEXED BY deliveries_order
                    WHERE d.state NOT IN ('delivered', 'dead') AND d.ordering_key IS NOT NULL
                      AND d.blocked = 1
                      AND NOT EXISTS (
                        SELECT 1 FROM deliveries o
                        WHERE o.webhook_id = d.webhook_id AND o.ordering_key = d.ordering_key
                          AND o.seq < d.seq AND o.state NOT IN ('delivered', 'dead')))",
            )?
            .execute([])?;
        self.announce_if(freed > 0, Topic::Deliveries);
        Ok(freed)
    }

    fn backlogs(&mut self) -> StoreResult<Vec<EndpointBacklog>> {
        // Unfinished deliveries are in one of the two partial indexes (due when not blocked,
        // ordered when blocked), so this reads the backlog only.
        let mut stmt = self.conn.prepare_cached(
            "SELECT webhook_id, count(*), min(created_at) FROM (
                SELECT webhook_id, created_at FROM deliveries INDEXED BY deliveries_webhook_due
                WHERE state NOT IN ('delivered', 'dead') AND blocked = 0
                UNION ALL
                SELECT webhook_id, created_at FROM deliveries INDEXED BY deliveries_order
                WHERE state NOT IN ('delivered', 'dead') AND ordering_key IS NOT NULL
                  AND blocked = 1)
             GROUP BY webhook_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(EndpointBacklog {
                webhook_id: r.get(0)?,
                pending: r.get(1)?,
                oldest_created_at: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
