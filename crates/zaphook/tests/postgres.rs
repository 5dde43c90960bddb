//! What only a shared database shows: several zaphook processes (here, applications in one
//! test process, each with its own store, connections and workers) on one PostgreSQL, racing
//! for the same rows and the same deliveries, and the database going away under them. Each
//! test runs in a scratch schema when `ZAPHOOK_TEST_DATABASE_URL` is set, and says it was
//! skipped otherwise.

mod common;

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};
use zaphook::settings::Settings;

use common::backend::TestDb;
use common::proxy::Proxy;
use common::{TestApp, TestReceiver, eventually, settings_on, start};

/// `count` applications on one database, the first of which has set it up.
async fn cluster(db: &TestDb, count: usize, change: impl Fn(&mut Settings)) -> Vec<TestApp> {
    let mut apps = Vec::new();
    for _ in 0..count {
        let mut settings = settings_on(db);
        settings.database_pool = 6;
        change(&mut settings);
        apps.push(start(settings).await);
    }
    apps
}

/// The number of items of a list answered by `GET path`.
async fn listed(app: &TestApp, path: &str) -> Vec<Value> {
    let (status, page) = app.get(path).await;
    assert_eq!(status, 200, "GET {path}: {page}");
    page["items"]
        .as_array()
        .or(page.as_array())
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_racing_on_a_new_contact_make_one_contact_and_one_ticket() {
    let Some(db) = TestDb::postgres() else { return };
    let apps = cluster(&db, 3, |_| {}).await;
    let conn = apps[0].sandbox_connection("A").await;
    // 30 first messages of one new number at once, spread over three processes.
    let sends: Vec<_> = (0..30)
        .map(|i| {
            post_inbound(
                &apps[i % apps.len()],
                conn,
                "5511900000001",
                &format!("m{i}"),
            )
        })
        .collect();
    for send in sends {
        assert_eq!(send.await.unwrap(), 202);
    }
    let contacts = listed(&apps[1], "/api/v1/contacts?number=5511900000001").await;
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    let tickets = listed(&apps[2], "/api/v1/tickets").await;
    assert_eq!(tickets.len(), 1, "{tickets:?}");
    let id = tickets[0]["id"].as_i64().unwrap();
    let messages = listed(
        &apps[0],
        &format!("/api/v1/tickets/{id}/messages?limit=100"),
    )
    .await;
    assert_eq!(messages.len(), 30);
    // The contact exists now and its ticket is closed: the next messages race for its new
    // ticket alone.
    let (status, _) = apps[0]
        .patch(
            &format!("/api/v1/tickets/{id}"),
            json!({"status": "closed"}),
        )
        .await;
    assert_eq!(status, 200);
    let sends: Vec<_> = (0..30)
        .map(|i| {
            post_inbound(
                &apps[i % apps.len()],
                conn,
                "5511900000001",
                &format!("n{i}"),
            )
        })
        .collect();
    for send in sends {
        assert_eq!(send.await.unwrap(), 202);
    }
    let open = listed(&apps[1], "/api/v1/tickets?status=pending").await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_ne!(open[0]["id"].as_i64(), Some(id));
    for app in apps {
        app.stop().await;
    }
}

/// Hot tickets: a few contacts writing many messages at once through two processes, each
/// with several writers, so that group commits cross on the same tickets' rows and locks (and
/// sometimes deadlock). Every message is acknowledged, stored once and delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_writers_on_a_few_hot_tickets_all_succeed() {
    let Some(db) = TestDb::postgres() else { return };
    let receiver = TestReceiver::start().await;
    let apps = cluster(&db, 2, |s| s.database_pool = 8).await;
    let conn = apps[0].sandbox_connection("A").await;
    apps[0].webhook(&receiver.url(), &["message.created"]).await;
    const CONTACTS: usize = 3;
    const MESSAGES: usize = 400;
    let sends: Vec<_> = (0..MESSAGES)
        .map(|i| {
            let from = format!("55119000000{:02}", i % CONTACTS);
            post_inbound(&apps[i % apps.len()], conn, &from, &format!("h{i}"))
        })
        .collect();
    let mut statuses = HashMap::<u16, usize>::new();
    for send in sends {
        *statuses.entry(send.await.unwrap()).or_default() += 1;
    }
    assert_eq!(statuses, HashMap::from([(202, MESSAGES)]));
    // Delivered at least once each (a lease that ran out while its attempt's record waited
    // on the hot rows gives a duplicate).
    let bodies = |got: &[common::Received]| -> HashSet<String> {
        got.iter()
            .map(|r| r.json()["messageBody"].as_str().unwrap().to_string())
            .collect()
    };
    let got = receiver
        .wait_until(|got| bodies(got).len() == MESSAGES)
        .await;
    eprintln!("{} deliveries for {MESSAGES} messages", got.len());
    let tickets = listed(&apps[1], "/api/v1/tickets").await;
    assert_eq!(tickets.len(), CONTACTS, "{tickets:?}");
    for app in apps {
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processes_delivering_together_deliver_each_event_once_and_in_ticket_order() {
    let Some(db) = TestDb::postgres() else { return };
    let receiver = TestReceiver::start().await;
    let apps = cluster(&db, 2, |_| {}).await;
    let conn = apps[0].sandbox_connection("A").await;
    let (hook, _) = apps[0].webhook(&receiver.url(), &["message.created"]).await;
    // Three contacts write alternately, through both processes.
    let numbers = ["5511900000011", "5511900000012", "5511900000013"];
    let mut sent = 0;
    for round in 0..8 {
        let sends: Vec<_> = numbers
            .iter()
            .enumerate()
            .map(|(i, n)| post_inbound(&apps[(round + i) % 2], conn, n, &format!("{n}-{round}")))
            .collect();
        for send in sends {
            assert_eq!(send.await.unwrap(), 202);
        }
        sent += numbers.len();
    }
    let got = receiver.wait_for(sent).await;
    // Once each: no event is delivered twice (every receiver answered 200 at once).
    let ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "an event was delivered twice");
    assert_eq!(ids.len(), sent);
    // In order per ticket: the order of the outbox (the deliveries listed newest first).
    let mut outbox = listed(
        &apps[1],
        &format!("/api/v1/webhooks/{hook}/deliveries?limit=200"),
    )
    .await;
    outbox.reverse();
    let position: HashMap<String, usize> = outbox
        .iter()
        .enumerate()
        .map(|(i, d)| (d["eventId"].as_str().unwrap().to_string(), i))
        .collect();
    let mut last: HashMap<i64, usize> = HashMap::new();
    for r in &got {
        let ticket = r.json()["ticket"]["id"].as_i64().unwrap();
        let at = position[r.header("webhook-id")];
        if let Some(before) = last.insert(ticket, at) {
            assert!(
                before < at,
                "ticket {ticket}: an event arrived before an older one"
            );
        }
    }
    for app in apps {
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_answers_503_loses_nothing_and_passes_without_a_restart() {
    let Some(db) = TestDb::postgres() else { return };
    let url = db.database_url().unwrap();
    let target = {
        let parsed = url::Url::parse(&url).unwrap();
        let host = parsed.host_str().unwrap().to_string();
        tokio::net::lookup_host((host, parsed.port().unwrap_or(5432)))
            .await
            .unwrap()
            .next()
            .unwrap()
    };
    let proxy = Proxy::start(target).await;
    let receiver = TestReceiver::start().await;
    let mut settings = settings_on(&db);
    settings.database_url = Some(proxy.url_for(&url));
    let app = start(settings).await;
    let conn = app.sandbox_connection("A").await;
    app.webhook(&receiver.url(), &["message.created"]).await;
    app.inbound(conn, "5511900000001", "before").await;
    receiver.wait_for(1).await;

    proxy.cut();
    let (status, problem) = app
        .post(
            &format!("/api/v1/connections/{conn}/sandbox/inbound"),
            json!({"from": "5511900000001", "body": "during"}),
        )
        .await;
    assert_eq!(status, 503, "{problem}");
    let during = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(during.status(), 503);
    let refused = app
        .client
        .post(app.url(&format!("/api/v1/connections/{conn}/sandbox/inbound")))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body(json!({"from": "5511900000001", "body": "during"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));

    // Back: the same process serves again and delivers, without a restart.
    proxy.restore();
    eventually("the database is reachable again", || async {
        let (status, _) = app
            .post(
                &format!("/api/v1/connections/{conn}/sandbox/inbound"),
                json!({"from": "5511900000001", "body": "after"}),
            )
            .await;
        status == 202
    })
    .await;
    let got = receiver
        .wait_until(|all| all.iter().any(|r| r.json()["messageBody"] == "after"))
        .await;
    let bodies: Vec<String> = got
        .iter()
        .map(|r| r.json()["messageBody"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(bodies[0], "before");
    assert!(!bodies.contains(&"during".to_string()), "{bodies:?}");
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    app.stop().await;
}

/// Posts a sandbox message in a task of its own (so that many are in flight at once);
/// answers the status.
fn post_inbound(app: &TestApp, conn: i64, from: &str, body: &str) -> tokio::task::JoinHandle<u16> {
    let request = app
        .client
        .post(app.url(&format!("/api/v1/connections/{conn}/sandbox/inbound")))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body(json!({"from": from, "name": "Contact", "body": body}).to_string());
    tokio::spawn(async move {
        match request.send().await {
            Ok(answer) => answer.status().as_u16(),
            Err(_) => 0,
        }
    })
}
