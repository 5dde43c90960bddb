//! The receiving side: a minimal hyper server that answers 200 to every webhook and records
//! when it arrived and which message it carried; a port reserved for a receiver that comes up
//! later; and a listener that accepts connections and never answers.

use std::collections::HashSet;
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
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
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

#[derive(Default)]
struct Log {
    arrivals: Vec<Arrival>,
    seen: HashSet<(u16, u64)>,
}

#[derive(Default)]
struct Shared {
    log: Mutex<Log>,
    /// Distinct (path, seq) pairs seen.
    unique: AtomicU64,
    /// Requests whose body carried no readable message.
    unreadable: AtomicU64,
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

    /// A receiver on an existing listener.
    pub fn start(listener: TcpListener) -> Self {
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let shared = Arc::new(Shared::default());
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
                match parse_message(&body) {
                    Some((seq, sent_us)) => state.record(Arrival {
                        path,
                        seq,
                        sent_us,
                        at_us,
                    }),
                    None => {
                        state.unreadable.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(Response::new(Full::new(Bytes::new())))
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
    fn record(&self, arrival: Arrival) {
        let mut log = self.log.lock().expect("receiver log");
        log.arrivals.push(arrival);
        if log.seen.insert((arrival.path, arrival.seq)) {
            self.unique.fetch_add(1, Ordering::Relaxed);
        }
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
    fn path_index_reads_hook_paths() {
        assert_eq!(path_index("/hook/7"), 7);
        assert_eq!(path_index("/hook/x"), 0);
        assert_eq!(path_index("/"), 0);
    }
}
