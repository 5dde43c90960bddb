//! `zaphook replay`: queues again every failed or dead delivery of an endpoint since a time
//! (as `POST /webhooks/{id}/recover` does), then follows them until each was attempted again:
//! a progress bar on a terminal, plain lines otherwise. The running server delivers them.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::clock::Clock;
use crate::store::{self, RecoveryProgress, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("webhook {0} does not exist")]
    UnknownWebhook(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How often progress is read.
const POLL: Duration = Duration::from_millis(500);
/// How long without any progress before saying the server may not be running.
const STALL_HINT: Duration = Duration::from_secs(15);

/// Queues the deliveries again; answers how many and the mark to follow them by.
pub async fn queue(
    store: &Arc<dyn Store>,
    webhook_id: i64,
    since: i64,
) -> Result<(usize, i64), ReplayError> {
    let now = Clock::System.now_ms();
    store::write(store, move |tx| {
        if tx.webhook_company(webhook_id)?.is_none() {
            return Err(ReplayError::UnknownWebhook(webhook_id));
        }
        Ok((tx.recover_deliveries(webhook_id, since, now)?, now))
    })
    .await
}

/// Follows a replay until no delivery of it waits for its first new attempt.
pub async fn follow(
    store: &Arc<dyn Store>,
    webhook_id: i64,
    mark: i64,
    total: usize,
) -> Result<RecoveryProgress, ReplayError> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(total as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} attempted  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let mut last_done = -1;
    let mut last_change = tokio::time::Instant::now();
    let mut last_line = tokio::time::Instant::now();
    loop {
        let p = store::read(store, move |tx| tx.recovery_progress(webhook_id, mark)).await?;
        let done = p.delivered + p.failed + p.dead;
        let summary = format!(
            "{} delivered, {} failed again (retried on the schedule), {} dead",
            p.delivered, p.failed, p.dead
        );
        if done != last_done {
            last_done = done;
            last_change = tokio::time::Instant::now();
        }
        match &bar {
            Some(bar) => {
                bar.set_position(done as u64);
                bar.set_message(summary.clone());
            }
            None if last_line.elapsed() >= Duration::from_secs(2) || p.waiting == 0 => {
                println!("replay: {done}/{total} attempted; {summary}");
                last_line = tokio::time::Instant::now();
            }
            None => {}
        }
        if p.waiting == 0 {
            if let Some(bar) = &bar {
                bar.finish_with_message(summary);
            }
            return Ok(p);
        }
        if last_change.elapsed() >= STALL_HINT {
            let hint = "no progress: is `zaphook serve` running on this database, and is the endpoint enabled?";
            match &bar {
                Some(bar) => bar.println(hint),
                None => println!("replay: {hint}"),
            }
            last_change = tokio::time::Instant::now();
        }
        tokio::time::sleep(POLL).await;
    }
}
