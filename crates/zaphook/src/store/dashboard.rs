//! What the dashboard reads beyond the API: attempts counted per endpoint and minute (by
//! outcome, with their latencies in buckets), an endpoint's waiting deliveries, and the
//! events of a ticket that went to an endpoint, with where each of their deliveries stands
//! (found through the delivery log's ticket index: events no endpoint took are not kept
//! apart by ticket, which would cost every event an index entry). The counts are kept as
//! attempts are recorded, so a day of them is a few thousand rows to add up, whatever the
//! traffic.

use std::collections::HashMap;

use super::{AttemptRecord, EndpointBacklog, NextStep, StoreResult};
use crate::domain::{DeliveryStatus, EventType};

/// An event of a ticket, with its deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketEvent {
    pub id: String,
    pub event_type: EventType,
    pub created_at: i64,
    /// The message a message event is about (its payload's `id`).
    pub message_id: Option<String>,
    pub deliveries: Vec<EventDelivery>,
}

/// Where one delivery of an event stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDelivery {
    pub id: String,
    pub webhook_id: i64,
    pub status: DeliveryStatus,
    pub attempts: i64,
}

/// Most events a ticket's timeline reads (with their deliveries, rows of both).
pub const TICKET_EVENT_ROWS: i64 = 2_000;

/// The message id of a message event's payload.
pub fn message_of(event_type: EventType, payload: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Head {
        id: Option<String>,
    }
    matches!(
        event_type,
        EventType::MessageCreated | EventType::MessageUpdated
    )
    .then(|| serde_json::from_str::<Head>(payload).ok()?.id)
    .flatten()
}

/// Rows of (event, delivery) joined, each event's rows together, as events.
pub fn group_events(
    rows: impl IntoIterator<Item = (TicketEvent, EventDelivery)>,
) -> Vec<TicketEvent> {
    let mut events: Vec<TicketEvent> = Vec::new();
    for (event, delivery) in rows {
        if events.last().is_none_or(|last| last.id != event.id) {
            events.push(event);
        }
        if let Some(last) = events.last_mut() {
            last.deliveries.push(delivery);
        }
    }
    events
}

/// Upper bounds (inclusive, in milliseconds) of the latency buckets; a last bucket holds the
/// attempts slower than the last bound.
pub const LATENCY_BOUNDS_MS: [i64; 8] = [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000];

/// The counters' columns, in [`AttemptTally::columns`] order, as both backends name them.
pub const TALLY_COLUMNS: [&str; 13] = [
    "delivered",
    "failed",
    "dead",
    "latency_ms_sum",
    "le_50",
    "le_100",
    "le_250",
    "le_500",
    "le_1000",
    "le_2500",
    "le_5000",
    "le_10000",
    "over_10000",
];

/// Attempts over some minutes, by outcome, with their latencies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttemptTally {
    pub delivered: i64,
    /// Failed, to be tried again.
    pub failed: i64,
    /// Failed, and the delivery was given up.
    pub dead: i64,
    pub latency_ms_sum: i64,
    /// Attempts per latency bucket ([`LATENCY_BOUNDS_MS`], then the slower ones).
    pub latency: [i64; LATENCY_BOUNDS_MS.len() + 1],
}

impl AttemptTally {
    /// One attempt, as recorded.
    pub fn of(record: &AttemptRecord) -> Self {
        let mut tally = AttemptTally {
            latency_ms_sum: record.latency_ms,
            ..AttemptTally::default()
        };
        match record.next {
            NextStep::Delivered => tally.delivered = 1,
            NextStep::RetryAt(_) => tally.failed = 1,
            NextStep::Dead => tally.dead = 1,
        }
        let bucket = LATENCY_BOUNDS_MS
            .iter()
            .position(|bound| record.latency_ms <= *bound)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        tally.latency[bucket] = 1;
        tally
    }

    /// The counters in [`TALLY_COLUMNS`] order.
    pub fn columns(&self) -> [i64; TALLY_COLUMNS.len()] {
        let mut columns = [0; TALLY_COLUMNS.len()];
        columns[..4].copy_from_slice(&[
            self.delivered,
            self.failed,
            self.dead,
            self.latency_ms_sum,
        ]);
        columns[4..].copy_from_slice(&self.latency);
        columns
    }

    /// The tally of counters in [`TALLY_COLUMNS`] order.
    pub fn from_columns(columns: [i64; TALLY_COLUMNS.len()]) -> Self {
        let mut latency = [0; LATENCY_BOUNDS_MS.len() + 1];
        latency.copy_from_slice(&columns[4..]);
        AttemptTally {
            delivered: columns[0],
            failed: columns[1],
            dead: columns[2],
            latency_ms_sum: columns[3],
            latency,
        }
    }

    pub fn add(&mut self, other: &AttemptTally) {
        let mut sum = self.columns();
        for (total, more) in sum.iter_mut().zip(other.columns()) {
            *total += more;
        }
        *self = AttemptTally::from_columns(sum);
    }

    pub fn attempts(&self) -> i64 {
        self.delivered + self.failed + self.dead
    }

    /// Delivered attempts per attempt, when there was one.
    pub fn success_rate(&self) -> Option<f64> {
        let attempts = self.attempts();
        (attempts > 0).then(|| self.delivered as f64 / attempts as f64)
    }

    /// The bucket the `q` quantile of the latencies falls in, as its upper bound: `Some(None)`
    /// when it is above the last bound, `None` without attempts.
    pub fn latency_bound(&self, q: f64) -> Option<Option<i64>> {
        let attempts: i64 = self.latency.iter().sum();
        if attempts == 0 {
            return None;
        }
        let rank = (q * attempts as f64).ceil().max(1.0) as i64;
        let mut seen = 0;
        for (i, count) in self.latency.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(LATENCY_BOUNDS_MS.get(i).copied());
            }
        }
        Some(None)
    }
}

/// Attempts a batch recorded, by (endpoint, minute): each job counts its own, and the batch
/// adds up those of the jobs it commits and writes them once, before its commit.
#[derive(Debug, Default)]
pub struct Counts(HashMap<(i64, i64), AttemptTally>);

impl Counts {
    pub fn add(&mut self, webhook_id: i64, minute: i64, tally: &AttemptTally) {
        self.0.entry((webhook_id, minute)).or_default().add(tally);
    }

    pub fn extend(&mut self, other: Counts) {
        for ((webhook_id, minute), tally) in other.0 {
            self.add(webhook_id, minute, &tally);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// (endpoint, minute, counts), in key order.
    pub fn rows(&self) -> Vec<(i64, i64, AttemptTally)> {
        let mut rows: Vec<_> = self.0.iter().map(|((w, m), t)| (*w, *m, *t)).collect();
        rows.sort_by_key(|(w, m, _)| (*w, *m));
        rows
    }
}

/// A minute (milliseconds since the epoch divided by 60,000).
pub fn minute_of(ms: i64) -> i64 {
    ms.div_euclid(60_000)
}

pub trait DashboardTx {
    /// One endpoint's attempts from minute `since` on.
    fn attempt_tally(&mut self, webhook_id: i64, since: i64) -> StoreResult<AttemptTally>;
    /// The company's attempts (or one endpoint's) per minute from minute `since` on, oldest
    /// first; minutes without attempts are left out.
    fn attempt_minutes(
        &mut self,
        company_id: i64,
        webhook_id: Option<i64>,
        since: i64,
    ) -> StoreResult<Vec<(i64, AttemptTally)>>;
    /// One endpoint's waiting deliveries, if it has any.
    fn backlog(&mut self, webhook_id: i64) -> StoreResult<Option<EndpointBacklog>>;
    /// A ticket's events that have deliveries, oldest first, each with its deliveries (at
    /// most [`TICKET_EVENT_ROWS`] deliveries).
    fn ticket_events(&mut self, company_id: i64, ticket_id: i64) -> StoreResult<Vec<TicketEvent>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(latency_ms: i64, next: NextStep) -> AttemptTally {
        AttemptTally::of(&AttemptRecord {
            seq: 1,
            webhook_id: 1,
            ordering_key: None,
            lease: 1,
            at: 0,
            status_code: None,
            latency_ms,
            error: None,
            response_body: None,
            request_headers: None,
            next,
            disable_webhook: false,
            disable_after_ms: 0,
        })
    }

    #[test]
    fn outcomes_and_latency_buckets_add_up() {
        let mut tally = AttemptTally::default();
        assert_eq!(tally.success_rate(), None);
        assert_eq!(tally.latency_bound(0.95), None);
        for _ in 0..18 {
            tally.add(&attempt(40, NextStep::Delivered));
        }
        tally.add(&attempt(300, NextStep::RetryAt(5)));
        tally.add(&attempt(20_000, NextStep::Dead));
        assert_eq!(tally.attempts(), 20);
        assert_eq!(tally.success_rate(), Some(0.9));
        assert_eq!(tally.latency_ms_sum, 18 * 40 + 300 + 20_000);
        // 19 of 20 are within 500 ms: the 95th percentile is in that bucket, the 100th above all.
        assert_eq!(tally.latency_bound(0.5), Some(Some(50)));
        assert_eq!(tally.latency_bound(0.95), Some(Some(500)));
        assert_eq!(tally.latency_bound(1.0), Some(None));
        assert_eq!(AttemptTally::from_columns(tally.columns()), tally);
    }

    #[test]
    fn a_bound_is_inclusive() {
        assert_eq!(attempt(50, NextStep::Delivered).latency[0], 1);
        assert_eq!(attempt(51, NextStep::Delivered).latency[1], 1);
        assert_eq!(attempt(10_001, NextStep::Delivered).latency[8], 1);
    }

    #[test]
    fn minutes_round_down() {
        assert_eq!(minute_of(59_999), 0);
        assert_eq!(minute_of(60_000), 1);
        assert_eq!(minute_of(-1), -1);
    }
}
