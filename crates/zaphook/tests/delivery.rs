//! Delivery behaviour against a real receiver: retries keep the event id, one ticket's events
//! wait for each other while other tickets flow, a dead worker's lease expires and the event
//! is delivered, 410 disables the endpoint, the last failure is dead and can be retried, the
//! whole retry schedule is followed on a clock the test moves.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use common::{TestReceiver, eventually, spawn_app, spawn_app_on, spawn_app_with, start, verify};
use serde_json::json;
use zaphook::clock::Clock;
use zaphook::delivery::retry::RetryPolicy;
use zaphook::domain::records::rfc3339;
use zaphook::jitter::Jitter;
use zaphook::store;

#[tokio::test]
async fn a_failed_delivery_is_retried_with_the_same_webhook_id() {
    let app = spawn_app().await;
    let receiver = TestReceiver::start().await;
    receiver.answer(&[500]);
    let conn = app.sandbox_connection("A").await;
    let (hook, secret) = app.webhook(&receiver.url(), &["message.created"]).await;
    app.inbound(conn, "5511900000001", "first").await;

    let got = receiver.wait_for(2).await;
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    assert_eq!(got[0].body, got[1].body);
    for r in &got {
        verify(&secret, r).unwrap();
    }

    // The log explains both attempts.
    let delivery_id = eventually_delivered(&app, hook).await;
    let (_, detail) = app.get(&format!("/api/v1/deliveries/{delivery_id}")).await;
    assert_eq!(detail["status"], "delivered");
    assert_eq!(detail["attempts"], 2);
    assert_eq!(detail["eventType"], "message.created");
    assert_eq!(detail["payload"]["messageBody"], "first");
    let log = detail["attemptsLog"].as_array().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["statusCode"], 500);
    assert_eq!(log[1]["statusCode"], 200);
    assert_eq!(detail["eventId"], got[0].header("webhook-id"));
}

async fn eventually_delivered(app: &common::TestApp, hook: i64) -> String {
    let path = format!("/api/v1/webhooks/{hook}/deliveries?status=delivered");
    eventually("the delivery to be recorded as delivered", || async {
        let (_, page) = app.get(&path).await;
        page["items"][0]["id"].is_string()
    })
    .await;
    let (_, page) = app.get(&path).await;
    page["items"][0]["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_tickets_next_event_waits_while_other_tickets_flow() {
    let app = spawn_app().await;
    let failures = Arc::new(AtomicUsize::new(0));
    let f = failures.clone();
    // The first message of ticket A fails three times; everything else succeeds.
    let receiver = TestReceiver::with_responder(move |r| {
        if r.json()["messageBody"] == "a1" && f.fetch_add(1, Ordering::SeqCst) < 3 {
            500
        } else {
            200
        }
    })
    .await;
    let conn = app.sandbox_connection("A").await;
    app.webhook(&receiver.url(), &["message.created"]).await;
    app.inbound(conn, "5511900000001", "a1").await;
    app.inbound(conn, "5511900000001", "a2").await;
    app.inbound(conn, "5511900000002", "b1").await;
    app.inbound(conn, "5511900000002", "b2").await;

    let got = receiver
        .wait_until(|all| {
            all.iter()
                .filter(|r| r.json()["messageBody"] == "a2")
                .count()
                == 1
        })
        .await;
    let bodies: Vec<String> = got
        .iter()
        .map(|r| r.json()["messageBody"].as_str().unwrap().to_string())
        .collect();
    let a1_attempts: Vec<usize> = (0..bodies.len()).filter(|&i| bodies[i] == "a1").collect();
    assert_eq!(a1_attempts.len(), 4, "{bodies:?}");
    let a1_success = *a1_attempts.last().unwrap();
    let pos = |b: &str| bodies.iter().position(|x| x == b).unwrap();
    // a2 only after a1 succeeded; ticket B did not wait for ticket A.
    assert!(pos("a2") > a1_success, "{bodies:?}");
    assert!(
        pos("b1") < a1_success && pos("b2") < a1_success,
        "{bodies:?}"
    );
    assert!(pos("b1") < pos("b2"), "{bodies:?}");
}

#[tokio::test]
async fn a_delivery_claimed_by_a_worker_that_died_is_delivered_after_its_lease() {
    // A server without workers accepts the message; a "worker" claims the delivery and dies.
    let mut first = spawn_app_with(|s| s.run_workers = false).await;
    let receiver = TestReceiver::start().await;
    let conn = first.sandbox_connection("A").await;
    first.webhook(&receiver.url(), &["message.created"]).await;
    first.inbound(conn, "5511900000001", "claimed").await;
    let lease = Duration::from_millis(1500);
    let now = Clock::System.now_ms();
    let lease_until = now + lease.as_millis() as i64;
    let claimed = store::write(&first.store, move |tx| {
        let mut claimed = Vec::new();
        for webhook in tx.due_webhooks(now)? {
            claimed.extend(tx.claim_deliveries(now, lease_until, webhook.id, 10)?);
        }
        Ok::<_, store::StoreError>(claimed)
    })
    .await
    .unwrap();
    assert_eq!(claimed.len(), 1);
    let db = first.take_dir().unwrap();
    first.stop().await;

    // A new server with workers delivers it once the lease has run out, not before.
    let second = start(common::settings_on(&db)).await;
    let got = receiver.wait_for(1).await;
    assert!(
        Clock::System.now_ms() >= lease_until,
        "delivered before the lease expired"
    );
    assert_eq!(got[0].json()["messageBody"], "claimed");
    assert_eq!(got[0].header("webhook-id"), claimed[0].event_id);
    second.stop().await;
    drop(db);
}

#[tokio::test]
async fn gone_disables_the_endpoint_and_enabling_resumes() {
    let app = spawn_app().await;
    let receiver = TestReceiver::start().await;
    receiver.answer(&[410]);
    let conn = app.sandbox_connection("A").await;
    let (hook, _) = app.webhook(&receiver.url(), &["message.created"]).await;
    app.inbound(conn, "5511900000001", "one").await;
    receiver.wait_for(1).await;
    eventually("the endpoint to be disabled", || async {
        let (_, w) = app.get(&format!("/api/v1/webhooks/{hook}")).await;
        w["enabled"] == false
    })
    .await;
    let (_, w) = app.get(&format!("/api/v1/webhooks/{hook}")).await;
    assert!(w["disabledReason"].as_str().unwrap().contains("410"));
    // The delivery waits, owed, with its one attempt; enabling the endpoint resumes it.
    let log = app.delivery_log(hook).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["attempts"], 1);
    assert_ne!(log[0]["status"], "delivered");
    assert_eq!(receiver.all().len(), 1);
    let (s, w) = app
        .patch(
            &format!("/api/v1/webhooks/{hook}"),
            json!({"enabled": true}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(w["disabledReason"], serde_json::Value::Null);
    let got = receiver.wait_for(2).await;
    assert_eq!(got[1].json()["messageBody"], "one");
}

#[tokio::test]
async fn after_the_last_attempt_a_delivery_is_dead_until_retried() {
    let app = spawn_app_with(|s| {
        s.delivery.retry.schedule = vec![Duration::from_millis(100), Duration::from_millis(100)];
    })
    .await;
    let receiver = TestReceiver::start().await;
    receiver.answer(&[500, 502, 503]);
    let conn = app.sandbox_connection("A").await;
    let (hook, _) = app.webhook(&receiver.url(), &["message.created"]).await;
    app.inbound(conn, "5511900000001", "doomed").await;
    receiver.wait_for(3).await;
    let path = format!("/api/v1/webhooks/{hook}/deliveries?status=dead");
    eventually("the delivery to be dead", || async {
        let (_, page) = app.get(&path).await;
        page["items"].as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    let (_, page) = app.get(&path).await;
    let dead = &page["items"][0];
    assert_eq!(dead["attempts"], 3);
    assert_eq!(dead["lastStatusCode"], 503);
    assert_eq!(dead["nextAttemptAt"], serde_json::Value::Null);

    let (s, _) = app
        .post(
            &format!("/api/v1/deliveries/{}/retry", dead["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(s, 202);
    let got = receiver.wait_for(4).await;
    assert_eq!(got[3].json()["messageBody"], "doomed");
    eventually_delivered(&app, hook).await;
}

/// The whole default schedule (eleven attempts over about two days), followed on a clock the
/// test moves instead of waiting: each retry comes when its backoff, spread by the jitter, is
/// due and not before, and after the last failure the delivery is dead.
#[tokio::test]
async fn the_default_retry_schedule_is_followed_on_the_clock() {
    let offset = Arc::new(AtomicI64::new(0));
    let app = spawn_app_on(
        Clock::Offset(Arc::clone(&offset)),
        Jitter::Fixed(1.0),
        |s| {
            s.delivery.retry = RetryPolicy::default();
        },
    )
    .await;
    let receiver = TestReceiver::start().await;
    receiver.answer(&[500; 11]);
    let conn = app.sandbox_connection("A").await;
    let (hook, _) = app.webhook(&receiver.url(), &["message.created"]).await;
    app.inbound(conn, "5511900000001", "hello").await;
    let log = app.delivery_log(hook).await;
    let id = log[0]["id"].as_str().unwrap().to_string();

    let policy = RetryPolicy::default();
    let mut times = Vec::new();
    for attempt in 1..=policy.schedule.len() + 1 {
        let path = format!("/api/v1/deliveries/{id}");
        eventually(&format!("attempt {attempt} to be recorded"), || async {
            let delivery = app.get(&path).await.1;
            delivery["attemptsLog"].as_array().map(Vec::len) == Some(attempt)
        })
        .await;
        let delivery = app.get(&path).await.1;
        // Nothing came before the clock reached it.
        assert_eq!(receiver.all().len(), attempt);
        let at = |a: &serde_json::Value| rfc3339::parse(a["at"].as_str().unwrap()).unwrap();
        times.push(at(&delivery["attemptsLog"][attempt - 1]));
        let Some(base) = policy.schedule.get(attempt - 1) else {
            assert_eq!(delivery["status"], "dead", "{delivery}");
            break;
        };
        // The jitter is fixed at the late end of its spread: 20 % over the base.
        let backoff = base.mul_f64(1.0 + policy.jitter).as_millis() as i64;
        let next = rfc3339::parse(delivery["nextAttemptAt"].as_str().unwrap()).unwrap();
        // Counted from when the attempt ended.
        let waits = next - times[attempt - 1];
        assert!((backoff..backoff + 1_000).contains(&waits), "{delivery}");
        offset.fetch_add(
            next - Clock::Offset(Arc::clone(&offset)).now_ms(),
            Ordering::SeqCst,
        );
    }
    // Each gap is the backoff, plus the moment the test took to move the clock.
    for (i, gap) in times.windows(2).map(|w| w[1] - w[0]).enumerate() {
        let backoff = policy.schedule[i].mul_f64(1.0 + policy.jitter).as_millis() as i64;
        assert!(
            (backoff..backoff + 5_000).contains(&gap),
            "attempt {} came {gap} ms after the one before, not {backoff}",
            i + 2
        );
    }
}
