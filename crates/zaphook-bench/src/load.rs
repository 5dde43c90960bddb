//! The load generator: HTTP/1.1 keep-alive over many connections (round-robin over one or more
//! servers' addresses), posting sandbox inbound messages
//! `{"from", "body": "<seq> <send-time-µs>"}` spread over many contacts (or signed Cloud API
//! callback bodies of a few such messages each, see [`crate::cloud`]), either as fast as the
//! servers answer (closed loop) or at a fixed rate (open loop: each message has its scheduled
//! time, whatever happened to the ones before). Records, per message, when it was sent and
//! when the API acknowledged it (the request that carried it).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::{cloud, now_us};

/// The first contact number; contact `i` is this plus `i` (13 digits, as `5511 9xxxx-xxxx`).
pub const FIRST_NUMBER: u64 = 5_511_900_000_000;

#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Where to send: connection `i` goes to `addrs[i % addrs.len()]`.
    pub addrs: Vec<SocketAddr>,
    /// The inbound route, e.g. `/api/v1/connections/1/sandbox/inbound`.
    pub path: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub token: Option<String>,
    pub count: u64,
    /// Messages per second (open loop); `None` is as fast as the server answers.
    pub rate: Option<f64>,
    pub connections: usize,
    /// Distinct contact numbers the messages are spread over (hence tickets).
    pub contacts: u64,
    /// What each request carries.
    pub payload: Payload,
    /// Counts the messages answered 2xx as the answers come, for whoever watches a long run
    /// while it goes (the result has every figure either way).
    pub progress: Option<Arc<AtomicU64>>,
}

/// What the load posts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Payload {
    /// One sandbox inbound message per request.
    #[default]
    Sandbox,
    /// Cloud API callback bodies of [`cloud::MESSAGES_PER_BODY`] text messages (and as many
    /// statuses, with `statuses`), signed with this app secret (`X-Hub-Signature-256`).
    Cloud { app_secret: String, statuses: bool },
}

impl Payload {
    /// Messages per request.
    pub fn messages_per_request(&self) -> u64 {
        match self {
            Payload::Sandbox => 1,
            Payload::Cloud { .. } => cloud::MESSAGES_PER_BODY,
        }
    }
}

/// What happened to one message. Times are µs of [`now_us`]; 0 = never.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sent {
    pub sent_us: u64,
    pub ack_us: u64,
    /// The API answered 2xx.
    pub ok: bool,
}

#[derive(Debug, Default)]
pub struct LoadResult {
    /// Indexed by sequence id.
    pub sent: Vec<Sent>,
    /// Messages that got no 2xx answer.
    pub errors: u64,
    /// The first failure, to show.
    pub first_error: Option<String>,
    /// Requests sent (one per message but for cloud bodies, which carry several).
    pub requests: u64,
    /// Requests answered 2xx.
    pub requests_ok: u64,
}

impl LoadResult {
    pub fn acked(&self) -> u64 {
        self.sent.iter().filter(|s| s.ok).count() as u64
    }

    /// When the first message was sent (µs).
    pub fn first_send_us(&self) -> u64 {
        self.sent
            .iter()
            .filter(|s| s.sent_us > 0)
            .map(|s| s.sent_us)
            .min()
            .unwrap_or(0)
    }

    /// When the last acknowledgement came (µs).
    pub fn last_ack_us(&self) -> u64 {
        self.sent.iter().map(|s| s.ack_us).max().unwrap_or(0)
    }

    /// Acknowledged messages per second, from the first send to the last acknowledgement.
    pub fn acked_per_s(&self) -> f64 {
        per_second(self.acked(), self.first_send_us(), self.last_ack_us())
    }

    /// Requests answered 2xx per second, over the same span.
    pub fn requests_ok_per_s(&self) -> f64 {
        per_second(self.requests_ok, self.first_send_us(), self.last_ack_us())
    }
}

/// `n` over the span from `from_us` to `to_us`.
pub fn per_second(n: u64, from_us: u64, to_us: u64) -> f64 {
    if to_us <= from_us {
        return 0.0;
    }
    n as f64 / ((to_us - from_us) as f64 / 1e6)
}

/// The request body of message `seq`, sent at `sent_us`.
pub fn message_body(seq: u64, contacts: u64, sent_us: u64) -> String {
    let from = FIRST_NUMBER + seq % contacts.max(1);
    format!(r#"{{"from":"{from}","body":"{seq} {sent_us}"}}"#)
}

async fn connect(addr: SocketAddr) -> crate::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Runs the load to completion: every message is sent once and answered or failed.
pub async fn run(spec: LoadSpec) -> crate::Result<LoadResult> {
    let requests = spec.count.div_ceil(spec.payload.messages_per_request());
    let connections = spec.connections.clamp(1, requests.max(1) as usize);
    if spec.addrs.is_empty() {
        return Err("the load has no address to send to".into());
    }
    let mut senders = Vec::with_capacity(connections);
    for i in 0..connections {
        let addr = spec.addrs[i % spec.addrs.len()];
        senders.push((connect(addr).await?, addr));
    }
    let worker = Worker {
        spec: Arc::new(spec),
        next: Arc::new(AtomicU64::new(0)),
        start: Instant::now() + Duration::from_millis(5),
    };
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|(sender, addr)| tokio::spawn(worker.clone().run(sender, addr)))
        .collect();
    let mut result = LoadResult {
        sent: vec![Sent::default(); worker.spec.count as usize],
        ..LoadResult::default()
    };
    for task in tasks {
        let done = task.await?;
        result.requests += done.requests;
        result.requests_ok += done.requests_ok;
        for (seq, sent) in done.records {
            result.sent[seq as usize] = sent;
        }
        if result.first_error.is_none() {
            result.first_error = done.first_error;
        }
    }
    // Counted here so messages a failed worker never sent count too.
    result.errors = result.sent.iter().filter(|s| !s.ok).count() as u64;
    Ok(result)
}

#[derive(Clone)]
struct Worker {
    spec: Arc<LoadSpec>,
    next: Arc<AtomicU64>,
    start: Instant,
}

#[derive(Default)]
struct WorkerDone {
    records: Vec<(u64, Sent)>,
    first_error: Option<String>,
    requests: u64,
    requests_ok: u64,
}

impl Worker {
    /// Sends over `sender`, a connection to `addr`, until every message is taken.
    async fn run(self, mut sender: SendRequest<Full<Bytes>>, addr: SocketAddr) -> WorkerDone {
        let mut done = WorkerDone::default();
        let per_request = self.spec.payload.messages_per_request();
        loop {
            // Request n carries the messages n × per_request and the few after it.
            let first = self.next.fetch_add(1, Ordering::Relaxed) * per_request;
            if first >= self.spec.count {
                break;
            }
            let seqs = first..(first + per_request).min(self.spec.count);
            if let Some(rate) = self.spec.rate {
                tokio::time::sleep_until(self.start + Duration::from_secs_f64(first as f64 / rate))
                    .await;
            }
            let (sent, error) = self.send(&mut sender, addr, seqs.clone()).await;
            if sent.ok
                && let Some(progress) = &self.spec.progress
            {
                progress.fetch_add(seqs.end - seqs.start, Ordering::Relaxed);
            }
            done.requests += 1;
            done.requests_ok += u64::from(sent.ok);
            done.records.extend(seqs.map(|seq| (seq, sent)));
            if let Some(error) = error {
                done.first_error.get_or_insert(error);
                // The connection may be gone: open a new one for the next message.
                if sender.is_closed() {
                    match connect(addr).await {
                        Ok(s) => sender = s,
                        Err(e) => {
                            done.first_error.get_or_insert(format!("reconnect: {e}"));
                            break;
                        }
                    }
                }
            }
        }
        done
    }

    /// Sends the messages `seqs` in one request (a sandbox request has one).
    async fn send(
        &self,
        sender: &mut SendRequest<Full<Bytes>>,
        addr: SocketAddr,
        seqs: std::ops::Range<u64>,
    ) -> (Sent, Option<String>) {
        let mut sent = Sent::default();
        if let Err(e) = sender.ready().await {
            return (sent, Some(format!("connection: {e}")));
        }
        sent.sent_us = now_us();
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.spec.path.as_str())
            .header(HOST, addr.to_string())
            .header(CONTENT_TYPE, "application/json");
        let body = match &self.spec.payload {
            Payload::Sandbox => message_body(seqs.start, self.spec.contacts, sent.sent_us),
            Payload::Cloud {
                app_secret,
                statuses,
            } => {
                let (contacts, now_s) = (self.spec.contacts, cloud::unix_now());
                let body = cloud::body(seqs, contacts, sent.sent_us, now_s, *statuses);
                request = request.header(
                    "x-hub-signature-256",
                    cloud::signature(app_secret, body.as_bytes()),
                );
                body
            }
        };
        if let Some(token) = &self.spec.token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match request.body(Full::new(Bytes::from(body))) {
            Ok(r) => r,
            Err(e) => return (sent, Some(format!("request: {e}"))),
        };
        let response = match sender.send_request(request).await {
            Ok(r) => r,
            Err(e) => return (sent, Some(format!("send: {e}"))),
        };
        let status = response.status();
        let body = response.into_body().collect().await.map(|b| b.to_bytes());
        sent.ack_us = now_us();
        match body {
            Ok(_) if status.is_success() => {
                sent.ok = true;
                (sent, None)
            }
            Ok(body) => (
                sent,
                Some(format!("{status}: {}", String::from_utf8_lossy(&body))),
            ),
            Err(e) => (sent, Some(format!("reading the answer: {e}"))),
        }
    }
}
