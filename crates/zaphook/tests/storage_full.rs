//! The embedded database on a disk that fills up under load: the real binary on a real small
//! filesystem (a tmpfs this test mounts), filled by a file while four contacts write without
//! pause. Requests that write are answered 503 `storage-full` with `Retry-After` (never 500),
//! reads go on, `/readyz` answers 503 while writes fail, the log says so once when it starts
//! and once when it ends, a metric counts the failed commits, nothing acknowledged is lost
//! (and each contact's messages arrive in order), and once the file is removed writes resume
//! by themselves. Where mounting is impossible (no privilege) the test says so and does
//! nothing else.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use common::load::{self, Load};
use common::{ServerProcess, TestReceiver, eventually, post};
use serde_json::json;

const TOKEN: &str = "storage-full-token";

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

async fn get(client: &reqwest::Client, url: String) -> (u16, String) {
    let resp = client.get(url).bearer_auth(TOKEN).send().await.unwrap();
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}

#[tokio::test]
async fn a_full_disk_answers_503_loses_nothing_and_writes_resume_when_space_returns() {
    let disk = match SmallDisk::mount("8m") {
        Ok(disk) => disk,
        Err(why) => {
            println!("SKIPPED: cannot mount a small filesystem here: {why}");
            return;
        }
    };
    // The log is kept off the small disk, which it would otherwise fill too.
    let elsewhere = tempfile::tempdir().unwrap();
    let log = elsewhere.path().join("serve.log");
    let receiver = TestReceiver::start().await;
    let server = ServerProcess::start_with(
        &disk.path().join("data"),
        // Attempts whose outcome could not be recorded on the full disk are tried again when
        // their lease ends: a short one.
        &common::quick_lease_args(TOKEN),
        &[],
        Some(&log),
    );
    let base = server.base.clone();
    let client = reqwest::Client::new();
    for (what, body) in [
        ("connections", json!({"name": "A", "channel": "sandbox"})),
        ("webhooks", json!({"url": receiver.url()})),
    ] {
        let status = post(&client, TOKEN, format!("{base}/api/v1/{what}"), body).await;
        assert_eq!(status, Some(201));
    }
    let load = Load::start(&base, TOKEN, 4);
    load.until_acked(100).await;

    // The disk fills while messages keep coming.
    fill(&disk.path().join("filler"));
    eventually("writes refused on the full disk", || async {
        load.refused_count() >= 50
    })
    .await;
    assert_eq!(get(&client, format!("{base}/readyz")).await.0, 503);
    // Reads go on.
    assert_eq!(get(&client, format!("{base}/api/v1/tickets")).await.0, 200);

    // Space returns: writes resume without a restart.
    let acked_while_full = load.acked_count();
    std::fs::remove_file(disk.path().join("filler")).unwrap();
    load.until_acked(acked_while_full + 100).await;
    let (acked, refused) = load.stop().await;
    eventually("/readyz to answer 200 again", || async {
        get(&client, format!("{base}/readyz")).await.0 == 200
    })
    .await;
    for r in &refused {
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(r.retry_after, "Retry-After on {}", r.body);
        assert_eq!(
            r.body["type"], "https://zaphook.dev/problems/storage-full",
            "{}",
            r.body
        );
    }
    let metrics = get(&client, format!("{base}/metrics")).await.1;
    assert!(
        metrics.contains("zaphook_storage_errors_total{kind=\"full\"}"),
        "{metrics}"
    );

    // Everything acknowledged arrives, each contact's messages in order.
    let got = receiver
        .wait_until(|got| {
            let delivered: HashSet<String> = load::delivered_ids(got).into_iter().collect();
            acked.iter().all(|a| delivered.contains(&a.id))
        })
        .await;
    load::assert_in_order(&acked, &got);
    server.kill();

    let text = std::fs::read_to_string(&log).unwrap();
    let count = |words: &str| text.lines().filter(|l| l.contains(words)).count();
    assert_eq!(count("the database cannot take writes"), 1, "{text}");
    assert_eq!(count("the database takes writes again"), 1, "{text}");
    let errors = count("ERROR");
    assert!(
        errors <= 3,
        "not a line per request: {errors} error lines for {} refusals:\n{text}",
        refused.len()
    );
    println!(
        "full disk: {} acknowledged, {} refused with 503 storage-full",
        acked.len(),
        refused.len()
    );
}
