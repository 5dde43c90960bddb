//! The embedded database when the disk answers fsync with an I/O error, under load: the real
//! binary runs with a small preloaded library (built here with the C compiler) that makes
//! `fsync` and `fdatasync` fail with EIO while a marker file exists. Every commit meanwhile
//! fails as a whole: its requests get 503 (never 202, never 500), `/readyz` answers 503, the
//! log says it once at the start and once at the end, and the writer reopens its connection
//! (counted in `/metrics`).
//! After a SIGKILL and a restart without the fault, every message acknowledged is there and
//! delivered. Where no C compiler is found the test says so and does nothing else.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use common::load::{self, Load};
use common::{ServerProcess, TestReceiver, eventually, post};
use serde_json::json;

const TOKEN: &str = "storage-io-token";

const FAULTY_FSYNC: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static int failing(void) {
    const char *marker = getenv("ZAPHOOK_TEST_FSYNC_FAILS_WHILE");
    return marker && access(marker, F_OK) == 0;
}

int fsync(int fd) {
    static int (*real)(int);
    if (failing()) { errno = EIO; return -1; }
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (failing()) { errno = EIO; return -1; }
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}
"#;

/// Builds the preloaded library into `dir`; `Err` says why it cannot be.
fn build_faulty_fsync(dir: &Path) -> Result<PathBuf, String> {
    let source = dir.join("faulty_fsync.c");
    let library = dir.join("faulty_fsync.so");
    std::fs::write(&source, FAULTY_FSYNC).map_err(|e| e.to_string())?;
    let out = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&library)
        .arg(&source)
        .arg("-ldl")
        .output()
        .map_err(|e| format!("cannot run cc: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).to_string());
    }
    Ok(library)
}

fn serve(data_dir: &Path, env: &[(&str, &str)], log: Option<&Path>) -> ServerProcess {
    let schedule = ["100"; 20].join(",");
    let mut args = common::quick_lease_args(TOKEN);
    args.extend(["--retry-schedule-ms", &schedule]);
    ServerProcess::start_with(data_dir, &args, env, log)
}

async fn status_of(client: &reqwest::Client, url: String) -> u16 {
    client.get(url).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn failing_fsyncs_fail_their_commits_and_lose_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let library = match build_faulty_fsync(dir.path()) {
        Ok(library) => library,
        Err(why) => {
            println!("SKIPPED: the fsync fault cannot be built here: {why}");
            return;
        }
    };
    let (data, marker, log) = (
        dir.path().join("data"),
        dir.path().join("fsync-fails"),
        dir.path().join("serve.log"),
    );
    let receiver = TestReceiver::start().await;
    let env = [
        ("LD_PRELOAD", library.to_str().unwrap()),
        ("ZAPHOOK_TEST_FSYNC_FAILS_WHILE", marker.to_str().unwrap()),
    ];
    let server = serve(&data, &env, Some(&log));
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

    std::fs::write(&marker, b"").unwrap();
    eventually("requests refused while fsync fails", || async {
        load.refused_count() >= 50
    })
    .await;
    assert_eq!(status_of(&client, format!("{base}/readyz")).await, 503);
    let acked_in_fault = load.acked_count();
    std::fs::remove_file(&marker).unwrap();
    load.until_acked(acked_in_fault + 100).await;
    let (acked, refused) = load.stop().await;
    eventually("/readyz to answer 200 again", || async {
        status_of(&client, format!("{base}/readyz")).await == 200
    })
    .await;
    for r in &refused {
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(r.retry_after, "Retry-After on {}", r.body);
    }
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let reopened = metrics
        .lines()
        .find_map(|l| l.strip_prefix("zaphook_sqlite_writer_reopens_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        reopened >= 1.0,
        "the writer reopened its connection: {metrics}"
    );
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

    // On a restart without the fault, everything acknowledged is stored and delivered, each
    // contact's messages in order.
    println!(
        "fsync fault: {} acknowledged, {} refused with 503",
        acked.len(),
        refused.len()
    );
    let restarted = serve(&data, &[], None);
    for a in &acked {
        let resp = client
            .get(format!("{}/api/v1/messages/{}", restarted.base, a.id))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status().as_u16(),
            200,
            "message {} was acknowledged",
            a.id
        );
    }
    let got = receiver
        .wait_until(|got| {
            let delivered: HashSet<String> = load::delivered_ids(got).into_iter().collect();
            acked.iter().all(|a| delivered.contains(&a.id))
        })
        .await;
    load::assert_in_order(&acked, &got);
    restarted.kill();
}
