//! Misbehaving receivers, each a raw TCP server: refused, reset, hanging, trickling, redirect,
//! 4xx, 5xx, 429/503 with Retry-After, a huge body. Every failure is explained in the delivery
//! log; a hanging endpoint does not slow a healthy one beside it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{TestApp, TestReceiver, eventually, spawn_app_with, verify};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy)]
enum Fault {
    ResetBeforeStatus,
    ResetMidBody,
    Hang,
    Trickle,
    Redirect,
    Status(u16, Option<u64>),
    HugeBody,
}

/// Reads one request (headers and a content-length body).
async fn read_request(socket: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let Ok(n) = socket.read(&mut chunk).await else {
            return false;
        };
        if n == 0 {
            return false;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return true;
            }
        }
    }
}

fn reset(socket: TcpStream) {
    let _ = socket.set_zero_linger();
    drop(socket);
}

/// A receiver that misbehaves in one way; answers its URL and a count of requests.
async fn faulty(fault: Fault) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                if !read_request(&mut socket).await {
                    return;
                }
                seen.fetch_add(1, Ordering::SeqCst);
                match fault {
                    Fault::ResetBeforeStatus => {
                        let _ = socket.write_all(b"HTTP/1.1 20").await;
                        reset(socket);
                    }
                    Fault::ResetMidBody => {
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\npartial")
                            .await;
                        let _ = socket.flush().await;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        reset(socket);
                    }
                    Fault::Hang => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    Fault::Trickle => {
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
                            .await;
                        for _ in 0..100 {
                            if socket.write_all(b".").await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                    Fault::Redirect => {
                        let _ = socket
                            .write_all(b"HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:1/elsewhere\r\ncontent-length: 0\r\n\r\n")
                            .await;
                    }
                    Fault::Status(code, retry_after) => {
                        let extra = retry_after
                            .map(|s| format!("retry-after: {s}\r\n"))
                            .unwrap_or_default();
                        let answer = format!(
                            "HTTP/1.1 {code} Whatever\r\n{extra}content-length: 9\r\n\r\nno thanks"
                        );
                        let _ = socket.write_all(answer.as_bytes()).await;
                    }
                    Fault::HugeBody => {
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10485760\r\n\r\n")
                            .await;
                        let block = vec![b'x'; 64 * 1024];
                        for _ in 0..160 {
                            if socket.write_all(&block).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (format!("http://{addr}/hook"), count)
}

async fn app_with_schedule(schedule: &[u64]) -> TestApp {
    let schedule: Vec<Duration> = schedule
        .iter()
        .map(|ms| Duration::from_millis(*ms))
        .collect();
    spawn_app_with(move |s| {
        s.http.request_timeout = Duration::from_secs(1);
        s.delivery.lease = Duration::from_secs(3);
        s.delivery.retry.schedule = schedule;
    })
    .await
}

/// Sends one message to an endpoint at `url` and answers the delivery after its first attempt.
async fn first_attempt(app: &TestApp, url: &str) -> Value {
    let conn = app.sandbox_connection("A").await;
    let (hook, _) = app.webhook(url, &["message.created"]).await;
    app.inbound(conn, "5511900000001", "hello").await;
    let mut found = Value::Null;
    let list = format!("/api/v1/webhooks/{hook}/deliveries");
    eventually("the first attempt to be logged", || async {
        let (_, page) = app.get(&list).await;
        match page["items"][0]["id"].as_str() {
            Some(id) => {
                let (_, d) = app.get(&format!("/api/v1/deliveries/{id}")).await;
                d["attemptsLog"].as_array().is_some_and(|a| !a.is_empty())
            }
            None => false,
        }
    })
    .await;
    let (_, page) = app.get(&list).await;
    let id = page["items"][0]["id"].as_str().unwrap();
    let (_, d) = app.get(&format!("/api/v1/deliveries/{id}")).await;
    if d.is_object() {
        found = d;
    }
    found
}

fn attempt(d: &Value) -> &Value {
    &d["attemptsLog"][0]
}

fn error(d: &Value) -> String {
    attempt(d)["error"].as_str().unwrap_or("").to_string()
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_failure() {
    let app = app_with_schedule(&[60_000]).await;
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let d = first_attempt(&app, &url).await;
    assert_eq!(d["status"], "failed");
    assert_eq!(attempt(&d)["statusCode"], Value::Null);
    assert!(error(&d).starts_with("connect"), "{d}");
    assert!(d["nextAttemptAt"].is_string());
}

#[tokio::test]
async fn a_reset_before_or_during_the_answer_is_a_failure() {
    let app = app_with_schedule(&[60_000]).await;
    let (url, _) = faulty(Fault::ResetBeforeStatus).await;
    let d = first_attempt(&app, &url).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(attempt(&d)["statusCode"], Value::Null);
    assert!(!error(&d).is_empty());

    let app = app_with_schedule(&[60_000]).await;
    let (url, _) = faulty(Fault::ResetMidBody).await;
    let d = first_attempt(&app, &url).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(attempt(&d)["statusCode"], 200);
    assert!(error(&d).starts_with("body"), "{d}");
}

#[tokio::test]
async fn an_answer_that_never_comes_or_trickles_times_out() {
    for fault in [Fault::Hang, Fault::Trickle] {
        let app = app_with_schedule(&[60_000]).await;
        let (url, _) = faulty(fault).await;
        let d = first_attempt(&app, &url).await;
        assert_eq!(d["status"], "failed", "{d}");
        assert!(error(&d).starts_with("timeout"), "{d}");
        assert!(attempt(&d)["latencyMs"].as_i64().unwrap() >= 1000);
    }
}

#[tokio::test]
async fn redirects_are_not_followed_and_non_2xx_statuses_fail() {
    for (fault, code) in [
        (Fault::Redirect, 302),
        (Fault::Status(400, None), 400),
        (Fault::Status(404, None), 404),
        (Fault::Status(500, None), 500),
    ] {
        let app = app_with_schedule(&[60_000]).await;
        let (url, count) = faulty(fault).await;
        let d = first_attempt(&app, &url).await;
        assert_eq!(d["status"], "failed", "{d}");
        assert_eq!(d["lastStatusCode"], code);
        assert_eq!(attempt(&d)["statusCode"], code);
        assert_eq!(count.load(Ordering::SeqCst), 1);
        if code != 302 {
            assert_eq!(attempt(&d)["responseBody"], "no thanks");
        }
    }
}

#[tokio::test]
async fn retry_after_is_honoured_within_base_and_twice_base() {
    for (code, retry_after, expected_delay) in [(429, 1, 1000), (503, 3600, 1600)] {
        let app = app_with_schedule(&[800, 60_000]).await;
        let (url, _) = faulty(Fault::Status(code, Some(retry_after))).await;
        let d = first_attempt(&app, &url).await;
        let at = zaphook::domain::rfc3339::parse(attempt(&d)["at"].as_str().unwrap()).unwrap();
        let next = zaphook::domain::rfc3339::parse(d["nextAttemptAt"].as_str().unwrap()).unwrap();
        let latency = attempt(&d)["latencyMs"].as_i64().unwrap();
        let delay = next - at - latency;
        assert!(
            (expected_delay - 5..=expected_delay + 20).contains(&delay),
            "{code} with Retry-After {retry_after}: next attempt after {delay} ms"
        );
    }
}

#[tokio::test]
async fn a_huge_answer_is_read_only_up_to_4_kib() {
    let app = app_with_schedule(&[60_000]).await;
    let (url, _) = faulty(Fault::HugeBody).await;
    let d = first_attempt(&app, &url).await;
    assert_eq!(d["status"], "delivered", "{d}");
    assert_eq!(attempt(&d)["responseBody"].as_str().unwrap().len(), 4096);
}

#[tokio::test]
async fn a_hanging_endpoint_does_not_slow_a_healthy_one() {
    let app = spawn_app_with(|s| {
        s.http.request_timeout = Duration::from_secs(5);
        s.delivery.lease = Duration::from_secs(8);
        s.delivery.per_endpoint = 8;
    })
    .await;
    let (hanging, hung) = faulty(Fault::Hang).await;
    let healthy = TestReceiver::start().await;
    let conn = app.sandbox_connection("A").await;
    let (hanging_id, _) = app.webhook(&hanging, &["message.created"]).await;
    app.webhook(&healthy.url(), &["message.created"]).await;
    for i in 0..40 {
        app.inbound(conn, &format!("55119000{i:05}"), &format!("m{i}"))
            .await;
    }
    healthy.wait_for(40).await;
    // Every healthy delivery arrived while the hanging endpoint's first attempts are still
    // waiting for their timeout: not one of them has finished.
    eventually("the hanging endpoint to hold its attempts", || async {
        hung.load(Ordering::SeqCst) >= 8
    })
    .await;
    let (_, page) = app
        .get(&format!(
            "/api/v1/webhooks/{hanging_id}/deliveries?limit=200"
        ))
        .await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 40);
    assert!(items.iter().all(|d| d["attempts"] == 0), "{page}");
    // The hanging endpoint never had more attempts in flight than its cap.
    assert_eq!(hung.load(Ordering::SeqCst), 8);
}

#[tokio::test]
async fn a_rotated_secret_signs_beside_the_new_one() {
    let app = spawn_app_with(|_| {}).await;
    let receiver = TestReceiver::start().await;
    let conn = app.sandbox_connection("A").await;
    let (hook, old) = app.webhook(&receiver.url(), &["message.created"]).await;
    let rotated = app
        .ok(
            &format!("/api/v1/webhooks/{hook}/rotate-secret"),
            json!({}),
            200,
        )
        .await;
    let new = rotated["secret"].as_str().unwrap();
    assert_ne!(new, old);
    app.inbound(conn, "5511900000001", "after rotation").await;
    let got = receiver.wait_for(1).await;
    let signatures: Vec<&str> = got[0].header("webhook-signature").split(' ').collect();
    assert_eq!(signatures.len(), 2);
    verify(new, &got[0]).expect("the new secret verifies");
    verify(&old, &got[0]).expect("the old secret still verifies during the overlap");
}

#[tokio::test]
async fn recover_requeues_dead_deliveries_since_a_time() {
    let app = app_with_schedule(&[100]).await;
    let receiver = TestReceiver::start().await;
    receiver.answer(&[500, 500]);
    let conn = app.sandbox_connection("A").await;
    let (hook, _) = app.webhook(&receiver.url(), &["message.created"]).await;
    app.inbound(conn, "5511900000001", "lost?").await;
    let dead = format!("/api/v1/webhooks/{hook}/deliveries?status=dead");
    eventually("the delivery to die", || async {
        let (_, page) = app.get(&dead).await;
        page["items"].as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    let since =
        zaphook::domain::rfc3339::format(zaphook::clock::Clock::System.now_ms() - 3_600_000);
    let (s, body) = app
        .post(
            &format!("/api/v1/webhooks/{hook}/recover"),
            json!({"since": since}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["queued"], 1);
    let got = receiver.wait_for(3).await;
    assert_eq!(got[2].json()["messageBody"], "lost?");
    let (s, _) = app
        .post(
            &format!("/api/v1/webhooks/{hook}/recover"),
            json!({"since": "yesterday"}),
        )
        .await;
    assert_eq!(s, 422);
}
