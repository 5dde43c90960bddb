//! Builds the application from settings (store, bootstrap, listener, router, workers) and runs
//! it until a shutdown signal: the HTTP server stops taking requests, the workers stop
//! claiming and finish what is in flight, and the store commits what is queued.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{self, AppState};
use crate::channels::cloud::graph::GraphClient;
use crate::channels::{self, Channels, cloud};
use crate::clock::Clock;
use crate::delivery::http::HttpSender;
use crate::delivery::{Dispatcher, housekeeping};
use crate::ingest::{Handoff, Ingest};
use crate::jitter::Jitter;
use crate::secrets::SecretBox;
use crate::settings::Settings;
use crate::store::postgres::{PgStore, PoolSize};
use crate::store::sqlite::{Durability, SqliteStore};
use crate::store::{self, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Config(String),
}

/// File name of the SQLite database inside the data directory.
pub const DATABASE_FILE: &str = "zaphook.db";

/// Opens the configured store, applying pending migrations. Secrets are sealed with the given
/// key, else with the one kept in the data directory (generated on first use).
pub fn open_store(
    data_dir: &Path,
    database_url: Option<&str>,
    database_pool: usize,
    durability: Durability,
    secret_key: Option<&str>,
) -> Result<Arc<dyn Store>, AppError> {
    std::fs::create_dir_all(data_dir).map_err(|e| {
        AppError::Config(format!(
            "cannot create the data directory {}: {e}",
            data_dir.display()
        ))
    })?;
    check_writable(data_dir)?;
    if database_url.is_none() {
        // Before a secret key is made for a database that will not be opened.
        crate::store::sqlite::check_is_ours(&data_dir.join(DATABASE_FILE))?;
    }
    let secrets = SecretBox::load_or_create(data_dir, secret_key)
        .map_err(|e| AppError::Config(e.to_string()))?;
    let store: Arc<dyn Store> = match database_url {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            PgStore::open(url, PoolSize::of(database_pool), secrets)?
        }
        Some(url) => {
            let scheme = url.split(':').next().unwrap_or_default();
            return Err(AppError::Config(format!(
                "--database-url: {scheme} is not a database zaphook can use; give a postgres:// URL, or leave it unset to use the embedded SQLite database"
            )));
        }
        None => SqliteStore::open(&data_dir.join(DATABASE_FILE), durability, secrets)?,
    };
    Ok(store)
}

/// Fails at start, naming the directory, when the data directory cannot be written: the
/// database, the secret key and stored media all live there, and finding out at the first
/// request would be too late.
fn check_writable(data_dir: &Path) -> Result<(), AppError> {
    let probe = data_dir.join(".zaphook-write-check");
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| {
            AppError::Config(format!(
                "cannot write in the data directory {}: {e}; give zaphook a directory it may write (--data-dir, ZAPHOOK_DATA_DIR)",
                data_dir.display()
            ))
        })
}

/// A new API token: `zh_` and 32 random characters. Stored hashed; shown once.
pub fn generate_token() -> String {
    let bytes: [u8; 24] = rand::random();
    format!("zh_{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The part of a token that is stored in clear to recognise it later.
pub fn token_prefix(token: &str) -> String {
    token.chars().take(11).collect()
}

/// Creates a company and an admin token for it.
pub async fn create_company(store: &Arc<dyn Store>, name: &str) -> Result<(i64, String), AppError> {
    let token = generate_token();
    let (prefix, hash, name) = (
        token_prefix(&token),
        api::token_hash(&token),
        name.to_string(),
    );
    let now = Clock::System.now_ms();
    let id = store::write(store, move |tx| {
        let id = tx.insert_company(&name, now)?;
        tx.insert_token(id, &prefix, &hash, now)?;
        Ok::<_, StoreError>(id)
    })
    .await?;
    Ok((id, token))
}

/// Creates an API token for an existing company.
pub async fn create_token(store: &Arc<dyn Store>, company: i64) -> Result<String, AppError> {
    let token = generate_token();
    let (prefix, hash) = (token_prefix(&token), api::token_hash(&token));
    let now = Clock::System.now_ms();
    let exists = store::write(store, move |tx| {
        if !tx.company_exists(company)? {
            return Ok(false);
        }
        tx.insert_token(company, &prefix, &hash, now)?;
        Ok::<_, StoreError>(true)
    })
    .await?;
    if exists {
        Ok(token)
    } else {
        Err(AppError::Config(format!(
            "company {company} does not exist"
        )))
    }
}

/// On an empty database, creates company 1 with an admin token: the bootstrap token when one
/// is configured (which is also made valid on an existing database), else a generated one,
/// returned so it can be shown once.
async fn bootstrap(
    store: &Arc<dyn Store>,
    token: Option<String>,
) -> Result<Option<String>, AppError> {
    let now = Clock::System.now_ms();
    let given = token.is_some();
    let token = token.unwrap_or_else(generate_token);
    let (prefix, hash) = (token_prefix(&token), api::token_hash(&token));
    let created = store::write(store, move |tx| {
        if tx.company_count()? == 0 {
            let id = tx.insert_company("Default", now)?;
            tx.insert_token(id, &prefix, &hash, now)?;
            return Ok::<_, StoreError>(true);
        }
        if given && tx.company_exists(1)? {
            tx.insert_token(1, &prefix, &hash, now)?;
        }
        Ok(false)
    })
    .await?;
    Ok((created && !given).then_some(token))
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
    settings: Settings,
    /// The admin token generated for a new database, to show once.
    pub generated_token: Option<String>,
    handoffs: Option<tokio::sync::mpsc::UnboundedReceiver<Vec<crate::store::Claimed>>>,
    busy: Arc<std::sync::Mutex<Vec<i64>>>,
    graph: GraphClient,
    closing: watch::Sender<bool>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, AppError> {
        Self::build_with(settings, Clock::System, Jitter::Random).await
    }

    /// Builds the application on a clock and a source of jitter of the caller's (tests move
    /// the clock and fix the jitter to check retry schedules).
    pub async fn build_with(
        settings: Settings,
        clock: Clock,
        jitter: Jitter,
    ) -> Result<Self, AppError> {
        if settings.channels.send_lease <= settings.channels.graph_timeout {
            return Err(AppError::Config(format!(
                "the send lease ({:?}) must outlast the Graph API timeout ({:?}), or a slow send could reach the customer twice",
                settings.channels.send_lease, settings.channels.graph_timeout
            )));
        }
        if settings.delivery.lease <= settings.http.request_timeout {
            return Err(AppError::Config(format!(
                "the delivery lease ({:?}) must outlast the request timeout ({:?}), or a slow endpoint gets events twice",
                settings.delivery.lease, settings.http.request_timeout
            )));
        }
        if let Some(backup) = &settings.backup {
            if settings.database_url.is_some() {
                return Err(AppError::Config(
                    "--backup-every backs up the embedded SQLite database; back a PostgreSQL database up with pg_dump or the provider's backups".into(),
                ));
            }
            std::fs::create_dir_all(&backup.dir).map_err(|e| {
                AppError::Config(format!(
                    "cannot create the backup directory {}: {e}",
                    backup.dir.display()
                ))
            })?;
        }
        let store = open_store(
            &settings.data_dir,
            settings.database_url.as_deref(),
            settings.database_pool,
            settings.durability,
            settings.secret_key.as_deref(),
        )?;
        let clock = match (clock, store.clock_offset()) {
            // On a shared database, the database's clock is everyone's.
            (Clock::System, Some(offset)) => Clock::Offset(offset),
            (clock, _) => clock,
        };
        let generated_token = bootstrap(&store, settings.bootstrap_token.clone()).await?;
        let announcements = store.announcements();
        let sender = HttpSender::new(&settings.http)
            .map_err(|e| AppError::Config(format!("cannot build the HTTP client: {e}")))?;
        let graph = GraphClient::new(&settings.http.targets, settings.channels.graph_timeout)
            .map_err(|e| AppError::Config(format!("cannot build the Graph API client: {e}")))?;
        let listener = TcpListener::bind(settings.listen).await?;
        let public_url = match (&settings.channels.public_url, &settings.public_url) {
            (given, _) if !given.is_empty() => given.trim_end_matches('/').to_string(),
            (_, Some(url)) => url.trim_end_matches('/').to_string(),
            (_, None) => format!("http://{}", listener.local_addr()?),
        };
        let busy = Arc::default();
        let (closing, closing_rx) = watch::channel(false);
        let (handoff, handoffs) = if settings.run_workers {
            let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
            let lease = settings.delivery.lease;
            let busy = Arc::clone(&busy);
            (
                Some(Handoff {
                    lease,
                    sender,
                    busy,
                }),
                Some(receiver),
            )
        } else {
            (None, None)
        };
        let state = AppState {
            ingest: Ingest {
                store,
                clock,
                jitter,
                deliveries_ready: Arc::clone(&announcements.deliveries),
                sends_ready: Arc::clone(&announcements.sends),
                handoff,
            },
            sender,
            tokens: api::TokenCache::default(),
            inbox_ready: Arc::clone(&announcements.inbox),
            media_dir: settings.channels.media_dir.clone(),
            public_url,
            closing: closing_rx,
        };
        Ok(Application {
            listener,
            state,
            settings,
            generated_token,
            handoffs,
            busy,
            graph,
            closing,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.settings.listen)
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The store the application runs on (tests inspect it).
    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.state.ingest.store)
    }

    /// Serves until `shutdown` completes, then drains the workers and the store.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let ingest = self.state.ingest.clone();
        let mut workers = tokio::task::JoinSet::new();
        if self.settings.run_workers {
            let dispatcher = Dispatcher {
                store: Arc::clone(&ingest.store),
                clock: ingest.clock.clone(),
                jitter: ingest.jitter,
                sender: self.state.sender.clone(),
                config: self.settings.delivery.clone(),
                media_dir: self.state.media_dir.clone(),
                wake: Arc::clone(&ingest.deliveries_ready),
                handoffs: self.handoffs,
                busy: self.busy,
            };
            workers.spawn(dispatcher.run(stop_rx.clone()));
            workers.spawn(housekeeping::run(
                Arc::clone(&ingest.store),
                ingest.clock.clone(),
                self.settings.housekeeping.clone(),
                stop_rx.clone(),
            ));
            let mut config = self.settings.channels.clone();
            config.public_url = self.state.public_url.clone();
            let channels = Channels {
                ingest: ingest.clone(),
                graph: self.graph.clone(),
                config: Arc::new(config),
                inbox_ready: Arc::clone(&self.state.inbox_ready),
            };
            let media_ready = Arc::clone(&ingest.store.announcements().media);
            workers.spawn(channels::run_send_worker(
                channels.clone(),
                Arc::clone(&ingest.sends_ready),
                stop_rx.clone(),
            ));
            workers.spawn(cloud::inbox::run_inbox_worker(
                channels.clone(),
                stop_rx.clone(),
            ));
            workers.spawn(cloud::media::run_media_worker(
                channels,
                media_ready,
                stop_rx.clone(),
            ));
        }
        if let Some(schedule) = self.settings.backup.clone() {
            workers.spawn(crate::backup::run_scheduled(
                self.settings.data_dir.join(DATABASE_FILE),
                schedule,
                stop_rx.clone(),
            ));
        }
        workers.spawn(api::metrics_upkeep(stop_rx.clone()));
        let router = api::router(self.state);
        tracing::info!(address = %self.listener.local_addr()?, "zaphook is listening");
        let closing = self.closing;
        let shutdown = async move {
            shutdown.await;
            let _ = closing.send(true);
        };
        let served = axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
        let _ = stop_tx.send(true);
        while workers.join_next().await.is_some() {}
        ingest.store.close();
        served?;
        Ok(())
    }
}
