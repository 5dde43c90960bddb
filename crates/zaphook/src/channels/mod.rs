//! WhatsApp channels. Inbound traffic of a channel becomes ingest commands at the API edge;
//! outbound messages wait as send jobs that the send worker here hands to their channel.
//! The sandbox channel accepts every message at once; the Cloud API channel arrives later.

pub mod sandbox;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::domain::Channel;
use crate::ingest::{self, Ingest, IngestError};
use crate::store::{self, SendJob};

/// How long a claimed send job is held before another worker may take it.
const SEND_LEASE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_secs(1);
const BATCH: i64 = 256;

/// Hands pending outbound messages to their channel until `shutdown` turns true.
pub async fn run_send_worker(
    ingest: Ingest,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let handled = match send_batch(&ingest).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "sending outbound messages failed");
                0
            }
        };
        if handled as i64 == BATCH {
            continue;
        }
        let wake_at = match store::read(&ingest.store, |tx| tx.next_send_job_due()).await {
            Ok(Some(due)) => ingest.clock.instant_at(due),
            _ => tokio::time::Instant::now() + POLL,
        };
        let wake_at = wake_at.min(tokio::time::Instant::now() + POLL);
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep_until(wake_at) => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn send_batch(ingest: &Ingest) -> Result<usize, IngestError> {
    let now = ingest.clock.now_ms();
    let lease_until = now + SEND_LEASE.as_millis() as i64;
    let jobs: Vec<SendJob> = store::write(&ingest.store, move |tx| {
        tx.claim_send_jobs(now, lease_until, BATCH)
    })
    .await?;
    let count = jobs.len();
    for job in jobs {
        send_one(ingest, job).await?;
    }
    Ok(count)
}

async fn send_one(ingest: &Ingest, job: SendJob) -> Result<(), IngestError> {
    let company_id = job.company_id;
    let connection = store::read(&ingest.store, move |tx| {
        tx.connection(company_id, job.connection_id)
    })
    .await?;
    let channel_id = match connection.map(|c| c.channel) {
        Some(Channel::Sandbox) => sandbox::accept(),
        Some(Channel::Cloud) | None => {
            // The API refuses sends on channels that cannot send; a job left from such a
            // connection stays queued under its lease instead of being lost.
            tracing::warn!(message = %job.message_id, "no channel can send this message yet");
            return Ok(());
        }
    };
    let message_id = job.message_id.clone();
    ingest
        .run(company_id, move |tx, company, now| {
            ingest::accept_outbound(tx, company, now, &message_id, &channel_id)
        })
        .await?;
    Ok(())
}
