//! The store's operations for the channels: Cloud API connection settings (secrets opened
//! here, sealed at rest), the inbox of verified callbacks, outbound send jobs, inbound media
//! downloads and the stored media. Every job table is claimed under a lease token: a worker
//! finishes or reschedules a job only while the lease it took is still the job's.

use crate::domain::{CloudConfig, Connection};

use super::StoreResult;

/// A verified callback body waiting to be read.
#[derive(Debug, Clone)]
pub struct InboxItem {
    pub id: i64,
    pub company_id: i64,
    pub connection_id: i64,
    pub body: Vec<u8>,
    /// Claims so far, this one included.
    pub attempts: i64,
    pub received_at: i64,
}

/// What a send job sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendKind {
    /// The message itself.
    Message,
    /// A reaction of ours to the message (the emoji in the request).
    Reaction,
}

impl SendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SendKind::Message => "message",
            SendKind::Reaction => "reaction",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "message" => Some(SendKind::Message),
            "reaction" => Some(SendKind::Reaction),
            _ => None,
        }
    }
}

/// An outbound send waiting for its channel.
#[derive(Debug, Clone)]
pub struct SendJob {
    pub id: String,
    pub message_id: String,
    pub company_id: i64,
    pub connection_id: i64,
    pub kind: SendKind,
    /// What to send beyond the message's own fields (template, file name, emoji), as JSON.
    pub request: Option<String>,
    /// Claims so far, this one included.
    pub attempts: i64,
    /// The lease token of the claim.
    pub lease: i64,
}

/// An inbound media file to download.
#[derive(Debug, Clone)]
pub struct MediaJob {
    pub message_id: String,
    pub company_id: i64,
    pub connection_id: i64,
    pub media_id: String,
    /// Base64 SHA-256 the channel announced.
    pub sha256: Option<String>,
    pub mime_type: Option<String>,
    /// Claims so far, this one included.
    pub attempts: i64,
    pub lease: i64,
}

/// A stored media file, served at `/media/{key}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMedia {
    /// Unguessable: whoever has it may read the file.
    pub key: String,
    pub company_id: i64,
    /// Lowercase hex SHA-256: the file's name under the media directory.
    pub sha256: String,
    pub mime_type: Option<String>,
    pub size: i64,
    pub file_name: Option<String>,
    pub created_at: i64,
}

/// A claim of jobs: at `now`, held until `lease_until` under the token `lease`.
#[derive(Debug, Clone, Copy)]
pub struct Claim {
    pub now: i64,
    pub lease_until: i64,
    pub lease: i64,
    pub limit: i64,
}

pub trait ChannelTx {
    // Cloud API connections.
    /// A cloud connection's company and settings with its secrets opened, whatever the
    /// company (callbacks carry no token; Meta's signature names the connection).
    fn cloud_config(&mut self, connection_id: i64) -> StoreResult<Option<(i64, CloudConfig)>>;
    /// Changes a connection's name and, for a cloud connection, its settings; a new access
    /// token (`new_token`) clears the refused-token state.
    fn update_connection(
        &mut self,
        company_id: i64,
        id: i64,
        name: &str,
        cloud: Option<&CloudConfig>,
        new_token: bool,
    ) -> StoreResult<bool>;
    /// The company's cloud connection of a Cloud API phone number id.
    fn connection_by_phone_number_id(
        &mut self,
        company_id: i64,
        phone_number_id: &str,
    ) -> StoreResult<Option<Connection>>;
    /// The outcome of a send on a connection: `None` clears the last error. A refused token
    /// stays flagged until the connection's token is updated.
    fn record_send_outcome(
        &mut self,
        connection_id: i64,
        now: i64,
        error: Option<&str>,
        token_refused: bool,
    ) -> StoreResult<()>;

    /// Marks a cloud connection's access token refused by Meta since `at`, or (`None`) no
    /// longer refused; answers whether that changed the connection's state (of several
    /// writers making the same change, one is told it did).
    fn set_token_refused(&mut self, connection_id: i64, at: Option<i64>) -> StoreResult<bool>;

    // The inbox of verified callbacks.
    /// Keeps a verified body, due at once, and notes the callback on the connection.
    fn insert_inbox(
        &mut self,
        company_id: i64,
        connection_id: i64,
        body: &[u8],
        now: i64,
    ) -> StoreResult<i64>;
    fn claim_inbox(&mut self, claim: Claim) -> StoreResult<Vec<InboxItem>>;
    /// Marks a body processed (with why it could not be read, if so), if the lease is ours.
    fn finish_inbox(
        &mut self,
        id: i64,
        lease: i64,
        now: i64,
        error: Option<&str>,
    ) -> StoreResult<bool>;
    fn next_inbox_due(&mut self) -> StoreResult<Option<i64>>;
    /// Whether a body of the connection received before body `id` is still to be read.
    fn inbox_waiting_before(&mut self, connection_id: i64, id: i64) -> StoreResult<bool>;
    /// Deletes up to `batch` processed bodies older than `before`; answers how many.
    fn prune_inbox(&mut self, before: i64, batch: i64) -> StoreResult<usize>;

    // Outbound send jobs.
    fn insert_send_job(&mut self, job: &SendJob, due: i64) -> StoreResult<()>;
    /// Leases due send jobs, none of the connections in `busy` (their jobs go in order, one
    /// at a time).
    fn claim_send_jobs(&mut self, claim: Claim, busy: &[i64]) -> StoreResult<Vec<SendJob>>;
    /// Removes a job that is done (sent, or failed for good), if the lease is ours.
    fn finish_send_job(&mut self, id: &str, lease: i64) -> StoreResult<bool>;
    /// Makes a job due again at `due`, if the lease is ours.
    fn retry_send_job(&mut self, id: &str, lease: i64, due: i64) -> StoreResult<bool>;
    /// Gives a job back untried, due at `due`: its claim does not count as an attempt.
    fn release_send_job(&mut self, id: &str, lease: i64, due: i64) -> StoreResult<bool>;
    fn next_send_job_due(&mut self) -> StoreResult<Option<i64>>;

    // Inbound media.
    fn insert_media_job(&mut self, job: &MediaJob, due: i64) -> StoreResult<()>;
    fn claim_media_jobs(&mut self, claim: Claim) -> StoreResult<Vec<MediaJob>>;
    fn finish_media_job(&mut self, message_id: &str, lease: i64) -> StoreResult<bool>;
    fn retry_media_job(
        &mut self,
        message_id: &str,
        lease: i64,
        due: i64,
        error: &str,
    ) -> StoreResult<bool>;
    fn next_media_job_due(&mut self) -> StoreResult<Option<i64>>;
    fn insert_media(&mut self, media: &StoredMedia) -> StoreResult<()>;
    fn media(&mut self, key: &str) -> StoreResult<Option<StoredMedia>>;
}
