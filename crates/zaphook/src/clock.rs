//! The source of "now" for everything that stores or schedules by time. The system clock in
//! production; in tests a clock that follows tokio's (pausable) time, so retry schedules are
//! tested by advancing time instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone)]
pub enum Clock {
    System,
    /// The system clock moved by the offset the store measures against a shared database's
    /// clock, so that every process on it reads the same time.
    Offset(Arc<AtomicI64>),
    /// Wall time at `base`, moved forward as tokio's clock moves.
    Tokio {
        base_ms: i64,
        base: tokio::time::Instant,
    },
}

pub(crate) fn system_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl Clock {
    /// A clock that starts at the current wall time and follows tokio's clock.
    pub fn following_tokio() -> Self {
        Clock::Tokio {
            base_ms: system_now_ms(),
            base: tokio::time::Instant::now(),
        }
    }

    /// Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => system_now_ms(),
            Clock::Offset(offset) => system_now_ms() + offset.load(Ordering::Relaxed),
            Clock::Tokio { base_ms, base } => base_ms + base.elapsed().as_millis() as i64,
        }
    }

    /// The tokio instant at which this clock reads `at_ms`.
    pub fn instant_at(&self, at_ms: i64) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        let ahead = at_ms.saturating_sub(self.now_ms()).max(0) as u64;
        now + std::time::Duration::from_millis(ahead)
    }
}
