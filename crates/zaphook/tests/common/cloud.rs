//! Test support for the Cloud API channel: the real app with fast channel schedules, a
//! stand-in Graph server, a `cloud` connection pointed at it, a receiver subscribed to every
//! event, and callbacks signed the way Meta signs them.

use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

use super::graph::{GRAPH_TOKEN, GRAPH_VERSION, GraphStandIn, PHONE_NUMBER_ID};
use super::{TestApp, TestReceiver, spawn_app_with};

pub const APP_SECRET: &str = "test_app_secret";
pub const VERIFY_TOKEN: &str = "verify-me-please";

pub const EVENTS: &[&str] = &[
    "message.created",
    "message.updated",
    "ticket.created",
    "ticket.transferred",
    "ticket.closed",
];

/// Fast channel schedules for tests.
pub fn fast_channels(s: &mut zaphook::settings::Settings) {
    let c = &mut s.channels;
    c.graph_timeout = Duration::from_secs(2);
    c.send_lease = Duration::from_secs(5);
    c.send_retry.schedule = vec![Duration::from_millis(100); 3];
    c.send_retry.jitter = 0.0;
    c.media_wait = Duration::from_millis(1500);
    c.media_quick_retry = vec![Duration::from_millis(50); 4];
    c.media_retry.schedule = vec![Duration::from_millis(200); 5];
    c.media_retry.jitter = 0.0;
    c.inbox_lease = Duration::from_secs(5);
}

pub struct Cloud {
    pub app: TestApp,
    pub graph: GraphStandIn,
    pub receiver: TestReceiver,
    pub connection: i64,
    pub webhook_secret: String,
}

impl Cloud {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// The fixture on an app whose settings `change` adjusts after [`fast_channels`].
    pub async fn start_with(change: impl FnOnce(&mut zaphook::settings::Settings)) -> Self {
        let app = spawn_app_with(|s| {
            fast_channels(s);
            change(s);
        })
        .await;
        let graph = GraphStandIn::start().await;
        let receiver = TestReceiver::start().await;
        let connection = cloud_connection(&app, &graph).await;
        let (_, webhook_secret) = app.webhook(&receiver.url(), EVENTS).await;
        Cloud {
            app,
            graph,
            receiver,
            connection,
            webhook_secret,
        }
    }

    pub fn callback_path(&self) -> String {
        format!("/channels/cloud/{}", self.connection)
    }

    /// POSTs `body` to the callback URL signed with the app secret.
    pub async fn callback(&self, body: &[u8]) -> StatusCode {
        self.callback_signed(body, Some(&sign(APP_SECRET, body)))
            .await
    }

    pub async fn callback_signed(&self, body: &[u8], signature: Option<&str>) -> StatusCode {
        post_callback(&self.app, self.connection, body, signature).await
    }

    /// Waits until every stored callback body was read.
    pub async fn inbox_drained(&self) {
        super::eventually("the inbox to be read", || async {
            zaphook::store::read(&self.app.store, |tx| tx.next_inbox_due())
                .await
                .is_ok_and(|due: Option<i64>| due.is_none())
        })
        .await;
    }

    /// The messages of a ticket, oldest first.
    pub async fn messages(&self, ticket: i64) -> Vec<Value> {
        let (_, page) = self
            .app
            .get(&format!("/api/v1/tickets/{ticket}/messages"))
            .await;
        page["items"].as_array().cloned().unwrap_or_default()
    }

    /// Waits for an event of `event` type whose body satisfies `matches`; answers it.
    pub async fn event(&self, event: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let all = self
            .receiver
            .wait_until(|all| all.iter().any(|r| r.event() == event && matches(&r.json())))
            .await;
        all.iter()
            .map(|r| r.json())
            .find(|v| v["event"] == event && matches(v))
            .unwrap()
    }
}

/// Creates a cloud connection on `app` whose Graph API is the stand-in.
pub async fn cloud_connection(app: &TestApp, graph: &GraphStandIn) -> i64 {
    let v = app
        .ok(
            "/api/v1/connections",
            json!({"name": "Cloud", "channel": "cloud", "cloud": {
                "phoneNumberId": PHONE_NUMBER_ID, "accessToken": GRAPH_TOKEN,
                "appSecret": APP_SECRET, "verifyToken": VERIFY_TOKEN,
                "graphBaseUrl": graph.base_url(), "graphVersion": GRAPH_VERSION}}),
            201,
        )
        .await;
    v["id"].as_i64().unwrap()
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`, as Meta signs.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

pub async fn post_callback(
    app: &TestApp,
    connection: i64,
    body: &[u8],
    signature: Option<&str>,
) -> StatusCode {
    let mut req = app
        .client
        .post(app.url(&format!("/channels/cloud/{connection}")))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(signature) = signature {
        req = req.header("x-hub-signature-256", signature);
    }
    req.send().await.expect("callback sent").status()
}

/// A shared fixture's bytes.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../../shared/fixtures/whatsapp-cloud/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

/// A `messages` callback body of one change with these contacts, messages and statuses.
pub fn body(contacts: Value, messages: Value, statuses: Value) -> Vec<u8> {
    let mut value = json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
    });
    if !contacts.is_null() {
        value["contacts"] = contacts;
    }
    if !messages.is_null() {
        value["messages"] = messages;
    }
    if !statuses.is_null() {
        value["statuses"] = statuses;
    }
    envelope(vec![("messages", value)])
}

/// A callback body of one entry with these (field, value) changes.
pub fn envelope(changes: Vec<(&str, Value)>) -> Vec<u8> {
    let changes: Vec<Value> = changes
        .into_iter()
        .map(|(field, value)| json!({"field": field, "value": value}))
        .collect();
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": changes}]
    }))
    .unwrap()
}

/// A contacts entry of a user with a phone number.
pub fn contact(wa_id: &str, name: &str) -> Value {
    json!([{"profile": {"name": name}, "wa_id": wa_id}])
}

/// A text message from `from`.
pub fn text(from: &str, id: &str, body: &str) -> Value {
    json!({"from": from, "id": id, "timestamp": "1796000000", "type": "text", "text": {"body": body}})
}

/// A status of a message we sent.
pub fn status(id: &str, status: &str, to: &str) -> Value {
    json!({"id": id, "status": status, "timestamp": "1796000100", "recipient_id": to})
}
