//! Delivery of the outbox: a dispatcher claims due deliveries with a lease (in a short write
//! transaction), runs each attempt as its own task outside any transaction, then records the
//! attempt and either finishes the delivery or schedules the next try. A crash between claim
//! and record leaves the lease to expire, and the delivery is tried again: at least once.
//! Each endpoint has its own cap of attempts in flight, so a slow endpoint cannot take the
//! capacity a healthy one needs.

pub mod http;
pub mod retry;
pub mod sign;
pub mod ssrf;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;

use crate::clock::Clock;
use crate::store::{self, AttemptRecord, Claimed, NextStep, Store, StoreError, StoreResult};
use http::{HttpSender, Outcome};
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
    /// How long shutdown waits for attempts in flight.
    pub drain_timeout: Duration,
    pub retry: RetryPolicy,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            max_in_flight: 512,
            per_endpoint: 64,
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(20),
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

impl Dispatcher {
    /// Runs until `shutdown` turns true, then waits for attempts in flight (up to the drain
    /// timeout); unfinished ones are left to their leases.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<i64>();
        let mut in_flight: HashMap<i64, usize> = HashMap::new();
        let mut total = 0usize;
        let mut tasks = JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            while let Ok(webhook_id) = done_rx.try_recv() {
                release(&mut in_flight, &mut total, webhook_id);
            }
            while tasks.try_join_next().is_some() {}

            let mut claimed_any = false;
            if total < this.config.max_in_flight {
                match this.claim(&in_flight, total).await {
                    Ok(claimed) => {
                        claimed_any = !claimed.is_empty();
                        for delivery in claimed {
                            *in_flight.entry(delivery.target.webhook_id).or_default() += 1;
                            total += 1;
                            let this = Arc::clone(&this);
                            let done = done_tx.clone();
                            tasks.spawn(async move {
                                let webhook_id = delivery.target.webhook_id;
                                this.attempt(delivery).await;
                                let _ = done.send(webhook_id);
                            });
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "claiming deliveries failed"),
                }
            }
            if claimed_any && total < this.config.max_in_flight {
                // There may be more due right now.
                continue;
            }
            let wake_at = match store::read(&this.store, |tx| tx.next_delivery_due()).await {
                Ok(Some(due)) => this.clock.instant_at(due),
                Ok(None) | Err(StoreError::Closed) => {
                    tokio::time::Instant::now() + this.config.poll_interval
                }
                Err(e) => {
                    tracing::error!(error = %e, "reading the next due delivery failed");
                    tokio::time::Instant::now() + this.config.poll_interval
                }
            };
            let wake_at = wake_at.min(tokio::time::Instant::now() + this.config.poll_interval);
            tokio::select! {
                _ = this.wake.notified() => {}
                Some(webhook_id) = done_rx.recv() => release(&mut in_flight, &mut total, webhook_id),
                _ = tokio::time::sleep_until(wake_at) => {}
                _ = shutdown.changed() => {}
            }
        }
        let drained = tokio::time::timeout(this.config.drain_timeout, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = tasks.len(),
                "shutdown: attempts still in flight are left to their leases"
            );
            tasks.abort_all();
        }
    }

    async fn claim(
        &self,
        in_flight: &HashMap<i64, usize>,
        total: usize,
    ) -> StoreResult<Vec<Claimed>> {
        let now = self.clock.now_ms();
        let lease_until = now + self.config.lease.as_millis() as i64;
        let room = (self.config.max_in_flight - total) as i64;
        let per_endpoint = self.config.per_endpoint;
        let busy: HashMap<i64, usize> = in_flight.clone();
        store::write(&self.store, move |tx| {
            let mut claimed = Vec::new();
            for webhook_id in tx.due_webhooks(now)? {
                let left = room - claimed.len() as i64;
                let free = per_endpoint.saturating_sub(busy.get(&webhook_id).copied().unwrap_or(0));
                if left <= 0 {
                    break;
                }
                if free == 0 {
                    continue;
                }
                claimed.extend(tx.claim_deliveries(
                    now,
                    lease_until,
                    webhook_id,
                    left.min(free as i64),
                )?);
            }
            Ok(claimed)
        })
        .await
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
        metrics::counter!(
            "zaphook_delivery_attempts_total",
            "outcome" => if outcome.succeeded() { "success" } else { "failure" },
            "event_type" => delivery.event_type.as_str()
        )
        .increment(1);
        metrics::histogram!("zaphook_delivery_attempt_seconds")
            .record(outcome.latency_ms as f64 / 1000.0);
        if record.next == NextStep::Dead {
            tracing::warn!(delivery = %delivery.id, event = %delivery.event_id, "delivery is dead after its last attempt");
        }
        if record.disable_webhook {
            tracing::warn!(
                webhook = delivery.target.webhook_id,
                "endpoint answered 410 Gone: disabled"
            );
        }
        if let Err(e) = store::write(&self.store, move |tx| tx.record_attempt(&record)).await {
            tracing::error!(delivery = %delivery.id, error = %e, "recording an attempt failed; the lease will expire and it is retried");
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
            lease: delivery.lease,
            at: started_ms,
            status_code: outcome.status.map(i64::from),
            latency_ms: outcome.latency_ms,
            error: outcome.error.clone(),
            response_body: outcome.body.clone(),
            next,
            disable_webhook: outcome.status == Some(410),
        }
    }
}

fn release(in_flight: &mut HashMap<i64, usize>, total: &mut usize, webhook_id: i64) {
    if let Some(n) = in_flight.get_mut(&webhook_id) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            in_flight.remove(&webhook_id);
        }
    }
    *total = total.saturating_sub(1);
}
