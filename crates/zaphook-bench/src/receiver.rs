//! The receiving side: a minimal hyper server that answers 200 to every webhook (or, when
//! flaky, 500 to a seeded share of them) and records when it arrived and which message it
//! carried; a port reserved for a receiver that comes up later; and a listener that accepts
//! connections and never answers.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::{JoinHandle, JoinSet};

use crate::now_us;

/// One request that reached the receiver.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// N of the path `/hook/N` (0 for any other path).
    pub path: u16,
    /// The sequence id the load generator put in the message.
    pub seq: u64,
    /// When the load generator sent it (µs, see [`now_us`]).
    pub sent_us: u64,
    /// When its request reached the receiver (µs).
    pub at_us: u64,
}

/// Which webhooks a flaky receiver answers 500: each request of a message not yet taken fails
/// with probability `share`, drawn from a hash of `seed`, the path, the message and how often
/// it failed before, so every run fails the same requests. A message fails at most
/// `max_failures` times in a row, so a sender whose retry schedule has that many steps
/// delivers every message in the end.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Flaky {
    /// Share of the requests answered 500, 0 to 1.
    pub share: f64,
    pub seed: u64,
    pub max_failures: u32,
}

impl Flaky {
    /// Whether the request of message `seq` on `path` that follows `failed` failed ones fails.
    pub fn fails(&self, path: u16, seq: u64, failed: u32) -> bool {
        if failed >= self.max_failures {
            return false;
        }
        let hash = mix(mix(mix(self.seed) ^ seq) ^ (u64::from(path) << 32 | u64::from(failed)));
        // The top 53 bits as a uniform number in [0, 1).
        ((hash >> 11) as f64 / (1u64 << 53) as f64) < self.share
    }
}

/// SplitMix64's finalizer: every input bit moves about half of the output bits.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[derive(Default)]
struct Log {
    /// Requests answered 200 (a failed one did not deliver its message).
    arrivals: Vec<Arrival>,
    seen: HashSet<(u16, u64)>,
    /// Requests answered 500 so far, per (path, seq).
    failures: HashMap<(u16, u64), u32>,
}

#[derive(Default)]
struct Shared {
    log: Mutex<Log>,
    flaky: Option<Flaky>,
    /// Distinct (path, seq) pairs seen.
    unique: AtomicU64,
    /// Requests whose body carried no readable message.
    unreadable: AtomicU64,
    /// Requests answered 500.
    failed: AtomicU64,
}

/// Serves HTTP/1.1 with keep-alive on `listener`, one task per connection, until the returned
/// task is aborted (which also ends every connection).
pub fn serve_http1<F, Fut>(listener: TcpListener, handler: F) -> JoinHandle<()>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        let handler = handler.clone();
                        connections.spawn(async move {
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service_fn(handler))
                                .await;
                        });
                    }
                    // Out of file descriptors and the like: let connections finish first.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    })
}

/// The webhook receiver. Stops serving when dropped.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Receiver {
    /// A receiver on a fresh loopback port.
    pub async fn bind() -> io::Result<Self> {
        Ok(Self::start(TcpListener::bind("127.0.0.1:0").await?))
    }

    /// A receiver on a fresh loopback port that fails the requests `flaky` picks.
    pub async fn bind_flaky(flaky: Flaky) -> io::Result<Self> {
        Ok(Self::serve(
            TcpListener::bind("127.0.0.1:0").await?,
            Some(flaky),
        ))
    }

    /// A receiver on an existing listener.
    pub fn start(listener: TcpListener) -> Self {
        Self::serve(listener, None)
    }

    fn serve(listener: TcpListener, flaky: Option<Flaky>) -> Self {
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let shared = Arc::new(Shared {
            flaky,
            ..Shared::default()
        });
        let state = Arc::clone(&shared);
        let task = serve_http1(listener, move |req: Request<Incoming>| {
            let state = Arc::clone(&state);
            async move {
                let at_us = now_us();
                let path = path_index(req.uri().path());
                let body = match req.into_body().collect().await {
                    Ok(collected) => collected.to_bytes(),
                    Err(_) => Bytes::new(),
                };
                let mut response = Response::new(Full::new(Bytes::new()));
                match parse_message(&body) {
                    Some((seq, sent_us)) => {
                        let arrival = Arrival {
                            path,
                            seq,
                            sent_us,
                            at_us,
                        };
                        if !state.record(arrival) {
                            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                        }
                    }
                    None => {
                        state.unreadable.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(response)
            }
        });
        Receiver { addr, shared, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL of webhook path `n`: `http://ADDR/hook/n`.
    pub fn url(&self, n: u16) -> String {
        hook_url(self.addr, n)
    }

    /// Distinct (path, message) pairs received so far.
    pub fn unique(&self) -> u64 {
        self.shared.unique.load(Ordering::Relaxed)
    }

    /// Requests that carried no readable `seq send-time` message.
    pub fn unreadable(&self) -> u64 {
        self.shared.unreadable.load(Ordering::Relaxed)
    }

    /// Requests answered 500 (by a flaky receiver).
    pub fn failed(&self) -> u64 {
        self.shared.failed.load(Ordering::Relaxed)
    }

    /// Waits until `expected` distinct arrivals, or until none came for `stall`; returns how
    /// many there are.
    pub async fn wait_for(&self, expected: u64, stall: Duration) -> u64 {
        let mut last = self.unique();
        let mut last_change = tokio::time::Instant::now();
        while last < expected {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let now = self.unique();
            if now != last {
                last = now;
                last_change = tokio::time::Instant::now();
            } else if last_change.elapsed() >= stall {
                break;
            }
        }
        last
    }

    /// Waits until `expected` distinct arrivals, or until `deadline`; returns how many there
    /// are.
    pub async fn wait_until(&self, expected: u64, deadline: tokio::time::Instant) -> u64 {
        while self.unique() < expected && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.unique()
    }

    /// Every arrival so far, in arrival order (duplicates included).
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.shared
            .log
            .lock()
            .expect("receiver log")
            .arrivals
            .clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Shared {
    /// Records the arrival, or refuses it (`false`: answer 500) when the receiver is flaky
    /// and picks it; a message already taken is never refused.
    fn record(&self, arrival: Arrival) -> bool {
        let key = (arrival.path, arrival.seq);
        let mut log = self.log.lock().expect("receiver log");
        if let Some(flaky) = self.flaky
            && !log.seen.contains(&key)
        {
            let failed = log.failures.get(&key).copied().unwrap_or(0);
            if flaky.fails(arrival.path, arrival.seq, failed) {
                log.failures.insert(key, failed + 1);
                self.failed.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        }
        log.arrivals.push(arrival);
        if log.seen.insert(key) {
            self.unique.fetch_add(1, Ordering::Relaxed);
        }
        true
    }
}

pub fn hook_url(addr: SocketAddr, n: u16) -> String {
    format!("http://{addr}/hook/{n}")
}

fn path_index(path: &str) -> u16 {
    path.strip_prefix("/hook/")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[derive(Deserialize)]
struct Carrier {
    /// zaphook's payload and the relay's forward carry `messageBody`; the load generator's own
    /// request (when it is aimed straight at the receiver) carries `body`.
    #[serde(rename = "messageBody", alias = "body")]
    message: Option<String>,
}

/// The `(seq, send time µs)` a webhook body carries in its message text.
pub fn parse_message(body: &[u8]) -> Option<(u64, u64)> {
    let carrier: Carrier = serde_json::from_slice(body).ok()?;
    let text = carrier.message?;
    let mut parts = text.split_whitespace();
    let seq = parts.next()?.parse().ok()?;
    let sent_us = parts.next()?.parse().ok()?;
    Some((seq, sent_us))
}

/// A loopback port that is bound but not listening yet: connections to it are refused until
/// [`ReservedPort::listen`].
pub struct ReservedPort {
    socket: TcpSocket,
    addr: SocketAddr,
}

impl ReservedPort {
    pub fn new() -> io::Result<Self> {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let addr = socket.local_addr()?;
        Ok(ReservedPort { socket, addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn listen(self) -> io::Result<TcpListener> {
        self.socket.listen(1024)
    }
}

/// An endpoint that accepts connections, reads whatever comes and never answers, so every
/// request to it waits for the sender's timeout. Stops when dropped.
pub struct Hang {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Hang {
    pub async fn bind() -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        if let Ok((mut stream, _)) = accepted {
                            connections.spawn(async move {
                                let mut buf = vec![0u8; 16 * 1024];
                                while let Ok(n) = stream.read(&mut buf).await {
                                    if n == 0 {
                                        break;
                                    }
                                }
                            });
                        }
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Ok(Hang { addr, task })
    }

    pub fn url(&self) -> String {
        hook_url(self.addr, 0)
    }
}

impl Drop for Hang {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_message_of_a_webhook_and_of_a_raw_inbound_body() {
        let webhook =
            br#"{"event":"message.created","messageBody":"42 1234567","ticket":{"id":1}}"#;
        assert_eq!(parse_message(webhook), Some((42, 1_234_567)));
        let inbound = br#"{"from":"5511900000001","body":"7 99"}"#;
        assert_eq!(parse_message(inbound), Some((7, 99)));
        assert_eq!(parse_message(br#"{"messageBody":"hello"}"#), None);
        assert_eq!(parse_message(b"not json"), None);
    }

    #[test]
    fn a_flaky_receiver_takes_every_message_after_at_most_its_failures() {
        let flaky = Flaky {
            share: 0.5,
            seed: 1,
            max_failures: 2,
        };
        let shared = Shared {
            flaky: Some(flaky),
            ..Shared::default()
        };
        let mut refusals = [0u32; 3];
        for seq in 0..1_000 {
            let arrival = Arrival {
                path: 0,
                seq,
                sent_us: 0,
                at_us: 0,
            };
            let mut refused = 0;
            while !shared.record(arrival) {
                refused += 1;
            }
            refusals[refused as usize] += 1;
            // Taken once, a message is never refused again.
            assert!(shared.record(arrival));
        }
        assert_eq!(shared.unique.load(Ordering::Relaxed), 1_000);
        let failed: u32 = refusals[1] + 2 * refusals[2];
        assert_eq!(u64::from(failed), shared.failed.load(Ordering::Relaxed));
        // Half fail the first time, and half of those the second; the third always passes.
        assert!(
            (420..580).contains(&(refusals[1] + refusals[2])),
            "{refusals:?}"
        );
        assert!((180..320).contains(&refusals[2]), "{refusals:?}");
    }

    #[test]
    fn flaky_picks_depend_on_the_seed_and_the_message() {
        let flaky = |seed| Flaky {
            share: 0.2,
            seed,
            max_failures: 3,
        };
        let picks = |f: Flaky| {
            (0..5_000)
                .filter(|seq| f.fails(0, *seq, 0))
                .collect::<Vec<_>>()
        };
        let (a, b) = (picks(flaky(1)), picks(flaky(2)));
        assert_eq!(a, picks(flaky(1)));
        assert_ne!(a, b);
        assert!((900..1_100).contains(&a.len()), "{}", a.len());
        assert!(
            !flaky(1).fails(0, a[0], 3),
            "past max_failures every request passes"
        );
        let all = Flaky {
            share: 1.0,
            ..flaky(1)
        };
        assert!(all.fails(0, 0, 2) && !all.fails(0, 0, 3));
    }

    #[test]
    fn path_index_reads_hook_paths() {
        assert_eq!(path_index("/hook/7"), 7);
        assert_eq!(path_index("/hook/x"), 0);
        assert_eq!(path_index("/"), 0);
    }
}
