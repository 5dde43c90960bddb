//! The harness checks itself without zaphook: a relay that waits a known time must show that
//! time in the latencies the harness reports, and every message must come out exactly once;
//! the Cloud API callbacks must be signed as Meta signs them and carry each message once; load
//! spread over several servers must reach each of them; a flaky receiver must fail the share
//! of requests it is given, the same ones in every run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use zaphook_bench::cloud;
use zaphook_bench::load::{self, LoadSpec, Payload};
use zaphook_bench::pass::{Shape, receiver_pass, relay_pass};
use zaphook_bench::receiver::{Flaky, Receiver, parse_message};
use zaphook_bench::relay::RelayConfig;

const SHAPE: Shape = Shape {
    connections: 8,
    contacts: 100,
};

const DELAY: Duration = Duration::from_millis(50);

/// A relay that waits `DELAY` before forwarding, answering before (`ack_first`) or after.
fn delayed(ack_first: bool) -> RelayConfig {
    RelayConfig {
        delay: DELAY,
        ack_first,
        ..RelayConfig::default()
    }
}

/// The one timing assertion of the crate, with generous bounds: 50 ms added by the relay must
/// read as 50–90 ms.
fn assert_about_the_delay(what: &str, p50_ms: f64) {
    assert!(
        (50.0..90.0).contains(&p50_ms),
        "{what} p50 {p50_ms} ms, expected the relay's 50 ms delay (up to +40 ms)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_delay_shows_in_the_sent_to_arrived_latency() {
    let pass = relay_pass(SHAPE, 1, 30, Some(30.0), delayed(false))
        .await
        .expect("relay pass");
    assert_eq!((pass.acked, pass.delivered, pass.missing()), (30, 30, 0));
    let latency = pass.send_to_arrival.expect("latencies");
    assert_eq!(latency.count, 30);
    assert_about_the_delay("sent → arrived", latency.p50_ms);
    // The relay answers after forwarding: its API latency carries the delay too.
    assert_about_the_delay(
        "sent → acknowledged",
        pass.send_to_ack.expect("acks").p50_ms,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_after_the_acknowledgement_shows_in_the_acknowledged_to_arrived_latency() {
    // Acknowledge first and forward 50 ms later, as zaphook acknowledges before delivering.
    let pass = relay_pass(SHAPE, 1, 30, Some(30.0), delayed(true))
        .await
        .expect("relay pass");
    assert_eq!((pass.acked, pass.delivered, pass.missing()), (30, 30, 0));
    let latency = pass.ack_to_arrival.expect("latencies");
    assert_eq!(latency.count, 30);
    assert_about_the_delay("acknowledged → arrived", latency.p50_ms);
    assert_about_the_delay(
        "sent → arrived",
        pass.send_to_arrival.expect("sends").p50_ms,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_through_the_relay_delivers_every_message_to_every_endpoint_once() {
    let pass = relay_pass(SHAPE, 3, 300, None, RelayConfig::default())
        .await
        .expect("relay pass");
    assert_eq!(pass.messages, 300);
    assert_eq!(pass.errors, 0);
    assert_eq!(pass.expected, 900);
    assert_eq!(pass.delivered, 900);
    assert_eq!(pass.duplicates, 0);
    assert!(pass.delivered_per_s > 0.0 && pass.acked_per_s > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_alone_takes_every_request() {
    let pass = receiver_pass(SHAPE, 500).await.expect("receiver pass");
    assert_eq!((pass.acked, pass.delivered, pass.duplicates), (500, 500, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_durable_relay_acknowledges_and_delivers_every_message_once() {
    let durable = RelayConfig {
        durable: true,
        ..RelayConfig::default()
    };
    let pass = relay_pass(SHAPE, 1, 300, None, durable)
        .await
        .expect("durable relay pass");
    assert_eq!((pass.acked, pass.errors), (300, 0));
    assert_eq!(
        (pass.delivered, pass.missing(), pass.duplicates),
        (300, 0, 0)
    );
}

#[test]
fn a_cloud_callback_is_signed_as_meta_signs_it() {
    assert_eq!(
        cloud::signature("test_app_secret", r#"{"text":{"body":"café"}}"#.as_bytes()),
        "sha256=d0c411924f46299702b190bbe4b5da59c4bb5641ea114e4e11535ad85929c4f0"
    );
}

#[test]
fn a_cloud_body_carries_four_messages_from_four_contacts_and_four_statuses() {
    let body = cloud::body(8..12, 1_000, 777, 1_796_000_000, true);
    let v: serde_json::Value = serde_json::from_str(&body).expect("the body is JSON");
    assert_eq!(v["object"], "whatsapp_business_account");
    let change = &v["entry"][0]["changes"][0];
    assert_eq!(change["field"], "messages");
    let value = &change["value"];
    assert_eq!(value["metadata"]["phone_number_id"], cloud::PHONE_NUMBER_ID);
    let messages = value["messages"].as_array().expect("messages");
    let contacts = value["contacts"].as_array().expect("contacts");
    let statuses = value["statuses"].as_array().expect("statuses");
    assert_eq!((messages.len(), contacts.len(), statuses.len()), (4, 4, 4));
    let mut senders = std::collections::HashSet::new();
    for (k, m) in messages.iter().enumerate() {
        let seq = 8 + k as u64;
        let from = m["from"].as_str().expect("from");
        senders.insert(from.to_string());
        assert_eq!(contacts[k]["wa_id"], from);
        assert_eq!(m["type"], "text");
        assert_eq!(m["id"], format!("wamid.bench.{seq}"));
        assert_eq!(m["timestamp"], "1796000000");
        // The text reads as the receiver reads a webhook's `messageBody`.
        let webhook = serde_json::json!({ "messageBody": m["text"]["body"] }).to_string();
        assert_eq!(parse_message(webhook.as_bytes()), Some((seq, 777)));
        assert_eq!(statuses[k]["recipient_id"], from);
        assert_eq!(statuses[k]["status"], "delivered");
    }
    assert_eq!(senders.len(), 4, "four different contacts");
    let plain: serde_json::Value =
        serde_json::from_str(&cloud::body(8..12, 1_000, 777, 1, false)).expect("JSON");
    let value = &plain["entry"][0]["changes"][0]["value"];
    assert_eq!(value["messages"].as_array().map(Vec::len), Some(4));
    assert!(value.get("statuses").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloud_load_sends_every_message_once_four_to_a_signed_body() {
    // 30 messages: seven bodies of four and one of two.
    let receiver = Receiver::bind().await.expect("receiver");
    let load = load::run(LoadSpec {
        addrs: vec![receiver.addr()],
        path: "/channels/cloud/1".into(),
        token: None,
        count: 30,
        rate: None,
        connections: 3,
        contacts: 100,
        payload: Payload::Cloud {
            app_secret: cloud::APP_SECRET.into(),
            statuses: true,
        },
        progress: None,
    })
    .await
    .expect("load");
    assert_eq!((load.requests, load.requests_ok, load.errors), (8, 8, 0));
    assert_eq!(load.acked(), 30);
    assert!(load.sent.iter().all(|s| s.ok && s.sent_us > 0));
    // The receiver reads no `messageBody` in a callback body: it counts each as unreadable.
    assert_eq!(receiver.unreadable(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_alternates_its_connections_between_the_servers_it_is_given() {
    // As over several zaphook processes: each message goes to one of them, once.
    let (a, b) = (
        Receiver::bind().await.expect("receiver"),
        Receiver::bind().await.expect("receiver"),
    );
    let acked = Arc::new(AtomicU64::new(0));
    let load = load::run(LoadSpec {
        addrs: vec![a.addr(), b.addr()],
        path: "/hook/0".into(),
        token: None,
        count: 200,
        rate: None,
        connections: 4,
        contacts: 100,
        payload: Payload::Sandbox,
        progress: Some(Arc::clone(&acked)),
    })
    .await
    .expect("load");
    assert_eq!((load.acked(), load.errors), (200, 0));
    assert_eq!(acked.load(Ordering::Relaxed), 200);
    let (at_a, at_b) = (a.unique(), b.unique());
    assert!(
        at_a > 0 && at_b > 0,
        "{at_a} at one server, {at_b} at the other"
    );
    assert_eq!(at_a + at_b, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_receiver_fails_its_share_of_requests_the_same_ones_each_run() {
    let flaky = Flaky {
        share: 0.3,
        seed: 7,
        max_failures: 3,
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let receiver = Receiver::bind_flaky(flaky).await.expect("receiver");
        let acked = Arc::new(AtomicU64::new(0));
        let load = load::run(LoadSpec {
            addrs: vec![receiver.addr()],
            path: "/hook/0".into(),
            token: None,
            count: 1_000,
            rate: None,
            connections: 4,
            contacts: 100,
            payload: Payload::Sandbox,
            progress: Some(Arc::clone(&acked)),
        })
        .await
        .expect("load");
        // Each message is sent once: a 500 is a message the receiver never took.
        assert_eq!(load.errors, receiver.failed());
        assert_eq!(load.acked(), receiver.unique());
        assert_eq!(acked.load(Ordering::Relaxed), load.acked());
        assert!(
            (220..380).contains(&load.errors),
            "{} of 1,000 failed, expected about 300",
            load.errors
        );
        let failed = load.first_error.expect("a failure to show");
        assert!(failed.starts_with("500"), "{failed}");
        runs.push(load.sent.iter().map(|s| s.ok).collect::<Vec<_>>());
    }
    assert_eq!(runs[0], runs[1], "the same requests fail in both runs");
}
