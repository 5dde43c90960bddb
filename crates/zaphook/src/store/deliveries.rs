//! The outbox: events, their deliveries to each endpoint, claims under leases, attempts,
//! recovery and housekeeping: the repository operations every backend implements for them.

use std::sync::Arc;

use crate::domain::{Delivery, DeliveryDetail, DeliveryStatus, EventType, Ordering, TicketStatus};

use super::{StoreResult, Target};

/// An endpoint that wants an event, and how it orders deliveries.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub ordering: Ordering,
    /// Wants the media's bytes in `mediaBase64`.
    pub media_base64: bool,
    pub target: Target,
}

/// A delivery to append for an event.
pub struct NewDelivery<'a> {
    pub id: &'a str,
    pub event_id: &'a str,
    pub event_type: EventType,
    pub webhook_id: i64,
    /// The ticket whose order it keeps, if its endpoint orders by ticket.
    pub ordering_key: Option<i64>,
}

/// Deliveries leased as they are written, for the local dispatcher to attempt as soon as the
/// transaction commits, without a claim. A crash before the attempt leaves them to their
/// lease, like any claimed delivery.
#[derive(Debug, Default, Clone)]
pub struct Handoffs {
    pub lease: i64,
    pub lease_until: i64,
    pub claimed: Vec<Claimed>,
    /// Endpoints whose hand-offs already wait for room: theirs are queued in the database.
    pub busy: Vec<i64>,
}

/// What decides which endpoints receive an event.
#[derive(Debug, Clone, Copy)]
pub struct EventScope<'a> {
    pub company_id: i64,
    pub event_type: EventType,
    pub connection_id: Option<i64>,
    pub queue_id: Option<i64>,
    pub is_group: bool,
    pub ticket_id: Option<i64>,
    /// For a message event, what the message filters look at.
    pub message: Option<MessageScope>,
    /// For a transfer, the queue the ticket left: its endpoints hear of it too.
    pub previous_queue_id: Option<i64>,
    /// Only for the endpoints of `queue_id` that start on transfer: the ticket's last message,
    /// sent as the ticket enters their queue.
    pub transfer_start: bool,
    /// Only for the endpoints this API config (`apiId`) owns: its hooks.
    pub api_config: Option<&'a str>,
}

/// What the message filters of an endpoint look at.
#[derive(Debug, Clone, Copy)]
pub struct MessageScope {
    pub from_me: bool,
    pub ticket_status: TicketStatus,
}

/// A delivery a worker holds under a lease.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub seq: i64,
    /// The ticket whose order the delivery keeps, if its endpoint orders by ticket.
    pub ordering_key: Option<i64>,
    pub id: String,
    pub event_id: String,
    pub event_type: EventType,
    pub attempts: i64,
    pub lease: i64,
    pub lease_until: i64,
    pub payload: Arc<str>,
    /// The stored file (its SHA-256) whose bytes go in the payload's `mediaBase64`, when the
    /// endpoint asks for them.
    pub media: Option<Arc<str>>,
    pub target: Target,
}

/// The outcome of one attempt and what follows from it.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub seq: i64,
    pub webhook_id: i64,
    pub ordering_key: Option<i64>,
    pub lease: i64,
    pub at: i64,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub response_body: Option<String>,
    pub next: NextStep,
    /// The endpoint answered `410 Gone`: disable it.
    pub disable_webhook: bool,
    /// An endpoint failing without a success for this long is disabled.
    pub disable_after_ms: i64,
}

/// What recording an attempt changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// False when the lease was no longer ours (another worker took the delivery).
    pub applied: bool,
    /// Why the endpoint was disabled by this attempt, if it was.
    pub disabled: Option<String>,
    /// The next delivery of the same endpoint and ticket stopped waiting behind this one.
    /// Not announced: the dispatcher that recorded the attempt claims it (waking every
    /// process for each finished delivery cost a claim transaction per commit).
    pub unblocked: bool,
}

/// Deliveries queued again by one recovery, by where they stand now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryProgress {
    /// Not attempted yet, or being attempted.
    pub waiting: i64,
    pub delivered: i64,
    /// Attempted and failed again; retried on the schedule.
    pub failed: i64,
    pub dead: i64,
}

impl RecoveryProgress {
    pub fn total(&self) -> i64 {
        self.waiting + self.delivered + self.failed + self.dead
    }
}

/// An endpoint with due deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueWebhook {
    pub id: i64,
    /// Most attempts per second, when limited.
    pub rate_limit: Option<i64>,
}

/// The backlog of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointBacklog {
    pub webhook_id: i64,
    pub pending: i64,
    /// Creation time of the oldest undelivered delivery.
    pub oldest_created_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Delivered,
    RetryAt(i64),
    Dead,
}

pub trait DeliveryTx {
    /// The endpoints that want an event, with what it takes to send it to them at `now`.
    fn subscribers(&mut self, scope: &EventScope<'_>, now: i64) -> StoreResult<Vec<Subscriber>>;
    /// Appends an event; `media` is the stored file (SHA-256) behind its `mediaBase64`.
    fn insert_event(
        &mut self,
        id: &str,
        scope: &EventScope<'_>,
        payload: &str,
        media: Option<&str>,
        now: i64,
    ) -> StoreResult<()>;
    /// Inserts a delivery; leases it at once (answering its `seq`) when `lease` is given and
    /// no older delivery of the same endpoint and ticket is unfinished.
    fn insert_delivery(
        &mut self,
        delivery: &NewDelivery<'_>,
        now: i64,
        lease: Option<(i64, i64)>,
    ) -> StoreResult<Option<i64>>;
    /// The deliveries handed off in this transaction, when the caller asked for hand-offs.
    fn handoffs(&mut self) -> &mut Option<Handoffs>;
    /// Enabled endpoints with at least one delivery due at `now`.
    fn due_webhooks(&mut self, now: i64) -> StoreResult<Vec<DueWebhook>>;
    /// Leases up to `limit` due deliveries of one endpoint, oldest due first, skipping those
    /// waiting behind an older undelivered one of the same ticket.
    fn claim_deliveries(
        &mut self,
        now: i64,
        lease_until: i64,
        webhook_id: i64,
        limit: i64,
    ) -> StoreResult<Vec<Claimed>>;
    /// Logs an attempt and moves the delivery on, if the lease is still ours; keeps the
    /// endpoint's health on failure (disabled on `410 Gone` or after failing too long).
    fn record_attempt(&mut self, record: &AttemptRecord) -> StoreResult<Recorded>;
    /// These endpoints just delivered: they are no longer failing.
    fn mark_healthy(&mut self, webhook_ids: &[i64]) -> StoreResult<()>;
    /// Gives leased deliveries back (state pending, due now), if the leases are still ours.
    fn release_deliveries(&mut self, leases: &[(i64, i64)], now: i64) -> StoreResult<usize>;
    /// When the earliest waiting delivery becomes due.
    fn next_delivery_due(&mut self) -> StoreResult<Option<i64>>;
    fn deliveries(
        &mut self,
        webhook_id: i64,
        status: Option<DeliveryStatus>,
        after: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<Delivery>>;
    fn delivery(&mut self, company_id: i64, id: &str) -> StoreResult<Option<DeliveryDetail>>;
    /// Queues a delivery again now, whatever its state, unless it is being attempted.
    fn retry_delivery(&mut self, company_id: i64, id: &str, now: i64) -> StoreResult<bool>;
    /// Queues again every failed or dead delivery of an endpoint created since `since`.
    fn recover_deliveries(&mut self, webhook_id: i64, since: i64, now: i64) -> StoreResult<usize>;
    /// Where the deliveries an endpoint's recovery at `recovered_at` queued again stand.
    fn recovery_progress(
        &mut self,
        webhook_id: i64,
        recovered_at: i64,
    ) -> StoreResult<RecoveryProgress>;
    /// Deletes up to `batch` finished (delivered or dead) deliveries created before `before`,
    /// with their attempts, events no delivery refers to any more, and attempt counts of the
    /// minutes before `before`. Answers how many rows.
    fn prune(&mut self, before: i64, batch: i64) -> StoreResult<usize>;
    /// Frees blocked deliveries that have no older unfinished one left to wait for (the
    /// finishing path never leaves one behind; this is the safety net). Answers how many.
    fn free_orphaned(&mut self) -> StoreResult<usize>;
    /// Waiting deliveries per endpoint.
    fn backlogs(&mut self) -> StoreResult<Vec<EndpointBacklog>>;
}
