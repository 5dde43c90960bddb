//! PostgreSQL going away under load: every session of the database ended by the server
//! (`pg_terminate_backend`, the same "administrator command" error a fast shutdown sends),
//! then, when `ZAPHOOK_TEST_PG_RESTART` names the command that does it, a real restart of the
//! server. Alone in its test binary because a restart ends the sessions of every test on the
//! server. Nothing acknowledged may be lost, every request is answered 202 or 503 (never 500),
//! each contact's messages arrive in the order they were acknowledged, and the same process
//! serves again by itself.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::backend::TestDb;
use common::{TestReceiver, eventually, settings_on, start};

/// Contacts writing at once, each its messages one after another.
const WRITERS: usize = 6;

/// What the writers were answered: per contact, the bodies acknowledged in order, and every
/// status seen.
#[derive(Default)]
struct Answers {
    acknowledged: HashMap<String, Vec<String>>,
    statuses: HashMap<u16, usize>,
}

impl Answers {
    fn total_acknowledged(&self) -> usize {
        self.acknowledged.values().map(Vec::len).sum()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_restart_under_load_loses_nothing_acknowledged() {
    let Some(db) = TestDb::postgres() else { return };
    let receiver = TestReceiver::start().await;
    let app = start(settings_on(&db)).await;
    let conn = app.sandbox_connection("A").await;
    app.webhook(&receiver.url(), &["message.created"]).await;

    let answers = Arc::new(Mutex::new(Answers::default()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let (client, token) = (app.client.clone(), app.token.clone());
        let url = app.url(&format!("/api/v1/connections/{conn}/sandbox/inbound"));
        let (answers, stopped) = (Arc::clone(&answers), stopped.clone());
        writers.spawn(async move {
            let from = format!("55119000000{w:02}");
            for i in 0.. {
                if *stopped.borrow() {
                    break;
                }
                let body = format!("{w}-{i}");
                let status = common::post(
                    &client,
                    &token,
                    url.clone(),
                    serde_json::json!({"from": from, "name": "Contact", "body": body}),
                )
                .await
                .unwrap_or(0);
                {
                    let mut answers = answers.lock().unwrap();
                    *answers.statuses.entry(status).or_default() += 1;
                    if status == 202 {
                        answers
                            .acknowledged
                            .entry(from.clone())
                            .or_default()
                            .push(body);
                        continue;
                    }
                }
                // What a client told to come back later does.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }
    let acknowledged = || answers.lock().unwrap().total_acknowledged();
    let more_than = |n: usize| {
        let answers = Arc::clone(&answers);
        move || {
            let answers = Arc::clone(&answers);
            async move { answers.lock().unwrap().total_acknowledged() > n }
        }
    };
    eventually("load to run", more_than(100)).await;

    // The server ends every session of the database, the store's among them.
    db.sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
    eventually(
        "writes to be acknowledged again",
        more_than(acknowledged() + 100),
    )
    .await;

    match std::env::var("ZAPHOOK_TEST_PG_RESTART") {
        Ok(command) => {
            let restarted = tokio::task::spawn_blocking(move || {
                std::process::Command::new("sh")
                    .args(["-c", &command])
                    .status()
            })
            .await
            .unwrap()
            .expect("the restart command runs");
            assert!(
                restarted.success(),
                "the restart command failed: {restarted}"
            );
            eventually(
                "writes to be acknowledged after the restart",
                more_than(acknowledged() + 100),
            )
            .await;
        }
        Err(_) => eprintln!(
            "no real restart of PostgreSQL: set ZAPHOOK_TEST_PG_RESTART to the command that restarts it"
        ),
    }
    stop.send(true).unwrap();
    while writers.join_next().await.is_some() {}

    let answers = std::mem::take(&mut *answers.lock().unwrap());
    eprintln!(
        "answers: {:?}; {} acknowledged",
        answers.statuses,
        answers.total_acknowledged()
    );
    assert!(
        answers.statuses.keys().all(|s| *s == 202 || *s == 503),
        "every request is acknowledged or asked to come back: {:?}",
        answers.statuses
    );
    // Every acknowledged message arrives, each contact's in the order acknowledged.
    let all = receiver
        .wait_until(|got| {
            let bodies: Vec<String> = got.iter().map(body).collect();
            answers
                .acknowledged
                .values()
                .flatten()
                .all(|b| bodies.contains(b))
        })
        .await;
    let mut duplicates = 0;
    for (from, sent) in &answers.acknowledged {
        let mut seen = Vec::new();
        for r in all
            .iter()
            .filter(|r| r.json()["contact"]["phoneNumber"] == *from)
        {
            let b = body(r);
            if seen.contains(&b) {
                duplicates += 1;
            } else {
                seen.push(b);
            }
        }
        // Messages answered 503 may have committed all the same: only acknowledged ones count.
        let acknowledged: Vec<&String> = seen.iter().filter(|b| sent.contains(b)).collect();
        assert_eq!(
            acknowledged,
            sent.iter().collect::<Vec<_>>(),
            "{from}'s messages"
        );
    }
    eprintln!(
        "{} deliveries arrived, {duplicates} of them again",
        all.len()
    );
    app.stop().await;
}

fn body(r: &common::Received) -> String {
    r.json()["messageBody"].as_str().unwrap_or("").to_string()
}
