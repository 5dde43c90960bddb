//! Periodic upkeep beside the dispatcher: prunes finished deliveries (and processed callback
//! bodies) past the retention in
//! small batches (so the writer is never held for long), and refreshes the gauges of the
//! backlog per endpoint and of disabled endpoints.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::Clock;
use crate::store::{self, Store, StoreError};

#[derive(Debug, Clone)]
pub struct HousekeepingConfig {
    /// Delivered and dead deliveries older than this are deleted with their attempts.
    pub retention: Duration,
    /// How often upkeep runs.
    pub interval: Duration,
    /// Rows deleted per transaction.
    pub batch: i64,
}

impl Default for HousekeepingConfig {
    fn default() -> Self {
        HousekeepingConfig {
            retention: Duration::from_secs(30 * 24 * 3600),
            interval: Duration::from_secs(30),
            batch: 500,
        }
    }
}

pub async fn run(
    store: Arc<dyn Store>,
    clock: Clock,
    config: HousekeepingConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut reported = HashSet::new();
    loop {
        if let Err(e) = prune(&store, &clock, &config, &shutdown).await {
            store::log_failure(&e, "pruning old deliveries failed");
        }
        let now = clock.now_ms();
        if let Err(e) = store::write(&store, move |tx| tx.prune_ui_sessions(now)).await {
            store::log_failure(&e, "pruning expired dashboard sessions failed");
        }
        match store::write(&store, |tx| tx.free_orphaned()).await {
            Ok(0) => {}
            Ok(freed) => {
                tracing::warn!(freed, "freed deliveries left blocked without an older one")
            }
            Err(e) => store::log_failure(&e, "checking blocked deliveries failed"),
        }
        if let Err(e) = refresh_gauges(&store, &clock, &mut reported).await {
            store::log_failure(&e, "reading delivery backlogs failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(config.interval) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// Deletes what is past the retention, one small batch per transaction.
pub async fn prune(
    store: &Arc<dyn Store>,
    clock: &Clock,
    config: &HousekeepingConfig,
    shutdown: &watch::Receiver<bool>,
) -> Result<usize, StoreError> {
    let before = clock.now_ms() - config.retention.as_millis() as i64;
    let batch = config.batch;
    let mut total = 0;
    while !*shutdown.borrow() {
        let deleted = store::write(store, move |tx| {
            Ok::<_, StoreError>(tx.prune(before, batch)? + tx.prune_inbox(before, batch)?)
        })
        .await?;
        total += deleted;
        if deleted == 0 {
            break;
        }
        // Let other writers' jobs in between batches.
        tokio::task::yield_now().await;
    }
    if total > 0 {
        tracing::info!(rows = total, "pruned deliveries past the retention");
        metrics::counter!("zaphook_pruned_rows_total").increment(total as u64);
    }
    Ok(total)
}

/// Sets the backlog gauges; endpoints reported before and empty now go back to zero.
async fn refresh_gauges(
    store: &Arc<dyn Store>,
    clock: &Clock,
    reported: &mut HashSet<i64>,
) -> Result<(), StoreError> {
    let (backlogs, disabled) = store::read(store, |tx| {
        Ok::<_, StoreError>((tx.backlogs()?, tx.disabled_webhooks()?))
    })
    .await?;
    let now = clock.now_ms();
    let current: HashSet<i64> = backlogs.iter().map(|b| b.webhook_id).collect();
    for gone in reported.difference(&current) {
        let webhook = gone.to_string();
        metrics::gauge!("zaphook_endpoint_pending", "webhook" => webhook.clone()).set(0.0);
        metrics::gauge!("zaphook_endpoint_oldest_pending_seconds", "webhook" => webhook).set(0.0);
    }
    *reported = current;
    for b in backlogs {
        let webhook = b.webhook_id.to_string();
        metrics::gauge!("zaphook_endpoint_pending", "webhook" => webhook.clone())
            .set(b.pending as f64);
        metrics::gauge!("zaphook_endpoint_oldest_pending_seconds", "webhook" => webhook)
            .set((now - b.oldest_created_at).max(0) as f64 / 1000.0);
    }
    metrics::gauge!("zaphook_endpoints_disabled").set(disabled as f64);
    Ok(())
}
