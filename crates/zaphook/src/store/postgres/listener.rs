//! The store's watch on the shared database, on a connection of its own: `LISTEN` for the
//! commits of the other processes, to wake this process's workers within milliseconds, and
//! the database's clock, measured every few seconds, which leases and due times follow so
//! that processes whose clocks drift do not take each other's work. The connection is opened
//! again with backoff when it drops; after a gap every worker is woken once, as a commit
//! announced meanwhile may have been missed (their polling is the fallback in any case).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use fallible_iterator::FallibleIterator;
use postgres::{Client, Config, NoTls};

use super::CHANNEL;
use crate::store::{Announcements, Topic, Topics};

/// How often the database's clock is read again.
const CLOCK_EVERY: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Backend process ids of this process's writer connections: their announcements were made
/// locally already.
pub(super) type OwnSessions = Arc<Mutex<Vec<i32>>>;

pub(super) struct Listener {
    pub config: Config,
    /// Gone when the store is dropped; the thread then ends.
    pub announcements: Weak<Announcements>,
    pub offset: Arc<AtomicI64>,
    pub own: OwnSessions,
}

impl Listener {
    pub fn run(self) {
        let mut backoff = Duration::from_millis(100);
        while self.announcements.strong_count() > 0 {
            match self.config.connect(NoTls) {
                Ok(mut client) => {
                    backoff = Duration::from_millis(100);
                    if let Err(e) = self.listen(&mut client) {
                        tracing::warn!(error = %e, "lost the database connection that listens for commits");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cannot connect to listen for commits"),
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn listen(&self, client: &mut Client) -> Result<(), postgres::Error> {
        client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
        self.measure_clock(client)?;
        let mut measured = Instant::now();
        // Anything announced while this connection was down is found by one look each.
        self.announce(Topics::all());
        loop {
            let Some(announcements) = self.announcements.upgrade() else {
                return Ok(());
            };
            {
                let mut notifications = client.notifications();
                let mut waiting = notifications.timeout_iter(CLOCK_EVERY);
                while let Some(n) = waiting.next()? {
                    if self
                        .own
                        .lock()
                        .is_ok_and(|own| own.contains(&n.process_id()))
                    {
                        continue;
                    }
                    let mut topics = Topics::default();
                    n.payload()
                        .split(',')
                        .filter_map(Topic::parse)
                        .for_each(|t| topics.add(t));
                    announcements.announce(topics);
                    if measured.elapsed() >= CLOCK_EVERY {
                        break;
                    }
                }
            }
            drop(announcements);
            self.measure_clock(client)?;
            measured = Instant::now();
        }
    }

    fn announce(&self, topics: Topics) {
        if let Some(announcements) = self.announcements.upgrade() {
            announcements.announce(topics);
        }
    }

    /// The database's clock against this machine's, read halfway through the round trip.
    fn measure_clock(&self, client: &mut Client) -> Result<(), postgres::Error> {
        let before = crate::clock::system_now_ms();
        let row = client.query_one(
            "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
            &[],
        )?;
        let after = crate::clock::system_now_ms();
        let database: i64 = row.get(0);
        self.offset
            .store(database - (before + after) / 2, Ordering::Relaxed);
        Ok(())
    }
}
