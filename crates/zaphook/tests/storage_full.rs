//! The embedded database on a disk that fills up under load: a real small filesystem (a tmpfs
//! this test mounts), filled by a file while messages arrive. Requests that write are answered
//! 503 `storage-full` with `Retry-After` (never 500), `/readyz` answers 503 while writes fail,
//! nothing acknowledged is lost, and once the file is removed writes resume by themselves.
//! Where mounting is impossible (no privilege) the test says so and does nothing else.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{TestApp, TestReceiver, eventually, start, test_settings};

/// A tmpfs mounted for the test, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes `path` until the filesystem has no space left.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 16 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
}

/// Posts one sandbox message; answers the status and the body.
async fn send(app: &TestApp, conn: i64, body: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let answer = app
        .client
        .post(app.url(&format!("/api/v1/connections/{conn}/sandbox/inbound")))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body(serde_json::json!({"from": "5511900000001", "body": body}).to_string())
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let headers = answer.headers().clone();
    (status, headers, answer.text().await.unwrap_or_default())
}

fn body_of(r: &common::Received) -> String {
    r.json()["messageBody"].as_str().unwrap_or("").to_string()
}

async fn ready(app: &TestApp) -> u16 {
    let answer = app.client.get(app.url("/readyz")).send().await.unwrap();
    answer.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_loses_nothing_and_writes_resume_when_space_returns() {
    let disk = match SmallDisk::mount("8m") {
        Ok(disk) => disk,
        Err(why) => {
            eprintln!("skipped: cannot mount a small filesystem here: {why}");
            return;
        }
    };
    let data_dir: PathBuf = disk.path().join("data");
    let receiver = TestReceiver::start().await;
    let app = start(test_settings(data_dir)).await;
    let conn = app.sandbox_connection("A").await;
    app.webhook(&receiver.url(), &["message.created"]).await;
    let mut acknowledged = Vec::new();
    for i in 0..20 {
        let body = format!("before-{i}");
        assert_eq!(send(&app, conn, &body).await.0, 202);
        acknowledged.push(body);
    }

    // The disk fills while messages keep coming.
    fill(&disk.path().join("filler"));
    let mut refused = None;
    for i in 0..5_000 {
        let body = format!("during-{i}");
        let (status, headers, text) = send(&app, conn, &body).await;
        match status {
            202 => acknowledged.push(body),
            503 => {
                refused = Some((headers, text));
                break;
            }
            other => panic!("a request on a full disk was answered {other}: {text}"),
        }
    }
    let (headers, text) = refused.expect("a full disk refuses writes");
    let problem: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        problem["type"], "https://zaphook.dev/problems/storage-full",
        "{problem}"
    );
    assert!(headers.contains_key("retry-after"));
    assert_eq!(ready(&app).await, 503);
    // Reads go on.
    let (status, _) = app.get("/api/v1/tickets").await;
    assert_eq!(status, 200);

    // Space returns: writes resume without a restart.
    std::fs::remove_file(disk.path().join("filler")).unwrap();
    let mut after = 0;
    eventually("writes to be acknowledged again", || {
        after += 1;
        let body = format!("after-{after}");
        let app = &app;
        async move { send(app, conn, &body).await.0 == 202 }
    })
    .await;
    acknowledged.push(format!("after-{after}"));
    eventually("/readyz to answer 200 again", || async {
        ready(&app).await == 200
    })
    .await;

    // Everything acknowledged arrives, in order.
    let got = receiver
        .wait_until(|got| {
            let bodies: std::collections::HashSet<String> = got.iter().map(body_of).collect();
            acknowledged.iter().all(|b| bodies.contains(b))
        })
        .await;
    let mut seen: Vec<String> = Vec::new();
    for r in &got {
        let b = body_of(r);
        if acknowledged.contains(&b) && !seen.contains(&b) {
            seen.push(b);
        }
    }
    assert_eq!(seen, acknowledged);
    eprintln!(
        "{} acknowledged before the disk was full or after it had space again",
        acknowledged.len()
    );
    tokio::time::timeout(Duration::from_secs(15), app.stop())
        .await
        .expect("stops");
}
