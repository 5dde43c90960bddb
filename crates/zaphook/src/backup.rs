//! Backups of the embedded SQLite database: `zaphook backup` (a consistent copy taken while the
//! server runs), `zaphook restore` (a backup put in place of a data directory's database, the
//! previous one kept aside), and the backups `serve` takes on a schedule.
//!
//! A file under a backup's final name is always whole and checked: the copy is written under
//! a hidden partial name, flushed, and renamed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use crate::app::DATABASE_FILE;
use crate::secrets::{KEY_FILE, SecretBox};
use crate::store::StoreError;
use crate::store::sqlite::files::{self, DatabaseLock};
use crate::store::sqlite::{FileKind, check_is_ours, file_kind};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot {what} {}: {error}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
}

fn file_error(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_path_buf();
    move |error| BackupError::File { what, path, error }
}

/// A backup written.
#[derive(Debug, Clone)]
pub struct Taken {
    pub path: PathBuf,
    pub bytes: u64,
    /// The schema version it holds.
    pub schema: i64,
    pub took: Duration,
}

/// Writes a consistent copy of the database at `database` to `to`, replacing a file there
/// only once the copy is whole. The server may go on writing meanwhile.
///
/// The calling thread drops to the lowest CPU priority for good, so a server on the same
/// machine keeps the CPU it needs: call it on a thread of its own.
pub fn take(database: &Path, to: &Path) -> Result<Taken, BackupError> {
    let started = Instant::now();
    lower_cpu_priority();
    if !database.is_file() {
        return Err(StoreError::Refused(format!(
            "there is no database at {}: nothing to back up (is --data-dir the server's?)",
            database.display()
        ))
        .into());
    }
    // Shared with a running server; keeps a restore from swapping the file mid-copy.
    let _lock = DatabaseLock::shared(database)?;
    check_is_ours(database)?;
    if to.is_dir() {
        return Err(StoreError::Refused(format!(
            "{} is a directory: give the backup's file name",
            to.display()
        ))
        .into());
    }
    let partial = partial_path(to);
    remove_if_there(&partial)?;
    let inspected = match files::snapshot(database, &partial) {
        Ok(inspected) => inspected,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e.into());
        }
    };
    std::fs::rename(&partial, to).map_err(file_error("rename the backup to", to))?;
    sync_parent(to)?;
    Ok(Taken {
        path: to.to_path_buf(),
        bytes: inspected.bytes,
        schema: inspected.schema,
        took: started.elapsed(),
    })
}

/// A backup put in place.
#[derive(Debug, Clone)]
pub struct Restored {
    pub schema: i64,
    pub bytes: u64,
    /// Where the database it replaced was moved, if there was one.
    pub replaced: Option<PathBuf>,
}

/// Puts the backup `from` in place of `data_dir`'s database. Refuses while a zaphook process
/// uses the data directory, when `from` is not a sound zaphook backup, and when the secret key
/// there (or `secret_key`) does not open the backup's sealed secrets. The database replaced is
/// kept whole (with its WAL) in `<data-dir>/replaced/<time>/`.
pub fn restore(
    from: &Path,
    data_dir: &Path,
    secret_key: Option<&str>,
) -> Result<Restored, BackupError> {
    std::fs::create_dir_all(data_dir).map_err(file_error("create the data directory", data_dir))?;
    let database = data_dir.join(DATABASE_FILE);
    let _lock = DatabaseLock::exclusive(&database)?;
    std::fs::metadata(from).map_err(file_error("read the backup", from))?;
    let not_a_backup = |why: String| {
        StoreError::Refused(format!("{} is not a zaphook backup: {why}", from.display()))
    };
    match file_kind(from)? {
        FileKind::Ours => {}
        FileKind::New => return Err(not_a_backup("it is empty".into()).into()),
        FileKind::NotADatabase(why) => return Err(not_a_backup(why).into()),
        FileKind::Damaged(why) => {
            return Err(StoreError::Refused(format!(
                "{} is damaged ({why}): restore another backup",
                from.display()
            ))
            .into());
        }
        FileKind::Foreign(tables) => {
            return Err(not_a_backup(format!(
                "it is another application's database (tables {})",
                tables.join(", ")
            ))
            .into());
        }
        FileKind::Newer { schema, known } => {
            return Err(StoreError::Refused(format!(
                "{} has schema version {schema}, newer than this zaphook knows ({known}): restore it with the zaphook that wrote it, or a newer one",
                from.display()
            ))
            .into());
        }
    }
    let partial = partial_path(&database);
    remove_if_there(&partial)?;
    let prepared = files::snapshot(from, &partial)
        .and_then(|inspected| check_key(&partial, data_dir, secret_key).map(|()| inspected));
    let inspected = match prepared {
        Ok(inspected) => inspected,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e.into());
        }
    };
    let replaced = keep_aside(&database, data_dir)?;
    std::fs::rename(&partial, &database)
        .map_err(file_error("move the restored database to", &database))?;
    sync_parent(&database)?;
    Ok(Restored {
        schema: inspected.schema,
        bytes: inspected.bytes,
        replaced,
    })
}

/// Refuses a restore that would leave the server unable to open the secrets in the backup.
fn check_key(backup: &Path, data_dir: &Path, secret_key: Option<&str>) -> Result<(), StoreError> {
    let key_file = data_dir.join(KEY_FILE);
    let secrets = match secret_key {
        Some(text) => {
            Some(SecretBox::parse(text).map_err(|e| StoreError::SecretKey(e.to_string()))?)
        }
        None => match std::fs::read_to_string(&key_file) {
            Ok(text) => Some(
                SecretBox::parse(&text)
                    .map_err(|e| StoreError::SecretKey(format!("{}: {e}", key_file.display())))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(StoreError::SecretKey(format!(
                    "cannot read {}: {e}",
                    key_file.display()
                )));
            }
        },
    };
    let found = secrets.is_some();
    files::check_secret_key(backup, secrets.as_ref()).map_err(|e| match e {
        StoreError::SecretKey(_) if !found => StoreError::SecretKey(format!(
            "the backup's connection secrets are sealed with the secret key of the server it was taken from, and {} has none: copy that server's secret.key there (or give --secret-key) and restore again",
            data_dir.display()
        )),
        StoreError::SecretKey(_) => StoreError::SecretKey(format!(
            "the secret key {} does not open the backup's connection secrets: it was sealed with another key; use the key of the server it was taken from",
            if secret_key.is_some() { "given".to_string() } else { format!("in {}", key_file.display()) }
        )),
        e => e,
    })
}

/// Moves the database about to be replaced, with its WAL, to `<data-dir>/replaced/<time>/`;
/// answers that directory, or nothing when there was no database.
fn keep_aside(database: &Path, data_dir: &Path) -> Result<Option<PathBuf>, BackupError> {
    let wal = with_suffix(database, "-wal");
    let shm = with_suffix(database, "-shm");
    if !database.exists() {
        // A WAL without its database would be replayed onto the restored one.
        remove_if_there(&wal)?;
        remove_if_there(&shm)?;
        return Ok(None);
    }
    // What the WAL holds goes into the file, so the file alone is the old database; a damaged
    // one that cannot be checkpointed keeps its WAL beside it instead.
    let _ = files::checkpoint(database);
    let aside = data_dir.join("replaced").join(stamp(SystemTime::now()));
    std::fs::create_dir_all(&aside).map_err(file_error("create", &aside))?;
    for file in [database, wal.as_path()] {
        if file.exists() {
            let name = file.file_name().unwrap_or_default();
            let to = aside.join(name);
            std::fs::rename(file, &to).map_err(file_error("move aside", file))?;
        }
    }
    remove_if_there(&shm)?;
    sync_parent(&aside.join(DATABASE_FILE))?;
    Ok(Some(aside))
}

/// When and where `serve` takes backups.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub every: Duration,
    /// Backups kept in `dir`; the oldest beyond are removed.
    pub keep: usize,
    pub dir: PathBuf,
}

/// Takes a backup of `database` into `schedule.dir` every `schedule.every` until `stop`: the
/// first one at once when the newest there is older than that. A failed backup is logged,
/// counted and tried again sooner.
pub async fn run_scheduled(database: PathBuf, schedule: Schedule, mut stop: watch::Receiver<bool>) {
    let newest = backups_in(&schedule.dir).pop();
    let mut due = Instant::now();
    if let Some(newest) = &newest {
        record_last(newest);
        if let Ok(at) = modified(newest) {
            due += schedule
                .every
                .saturating_sub(at.elapsed().unwrap_or_default());
        }
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(due.into()) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let to = schedule
            .dir
            .join(format!("zaphook-{}.db", stamp(SystemTime::now())));
        let source = database.clone();
        let (done, taken) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("zaphook-backup".into())
            .spawn(move || done.send(take(&source, &to)));
        let taken = match spawned {
            Ok(_) => taken
                .await
                .map_err(|_| "the backup thread panicked".to_string()),
            Err(e) => Err(format!("cannot start the backup thread: {e}")),
        };
        let error = match taken {
            Ok(Ok(taken)) => {
                tracing::info!(path = %taken.path.display(), bytes = taken.bytes, ms = taken.took.as_millis() as u64, "backup written");
                metrics::counter!("zaphook_backups_total", "outcome" => "written").increment(1);
                metrics::gauge!("zaphook_backup_last_duration_seconds")
                    .set(taken.took.as_secs_f64());
                record_last(&taken.path);
                prune(&schedule.dir, schedule.keep);
                due = Instant::now() + schedule.every;
                continue;
            }
            Ok(Err(e)) => e.to_string(),
            Err(e) => e,
        };
        tracing::error!(%error, dir = %schedule.dir.display(), "scheduled backup failed; trying again in 5 minutes at most");
        metrics::counter!("zaphook_backups_total", "outcome" => "failed").increment(1);
        due = Instant::now() + schedule.every.min(Duration::from_secs(300));
    }
}

/// Nice 19 for the calling thread (Linux applies `setpriority` to one thread when given its
/// id). Disk I/O keeps its class: I/O priorities only act under the BFQ scheduler.
fn lower_cpu_priority() {
    let thread = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(thread), 19) {
        tracing::debug!(error = %e, "cannot lower the backup thread's CPU priority");
    }
}

/// The scheduled backups in `dir`, oldest first (their names sort by time).
fn backups_in(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("zaphook-") && n.ends_with(".db"))
        })
        .collect();
    found.sort();
    found
}

/// Removes the oldest scheduled backups beyond `keep`.
fn prune(dir: &Path, keep: usize) {
    let backups = backups_in(dir);
    let extra = backups.len().saturating_sub(keep);
    for old in &backups[..extra] {
        match std::fs::remove_file(old) {
            Ok(()) => tracing::info!(path = %old.display(), "removed an old backup"),
            Err(e) => {
                tracing::warn!(path = %old.display(), error = %e, "cannot remove an old backup")
            }
        }
    }
}

/// The last backup's time and size in `/metrics`.
fn record_last(path: &Path) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let at = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .unwrap_or_default();
    metrics::gauge!("zaphook_backup_last_success_timestamp_seconds").set(at.as_secs_f64());
    metrics::gauge!("zaphook_backup_last_size_bytes").set(meta.len() as f64);
}

fn modified(path: &Path) -> std::io::Result<SystemTime> {
    std::fs::metadata(path)?.modified()
}

/// A UTC time as `20261203T081500.123Z`: sorts as it reads.
fn stamp(at: SystemTime) -> String {
    let at = time::OffsetDateTime::from(at);
    let format = time::macros::format_description!(
        "[year][month][day]T[hour][minute][second].[subsecond digits:3]Z"
    );
    at.format(&format).unwrap_or_default()
}

/// The hidden name a copy is written under before it is renamed to `to`.
fn partial_path(to: &Path) -> PathBuf {
    let name = to.file_name().and_then(|n| n.to_str()).unwrap_or("backup");
    to.with_file_name(format!(".{name}.partial"))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn remove_if_there(path: &Path) -> Result<(), BackupError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(file_error("remove", path)(e)),
        _ => Ok(()),
    }
}

/// Flushes the directory holding `path`, so a rename into it survives a power loss.
fn sync_parent(path: &Path) -> Result<(), BackupError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(file_error("flush the directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_sort_as_times_do() {
        let early = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_000_000_001);
        let later = early + Duration::from_millis(999);
        assert_eq!(stamp(early), "20261130T005320.001Z");
        assert!(stamp(early) < stamp(later));
    }

    #[test]
    fn only_the_backup_thread_drops_its_priority() {
        let ours = rustix::process::getpriority_process(None).unwrap();
        let backup = std::thread::spawn(|| {
            lower_cpu_priority();
            rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
        });
        assert_eq!(backup.join().unwrap(), 19);
        assert_eq!(rustix::process::getpriority_process(None).unwrap(), ours);
    }

    #[test]
    fn only_the_newest_scheduled_backups_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "zaphook-20261201T000000.000Z.db",
            "zaphook-20261202T000000.000Z.db",
            "zaphook-20261203T000000.000Z.db",
            "notes.txt",
            ".zaphook-20261204T000000.000Z.db.partial",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        prune(dir.path(), 2);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ".zaphook-20261204T000000.000Z.db.partial",
                "notes.txt",
                "zaphook-20261202T000000.000Z.db",
                "zaphook-20261203T000000.000Z.db",
            ]
        );
    }
}
