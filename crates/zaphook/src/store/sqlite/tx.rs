//! The transaction every SQLite repository operation runs in: a connection (the writer's,
//! inside its group commit, or a reader's, inside a read transaction) and the secret box.
//! Each subject's SQL is in its own file; statements are cached per connection.

use rusqlite::Connection;

use crate::secrets::SecretBox;
use crate::store::dashboard::Counts;
use crate::store::{Handoffs, Topic, Topics};

pub struct SqliteTx<'c> {
    pub(super) conn: &'c Connection,
    pub(super) secrets: &'c SecretBox,
    pub(super) handoffs: Option<Handoffs>,
    /// What the job's writes made ready, announced once they commit.
    pub(super) topics: Topics,
    /// The attempts the job recorded, counted into the batch's counters if the job is kept.
    pub(super) counts: Counts,
}

impl<'c> SqliteTx<'c> {
    pub fn new(conn: &'c Connection, secrets: &'c SecretBox) -> Self {
        SqliteTx {
            conn,
            secrets,
            handoffs: None,
            topics: Topics::default(),
            counts: Counts::default(),
        }
    }

    pub(super) fn announce_if(&mut self, condition: bool, topic: Topic) {
        if condition {
            self.topics.add(topic);
        }
    }
}
