//! Test support: the real application on `127.0.0.1:0` over a temporary SQLite file (or, with
//! `ZAPHOOK_TEST_BACKEND=postgres`, a scratch PostgreSQL schema), a real HTTP receiver that
//! records what arrives and answers what the test says, and waiting on conditions with
//! deadlines.

#![allow(dead_code)]

pub mod backend;
pub mod browser;
pub mod cloud;
pub mod external;
pub mod graph;
pub mod load;
pub mod proxy;

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use zaphook::app::Application;
use zaphook::clock::Clock;
use zaphook::jitter::Jitter;
use zaphook::settings::Settings;

pub const TOKEN: &str = "test-admin-token";

/// How long a test waits for something that should happen within milliseconds.
pub const DEADLINE: Duration = Duration::from_secs(15);

pub struct TestApp {
    pub addr: SocketAddr,
    pub token: String,
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    pub store: Arc<dyn zaphook::store::Store>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
    db: Option<backend::TestDb>,
}

/// The backend the integration tests run on: `ZAPHOOK_TEST_BACKEND` (`sqlite`, the default,
/// or `postgres`, on `ZAPHOOK_TEST_DATABASE_URL`).
pub fn test_db() -> backend::TestDb {
    match std::env::var("ZAPHOOK_TEST_BACKEND").as_deref() {
        Ok("postgres") => backend::TestDb::postgres()
            .expect("ZAPHOOK_TEST_BACKEND=postgres needs ZAPHOOK_TEST_DATABASE_URL"),
        Ok("sqlite") | Err(_) => backend::TestDb::sqlite(),
        Ok(other) => panic!("ZAPHOOK_TEST_BACKEND: unknown backend {other:?}"),
    }
}

/// Settings for tests: port 0, private targets allowed, a fast retry schedule.
pub fn test_settings(data_dir: PathBuf) -> Settings {
    let mut s = Settings::new("127.0.0.1:0".parse().unwrap(), data_dir);
    s.bootstrap_token = Some(TOKEN.to_string());
    s.http.targets.allow_private = true;
    s.http.request_timeout = Duration::from_secs(2);
    s.delivery.lease = Duration::from_secs(3);
    s.delivery.poll_interval = Duration::from_millis(100);
    s.delivery.retry.schedule = vec![Duration::from_millis(300); 5];
    s.delivery.retry.jitter = 0.0;
    s
}

/// Test settings on `db` (for a first start, or a restart on the same data).
pub fn settings_on(db: &backend::TestDb) -> Settings {
    let mut settings = test_settings(db.dir.path().to_path_buf());
    settings.database_url = db.database_url();
    settings.database_pool = 4;
    settings
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(change: impl FnOnce(&mut Settings)) -> TestApp {
    let db = test_db();
    let mut settings = settings_on(&db);
    change(&mut settings);
    let mut app = start(settings).await;
    app.db = Some(db);
    app
}

/// The application on a clock and a source of jitter of the test's.
pub async fn spawn_app_on(
    clock: Clock,
    jitter: Jitter,
    change: impl FnOnce(&mut Settings),
) -> TestApp {
    let db = test_db();
    let mut settings = settings_on(&db);
    change(&mut settings);
    let mut app = start_on(settings, clock, jitter).await;
    app.db = Some(db);
    app
}

/// Starts the application on existing settings (a restart reuses the data directory).
pub async fn start(settings: Settings) -> TestApp {
    start_on(settings, Clock::System, Jitter::Random).await
}

async fn start_on(settings: Settings, clock: Clock, jitter: Jitter) -> TestApp {
    let data_dir = settings.data_dir.clone();
    let app = Application::build_with(settings, clock, jitter)
        .await
        .expect("app builds");
    let addr = app.local_addr();
    let store = app.store();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = stopped.await;
        })
        .await
        .expect("app runs");
    });
    TestApp {
        addr,
        token: TOKEN.to_string(),
        client: reqwest::Client::new(),
        data_dir,
        store,
        stop: Some(stop),
        handle: Some(handle),
        db: None,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let resp = req.send().await.expect("request sent");
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
        let text = resp.text().await.unwrap_or_default();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.request(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(reqwest::Method::PATCH, path, Some(body)).await
    }

    /// Posts and asserts the status, answering the body.
    pub async fn ok(&self, path: &str, body: Value, expected: u16) -> Value {
        let (status, value) = self.post(path, body).await;
        assert_eq!(status.as_u16(), expected, "POST {path}: {value}");
        value
    }

    pub async fn sandbox_connection(&self, name: &str) -> i64 {
        let v = self
            .ok(
                "/api/v1/connections",
                serde_json::json!({"name": name, "channel": "sandbox"}),
                201,
            )
            .await;
        v["id"].as_i64().unwrap()
    }

    /// Creates an endpoint at `url` for `events`; answers (id, secret).
    pub async fn webhook(&self, url: &str, events: &[&str]) -> (i64, String) {
        let v = self
            .ok(
                "/api/v1/webhooks",
                serde_json::json!({"url": url, "events": events}),
                201,
            )
            .await;
        (
            v["id"].as_i64().unwrap(),
            v["secret"].as_str().unwrap().to_string(),
        )
    }

    /// An endpoint's delivery log, every page of it. It is complete once the calls that made
    /// its events have answered (deliveries are written with their events), so it says what
    /// the endpoint is owed without waiting to see whether anything else arrives.
    pub async fn delivery_log(&self, webhook: i64) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after = String::new();
        loop {
            let path = format!("/api/v1/webhooks/{webhook}/deliveries?limit=100{after}");
            let (status, page) = self.get(&path).await;
            assert_eq!(status, 200, "{page}");
            all.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["next"].as_str() {
                Some(next) => after = format!("&after={next}"),
                None => return all,
            }
        }
    }

    /// The delivery log once every delivery in it is finished (delivered or dead).
    pub async fn settled_log(&self, webhook: i64) -> Vec<Value> {
        eventually("every delivery to finish", || async {
            let log = self.delivery_log(webhook).await;
            log.iter()
                .all(|d| d["status"] == "delivered" || d["status"] == "dead")
        })
        .await;
        self.delivery_log(webhook).await
    }

    /// A contact sends `body` from `from` on a sandbox connection.
    pub async fn inbound(&self, connection: i64, from: &str, body: &str) -> Value {
        self.ok(
            &format!("/api/v1/connections/{connection}/sandbox/inbound"),
            serde_json::json!({"from": from, "name": "Contact", "body": body}),
            202,
        )
        .await
    }

    /// Stops the application gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            let _ = handle.await;
        }
    }

    /// Keeps the database alive beyond this app (for a restart on it).
    pub fn take_dir(&mut self) -> Option<backend::TestDb> {
        self.db.take()
    }
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    /// What the receiver answered.
    pub status: u16,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("webhook body is JSON")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn event(&self) -> String {
        self.json()["event"].as_str().unwrap_or("").to_string()
    }
}

type Responder = dyn Fn(&Received) -> u16 + Send + Sync;

/// A webhook receiver: records every request and answers the status its responder picks
/// (by default the next of a queue of statuses, then 200).
pub struct TestReceiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    arrived: Arc<Notify>,
    statuses: Arc<Mutex<VecDeque<u16>>>,
    handle: JoinHandle<()>,
}

impl Drop for TestReceiver {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl TestReceiver {
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A receiver whose answer for each request is decided by `responder`.
    pub async fn with_responder(
        responder: impl Fn(&Received) -> u16 + Send + Sync + 'static,
    ) -> Self {
        Self::start_with(Some(Arc::new(responder))).await
    }

    async fn start_with(responder: Option<Arc<Responder>>) -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let arrived = Arc::new(Notify::new());
        let statuses = Arc::new(Mutex::new(VecDeque::new()));
        let (r, a, q) = (received.clone(), arrived.clone(), statuses.clone());
        let handler = move |headers: HeaderMap, body: Bytes| {
            let (r, a, q, responder) = (r.clone(), a.clone(), q.clone(), responder.clone());
            async move {
                let mut got = Received {
                    headers,
                    body,
                    status: 0,
                };
                got.status = match &responder {
                    Some(f) => f(&got),
                    None => q.lock().unwrap().pop_front().unwrap_or(200),
                };
                let status = got.status;
                r.lock().unwrap().push(got);
                a.notify_waiters();
                StatusCode::from_u16(status).unwrap()
            }
        };
        let router = axum::Router::new().fallback(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        TestReceiver {
            addr,
            received,
            arrived,
            statuses,
            handle,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Answers these statuses to the next requests, in order.
    pub fn answer(&self, statuses: &[u16]) {
        self.statuses.lock().unwrap().extend(statuses);
    }

    pub fn all(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived; panics at the deadline.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        self.wait_until(|all| all.len() >= n).await
    }

    /// Waits until `cond` holds for what arrived; panics at the deadline.
    pub async fn wait_until(&self, cond: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let notified = self.arrived.notified();
            let all = self.all();
            if cond(&all) {
                return all;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let all = self.all();
                let events: Vec<String> = all.iter().take(20).map(|r| r.event()).collect();
                panic!(
                    "the receiver did not get what the test waited for; it got {} requests, first: {events:?}",
                    all.len()
                );
            }
        }
    }
}

/// Waits until `check` answers true; panics at the deadline.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Verifies a request's signature with the reference Standard Webhooks implementation.
pub fn verify(secret: &str, got: &Received) -> Result<(), String> {
    let wh = standardwebhooks::Webhook::new(secret).map_err(|e| e.to_string())?;
    wh.verify(&got.body, &got.headers)
        .map_err(|e| e.to_string())
}

/// POSTs `body` as JSON with `token`; answers the status, or `None` when the server could
/// not be reached (it was killed).
pub async fn post(
    client: &reqwest::Client,
    token: &str,
    url: String,
    body: serde_json::Value,
) -> Option<u16> {
    let resp = client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .ok()?;
    Some(resp.status().as_u16())
}

/// `serve`'s flags for a child-process test with `token`: private targets allowed, a 1 s
/// delivery timeout, and a 2 s lease, so deliveries left leased by a killed or restored
/// server (or whose outcome could not be recorded) are taken again soon.
pub fn quick_lease_args(token: &str) -> Vec<&str> {
    vec![
        "--bootstrap-token",
        token,
        "--allow-private-targets",
        "--delivery-timeout",
        "1",
        "--delivery-lease",
        "2",
    ]
}

/// The real `zaphook` binary running `serve` as a child process; killed when dropped, so a
/// failing test leaves no server behind.
pub struct ServerProcess {
    child: std::process::Child,
    pub base: String,
}

impl ServerProcess {
    /// Starts `zaphook serve --listen 127.0.0.1:0 --data-dir DIR` with `args`, and waits for
    /// the address it prints.
    pub fn start(data_dir: &std::path::Path, args: &[&str]) -> Self {
        Self::start_with(data_dir, args, &[], None)
    }

    /// `start` with more environment, and the log (at info) written to `log` when given.
    pub fn start_with(
        data_dir: &std::path::Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: Option<&std::path::Path>,
    ) -> Self {
        use std::io::BufRead;
        let stderr = match log {
            Some(path) => std::fs::File::create(path).expect("the log file").into(),
            None => std::process::Stdio::null(),
        };
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_zaphook"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env("ZAPHOOK_LOG", if log.is_some() { "info" } else { "warn" })
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("the zaphook binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("the server prints its address")
                .expect("stdout is readable");
            if let Some(addr) = line.strip_prefix("zaphook listening on ") {
                break addr.trim().to_string();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        ServerProcess { child, base }
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        self.child.wait().expect("the server exits")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
