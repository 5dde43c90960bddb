//! The source of "now" for everything that stores or schedules by time: the system clock, or
//! the system clock moved by an offset. On a shared database the store keeps the offset to the
//! database's clock; tests move it to follow a retry schedule of days in milliseconds. (Tokio's
//! paused time does not fit here: the store works on threads of its own and requests cross
//! real sockets, and a paused clock jumps ahead whenever the runtime waits on either.)

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone)]
pub enum Clock {
    System,
    /// The system clock moved by an offset in milliseconds: the one the store measures
    /// against a shared database's clock (so that every process on it reads the same time),
    /// or one a test moves.
    Offset(Arc<AtomicI64>),
}

pub(crate) fn system_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl Clock {
    /// Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => system_now_ms(),
            Clock::Offset(offset) => system_now_ms() + offset.load(Ordering::Relaxed),
        }
    }

    /// The tokio instant at which this clock reads `at_ms`.
    pub fn instant_at(&self, at_ms: i64) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        let ahead = at_ms.saturating_sub(self.now_ms()).max(0) as u64;
        now + std::time::Duration::from_millis(ahead)
    }
}
