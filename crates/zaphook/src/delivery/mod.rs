//! Delivery of the outbox. Deliveries reach the dispatcher three ways, each under a lease:
//! handed off by ingest, leased in the transaction that wrote them (the common case: no claim
//! needed); leased by the recorder in the write that finishes the older delivery of their
//! ticket they waited behind; or claimed from the database (retries, deliveries given back,
//! anything left by a crash). Each attempt runs as its own task outside any
//! transaction; a recorder writes finished attempts in batches, finishing each delivery or
//! scheduling its next try. A crash before the record leaves the lease to expire, and the
//! delivery is tried again: at least once. Each endpoint has its own cap of attempts in flight
//! and an optional rate limit, so a slow endpoint cannot take the capacity a healthy one needs.

pub mod housekeeping;
pub mod http;
mod limits;
pub mod retry;
pub mod sign;
pub mod ssrf;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;

use crate::clock::Clock;
use crate::jitter::Jitter;
use crate::payload;
use crate::store::{
    self, AttemptRecord, Claimed, NextLease, NextStep, Recorded, Store, StoreError, Tx,
};
use http::{HttpSender, Outcome};
use limits::{Limits, Room};
use retry::RetryPolicy;

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Attempts in flight at once, over all endpoints.
    pub max_in_flight: usize,
    /// Attempts in flight at once to one endpoint.
    pub per_endpoint: usize,
    /// How long a claim holds a delivery; must outlast the whole request.
    pub lease: Duration,
    /// Longest wait between looks at the database when nothing wakes the dispatcher.
    pub poll_interval: Duration,
    /// How long shutdown waits for attempts in flight before giving them back.
    pub drain_timeout: Duration,
    /// An endpoint failing without a success for this long is disabled.
    pub disable_after: Duration,
    pub retry: RetryPolicy,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            max_in_flight: 512,
            per_endpoint: 64,
            lease: Duration::from_secs(45),
            poll_interval: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(10),
            disable_after: Duration::from_secs(3 * 24 * 3600),
            retry: RetryPolicy::default(),
        }
    }
}

pub struct Dispatcher {
    pub store: Arc<dyn Store>,
    pub clock: Clock,
    /// Spreads the retries.
    pub jitter: Jitter,
    pub sender: HttpSender,
    pub config: DeliveryConfig,
    /// Where stored media is, for the endpoints that want it in `mediaBase64`.
    pub media_dir: PathBuf,
    pub wake: Arc<Notify>,
    /// Deliveries ingest leased as it wrote them, to attempt without a claim.
    pub handoffs: Option<mpsc::UnboundedReceiver<Vec<Claimed>>>,
    /// Endpoints with hand-offs waiting for room, told to ingest so it stops handing off
    /// theirs (they wait in the database instead of in memory).
    pub busy: Arc<Mutex<Vec<i64>>>,
}

/// What a claim took: deliveries, when the next is due, endpoints that had more than room.
type Claims = (Vec<Claimed>, Option<i64>, Vec<i64>);

/// Leases of the attempts in flight, by delivery `seq`, to give back at shutdown.
type Leases = Arc<Mutex<HashMap<i64, i64>>>;

/// A hand-off starts only while its lease outlasts the whole request by this much (or by half
/// of what the lease leaves beyond the request, if less); later ones go back to the queue
/// rather than risk being sent twice.
const LEASE_MARGIN_MS: i64 = 5_000;
/// Most hand-offs kept waiting for room per endpoint; more go back to the queue at once.
const MAX_WAITING: usize = 10_000;

/// An attempt that ended, on its way to the recorder.
struct Finished {
    record: AttemptRecord,
    delivery_id: String,
}

/// What the recorder writes.
enum ToRecord {
    Attempt(Finished),
    /// A leased delivery not attempted: due again at once.
    GiveBack {
        seq: i64,
        lease: i64,
    },
}

/// The attempts in flight, what bounds them, and hand-offs waiting for room.
struct Flight {
    limits: Limits,
    tasks: JoinSet<()>,
    leases: Leases,
    /// Told the endpoint of every attempt that ends, to free its room at once.
    ended: mpsc::UnboundedSender<i64>,
    recorder: mpsc::UnboundedSender<ToRecord>,
    /// Hand-offs not started yet, per endpoint, oldest first.
    waiting: HashMap<i64, VecDeque<Claimed>>,
}

impl Flight {
    fn start(&mut self, this: &Arc<Dispatcher>, delivery: Claimed) {
        self.limits
            .started(delivery.target.webhook_id, delivery.target.rate_limit);
        lock(&self.leases).insert(delivery.seq, delivery.lease);
        let (this, ended, recorder, leases) = (
            Arc::clone(this),
            self.ended.clone(),
            self.recorder.clone(),
            Arc::clone(&self.leases),
        );
        self.tasks.spawn(async move {
            let (seq, webhook_id) = (delivery.seq, delivery.target.webhook_id);
            let finished = this.attempt(delivery).await;
            lock(&leases).remove(&seq);
            let _ = recorder.send(ToRecord::Attempt(finished));
            let _ = ended.send(webhook_id);
        });
    }

    fn give_back(&self, delivery: &Claimed) {
        let _ = self.recorder.send(ToRecord::GiveBack {
            seq: delivery.seq,
            lease: delivery.lease,
        });
    }

    /// Queues leased deliveries behind their endpoint's and starts what has room; answers
    /// [`start_waiting`](Self::start_waiting)'s answer.
    fn queue(&mut self, this: &Arc<Dispatcher>, batch: Vec<Claimed>) -> bool {
        for delivery in batch {
            self.waiting
                .entry(delivery.target.webhook_id)
                .or_default()
                .push_back(delivery);
        }
        self.start_waiting(this)
    }

    /// Starts the waiting hand-offs that have room; those whose lease runs too short, or
    /// beyond the most an endpoint may keep waiting, go back. Answers whether an endpoint
    /// stopped being busy: what ingest queued for it in the meantime is now worth claiming.
    fn start_waiting(&mut self, this: &Arc<Dispatcher>) -> bool {
        let now = this.clock.now_ms();
        let timeout = this.sender.request_timeout().as_millis() as i64;
        let slack = this.config.lease.as_millis() as i64 - timeout;
        let needed = timeout + LEASE_MARGIN_MS.min(slack / 2);
        let mut queues = std::mem::take(&mut self.waiting);
        for queue in queues.values_mut() {
            while queue.len() > MAX_WAITING {
                if let Some(newest) = queue.pop_back() {
                    self.give_back(&newest);
                }
            }
            while let Some(front) = queue.front() {
                if now + needed > front.lease_until {
                    self.give_back(front);
                    queue.pop_front();
                } else if self
                    .limits
                    .can_start(front.target.webhook_id, front.target.rate_limit)
                {
                    if let Some(delivery) = queue.pop_front() {
                        self.start(this, delivery);
                    }
                } else {
                    break;
                }
            }
        }
        queues.retain(|_, q| !q.is_empty());
        let busy: Vec<i64> = queues.keys().copied().collect();
        self.waiting = queues;
        let mut freed = false;
        if let Ok(mut shared) = this.busy.lock()
            && *shared != busy
        {
            freed = shared.iter().any(|id| !busy.contains(id));
            *shared = busy;
        }
        freed
    }
}

impl Dispatcher {
    /// Runs until `shutdown` turns true; then waits for attempts in flight up to the drain
    /// timeout, and gives back what was not attempted or not finished, due at once.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut handoffs = self.handoffs.take();
        let this = Arc::new(self);
        let (ended_tx, mut ended) = mpsc::unbounded_channel::<i64>();
        let (record_tx, record_rx) = mpsc::unbounded_channel::<ToRecord>();
        // The deliveries the recorder leased as their ticket's previous one finished.
        let (next_tx, mut next_rx) = mpsc::unbounded_channel::<Vec<Claimed>>();
        let recorder = tokio::spawn(Arc::clone(&this).record(record_rx, next_tx));
        let mut flight = Flight {
            limits: Limits::new(this.config.max_in_flight, this.config.per_endpoint),
            tasks: JoinSet::new(),
            leases: Arc::default(),
            ended: ended_tx,
            recorder: record_tx,
            waiting: HashMap::new(),
        };
        // Endpoints with due deliveries in the database that the last claim had no room for:
        // when one of their attempts ends, it is worth claiming again.
        let mut backlog: Vec<i64> = Vec::new();
        while !*shutdown.borrow() {
            while flight.tasks.try_join_next().is_some() {}
            let mut next_due = None;
            if flight.limits.has_room() {
                match this.claim(flight.limits.room()).await {
                    Ok((claimed, due, full)) => {
                        next_due = due;
                        backlog = full;
                        for delivery in claimed {
                            flight.start(&this, delivery);
                        }
                    }
                    Err(e) => store::log_failure(&e, "claiming deliveries failed"),
                }
            }
            let now = tokio::time::Instant::now();
            let poll = now + this.config.poll_interval;
            let wake_at = match next_due.map(|at| this.clock.instant_at(at)) {
                Some(due) if due > now => due.min(poll),
                // Due work that was not claimed waits for room, not for its due time, which
                // has passed: looking again at once would spin.
                Some(_) => flight.limits.next_token_at().unwrap_or(poll).min(poll),
                None => poll,
            };
            // Hand-offs and ended attempts are handled here without a store round trip; the
            // loop goes around to claim only when the database may have something due.
            loop {
                tokio::select! {
                    _ = this.wake.notified() => break,
                    Some(webhook_id) = ended.recv() => {
                        let mut claim_again = backlog.contains(&webhook_id);
                        flight.limits.finished(webhook_id);
                        while let Ok(webhook_id) = ended.try_recv() {
                            claim_again |= backlog.contains(&webhook_id);
                            flight.limits.finished(webhook_id);
                        }
                        let freed = flight.start_waiting(&this);
                        if (claim_again || freed) && flight.limits.has_room() {
                            break;
                        }
                    }
                    Some(batch) = next_handoffs(&mut handoffs) => {
                        if flight.queue(&this, batch) {
                            break;
                        }
                    }
                    Some(batch) = next_rx.recv() => {
                        if flight.queue(&this, batch) {
                            break;
                        }
                    }
                    _ = tokio::time::sleep_until(wake_at) => break,
                    _ = shutdown.changed() => break,
                }
            }
        }
        if let Some(rx) = handoffs.as_mut() {
            while let Ok(batch) = rx.try_recv() {
                batch.iter().for_each(|d| flight.give_back(d));
            }
        }
        // From now on the recorder gives back what it leases itself.
        next_rx.close();
        while let Ok(batch) = next_rx.try_recv() {
            batch.iter().for_each(|d| flight.give_back(d));
        }
        for queue in std::mem::take(&mut flight.waiting).into_values() {
            queue.iter().for_each(|d| flight.give_back(d));
        }
        this.drain(flight, recorder).await;
    }

    /// Claims what `room` allows. Answers the claims, when the next delivery is due, and the
    /// endpoints whose due deliveries did not all fit in the room.
    async fn claim(&self, room: Room) -> Result<Claims, StoreError> {
        let now = self.clock.now_ms();
        let lease_until = now + self.config.lease.as_millis() as i64;
        store::write(&self.store, move |tx| {
            // Spent per run: the job may run again.
            let mut room = room.clone();
            let (mut claimed, mut full) = (Vec::new(), Vec::new());
            for webhook in tx.due_webhooks(now)? {
                let n = room.take(webhook.id, webhook.rate_limit);
                let got = if n == 0 {
                    Vec::new()
                } else {
                    tx.claim_deliveries(now, lease_until, webhook.id, n as i64)?
                };
                if got.len() == n {
                    full.push(webhook.id);
                }
                room.claimed(webhook.id, got.len());
                claimed.extend(got);
            }
            Ok((claimed, tx.next_delivery_due()?, full))
        })
        .await
    }

    /// Writes finished attempts and give-backs in batches until every sender is gone. The
    /// deliveries a finish unblocks are leased in the same write and sent to `next`; wakes
    /// the dispatcher when a batch may have made something claimable.
    async fn record(
        self: Arc<Self>,
        mut inbox: mpsc::UnboundedReceiver<ToRecord>,
        next: mpsc::UnboundedSender<Vec<Claimed>>,
    ) {
        while let Some(first) = inbox.recv().await {
            let mut batch = vec![first];
            while let Ok(more) = inbox.try_recv() {
                batch.push(more);
            }
            let mut finished = Vec::new();
            let mut give_back = Vec::new();
            for item in batch {
                match item {
                    ToRecord::Attempt(f) => finished.push(f),
                    ToRecord::GiveBack { seq, lease } => give_back.push((seq, lease)),
                }
            }
            // Something becomes claimable when a delivery goes back, a retry is scheduled or
            // a ticket's next delivery is unblocked and not leased (known once written).
            let mut claimable = !give_back.is_empty()
                || finished
                    .iter()
                    .any(|f| f.record.next != NextStep::Delivered);
            let records: Vec<AttemptRecord> = finished.iter().map(|f| f.record.clone()).collect();
            let now = self.clock.now_ms();
            let lease = NextLease {
                now,
                until: now + self.config.lease.as_millis() as i64,
            };
            let written = store::write(&self.store, move |tx| {
                let recorded = record_all(tx, &records, lease)?;
                tx.release_deliveries(&give_back, now)?;
                Ok::<_, StoreError>(recorded)
            })
            .await;
            match written {
                Ok(mut recorded) => {
                    claimable |= recorded.iter().any(|r| r.unblocked && r.next.is_none());
                    let leased: Vec<Claimed> =
                        recorded.iter_mut().filter_map(|r| r.next.take()).collect();
                    if !leased.is_empty()
                        && let Err(mpsc::error::SendError(leased)) = next.send(leased)
                    {
                        self.give_back_leased(&leased).await;
                    }
                    report(finished.into_iter().zip(recorded).collect())
                }
                Err(e) => store::log_failure(
                    &e,
                    "recording attempts failed; their leases will expire and they are tried again",
                ),
            }
            if claimable {
                self.wake.notify_one();
            }
        }
    }

    /// Gives back deliveries the recorder leased after the dispatcher stopped taking them.
    async fn give_back_leased(&self, leased: &[Claimed]) {
        let leases: Vec<(i64, i64)> = leased.iter().map(|d| (d.seq, d.lease)).collect();
        let now = self.clock.now_ms();
        if let Err(e) =
            store::write(&self.store, move |tx| tx.release_deliveries(&leases, now)).await
        {
            store::log_failure(
                &e,
                "giving back deliveries failed; their leases will expire",
            );
        }
    }

    async fn drain(&self, mut flight: Flight, recorder: tokio::task::JoinHandle<()>) {
        let drained = tokio::time::timeout(self.config.drain_timeout, async {
            while flight.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            flight.tasks.abort_all();
            while flight.tasks.join_next().await.is_some() {}
        }
        let unfinished: Vec<(i64, i64)> = lock(&flight.leases).drain().collect();
        if !unfinished.is_empty() {
            tracing::warn!(
                count = unfinished.len(),
                "shutdown: attempts still in flight were stopped and are given back"
            );
        }
        for (seq, lease) in unfinished {
            let _ = flight.recorder.send(ToRecord::GiveBack { seq, lease });
        }
        // The recorder ends once it has written everything and every sender is gone.
        drop(flight);
        let _ = recorder.await;
    }

    async fn attempt(&self, delivery: Claimed) -> Finished {
        let payload = self.with_media(&delivery).await;
        let started_ms = self.clock.now_ms();
        let outcome = self
            .sender
            .post(
                &delivery.target,
                &delivery.event_id,
                delivery.event_type,
                &payload,
                started_ms / 1000,
            )
            .await;
        let record = self.decide(&delivery, &outcome, started_ms);
        tracing::debug!(
            delivery = %delivery.id,
            event = %delivery.event_id,
            webhook = delivery.target.webhook_id,
            status = ?outcome.status,
            latency_ms = outcome.latency_ms,
            error = ?outcome.error,
            next = ?record.next,
            "delivery attempt"
        );
        metrics::histogram!("zaphook_delivery_attempt_seconds")
            .record(outcome.latency_ms as f64 / 1000.0);
        let outcome_label = match record.next {
            NextStep::Delivered => "delivered",
            NextStep::RetryAt(_) => "failed",
            NextStep::Dead => "dead",
        };
        metrics::counter!(
            "zaphook_delivery_attempts_total",
            "outcome" => outcome_label,
            "event_type" => delivery.event_type.as_str()
        )
        .increment(1);
        if record.next == NextStep::Dead {
            tracing::warn!(delivery = %delivery.id, event = %delivery.event_id, webhook = delivery.target.webhook_id,
                "delivery is dead after its last attempt; retry it with POST /api/v1/deliveries/{}/retry", delivery.id);
        }
        Finished {
            record,
            delivery_id: delivery.id,
        }
    }

    /// The body to send: the stored payload, with the media file's base64 in it when the
    /// endpoint asks for it. A file gone from the disk is sent as `null`, and said.
    async fn with_media(&self, delivery: &Claimed) -> Arc<str> {
        let Some(sha256) = &delivery.media else {
            return Arc::clone(&delivery.payload);
        };
        let path = crate::channels::cloud::media::media_path(&self.media_dir, sha256);
        match tokio::fs::read(&path).await {
            Ok(file) => Arc::from(payload::with_media_base64(&delivery.payload, &file)),
            Err(e) => {
                tracing::warn!(delivery = %delivery.id, path = %path.display(), error = %e,
                    "the media file for mediaBase64 cannot be read; sent as null");
                Arc::clone(&delivery.payload)
            }
        }
    }

    fn decide(&self, delivery: &Claimed, outcome: &Outcome, started_ms: i64) -> AttemptRecord {
        let now = self.clock.now_ms();
        let next = if outcome.succeeded() {
            NextStep::Delivered
        } else {
            self.config.retry.after_failure(
                delivery.attempts,
                now,
                outcome.retry_after,
                self.jitter.unit(),
            )
        };
        AttemptRecord {
            seq: delivery.seq,
            ordering_key: delivery.ordering_key,
            webhook_id: delivery.target.webhook_id,
            lease: delivery.lease,
            at: started_ms,
            status_code: outcome.status.map(i64::from),
            latency_ms: outcome.latency_ms,
            error: outcome.error.clone(),
            response_body: outcome.body.clone(),
            request_headers: outcome.request_headers.clone(),
            next,
            disable_webhook: outcome.status == Some(410),
            disable_after_ms: self.config.disable_after.as_millis() as i64,
        }
    }
}

/// Records finished attempts; the endpoints that delivered are no longer failing.
fn record_all(
    tx: &mut dyn Tx,
    records: &[AttemptRecord],
    lease_next: NextLease,
) -> Result<Vec<Recorded>, StoreError> {
    let recorded = tx.record_attempts(records, Some(lease_next))?;
    let mut healthy = Vec::new();
    for record in records {
        if record.next == NextStep::Delivered && !healthy.contains(&record.webhook_id) {
            healthy.push(record.webhook_id);
        }
    }
    tx.mark_healthy(&healthy)?;
    Ok(recorded)
}

/// Logs what recording the attempts changed: a lost lease, an endpoint disabled.
fn report(recorded: Vec<(Finished, Recorded)>) {
    for (f, r) in recorded {
        if !r.applied {
            tracing::debug!(delivery = %f.delivery_id, "attempt recorded after its lease was taken over");
        }
        if let Some(reason) = r.disabled {
            let webhook_id = f.record.webhook_id;
            tracing::warn!(
                event = "webhook.disabled",
                webhook = webhook_id,
                %reason,
                "webhook.disabled: endpoint {webhook_id} is disabled ({reason}); enable it with PATCH /api/v1/webhooks/{webhook_id} {{\"enabled\": true}}"
            );
            metrics::counter!("zaphook_webhooks_disabled_total").increment(1);
        }
    }
}

/// The next batch of hand-offs, or never when there is no hand-off channel.
async fn next_handoffs(
    rx: &mut Option<mpsc::UnboundedReceiver<Vec<Claimed>>>,
) -> Option<Vec<Claimed>> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn lock(leases: &Leases) -> std::sync::MutexGuard<'_, HashMap<i64, i64>> {
    leases
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
