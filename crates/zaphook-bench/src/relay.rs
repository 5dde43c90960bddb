//! The baseline: a bare relay that takes the same sandbox inbound POST as zaphook and forwards
//! a JSON body with the same `messageBody` to its targets over a pooled keep-alive client; no
//! storage, no signing. It answers 202 once every forward completed: the machine's ceiling for
//! "HTTP in, HTTP out". With a journal it is the durable relay: each message is committed to
//! SQLite before its 202, forwarded after it, and marked forwarded (see `journal`).

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::journal::Journal;
use crate::receiver::serve_http1;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A keep-alive, pooled HTTP/1.1 client with no cap on connections per host.
pub fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector)
}

#[derive(Debug, Clone, Default)]
pub struct RelayConfig {
    /// Where every message is forwarded (all of them, concurrently).
    pub targets: Vec<String>,
    /// Added before forwarding; only the harness self-test sets it.
    pub delay: Duration,
    /// Answer 202 at once and forward afterwards (as zaphook does); only the self-test sets
    /// it, to check the "acknowledged → arrived" measurement.
    pub ack_first: bool,
    /// Commit each message to a SQLite journal before answering 202, then forward it.
    pub durable: bool,
}

struct State {
    targets: Vec<Uri>,
    delay: Duration,
    ack_first: bool,
    journal: Option<Journal>,
    client: HttpClient,
}

/// A running relay. Stops serving when dropped (and removes its journal).
pub struct Relay {
    addr: SocketAddr,
    task: JoinHandle<()>,
    _journal_dir: Option<tempfile::TempDir>,
}

impl Relay {
    pub async fn start(config: RelayConfig) -> crate::Result<Self> {
        let targets = config
            .targets
            .iter()
            .map(|t| t.parse::<Uri>())
            .collect::<Result<Vec<_>, _>>()?;
        let journal_dir = config.durable.then(tempfile::tempdir).transpose()?;
        let journal = journal_dir
            .as_ref()
            .map(|dir| Journal::open(&dir.path().join("journal.db")))
            .transpose()?;
        let state = Arc::new(State {
            targets,
            delay: config.delay,
            ack_first: config.ack_first,
            journal,
            client: http_client(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = serve_http1(listener, move |req| handle(Arc::clone(&state), req));
        Ok(Relay {
            addr,
            task,
            _journal_dir: journal_dir,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Deserialize)]
struct Inbound {
    from: String,
    body: String,
}

fn answer(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::POST || !req.uri().path().ends_with("/sandbox/inbound") {
        return Ok(answer(StatusCode::NOT_FOUND, "{}"));
    }
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return Ok(answer(StatusCode::BAD_REQUEST, "{}"));
    };
    let Ok(inbound) = serde_json::from_slice::<Inbound>(&body) else {
        return Ok(answer(StatusCode::UNPROCESSABLE_ENTITY, "{}"));
    };
    let forward = serde_json::json!({
        "event": "message.created",
        "messageBody": inbound.body,
        "contact": {"phoneNumber": inbound.from},
    });
    let forward = Bytes::from(forward.to_string());
    if let Some(journal) = state.journal.clone() {
        let Ok(id) = journal.append(body).await else {
            return Ok(answer(StatusCode::SERVICE_UNAVAILABLE, "{}"));
        };
        tokio::spawn(async move {
            if forward_all(&state, forward).await.is_ok() {
                journal.forwarded(id);
            }
        });
        return Ok(answer(StatusCode::ACCEPTED, r#"{"id":"relay"}"#));
    }
    if state.ack_first {
        tokio::spawn(async move {
            tokio::time::sleep(state.delay).await;
            let _ = forward_all(&state, forward).await;
        });
        return Ok(answer(StatusCode::ACCEPTED, r#"{"id":"relay"}"#));
    }
    if !state.delay.is_zero() {
        tokio::time::sleep(state.delay).await;
    }
    Ok(match forward_all(&state, forward).await {
        Ok(()) => answer(StatusCode::ACCEPTED, r#"{"id":"relay"}"#),
        Err(_) => answer(StatusCode::BAD_GATEWAY, "{}"),
    })
}

/// Forwards to every target; fails if any forward did not get a 2xx.
async fn forward_all(state: &State, body: Bytes) -> io::Result<()> {
    if let [target] = state.targets.as_slice() {
        return forward_one(state.client.clone(), target.clone(), body).await;
    }
    let tasks: Vec<_> = state
        .targets
        .iter()
        .map(|t| tokio::spawn(forward_one(state.client.clone(), t.clone(), body.clone())))
        .collect();
    let mut result = Ok(());
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(e) => result = Err(io::Error::other(e)),
        }
    }
    result
}

async fn forward_one(client: HttpClient, target: Uri, body: Bytes) -> io::Result<()> {
    let request = Request::post(target)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(io::Error::other)?;
    let response = client.request(request).await.map_err(io::Error::other)?;
    let status = response.status();
    // Read the answer to the end so the connection goes back to the pool.
    response
        .into_body()
        .collect()
        .await
        .map_err(io::Error::other)?;
    if status.is_success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("target answered {status}")))
    }
}
