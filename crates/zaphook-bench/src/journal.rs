//! The least a relay must store to never lose a message: each inbound body appended to a
//! SQLite table before it is acknowledged (WAL, `synchronous=FULL`, one commit per batch of
//! whatever waits, as zaphook's writer does), and marked forwarded once its target took it.
//! The durable relay built on it tells how much of the gap to the bare relay durability
//! itself costs on this machine, apart from everything else zaphook does per message.

use std::path::Path;
use std::sync::mpsc;

use bytes::Bytes;
use rusqlite::{Connection, params};
use tokio::sync::oneshot;

enum Job {
    Append(Bytes, oneshot::Sender<Result<i64, String>>),
    Forwarded(i64),
}

/// A handle on the journal's writer thread; the thread ends when every handle is gone.
#[derive(Clone)]
pub struct Journal {
    jobs: mpsc::Sender<Job>,
}

impl Journal {
    /// Creates the journal at `path` and starts its writer thread.
    pub fn open(path: &Path) -> crate::Result<Self> {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE messages (
                 id INTEGER PRIMARY KEY,
                 body BLOB NOT NULL,
                 forwarded INTEGER NOT NULL DEFAULT 0
             );",
        )?;
        let (jobs, inbox) = mpsc::channel();
        std::thread::Builder::new()
            .name("bench-journal".into())
            .spawn(move || write_batches(conn, inbox))?;
        Ok(Journal { jobs })
    }

    /// Appends `body`; answers its id once the commit that holds it is durable.
    pub async fn append(&self, body: Bytes) -> crate::Result<i64> {
        let (done, committed) = oneshot::channel();
        self.jobs
            .send(Job::Append(body, done))
            .map_err(|_| "the journal writer stopped")?;
        Ok(committed.await??)
    }

    /// Marks `id` forwarded, in the next commit.
    pub fn forwarded(&self, id: i64) {
        let _ = self.jobs.send(Job::Forwarded(id));
    }
}

fn write_batches(mut conn: Connection, inbox: mpsc::Receiver<Job>) {
    while let Ok(first) = inbox.recv() {
        let mut batch = vec![first];
        batch.extend(inbox.try_iter());
        let mut appended = Vec::new();
        let written = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            {
                let mut append = tx.prepare_cached("INSERT INTO messages (body) VALUES (?1)")?;
                let mut forwarded =
                    tx.prepare_cached("UPDATE messages SET forwarded = 1 WHERE id = ?1")?;
                for job in batch {
                    match job {
                        Job::Append(body, done) => {
                            append.execute(params![body.as_ref()])?;
                            appended.push((tx.last_insert_rowid(), done));
                        }
                        Job::Forwarded(id) => {
                            forwarded.execute([id])?;
                        }
                    }
                }
            }
            tx.commit()
        })();
        for (id, done) in appended {
            let _ = done.send(written.as_ref().map(|()| id).map_err(|e| e.to_string()));
        }
    }
}
