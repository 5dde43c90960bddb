//! The outbox: events, deliveries, claims, attempts, recovery and housekeeping, in PostgreSQL.
//!
//! "Unfinished" is written `state IN ('pending', 'delivering', 'failed')` (the other states
//! are `delivered` and `dead`): the partial indexes over unfinished deliveries are declared
//! so, and PostgreSQL uses a partial index only when the query's condition implies its own.
//!
//! Several processes write at once. The deliveries of one endpoint and ticket keep their order
//! through a transaction lock on that pair ([`pair_key`]), taken by whoever decides from the
//! pair's other deliveries whether one waits (`blocked`): the insert (the `insert_delivery`
//! function, migration 11), which blocks a delivery behind an unfinished older one, and the
//! finish, which unblocks the next. Each takes it before the statement that reads the pair,
//! so that statement sees what committed before: under READ COMMITTED a statement sees what
//! committed before it started, and the lock is released only at commit.

use std::collections::HashSet;
use std::sync::Arc;

use postgres::types::Type;

use super::batch::{HeldDelivery, HeldEvent};
use super::rows::*;
use super::tx::PgTx;
use crate::domain::{
    Attempt, Delivery, DeliveryDetail, DeliveryStatus, EventType, Ordering, WebhookFormat,
};
use crate::store::dashboard::minute_of;
use crate::store::deliveries::{LogArg, LogDialect, progress_of, read_log_page};
use crate::store::{
    AttemptRecord, AttemptTally, Claimed, DeliveryTx, DueWebhook, EndpointBacklog, EventScope,
    Handoffs, LogFilter, LogKey, LogPage, LogRow, NewDelivery, NextLease, NextStep, Recorded,
    Recovery, RecoveryProgress, StoreError, StoreResult, Subscriber, Target, Topic,
};

/// An (endpoint, ticket) pair whose next delivery stopped waiting, and that delivery when
/// it was leased.
type Freed = ((i64, i64), Option<Claimed>);

/// A parameter of a statement put together for its filter.
type Arg = Box<dyn postgres::types::ToSql + Sync>;

fn recovery_row(r: &postgres::Row) -> StoreResult<Recovery> {
    Ok(Recovery {
        id: col(r, 0)?,
        webhook_id: col(r, 1)?,
        since: col(r, 2)?,
        started_at: col(r, 3)?,
        queued: col(r, 4)?,
    })
}

/// What a claim answers of each delivery it leases, from `d` (the delivery), `w` (its
/// endpoint) and `e` (its event), `$1` the time of the claim; read by [`claimed_row`].
const CLAIMED_COLS: &str = "d.seq, d.id, d.event_id, d.event_type, d.attempts, e.payload,
    w.id, w.url, w.secret, CASE WHEN w.previous_secret_until > $1 THEN w.previous_secret END,
    w.token, d.ordering_key, w.rate_limit, CASE WHEN w.media_base64 THEN e.media_sha256 END,
    w.format";

fn claimed_row(r: &postgres::Row, lease: i64, lease_until: i64) -> StoreResult<Claimed> {
    Ok(Claimed {
        seq: col(r, 0)?,
        ordering_key: col(r, 11)?,
        id: col(r, 1)?,
        event_id: col(r, 2)?,
        event_type: wire(r, 3, EventType::parse)?,
        attempts: col(r, 4)?,
        lease,
        lease_until,
        payload: Arc::from(col::<String>(r, 5)?),
        media: col::<Option<String>>(r, 13)?.map(Arc::from),
        target: Target {
            webhook_id: col(r, 6)?,
            url: col(r, 7)?,
            secret: col(r, 8)?,
            previous_secret: col(r, 9)?,
            token: col(r, 10)?,
            format: wire(r, 14, WebhookFormat::parse)?,
            rate_limit: col(r, 12)?,
        },
    })
}

impl PgTx<'_> {
    /// Moves on each delivery of `round` (indexes of `records`, in order of distinct seqs)
    /// whose lease is still ours; answers the seqs moved.
    fn move_deliveries(
        &mut self,
        records: &[AttemptRecord],
        round: &[usize],
    ) -> StoreResult<Vec<i64>> {
        let outcome = |a: &AttemptRecord| match a.next {
            NextStep::Delivered => ("delivered", a.at, Some(a.at)),
            NextStep::RetryAt(at) => ("failed", at, None),
            NextStep::Dead => ("dead", a.at, None),
        };
        let of = |i: &usize| &records[*i];
        // No join: `width_bucket` over the sorted seqs is a binary search that finds each
        // row's record. A join of the rows with an `unnest` of the records was planned, on
        // estimates that take the few rows in `delivering` for none, as a loop over both:
        // 100 ms for a batch of 300.
        let moved = self.write_query_planned(
            "UPDATE deliveries SET attempts = attempts + 1,
                state = ($3::text[])[width_bucket(seq, $1::bigint[])],
                next_attempt_at = ($4::bigint[])[width_bucket(seq, $1::bigint[])],
                last_status_code = ($5::bigint[])[width_bucket(seq, $1::bigint[])],
                delivered_at = ($6::bigint[])[width_bucket(seq, $1::bigint[])]
             WHERE seq = ANY($1) AND state = 'delivering'
               AND lease = ($2::bigint[])[width_bucket(seq, $1::bigint[])]
             RETURNING seq",
            &[
                (
                    &round.iter().map(|i| of(i).seq).collect::<Vec<_>>(),
                    Type::INT8_ARRAY,
                ),
                (
                    &round.iter().map(|i| of(i).lease).collect::<Vec<_>>(),
                    Type::INT8_ARRAY,
                ),
                (
                    &round.iter().map(|i| outcome(of(i)).0).collect::<Vec<_>>(),
                    Type::TEXT_ARRAY,
                ),
                (
                    &round.iter().map(|i| outcome(of(i)).1).collect::<Vec<_>>(),
                    Type::INT8_ARRAY,
                ),
                (
                    &round.iter().map(|i| of(i).status_code).collect::<Vec<_>>(),
                    Type::INT8_ARRAY,
                ),
                (
                    &round.iter().map(|i| outcome(of(i)).2).collect::<Vec<_>>(),
                    Type::INT8_ARRAY,
                ),
            ],
        )?;
        moved.iter().map(|r| col(r, 0)).collect()
    }

    /// Unblocks the next delivery of each (endpoint, ticket) pair, and leases it with
    /// `lease_next` when its endpoint is enabled. Answers the pairs freed, with what was
    /// leased.
    fn unblock_next(
        &mut self,
        pairs: &[(i64, i64)],
        lease_next: Option<NextLease>,
    ) -> StoreResult<Vec<Freed>> {
        let (webhooks, keys): (Vec<i64>, Vec<i64>) = pairs.iter().copied().unzip();
        let lease = lease_next.unwrap_or(NextLease { now: 0, until: 0 });
        let token: i64 = rand::random::<u32>() as i64;
        // A blocked delivery has never been attempted, so it is due: it is leased as a claim
        // would lease it.
        let freed = self.write_query_planned(
            &format!(
                "UPDATE deliveries d SET blocked = false,
                    state = CASE WHEN $6 AND w.enabled THEN 'delivering' ELSE d.state END,
                    next_attempt_at = CASE WHEN $6 AND w.enabled THEN $4
                        ELSE d.next_attempt_at END,
                    lease = CASE WHEN $6 AND w.enabled THEN $5 ELSE d.lease END
                 FROM webhooks w, events e
                 WHERE d.blocked AND d.seq = ANY(ARRAY(
                        SELECT (SELECT seq FROM deliveries
                                WHERE webhook_id = p.webhook_id AND ordering_key = p.ordering_key
                                  AND state IN ('pending', 'delivering', 'failed')
                                ORDER BY seq LIMIT 1)
                        FROM unnest($2::bigint[], $3::bigint[]) AS p(webhook_id, ordering_key)))
                   AND w.id = d.webhook_id AND e.id = d.event_id
                 RETURNING {CLAIMED_COLS}, $6 AND w.enabled"
            ),
            &[
                (&lease.now, Type::INT8),
                (&webhooks, Type::INT8_ARRAY),
                (&keys, Type::INT8_ARRAY),
                (&lease.until, Type::INT8),
                (&token, Type::INT8),
                (&lease_next.is_some(), Type::BOOL),
            ],
        )?;
        freed
            .iter()
            .map(|r| {
                let claimed = claimed_row(r, token, lease.until)?;
                let pair = (claimed.target.webhook_id, claimed.ordering_key.unwrap_or(0));
                let leased: bool = col(r, 15)?;
                Ok((pair, leased.then_some(claimed)))
            })
            .collect()
    }

    /// Keeps the endpoint's health after a failed attempt: failing since then, and disabled
    /// on `410 Gone` or after failing too long. Answers why it was disabled, if it was.
    fn note_failure(&mut self, a: &AttemptRecord) -> StoreResult<Option<String>> {
        // Both conditions are in the WHERE: concurrent finishes of one endpoint set
        // `failing_since` once and disable it once.
        self.execute(
            "UPDATE webhooks SET failing_since = $2 WHERE id = $1 AND failing_since IS NULL",
            &[&a.webhook_id, &a.at],
        )?;
        let reason = if a.disable_webhook {
            "the endpoint answered 410 Gone".to_string()
        } else {
            let days = a.disable_after_ms as f64 / 86_400_000.0;
            format!("no successful delivery for {days:.0} days")
        };
        let disabled = self.execute(
            "UPDATE webhooks SET enabled = false, disabled_reason = $2
             WHERE id = $1 AND enabled AND ($3 OR failing_since <= $4)",
            &[
                &a.webhook_id,
                &reason,
                &a.disable_webhook,
                &(a.at - a.disable_after_ms),
            ],
        )?;
        Ok((disabled > 0).then_some(reason))
    }
}

impl PgTx<'_> {
    /// The endpoints that want an event of scope `s`, each with the end of its previous
    /// secret's grace.
    fn read_subscribers(
        &mut self,
        s: &EventScope<'_>,
    ) -> StoreResult<Vec<(Subscriber, Option<i64>)>> {
        let rows = self.query(
            "SELECT id, ordering, url, secret, previous_secret, token, rate_limit, media_base64,
                    format, previous_secret_until
             FROM webhooks
             WHERE company_id = $1 AND enabled
               AND position(',' || $2::text || ',' in ',' || events || ',') > 0
               AND (connection_id IS NULL OR connection_id = $3)
               AND (queue_id IS NULL OR queue_id = $4 OR queue_id = $6)
               AND (include_groups OR NOT $5)
               AND ($7::boolean IS NULL OR CASE WHEN $7 THEN filter_sent ELSE filter_received END)
               AND ($7::boolean IS NULL OR CASE $8::text
                        WHEN 'open' THEN filter_ticket_open
                        WHEN 'pending' THEN filter_ticket_pending
                        ELSE filter_ticket_open OR filter_ticket_pending END)
               AND (NOT $9 OR (start_on_transfer AND queue_id = $4))
               AND ($10::text IS NULL OR api_config_id = $10)
             ORDER BY id",
            &[
                &s.company_id,
                &s.event_type.as_str(),
                &s.connection_id,
                &s.queue_id,
                &s.is_group,
                &s.previous_queue_id,
                &s.message.map(|m| m.from_me),
                &s.message.map(|m| m.ticket_status.as_str()),
                &s.transfer_start,
                &s.api_config,
            ],
        )?;
        rows.iter()
            .map(|r| {
                let subscriber = Subscriber {
                    ordering: wire(r, 1, Ordering::parse)?,
                    media_base64: col(r, 7)?,
                    target: Target {
                        webhook_id: col(r, 0)?,
                        url: col(r, 2)?,
                        secret: col(r, 3)?,
                        previous_secret: col(r, 4)?,
                        token: col(r, 5)?,
                        format: wire(r, 8, WebhookFormat::parse)?,
                        rate_limit: col(r, 6)?,
                    },
                };
                Ok((subscriber, col(r, 9)?))
            })
            .collect()
    }
}

/// The lock key of one endpoint and ticket: both hashed into one BIGINT (a collision only
/// makes an unrelated pair wait).
fn pair_key(webhook_id: i64, ordering_key: i64) -> i64 {
    webhook_id.wrapping_mul(0x9E37_79B9_7F4A_7C15u64 as i64) ^ ordering_key
}

impl DeliveryTx for PgTx<'_> {
    fn subscribers(&mut self, s: &EventScope<'_>, now: i64) -> StoreResult<Vec<Subscriber>> {
        let key = (
            s.company_id,
            s.event_type,
            s.connection_id,
            s.queue_id,
            s.is_group,
            s.previous_queue_id,
            s.message.map(|m| m.from_me),
            s.message.map(|m| m.ticket_status),
            s.transfer_start,
            s.api_config.map(str::to_string),
        );
        let kept = match self.kept().subscribers.get(&key) {
            Some(kept) => kept.clone(),
            None => {
                let read = self.read_subscribers(s)?;
                self.kept().subscribers.insert(key, read.clone());
                read
            }
        };
        // The previous secret signs too while its grace lasts.
        Ok(kept
            .into_iter()
            .map(|(mut subscriber, previous_until)| {
                if previous_until.is_none_or(|until| until <= now) {
                    subscriber.target.previous_secret = None;
                }
                subscriber
            })
            .collect())
    }

    fn insert_event(
        &mut self,
        id: &str,
        s: &EventScope<'_>,
        payload: &str,
        media: Option<&str>,
        now: i64,
    ) -> StoreResult<()> {
        let held = self.hold_event(|| HeldEvent {
            id: id.to_string(),
            company_id: s.company_id,
            event_type: s.event_type.as_str(),
            ticket_id: s.ticket_id,
            payload: payload.to_string(),
            media: media.map(str::to_string),
            created_at: now,
        });
        if held {
            return Ok(());
        }
        self.execute(
            "INSERT INTO events (id, company_id, event_type, ticket_id, payload, media_sha256,
                created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &id,
                &s.company_id,
                &s.event_type.as_str(),
                &s.ticket_id,
                &payload,
                &media,
                &now,
            ],
        )?;
        Ok(())
    }

    fn insert_delivery(
        &mut self,
        d: &NewDelivery<'_>,
        now: i64,
        handoff: Option<Claimed>,
    ) -> StoreResult<()> {
        // The pair's lock is held to commit: a finish of this pair committing meanwhile is
        // seen by the insert's check (see the function), and one still running unblocks this
        // delivery after us. The insert decides whether it is blocked, and leased at once
        // when the caller hands it off.
        let handoff = handoff.and_then(|c| {
            let to = self.handoffs.as_ref()?;
            Some((c, Arc::clone(&to.claimed)))
        });
        let held = HeldDelivery {
            id: d.id.to_string(),
            webhook_id: d.webhook_id,
            event_id: d.event_id.to_string(),
            event_type: d.event_type.as_str(),
            ordering_key: d.ordering_key,
            company_id: d.company_id,
            ticket_id: d.ticket_id,
            pair: d.ordering_key.map(|key| pair_key(d.webhook_id, key)),
            now,
            handoff,
        };
        let Some(held) = self.hold_delivery(held) else {
            return Ok(());
        };
        let (leased, lease_id, until) = match &held.handoff {
            Some((c, _)) => (true, c.lease, c.lease_until),
            None => (false, 0, now),
        };
        let row = self
            .write_opt(
                "SELECT new_seq, new_blocked FROM insert_delivery($1, $2, $3, $4, $5, $6, $7,
                    $8, $9, $10, $11, $12)",
                &[
                    &held.id,
                    &held.webhook_id,
                    &held.event_id,
                    &held.event_type,
                    &held.ordering_key,
                    &leased,
                    &lease_id,
                    &until,
                    &now,
                    &held.company_id,
                    &held.ticket_id,
                    &held.pair,
                ],
            )?
            .ok_or_else(|| StoreError::Database("a delivery insert answered no seq".into()))?;
        let (seq, blocked) = (col(&row, 0)?, col(&row, 1)?);
        // When the caller hands deliveries off, this process's dispatcher is in charge of them;
        // otherwise a worker must claim them.
        let unclaimed = held.written(seq, blocked);
        self.announce_if(unclaimed, Topic::Deliveries);
        Ok(())
    }

    fn handoffs(&mut self) -> &mut Option<Handoffs> {
        &mut self.handoffs
    }

    fn due_webhooks(&mut self, now: i64) -> StoreResult<Vec<DueWebhook>> {
        let rows = self.query(
            "SELECT w.id, w.rate_limit FROM webhooks w WHERE w.enabled AND EXISTS (
                SELECT 1 FROM deliveries d
                WHERE d.webhook_id = w.id AND d.state IN ('pending', 'delivering', 'failed')
                  AND NOT d.blocked AND d.next_attempt_at <= $1)
             ORDER BY w.id",
            &[&now],
        )?;
        rows.iter()
            .map(|r| {
                Ok(DueWebhook {
                    id: col(r, 0)?,
                    rate_limit: col(r, 1)?,
                })
            })
            .collect()
    }

    fn claim_deliveries(
        &mut self,
        now: i64,
        lease_until: i64,
        webhook_id: i64,
        limit: i64,
    ) -> StoreResult<Vec<Claimed>> {
        // The deliveries another claim holds are skipped, not waited for. The joins are in the
        // pick too, so that (as on SQLite) the limit counts only deliveries that can be sent.
        let sql = format!(
            "WITH picked AS (
                SELECT d.seq, d.next_attempt_at FROM deliveries d
                JOIN webhooks w ON w.id = d.webhook_id
                JOIN events e ON e.id = d.event_id
                WHERE d.webhook_id = $3 AND d.state IN ('pending', 'delivering', 'failed')
                  AND NOT d.blocked AND d.next_attempt_at <= $1
                ORDER BY d.next_attempt_at, d.seq
                LIMIT $2
                FOR UPDATE OF d SKIP LOCKED)
             UPDATE deliveries d SET state = 'delivering', next_attempt_at = $4, lease = $5
             FROM picked, webhooks w, events e
             WHERE d.seq = picked.seq AND w.id = d.webhook_id AND e.id = d.event_id
             RETURNING {CLAIMED_COLS}, picked.next_attempt_at"
        );
        let lease: i64 = rand::random::<u32>() as i64;
        let rows = self.write_query(&sql, &[&now, &limit, &webhook_id, &lease_until, &lease])?;
        let mut claimed = rows
            .iter()
            .map(|r| Ok((col::<i64>(r, 15)?, claimed_row(r, lease, lease_until)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        // RETURNING answers in no order: oldest due first, as picked.
        claimed.sort_by_key(|(due, c)| (*due, c.seq));
        Ok(claimed.into_iter().map(|(_, c)| c).collect())
    }

    fn record_attempts(
        &mut self,
        records: &[AttemptRecord],
        lease_next: Option<NextLease>,
    ) -> StoreResult<Vec<Recorded>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        // Each attempt is logged, whether or not its lease is still ours.
        self.execute(
            "INSERT INTO attempts (delivery_seq, at, status_code, latency_ms, error, response_body,
                request_headers)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[],
                $5::text[], $6::text[], $7::text[])",
            &[
                &records.iter().map(|a| a.seq).collect::<Vec<_>>(),
                &records.iter().map(|a| a.at).collect::<Vec<_>>(),
                &records.iter().map(|a| a.status_code).collect::<Vec<_>>(),
                &records.iter().map(|a| a.latency_ms).collect::<Vec<_>>(),
                &records
                    .iter()
                    .map(|a| a.error.as_deref())
                    .collect::<Vec<_>>(),
                &records
                    .iter()
                    .map(|a| a.response_body.as_deref())
                    .collect::<Vec<_>>(),
                &records
                    .iter()
                    .map(|a| a.request_headers.as_deref())
                    .collect::<Vec<_>>(),
            ],
        )?;
        let finishing = |a: &AttemptRecord| {
            matches!(a.next, NextStep::Delivered | NextStep::Dead)
                .then_some(a.ordering_key)
                .flatten()
                .map(|key| (a.webhook_id, key))
        };
        // The pairs' locks come before any delivery's own row, in one order for every
        // finisher: after a retry or a recovery two deliveries of a pair may be in flight at
        // once, and two finishers each holding its own row while waiting for the other's
        // lock (the other's unblock would update that row) would deadlock.
        let mut keys: Vec<i64> = records
            .iter()
            .filter_map(finishing)
            .map(|(webhook_id, key)| pair_key(webhook_id, key))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        if !keys.is_empty() {
            self.query(
                "SELECT pg_advisory_xact_lock(k)
                 FROM (SELECT k FROM unnest($1::bigint[]) AS k ORDER BY k) AS sorted",
                &[&keys],
            )?;
        }
        let mut recorded = vec![Recorded::default(); records.len()];
        // Each round moves at most one record of a delivery, the first left: a delivery
        // attempted twice in one call (its lease lost, then claimed again) moves as it would
        // one record after another. Rounds after the first are rare.
        let mut left: Vec<usize> = (0..records.len()).collect();
        while !left.is_empty() {
            let mut seen = HashSet::new();
            let (mut round, later): (Vec<usize>, Vec<usize>) =
                left.iter().partition(|&&i| seen.insert(records[i].seq));
            round.sort_unstable_by_key(|&i| records[i].seq);
            for seq in self.move_deliveries(records, &round)? {
                if let Ok(at) = round.binary_search_by_key(&seq, |&i| records[i].seq) {
                    recorded[round[at]].applied = true;
                }
            }
            left = later;
        }
        for (a, r) in records.iter().zip(&recorded) {
            if r.applied {
                self.counts
                    .add(a.webhook_id, minute_of(a.at), &AttemptTally::of(a));
            }
        }
        // Before the next deliveries are leased: an endpoint these attempts disabled gets no
        // more.
        for (a, r) in records.iter().zip(recorded.iter_mut()) {
            if a.next != NextStep::Delivered {
                r.disabled = self.note_failure(a)?;
            }
        }
        // Finished: the next delivery of each endpoint and ticket may go. Under the pairs'
        // locks, so a delivery inserted blocked behind a finished one by a transaction that
        // committed meanwhile is seen here.
        let finished: Vec<(i64, i64)> = records
            .iter()
            .zip(&recorded)
            .filter(|(_, r)| r.applied)
            .filter_map(|(a, _)| finishing(a))
            .collect();
        if !finished.is_empty() {
            let mut freed = self.unblock_next(&finished, lease_next)?;
            for (a, r) in records.iter().zip(recorded.iter_mut()) {
                let Some(pair) = finishing(a).filter(|_| r.applied) else {
                    continue;
                };
                if let Some((_, next)) = freed.iter_mut().find(|(freed, _)| *freed == pair) {
                    r.unblocked = true;
                    // Two finishes of one pair free one delivery, leased to the first.
                    r.next = next.take();
                }
            }
        }
        Ok(recorded)
    }

    fn mark_healthy(&mut self, webhook_ids: &[i64]) -> StoreResult<()> {
        if webhook_ids.is_empty() {
            return Ok(());
        }
        self.execute(
            "UPDATE webhooks SET failing_since = NULL
             WHERE id = ANY($1) AND failing_since IS NOT NULL",
            &[&webhook_ids.to_vec()],
        )?;
        Ok(())
    }

    fn release_deliveries(&mut self, leases: &[(i64, i64)], now: i64) -> StoreResult<usize> {
        if leases.is_empty() {
            return Ok(0);
        }
        let (seqs, tokens): (Vec<i64>, Vec<i64>) = leases.iter().copied().unzip();
        let released = self.execute(
            "UPDATE deliveries d SET state = 'pending', next_attempt_at = $3
             FROM unnest($1::bigint[], $2::bigint[]) AS r(seq, lease)
             WHERE d.seq = r.seq AND d.lease = r.lease AND d.state = 'delivering'",
            &[&seqs, &tokens, &now],
        )?;
        self.announce_if(released > 0, Topic::Deliveries);
        Ok(released as usize)
    }

    fn next_delivery_due(&mut self) -> StoreResult<Option<i64>> {
        let row = self.query_one(
            "SELECT min((SELECT min(next_attempt_at) FROM deliveries
                         WHERE webhook_id = w.id AND state IN ('pending', 'delivering', 'failed')
                           AND NOT blocked))
             FROM webhooks w",
            &[],
        )?;
        col(&row, 0)
    }

    fn deliveries(
        &mut self,
        webhook_id: i64,
        status: Option<DeliveryStatus>,
        after: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<Delivery>> {
        let rows = self.query(
            &format!(
                "SELECT {DELIVERY_COLS} FROM deliveries d
                 WHERE d.webhook_id = $1 AND ($2::text IS NULL OR d.state = $2)
                   AND ($3::text IS NULL OR (d.created_at, d.seq) <
                        (SELECT created_at, seq FROM deliveries WHERE id = $3))
                 ORDER BY d.created_at DESC, d.seq DESC LIMIT $4"
            ),
            &[&webhook_id, &status.map(|s| s.as_str()), &after, &limit],
        )?;
        rows.iter().map(delivery_row).collect()
    }

    fn delivery(&mut self, company_id: i64, id: &str) -> StoreResult<Option<DeliveryDetail>> {
        let found = self.query_opt(
            &format!(
                "SELECT {DELIVERY_COLS}, d.seq, e.payload FROM deliveries d
                 JOIN events e ON e.id = d.event_id
                 WHERE d.id = $2 AND e.company_id = $1"
            ),
            &[&company_id, &id],
        )?;
        let Some(row) = found else {
            return Ok(None);
        };
        let delivery = delivery_row(&row)?;
        let seq: i64 = col(&row, 10)?;
        let payload: String = col(&row, 11)?;
        let attempts_log = self
            .query(
                "SELECT at, status_code, latency_ms, error, response_body, request_headers
                 FROM attempts WHERE delivery_seq = $1 ORDER BY id",
                &[&seq],
            )?
            .iter()
            .map(|r| {
                Ok(Attempt {
                    at: col(r, 0)?,
                    status_code: col(r, 1)?,
                    latency_ms: col(r, 2)?,
                    error: col(r, 3)?,
                    response_body: col(r, 4)?,
                    request_headers: col(r, 5)?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let payload =
            serde_json::from_str(&payload).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Some(DeliveryDetail {
            delivery,
            payload,
            attempts_log,
        }))
    }

    fn retry_delivery(&mut self, company_id: i64, id: &str, now: i64) -> StoreResult<bool> {
        // No pair lock: this only ever unblocks, and makes a delivery unfinished and unblocked.
        // Nothing decides whether a delivery waits from this one but the insert, and an
        // insert that misses this change (not committed yet) leaves its delivery unblocked,
        // as it would have been had it come first: every outcome is one a sequence of the
        // same operations gives, and no delivery is left blocked with nothing to wait for.
        let queued = self.execute(
            "UPDATE deliveries d SET state = 'pending', blocked = false, next_attempt_at = $3
             WHERE d.id = $2 AND d.state <> 'delivering'
               AND EXISTS (SELECT 1 FROM webhooks w
                           WHERE w.id = d.webhook_id AND w.company_id = $1)",
            &[&company_id, &id, &now],
        )? > 0;
        self.announce_if(queued, Topic::Deliveries);
        Ok(queued)
    }

    fn recover_deliveries(&mut self, webhook_id: i64, since: i64, now: i64) -> StoreResult<usize> {
        // No pair lock, for the reasons of `retry_delivery`: it only queues deliveries again
        // unblocked (failed ones are never blocked; dead ones are finished).
        let queued = self.execute(
            "UPDATE deliveries SET state = 'pending', blocked = false, next_attempt_at = $3,
                recovered_at = $3
             WHERE webhook_id = $1 AND created_at >= $2 AND state IN ('failed', 'dead')",
            &[&webhook_id, &since, &now],
        )?;
        self.announce_if(queued > 0, Topic::Deliveries);
        Ok(queued as usize)
    }

    fn recovery_progress(
        &mut self,
        webhook_id: i64,
        recovered_at: i64,
    ) -> StoreResult<RecoveryProgress> {
        let rows = self.query(
            "SELECT state, count(*) FROM deliveries
             WHERE webhook_id = $1 AND recovered_at = $2 GROUP BY state",
            &[&webhook_id, &recovered_at],
        )?;
        let mut progress = RecoveryProgress::default();
        for r in &rows {
            let state = wire(r, 0, DeliveryStatus::parse)?;
            let n: i64 = col(r, 1)?;
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
        // No pair lock, for the reasons of `retry_delivery`.
        let Some(row) = self.write_opt(
            "INSERT INTO recoveries (company_id, webhook_id, since, started_at, queued)
             SELECT $1, id, $3, $4, 0 FROM webhooks WHERE id = $2 AND company_id = $1
             RETURNING id",
            &[&company_id, &webhook_id, &since, &now],
        )?
        else {
            return Ok(None);
        };
        let id: i64 = col(&row, 0)?;
        // Failed and dead deliveries are not delivered: the state index holds them.
        let queued = self.execute(
            "UPDATE deliveries SET state = 'pending', blocked = false, next_attempt_at = $4,
                recovered_at = $4, recovery_id = $5
             WHERE company_id = $1 AND state <> 'delivered' AND state IN ('failed', 'dead')
               AND created_at >= $3 AND webhook_id = $2",
            &[&company_id, &webhook_id, &since, &now, &id],
        )? as i64;
        self.execute(
            "UPDATE recoveries SET queued = $2 WHERE id = $1",
            &[&id, &queued],
        )?;
        self.announce_if(queued > 0, Topic::Deliveries);
        Ok(Some(Recovery {
            id,
            webhook_id,
            since,
            started_at: now,
            queued,
        }))
    }

    fn recovery(
        &mut self,
        company_id: i64,
        id: i64,
    ) -> StoreResult<Option<(Recovery, RecoveryProgress)>> {
        let Some(row) = self.query_opt(
            "SELECT id, webhook_id, since, started_at, queued FROM recoveries
             WHERE id = $1 AND company_id = $2",
            &[&id, &company_id],
        )?
        else {
            return Ok(None);
        };
        let recovery = recovery_row(&row)?;
        let rows = self.query(
            "SELECT state, count(*) FROM deliveries WHERE recovery_id = $1 GROUP BY state",
            &[&id],
        )?;
        let counts = rows
            .iter()
            .map(|r| Ok((wire(r, 0, DeliveryStatus::parse)?, col::<i64>(r, 1)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Some((recovery, progress_of(counts))))
    }

    fn recoveries(&mut self, company_id: i64, limit: i64) -> StoreResult<Vec<Recovery>> {
        self.query(
            "SELECT id, webhook_id, since, started_at, queued FROM recoveries
             WHERE company_id = $1 ORDER BY id DESC LIMIT $2",
            &[&company_id, &limit],
        )?
        .iter()
        .map(recovery_row)
        .collect()
    }

    fn delivery_log(
        &mut self,
        filter: &LogFilter,
        before: Option<LogKey>,
        limit: i64,
        scan: i64,
    ) -> StoreResult<LogPage> {
        if let Some(webhook_id) = filter.webhook_id {
            let row = self.query_one(
                "SELECT EXISTS (SELECT 1 FROM webhooks WHERE id = $1 AND company_id = $2)",
                &[&webhook_id, &filter.company_id],
            )?;
            if !col::<bool>(&row, 0)? {
                return Ok(LogPage::default());
            }
        }
        let query = filter.query(
            DELIVERY_COLS,
            &LogDialect {
                placeholder: "$",
                position: "strpos",
                table: |_| "deliveries d".into(),
            },
        );
        let args: Vec<Arg> = query
            .args
            .iter()
            .map(|a| -> Arg {
                match a {
                    LogArg::Int(v) => Box::new(*v),
                    LogArg::Text(v) => Box::new(v.clone()),
                }
            })
            .collect();
        let (first, next) = (&query.first, &query.next);
        read_log_page(before, limit, scan, query.residual, |before, n| {
            let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> =
                args.iter().map(|a| a.as_ref()).collect();
            let (created_at, seq) = before.map_or((0, 0), |k| (k.created_at, k.seq));
            let sql = match before {
                None => first,
                Some(_) => {
                    params.push(&created_at);
                    params.push(&seq);
                    next
                }
            };
            params.push(&n);
            self.query(sql, &params)?
                .iter()
                .map(|r| {
                    let delivery = delivery_row(r)?;
                    Ok((
                        LogRow {
                            key: LogKey {
                                created_at: delivery.created_at,
                                seq: col(r, 10)?,
                            },
                            delivery,
                            ticket_id: col(r, 11)?,
                        },
                        col::<bool>(r, 12)?,
                    ))
                })
                .collect()
        })
    }

    fn prune(&mut self, before: i64, batch: i64) -> StoreResult<usize> {
        // The batch is locked as it is picked: a retry of one of them (queued again, so no
        // longer finished) waits for this transaction and then finds it gone, rather than
        // this deleting it after the retry; another process's prune takes other rows.
        let finished: Vec<i64> = self
            .query(
                "SELECT seq FROM deliveries
                 WHERE state IN ('delivered', 'dead') AND created_at < $1 LIMIT $2
                 FOR UPDATE SKIP LOCKED",
                &[&before, &batch],
            )?
            .iter()
            .map(|r| col(r, 0))
            .collect::<StoreResult<_>>()?;
        let mut deliveries = 0;
        if !finished.is_empty() {
            self.execute(
                "DELETE FROM attempts WHERE delivery_seq = ANY($1)",
                &[&finished],
            )?;
            deliveries =
                self.execute("DELETE FROM deliveries WHERE seq = ANY($1)", &[&finished])?;
        }
        let events = self.execute(
            "DELETE FROM events WHERE id IN (
                SELECT e.id FROM events e
                WHERE e.created_at < $1
                  AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)
                LIMIT $2
                FOR UPDATE SKIP LOCKED)",
            &[&before, &batch],
        )?;
        let counts = self.execute(
            "DELETE FROM attempt_minutes WHERE ctid = ANY(ARRAY(
                SELECT ctid FROM attempt_minutes WHERE minute < $1 LIMIT $2
                FOR UPDATE SKIP LOCKED))",
            &[&minute_of(before), &batch],
        )?;
        Ok((deliveries + events + counts) as usize)
    }

    fn free_orphaned(&mut self) -> StoreResult<usize> {
        // Blocked deliveries are unfinished and ordered: the order index holds them all, so
        // this reads the backlog, not every delivery ever kept.
        //
        // No pair locks: the WHERE is enough. It frees a delivery only when every older one of
        // its pair is seen finished, committed. No older one can appear uncommitted: seqs are
        // drawn under the pair lock, so an older one's insert committed before this one was
        // written. An older one can only become unfinished again by a retry or a recovery,
        // which leaves it unblocked beside this one, as if the retry came after. And a finish
        // that has not committed yet leaves its delivery unfinished here, so this skips the
        // pair and that finish unblocks the next one itself.
        //
        // The outer `blocked` is what a concurrent run on another node rechecks once it gets
        // the row after this one committed (the subquery's answer is not rechecked), so each
        // delivery is freed and counted once.
        let freed = self.execute(
            "UPDATE deliveries SET blocked = false WHERE blocked AND seq IN (
                SELECT d.seq FROM deliveries d
                WHERE d.state IN ('pending', 'delivering', 'failed')
                  AND d.ordering_key IS NOT NULL AND d.blocked
                  AND NOT EXISTS (
                    SELECT 1 FROM deliveries o
                    WHERE o.webhook_id = d.webhook_id AND o.ordering_key = d.ordering_key
                      AND o.seq < d.seq AND o.state IN ('pending', 'delivering', 'failed')))",
            &[],
        )?;
        self.announce_if(freed > 0, Topic::Deliveries);
        Ok(freed as usize)
    }

    fn backlogs(&mut self) -> StoreResult<Vec<EndpointBacklog>> {
        // Unfinished deliveries are in one of the two partial indexes (due when not blocked,
        // ordered when blocked), so this reads the backlog only. Ordered by endpoint, as
        // SQLite's grouping answers them.
        let rows = self.query(
            "SELECT webhook_id, count(*), min(created_at) FROM (
                SELECT webhook_id, created_at FROM deliveries
                WHERE state IN ('pending', 'delivering', 'failed') AND NOT blocked
                UNION ALL
                SELECT webhook_id, created_at FROM deliveries
                WHERE state IN ('pending', 'delivering', 'failed') AND ordering_key IS NOT NULL
                  AND blocked) AS backlog
             GROUP BY webhook_id
             ORDER BY webhook_id",
            &[],
        )?;
        rows.iter()
            .map(|r| {
                Ok(EndpointBacklog {
                    webhook_id: col(r, 0)?,
                    pending: col(r, 1)?,
                    oldest_created_at: col(r, 2)?,
                })
            })
            .collect()
    }
}
