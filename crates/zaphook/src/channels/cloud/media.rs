//! Inbound media: fetched through the Graph API (the media id resolved to its short-lived URL,
//! downloaded with the connection's token, size-limited, its SHA-256 checked), stored under
//! the data directory by content hash, and served at `/media/{key}` with an unguessable key.
//! A download is tried a few times while the message's `message.created` waits for it; after
//! that a media job keeps trying on a longer schedule and `message.updated` brings the URL.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::sync::{Notify, watch};

use super::graph::GraphError;
use super::outbound::graph_target;
use crate::channels::{Channels, lease_token};
use crate::domain::CloudConfig;
use crate::ingest::{self, IngestError, IngestResult};
use crate::store::{self, Claim, MediaJob, NextStep, StoredMedia};

/// The file of a stored media's content.
pub fn media_path(dir: &Path, sha256_hex: &str) -> PathBuf {
    let prefix = sha256_hex.get(..2).unwrap_or("00");
    dir.join(prefix).join(sha256_hex)
}

/// Whether `key` has the shape of a media key (so a path never names anything else).
pub fn is_media_key(key: &str) -> bool {
    key.len() == 32
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A file to store: its bytes, their SHA-256 (lowercase hex), what it is.
pub struct Upload {
    pub bytes: axum::body::Bytes,
    pub sha256_hex: String,
    pub mime_type: Option<String>,
    pub file_name: Option<String>,
}

impl Upload {
    /// A file received whole (an upload to the API): its hash computed here.
    pub fn of(
        bytes: axum::body::Bytes,
        mime_type: Option<String>,
        file_name: Option<String>,
    ) -> Self {
        use sha2::Digest;
        let sha256_hex = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Upload {
            bytes,
            sha256_hex,
            mime_type,
            file_name,
        }
    }
}

/// Writes the content once under its hash (a temporary file renamed into place, so a crash
/// never leaves half a file under the final name) and answers the record to store, with a new
/// unguessable key.
pub async fn store_file(
    dir: &Path,
    company_id: i64,
    upload: Upload,
    now: i64,
) -> std::io::Result<StoredMedia> {
    let path = media_path(dir, &upload.sha256_hex);
    let size = upload.bytes.len() as i64;
    if tokio::fs::metadata(&path).await.is_err() {
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let temp = path.with_extension(format!("tmp{}", lease_token()));
        let bytes = upload.bytes.clone();
        let temp_for_write = temp.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut file = std::fs::File::create(&temp_for_write)?;
            file.write_all(&bytes)?;
            file.sync_all()
        })
        .await
        .map_err(std::io::Error::other)??;
        tokio::fs::rename(&temp, &path).await?;
    }
    let key: [u8; 24] = rand::random();
    Ok(StoredMedia {
        key: URL_SAFE_NO_PAD.encode(key),
        company_id,
        sha256: upload.sha256_hex,
        mime_type: upload.mime_type,
        size,
        file_name: upload.file_name,
        created_at: now,
    })
}

/// The URL `mediaUrl` gets for a stored media.
pub fn media_url(public_url: &str, key: &str) -> String {
    format!("{}/media/{key}", public_url.trim_end_matches('/'))
}

/// What fetching a media file came to.
pub enum Fetched {
    Stored(StoredMedia),
    Failed(String),
}

/// Downloads and stores one media file: one try.
pub async fn fetch_once(
    channels: &Channels,
    company_id: i64,
    cloud: &CloudConfig,
    media_id: &str,
    sha256: Option<&str>,
) -> Fetched {
    let target = graph_target(cloud);
    let limit = channels.config.media_limit;
    let downloaded: Result<_, GraphError> = channels
        .graph
        .download_media(&target, media_id, sha256, limit)
        .await;
    let media = match downloaded {
        Ok(media) => media,
        Err(e) => return Fetched::Failed(e.title),
    };
    let now = channels.ingest.clock.now_ms();
    let upload = Upload {
        bytes: media.bytes.into(),
        sha256_hex: media.sha256_hex,
        mime_type: media.mime_type,
        file_name: None,
    };
    match store_file(&channels.config.media_dir, company_id, upload, now).await {
        Ok(stored) => Fetched::Stored(stored),
        Err(e) => Fetched::Failed(format!("cannot store the media file: {e}")),
    }
}

/// Downloads and stores a media file, trying again on the quick schedule until `deadline`.
pub async fn fetch_within(
    channels: &Channels,
    company_id: i64,
    cloud: &CloudConfig,
    media_id: &str,
    sha256: Option<&str>,
    deadline: tokio::time::Instant,
) -> Fetched {
    let mut delays = channels.config.media_quick_retry.iter();
    loop {
        let outcome = tokio::time::timeout_at(
            deadline,
            fetch_once(channels, company_id, cloud, media_id, sha256),
        )
        .await
        .unwrap_or_else(|_| Fetched::Failed("the media did not arrive in time".into()));
        let why = match outcome {
            Fetched::Stored(stored) => {
                metrics::counter!("zaphook_cloud_media_total", "outcome" => "stored").increment(1);
                return Fetched::Stored(stored);
            }
            Fetched::Failed(why) => why,
        };
        tracing::info!(media = media_id, error = %why, "media download failed");
        match delays.next() {
            Some(delay) if tokio::time::Instant::now() + *delay < deadline => {
                tokio::time::sleep(*delay).await;
            }
            _ => return Fetched::Failed(why),
        }
    }
}

/// Downloads the media of messages whose `message.created` went out without it, until
/// `shutdown` turns true.
pub async fn run_media_worker(
    channels: Channels,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let ingest = &channels.ingest;
    loop {
        if *shutdown.borrow() {
            return;
        }
        if let Err(e) = media_batch(&channels).await {
            tracing::error!(error = %e, "downloading media failed");
        }
        let poll = tokio::time::Instant::now() + Duration::from_secs(5);
        let wake_at = match store::read(&ingest.store, |tx| tx.next_media_job_due()).await {
            Ok(Some(due)) => ingest.clock.instant_at(due).min(poll),
            _ => poll,
        };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep_until(wake_at) => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn media_batch(channels: &Channels) -> IngestResult<()> {
    let ingest = &channels.ingest;
    let now = ingest.clock.now_ms();
    let claim = Claim {
        now,
        lease_until: now + (channels.config.graph_timeout * 3).as_millis() as i64,
        lease: lease_token(),
        limit: 16,
    };
    let jobs = store::write(&ingest.store, move |tx| tx.claim_media_jobs(claim)).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for job in jobs {
        let channels = channels.clone();
        tasks.spawn(async move {
            let id = job.message_id.clone();
            if let Err(e) = media_job(&channels, job).await {
                tracing::error!(message = %id, error = %e, "a media download could not be recorded");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn media_job(channels: &Channels, job: MediaJob) -> IngestResult<()> {
    let ingest = &channels.ingest;
    let connection_id = job.connection_id;
    let cloud = store::read(&ingest.store, move |tx| tx.cloud_config(connection_id)).await?;
    let Some((_, cloud)) = cloud else {
        return Err(IngestError::NotFound(format!(
            "cloud connection {connection_id}"
        )));
    };
    let fetched = fetch_once(
        channels,
        job.company_id,
        &cloud,
        &job.media_id,
        job.sha256.as_deref(),
    )
    .await;
    let base = channels.config.public_url.clone();
    match fetched {
        Fetched::Stored(stored) => {
            metrics::counter!("zaphook_cloud_media_total", "outcome" => "stored").increment(1);
            ingest
                .run(job.company_id, move |tx, company, now| {
                    if !tx.finish_media_job(&job.message_id, job.lease)? {
                        return Ok(());
                    }
                    tx.insert_media(&stored)?;
                    let url = media_url(&base, &stored.key);
                    ingest::set_media(tx, company, now, &job.message_id, &url)?;
                    Ok(())
                })
                .await
        }
        Fetched::Failed(why) => {
            let now = ingest.clock.now_ms();
            // The first of this job's tries came after the quick ones, when it was queued.
            let next = channels.config.media_retry.after_failure(
                job.attempts - 1,
                now,
                None,
                ingest.jitter.unit(),
            );
            let due = match next {
                NextStep::RetryAt(due) => due,
                _ => {
                    metrics::counter!("zaphook_cloud_media_total", "outcome" => "gave_up")
                        .increment(1);
                    tracing::warn!(message = %job.message_id, error = %why, "gave up downloading media");
                    store::write(&ingest.store, move |tx| {
                        tx.finish_media_job(&job.message_id, job.lease)
                    })
                    .await?;
                    return Ok(());
                }
            };
            store::write(&ingest.store, move |tx| {
                tx.retry_media_job(&job.message_id, job.lease, due, &why)
            })
            .await?;
            Ok(())
        }
    }
}
