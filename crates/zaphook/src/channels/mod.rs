//! WhatsApp channels. Inbound traffic of a channel becomes ingest commands (the sandbox at the
//! API edge, the Cloud API through its inbox); outbound messages wait as send jobs that the
//! send worker here hands to their channel under a lease: connections are served
//! concurrently, the jobs of one connection in order, and one failing job never stops another.

pub mod cloud;
pub mod sandbox;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::delivery::retry::RetryPolicy;
use crate::domain::Channel;
use crate::ingest::{self, Ingest, IngestError, IngestResult};
use crate::store::{self, Claim, SendJob};

/// How the channels' workers behave; the defaults suit Meta's Cloud API.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// How long a claimed send job is held before another worker may take it; must outlast
    /// `graph_timeout`, or a slow Graph call could let a second worker send the message again.
    pub send_lease: Duration,
    /// Whole-request timeout of a Graph API call.
    pub graph_timeout: Duration,
    /// Delays between tries of a send that failed on the way (5xx, throttling, network);
    /// after the last the message is `failed`.
    pub send_retry: RetryPolicy,
    /// How long an inbound message's `message.created` waits for its media.
    pub media_wait: Duration,
    /// Delays between tries of a media download within `media_wait`.
    pub media_quick_retry: Vec<Duration>,
    /// Delays between tries of a media download after `media_wait`; after the last, the
    /// message keeps `mediaUrl: null`.
    pub media_retry: RetryPolicy,
    /// Largest media file downloaded.
    pub media_limit: usize,
    /// How long a claimed callback body is held (it includes waiting for its media).
    pub inbox_lease: Duration,
    /// Where media files are stored.
    pub media_dir: PathBuf,
    /// Base of `mediaUrl` (the server's public URL); set when the server starts.
    pub public_url: String,
}

impl ChannelConfig {
    pub fn new(data_dir: &std::path::Path) -> Self {
        let secs = Duration::from_secs;
        let minutes = |m: u64| secs(m * 60);
        ChannelConfig {
            send_lease: secs(60),
            graph_timeout: secs(20),
            send_retry: RetryPolicy {
                schedule: vec![
                    secs(2),
                    secs(10),
                    secs(30),
                    minutes(2),
                    minutes(10),
                    minutes(30),
                    minutes(60),
                    minutes(180),
                ],
                jitter: 0.2,
            },
            media_wait: secs(30),
            media_quick_retry: [250, 500, 1000, 2000, 4000, 8000]
                .map(Duration::from_millis)
                .to_vec(),
            media_retry: RetryPolicy {
                schedule: vec![
                    secs(30),
                    minutes(2),
                    minutes(10),
                    minutes(60),
                    minutes(360),
                    minutes(1440),
                ],
                jitter: 0.2,
            },
            media_limit: 100 * 1024 * 1024,
            inbox_lease: secs(120),
            media_dir: data_dir.join("media"),
            public_url: String::new(),
        }
    }
}

/// What the channels' workers share.
#[derive(Clone)]
pub struct Channels {
    pub ingest: Ingest,
    pub graph: cloud::graph::GraphClient,
    pub config: Arc<ChannelConfig>,
    /// Woken when a callback body was stored.
    pub inbox_ready: Arc<Notify>,
}

const POLL: Duration = Duration::from_secs(1);
const BATCH: i64 = 256;

/// A random lease token.
pub(crate) fn lease_token() -> i64 {
    rand::random::<u32>() as i64 + 1
}

/// Hands pending outbound messages to their channel until `shutdown` turns true. Each
/// connection with due jobs gets a task that sends them in order; while it runs, that
/// connection's jobs are not claimed again, and other connections are claimed as their jobs
/// come due, so a connection stuck at its Graph API holds up no other.
pub async fn run_send_worker(
    channels: Channels,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let ingest = &channels.ingest;
    let mut tasks = tokio::task::JoinSet::new();
    let mut busy: HashMap<tokio::task::Id, i64> = HashMap::new();
    while !*shutdown.borrow() {
        let connections: Vec<i64> = busy.values().copied().collect();
        let claimed = match claim_jobs(&channels, &mut tasks, &mut busy, connections).await {
            Ok(n) => n,
            Err(e) => {
                match &e {
                    IngestError::Store(e) => {
                        store::log_failure(e, "claiming outbound messages failed")
                    }
                    e => tracing::error!(error = %e, "claiming outbound messages failed"),
                }
                0
            }
        };
        if claimed as i64 == BATCH {
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
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => e.id(),
                };
                busy.remove(&id);
            }
            _ = shutdown.changed() => {}
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// Claims due send jobs of the connections not in `busy` and starts one task per connection
/// that sends its jobs in order; answers how many jobs were claimed.
async fn claim_jobs(
    channels: &Channels,
    tasks: &mut tokio::task::JoinSet<()>,
    busy: &mut HashMap<tokio::task::Id, i64>,
    busy_connections: Vec<i64>,
) -> IngestResult<usize> {
    let ingest = &channels.ingest;
    let now = ingest.clock.now_ms();
    let claim = Claim {
        now,
        lease_until: now + channels.config.send_lease.as_millis() as i64,
        lease: lease_token(),
        limit: BATCH,
    };
    let jobs: Vec<SendJob> = store::write(&ingest.store, move |tx| {
        tx.claim_send_jobs(claim, &busy_connections)
    })
    .await?;
    let count = jobs.len();
    let mut by_connection: BTreeMap<i64, Vec<SendJob>> = BTreeMap::new();
    for job in jobs {
        by_connection
            .entry(job.connection_id)
            .or_default()
            .push(job);
    }
    for (connection_id, jobs) in by_connection {
        let channels = channels.clone();
        let lease_until = claim.lease_until;
        let task = tasks.spawn(async move {
            for job in jobs {
                let id = job.id.clone();
                if let Err(e) = send_one(&channels, job, lease_until).await {
                    tracing::error!(job = %id, error = %e, "an outbound message could not be handled; it is tried again when its lease ends");
                }
            }
        });
        busy.insert(task.id(), connection_id);
    }
    Ok(count)
}

async fn send_one(channels: &Channels, job: SendJob, lease_until: i64) -> IngestResult<()> {
    let ingest = &channels.ingest;
    let (company_id, connection_id) = (job.company_id, job.connection_id);
    let connection = store::read(&ingest.store, move |tx| {
        tx.connection(company_id, connection_id)
    })
    .await?;
    match connection.map(|c| c.channel) {
        Some(Channel::Sandbox) => {
            let channel_id = sandbox::accept();
            ingest
                .run(company_id, move |tx, company, now| {
                    ingest::accept_outbound(tx, company, now, &job, &channel_id)
                })
                .await?;
            Ok(())
        }
        Some(Channel::Cloud) => {
            // A job whose lease would run out during the Graph call is given back rather than
            // risk a second worker sending the same message alongside.
            let left = lease_until - ingest.clock.now_ms();
            if left < channels.config.graph_timeout.as_millis() as i64 {
                let (id, lease, due) = (job.id.clone(), job.lease, ingest.clock.now_ms());
                store::write(&ingest.store, move |tx| {
                    tx.release_send_job(&id, lease, due)
                })
                .await?;
                return Ok(());
            }
            cloud::outbound::send(channels, job).await
        }
        None => Err(IngestError::NotFound(format!("connection {connection_id}"))),
    }
}
