//! The PostgreSQL store, for several zaphook processes sharing one database. Writes go
//! through a few writer threads per process, each draining the shared queue into one
//! transaction (group commit: concurrent requests share a commit and its WAL flush). Jobs run
//! under READ COMMITTED; what they read and then write is made safe by unique keys
//! (`ON CONFLICT`), `FOR UPDATE SKIP LOCKED` claims and per-pair transaction locks, and a job
//! that loses a race (a unique violation, a deadlock, a serialization failure) is run again.
//! Reads run on reader threads, each job in one read-only snapshot. A lost connection is
//! opened again on the next job; until then jobs fail as `Unavailable` (a 503 for the API).

mod batch;
mod channels;
mod companies;
mod conversations;
mod dashboard;
mod deliveries;
mod listener;
mod rows;
mod tx;
mod webhooks;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::str::FromStr;
use std::sync::atomic::AtomicI64;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postgres::error::SqlState;
use postgres::{Client, Config, NoTls};

use super::dashboard::Counts;
use super::{Announcements, ReadJob, Store, StoreError, StoreResult, Topic, Topics, WriteJob};
use crate::secrets::SecretBox;
use listener::{Listener, OwnSessions};
use tx::{PgConn, PgTx};

const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        include_str!("../../../migrations/postgres/0002_brazil_ninth_digit.sql"),
    ),
    (
        3,
        include_str!("../../../migrations/postgres/0003_api_configs.sql"),
    ),
    (
        4,
        include_str!("../../../migrations/postgres/0004_webhook_filters.sql"),
    ),
    (
        5,
        include_str!("../../../migrations/postgres/0005_group_participants.sql"),
    ),
    (
        6,
        include_str!("../../../migrations/postgres/0006_contact_extra_info.sql"),
    ),
    (
        7,
        include_str!("../../../migrations/postgres/0007_ui_sessions.sql"),
    ),
    (
        8,
        include_str!("../../../migrations/postgres/0008_api_config_hooks.sql"),
    ),
    (
        9,
        include_str!("../../../migrations/postgres/0009_delivery_log.sql"),
    ),
    (
        10,
        include_str!("../../../migrations/postgres/0010_dashboard_reads.sql"),
    ),
    (
        11,
        include_str!("../../../migrations/postgres/0011_insert_delivery.sql"),
    ),
    (
        12,
        include_str!("../../../migrations/postgres/0012_one_endpoint_index.sql"),
    ),
    (
        13,
        include_str!("../../../migrations/postgres/0013_insert_deliveries.sql"),
    ),
];

/// Most jobs one commit carries.
const MAX_BATCH: usize = 256;
/// Times a job that lost a race (a unique key taken meanwhile, a deadlock, a serialization
/// failure) is run again before its error is answered.
const MAX_RERUNS: u32 = 4;
/// After a failed connection attempt, jobs fail at once for this long instead of each waiting
/// for a connect timeout.
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);
/// The advisory lock (in the two-key space) held while migrating, so nodes starting together
/// migrate one at a time.
const MIGRATION_LOCK: (i32, i32) = (0x7a68, 1);

impl From<postgres::Error> for StoreError {
    /// Sorts PostgreSQL's errors into the kinds callers act on.
    fn from(e: postgres::Error) -> Self {
        let text = match e.as_db_error() {
            Some(db) => db.message().to_string(),
            None => e.to_string(),
        };
        let Some(code) = e.code() else {
            // No SQLSTATE: the connection failed or was closed.
            return StoreError::Unavailable(text);
        };
        if *code == SqlState::DISK_FULL {
            StoreError::StorageFull(text)
        } else if *code == SqlState::UNIQUE_VIOLATION {
            StoreError::Conflict(text)
        } else if *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::LOCK_NOT_AVAILABLE
        {
            StoreError::Retry(text)
        } else if code.code().starts_with("22") {
            // Data exceptions: a value the column's type cannot hold.
            StoreError::Invalid(text)
        } else if code.code().starts_with("08")
            || code.code().starts_with("53")
            || code.code().starts_with("57P")
            || *code == SqlState::READ_ONLY_SQL_TRANSACTION
        {
            // Connection exceptions, insufficient resources (disk full, too many connections),
            // an administrator's shutdown or a server starting up, a standby after failover.
            StoreError::Unavailable(text)
        } else {
            StoreError::Database(text)
        }
    }
}

/// How many connections one process opens.
#[derive(Debug, Clone, Copy)]
pub struct PoolSize {
    pub writers: usize,
    pub readers: usize,
}

impl PoolSize {
    /// Splits `connections` between writers and readers (at least one each).
    pub fn of(connections: usize) -> Self {
        let writers = (connections / 2).max(1);
        PoolSize {
            writers,
            readers: connections.saturating_sub(writers).max(1),
        }
    }
}

pub struct PgStore {
    writes: Mutex<Option<mpsc::Sender<Box<dyn WriteJob>>>>,
    reads: Mutex<mpsc::Sender<ReadJob>>,
    announcements: Arc<Announcements>,
    clock_offset: Arc<AtomicI64>,
}

/// The channel commits are announced on, to every process on the database.
pub(super) const CHANNEL: &str = "zaphook_commits";

/// Opens connections on demand, pausing after a failure.
struct Connector {
    config: Config,
    failed_at: Option<Instant>,
    /// For a writer: where its session's process id is kept, and the current one.
    own: Option<(OwnSessions, Option<i32>)>,
}

impl Connector {
    fn new(config: &Config, own: Option<&OwnSessions>) -> Self {
        Connector {
            config: config.clone(),
            failed_at: None,
            own: own.map(|own| (Arc::clone(own), None)),
        }
    }

    /// Notes the backend process of a writer's new session.
    fn note_session(&mut self, client: &mut Client) -> StoreResult<()> {
        if let Some((own, current)) = &mut self.own {
            let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[])?.get(0);
            if let Ok(mut own) = own.lock() {
                own.retain(|p| Some(*p) != *current);
                own.push(pid);
            }
            *current = Some(pid);
        }
        Ok(())
    }

    fn connect(&mut self) -> StoreResult<PgConn> {
        if let Some(at) = self.failed_at
            && at.elapsed() < RECONNECT_PAUSE
        {
            return Err(StoreError::Unavailable(
                "the database cannot be reached".into(),
            ));
        }
        match self.config.connect(NoTls) {
            Ok(mut client) => {
                self.note_session(&mut client)?;
                if self.failed_at.take().is_some() {
                    tracing::info!("connected to the database again");
                }
                Ok(PgConn::new(client))
            }
            Err(e) => {
                if self.failed_at.is_none() {
                    tracing::warn!(error = %e, "cannot connect to the database");
                }
                self.failed_at = Some(Instant::now());
                Err(StoreError::from(e))
            }
        }
    }

    /// `slot`'s connection, opened again if it was lost.
    fn ensure<'s>(&mut self, slot: &'s mut Option<PgConn>) -> StoreResult<&'s mut PgConn> {
        if slot.as_ref().is_some_and(|c| c.client.is_closed()) {
            *slot = None;
        }
        if slot.is_none() {
            *slot = Some(self.connect()?);
        }
        slot.as_mut()
            .ok_or_else(|| StoreError::Unavailable("no connection".into()))
    }
}

/// Parses a `postgres://` URL, with zaphook's defaults for what it leaves unset.
fn config(url: &str) -> StoreResult<Config> {
    let mut config =
        Config::from_str(url).map_err(|e| StoreError::Database(format!("--database-url: {e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    if config.get_application_name().is_none() {
        config.application_name("zaphook");
    }
    config.keepalives_idle(Duration::from_secs(30));
    Ok(config)
}

fn migrate(client: &mut Client) -> StoreResult<()> {
    let (a, b) = MIGRATION_LOCK;
    client.execute("SELECT pg_advisory_lock($1, $2)", &[&a, &b])?;
    let migrated = apply_migrations(client);
    // The lock ends with the session anyway; unlocking lets the next node go at once.
    let _ = client.execute("SELECT pg_advisory_unlock($1, $2)", &[&a, &b]);
    migrated
}

fn apply_migrations(client: &mut Client) -> StoreResult<()> {
    client.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )?;
    let newest: Option<i64> = client
        .query_one("SELECT max(version) FROM schema_migrations", &[])?
        .get(0);
    let known = MIGRATIONS.last().map(|(v, _)| *v).unwrap_or_default();
    if let Some(newest) = newest.filter(|&v| v > known) {
        return Err(StoreError::Database(format!(
            "the database's schema (version {newest}) is newer than this zaphook knows (version {known}): run the newer zaphook, or restore a backup taken before the upgrade"
        )));
    }
    for (version, sql) in MIGRATIONS {
        let mut tx = client.transaction()?;
        let applied: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)",
                &[version],
            )?
            .get(0);
        if !applied {
            tx.batch_execute(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at)
                 VALUES ($1, (extract(epoch from now()) * 1000)::bigint)",
                &[version],
            )?;
            tracing::info!(version, "applied migration");
        }
        tx.commit()?;
    }
    Ok(())
}

impl PgStore {
    /// Connects to the database at `url`, applies pending migrations and starts the store's
    /// threads. Secrets are sealed and opened with `secrets`.
    pub fn open(url: &str, pool: PoolSize, secrets: SecretBox) -> StoreResult<Arc<Self>> {
        let config = config(url)?;
        // The blocking client runs a runtime of its own, which cannot start on a thread that
        // drives async tasks (as the caller's may): the first connection is made on a thread
        // of the store's.
        let conn = std::thread::scope(|scope| {
            scope
                .spawn(|| -> StoreResult<PgConn> {
                    let mut client = config.connect(NoTls)?;
                    migrate(&mut client)?;
                    let mut conn = PgConn::new(client);
                    channels::prepare_secrets(&mut PgTx::new(&mut conn, &secrets))?;
                    Ok(conn)
                })
                .join()
                .unwrap_or_else(|_| {
                    Err(StoreError::Database("opening the database panicked".into()))
                })
        })?;
        let (write_sender, write_jobs) = mpsc::channel::<Box<dyn WriteJob>>();
        let write_jobs = Arc::new(Mutex::new(write_jobs));
        let announcements = Arc::new(Announcements::default());
        let own = OwnSessions::default();
        let mut first = Some(conn);
        for i in 0..pool.writers {
            let (jobs, secrets) = (Arc::clone(&write_jobs), secrets.clone());
            let announcements = Arc::clone(&announcements);
            let mut connector = Connector::new(&config, Some(&own));
            let mut conn = first.take();
            spawn(format!("zaphook-pg-writer-{i}"), move || {
                if let Some(c) = &mut conn
                    && connector.note_session(&mut c.client).is_err()
                {
                    conn = None;
                }
                writer_loop(conn, &mut connector, &secrets, &jobs, &announcements)
            })?;
        }
        let (read_sender, read_jobs) = mpsc::channel::<ReadJob>();
        let read_jobs = Arc::new(Mutex::new(read_jobs));
        for i in 0..pool.readers {
            let (jobs, secrets) = (Arc::clone(&read_jobs), secrets.clone());
            let mut connector = Connector::new(&config, None);
            spawn(format!("zaphook-pg-reader-{i}"), move || {
                reader_loop(&mut connector, &secrets, &jobs)
            })?;
        }
        let clock_offset = Arc::new(AtomicI64::new(0));
        let listener = Listener {
            config,
            announcements: Arc::downgrade(&announcements),
            offset: Arc::clone(&clock_offset),
            own,
        };
        spawn("zaphook-pg-listener".into(), move || listener.run())?;
        Ok(Arc::new(PgStore {
            writes: Mutex::new(Some(write_sender)),
            reads: Mutex::new(read_sender),
            announcements,
            clock_offset,
        }))
    }
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> StoreResult<()> {
    std::thread::Builder::new()
        .name(name)
        .spawn(f)
        .map(|_| ())
        .map_err(|e| StoreError::Database(format!("cannot start a store thread: {e}")))
}

impl Store for PgStore {
    fn submit_write(&self, job: Box<dyn WriteJob>) {
        let sender = self.writes.lock().ok().and_then(|w| w.clone());
        if let Some(sender) = sender {
            // A job sent after the writers stopped is dropped unrun: its caller gets `Closed`.
            let _ = sender.send(job);
        }
    }

    fn submit_read(&self, job: ReadJob) {
        if let Ok(sender) = self.reads.lock() {
            let _ = sender.send(job);
        }
    }
    fn close(&self) {
        if let Ok(mut writes) = self.writes.lock() {
            writes.take();
        }
    }

    fn announcements(&self) -> Arc<Announcements> {
        Arc::clone(&self.announcements)
    }

    fn clock_offset(&self) -> Option<Arc<AtomicI64>> {
        Some(Arc::clone(&self.clock_offset))
    }
}

/// The next batch of a shared queue: one job, waited for, and what else is queued.
fn next_batch<T>(jobs: &Mutex<mpsc::Receiver<T>>, most: usize) -> Option<Vec<T>> {
    let jobs = jobs.lock().ok()?;
    let first = jobs.recv().ok()?;
    let mut batch = vec![first];
    while batch.len() < most {
        match jobs.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    Some(batch)
}

fn writer_loop(
    mut conn: Option<PgConn>,
    connector: &mut Connector,
    secrets: &SecretBox,
    jobs: &Mutex<mpsc::Receiver<Box<dyn WriteJob>>>,
    announcements: &Announcements,
) {
    while let Some(batch) = next_batch(jobs, MAX_BATCH) {
        match connector.ensure(&mut conn) {
            Ok(c) => {
                let batch = batch.into_iter().map(|j| (j, 0)).collect();
                if let Some(topics) = run_batch(c, secrets, batch) {
                    announcements.announce(topics);
                }
            }
            Err(e) => batch.into_iter().for_each(|job| job.reply(Err(e.clone()))),
        }
    }
    tracing::debug!("postgres writer stopped");
}

/// A job and the times it has run again.
type Rerun = (Box<dyn WriteJob>, u32);

/// Runs `batch` as one transaction and commits it; then, each in a transaction of its own,
/// the jobs that were chosen as a deadlock's victim (or failed to serialize). Run again with
/// the same batch, such a job would take the same locks in the same order as before and could
/// meet the same cycle; alone it holds only its own. Answers what the commits announced.
fn run_batch(conn: &mut PgConn, secrets: &SecretBox, batch: Vec<Rerun>) -> Option<Topics> {
    let mut alone = Vec::new();
    let mut announced = run_together(conn, secrets, batch, &mut alone);
    for job in alone {
        if let Some(topics) = run_batch(conn, secrets, vec![job]) {
            announced.get_or_insert_with(Topics::default).extend(topics);
        }
    }
    announced
}

/// Runs `batch` as one transaction and commits it. A job that fails without having written
/// is simply answered. When one fails after writing, or hits a database error (which aborts
/// the transaction), the transaction is rolled back and the others run again without it; a
/// job that lost a race runs again, up to [`MAX_RERUNS`] times: with the others when a unique
/// key was taken meanwhile (it will see the winner's row), in `alone` after them when it lost
/// to a deadlock or a serialization failure. Answers what the commit announced, if it
/// committed.
fn run_together(
    conn: &mut PgConn,
    secrets: &SecretBox,
    mut batch: Vec<Rerun>,
    alone: &mut Vec<Rerun>,
) -> Option<Topics> {
    // Cleared when what was held or read ahead failed: the batch then runs again with every
    // write and lookup at once, so that a failure is its own job's.
    let mut in_sets = true;
    while !batch.is_empty() {
        // A batch does not wait long for a lock: a transaction of many jobs that waits on
        // another's rows may be one side of a deadlock, which PostgreSQL would take a second
        // to find. It gives up instead, and the job that waited runs again alone, where it
        // waits as long as it needs.
        let begin = if batch.len() > 1 {
            "BEGIN; SET LOCAL lock_timeout = '100ms'"
        } else {
            "BEGIN"
        };
        if let Err(e) = conn.begin(begin) {
            let e = StoreError::from(e);
            tracing::error!(error = %e, "cannot begin a write transaction");
            batch
                .into_iter()
                .for_each(|(job, _)| job.reply(Err(e.clone())));
            return None;
        }
        let batch_len = batch.len();
        if in_sets && batch_len > 1 {
            let lookups = batch.iter().filter_map(|(job, _)| job.lookups());
            match conn.read_ahead(lookups) {
                Ok(()) => conn.hold = true,
                Err(e) => {
                    tracing::debug!(error = %e, "reading a batch's lookups ahead failed");
                    in_sets = false;
                    if rollback(conn, &mut batch) {
                        continue;
                    }
                    return None;
                }
            }
        }
        let mut kept = Vec::with_capacity(batch_len);
        let mut topics = Topics::default();
        let mut counts = Counts::default();
        let mut jobs = batch.into_iter();
        let mut undone = false;
        while let Some((mut job, reruns)) = jobs.next() {
            let mut tx = PgTx::new(conn, secrets);
            let outcome = catch_unwind(AssertUnwindSafe(|| job.run(&mut tx)));
            let (wrote, raced) = (tx.wrote, tx.raced);
            let (failed, job_topics, job_counts) = (tx.failed.take(), tx.topics, tx.counts);
            if let Some(e) = conn.held_failed.take() {
                let all = kept.into_iter().chain(std::iter::once((job, reruns)));
                if matches!(e, StoreError::Unavailable(_)) {
                    tracing::warn!(error = %e, "lost the database connection in a write");
                    all.chain(jobs)
                        .for_each(|(job, _)| job.reply(Err(e.clone())));
                    return None;
                }
                tracing::debug!(error = %e, "a batch's held writes failed; it runs again");
                in_sets = false;
                kept = all.chain(jobs).collect();
                undone = true;
                break;
            }
            match (outcome, failed) {
                (Ok(true), None) => {
                    topics.extend(job_topics);
                    counts.extend(job_counts);
                    kept.push((job, reruns));
                    continue;
                }
                (Ok(false), None) if !wrote => {
                    job.reply(Ok(()));
                    continue;
                }
                // Another transaction took a key first: run again, it sees the winner's row.
                (Ok(false), None) if raced && reruns < MAX_RERUNS => {
                    kept.push((job, reruns + 1));
                }
                (Ok(false), None) => job.reply(Ok(())),
                (Ok(keep), Some(e)) => {
                    if matches!(e, StoreError::Unavailable(_)) {
                        // The connection is gone: nothing of this transaction was committed.
                        tracing::warn!(error = %e, "lost the database connection in a write");
                        let all = kept.into_iter().chain(std::iter::once((job, reruns)));
                        all.chain(jobs)
                            .for_each(|(job, _)| job.reply(Err(e.clone())));
                        return None;
                    }
                    let again = reruns < MAX_RERUNS;
                    if again && matches!(e, StoreError::Retry(_)) && batch_len > 1 {
                        // A deadlock's victim, a lock not had in time, a serialization failure.
                        alone.push((job, reruns + 1));
                    } else if again && matches!(e, StoreError::Retry(_) | StoreError::Conflict(_)) {
                        kept.push((job, reruns + 1));
                    } else if keep {
                        // The job went on after a failed statement: its writes are not whole.
                        job.reply(Err(e));
                    } else {
                        job.reply(Ok(()));
                    }
                }
                // Dropped unanswered: its caller gets `Closed`.
                (Err(_), _) => tracing::error!("a write job panicked; its changes are rolled back"),
            }
            undone = true;
            kept.extend(jobs);
            break;
        }
        if undone {
            batch = kept;
            if rollback(conn, &mut batch) {
                continue;
            }
            return None;
        }
        if let Err(e) = conn.write_held() {
            conn.held_failed = None;
            if matches!(e, StoreError::Unavailable(_)) {
                tracing::warn!(error = %e, "lost the database connection in a write");
                kept.into_iter()
                    .for_each(|(job, _)| job.reply(Err(e.clone())));
                return None;
            }
            tracing::debug!(error = %e, "a batch's held writes failed; it runs again");
            in_sets = false;
            batch = kept;
            if rollback(conn, &mut batch) {
                continue;
            }
            return None;
        }
        topics.extend(conn.held_topics);
        if let Err(e) = dashboard::write_counts(conn, &counts) {
            let e = StoreError::from(e);
            tracing::error!(error = %e, "cannot count a batch's attempts");
            let _ = conn.client.batch_execute("ROLLBACK");
            kept.into_iter()
                .for_each(|(job, _)| job.reply(Err(e.clone())));
            return None;
        }
        // The notification reaches the other processes when (and only if) the transaction
        // commits; sent with the COMMIT, it costs no round trip of its own. The payload is
        // topic names, fixed words, so it can be written into the statement.
        let commit = if topics.is_empty() {
            "COMMIT".to_string()
        } else {
            let names: Vec<&str> = topics.iter().map(Topic::as_str).collect();
            format!(
                "SELECT pg_notify('{CHANNEL}', '{}'); COMMIT",
                names.join(",")
            )
        };
        let committed = conn.client.batch_execute(&commit).map_err(StoreError::from);
        if let Err(e) = &committed {
            tracing::error!(error = %e, "commit failed");
            // A failed notification leaves the transaction open and aborted: end it, so the
            // connection's next batch starts clean.
            let _ = conn.client.batch_execute("ROLLBACK");
        }
        let announced = committed.is_ok().then_some(topics);
        for (job, _) in kept {
            job.reply(committed.clone());
        }
        return announced;
    }
    None
}

/// Rolls the write transaction back, for `batch` to run again; when it cannot, answers the
/// batch's jobs with why and answers `false`.
fn rollback(conn: &mut PgConn, batch: &mut Vec<Rerun>) -> bool {
    match conn.client.batch_execute("ROLLBACK") {
        Ok(()) => true,
        Err(e) => {
            let e = StoreError::from(e);
            tracing::error!(error = %e, "cannot roll back a write transaction");
            batch
                .drain(..)
                .for_each(|(job, _)| job.reply(Err(e.clone())));
            false
        }
    }
}

fn reader_loop(
    connector: &mut Connector,
    secrets: &SecretBox,
    jobs: &Mutex<mpsc::Receiver<ReadJob>>,
) {
    let mut conn = None;
    while let Some(batch) = next_batch(jobs, 1) {
        for job in batch {
            let c = match connector.ensure(&mut conn) {
                Ok(c) => c,
                Err(e) => {
                    job(Err(e));
                    continue;
                }
            };
            // One snapshot for the whole job: all its reads see the same commits.
            if let Err(e) = c.begin("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") {
                job(Err(StoreError::from(e)));
                continue;
            }
            let mut tx = PgTx::new(c, secrets);
            job(Ok(&mut tx));
            let end = if tx.failed.is_some() {
                "ROLLBACK"
            } else {
                "COMMIT"
            };
            let _ = c.client.batch_execute(end);
        }
    }
}
