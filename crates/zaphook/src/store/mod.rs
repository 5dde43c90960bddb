//! Persistence. `Store` runs jobs against a `Tx`: the repository operations every backend
//! implements with its own SQL. Writes go through `write`, which commits before it answers
//! (a backend may group several writers' jobs into one commit); reads go through `read`.
//! Nothing above this module sees SQL.

pub mod channels;
pub mod companies;
pub mod conversations;
pub mod dashboard;
pub mod deliveries;
pub mod postgres;
mod sealed;
pub mod sqlite;
pub mod webhooks;

pub use channels::{ChannelTx, Claim, InboxItem, MediaJob, SendJob, SendKind, StoredMedia};
pub use companies::{CompanyTx, UiSession};
pub use conversations::{ConversationTx, NewContact, NewTicket, Reactor, TicketFilter};
pub use dashboard::{AttemptTally, DashboardTx};
pub use deliveries::{
    AttemptRecord, Claimed, DeliveryTx, DueWebhook, EndpointBacklog, EventScope, HandedOff,
    Handoffs, LogFilter, LogKey, LogPage, LogPath, LogRow, MessageScope, NewDelivery, NextLease,
    NextStep, Recorded, Recovery, RecoveryProgress, Residual, Subscriber,
};
pub use webhooks::{Target, WebhookTx};

use std::sync::Arc;

use tokio::sync::{Notify, oneshot};

/// A store failure, by what the caller can do about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A unique key is taken (a row that must exist once already does): a 409, not a retry.
    #[error("already exists: {0}")]
    Conflict(String),
    /// A concurrent writer got in the way (busy, locked, a serialization failure): the same
    /// job may succeed when run again.
    #[error("the database was busy: {0}")]
    Retry(String),
    /// The database cannot be reached or written now (I/O error, disk full, connection
    /// lost): nothing was changed; try again later.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The disk (or the database server's) is full: nothing was changed; writes succeed
    /// again once there is space.
    #[error("the storage is full: {0}")]
    StorageFull(String),
    /// The database cannot hold a value given to it (PostgreSQL's text cannot hold a NUL
    /// character, say): the request is at fault, not the store.
    #[error("the database cannot hold a value: {0}")]
    Invalid(String),
    /// Any other database failure.
    #[error("database error: {0}")]
    Database(String),
    #[error("the store is shutting down")]
    Closed,
    #[error("a stored value could not be read: {0}")]
    Corrupt(String),
    #[error("{0}")]
    SecretKey(String),
    /// The database is not one this binary may open (not a database at all, another
    /// application's, a schema newer than this binary): the message names it and says what
    /// to do.
    #[error("{0}")]
    Refused(String),
}

impl StoreError {
    /// Whether running the same job again may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Retry(_) | StoreError::Unavailable(_) | StoreError::StorageFull(_)
        )
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A unit of writing, run inside a transaction that other jobs may share.
pub trait WriteJob: Send {
    /// Writes; answers whether the changes should be kept (`true`) or rolled back (`false`).
    /// May run more than once: when another job of the same transaction fails after writing,
    /// the store rolls the transaction back and runs the others again without it.
    fn run(&mut self, tx: &mut dyn Tx) -> bool;
    /// What the job will look up by key, said ahead so that a backend whose every statement
    /// is a round trip may read it for the whole batch at once. The job still asks for it,
    /// and gets the answers it would get one lookup at a time.
    fn lookups(&self) -> Option<&Lookups> {
        None
    }
    /// Called once, when the transaction committed (`Ok`) or failed to commit (`Err`), or at
    /// once with `Ok` for a job whose changes were not kept.
    fn reply(self: Box<Self>, committed: StoreResult<()>);
}

/// Rows a write job will look up by key (see [`WriteJob::lookups`]): on one connection of a
/// company, messages by their channel id, and contacts by number with each one's open or
/// pending ticket there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookups {
    pub company_id: i64,
    pub connection_id: i64,
    pub channel_ids: Vec<String>,
    pub numbers: Vec<String>,
}

/// A unit of reading, given a transaction, or why the store could not open one.
pub type ReadJob = Box<dyn FnOnce(StoreResult<&mut dyn Tx>) + Send>;

/// Work a commit can make ready, for the worker that waits for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// Deliveries due now, not handed off to this process's dispatcher.
    Deliveries,
    Sends,
    Inbox,
    Media,
}

impl Topic {
    pub const ALL: [Topic; 4] = [Topic::Deliveries, Topic::Sends, Topic::Inbox, Topic::Media];

    fn bit(self) -> u8 {
        1 << self as u8
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Deliveries => "deliveries",
            Topic::Sends => "sends",
            Topic::Inbox => "inbox",
            Topic::Media => "media",
        }
    }

    pub fn parse(text: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// The topics a transaction announces. The repository operations add to it as they write
/// (a pending delivery, a send job, a callback body, a media job), so no caller has to
/// remember to wake a worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Topics(u8);

impl Topics {
    pub fn add(&mut self, topic: Topic) {
        self.0 |= topic.bit();
    }

    pub fn extend(&mut self, other: Topics) {
        self.0 |= other.0;
    }

    pub fn contains(self, topic: Topic) -> bool {
        self.0 & topic.bit() != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn all() -> Topics {
        let mut all = Topics::default();
        Topic::ALL.into_iter().for_each(|t| all.add(t));
        all
    }

    pub fn iter(self) -> impl Iterator<Item = Topic> {
        Topic::ALL.into_iter().filter(move |t| self.contains(*t))
    }
}

/// Wakes this process's workers when a commit made work ready: a commit of this process, or
/// (on a shared database) of another one. `changes` counts the commits announced, for the
/// dashboard's open pages (every commit of this process; another process's only when it made
/// work ready, so the pages also look again now and then).
#[derive(Debug, Default)]
pub struct Announcements {
    pub deliveries: Arc<Notify>,
    pub sends: Arc<Notify>,
    pub inbox: Arc<Notify>,
    pub media: Arc<Notify>,
    pub changes: tokio::sync::watch::Sender<u64>,
}

impl Announcements {
    pub fn of(&self, topic: Topic) -> &Arc<Notify> {
        match topic {
            Topic::Deliveries => &self.deliveries,
            Topic::Sends => &self.sends,
            Topic::Inbox => &self.inbox,
            Topic::Media => &self.media,
        }
    }

    pub fn announce(&self, topics: Topics) {
        for topic in topics.iter() {
            self.of(topic).notify_one();
        }
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

pub trait Store: Send + Sync + 'static {
    /// Queues a write job; its reply runs after the commit is durable.
    fn submit_write(&self, job: Box<dyn WriteJob>);
    /// Queues a read job on a reader connection.
    fn submit_read(&self, job: ReadJob);
    /// Stops taking writes; what is queued is still committed.
    fn close(&self);
    /// Where committed writes announce the work they made ready.
    fn announcements(&self) -> Arc<Announcements>;
    /// How far the database's clock is ahead of this machine's, in milliseconds, when the
    /// database is shared and its clock is the one leases and due times follow.
    fn clock_offset(&self) -> Option<Arc<std::sync::atomic::AtomicI64>> {
        None
    }
    /// Why commits are failing for a reason of the storage (a full disk, I/O errors), while
    /// they are; `/readyz` answers 503 meanwhile.
    fn write_fault(&self) -> Option<String> {
        None
    }
}

/// Whether the writer's commits are failing for a reason of the storage, kept by the writer.
/// The log says so once when it starts and once when it ends (not once per request), and a
/// metric counts the failed commits by kind. It ends only after `QUIET_AFTER_FAULT` without a
/// failure: at the edge of a full disk, small commits fit between failing large ones, and
/// that flicker is one episode, not many.
#[derive(Debug, Default)]
pub struct WriteHealth {
    state: std::sync::Mutex<HealthState>,
}

#[derive(Debug, Default)]
struct HealthState {
    /// Why the last commit failed, until one succeeds.
    fault: Option<String>,
    last_failure: Option<std::time::Instant>,
    /// The start of the episode was logged and its end not yet.
    announced: bool,
}

/// How long commits must go without a storage failure before an episode is over.
pub const QUIET_AFTER_FAULT: std::time::Duration = std::time::Duration::from_secs(2);

impl WriteHealth {
    /// Notes how a commit (or its BEGIN) ended.
    pub fn note(&self, result: &StoreResult<()>) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        match result {
            Ok(()) => state.fault = None,
            Err(e @ (StoreError::StorageFull(_) | StoreError::Unavailable(_))) => {
                let kind = if matches!(e, StoreError::StorageFull(_)) {
                    "full"
                } else {
                    "io"
                };
                metrics::counter!("zaphook_storage_errors_total", "kind" => kind).increment(1);
                if !state.announced {
                    tracing::error!(error = %e, "the database cannot take writes; requests that write are answered 503 until it can");
                    state.announced = true;
                }
                state.fault = Some(e.to_string());
                state.last_failure = Some(std::time::Instant::now());
            }
            Err(_) => {}
        }
        drop(state);
        self.settle();
    }

    /// Ends the episode once the last commit succeeded and none failed for
    /// `QUIET_AFTER_FAULT`; the writer calls it when idle too.
    pub fn settle(&self) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let quiet = state
            .last_failure
            .is_none_or(|at| at.elapsed() >= QUIET_AFTER_FAULT);
        if state.announced && state.fault.is_none() && quiet {
            tracing::info!("the database takes writes again");
            state.announced = false;
        }
    }

    /// Whether an episode is waiting for its quiet time to end.
    pub fn settling(&self) -> bool {
        self.state
            .lock()
            .is_ok_and(|state| state.announced && state.fault.is_none())
    }

    /// Why writes are failing, while an episode lasts.
    pub fn fault(&self) -> Option<String> {
        let state = self.state.lock().ok()?;
        match (&state.fault, state.announced) {
            (Some(fault), _) => Some(fault.clone()),
            (None, true) => Some("writes failed moments ago".into()),
            (None, false) => None,
        }
    }
}

/// Logs a worker's failed store call: at error when the store itself is at fault, at debug when
/// the failure is transient (a full or failing disk, a lost database connection), which the
/// store's write health already logs once when it starts and once when it ends.
pub fn log_failure(e: &StoreError, what: &str) {
    if e.is_transient() {
        tracing::debug!(error = %e, "{what}");
    } else {
        tracing::error!(error = %e, "{what}");
    }
}

/// Runs `f` in a write transaction and answers once it is committed. When `f` fails, its
/// changes are rolled back and its error returned; other jobs sharing the commit are kept.
/// `f` may run more than once (see [`WriteJob::run`]): it must have no effect but its writes.
pub async fn write<R, E, F>(store: &Arc<dyn Store>, f: F) -> Result<R, E>
where
    R: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: FnMut(&mut dyn Tx) -> Result<R, E> + Send + 'static,
{
    write_looking_up(store, None, f).await
}

/// [`write`], saying ahead what `f` will look up (see [`WriteJob::lookups`]).
pub async fn write_looking_up<R, E, F>(
    store: &Arc<dyn Store>,
    lookups: Option<Lookups>,
    f: F,
) -> Result<R, E>
where
    R: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: FnMut(&mut dyn Tx) -> Result<R, E> + Send + 'static,
{
    let (sender, receiver) = oneshot::channel();
    store.submit_write(Box::new(Write {
        f,
        lookups,
        result: None,
        sender,
    }));
    receiver.await.map_err(|_| E::from(StoreError::Closed))?
}

/// The job behind [`write`]: the result of its last run, sent after the commit.
struct Write<F, R, E> {
    f: F,
    lookups: Option<Lookups>,
    result: Option<Result<R, E>>,
    sender: oneshot::Sender<Result<R, E>>,
}

impl<R, E, F> WriteJob for Write<F, R, E>
where
    R: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: FnMut(&mut dyn Tx) -> Result<R, E> + Send + 'static,
{
    fn run(&mut self, tx: &mut dyn Tx) -> bool {
        let result = (self.f)(tx);
        let keep = result.is_ok();
        self.result = Some(result);
        keep
    }

    fn lookups(&self) -> Option<&Lookups> {
        self.lookups.as_ref()
    }

    fn reply(self: Box<Self>, committed: StoreResult<()>) {
        let answer = match (committed, self.result) {
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(E::from(StoreError::Closed)),
            (Err(e), _) => Err(E::from(e)),
        };
        let _ = self.sender.send(answer);
    }
}

/// Runs `f` against a reader connection.
pub async fn read<R, E, F>(store: &Arc<dyn Store>, f: F) -> Result<R, E>
where
    R: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: FnOnce(&mut dyn Tx) -> Result<R, E> + Send + 'static,
{
    let (sender, receiver) = oneshot::channel();
    store.submit_read(Box::new(move |tx| {
        let _ = sender.send(tx.map_err(E::from).and_then(f));
    }));
    receiver.await.map_err(|_| E::from(StoreError::Closed))?
}

/// Every repository operation of a transaction, by subject. Company-scoped lookups take the
/// company id and find nothing that belongs to another company.
pub trait Tx:
    CompanyTx + ConversationTx + WebhookTx + DeliveryTx + ChannelTx + DashboardTx
{
}

impl<T: CompanyTx + ConversationTx + WebhookTx + DeliveryTx + ChannelTx + DashboardTx + ?Sized> Tx
    for T
{
}
