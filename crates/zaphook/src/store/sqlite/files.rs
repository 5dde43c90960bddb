//! The database file as a whole, for what handles it outside a running store's transactions:
//! the lock that tells `restore` a process is using the file, a consistent snapshot taken while
//! a server writes, and the checks that a file is a sound zaphook database.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};

use super::MIGRATIONS;
use crate::secrets::SecretBox;
use crate::store::{StoreError, StoreResult, sealed};

/// A lock on `<database>.lock` (`zaphook.lock` beside `zaphook.db`): held shared by every
/// process that opens the database (a server, `migrate`, `backup`), exclusively by `restore`,
/// which replaces the file. An flock, apart from SQLite's POSIX locks, so neither disturbs the
/// other; the kernel drops it when the process dies, so a crash leaves no stale lock.
#[derive(Debug)]
pub struct DatabaseLock {
    _file: File,
}

impl DatabaseLock {
    pub fn shared(database: &Path) -> StoreResult<Self> {
        Self::take(database, false)
    }

    pub fn exclusive(database: &Path) -> StoreResult<Self> {
        Self::take(database, true)
    }

    fn take(database: &Path, exclusive: bool) -> StoreResult<Self> {
        let path = lock_path(database);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| {
                StoreError::Refused(format!("cannot open the lock file {}: {e}", path.display()))
            })?;
        let taken = if exclusive {
            file.try_lock()
        } else {
            file.try_lock_shared()
        };
        match taken {
            Ok(()) => Ok(DatabaseLock { _file: file }),
            Err(TryLockError::WouldBlock) if exclusive => Err(StoreError::Refused(format!(
                "{} is in use by a zaphook process (a server, or a command such as backup or migrate): stop it first",
                database.display()
            ))),
            Err(TryLockError::WouldBlock) => Err(StoreError::Refused(format!(
                "{} is being restored (`zaphook restore` holds it): start again once it is done",
                database.display()
            ))),
            Err(TryLockError::Error(e)) => Err(StoreError::Refused(format!(
                "cannot lock {}: {e}",
                path.display()
            ))),
        }
    }
}

fn lock_path(database: &Path) -> PathBuf {
    database.with_extension("lock")
}

/// What a sound zaphook database file is, as far as a backup or a restore cares.
#[derive(Debug, Clone, Copy)]
pub struct Inspected {
    /// The newest migration applied to it.
    pub schema: i64,
    pub bytes: u64,
}

/// Writes a consistent copy of the database at `source` to `to` (which must not exist) as one
/// self-contained file (a rollback journal, no WAL beside it), checks it with
/// `integrity_check`, and flushes it to disk. The copy is one read transaction (`VACUUM
/// INTO`): a server writing to `source` meanwhile goes on, and its commits after the start
/// are not in the copy.
pub fn snapshot(source: &Path, to: &Path) -> StoreResult<Inspected> {
    let target = to
        .to_str()
        .ok_or_else(|| StoreError::Refused(format!("{} is not a UTF-8 path", to.display())))?;
    let conn = Connection::open(source)?;
    // A reader waits only while another connection recovers the WAL after a crash.
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.execute("VACUUM INTO ?1", [target])
        .map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
                StoreError::Refused(format!(
                    "{} is damaged ({e}): no whole copy can be made of it",
                    source.display()
                ))
            }
            _ => match StoreError::from(e) {
                StoreError::StorageFull(why) => {
                    StoreError::StorageFull(format!("writing {}: {why}", to.display()))
                }
                e => e,
            },
        })?;
    drop(conn);
    let copy = Connection::open(to)?;
    let mode: String = copy.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(StoreError::Database(format!(
            "{}: the copy stayed in journal mode {mode}",
            to.display()
        )));
    }
    let schema = inspect(&copy, to)?;
    drop(copy);
    let file = File::open(to).map_err(|e| io_error(to, e))?;
    file.sync_all().map_err(|e| io_error(to, e))?;
    let bytes = file.metadata().map_err(|e| io_error(to, e))?.len();
    Ok(Inspected { schema, bytes })
}

/// Checks that the open database at `path` is whole (`integrity_check`) and is zaphook's, of a
/// schema this binary knows; answers its schema version.
fn inspect(conn: &Connection, path: &Path) -> StoreResult<i64> {
    let shown = path.display();
    let problems: Vec<String> = conn
        .prepare("PRAGMA integrity_check(5)")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if problems != ["ok"] {
        return Err(StoreError::Refused(format!(
            "{shown} is damaged; integrity_check says: {}",
            problems.join("; ")
        )));
    }
    let ours: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations')",
        [],
        |r| r.get(0),
    )?;
    if !ours {
        return Err(StoreError::Refused(format!(
            "{shown} holds no zaphook database (no schema_migrations table)"
        )));
    }
    let schema: Option<i64> =
        conn.query_row("SELECT max(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })?;
    let known = MIGRATIONS.last().map(|(v, _)| *v).unwrap_or_default();
    match schema {
        Some(schema) if schema <= known => Ok(schema),
        Some(schema) => Err(StoreError::Refused(format!(
            "{shown} has schema version {schema}, newer than this zaphook knows ({known}): use the zaphook that wrote it, or a newer one"
        ))),
        None => Err(StoreError::Refused(format!(
            "{shown} holds no zaphook database (no migration was ever applied to it)"
        ))),
    }
}

/// Whether `secrets` opens the connection secrets sealed in the database at `path`: `Ok` also
/// when nothing was ever sealed in it. A database opened with the wrong key would start and
/// then fail on every Cloud API connection.
pub fn check_secret_key(path: &Path, secrets: Option<&SecretBox>) -> StoreResult<()> {
    let conn = Connection::open(path)?;
    let check: Option<Vec<u8>> = conn
        .query_row("SELECT sealed FROM secret_check WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()?;
    match (check, secrets) {
        (None, _) => Ok(()),
        (Some(sealed), Some(secrets)) => sealed::check(secrets, &sealed),
        (Some(_), None) => Err(StoreError::SecretKey(
            "the database's secrets are sealed with a secret key and none was found".into(),
        )),
    }
}

/// Moves the WAL's commits into the database file and empties the WAL, when the file is a
/// database at all: a copy of the file alone is then the whole database.
pub fn checkpoint(path: &Path) -> StoreResult<()> {
    let conn = Connection::open(path)?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

fn io_error(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("{}: {e}", path.display()))
}
