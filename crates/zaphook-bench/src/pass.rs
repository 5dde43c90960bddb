//! One pass: messages sent through a server (zaphook, the relay, or the receiver itself),
//! webhooks collected at the receiver, and the figures they make.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use crate::inbound_path;
use crate::load::{self, LoadResult, LoadSpec, Payload, per_second};
use crate::receiver::{Arrival, Receiver};
use crate::relay::{Relay, RelayConfig};
use crate::report::Latency;

/// How long the harness waits with no new webhook arriving before it gives up on the rest.
pub const STALL: Duration = Duration::from_secs(30);

/// The shape of the load, common to every pass.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Shape {
    /// Keep-alive connections of the load generator.
    pub connections: usize,
    /// Distinct contacts (hence tickets) the messages are spread over.
    pub contacts: u64,
}

/// What one pass produced: messages in, webhooks out.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Pass {
    pub messages: u64,
    pub acked: u64,
    /// Requests sent: one per message, but a cloud callback body carries several.
    pub requests: u64,
    /// Requests answered 2xx, and per second (first send → last acknowledgement).
    pub requests_acked: u64,
    pub requests_acked_per_s: f64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Distinct webhooks expected: acknowledged messages × endpoints.
    pub expected: u64,
    /// Distinct webhooks that arrived.
    pub delivered: u64,
    /// Webhooks that arrived more than once (at least once allows them).
    pub duplicates: u64,
    pub first_send_us: u64,
    pub last_ack_us: u64,
    pub first_arrival_us: u64,
    pub last_arrival_us: u64,
    pub acked_per_s: f64,
    /// Distinct webhooks per second, from the first send to the last arrival.
    pub delivered_per_s: f64,
    pub send_to_ack: Option<Latency>,
    pub ack_to_arrival: Option<Latency>,
    pub send_to_arrival: Option<Latency>,
}

impl Pass {
    pub fn missing(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }
}

/// Turns the load's records and the receiver's arrivals into figures.
pub fn analyze(load: &LoadResult, arrivals: &[Arrival], endpoints: u64) -> Pass {
    let mut seen = std::collections::HashSet::new();
    let mut firsts = Vec::with_capacity(arrivals.len());
    for a in arrivals {
        if seen.insert((a.path, a.seq)) {
            firsts.push(*a);
        }
    }
    let sent_of = |seq: u64| load.sent.get(seq as usize).filter(|s| s.ok);
    let ack_to_arrival: Vec<i64> = firsts
        .iter()
        .filter_map(|a| sent_of(a.seq).map(|s| a.at_us as i64 - s.ack_us as i64))
        .collect();
    let send_to_arrival: Vec<i64> = firsts
        .iter()
        .filter_map(|a| sent_of(a.seq).map(|s| a.at_us as i64 - s.sent_us as i64))
        .collect();
    let send_to_ack: Vec<i64> = load
        .sent
        .iter()
        .filter(|s| s.ok)
        .map(|s| s.ack_us as i64 - s.sent_us as i64)
        .collect();
    let first_send_us = load.first_send_us();
    let first_arrival_us = firsts.iter().map(|a| a.at_us).min().unwrap_or(0);
    let last_arrival_us = firsts.iter().map(|a| a.at_us).max().unwrap_or(0);
    let delivered = firsts.len() as u64;
    Pass {
        messages: load.sent.len() as u64,
        acked: load.acked(),
        requests: load.requests,
        requests_acked: load.requests_ok,
        requests_acked_per_s: load.requests_ok_per_s(),
        errors: load.errors,
        first_error: load.first_error.clone(),
        expected: load.acked() * endpoints,
        delivered,
        duplicates: arrivals.len() as u64 - delivered,
        first_send_us,
        last_ack_us: load.last_ack_us(),
        first_arrival_us,
        last_arrival_us,
        acked_per_s: load.acked_per_s(),
        delivered_per_s: per_second(delivered, first_send_us, last_arrival_us),
        send_to_ack: Latency::from_us(send_to_ack),
        ack_to_arrival: Latency::from_us(ack_to_arrival),
        send_to_arrival: Latency::from_us(send_to_arrival),
    }
}

/// Where the load goes: a server (or several serving the same route, whose addresses the
/// connections alternate between), its inbound route, the bearer token it wants, and what the
/// requests carry.
pub struct Target {
    pub addrs: Vec<SocketAddr>,
    pub path: String,
    pub token: Option<String>,
    pub payload: Payload,
}

/// Sends `count` messages to `target` (at `rate`, or as fast as answered), then waits for
/// their webhooks at `receiver` (`endpoints` per acknowledged message).
pub async fn drive(
    shape: Shape,
    target: Target,
    count: u64,
    rate: Option<f64>,
    receiver: &Receiver,
    endpoints: u64,
) -> crate::Result<Pass> {
    let load = load::run(LoadSpec {
        addrs: target.addrs,
        path: target.path,
        token: target.token,
        count,
        rate,
        connections: shape.connections,
        contacts: shape.contacts,
        payload: target.payload,
        progress: None,
    })
    .await?;
    if load.acked() == 0 {
        return Err(format!(
            "no message was accepted; the first failure: {}",
            load.first_error.as_deref().unwrap_or("none recorded")
        )
        .into());
    }
    receiver.wait_for(load.acked() * endpoints, STALL).await;
    Ok(analyze(&load, &receiver.arrivals(), endpoints))
}

/// The load generator straight at the receiver: the receiver's own ceiling.
pub async fn receiver_pass(shape: Shape, count: u64) -> crate::Result<Pass> {
    let receiver = Receiver::bind().await?;
    let target = Target {
        addrs: vec![receiver.addr()],
        path: "/hook/0".into(),
        token: None,
        payload: Payload::Sandbox,
    };
    drive(shape, target, count, None, &receiver, 1).await
}

/// The same load through the relay set up by `config`, forwarding to `endpoints` receiver
/// paths (its `targets` are filled in here).
pub async fn relay_pass(
    shape: Shape,
    endpoints: u16,
    count: u64,
    rate: Option<f64>,
    config: RelayConfig,
) -> crate::Result<Pass> {
    let receiver = Receiver::bind().await?;
    let relay = Relay::start(RelayConfig {
        targets: (0..endpoints).map(|n| receiver.url(n)).collect(),
        ..config
    })
    .await?;
    let target = Target {
        addrs: vec![relay.addr()],
        path: inbound_path(1),
        token: None,
        payload: Payload::Sandbox,
    };
    drive(shape, target, count, rate, &receiver, u64::from(endpoints)).await
}
