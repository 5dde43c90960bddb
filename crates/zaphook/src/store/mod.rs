//! Persistence. `Store` runs jobs against a `Tx`: the repository operations every backend
//! implements with its own SQL. Writes go through `write`, which commits before it answers
//! (a backend may group several writers' jobs into one commit); reads go through `read`.
//! Nothing above this module sees SQL.

pub mod channels;
pub mod sqlite;

pub use channels::{ChannelTx, Claim, InboxItem, MediaJob, SendJob, SendKind, StoredMedia};

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::domain::{
    CloudConfig, Connection, Contact, Delivery, DeliveryDetail, DeliveryStatus, EventType, Message,
    Ordering, Queue, Ticket, TicketStatus, User, Webhook, WebhookSpec,
};

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
    /// Any other database failure.
    #[error("database error: {0}")]
    Database(String),
    #[error("the store is shutting down")]
    Closed,
    #[error("a stored value could not be read: {0}")]
    Corrupt(String),
    #[error("{0}")]
    SecretKey(String),
}

impl StoreError {
    /// Whether running the same job again may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Retry(_) | StoreError::Unavailable(_))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A unit of writing, run inside a transaction that other jobs may share.
pub trait WriteJob: Send {
    /// Writes; answers whether the changes should be kept (`true`) or rolled back (`false`).
    /// May run more than once: when another job of the same transaction fails after writing,
    /// the store rolls the transaction back and runs the others again without it.
    fn run(&mut self, tx: &mut dyn Tx) -> bool;
    /// Called once, when the transaction committed (`Ok`) or failed to commit (`Err`), or at
    /// once with `Ok` for a job whose changes were not kept.
    fn reply(self: Box<Self>, committed: StoreResult<()>);
}

/// A unit of reading.
pub type ReadJob = Box<dyn FnOnce(&mut dyn Tx) + Send>;

pub trait Store: Send + Sync + 'static {
    /// Queues a write job; its reply runs after the commit is durable.
    fn submit_write(&self, job: Box<dyn WriteJob>);
    /// Queues a read job on a reader connection.
    fn submit_read(&self, job: ReadJob);
    /// Stops taking writes; what is queued is still committed.
    fn close(&self);
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
    let (sender, receiver) = oneshot::channel();
    store.submit_write(Box::new(Write {
        f,
        result: None,
        sender,
    }));
    receiver.await.map_err(|_| E::from(StoreError::Closed))?
}

/// The job behind [`write`]: the result of its last run, sent after the commit.
struct Write<F, R, E> {
    f: F,
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
        let _ = sender.send(f(tx));
    }));
    receiver.await.map_err(|_| E::from(StoreError::Closed))?
}

/// A contact to create: known by number, by BSUID, or both.
#[derive(Debug, Default)]
pub struct NewContact<'a> {
    pub number: Option<&'a str>,
    pub bsuid: Option<&'a str>,
    pub username: Option<&'a str>,
    pub name: &'a str,
    pub pushname: Option<&'a str>,
    pub email: Option<&'a str>,
    pub is_group: bool,
}

/// A ticket to create; its protocol is derived from its id and creation time.
pub struct NewTicket {
    pub connection_id: i64,
    pub contact_id: i64,
    pub status: TicketStatus,
    pub queue_id: Option<i64>,
    pub user_id: Option<i64>,
    pub is_group: bool,
    pub external_key: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct TicketFilter {
    pub status: Option<TicketStatus>,
    pub connection_id: Option<i64>,
    pub queue_id: Option<i64>,
    /// Only tickets with an id below this one (the pages run newest first).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// Who reacted: a contact or an agent (one reaction each per message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reactor {
    Contact(i64),
    User(i64),
}

/// An endpoint that wants an event, and how it orders deliveries.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub ordering: Ordering,
    pub target: Target,
}

/// A delivery to append for an event.
pub struct NewDelivery<'a> {
    pub id: &'a str,
    pub event_id: &'a str,
    pub event_type: EventType,
    pub webhook_id: i64,
    /// The ticket whose order it keeps, if its endpoint orders by ticket.
    pub ordering_key: Option<i64>,
}

/// Deliveries leased as they are written, for the local dispatcher to attempt as soon as the
/// transaction commits, without a claim. A crash before the attempt leaves them to their
/// lease, like any claimed delivery.
#[derive(Debug, Default, Clone)]
pub struct Handoffs {
    pub lease: i64,
    pub lease_until: i64,
    pub claimed: Vec<Claimed>,
    /// Endpoints whose hand-offs already wait for room: theirs are queued in the database.
    pub busy: Vec<i64>,
}

/// What decides which endpoints receive an event.
#[derive(Debug, Clone, Copy)]
pub struct EventScope {
    pub company_id: i64,
    pub event_type: EventType,
    pub connection_id: Option<i64>,
    pub queue_id: Option<i64>,
    pub is_group: bool,
    pub ticket_id: Option<i64>,
}

/// Signing material and address of an endpoint, as a delivery worker needs them.
#[derive(Debug, Clone)]
pub struct Target {
    pub webhook_id: i64,
    pub url: String,
    pub secret: String,
    /// The secret being rotated out, while it still signs alongside the new one.
    pub previous_secret: Option<String>,
    pub token: Option<String>,
    /// Most attempts per second, when limited.
    pub rate_limit: Option<i64>,
}

/// A delivery a worker holds under a lease.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub seq: i64,
    /// The ticket whose order the delivery keeps, if its endpoint orders by ticket.
    pub ordering_key: Option<i64>,
    pub id: String,
    pub event_id: String,
    pub event_type: EventType,
    pub attempts: i64,
    pub lease: i64,
    pub lease_until: i64,
    pub payload: Arc<str>,
    pub target: Target,
}

/// The outcome of one attempt and what follows from it.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub seq: i64,
    pub webhook_id: i64,
    pub ordering_key: Option<i64>,
    pub lease: i64,
    pub at: i64,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub response_body: Option<String>,
    pub next: NextStep,
    /// The endpoint answered `410 Gone`: disable it.
    pub disable_webhook: bool,
    /// An endpoint failing without a success for this long is disabled.
    pub disable_after_ms: i64,
}

/// What recording an attempt changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// False when the lease was no longer ours (another worker took the delivery).
    pub applied: bool,
    /// Why the endpoint was disabled by this attempt, if it was.
    pub disabled: Option<String>,
    /// The next delivery of the same endpoint and ticket stopped waiting behind this one.
    pub unblocked: bool,
}

/// Deliveries queued again by one recovery, by where they stand now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryProgress {
    /// Not attempted yet, or being attempted.
    pub waiting: i64,
    pub delivered: i64,
    /// Attempted and failed again; retried on the schedule.
    pub failed: i64,
    pub dead: i64,
}

impl RecoveryProgress {
    pub fn total(&self) -> i64 {
        self.waiting + self.delivered + self.failed + self.dead
    }
}

/// An endpoint with due deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueWebhook {
    pub id: i64,
    /// Most attempts per second, when limited.
    pub rate_limit: Option<i64>,
}

/// The backlog of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointBacklog {
    pub webhook_id: i64,
    pub pending: i64,
    /// Creation time of the oldest undelivered delivery.
    pub oldest_created_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Delivered,
    RetryAt(i64),
    Dead,
}

/// The repository operations of a transaction. Company-scoped lookups take the company id
/// and find nothing that belongs to another company.
pub trait Tx: ChannelTx {
    // Companies and API tokens.
    fn insert_company(&mut self, name: &str, now: i64) -> StoreResult<i64>;
    fn company_exists(&mut self, id: i64) -> StoreResult<bool>;
    fn company_count(&mut self) -> StoreResult<i64>;
    fn insert_token(
        &mut self,
        company_id: i64,
        prefix: &str,
        hash: &str,
        now: i64,
    ) -> StoreResult<()>;
    /// The company of a live token, by the token's hash.
    fn token_company(&mut self, hash: &str) -> StoreResult<Option<i64>>;
    /// Revokes the live tokens whose prefix starts with `prefix`; answers how many.
    fn revoke_tokens(&mut self, prefix: &str, now: i64) -> StoreResult<usize>;

    // Connections, queues, agents.
    fn insert_connection(
        &mut self,
        company_id: i64,
        name: &str,
        channel: crate::domain::Channel,
        cloud: Option<&CloudConfig>,
        now: i64,
    ) -> StoreResult<Connection>;
    fn connection(&mut self, company_id: i64, id: i64) -> StoreResult<Option<Connection>>;
    fn connections(&mut self, company_id: i64) -> StoreResult<Vec<Connection>>;
    fn insert_queue(&mut self, company_id: i64, name: &str, now: i64) -> StoreResult<Queue>;
    fn queue(&mut self, company_id: i64, id: i64) -> StoreResult<Option<Queue>>;
    fn queues(&mut self, company_id: i64) -> StoreResult<Vec<Queue>>;
    fn insert_user(
        &mut self,
        company_id: i64,
        name: &str,
        email: &str,
        now: i64,
    ) -> StoreResult<User>;
    fn user(&mut self, company_id: i64, id: i64) -> StoreResult<Option<User>>;
    fn users(&mut self, company_id: i64) -> StoreResult<Vec<User>>;

    // Contacts.
    fn insert_contact(
        &mut self,
        company_id: i64,
        contact: &NewContact<'_>,
        now: i64,
    ) -> StoreResult<Contact>;
    fn contact(&mut self, company_id: i64, id: i64) -> StoreResult<Option<Contact>>;
    fn contact_by_number(&mut self, company_id: i64, number: &str) -> StoreResult<Option<Contact>>;
    fn contact_by_bsuid(&mut self, company_id: i64, bsuid: &str) -> StoreResult<Option<Contact>>;
    fn contacts(&mut self, company_id: i64, number: Option<&str>) -> StoreResult<Vec<Contact>>;
    /// Stores the mutable fields of a contact (number, BSUID, username, names).
    fn update_contact(&mut self, contact: &Contact) -> StoreResult<()>;

    // Tickets.
    fn insert_ticket(
        &mut self,
        company_id: i64,
        ticket: &NewTicket,
        now: i64,
    ) -> StoreResult<Ticket>;
    fn ticket(&mut self, company_id: i64, id: i64) -> StoreResult<Option<Ticket>>;
    /// The open or pending ticket of a contact on a connection.
    fn active_ticket(&mut self, connection_id: i64, contact_id: i64)
    -> StoreResult<Option<Ticket>>;
    /// Stores the mutable fields of a ticket (status, queue, agent, key, last message).
    fn update_ticket(&mut self, ticket: &Ticket) -> StoreResult<()>;
    fn tickets(&mut self, company_id: i64, filter: &TicketFilter) -> StoreResult<Vec<Ticket>>;

    // Messages.
    fn insert_message(&mut self, company_id: i64, message: &Message) -> StoreResult<()>;
    /// Stores the mutable fields of a message (channel id, body, status, flags, media URL,
    /// error).
    fn update_message(&mut self, message: &Message) -> StoreResult<()>;
    fn message(&mut self, company_id: i64, id: &str) -> StoreResult<Option<Message>>;
    fn message_by_channel_id(
        &mut self,
        connection_id: i64,
        message_id: &str,
    ) -> StoreResult<Option<Message>>;
    /// Messages of the company whose channel id is `message_id`, on any connection.
    fn messages_by_channel_id(
        &mut self,
        company_id: i64,
        message_id: &str,
    ) -> StoreResult<Vec<Message>>;
    fn ticket_messages(
        &mut self,
        ticket_id: i64,
        after: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<Message>>;
    /// Sets (`Some`) or removes (`None`) the reaction of `reactor` on a message.
    fn set_reaction(
        &mut self,
        message_id: &str,
        reactor: Reactor,
        reaction: Option<&crate::domain::Reaction>,
    ) -> StoreResult<()>;

    // Events and their deliveries (the outbox).
    /// The endpoints that want an event, with what it takes to send it to them at `now`.
    fn subscribers(&mut self, scope: &EventScope, now: i64) -> StoreResult<Vec<Subscriber>>;
    fn insert_event(
        &mut self,
        id: &str,
        scope: &EventScope,
        payload: &str,
        now: i64,
    ) -> StoreResult<()>;
    /// Inserts a delivery; leases it at once (answering its `seq`) when `lease` is given and
    /// no older delivery of the same endpoint and ticket is unfinished.
    fn insert_delivery(
        &mut self,
        delivery: &NewDelivery<'_>,
        now: i64,
        lease: Option<(i64, i64)>,
    ) -> StoreResult<Option<i64>>;
    /// The deliveries handed off in this transaction, when the caller asked for hand-offs.
    fn handoffs(&mut self) -> &mut Option<Handoffs>;

    // Webhook endpoints.
    fn insert_webhook(
        &mut self,
        company_id: i64,
        spec: &WebhookSpec,
        now: i64,
    ) -> StoreResult<Webhook>;
    fn webhook(&mut self, company_id: i64, id: i64) -> StoreResult<Option<WebhookSpec>>;
    fn webhook_view(&mut self, company_id: i64, id: i64) -> StoreResult<Option<Webhook>>;
    fn webhooks(&mut self, company_id: i64) -> StoreResult<Vec<Webhook>>;
    fn update_webhook(
        &mut self,
        company_id: i64,
        id: i64,
        spec: &WebhookSpec,
        now: i64,
    ) -> StoreResult<()>;
    fn delete_webhook(&mut self, company_id: i64, id: i64) -> StoreResult<bool>;
    /// Replaces the secret; the old one keeps signing until `previous_until`.
    fn rotate_secret(
        &mut self,
        company_id: i64,
        id: i64,
        secret: &str,
        previous_until: i64,
    ) -> StoreResult<bool>;
    fn target(&mut self, company_id: i64, id: i64, now: i64) -> StoreResult<Option<Target>>;

    // Deliveries.
    /// Enabled endpoints with at least one delivery due at `now`.
    fn due_webhooks(&mut self, now: i64) -> StoreResult<Vec<DueWebhook>>;
    /// Leases up to `limit` due deliveries of one endpoint, oldest due first, skipping those
    /// waiting behind an older undelivered one of the same ticket.
    fn claim_deliveries(
        &mut self,
        now: i64,
        lease_until: i64,
        webhook_id: i64,
        limit: i64,
    ) -> StoreResult<Vec<Claimed>>;
    /// Logs an attempt and moves the delivery on, if the lease is still ours; keeps the
    /// endpoint's health on failure (disabled on `410 Gone` or after failing too long).
    fn record_attempt(&mut self, record: &AttemptRecord) -> StoreResult<Recorded>;
    /// These endpoints just delivered: they are no longer failing.
    fn mark_healthy(&mut self, webhook_ids: &[i64]) -> StoreResult<()>;
    /// Gives leased deliveries back (state pending, due now), if the leases are still ours.
    fn release_deliveries(&mut self, leases: &[(i64, i64)], now: i64) -> StoreResult<usize>;
    /// When the earliest waiting delivery becomes due.
    fn next_delivery_due(&mut self) -> StoreResult<Option<i64>>;
    fn deliveries(
        &mut self,
        webhook_id: i64,
        status: Option<DeliveryStatus>,
        after: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<Delivery>>;
    fn delivery(&mut self, company_id: i64, id: &str) -> StoreResult<Option<DeliveryDetail>>;
    /// Queues a delivery again now, whatever its state, unless it is being attempted.
    fn retry_delivery(&mut self, company_id: i64, id: &str, now: i64) -> StoreResult<bool>;
    /// Queues again every failed or dead delivery of an endpoint created since `since`.
    fn recover_deliveries(&mut self, webhook_id: i64, since: i64, now: i64) -> StoreResult<usize>;
    /// Where the deliveries an endpoint's recovery at `recovered_at` queued again stand.
    fn recovery_progress(
        &mut self,
        webhook_id: i64,
        recovered_at: i64,
    ) -> StoreResult<RecoveryProgress>;
    /// The company an endpoint belongs to (for the command line, which has no token).
    fn webhook_company(&mut self, id: i64) -> StoreResult<Option<i64>>;

    // Housekeeping.
    /// Deletes up to `batch` finished (delivered or dead) deliveries created before `before`,
    /// with their attempts, and events no delivery refers to any more. Answers how many rows.
    fn prune(&mut self, before: i64, batch: i64) -> StoreResult<usize>;
    /// Frees blocked deliveries that have no older unfinished one left to wait for (the
    /// finishing path never leaves one behind; this is the safety net). Answers how many.
    fn free_orphaned(&mut self) -> StoreResult<usize>;
    /// Waiting deliveries per endpoint.
    fn backlogs(&mut self) -> StoreResult<Vec<EndpointBacklog>>;
    fn disabled_webhooks(&mut self) -> StoreResult<i64>;
}
