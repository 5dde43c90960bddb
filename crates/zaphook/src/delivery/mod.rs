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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;

use crate::clock::Clock;
use crate::store::{self, AttemptRecord, Claimed, NextStep, Store, StoreError, StoreResult};
use http::{HttpSender, Outcome};
use limits::Limits;
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
}

/// Leases of the attempts in flight, by delivery `seq`, to give back at shutdown.
type Leases = Arc<Mutex<HashMap<i64, i64>>>;

impl Dispatcher {
    /// Runs until `shutdown` turns true; then waits for attempts in flight up to the drain
    /// timeout and gives the unfinished ones back, due at once.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<i64>();
        let leases: Leases = Arc::default();
        let mut limits = Limits::new(this.config.max_in_flight, this.config.per_endpoint);
        let mut tasks = JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            while let Ok(webhook_id) = done_rx.try_recv() {
                limits.finished(webhook_id);
            }
            while tasks.try_join_next().is_some() {}

            let mut claimed_any = false;
            if limits.has_room() {
                match this.claim(&mut limits).await {
                    Ok(claimed) => {
                        claimed_any = !claimed.is_empty();
                        for delivery in claimed {
                            let webhook_id = delivery.target.webhook_id;
                            limits.started(webhook_id);
                            lock(&leases).insert(delivery.seq, delivery.lease);
                            let (this, done, leases) =
                                (Arc::clone(&this), done_tx.clone(), Arc::clone(&leases));
                            tasks.spawn(async move {
                                let seq = delivery.seq;
                                this.attempt(delivery).await;
                                lock(&leases).remove(&seq);
                                let _ = done.send(webhook_id);
                            });
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "claiming deliveries failed"),
                }
            }
            if claimed_any && limits.has_room() {
                // There may be more due right now.
                continue;
            }
            let poll = tokio::time::Instant::now() + this.config.poll_interval;
            let due = match store::read(&this.store, |tx| tx.next_delivery_due()).await {
                Ok(Some(due)) => this.clock.instant_at(due),
                Ok(None) | Err(StoreError::Closed) => poll,
                Err(e) => {
                    tracing::error!(error = %e, "reading the next due delivery failed");
                    poll
                }
            };
            let wake_at = due
                .min(poll)
                .max(limits.next_token_at().unwrap_or(due.min(poll)));
            tokio::select! {
                _ = this.wake.notified() => {}
                Some(webhook_id) = done_rx.recv() => limits.finished(webhook_id),
                _ = tokio::time::sleep_until(wake_at) => {}
                _ = shutdown.changed() => {}
            }
        }
        this.drain(tasks, leases).await;
    }

    async fn drain(&self, mut tasks: JoinSet<()>, leases: Leases) {
        let drained = tokio::time::timeout(self.config.drain_timeout, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_ok() {
            return;
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        let unfinished: Vec<(i64, i64)> = lock(&leases).drain().collect();
        let now = self.clock.now_ms();
        let count = unfinished.len();
        match store::write(&self.store, move |tx| {
            tx.release_deliveries(&unfinished, now)
        })
        .await
        {
            Ok(released) => tracing::warn!(
                released,
                "shutdown: attempts still in flight were stopped and given back"
            ),
            Err(e) => tracing::error!(
                error = %e,
                count,
                "shutdown: could not give back unfinished attempts; their leases will expire"
            ),
        }
    }

    async fn claim(&self, limits: &mut Limits) -> StoreResult<Vec<Claimed>> {
        let now = self.clock.now_ms();
        let lease_until = now + self.config.lease.as_millis() as i64;
        let due = store::read(&self.store, move |tx| tx.due_webhooks(now)).await?;
        let wanted: Vec<(i64, i64)> = due
            .iter()
            .filter_map(|w| {
                let room = limits.room_for(w.id, w.rate_limit);
                (room > 0).then_some((w.id, room as i64))
            })
            .collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let claimed = store::write(&self.store, move |tx| {
            let mut claimed = Vec::new();
            for (webhook_id, room) in wanted {
                claimed.extend(tx.claim_deliveries(now, lease_until, webhook_id, room)?);
            }
            Ok::<_, StoreError>(claimed)
        })
        .await?;
        for c in &claimed {
            limits.spend_token(c.target.webhook_id);
        }
        Ok(claimed)
    }

    async fn attempt(&self, delivery: Claimed) {
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
        let next = record.next;
        tracing::debug!(
            delivery = %delivery.id,
            event = %delivery.event_id,
            webhook = delivery.target.webhook_id,
            status = ?outcome.status,
            latency_ms = outcome.latency_ms,
            error = ?outcome.error,
            next = ?next,
            "delivery attempt"
        );
        metrics::histogram!("zaphook_delivery_attempt_seconds")
            .record(outcome.latency_ms as f64 / 1000.0);
        let outcome_label = match next {
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
        if next == NextStep::Dead {
            tracing::warn!(delivery = %delivery.id, event = %delivery.event_id, webhook = delivery.target.webhook_id,
                "delivery is dead after its last attempt; retry it with POST /api/v1/deliveries/{}/retry", delivery.id);
        }
        let webhook_id = delivery.target.webhook_id;
        match store::write(&self.store, move |tx| tx.record_attempt(&record)).await {
            Ok(recorded) => {
                if let Some(reason) = recorded.disabled {
                    tracing::warn!(
                        event = "webhook.disabled",
                        webhook = webhook_id,
                        %reason,
                        "webhook.disabled: endpoint {webhook_id} is disabled ({reason}); enable it with PATCH /api/v1/webhooks/{webhook_id} {{\"enabled\": true}}"
                    );
                    metrics::counter!("zaphook_webhooks_disabled_total").increment(1);
                }
            }
            Err(e) => tracing::error!(
                delivery = %delivery.id,
                error = %e,
                "recording an attempt failed; the lease will expire and it is retried"
            ),
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

fn lock(leases: &Leases) -> std::sync::MutexGuard<'_, HashMap<i64, i64>> {
    leases
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
