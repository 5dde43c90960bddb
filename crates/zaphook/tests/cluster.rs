//! Three `zaphook serve` processes on one PostgreSQL database, load spread over them, one
//! killed with SIGKILL mid-way, while the receiver fails a fifth of the requests at random:
//! every acknowledged message is delivered, each contact's messages arrive in order,
//! duplicates are counted and printed. Runs when `ZAPHOOK_TEST_DATABASE_URL` is set.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::backend::TestDb;
use common::{ServerProcess, TestReceiver, post};
use serde_json::json;

const TOKEN: &str = "cluster-test-token";
/// The key every process seals secrets with: one database, one key.
const SECRET_KEY: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";

fn spawn_server(db: &TestDb, url: &str) -> ServerProcess {
    // Enough quick retries that a 20 % failure rate never exhausts them.
    let schedule = ["100"; 30].join(",");
    ServerProcess::start(
        db.dir.path(),
        &[
            "--database-url",
            url,
            "--database-pool",
            "4",
            "--secret-key",
            SECRET_KEY,
            "--bootstrap-token",
            TOKEN,
            "--allow-private-targets",
            "--delivery-timeout",
            "1",
            "--delivery-lease",
            "2",
            "--retry-schedule-ms",
            &schedule,
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_processes_one_killed_deliver_everything_acknowledged_in_order() {
    let Some(db) = TestDb::postgres() else { return };
    let url = db.database_url().unwrap();
    let receiver = TestReceiver::with_responder(|_| {
        if rand::random::<f64>() < 0.2 {
            500
        } else {
            200
        }
    })
    .await;
    let mut servers: Vec<Option<ServerProcess>> =
        (0..3).map(|_| Some(spawn_server(&db, &url))).collect();
    let bases: Vec<String> = servers
        .iter()
        .map(|s| s.as_ref().unwrap().base.clone())
        .collect();
    let client = reqwest::Client::new();
    let created = [
        (
            "/api/v1/connections",
            json!({"name": "A", "channel": "sandbox"}),
        ),
        ("/api/v1/webhooks", json!({"url": receiver.url()})),
    ];
    for (path, body) in created {
        let status = post(&client, TOKEN, format!("{}{path}", bases[0]), body).await;
        assert_eq!(status, Some(201));
    }

    // Ten contacts each send 30 messages in order, each through the next process; a message
    // a process does not acknowledge (it was killed) is sent to the next one, as a load
    // balancer would.
    let acked = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for contact in 0..10 {
        let (client, bases, acked) = (client.clone(), bases.clone(), acked.clone());
        senders.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for n in 0..30usize {
                let body = format!("c{contact}-{n:02}");
                let message = json!({"from": format!("55119000001{contact:02}"), "body": body});
                for attempt in 0..bases.len() {
                    let base = &bases[(contact + n + attempt) % bases.len()];
                    let url = format!("{base}/api/v1/connections/1/sandbox/inbound");
                    if post(&client, TOKEN, url, message.clone()).await == Some(202) {
                        acked.fetch_add(1, Ordering::SeqCst);
                        mine.push(body);
                        break;
                    }
                }
            }
            mine
        }));
    }
    common::eventually("part of the load to be acknowledged", || async {
        acked.load(Ordering::SeqCst) >= 100
    })
    .await;
    servers[2].take().unwrap().kill();
    let mut acknowledged = HashSet::new();
    for s in senders {
        acknowledged.extend(s.await.unwrap());
    }
    assert_eq!(acknowledged.len(), 300, "the two left took every message");

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
    for server in servers.into_iter().flatten() {
        server.kill();
    }

    // Order per contact: a message first arrives only after the one before it was accepted.
    let mut seen = HashSet::new();
    let mut accepted: HashMap<String, String> = HashMap::new();
    let mut successes = HashSet::new();
    for r in &got {
        let body = r.json()["messageBody"].as_str().unwrap().to_string();
        let (contact, n) = body.split_once('-').unwrap();
        if seen.insert(body.clone()) && n != "00" {
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
        "cluster: acknowledged {}, receiver got {} requests ({} failed on purpose), {} duplicate successes",
        acknowledged.len(),
        got.len(),
        got.iter().filter(|r| r.status != 200).count(),
        duplicates
    );
}
