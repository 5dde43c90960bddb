//! A stand-in for Meta's Graph API on `127.0.0.1:0`: it checks every request the way the
//! Cloud API would (bearer token, content type, the message envelope), records it, and
//! answers like Meta or as the test scripted.
//!
//! Routes: `POST /{version}/{phone_number_id}/messages`, `GET /{version}/{media_id}` and
//! `GET /media-download/{id}` (the short-lived media URL the lookup hands out).

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use zaphook::channels::cloud::graph::GraphTarget;

/// The access token the stand-in accepts unless a test sets another.
pub const GRAPH_TOKEN: &str = "test-graph-token";
pub const PHONE_NUMBER_ID: &str = "106540352242922";
pub const GRAPH_VERSION: &str = "v25.0";

/// How long a test waits for requests that should arrive within milliseconds.
const GRAPH_DEADLINE: Duration = Duration::from_secs(15);
/// Request bodies larger than this are refused (Meta's limits are far lower for messages).
const BODY_LIMIT: usize = 1024 * 1024;

/// Which route a request hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Send,
    MediaLookup,
    MediaDownload,
    Unknown,
}

/// One request the stand-in got, and what it answered.
#[derive(Debug, Clone)]
pub struct GraphRequest {
    pub route: Route,
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    /// The body parsed as JSON, when it was JSON.
    pub json: Option<Value>,
    pub raw_body: Bytes,
    pub status: u16,
}

impl GraphRequest {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

#[derive(Debug, Clone)]
struct StoredMedia {
    bytes: Vec<u8>,
    mime: String,
    /// What the lookup claims instead of the real digest.
    sha256: Option<String>,
    /// What the lookup claims instead of the real size; `Some(None)` leaves it out.
    file_size: Option<Option<u64>>,
    /// Answer the download without a Content-Length.
    chunked: bool,
}

#[derive(Default)]
struct State {
    token: Mutex<String>,
    requests: Mutex<Vec<GraphRequest>>,
    arrived: Notify,
    send_answers: Mutex<VecDeque<(u16, Value)>>,
    lookup_answers: Mutex<VecDeque<(u16, Value)>>,
    download_answers: Mutex<VecDeque<(u16, Value)>>,
    send_delay: Mutex<Duration>,
    media: Mutex<HashMap<String, StoredMedia>>,
    sent: AtomicU64,
}

/// Meta's error body: `{"error": {message, type, code, error_data: {details}?, fbtrace_id}}`.
pub fn meta_error(code: i64, message: &str, details: Option<&str>) -> Value {
    let mut error = json!({
        "message": message,
        "type": if code == 190 { "OAuthException" } else { "GraphMethodException" },
        "code": code,
        "fbtrace_id": "AStandInTraceId",
    });
    if let Some(details) = details {
        error["error_data"] = json!({ "messaging_product": "whatsapp", "details": details });
    }
    json!({ "error": error })
}

/// Base64 (standard) of the SHA-256 of `bytes`, as Meta writes digests.
pub fn sha256_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
}

pub struct GraphStandIn {
    addr: SocketAddr,
    state: Arc<State>,
    handle: JoinHandle<()>,
}

impl Drop for GraphStandIn {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl GraphStandIn {
    /// A stand-in accepting [`GRAPH_TOKEN`].
    pub async fn start() -> Self {
        Self::start_with_token(GRAPH_TOKEN).await
    }

    pub async fn start_with_token(token: &str) -> Self {
        let state = Arc::new(State::default());
        *state.token.lock().unwrap() = token.to_string();
        let shared = state.clone();
        let router = axum::Router::new().fallback(move |request: Request| {
            let state = shared.clone();
            async move { handle(state, request).await }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        GraphStandIn {
            addr,
            state,
            handle,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, the `graphBaseUrl` to point a connection at.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A target at this stand-in with [`GRAPH_VERSION`], [`PHONE_NUMBER_ID`] and the token
    /// it accepts right now.
    pub fn target(&self) -> GraphTarget {
        GraphTarget {
            base_url: self.base_url(),
            version: GRAPH_VERSION.to_string(),
            phone_number_id: PHONE_NUMBER_ID.to_string(),
            access_token: self.state.token.lock().unwrap().clone(),
        }
    }

    /// Accepts only `token` from now on (a rotated or revoked token).
    pub fn set_token(&self, token: &str) {
        *self.state.token.lock().unwrap() = token.to_string();
    }

    /// The next sends (that pass the checks) answer these statuses and bodies, in order.
    pub fn fail_next_sends(&self, answers: &[(u16, Value)]) {
        self.state
            .send_answers
            .lock()
            .unwrap()
            .extend(answers.iter().cloned());
    }

    /// The next media lookups answer these statuses and bodies, in order.
    pub fn fail_next_lookups(&self, answers: &[(u16, Value)]) {
        self.state
            .lookup_answers
            .lock()
            .unwrap()
            .extend(answers.iter().cloned());
    }

    /// The next `n` media downloads answer `status` with a Meta error body (code 131000
    /// for a 5xx, 100 otherwise).
    pub fn fail_next_downloads(&self, n: usize, status: u16) {
        let code = if status >= 500 { 131000 } else { 100 };
        let body = meta_error(code, "scripted download failure", None);
        let answers: Vec<(u16, Value)> = (0..n).map(|_| (status, body.clone())).collect();
        self.fail_next_downloads_with(&answers);
    }

    /// The next media downloads answer these statuses and bodies, in order.
    pub fn fail_next_downloads_with(&self, answers: &[(u16, Value)]) {
        self.state
            .download_answers
            .lock()
            .unwrap()
            .extend(answers.iter().cloned());
    }

    /// Every send waits this long before it answers (to outlast a lease or a timeout).
    pub fn set_send_delay(&self, delay: Duration) {
        *self.state.send_delay.lock().unwrap() = delay;
    }

    /// Media the lookup of `id` resolves and the download answers.
    pub fn add_media(&self, id: &str, bytes: impl Into<Vec<u8>>, mime: &str) {
        self.state.media.lock().unwrap().insert(
            id.to_string(),
            StoredMedia {
                bytes: bytes.into(),
                mime: mime.to_string(),
                sha256: None,
                file_size: None,
                chunked: false,
            },
        );
    }

    /// The lookup of `id` claims this `sha256` instead of the real one.
    pub fn set_media_sha256(&self, id: &str, sha256: &str) {
        self.change_media(id, |m| m.sha256 = Some(sha256.to_string()));
    }

    /// The lookup of `id` claims this `file_size` (`None`: leaves it out).
    pub fn set_media_file_size(&self, id: &str, file_size: Option<u64>) {
        self.change_media(id, |m| m.file_size = Some(file_size));
    }

    /// The download of `id` comes chunked, without a Content-Length.
    pub fn set_media_chunked(&self, id: &str, chunked: bool) {
        self.change_media(id, |m| m.chunked = chunked);
    }

    fn change_media(&self, id: &str, change: impl FnOnce(&mut StoredMedia)) {
        let mut media = self.state.media.lock().unwrap();
        change(
            media
                .get_mut(id)
                .unwrap_or_else(|| panic!("no media {id} added")),
        );
    }

    /// Every request so far, on every route, in order of arrival.
    pub fn requests(&self) -> Vec<GraphRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The send requests so far (including refused ones).
    pub fn send_requests(&self) -> Vec<GraphRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.route == Route::Send)
            .collect()
    }

    /// The JSON bodies of the sends so far.
    pub fn sends(&self) -> Vec<Value> {
        self.send_requests()
            .into_iter()
            .filter_map(|r| r.json)
            .collect()
    }

    /// Waits until at least `n` sends arrived and answers their bodies; panics at the
    /// deadline.
    pub async fn wait_for_sends(&self, n: usize) -> Vec<Value> {
        self.wait_until("sends", |all| {
            all.iter().filter(|r| r.route == Route::Send).count() >= n
        })
        .await;
        self.sends()
    }

    /// Waits until at least `n` requests arrived on any route; panics at the deadline.
    pub async fn wait_for_requests(&self, n: usize) -> Vec<GraphRequest> {
        self.wait_until("requests", |all| all.len() >= n).await
    }

    /// Waits until `cond` holds for the requests so far; panics at the deadline.
    pub async fn wait_until(
        &self,
        what: &str,
        cond: impl Fn(&[GraphRequest]) -> bool,
    ) -> Vec<GraphRequest> {
        let deadline = tokio::time::Instant::now() + GRAPH_DEADLINE;
        loop {
            // Registered before looking, so a request that lands in between still wakes us.
            let notified = self.state.arrived.notified();
            let all = self.requests();
            if cond(&all) {
                return all;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let seen: Vec<String> = self
                    .requests()
                    .iter()
                    .take(20)
                    .map(|r| format!("{} {} -> {}", r.method, r.path, r.status))
                    .collect();
                panic!(
                    "the graph stand-in did not get the {what} the test waited for; it got {seen:?}"
                );
            }
        }
    }
}

async fn handle(state: Arc<State>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let raw_body = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let route = match (&parts.method, segments.as_slice()) {
        (&Method::POST, [_, _, "messages"]) => Route::Send,
        (&Method::GET, ["media-download", _]) => Route::MediaDownload,
        (&Method::GET, [_, _]) => Route::MediaLookup,
        _ => Route::Unknown,
    };
    let json: Option<Value> = serde_json::from_slice(&raw_body).ok();
    let mut recorded = GraphRequest {
        route,
        method: parts.method.clone(),
        path: path.clone(),
        headers: parts.headers.clone(),
        json: json.clone(),
        raw_body,
        status: 0,
    };

    let expected = format!("Bearer {}", state.token.lock().unwrap());
    let authorized = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(expected.as_str());

    let answer = if route == Route::Unknown {
        Answer::json(
            404,
            meta_error(
                100,
                "Unsupported request",
                Some(&format!("stand-in: no route {} {path}", parts.method)),
            ),
        )
    } else if !authorized {
        Answer::json(
            401,
            meta_error(
                190,
                "Invalid OAuth access token - Cannot parse access token",
                None,
            ),
        )
    } else {
        match route {
            Route::Send => send(&state, &parts.headers, json.as_ref()).await,
            Route::MediaLookup => lookup(&state, &parts.headers, segments[1]),
            Route::MediaDownload => download(&state, segments[1]),
            Route::Unknown => unreachable!(),
        }
    };

    recorded.status = answer.status;
    state.requests.lock().unwrap().push(recorded);
    state.arrived.notify_waiters();
    answer.into_response()
}

struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
    chunked: bool,
}

impl Answer {
    fn json(status: u16, body: Value) -> Self {
        Answer {
            status,
            content_type: "application/json".into(),
            body: body.to_string().into_bytes(),
            chunked: false,
        }
    }

    fn invalid(details: &str) -> Self {
        Answer::json(
            400,
            meta_error(
                100,
                "Invalid parameter",
                Some(&format!("stand-in: {details}")),
            ),
        )
    }

    fn into_response(self) -> Response {
        let body = Body::from(self.body);
        // A stream has no exact size, so neither axum nor hyper announces a Content-Length
        // and the answer goes out chunked, the way a streaming CDN answers.
        let body = if self.chunked {
            Body::from_stream(body.into_data_stream())
        } else {
            body
        };
        Response::builder()
            .status(StatusCode::from_u16(self.status).unwrap())
            .header(header::CONTENT_TYPE, self.content_type)
            .body(body)
            .unwrap()
    }
}

/// `POST /{version}/{phone_number_id}/messages`: the envelope the Cloud API insists on.
async fn send(state: &State, headers: &HeaderMap, json: Option<&Value>) -> Answer {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/json") {
        return Answer::invalid(&format!("content-type {content_type:?} is not JSON"));
    }
    let Some(body) = json.filter(|b| b.is_object()) else {
        return Answer::invalid("the body is not a JSON object");
    };
    if body["messaging_product"] != "whatsapp" {
        return Answer::invalid("messaging_product must be \"whatsapp\"");
    }
    if !body["recipient_type"].is_null() && body["recipient_type"] != "individual" {
        return Answer::invalid("recipient_type must be \"individual\"");
    }
    let Some(kind) = body["type"].as_str().filter(|t| !t.is_empty()) else {
        return Answer::invalid("type is missing");
    };
    // Every type carries an object of its name, but `contacts` a list of cards.
    let part_ok = match kind {
        "contacts" => body[kind].as_array().is_some_and(|cards| {
            !cards.is_empty()
                && cards.iter().all(|c| {
                    c["name"]["formatted_name"]
                        .as_str()
                        .is_some_and(|n| !n.is_empty())
                })
        }),
        _ => body[kind].is_object(),
    };
    if !part_ok {
        return Answer::invalid(&format!("the {kind} object is missing"));
    }
    if kind == "location"
        && !(body[kind]["latitude"].is_number() && body[kind]["longitude"].is_number())
    {
        return Answer::invalid("a location needs numeric latitude and longitude");
    }
    let to = body["to"].as_str();
    let recipient = body["recipient"].as_str();
    if let Some(to) = to {
        let digits = to.strip_prefix('+').unwrap_or(to);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Answer::invalid(&format!("to {to:?} is not a phone number"));
        }
    }
    if let Some(bsuid) = recipient {
        // `CC.id` or a parent `CC.ENT.id`.
        let parts: Vec<&str> = bsuid.split('.').collect();
        let well_formed = matches!(parts.as_slice(), [cc, id] | [cc, "ENT", id]
            if cc.len() == 2 && cc.bytes().all(|b| b.is_ascii_uppercase())
                && !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()));
        if !well_formed {
            return Answer::invalid(&format!("recipient {bsuid:?} is not a BSUID"));
        }
    }
    if to.is_none() && recipient.is_none() {
        return Answer::invalid("neither to nor recipient is set");
    }

    let delay = *state.send_delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let scripted = state.send_answers.lock().unwrap().pop_front();
    if let Some((status, body)) = scripted {
        return Answer::json(status, body);
    }
    let n = state.sent.fetch_add(1, Ordering::SeqCst) + 1;
    // Meta answers `wa_id` for a phone send and `user_id` for a BSUID send; `to` wins.
    let contact = match to {
        Some(to) => json!({ "input": to, "wa_id": to.trim_start_matches('+') }),
        None => json!({ "input": recipient, "user_id": recipient }),
    };
    Answer::json(
        200,
        json!({
            "messaging_product": "whatsapp",
            "contacts": [contact],
            "messages": [{ "id": format!("wamid.stand-in.{n}") }],
        }),
    )
}

/// `GET /{version}/{media_id}`: the short-lived URL and what Meta knows of the file.
fn lookup(state: &State, headers: &HeaderMap, media_id: &str) -> Answer {
    if let Some((status, body)) = state.lookup_answers.lock().unwrap().pop_front() {
        return Answer::json(status, body);
    }
    let Some(media) = state.media.lock().unwrap().get(media_id).cloned() else {
        return Answer::json(
            400,
            meta_error(
                100,
                "Unsupported get request. Object with ID does not exist",
                None,
            ),
        );
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    let mut answer = json!({
        "messaging_product": "whatsapp",
        "url": format!("http://{host}/media-download/{media_id}"),
        "mime_type": media.mime,
        "sha256": media.sha256.clone().unwrap_or_else(|| sha256_base64(&media.bytes)),
        "id": media_id,
    });
    match media.file_size {
        None => answer["file_size"] = json!(media.bytes.len()),
        Some(Some(size)) => answer["file_size"] = json!(size),
        Some(None) => {}
    }
    Answer::json(200, answer)
}

/// `GET /media-download/{id}`: the bytes.
fn download(state: &State, media_id: &str) -> Answer {
    if let Some((status, body)) = state.download_answers.lock().unwrap().pop_front() {
        return Answer::json(status, body);
    }
    let Some(media) = state.media.lock().unwrap().get(media_id).cloned() else {
        return Answer::json(404, meta_error(100, "media not found", None));
    };
    Answer {
        status: 200,
        content_type: media.mime,
        body: media.bytes,
        chunked: media.chunked,
    }
}
