//! zaphook-bench: measures how fast zaphook turns inbound messages into delivered webhooks,
//! beside a bare relay doing "HTTP in, HTTP out" on the same machine in the same run.

pub mod backup;
pub mod cloud;
pub mod journal;
pub mod load;
pub mod log_page;
pub mod pass;
pub mod receiver;
pub mod relay;
pub mod report;
pub mod scenarios;
pub mod server;
pub mod soak;

use std::sync::OnceLock;
use std::time::Instant;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

/// The sandbox inbound route of connection `id` (the relay answers it for any id).
pub fn inbound_path(connection_id: i64) -> String {
    format!("/api/v1/connections/{connection_id}/sandbox/inbound")
}

/// Microseconds since the first call in this process: the one clock every send, answer and
/// arrival is stamped with, so they compare directly.
pub fn now_us() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}
