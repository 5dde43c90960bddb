//! `zaphook listen`: a local webhook receiver for integrators. It verifies each request's
//! signature with the endpoint's secret, prints the event, and answers a chosen status or
//! forwards the request to a local URL and answers what that URL answered.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use tokio::net::TcpListener;

use crate::clock::Clock;
use crate::delivery::sign;

#[derive(Debug, Clone)]
pub struct ListenOptions {
    /// The endpoint's `whsec_…` secret; without it signatures are not checked.
    pub secret: Option<String>,
    /// Where to forward each request; its answer becomes ours.
    pub forward_to: Option<String>,
    /// The status answered when not forwarding.
    pub status: u16,
    /// How far `webhook-timestamp` may be from now, in seconds.
    pub tolerance_secs: i64,
}

type Output = Arc<Mutex<Box<dyn Write + Send>>>;

#[derive(Clone)]
struct Listener {
    options: ListenOptions,
    client: reqwest::Client,
    out: Output,
}

/// Serves on `listener` until `shutdown` completes, writing what arrives to `out`.
pub async fn serve(
    listener: TcpListener,
    options: ListenOptions,
    out: Box<dyn Write + Send>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(std::io::Error::other)?;
    let state = Listener {
        options,
        client,
        out: Arc::new(Mutex::new(out)),
    };
    let router = axum::Router::new().fallback(receive).with_state(state);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn receive(State(l): State<Listener>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let id = header(&headers, "webhook-id");
    let event = header(&headers, "x-zaphook-event");
    let check = match &l.options.secret {
        None => "signature not checked (no --secret)".to_string(),
        Some(secret) => match sign::verify(
            secret,
            id,
            header(&headers, "webhook-timestamp"),
            &body,
            header(&headers, "webhook-signature"),
            Clock::System.now_ms() / 1000,
            l.options.tolerance_secs,
        ) {
            Ok(()) => "signature ok".to_string(),
            Err(why) => format!("signature INVALID: {why}"),
        },
    };
    let pretty = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    let status = match &l.options.forward_to {
        None => StatusCode::from_u16(l.options.status).unwrap_or(StatusCode::OK),
        Some(url) => forward(&l.client, url, &headers, body).await,
    };
    let when = crate::domain::rfc3339::format(Clock::System.now_ms());
    if let Ok(mut out) = l.out.lock() {
        let _ = writeln!(
            out,
            "{when}  {event}  {id}  {check}  → {}\n{pretty}\n",
            status.as_u16()
        );
        let _ = out.flush();
    }
    status
}

/// Forwards the request with its webhook headers; a forward that fails answers 502.
async fn forward(
    client: &reqwest::Client,
    url: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut request = client.post(url).body(body);
    for name in [
        "content-type",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "x-zaphook-event",
        "x-n8n-api-key",
        "user-agent",
    ] {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value.as_bytes());
        }
    }
    match request.send().await {
        Ok(resp) => StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
        Err(_) => StatusCode::BAD_GATEWAY,
    }
}
