//! The harness checks itself without zaphook: a relay that waits a known time must show that
//! time in the latencies the harness reports, and every message must come out exactly once.

use std::time::Duration;

use zaphook_bench::pass::{Shape, receiver_pass, relay_pass};
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
