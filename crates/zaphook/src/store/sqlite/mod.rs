//! The embedded SQLite store: one database file, WAL, `synchronous=FULL` by default. All
//! writes go through one writer thread that drains its queue into a single transaction, so
//! concurrent requests share one fsync (group commit); a failing job rolls back alone. Reads
//! run on a small pool of reader connections, each job in one read transaction (a snapshot).

mod channels;
mod companies;
mod conversations;
mod dashboard;
mod deliveries;
pub mod files;
mod rows;
mod tx;
mod webhooks;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::dashboard::Counts;
use super::{
    Announcements, ReadJob, Store, StoreError, StoreResult, Topics, WriteHealth, WriteJob,
};
use crate::secrets::SecretBox;
use files::DatabaseLock;
use tx::SqliteTx;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../../migrations/sqlite/0001_init.sql")),
    (
        2,
        include_str!("../../../migrations/sqlite/0002_cheaper_delivery_indexes.sql"),
    ),
    (
        3,
        include_str!("../../../migrations/sqlite/0003_cloud_channel.sql"),
    ),
    (
        4,
        include_str!("../../../migrations/sqlite/0004_one_active_ticket.sql"),
    ),
    (
        5,
        include_str!("../../../migrations/sqlite/0005_brazil_ninth_digit.sql"),
    ),
    (
        6,
        include_str!("../../../migrations/sqlite/0006_api_configs.sql"),
    ),
    (
        7,
        include_str!("../../../migrations/sqlite/0007_webhook_filters.sql"),
    ),
    (
        8,
        include_str!("../../../migrations/sqlite/0008_group_participants.sql"),
    ),
    (
        9,
        include_str!("../../../migrations/sqlite/0009_contact_extra_info.sql"),
    ),
    (
        10,
        include_str!("../../../migrations/sqlite/0010_ui_sessions.sql"),
    ),
    (
        11,
        include_str!("../../../migrations/sqlite/0011_api_config_hooks.sql"),
    ),
    (
        12,
        include_str!("../../../migrations/sqlite/0012_delivery_log.sql"),
    ),
    (
        13,
        include_str!("../../../migrations/sqlite/0013_dashboard_reads.sql"),
    ),
    (
        14,
        include_str!("../../../migrations/sqlite/0014_one_endpoint_index.sql"),
    ),
];

/// Most jobs one commit carries; bounds the latency a large burst adds to its first job.
const MAX_BATCH: usize = 512;
/// Reader connections kept open between reads.
const IDLE_READERS: usize = 8;

impl From<rusqlite::Error> for StoreError {
    /// Sorts SQLite's result codes into the kinds callers act on.
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ffi;
        let text = e.to_string();
        let rusqlite::Error::SqliteFailure(failure, _) = &e else {
            return StoreError::Database(text);
        };
        match failure.code {
            rusqlite::ErrorCode::ConstraintViolation
                if matches!(
                    failure.extended_code,
                    ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                ) =>
            {
                StoreError::Conflict(text)
            }
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => {
                StoreError::Retry(text)
            }
            rusqlite::ErrorCode::DiskFull => StoreError::StorageFull(text),
            rusqlite::ErrorCode::SystemIoFailure
            | rusqlite::ErrorCode::CannotOpen
            | rusqlite::ErrorCode::ReadOnly => StoreError::Unavailable(text),
            _ => StoreError::Database(text),
        }
    }
}

/// How durable a commit is: `Full` survives power loss (the default), `Normal` survives a
/// crash of the process only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    Full,
    Normal,
}

pub struct SqliteStore {
    writer: Mutex<Option<mpsc::Sender<Box<dyn WriteJob>>>>,
    readers: Arc<ReaderPool>,
    announcements: Arc<Announcements>,
    health: Arc<WriteHealth>,
    /// Held while the store is open, so `restore` cannot replace the file under it.
    _lock: DatabaseLock,
}

/// Reader connections kept open between reads.
struct ReaderPool {
    idle: Mutex<Vec<Connection>>,
    path: PathBuf,
    secrets: SecretBox,
}

impl ReaderPool {
    fn take(&self) -> StoreResult<Connection> {
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        match pooled {
            Some(conn) => Ok(conn),
            None => open_connection(&self.path, Durability::Full),
        }
    }

    fn give_back(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < IDLE_READERS
        {
            idle.push(conn);
        }
    }
}

fn open_connection(path: &Path, durability: Durability) -> StoreResult<Connection> {
    let conn = Connection::open(path)?;
    // Every statement of the store stays prepared (the default keeps only 16).
    conn.set_prepared_statement_cache_capacity(256);
    // References are checked by the code that writes them (with the company in scope, which a
    // foreign key cannot do) and dependents are deleted with their parent (`delete_webhook`,
    // `prune`); enforcing them again cost a b-tree search per reference on every insert.
    let synchronous = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = {synchronous};
         PRAGMA foreign_keys = OFF;
         PRAGMA busy_timeout = 5000;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -32000;"
    ))?;
    Ok(conn)
}

/// Applies the pending migrations, each in a transaction of its own; answers the version
/// that failed, if one did (its changes rolled back).
fn migrate(conn: &mut Connection) -> Result<(), (i64, StoreError)> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .map_err(|e| (0, e.into()))?;
    for (version, sql) in MIGRATIONS {
        apply_migration(conn, *version, sql).map_err(|e| (*version, e))?;
    }
    Ok(())
}

fn apply_migration(conn: &mut Connection, version: i64, sql: &str) -> StoreResult<()> {
    // Dropped without a commit on any error: the migration's changes are rolled back.
    let tx = conn.transaction()?;
    let applied: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)",
        [version],
        |r| r.get(0),
    )?;
    if !applied {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, strftime('%s','now') * 1000)",
            [version],
        )?;
        tracing::info!(version, "applied migration");
    }
    tx.commit()?;
    Ok(())
}

/// What a file at a database's path holds, before anything is written to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    /// Missing, empty, or a database without tables: a new database.
    New,
    /// Not a SQLite database (SQLite's words why).
    NotADatabase(String),
    /// A SQLite database SQLite finds malformed.
    Damaged(String),
    /// Another application's database: its tables.
    Foreign(Vec<String>),
    /// A zaphook database with a schema newer than this binary knows.
    Newer { schema: i64, known: i64 },
    /// A zaphook database this binary can open.
    Ours,
}

pub fn file_kind(path: &Path) -> StoreResult<FileKind> {
    if std::fs::metadata(path)
        .map(|m| m.len() == 0)
        .unwrap_or(true)
    {
        return Ok(FileKind::New);
    }
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    match read_kind(&conn) {
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) => {
            Ok(FileKind::NotADatabase(e.to_string()))
        }
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseCorrupt) => {
            Ok(FileKind::Damaged(e.to_string()))
        }
        outcome => Ok(outcome?),
    }
}

fn read_kind(conn: &Connection) -> rusqlite::Result<FileKind> {
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if tables.is_empty() {
        return Ok(FileKind::New);
    }
    if !tables.iter().any(|t| t == "schema_migrations") {
        return Ok(FileKind::Foreign(tables));
    }
    let newest: Option<i64> =
        conn.query_row("SELECT max(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })?;
    let known = MIGRATIONS.last().map(|(v, _)| *v).unwrap_or_default();
    Ok(match newest {
        Some(schema) if schema > known => FileKind::Newer { schema, known },
        _ => FileKind::Ours,
    })
}

/// Refuses, before anything is written to it, a database file zaphook must not use: one that
/// is not a SQLite database, another application's database, or a zaphook database with a
/// schema newer than this binary knows (a downgrade).
pub fn check_is_ours(path: &Path) -> StoreResult<()> {
    let shown = path.display();
    match file_kind(path)? {
        FileKind::New | FileKind::Ours => Ok(()),
        FileKind::NotADatabase(why) => Err(StoreError::Refused(format!(
            "{shown} is not a SQLite database ({why}): if it is a zaphook database it is damaged, so put back a backup of it; to start with an empty database, move it away"
        ))),
        FileKind::Damaged(why) => Err(StoreError::Refused(format!(
            "{shown} is damaged ({why}): put back a backup of it (zaphook restore)"
        ))),
        FileKind::Foreign(tables) => Err(StoreError::Refused(format!(
            "{shown} is a SQLite database of another application (tables {}, none of zaphook's): point --data-dir at zaphook's own directory",
            tables.join(", ")
        ))),
        FileKind::Newer { schema, known } => Err(StoreError::Refused(format!(
            "{shown} has schema version {schema}, newer than this zaphook knows ({known}): run the zaphook that wrote it (or a newer one), or put back a backup taken before the upgrade"
        ))),
    }
}

impl SqliteStore {
    /// Opens (creating when needed) the database at `path` and applies pending migrations.
    /// Secrets are sealed and opened with `secrets`.
    pub fn open(path: &Path, durability: Durability, secrets: SecretBox) -> StoreResult<Arc<Self>> {
        let lock = DatabaseLock::shared(path)?;
        check_is_ours(path)?;
        let mut conn = open_connection(path, durability)?;
        // What migrations and sealing rewrite (secrets an older version kept in clear) must
        // not linger in freed space or in the log.
        conn.execute_batch("PRAGMA secure_delete = ON")?;
        migrate(&mut conn).map_err(|(version, e)| {
            StoreError::Refused(format!(
                "{}: migration {version} failed ({e}) and was rolled back, so the database is as it was: the previous zaphook still runs on it; keep the file for a bug report",
                path.display()
            ))
        })?;
        channels::prepare_secrets(&conn, &secrets)?;
        conn.execute_batch("PRAGMA secure_delete = OFF")?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        let (sender, receiver) = mpsc::channel();
        let writer_secrets = secrets.clone();
        let announcements = Arc::new(Announcements::default());
        let writer_announcements = Arc::clone(&announcements);
        let health = Arc::new(WriteHealth::default());
        let writer_health = Arc::clone(&health);
        let path_owned = path.to_path_buf();
        std::thread::Builder::new()
            .name("zaphook-sqlite-writer".into())
            .spawn(move || {
                let shared = (&*writer_announcements, &*writer_health);
                let writer = Writer {
                    conn: Some(conn),
                    path: path_owned,
                    durability,
                };
                writer_loop(writer, writer_secrets, receiver, shared)
            })
            .map_err(|e| StoreError::Database(format!("cannot start the writer thread: {e}")))?;
        Ok(Arc::new(SqliteStore {
            writer: Mutex::new(Some(sender)),
            readers: Arc::new(ReaderPool {
                idle: Mutex::new(Vec::new()),
                path: path.to_path_buf(),
                secrets,
            }),
            announcements,
            health,
            _lock: lock,
        }))
    }
}

impl Store for SqliteStore {
    fn submit_write(&self, job: Box<dyn WriteJob>) {
        let sender = self.writer.lock().ok().and_then(|w| w.clone());
        if let Some(sender) = sender {
            // If the writer is gone the job comes back and is dropped unrun, which drops its
            // reply and fails its caller with `Closed`.
            let _ = sender.send(job);
        }
    }

    fn submit_read(&self, job: ReadJob) {
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || match readers.take() {
            Ok(conn) => {
                // One read transaction for the whole job: all its reads see the same commit,
                // however many the writer makes meanwhile (WAL gives each its snapshot).
                let began = statement(&conn, "BEGIN").is_ok();
                job(Ok(&mut SqliteTx::new(&conn, &readers.secrets)));
                if began && statement(&conn, "COMMIT").is_err() {
                    return;
                }
                readers.give_back(conn);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot open a reader connection");
                job(Err(e));
            }
        });
    }

    fn close(&self) {
        if let Ok(mut writer) = self.writer.lock() {
            writer.take();
        }
    }

    fn announcements(&self) -> Arc<Announcements> {
        Arc::clone(&self.announcements)
    }

    fn write_fault(&self) -> Option<String> {
        self.health.fault()
    }
}

/// The writer thread's connection. After an I/O error from a BEGIN or a COMMIT it is closed
/// and opened again before the next batch: what the failed commit left in its page cache (pages
/// the kernel may also have dropped on a failed fsync) is never built on, and the next commit
/// starts from what is on disk.
struct Writer {
    conn: Option<Connection>,
    path: PathBuf,
    durability: Durability,
}

impl Writer {
    fn connection(&mut self) -> StoreResult<&Connection> {
        if self.conn.is_none() {
            let conn = open_connection(&self.path, self.durability)?;
            // Counted, not logged: the health's two lines already tell the episode.
            metrics::counter!("zaphook_sqlite_writer_reopens_total").increment(1);
            tracing::debug!(path = %self.path.display(), "reopened the database after an I/O error");
            self.conn = Some(conn);
        }
        self.conn.as_ref().ok_or(StoreError::Closed)
    }
}

fn writer_loop(
    mut writer: Writer,
    secrets: SecretBox,
    jobs: mpsc::Receiver<Box<dyn WriteJob>>,
    shared: (&Announcements, &WriteHealth),
) {
    loop {
        // While a storage fault settles, wake up to end it even if no write comes.
        let first = if shared.1.settling() {
            match jobs.recv_timeout(super::QUIET_AFTER_FAULT) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    shared.1.settle();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match jobs.recv() {
                Ok(job) => job,
                Err(_) => break,
            }
        };
        let mut batch = Vec::with_capacity(16);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let conn = match writer.connection() {
            Ok(conn) => conn,
            Err(e) => {
                shared.1.note(&Err(e.clone()));
                batch.into_iter().for_each(|job| job.reply(Err(e.clone())));
                continue;
            }
        };
        if let Err(StoreError::Unavailable(e)) = run_batch(conn, &secrets, batch, shared) {
            tracing::debug!(error = %e, "closing the database connection after an I/O error; the next write opens it again");
            writer.conn = None;
        }
    }
    tracing::debug!("sqlite writer stopped");
}

/// Runs `batch` as one transaction and commits it: group commit, one fsync for all. Jobs run
/// without savepoints (one per job made SQLite copy every page a job touched a second time).
/// A job that fails without having changed a row is simply answered. When one fails after
/// changing rows, the transaction is rolled back, and the jobs before it and the jobs after it
/// (which may have seen its writes) run again without it; each round leaves out one job.
fn run_batch(
    conn: &Connection,
    secrets: &SecretBox,
    mut batch: Vec<Box<dyn WriteJob>>,
    (announcements, health): (&Announcements, &WriteHealth),
) -> StoreResult<()> {
    while !batch.is_empty() {
        if let Err(e) = statement(conn, "BEGIN IMMEDIATE") {
            let e = StoreError::from(e);
            health.note(&Err(e.clone()));
            if !e.is_transient() {
                tracing::error!(error = %e, "cannot begin a write transaction");
            }
            batch.into_iter().for_each(|job| job.reply(Err(e.clone())));
            return Err(e);
        }
        let mut kept = Vec::with_capacity(batch.len());
        let mut jobs = batch.into_iter();
        let mut undone = false;
        let mut topics = Topics::default();
        let mut counts = Counts::default();
        while let Some(mut job) = jobs.next() {
            let before = conn.total_changes();
            let mut tx = SqliteTx::new(conn, secrets);
            let outcome = catch_unwind(AssertUnwindSafe(|| job.run(&mut tx)));
            let changed = conn.total_changes() != before;
            match outcome {
                Ok(true) => {
                    topics.extend(tx.topics);
                    counts.extend(tx.counts);
                    kept.push(job);
                    continue;
                }
                Ok(false) => job.reply(Ok(())),
                // Dropped unanswered: its caller gets `Closed`.
                Err(_) => tracing::error!("a write job panicked; its changes are rolled back"),
            }
            if changed {
                undone = true;
                kept.extend(jobs);
                break;
            }
        }
        if undone {
            if let Err(e) = statement(conn, "ROLLBACK") {
                tracing::error!(error = %e, "cannot roll back a write transaction");
            }
            batch = kept;
            continue;
        }
        let committed = dashboard::write_counts(conn, &counts)
            .and_then(|()| statement(conn, "COMMIT"))
            .map_err(StoreError::from);
        health.note(&committed);
        match &committed {
            Ok(()) => announcements.announce(topics),
            Err(e) => {
                if !e.is_transient() {
                    tracing::error!(error = %e, "commit failed");
                }
                let _ = conn.execute_batch("ROLLBACK");
            }
        }
        for job in kept {
            job.reply(committed.clone());
        }
        return committed;
    }
    Ok(())
}

fn statement(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::ffi;

    fn failure(extended: i32) -> StoreError {
        StoreError::from(rusqlite::Error::SqliteFailure(
            ffi::Error::new(extended),
            None,
        ))
    }

    #[test]
    fn sqlite_errors_keep_their_kind() {
        assert!(matches!(
            failure(ffi::SQLITE_CONSTRAINT_UNIQUE),
            StoreError::Conflict(_)
        ));
        assert!(matches!(
            failure(ffi::SQLITE_CONSTRAINT_PRIMARYKEY),
            StoreError::Conflict(_)
        ));
        assert!(matches!(
            failure(ffi::SQLITE_CONSTRAINT_NOTNULL),
            StoreError::Database(_)
        ));
        assert!(matches!(failure(ffi::SQLITE_BUSY), StoreError::Retry(_)));
        assert!(matches!(failure(ffi::SQLITE_LOCKED), StoreError::Retry(_)));
        assert!(matches!(
            failure(ffi::SQLITE_FULL),
            StoreError::StorageFull(_)
        ));
        assert!(matches!(
            failure(ffi::SQLITE_IOERR_FSYNC),
            StoreError::Unavailable(_)
        ));
        assert!(failure(ffi::SQLITE_BUSY).is_transient());
        assert!(!failure(ffi::SQLITE_CONSTRAINT_UNIQUE).is_transient());
        assert!(matches!(
            StoreError::from(rusqlite::Error::QueryReturnedNoRows),
            StoreError::Database(_)
        ));
    }
}
