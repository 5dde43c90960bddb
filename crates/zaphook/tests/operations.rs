//! Operating zaphook: `zaphook listen`, replay, endpoints disabled after failing too long, rate
//! limits, retention, metrics, and a SIGTERM that drains, gives back what it could not finish
//! and exits 0.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TestReceiver, eventually, spawn_app, spawn_app_with};
use serde_json::json;
use zaphook::delivery::sign;
use zaphook::listen::{ListenOptions, serve};

/// A writer the test can read back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

async fn start_listen(options: ListenOptions) -> (String, Captured) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let out = Captured::default();
    let writer = Box::new(out.clone());
    tokio::spawn(async move {
        let _ = serve(listener, options, writer, std::future::pending()).await;
    });
    (url, out)
}

fn options(secret: Option<&str>) -> ListenOptions {
    ListenOptions {
        secret: secret.map(str::to_string),
        forward_to: None,
        status: 200,
        tolerance_secs: 300,
    }
}

#[tokio::test]
async fn listen_verifies_prints_answers_and_forwards() {
    let app = spawn_app_with(|s| s.delivery.retry.schedule = vec![Duration::from_secs(60)]).await;
    let conn = app.sandbox_connection("A").await;
    let secret = sign::generate_secret();

    // Verified and printed.
    let (url, out) = start_listen(options(Some(&secret))).await;
    app.ok(
        "/api/v1/webhooks",
        json!({"url": url, "secret": secret}),
        201,
    )
    .await;
    app.inbound(conn, "5511900000001", "olá listen").await;
    eventually("listen to print the event", || async {
        out.text().contains("olá listen")
    })
    .await;
    let text = out.text();
    assert!(text.contains("message.created"), "{text}");
    assert!(text.contains("signature ok"), "{text}");
    assert!(text.contains("\"messageBody\": \"olá listen\""), "{text}");

    // A wrong secret is reported, and the chosen status is answered.
    let wrong = sign::generate_secret();
    let (url, out) = start_listen(ListenOptions {
        status: 503,
        ..options(Some(&wrong))
    })
    .await;
    let hook = app
        .ok(
            "/api/v1/webhooks",
            json!({"url": url, "secret": secret}),
            201,
        )
        .await;
    app.inbound(conn, "5511900000002", "second").await;
    eventually("listen to print the second event", || async {
        out.text().contains("second")
    })
    .await;
    assert!(out.text().contains("signature INVALID"), "{}", out.text());
    let deliveries = format!("/api/v1/webhooks/{}/deliveries", hook["id"]);
    eventually("the 503 to be logged", || async {
        let (_, page) = app.get(&deliveries).await;
        page["items"][0]["lastStatusCode"] == 503
    })
    .await;

    // Forwarded with the webhook headers; the forward's answer is answered.
    let receiver = TestReceiver::start().await;
    receiver.answer(&[202]);
    let (url, out) = start_listen(ListenOptions {
        forward_to: Some(receiver.url()),
        ..options(Some(&secret))
    })
    .await;
    app.ok(
        "/api/v1/webhooks",
        json!({"url": url, "secret": secret}),
        201,
    )
    .await;
    app.inbound(conn, "5511900000003", "third").await;
    let got = receiver
        .wait_until(|all| all.iter().any(|r| r.json()["messageBody"] == "third"))
        .await;
    let forwarded = got
        .iter()
        .find(|r| r.json()["messageBody"] == "third")
        .unwrap();
    common::verify(&secret, forwarded).expect("forwarded requests keep their signature");
    eventually("listen to print the forward's answer", || async {
        out.text().contains("→ 202")
    })
    .await;
}

#[tokio::test]
async fn replay_queues_dead_deliveries_and_follows_them() {
    let app = spawn_app_with(|s| s.delivery.retry.schedule = vec![Duration::from_millis(50)]).await;
    let receiver = TestReceiver::start().await;
    receiver.answer(&[500, 500, 500, 500]);
    let conn = app.sandbox_connection("A").await;
    let (hook, _) = app.webhook(&receiver.url(), &["message.created"]).await;
    app.inbound(conn, "5511900000001", "one").await;
    app.inbound(conn, "5511900000002", "two").await;
    let dead = format!("/api/v1/webhooks/{hook}/deliveries?status=dead");
    eventually("both deliveries to die", || async {
        let (_, page) = app.get(&dead).await;
        page["items"].as_array().is_some_and(|a| a.len() == 2)
    })
    .await;

    let since = zaphook::clock::Clock::System.now_ms() - 60_000;
    let (queued, mark) = zaphook::replay::queue(&app.store, hook, since)
        .await
        .unwrap();
    assert_eq!(queued, 2);
    let done = zaphook::replay::follow(&app.store, hook, mark, queued)
        .await
        .unwrap();
    assert_eq!(done.delivered, 2);
    assert_eq!(done.total(), 2);
    assert!(matches!(
        zaphook::replay::queue(&app.store, 999, since).await,
        Err(zaphook::replay::ReplayError::UnknownWebhook(999))
    ));
}

#[tokio::test]
async fn an_endpoint_failing_too_long_is_disabled() {
    let app = spawn_app_with(|s| {
        s.delivery.disable_after = Duration::from_millis(300);
        s.delivery.retry.schedule = vec![Duration::from_millis(100); 20];
    })
    .await;
    let receiver = TestReceiver::with_responder(|_| 500).await;
    let conn = app.sandbox_connection("A").await;
    let (hook, _) = app.webhook(&receiver.url(), &["message.created"]).await;
    app.inbound(conn, "5511900000001", "never").await;
    eventually("the endpoint to be disabled", || async {
        let (_, w) = app.get(&format!("/api/v1/webhooks/{hook}")).await;
        w["enabled"] == false
    })
    .await;
    let (_, w) = app.get(&format!("/api/v1/webhooks/{hook}")).await;
    assert!(
        w["disabledReason"]
            .as_str()
            .unwrap()
            .contains("no successful delivery"),
        "{w}"
    );
    let (_, metrics) = app.get("/metrics").await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("zaphook_webhooks_disabled_total")
    );
}

#[tokio::test]
async fn a_rate_limited_endpoint_gets_everything_no_faster_than_its_limit() {
    let app = spawn_app().await;
    let receiver = TestReceiver::start().await;
    let conn = app.sandbox_connection("A").await;
    app.ok(
        "/api/v1/webhooks",
        json!({"url": receiver.url(), "rateLimit": 5, "ordering": "none"}),
        201,
    )
    .await;
    let started = Instant::now();
    for i in 0..12 {
        app.inbound(conn, &format!("55119000{i:05}"), &format!("m{i}"))
            .await;
    }
    receiver.wait_for(12).await;
    // 5 at once, then 5 per second: the 12th cannot arrive before 1.4 s.
    assert!(started.elapsed() >= Duration::from_millis(1300));
}

#[tokio::test]
async fn finished_deliveries_past_the_retention_are_pruned() {
    let app = spawn_app_with(|s| {
        s.housekeeping.retention = Duration::ZERO;
        s.housekeeping.interval = Duration::from_millis(100);
        s.delivery.retry.schedule = vec![Duration::from_secs(60)];
    })
    .await;
    let receiver = TestReceiver::with_responder(|r| {
        if r.json()["messageBody"] == "keep" {
            500
        } else {
            200
        }
    })
    .await;
    let conn = app.sandbox_connection("A").await;
    let (hook, _) = app.webhook(&receiver.url(), &["message.created"]).await;
    app.inbound(conn, "5511900000001", "prune me").await;
    app.inbound(conn, "5511900000002", "keep").await;
    receiver.wait_for(2).await;
    let list = format!("/api/v1/webhooks/{hook}/deliveries");
    eventually("the delivered one to be pruned", || async {
        let (_, page) = app.get(&list).await;
        page["items"].as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    let (_, page) = app.get(&list).await;
    assert_eq!(page["items"][0]["status"], "failed");
}

#[tokio::test]
async fn metrics_describe_deliveries_and_ingest() {
    let app = spawn_app().await;
    let receiver = TestReceiver::start().await;
    let conn = app.sandbox_connection("A").await;
    app.webhook(&receiver.url(), &["message.created"]).await;
    app.inbound(conn, "5511900000001", "count me").await;
    receiver.wait_for(1).await;
    eventually("the metrics to show the delivery", || async {
        let resp = app.client.get(app.url("/metrics")).send().await.unwrap();
        let text = resp.text().await.unwrap();
        text.contains(
            "zaphook_delivery_attempts_total{outcome=\"delivered\",event_type=\"message.created\"}",
        ) && text.contains("zaphook_ingest_commit_seconds_bucket")
            && text.contains("zaphook_delivery_attempt_seconds_bucket")
    })
    .await;
}

#[tokio::test]
async fn sigterm_drains_gives_back_unfinished_attempts_and_exits_zero() {
    // An endpoint that never answers holds an attempt in flight.
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_url = format!("http://{}/hook", hang.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hang.accept().await {
            held.push(socket);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("zaphook.log");
    let server = common::ServerProcess::start_with(
        dir.path(),
        &[
            "--bootstrap-token",
            "t0k3n",
            "--allow-private-targets",
            "--delivery-timeout",
            "60",
            "--shutdown-grace",
            "1",
        ],
        &[],
        Some(&log),
    );
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth("t0k3n")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    post(
        "/api/v1/connections",
        json!({"name": "A", "channel": "sandbox"}),
    )
    .await
    .unwrap();
    post("/api/v1/webhooks", json!({"url": hang_url}))
        .await
        .unwrap();
    post(
        "/api/v1/connections/1/sandbox/inbound",
        json!({"from": "5511900000001", "body": "x"}),
    )
    .await
    .unwrap();
    eventually("the attempt to be in flight", || async {
        let resp = client
            .get(format!("{base}/api/v1/webhooks/1/deliveries"))
            .bearer_auth("t0k3n")
            .send()
            .await
            .unwrap();
        let page: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        page["items"][0]["status"] == "delivering"
    })
    .await;

    let status = server.terminate();
    assert_eq!(
        status.code(),
        Some(0),
        "zaphook exits 0 on SIGTERM ({status}); its log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // The unfinished attempt was given back: due at once, not left to its lease.
    let store = zaphook::app::open_store(
        dir.path(),
        None,
        2,
        zaphook::store::sqlite::Durability::Full,
        None,
    )
    .unwrap();
    let page = zaphook::store::read(&store, |tx| tx.deliveries(1, None, None, 10))
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].status, zaphook::domain::DeliveryStatus::Pending);
    assert_eq!(page[0].attempts, 0);
}

#[tokio::test]
async fn a_lease_shorter_than_the_request_timeout_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = common::test_settings(dir.path().to_path_buf());
    settings.http.request_timeout = Duration::from_secs(30);
    settings.delivery.lease = Duration::from_secs(20);
    let refused = zaphook::app::Application::build(settings).await;
    let Err(e) = refused else {
        panic!("a lease shorter than the request timeout must be refused");
    };
    assert!(
        e.to_string().contains("must outlast the request timeout"),
        "{e}"
    );
}
