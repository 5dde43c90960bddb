//! `zaphook serve` (the real binary) on data directories it must not use: a data file that is
//! not a database, another application's database, a database with a newer schema, a data
//! directory that cannot be written, a migration that fails. Each time one line on stderr naming the path, what is
//! wrong and what to do, exit status 1, and the file left as it was.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `zaphook serve` on `data_dir` (port 0, so a start that wrongly succeeded is stopped
/// by the timeout of `run`).
fn serve(data_dir: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_zaphook"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env_remove("ZAPHOOK_DATABASE_URL")
        .env("ZAPHOOK_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("zaphook starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().expect("waits").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("zaphook serve kept running on {}", data_dir.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Asserts a refusal: status 1 and one line on stderr with every one of `words`.
fn assert_refused(out: &Output, words: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    for word in words {
        assert!(lines[0].contains(word), "{word:?} in {stderr}");
    }
}

#[test]
fn a_data_file_that_is_not_a_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("zaphook.db");
    let garbage = b"these are not the bytes of a database, just some text".repeat(100);
    std::fs::write(&file, &garbage).unwrap();
    let out = serve(dir.path());
    assert_refused(
        &out,
        &[
            &file.display().to_string(),
            "not a SQLite database",
            "backup",
        ],
    );
    assert_eq!(std::fs::read(&file).unwrap(), garbage);
}

#[test]
fn another_applications_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("zaphook.db");
    let conn = rusqlite::Connection::open(&file).unwrap();
    conn.execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        .unwrap();
    drop(conn);
    let before = std::fs::read(&file).unwrap();
    let out = serve(dir.path());
    assert_refused(
        &out,
        &[
            &file.display().to_string(),
            "another application",
            "invoices",
        ],
    );
    assert_eq!(std::fs::read(&file).unwrap(), before);
}

#[test]
fn a_schema_newer_than_the_binary_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("zaphook.db");
    // A database this binary made, then migrated by a "newer" one.
    let out = Command::new(env!("CARGO_BIN_EXE_zaphook"))
        .args(["migrate", "--data-dir"])
        .arg(dir.path())
        .env_remove("ZAPHOOK_DATABASE_URL")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let conn = rusqlite::Connection::open(&file).unwrap();
    conn.execute_batch(
        "INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0);
         PRAGMA wal_checkpoint(TRUNCATE);",
    )
    .unwrap();
    drop(conn);
    let before = std::fs::read(&file).unwrap();
    let out = serve(dir.path());
    assert_refused(
        &out,
        &[
            &file.display().to_string(),
            "schema version 999",
            "newer than this zaphook",
        ],
    );
    assert_eq!(std::fs::read(&file).unwrap(), before);
}

#[test]
fn a_data_directory_that_cannot_be_written_is_refused() {
    // Even root may not create files in sysfs; a test user may not either.
    let dir = Path::new("/sys/kernel");
    assert!(dir.is_dir(), "this test needs Linux's /sys");
    let out = serve(dir);
    assert_refused(
        &out,
        &[
            "/sys/kernel",
            "cannot write in the data directory",
            "--data-dir",
        ],
    );

    // A data directory below a file cannot even be made.
    let parent = tempfile::tempdir().unwrap();
    let file = parent.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let out = serve(&file.join("data"));
    assert_refused(
        &out,
        &[
            &file.display().to_string(),
            "cannot create the data directory",
        ],
    );
}

#[test]
fn a_migration_that_fails_leaves_the_database_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("zaphook.db");
    let out = Command::new(env!("CARGO_BIN_EXE_zaphook"))
        .args(["migrate", "--data-dir"])
        .arg(dir.path())
        .env_remove("ZAPHOOK_DATABASE_URL")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // As if migration 4 (and those after it) were still to come, on a database with two active tickets of one
    // contact (its first statement closes the older) where its second statement fails (the
    // index it rebuilds is not there to drop). Foreign keys are off, as zaphook runs.
    let conn = rusqlite::Connection::open(&file).unwrap();
    conn.execute_batch(
        "PRAGMA foreign_keys = OFF;
         DELETE FROM schema_migrations WHERE version >= 4;
         DROP INDEX tickets_active;
         INSERT INTO tickets (company_id, connection_id, contact_id, status, protocol, created_at, updated_at)
             VALUES (1, 1, 1, 'pending', 'p1', 0, 0), (1, 1, 1, 'pending', 'p2', 0, 0);
         PRAGMA wal_checkpoint(TRUNCATE);",
    )
    .unwrap();
    drop(conn);
    let before = std::fs::read(&file).unwrap();
    let out = serve(dir.path());
    assert_refused(
        &out,
        &[
            &file.display().to_string(),
            "migration 4 failed",
            "rolled back",
        ],
    );
    let conn = rusqlite::Connection::open(&file).unwrap();
    let newest: i64 = conn
        .query_row("SELECT max(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(newest, 3);
    let pending: i64 = conn
        .query_row(
            "SELECT count(*) FROM tickets WHERE status = 'pending'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        pending, 2,
        "the first statement of the failed migration is undone"
    );
    drop(conn);
    assert_eq!(std::fs::read(&file).unwrap(), before);
}
