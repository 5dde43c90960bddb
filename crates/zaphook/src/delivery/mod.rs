//! Delivery of the outbox: a dispatcher claims due deliveries with a lease (in a short write
//! transaction), runs each attempt as its own task outside any transaction, then records the
//! attempt and either finishes the delivery or schedules the next try. A crash between claim
//! and record leaves the lease to expire, and the delivery is tried again: at least once.
//! Each endpoint has its own cap of attempts in flight and an optional rate limit, so a slow
//! endpoint cannot take the capacity a healthy one needs.

pub mod housekeeping;
pub mod http;
mod limits;
pub mod retry;
pub mod sign;
pub mod ssrf;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;

use crate::clock::Clock;
use crate::store::{self, AttemptRecord, Claimed, NextStep, Recorded, Store, StoreError, Tx};
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
    pub sender: HttpSender,
    pub config: DeliveryConfig,
    pub wake: Arc<Notify>,
    /// Deliveries ingest leased as it wrote them, to attempt without a claim.
    pub handoffs: Option<mpsc::UnboundedReceiver<Vec<Claimed>>>,
}

/// How late a hand-off may start; later ones go back to the queue rather than use up a lease
/// that is running out.
const HANDOFF_GRACE_MS: i64 = 5_000;

/// The attempts in flight, what bounds them, and hand-offs waiting for room.
struct Flight {
    limits: Limits,
    tasks: JoinSet<()>,
    leases: Leases,
    done: mpsc::UnboundedSender<Finished>,
    /// Hand-offs not started yet, per endpoint, oldest first.
    waiting: HashMap<i64, VecDeque<Claimed>>,
}

impl Flight {
    /// Starts the waiting hand-offs that have room; those waiting too long go to `give_back`.
    fn start_waiting(&mut self, this: &Arc<Dispatcher>, give_back: &mut Vec<(i64, i64)>) {
        let now = this.clock.now_ms();
        let lease_ms = this.config.lease.as_millis() as i64;
        let mut queues = std::mem::take(&mut self.waiting);
        for queue in queues.values_mut() {
            while let Some(front) = queue.front() {
                if now > front.lease_until - lease_ms + HANDOFF_GRACE_MS {
                    give_back.extend(queue.pop_front().map(|c| (c.seq, c.lease)));
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
        self.waiting = queues;
    }

    fn start(&mut self, this: &Arc<Dispatcher>, delivery: Claimed) {
        self.limits
            .started(delivery.target.webhook_id, delivery.target.rate_limit);
        lock(&self.leases).insert(delivery.seq, delivery.lease);
        let (this, done, leases) = (
            Arc::clone(this),
            self.done.clone(),
            Arc::clone(&self.leases),
        );
        self.tasks.spawn(async move {
            let seq = delivery.seq;
            let finished = this.attempt(delivery).await;
            lock(&leases).remove(&seq);
            let _ = done.send(finished);
        });
    }
}

/// Leases of the attempts in flight, by delivery `seq`, to give back at shutdown.
type Leases = Arc<Mutex<HashMap<i64, i64>>>;

/// An attempt that ended, waiting to be recorded with the next claim.
struct Finished {
    record: AttemptRecord,
    delivery_id: String,
}

/// What one store round trip did: recorded the finished attempts, claimed new ones.
struct Cycle {
    recorded: Vec<(Finished, Recorded)>,
    claimed: Vec<Claimed>,
    next_due: Option<i64>,
}

impl Dispatcher {
    /// Runs until `shutdown` turns true; then waits for attempts in flight up to the drain
    /// timeout, records what finished and gives the rest back, due at once.
    ///
    /// Each turn is one write transaction that records every attempt finished since the last
    /// turn and claims what is due, so the writer sees one job per turn, not one per attempt.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut handoffs = self.handoffs.take();
        let this = Arc::new(self);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Finished>();
        let mut flight = Flight {
            limits: Limits::new(this.config.max_in_flight, this.config.per_endpoint),
            tasks: JoinSet::new(),
            leases: Arc::default(),
            done: done_tx,
            waiting: HashMap::new(),
        };
        let mut finished: Vec<Finished> = Vec::new();
        let mut give_back: Vec<(i64, i64)> = Vec::new();
        while !*shutdown.borrow() {
            while let Ok(f) = done_rx.try_recv() {
                flight.limits.finished(f.record.webhook_id);
                finished.push(f);
            }
            while flight.tasks.try_join_next().is_some() {}
            flight.start_waiting(&this, &mut give_back);

            let batch = std::mem::take(&mut finished);
            let back = std::mem::take(&mut give_back);
            let room = flight.limits.has_room().then(|| flight.limits.room());
            let cycle = match this.cycle(batch, back, room).await {
                Ok(cycle) => cycle,
                Err((e, batch, back)) => {
                    tracing::error!(error = %e, "recording and claiming deliveries failed");
                    if !matches!(e, StoreError::Closed) {
                        finished = batch;
                        give_back = back;
                    }
                    tokio::time::sleep(this.config.poll_interval).await;
                    continue;
                }
            };
            report(cycle.recorded);
            let claimed_any = !cycle.claimed.is_empty();
            for delivery in cycle.claimed {
                flight.start(&this, delivery);
            }
            if claimed_any && flight.limits.has_room() {
                // There may be more due right now.
                continue;
            }
            let now = tokio::time::Instant::now();
            let poll = now + this.config.poll_interval;
            let due = cycle.next_due.map(|at| this.clock.instant_at(at));
            // Due work that was not claimed waits for room (an attempt finishing, a token),
            // not for its due time, which has passed: looking again at once would spin.
            let wake_at = match due {
                Some(due) if due > now => due.min(poll),
                Some(_) => flight.limits.next_token_at().unwrap_or(poll).min(poll),
                None => poll,
            };
            // Hand-offs are started here without a store round trip; the loop only goes
            // around again when something needs recording, claiming or giving back.
            loop {
                tokio::select! {
                    _ = this.wake.notified() => break,
                    Some(f) = done_rx.recv() => {
                        flight.limits.finished(f.record.webhook_id);
                        finished.push(f);
                        break;
                    }
                    Some(batch) = next_handoffs(&mut handoffs) => {
                        for delivery in batch {
                            flight
                                .waiting
                                .entry(delivery.target.webhook_id)
                                .or_default()
                                .push_back(delivery);
                        }
                        flight.start_waiting(&this, &mut give_back);
                        if !give_back.is_empty() {
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
                give_back.extend(batch.iter().map(|c| (c.seq, c.lease)));
            }
        }
        for queue in std::mem::take(&mut flight.waiting).into_values() {
            give_back.extend(queue.iter().map(|c| (c.seq, c.lease)));
        }
        this.drain(flight, finished, give_back, done_rx).await;
    }

    /// One store round trip: record `finished`, then claim what `room` allows.
    async fn cycle(
        &self,
        finished: Vec<Finished>,
        give_back: Vec<(i64, i64)>,
        room: Option<Room>,
    ) -> Result<Cycle, (StoreError, Vec<Finished>, Vec<(i64, i64)>)> {
        let now = self.clock.now_ms();
        let lease_until = now + self.config.lease.as_millis() as i64;
        let records: Vec<AttemptRecord> = finished.iter().map(|f| f.record.clone()).collect();
        let back = give_back.clone();
        let result = store::write(&self.store, move |tx| {
            let recorded = record_all(tx, &records)?;
            tx.release_deliveries(&back, now)?;
            let mut claimed = Vec::new();
            if let Some(mut room) = room {
                for webhook in tx.due_webhooks(now)? {
                    let n = room.take(webhook.id, webhook.rate_limit);
                    if n == 0 {
                        continue;
                    }
                    let got = tx.claim_deliveries(now, lease_until, webhook.id, n as i64)?;
                    room.claimed(webhook.id, got.len());
                    claimed.extend(got);
                }
            }
            let next_due = tx.next_delivery_due()?;
            Ok::<_, StoreError>((recorded, claimed, next_due))
        })
        .await;
        match result {
            Ok((recorded, claimed, next_due)) => Ok(Cycle {
                recorded: finished.into_iter().zip(recorded).collect(),
                claimed,
                next_due,
            }),
            Err(e) => Err((e, finished, give_back)),
        }
    }

    async fn drain(
        &self,
        mut flight: Flight,
        mut finished: Vec<Finished>,
        give_back: Vec<(i64, i64)>,
        mut done_rx: mpsc::UnboundedReceiver<Finished>,
    ) {
        let drained = tokio::time::timeout(self.config.drain_timeout, async {
            while flight.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            flight.tasks.abort_all();
            while flight.tasks.join_next().await.is_some() {}
        }
        while let Ok(f) = done_rx.try_recv() {
            finished.push(f);
        }
        let mut unfinished: Vec<(i64, i64)> = lock(&flight.leases).drain().collect();
        unfinished.extend(give_back);
        let (count, now) = (unfinished.len(), self.clock.now_ms());
        let records: Vec<AttemptRecord> = finished.iter().map(|f| f.record.clone()).collect();
        let saved = store::write(&self.store, move |tx| {
            record_all(tx, &records)?;
            tx.release_deliveries(&unfinished, now)
        })
        .await;
        match saved {
            Ok(0) => {}
            Ok(released) => tracing::warn!(
                released,
                "shutdown: attempts not started or not finished were given back"
            ),
            Err(e) => tracing::error!(
                error = %e,
                count,
                "shutdown: could not record the last attempts; their leases will expire"
            ),
        }
    }

    async fn attempt(&self, delivery: Claimed) -> Finished {
        let started_ms = self.clock.now_ms();
        let outcome = self
            .sender
            .post(
                &delivery.target,
                &delivery.event_id,
                delivery.event_type,
                &delivery.payload,
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

    fn decide(&self, delivery: &Claimed, outcome: &Outcome, started_ms: i64) -> AttemptRecord {
        let now = self.clock.now_ms();
        let next = if outcome.succeeded() {
            NextStep::Delivered
        } else {
            self.config.retry.after_failure(
                delivery.attempts,
                now,
                outcome.retry_after,
                rand::random::<f64>(),
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
            next,
            disable_webhook: outcome.status == Some(410),
            disable_after_ms: self.config.disable_after.as_millis() as i64,
        }
    }
}

/// Records finished attempts; the endpoints that delivered are no longer failing.
fn record_all(tx: &mut dyn Tx, records: &[AttemptRecord]) -> Result<Vec<Recorded>, StoreError> {
    let mut recorded = Vec::with_capacity(records.len());
    let mut healthy = Vec::new();
    for record in records {
        recorded.push(tx.record_attempt(record)?);
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
