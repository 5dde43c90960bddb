//! The database a test runs on: SQLite in a temporary directory, or PostgreSQL in a scratch
//! schema of the database `ZAPHOOK_TEST_DATABASE_URL` names, dropped when the test ends. The
//! statements a test runs beside the store (to count rows, or to play a crash) are here, so
//! the tests themselves hold no SQL of either backend.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use zaphook::store::Store;
use zaphook::store::sqlite::Durability;

pub const DATABASE_URL_VAR: &str = "ZAPHOOK_TEST_DATABASE_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestDb {
    pub backend: Backend,
    /// The data directory (the SQLite file, the secret key, media).
    pub dir: tempfile::TempDir,
    /// The PostgreSQL URL that selects the scratch schema.
    url: Option<String>,
    schema: Option<(String, String)>,
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        TestDb {
            backend: Backend::Sqlite,
            dir: tempfile::tempdir().unwrap(),
            url: None,
            schema: None,
        }
    }

    /// A scratch schema on the test database, or `None` (saying why) when there is none.
    pub fn postgres() -> Option<TestDb> {
        let Ok(base) = std::env::var(DATABASE_URL_VAR) else {
            eprintln!("skipped on PostgreSQL: {DATABASE_URL_VAR} is not set");
            return None;
        };
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let schema = format!(
            "zt_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        on_postgres(&base, &format!("CREATE SCHEMA {schema}"));
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-csearch_path%3D{schema}");
        Some(TestDb {
            backend: Backend::Postgres,
            dir: tempfile::tempdir().unwrap(),
            url: Some(url),
            schema: Some((base, schema)),
        })
    }

    pub fn of(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => Some(TestDb::sqlite()),
            Backend::Postgres => TestDb::postgres(),
        }
    }

    /// `--database-url` for a server on this database (`None` for SQLite).
    pub fn database_url(&self) -> Option<String> {
        self.url.clone()
    }

    /// Opens a store on this database with `connections` PostgreSQL connections (two gives
    /// one writer and one reader, which orders writes as SQLite's single writer does).
    pub fn open_with(&self, connections: usize) -> Arc<dyn Store> {
        zaphook::app::open_store(
            self.dir.path(),
            self.url.as_deref(),
            connections,
            Durability::Full,
            None,
        )
        .unwrap()
    }

    pub fn open(&self) -> Arc<dyn Store> {
        self.open_with(2)
    }

    /// Runs a statement beside the store, written so that both backends take it.
    pub fn sql(&self, statement: &str) {
        match &self.url {
            Some(url) => on_postgres(url, statement),
            None => {
                let conn = rusqlite::Connection::open(self.sqlite_file()).unwrap();
                conn.execute_batch(statement).unwrap();
            }
        }
    }

    /// Rows of `table`.
    pub fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM {table}");
        match &self.url {
            Some(url) => {
                let url = url.clone();
                std::thread::spawn(move || {
                    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                    client.query_one(&sql, &[]).unwrap().get(0)
                })
                .join()
                .unwrap()
            }
            None => {
                let conn = rusqlite::Connection::open(self.sqlite_file()).unwrap();
                conn.query_row(&sql, [], |r| r.get(0)).unwrap()
            }
        }
    }

    /// Everything the database holds, as bytes: the SQLite file and its log, or a dump of the
    /// schema's rows (to check that nothing secret is stored in clear).
    pub fn contents(&self) -> Vec<u8> {
        match &self.schema {
            Some((base, schema)) => {
                let out = std::process::Command::new("pg_dump")
                    .args(["--data-only", "--schema", schema, "--dbname", base])
                    .output()
                    .expect("pg_dump runs");
                assert!(
                    out.status.success(),
                    "pg_dump: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                out.stdout
            }
            None => {
                let mut bytes = Vec::new();
                for name in ["zaphook.db", "zaphook.db-wal"] {
                    if let Ok(b) = std::fs::read(self.dir.path().join(name)) {
                        bytes.extend(b);
                    }
                }
                bytes
            }
        }
    }

    fn sqlite_file(&self) -> std::path::PathBuf {
        self.dir.path().join(zaphook::app::DATABASE_FILE)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((base, schema)) = self.schema.take() {
            // The test's server may still be writing (a worker finishing a job) when the test
            // ends, and PostgreSQL may pick the drop as a deadlock's victim: it is tried again.
            let drop = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
            let mut tries = 0;
            while let Err(e) = try_on_postgres(&base, &drop) {
                tries += 1;
                if tries == 10 {
                    panic!("cannot drop the scratch schema {schema}: {e}");
                }
                std::thread::sleep(std::time::Duration::from_millis(50 * tries));
            }
        }
    }
}

/// Runs `statement` on its own connection, on a thread of its own (the blocking client
/// cannot run inside the test's runtime).
fn on_postgres(url: &str, statement: &str) {
    try_on_postgres(url, statement).unwrap_or_else(|e| panic!("{statement}: {e}"));
}

fn try_on_postgres(url: &str, statement: &str) -> Result<(), postgres::Error> {
    let (url, statement) = (url.to_string(), statement.to_string());
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("{DATABASE_URL_VAR}: cannot connect: {e}"));
        client.batch_execute(&statement)
    })
    .join()
    .unwrap()
}
