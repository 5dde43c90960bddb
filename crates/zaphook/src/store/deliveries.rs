//! The outbox: events, their deliveries to each endpoint, claims under leases, attempts,
//! recovery and housekeeping: the repository operations every backend implements for them.

use std::sync::{Arc, Mutex};

use crate::domain::{Delivery, DeliveryDetail, DeliveryStatus, EventType, Ordering, TicketStatus};

use super::{StoreError, StoreResult, Target};

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
    /// The event's company and ticket, kept with the delivery for the delivery log.
    pub company_id: i64,
    pub ticket_id: Option<i64>,
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
    pub claimed: HandedOff,
    /// Endpoints whose hand-offs already wait for room: theirs are queued in the database.
    pub busy: Vec<i64>,
}

/// Where the store puts what it leased for a hand-off: complete once the transaction has
/// committed, and not before (a backend may hold the inserts until the commit, and only
/// then learns their seqs).
pub type HandedOff = Arc<Mutex<Vec<Claimed>>>;

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
    /// The request's headers as sent, one `name: value` a line (the API key's value left out).
    pub request_headers: Option<String>,
    pub next: NextStep,
    /// The endpoint answered `410 Gone`: disable it.
    pub disable_webhook: bool,
    /// An endpoint failing without a success for this long is disabled.
    pub disable_after_ms: i64,
}

/// The lease [`DeliveryTx::record_attempts`] gives the deliveries its finishes unblock: taken
/// at `now`, held until `until`.
#[derive(Debug, Clone, Copy)]
pub struct NextLease {
    pub now: i64,
    pub until: i64,
}

/// What recording an attempt changed.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// False when the lease was no longer ours (another worker took the delivery).
    pub applied: bool,
    /// Why the endpoint was disabled by this attempt, if it was.
    pub disabled: Option<String>,
    /// The next delivery of the same endpoint and ticket stopped waiting behind this one.
    /// Not announced: the dispatcher that recorded the attempt attempts or claims it (waking
    /// every process for each finished delivery cost a claim transaction per commit).
    pub unblocked: bool,
    /// That next delivery, leased to the caller, when it asked for the next ones and their
    /// endpoint is enabled: it needs no claim.
    pub next: Option<Claimed>,
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

/// One recovery: the failed and dead deliveries of an endpoint created since a time, queued
/// again at once. Each delivery it queued carries its id until a later recovery takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub id: i64,
    pub webhook_id: i64,
    pub since: i64,
    pub started_at: i64,
    /// How many deliveries it queued again.
    pub queued: i64,
}

/// What the delivery log is narrowed to: the company's deliveries, and any of the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    pub company_id: i64,
    pub webhook_id: Option<i64>,
    pub event_type: Option<EventType>,
    pub status: Option<DeliveryStatus>,
    pub ticket_id: Option<i64>,
    /// Created at or after (Unix ms).
    pub from: Option<i64>,
    /// Created before (Unix ms).
    pub to: Option<i64>,
    /// Contained in the payload as it is stored (case-sensitive).
    pub text: Option<String>,
}

/// A place in the delivery log, whose order is newest first: by creation time, then by `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogKey {
    pub created_at: i64,
    pub seq: i64,
}

impl LogKey {
    /// As a page's link carries it: `<created_at>.<seq>`.
    pub fn encode(self) -> String {
        format!("{}.{}", self.created_at, self.seq)
    }

    pub fn parse(text: &str) -> Option<LogKey> {
        let (created_at, seq) = text.trim().split_once('.')?;
        Some(LogKey {
            created_at: created_at.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

/// One delivery of the log, with its place and its ticket.
#[derive(Debug, Clone)]
pub struct LogRow {
    pub key: LogKey,
    pub delivery: Delivery,
    pub ticket_id: Option<i64>,
}

/// One page of the delivery log.
#[derive(Debug, Clone, Default)]
pub struct LogPage {
    pub rows: Vec<LogRow>,
    /// Where the next page starts, when there may be older deliveries.
    pub next: Option<LogKey>,
    /// The page stopped at its bound of deliveries read before it filled: the log was
    /// searched back to this creation time, and `next` continues from there.
    pub searched_to: Option<i64>,
}

/// How a backend reads the log: the index it walks, newest first, and which conditions it
/// checks on each row read rather than in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogPath {
    /// `(company_id, ticket_id, created_at)`.
    Ticket,
    /// `(company_id, state, created_at)` over the deliveries not delivered.
    State,
    /// `(webhook_id, created_at)`.
    Webhook,
    /// `(company_id, created_at)`.
    Company,
}

/// The conditions of a filter that the chosen path does not cover, checked row by row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Residual {
    pub webhook_id: Option<i64>,
    pub event_type: Option<EventType>,
    pub status: Option<DeliveryStatus>,
    pub text: Option<String>,
}

impl Residual {
    pub fn is_empty(&self) -> bool {
        *self == Residual::default()
    }
}

impl LogFilter {
    /// The narrowest index the filter can walk, and what is left to check on each row.
    pub fn plan(&self) -> (LogPath, Residual) {
        let mut rest = Residual {
            webhook_id: self.webhook_id,
            event_type: self.event_type,
            status: self.status,
            text: self.text.clone().filter(|t| !t.is_empty()),
        };
        let path = if self.ticket_id.is_some() {
            LogPath::Ticket
        } else if self.status.is_some_and(|s| s != DeliveryStatus::Delivered) {
            rest.status = None;
            LogPath::State
        } else if self.webhook_id.is_some() {
            rest.webhook_id = None;
            LogPath::Webhook
        } else {
            LogPath::Company
        };
        (path, rest)
    }
}

/// A parameter of the delivery log's query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogArg {
    Int(i64),
    Text(String),
}

/// How a backend writes the log's query.
pub struct LogDialect {
    /// What comes before a parameter's number: `$` or `?`.
    pub placeholder: &'static str,
    /// The function answering where a text is in another, 0 when nowhere.
    pub position: &'static str,
    /// The deliveries table as read along a path (SQLite names the index to walk).
    pub table: fn(LogPath) -> String,
}

/// The log's statements for one filter: the first page's and the next pages', which take a
/// key's `created_at` and `seq` after `args`; both end with the page's LIMIT as a parameter.
/// Each row is `columns`, `seq`, `ticket_id` and whether it passes the residual filter.
pub struct LogQuery {
    pub first: String,
    pub next: String,
    pub args: Vec<LogArg>,
    /// Some of the filter is checked row by row.
    pub residual: bool,
}

impl LogFilter {
    /// The statements reading this filter's log along its [`plan`](Self::plan).
    pub fn query(&self, columns: &str, dialect: &LogDialect) -> LogQuery {
        let (path, rest) = self.plan();
        let mut args = Vec::new();
        let mut arg = |v: LogArg| {
            args.push(v);
            format!("{}{}", dialect.placeholder, args.len())
        };
        // What the path's index does not check, as a column: each row read counts.
        let mut hit = Vec::new();
        if let Some(w) = rest.webhook_id {
            hit.push(format!("d.webhook_id = {}", arg(LogArg::Int(w))));
        }
        if let Some(e) = rest.event_type {
            hit.push(format!(
                "d.event_type = {}",
                arg(LogArg::Text(e.as_str().into()))
            ));
        }
        if let Some(s) = rest.status {
            hit.push(format!(
                "d.state = {}",
                arg(LogArg::Text(s.as_str().into()))
            ));
        }
        if let Some(t) = &rest.text {
            hit.push(format!(
                "{}((SELECT e.payload FROM events e WHERE e.id = d.event_id), {}) > 0",
                dialect.position,
                arg(LogArg::Text(t.clone()))
            ));
        }
        let hit = if hit.is_empty() {
            "(1 = 1)".to_string()
        } else {
            format!("({})", hit.join(" AND "))
        };
        let mut wheres = match path {
            LogPath::Ticket => vec![
                format!("d.company_id = {}", arg(LogArg::Int(self.company_id))),
                format!(
                    "d.ticket_id = {}",
                    arg(LogArg::Int(self.ticket_id.unwrap_or_default()))
                ),
            ],
            LogPath::State => {
                let status = self.status.map(|s| s.as_str()).unwrap_or_default();
                vec![
                    format!("d.company_id = {}", arg(LogArg::Int(self.company_id))),
                    "d.state <> 'delivered'".into(),
                    format!("d.state = {}", arg(LogArg::Text(status.into()))),
                ]
            }
            LogPath::Webhook => vec![format!(
                "d.webhook_id = {}",
                arg(LogArg::Int(self.webhook_id.unwrap_or_default()))
            )],
            LogPath::Company => vec![format!(
                "d.company_id = {}",
                arg(LogArg::Int(self.company_id))
            )],
        };
        if let Some(from) = self.from {
            wheres.push(format!("d.created_at >= {}", arg(LogArg::Int(from))));
        }
        if let Some(to) = self.to {
            wheres.push(format!("d.created_at < {}", arg(LogArg::Int(to))));
        }
        let n = args.len();
        let p = dialect.placeholder;
        let sql = format!(
            "SELECT {columns}, d.seq, d.ticket_id, {hit} FROM {} WHERE {}",
            (dialect.table)(path),
            wheres.join(" AND ")
        );
        let order = "ORDER BY d.created_at DESC, d.seq DESC";
        // The first page and the next ones, each with its own range on the index.
        LogQuery {
            first: format!("{sql} {order} LIMIT {p}{}", n + 1),
            next: format!(
                "{sql} AND (d.created_at, d.seq) < ({p}{}, {p}{}) {order} LIMIT {p}{}",
                n + 1,
                n + 2,
                n + 3
            ),
            args,
            residual: !rest.is_empty(),
        }
    }
}

/// Deliveries read per query while a page is searched row by row.
pub const LOG_CHUNK: i64 = 500;

/// Reads one page of the log through `fetch`, which answers up to `n` deliveries older than
/// a key along the filter's path, each with whether it passes the rest of the filter. With
/// nothing left to check, one query reads the page; otherwise at most `scan` deliveries are
/// read, and a page that did not fill by then says how far back it searched.
pub fn read_log_page<F>(
    before: Option<LogKey>,
    limit: i64,
    scan: i64,
    residual: bool,
    mut fetch: F,
) -> StoreResult<LogPage>
where
    F: FnMut(Option<LogKey>, i64) -> StoreResult<Vec<(LogRow, bool)>>,
{
    let limit = limit.max(1);
    let (chunk, scan) = if residual {
        (LOG_CHUNK, scan.max(1))
    } else {
        (limit + 1, i64::MAX)
    };
    let mut page = LogPage::default();
    let (mut cursor, mut scanned) = (before, 0i64);
    loop {
        let n = chunk.min(scan - scanned);
        let rows = fetch(cursor, n)?;
        let got = rows.len() as i64;
        for (row, hit) in rows {
            scanned += 1;
            cursor = Some(row.key);
            if hit {
                page.rows.push(row);
                if page.rows.len() as i64 > limit {
                    page.rows.pop();
                    page.next = page.rows.last().map(|r| r.key);
                    return Ok(page);
                }
            }
        }
        if got < n {
            return Ok(page);
        }
        if scanned >= scan {
            page.next = cursor;
            page.searched_to = cursor.map(|k| k.created_at);
            return Ok(page);
        }
    }
}

/// Counts of deliveries by state, summed into where a recovery stands.
pub fn progress_of(counts: impl IntoIterator<Item = (DeliveryStatus, i64)>) -> RecoveryProgress {
    let mut progress = RecoveryProgress::default();
    for (state, n) in counts {
        match state {
            DeliveryStatus::Pending | DeliveryStatus::Delivering => progress.waiting += n,
            DeliveryStatus::Delivered => progress.delivered += n,
            DeliveryStatus::Failed => progress.failed += n,
            DeliveryStatus::Dead => progress.dead += n,
        }
    }
    progress
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
    /// Inserts a delivery. With `handoff` (the delivery as the dispatcher will attempt it,
    /// under the hand-offs' lease; its `seq` is the store's to set), it is leased at once when
    /// no older delivery of the same endpoint and ticket is unfinished, and added to the
    /// transaction's [`Handoffs`] (without them, it is inserted unleased).
    fn insert_delivery(
        &mut self,
        delivery: &NewDelivery<'_>,
        now: i64,
        handoff: Option<Claimed>,
    ) -> StoreResult<()>;
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
    /// Logs attempts and moves each delivery on, if its lease is still ours; keeps the
    /// endpoints' health on failure (disabled on `410 Gone` or after failing too long).
    /// Answers what each record changed, in their order. The outcome is that of recording
    /// them one after another (a backend may write them in a few bulk statements).
    ///
    /// With `lease_next`, each delivery a finish unblocks is also leased, as a claim would
    /// lease it, and answered in [`Recorded::next`]: a delivery that waited behind its ticket
    /// then costs one write to set going instead of an unblocking and a claim.
    fn record_attempts(
        &mut self,
        records: &[AttemptRecord],
        lease_next: Option<NextLease>,
    ) -> StoreResult<Vec<Recorded>>;
    /// [`record_attempts`](Self::record_attempts) of one attempt, leasing nothing.
    fn record_attempt(&mut self, record: &AttemptRecord) -> StoreResult<Recorded> {
        let recorded = self.record_attempts(std::slice::from_ref(record), None)?;
        recorded
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Database("an attempt recorded nothing".into()))
    }
    /// These endpoints just delivered: they are no longer failing.
    fn mark_healthy(&mut self, webhook_ids: &[i64]) -> StoreResult<()>;
    /// Gives leased deliveries back (state pending, due now), if the leases are still ours.
    fn release_deliveries(&mut self, leases: &[(i64, i64)], now: i64) -> StoreResult<usize>;
    /// When the earliest waiting delivery becomes due.
    fn next_delivery_due(&mut self) -> StoreResult<Option<i64>>;
    /// An endpoint's deliveries, newest first (by creation time, then seq), after the one
    /// with id `after`.
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
    /// Queues again every failed or dead delivery of an endpoint of `company_id` created since
    /// `since`, as one recovery whose progress can be followed; `None` when the company has no
    /// such endpoint.
    fn start_recovery(
        &mut self,
        company_id: i64,
        webhook_id: i64,
        since: i64,
        now: i64,
    ) -> StoreResult<Option<Recovery>>;
    /// A recovery of the company, with where the deliveries it queued stand now.
    fn recovery(
        &mut self,
        company_id: i64,
        id: i64,
    ) -> StoreResult<Option<(Recovery, RecoveryProgress)>>;
    /// The company's latest recoveries, newest first.
    fn recoveries(&mut self, company_id: i64, limit: i64) -> StoreResult<Vec<Recovery>>;
    /// One page of the company's delivery log, newest first, older than `before`; reads at
    /// most `scan` deliveries when some of the filter is checked row by row.
    fn delivery_log(
        &mut self,
        filter: &LogFilter,
        before: Option<LogKey>,
        limit: i64,
        scan: i64,
    ) -> StoreResult<LogPage>;
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
