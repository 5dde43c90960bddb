//! Chaos: a burst of inbound messages, the server killed with SIGKILL mid-burst and restarted
//! on the same data directory, while the receiver fails 30 % of requests at random. Every
//! acknowledged event is delivered, duplicates are counted, and one ticket's events keep their
//! order.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{ServerProcess, TestReceiver, post};
use serde_json::json;

const TOKEN: &str = "restart-test-token";

fn spawn_server(data_dir: &Path) -> ServerProcess {
    // Enough quick retries that a 30 % failure rate never exhausts them (0.3^31).
    let schedule = ["100"; 30].join(",");
    let mut args = common::quick_lease_args(TOKEN);
    args.extend(["--retry-schedule-ms", &schedule]);
    ServerProcess::start(data_dir, &args)
}

#[tokio::test]
async fn a_killed_server_delivers_everything_it_acknowledged_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = TestReceiver::with_responder(|_| {
        if rand::random::<f64>() < 0.3 {
            500
        } else {
            200
        }
    })
    .await;
    let server = spawn_server(dir.path());
    let base = server.base.clone();
    let client = reqwest::Client::new();
    assert_eq!(
        post(
            &client,
            TOKEN,
            format!("{base}/api/v1/connections"),
            json!({"name": "A", "channel": "sandbox"})
        )
        .await,
        Some(201)
    );
    assert_eq!(
        post(
            &client,
            TOKEN,
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
                    TOKEN,
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
    server.kill();
    let mut acknowledged = HashSet::new();
    for s in senders {
        acknowledged.extend(s.await.unwrap());
    }
    assert!(acknowledged.len() >= 100 && acknowledged.len() < 300);

    let restarted = spawn_server(dir.path());
    let got = receiver
        .wait_until(|all| {
            let bodies: HashSet<String> = all
                .iter()
                .filter(|r| r.status == 200)
                .map(|r| r.json()["messageBody"].as_str().unwrap_or("").to_string())
                .collect();
            acknowledged.iter().all(|b| bodies.contains(b))
        })
        .await;
    restarted.kill();

    // Order per ticket: a message first arrives only after the one before it of the same
    // contact was accepted (answered 200).
    let mut seen = HashSet::new();
    let mut accepted: HashMap<String, String> = HashMap::new();
    let mut successes = HashSet::new();
    for r in &got {
        let body = r.json()["messageBody"].as_str().unwrap().to_string();
        let (contact, n) = body.split_once('-').unwrap();
        let first = seen.insert(body.clone());
        if first && n != "00" {
            let before = format!("{contact}-{:02}", n.parse::<u32>().unwrap() - 1);
            assert_eq!(
                accepted.get(contact),
                Some(&before),
                "{body} arrived before {before} was accepted"
            );
        }
        if r.status == 200 {
            successes.insert(r.header("webhook-id").to_string());
            accepted.insert(contact.to_string(), body);
        }
    }
    let duplicates = got.iter().filter(|r| r.status == 200).count() - successes.len();
    println!(
        "chaos: acknowledged {}, receiver got {} requests ({} failed on purpose), {} duplicate successes",
        acknowledged.len(),
        got.len(),
        got.iter().filter(|r| r.status != 200).count(),
        duplicates
    );
}
