//! Backups of the embedded SQLite database with the real binary: `zaphook backup` while
//! `serve` takes a steady load, `zaphook restore` into a new data directory (and what it
//! refuses), and the backups `serve --backup-every` takes on its own. SQLite only: PostgreSQL
//! is backed up with its own tools, which `backup` and `--backup-every` say.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output};

use common::load::{self, Load};
use common::{ServerProcess, TestReceiver, post};
use serde_json::{Value, json};

const TOKEN: &str = "backup-test-token";

fn zaphook(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zaphook"))
        .args(args)
        .env_remove("ZAPHOOK_DATABASE_URL")
        .env_remove("ZAPHOOK_DATA_DIR")
        .env_remove("ZAPHOOK_SECRET_KEY")
        .env("ZAPHOOK_LOG", "warn")
        .output()
        .expect("the zaphook binary runs")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

/// Asserts success and answers stdout.
fn succeeded(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
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

fn serve(data_dir: &Path, extra: &[&str]) -> ServerProcess {
    // Deliveries in flight when the backup was taken are in it leased; a short lease lets the
    // restored server take them again soon.
    let mut args = common::quick_lease_args(TOKEN);
    args.extend_from_slice(extra);
    ServerProcess::start(data_dir, &args)
}

async fn answer(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn get(client: &reqwest::Client, url: String) -> (u16, Value) {
    answer(client.get(url).bearer_auth(TOKEN).send().await.unwrap()).await
}

/// A sandbox message from `from`: the status and the answer.
async fn inbound(client: &reqwest::Client, base: &str, from: &str, body: &str) -> (u16, Value) {
    let resp = client
        .post(format!("{base}/api/v1/connections/1/sandbox/inbound"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(json!({"from": from, "body": body}).to_string())
        .send()
        .await
        .unwrap();
    answer(resp).await
}

#[tokio::test]
async fn a_backup_taken_under_load_restores_everything_acknowledged_before_it() {
    let dirs = tempfile::tempdir().unwrap();
    let (live, restored_dir) = (dirs.path().join("live"), dirs.path().join("restored"));
    let backup_file = dirs.path().join("zaphook-backup.db");
    let receiver = TestReceiver::start().await;
    let server = serve(&live, &[]);
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let created = |what: &str, body: Value| {
        let (client, url) = (client.clone(), format!("{base}/api/v1/{what}"));
        async move { post(&client, TOKEN, url, body).await }
    };
    assert_eq!(
        created("connections", json!({"name": "A", "channel": "sandbox"})).await,
        Some(201)
    );
    assert_eq!(
        created("webhooks", json!({"url": receiver.url()})).await,
        Some(201)
    );

    let load = Load::start(&base, TOKEN, 8);
    load.until_acked(300).await;
    let before = load.acked_ids();
    let out = tokio::task::spawn_blocking({
        let (live, backup_file) = (live.clone(), backup_file.clone());
        move || {
            zaphook(&[
                "backup",
                "--data-dir",
                path(&live),
                "--to",
                path(&backup_file),
            ])
        }
    })
    .await
    .unwrap();
    let during = load.acked_count() - before.len();
    let said = succeeded(&out);
    assert!(
        said.contains("backup written") && said.contains("secret.key"),
        "{said}"
    );
    // The load goes on after the backup too: the server was not stopped by it.
    load.until_acked(load.acked_count() + 50).await;
    let (acked, refused) = load.stop().await;
    assert!(refused.is_empty(), "{:?}", refused.first());
    println!(
        "backup: {} messages acknowledged before it began, {during} while it ran, {} in all",
        before.len(),
        acked.len()
    );
    assert!(
        !backup_file
            .with_file_name(".zaphook-backup.db.partial")
            .exists()
    );

    // The live server holds its data directory: a restore there is refused.
    let refused = zaphook(&[
        "restore",
        "--from",
        path(&backup_file),
        "--data-dir",
        path(&live),
    ]);
    assert_refused(&refused, &["in use", "stop it first"]);
    server.kill();

    // Without the secret key the backup's secrets cannot be opened: refused, then done.
    let refused = zaphook(&[
        "restore",
        "--from",
        path(&backup_file),
        "--data-dir",
        path(&restored_dir),
    ]);
    assert_refused(&refused, &["secret.key", "--secret-key"]);
    assert!(!restored_dir.join("zaphook.db").exists());
    std::fs::copy(live.join("secret.key"), restored_dir.join("secret.key")).unwrap();
    let said = succeeded(&zaphook(&[
        "restore",
        "--from",
        path(&backup_file),
        "--data-dir",
        path(&restored_dir),
    ]));
    assert!(said.contains("restored"), "{said}");

    let restored = serve(&restored_dir, &[]);
    let base = restored.base.clone();
    for id in &before {
        let (status, message) = get(&client, format!("{base}/api/v1/messages/{id}")).await;
        assert_eq!(status, 200, "message {id}, acknowledged before the backup");
        assert_eq!(message["id"], id.as_str());
    }
    // It serves and delivers: a new message reaches the receiver, and so does every message
    // acknowledged before the backup (delivered by the first server or by this one).
    let (status, new) = inbound(&client, &base, "5511900000999", "after the restore").await;
    assert_eq!(status, 202, "{new}");
    let new_id = new["id"].as_str().unwrap().to_string();
    receiver
        .wait_until(|got| {
            let delivered: HashSet<String> = load::delivered_ids(got).into_iter().collect();
            delivered.contains(&new_id) && before.iter().all(|id| delivered.contains(id))
        })
        .await;
    restored.kill();
}

#[test]
fn restore_refuses_what_is_not_a_sound_backup_and_keeps_the_database_it_replaces() {
    let dirs = tempfile::tempdir().unwrap();
    let data = dirs.path().join("data");
    let other = dirs.path().join("other");
    // Two real databases, each with its own key: `other` is the backup's source.
    for dir in [&data, &other] {
        succeeded(&zaphook(&["migrate", "--data-dir", path(dir)]));
    }
    succeeded(&zaphook(&[
        "company",
        "create",
        "Second",
        "--data-dir",
        path(&other),
    ]));
    let backup = dirs.path().join("good.db");
    succeeded(&zaphook(&[
        "backup",
        "--data-dir",
        path(&other),
        "--to",
        path(&backup),
    ]));
    let original = std::fs::read(data.join("zaphook.db")).unwrap();

    let restore =
        |from: &Path| zaphook(&["restore", "--from", path(from), "--data-dir", path(&data)]);
    let file = |name: &str, bytes: &[u8]| {
        let p = dirs.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    assert_refused(
        &restore(&dirs.path().join("missing.db")),
        &["missing.db", "cannot read"],
    );
    assert_refused(
        &restore(&file("empty.db", b"")),
        &["empty.db", "not a zaphook backup", "empty"],
    );
    assert_refused(
        &restore(&file("text.db", &b"not a database at all ".repeat(300))),
        &["text.db", "not a zaphook backup"],
    );
    let foreign = dirs.path().join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
        .unwrap();
    assert_refused(
        &restore(&foreign),
        &["foreign.db", "another application", "invoices"],
    );
    let good = std::fs::read(&backup).unwrap();
    assert_refused(
        &restore(&file("half.db", &good[..good.len() / 2])),
        &["half.db", "damaged"],
    );
    // A sound backup sealed with another server's key.
    assert_refused(&restore(&backup), &["secret key", "another key"]);
    assert_eq!(std::fs::read(data.join("zaphook.db")).unwrap(), original);
    assert!(!data.join("replaced").exists());

    // With the backup's key it is put in place; the database it replaced is kept, openable.
    let key = std::fs::read_to_string(other.join("secret.key")).unwrap();
    let said = succeeded(&zaphook(&[
        "restore",
        "--from",
        path(&backup),
        "--data-dir",
        path(&data),
        "--secret-key",
        key.trim(),
    ]));
    let companies = |db: &Path| -> i64 {
        rusqlite::Connection::open(db)
            .unwrap()
            .query_row("SELECT count(*) FROM companies", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(
        companies(&data.join("zaphook.db")),
        1,
        "the backup's company"
    );
    let replaced: Vec<_> = std::fs::read_dir(data.join("replaced")).unwrap().collect();
    assert_eq!(replaced.len(), 1);
    let aside = replaced[0].as_ref().unwrap().path();
    assert!(said.contains(path(&aside)), "{said}");
    assert_eq!(
        companies(&aside.join("zaphook.db")),
        0,
        "the replaced database, whole"
    );
}

#[test]
fn backup_names_what_it_cannot_copy() {
    let dirs = tempfile::tempdir().unwrap();
    let to = dirs.path().join("b.db");
    assert_refused(
        &zaphook(&[
            "backup",
            "--data-dir",
            path(&dirs.path().join("none")),
            "--to",
            path(&to),
        ]),
        &["no database", "none"],
    );
    let out = Command::new(env!("CARGO_BIN_EXE_zaphook"))
        .args(["backup", "--to", path(&to)])
        .env("ZAPHOOK_DATABASE_URL", "postgres://127.0.0.1/zaphook")
        .output()
        .unwrap();
    assert_refused(&out, &["PostgreSQL", "pg_dump"]);
    let out = Command::new(env!("CARGO_BIN_EXE_zaphook"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--backup-every",
            "1h",
            "--data-dir",
        ])
        .arg(dirs.path())
        .env("ZAPHOOK_DATABASE_URL", "postgres://127.0.0.1/zaphook")
        .output()
        .unwrap();
    assert_refused(&out, &["--backup-every", "pg_dump"]);
    assert!(!to.exists());
}

#[tokio::test]
async fn serve_takes_backups_on_its_schedule_and_keeps_the_newest() {
    let dirs = tempfile::tempdir().unwrap();
    let (data, backups) = (dirs.path().join("data"), dirs.path().join("backups"));
    let server = serve(
        &data,
        &[
            "--backup-every",
            "1s",
            "--backup-keep",
            "2",
            "--backup-dir",
            path(&backups),
        ],
    );
    let client = reqwest::Client::new();
    let metric = |text: &str, name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let metrics_url = format!("{}/metrics", server.base);
    common::eventually("four scheduled backups", || async {
        let text = client
            .get(&metrics_url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metric(&text, "zaphook_backups_total{outcome=\"written\"}") >= 4.0
    })
    .await;
    let text = client
        .get(&metrics_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metric(&text, "zaphook_backup_last_size_bytes") > 0.0,
        "{text}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last = metric(&text, "zaphook_backup_last_success_timestamp_seconds");
    assert!(
        (now - last).abs() < 60.0,
        "last backup at {last}, now {now}"
    );
    server.kill();

    let kept: Vec<_> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "db"))
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    // Each one a sound backup: it restores.
    std::fs::create_dir_all(dirs.path().join("again")).unwrap();
    std::fs::copy(
        data.join("secret.key"),
        dirs.path().join("again/secret.key"),
    )
    .unwrap();
    succeeded(&zaphook(&[
        "restore",
        "--from",
        path(&kept[0]),
        "--data-dir",
        path(&dirs.path().join("again")),
    ]));
}
