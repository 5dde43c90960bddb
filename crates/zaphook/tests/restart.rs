//! A server killed with SIGKILL in the middle of a burst, then restarted on the same data
//! directory, delivers every event it acknowledged, and one ticket's events keep their order.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::TestReceiver;
use serde_json::json;

const TOKEN: &str = "restart-test-token";

/// Starts the real `zaphook` binary; answers the child and its base URL.
fn spawn_server(data_dir: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_zaphook"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--bootstrap-token",
            TOKEN,
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--allow-private-targets",
            "--delivery-timeout",
            "1",
            "--delivery-lease",
            "2",
        ])
        .args(["--retry-schedule-ms", "200,200,200,200,200"])
        .env("ZAPHOOK_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the zaphook binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("the server prints its address")
            .expect("stdout is readable");
        if let Some(addr) = line.strip_prefix("zaphook listening on ") {
            break addr.trim().to_string();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, base)
}

async fn post(client: &reqwest::Client, url: String, body: serde_json::Value) -> Option<u16> {
    let resp = client
        .post(url)
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .ok()?;
    Some(resp.status().as_u16())
}

#[tokio::test]
async fn a_killed_server_delivers_everything_it_acknowledged_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = TestReceiver::start().await;
    let (mut child, base) = spawn_server(dir.path());
    let client = reqwest::Client::new();
    assert_eq!(
        post(
            &client,
            format!("{base}/api/v1/connections"),
            json!({"name": "A", "channel": "sandbox"})
        )
        .await,
        Some(201)
    );
    assert_eq!(
        post(
            &client,
            format!("{base}/api/v1/webhooks"),
            json!({"url": receiver.url()})
        )
        .await,
        Some(201)
    );

    // Ten contacts each send their messages in order; the server is killed mid-burst.
    let acked = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for contact in 0..10 {
        let (client, base, acked) = (client.clone(), base.clone(), acked.clone());
        senders.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for n in 0..30 {
                let body = format!("c{contact}-{n:02}");
                let status = post(
                    &client,
                    format!("{base}/api/v1/connections/1/sandbox/inbound"),
                    json!({"from": format!("55119000000{contact:02}"), "body": body}),
                )
                .await;
                if status != Some(202) {
                    break;
                }
                acked.fetch_add(1, Ordering::SeqCst);
                mine.push(body);
            }
            mine
        }));
    }
    common::eventually("part of the burst to be acknowledged", || async {
        acked.load(Ordering::SeqCst) >= 100
    })
    .await;
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    let mut acknowledged = HashSet::new();
    for s in senders {
        acknowledged.extend(s.await.unwrap());
    }
    assert!(acknowledged.len() >= 100 && acknowledged.len() < 300);

    let (mut child, _) = spawn_server(dir.path());
    let got = receiver
        .wait_until(|all| {
            let bodies: HashSet<String> = all
                .iter()
                .map(|r| r.json()["messageBody"].as_str().unwrap_or("").to_string())
                .collect();
            acknowledged.iter().all(|b| bodies.contains(b))
        })
        .await;
    child.kill().unwrap();
    child.wait().unwrap();

    // Order per ticket: the first arrival of each message follows the order it was sent in.
    let mut seen = HashSet::new();
    let mut last: HashMap<String, String> = HashMap::new();
    for r in &got {
        let body = r.json()["messageBody"].as_str().unwrap().to_string();
        if !seen.insert(r.header("webhook-id").to_string()) {
            continue; // a duplicate (at least once); receivers dedupe on webhook-id
        }
        let (contact, _) = body.split_once('-').unwrap();
        if let Some(previous) = last.insert(contact.to_string(), body.clone()) {
            assert!(
                previous < body,
                "{previous} arrived before {body} for {contact}"
            );
        }
    }
    let duplicates = got.len() - seen.len();
    println!(
        "acknowledged {}, received {} requests, {} duplicates",
        acknowledged.len(),
        got.len(),
        duplicates
    );
}
