//! Sending through the Cloud API end to end: the real server and send worker, a stand-in
//! Graph server that checks every request, and the events a real receiver got: each kind of
//! message in Meta's shape, transient errors retried, permanent ones failing the message at
//! once, a refused token until it is replaced, the send lease against the Graph timeout, and
//! one connection's trouble never holding up another.

mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use common::cloud::{APP_SECRET, Cloud, VERIFY_TOKEN, body, contact, text};
use common::graph::{
    GRAPH_TOKEN, GRAPH_VERSION, GraphRequest, GraphStandIn, PHONE_NUMBER_ID, meta_error,
};
use common::{DEADLINE, test_settings};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The customer every test writes to.
const TO: &str = "5511999990001";
/// The WhatsApp id of a message the customer sent.
const INBOUND: &str = "wamid.inbound.customer.1";

/// POSTs a message and answers what the API accepted (`pending`, no channel id yet).
async fn post_message(cloud: &Cloud, request: Value) -> Value {
    let m = cloud.app.ok("/api/v1/messages", request, 202).await;
    assert_eq!(m["status"], "pending", "{m}");
    assert_eq!(m["messageId"], Value::Null, "{m}");
    m
}

/// Sends `body` as a text to [`TO`] on `connection`; answers zaphook's id of the message.
async fn send_text(cloud: &Cloud, connection: i64, body: &str) -> String {
    let m = post_message(
        cloud,
        json!({"connectionId": connection, "number": TO, "body": body}),
    )
    .await;
    m["id"].as_str().unwrap().to_string()
}

async fn created(cloud: &Cloud, id: &str) -> Value {
    cloud.event("message.created", |v| v["id"] == id).await
}

async fn failed(cloud: &Cloud, id: &str) -> Value {
    cloud
        .event("message.updated", |v| {
            v["id"] == id && v["status"] == "failed"
        })
        .await
}

/// The events of type `event` about message `id` the receiver got so far.
fn events_of(cloud: &Cloud, event: &str, id: &str) -> Vec<Value> {
    cloud
        .receiver
        .all()
        .iter()
        .map(|r| r.json())
        .filter(|v| v["event"] == event && v["id"] == id)
        .collect()
}

/// Where in the receiver's arrivals the event of type `event` about `id` is.
fn position(cloud: &Cloud, event: &str, id: &str) -> usize {
    cloud
        .receiver
        .all()
        .iter()
        .position(|r| {
            let v = r.json();
            v["event"] == event && v["id"] == id
        })
        .unwrap_or_else(|| panic!("no {event} of {id}"))
}

/// The sends the stand-in got (refused ones too) whose text is `body`.
fn sends_of(graph: &GraphStandIn, body: &str) -> Vec<GraphRequest> {
    graph
        .send_requests()
        .into_iter()
        .filter(|r| r.json.as_ref().is_some_and(|j| j["text"]["body"] == body))
        .collect()
}

/// `GET /api/v1/connections/{id}`.
async fn connection(cloud: &Cloud, id: i64) -> Value {
    let (status, v) = cloud.app.get(&format!("/api/v1/connections/{id}")).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// A second cloud connection on `cloud`'s app whose Graph API is at `base_url`.
async fn other_connection(cloud: &Cloud, name: &str, phone_number_id: &str, base_url: &str) -> i64 {
    let v = cloud
        .app
        .ok(
            "/api/v1/connections",
            json!({"name": name, "channel": "cloud", "cloud": {
                "phoneNumberId": phone_number_id, "accessToken": GRAPH_TOKEN,
                "appSecret": APP_SECRET, "verifyToken": VERIFY_TOKEN,
                "graphBaseUrl": base_url, "graphVersion": GRAPH_VERSION}}),
            201,
        )
        .await;
    v["id"].as_i64().unwrap()
}

async fn cloud_with(change: impl FnOnce(&mut zaphook::settings::Settings)) -> Cloud {
    Cloud::start_with(change).await
}

/// The customer writes [`INBOUND`]; answers its `message.created`.
async fn customer_writes(cloud: &Cloud) -> Value {
    let callback = body(
        contact(TO, "Ana"),
        json!([text(TO, INBOUND, "Does it come in blue?")]),
        Value::Null,
    );
    assert_eq!(cloud.callback(&callback).await, 200);
    cloud
        .event("message.created", |v| v["messageId"] == INBOUND)
        .await
}

/// Meta's envelope of a send to [`TO`] of `kind` carrying `content`.
fn envelope(kind: &str, content: Value) -> Value {
    let mut v = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": TO,
        "type": kind,
    });
    v[kind] = content;
    v
}

/// Asserts the request reached Meta's send route as the connection, in JSON.
fn assert_sent_as(r: &GraphRequest, token: &str) {
    assert_eq!(
        r.path,
        format!("/{GRAPH_VERSION}/{PHONE_NUMBER_ID}/messages")
    );
    assert_eq!(r.header("authorization"), format!("Bearer {token}"));
    assert!(
        r.header("content-type").starts_with("application/json"),
        "{}",
        r.header("content-type")
    );
}

#[tokio::test]
async fn every_kind_of_message_reaches_graph_in_its_shape() {
    let cloud = Cloud::start().await;
    let inbound = customer_writes(&cloud).await;
    let ticket = inbound["ticket"]["id"].clone();
    assert_eq!(inbound["ticket"]["apiConfig"], Value::Null);

    let cat = "https://cdn.example.com/cat.jpg";
    let pdf = "https://cdn.example.com/receipt.pdf";
    let ogg = "https://cdn.example.com/voice.ogg";
    // (what the API gets beyond connectionId and number, the type Meta gets and its object)
    let cases = [
        (
            json!({"body": "hello there"}),
            envelope("text", json!({"body": "hello there", "preview_url": false})),
        ),
        (
            json!({"body": "your order: https://shop.example.com/o/1"}),
            envelope(
                "text",
                json!({"body": "your order: https://shop.example.com/o/1", "preview_url": true}),
            ),
        ),
        (
            json!({"body": "a cat", "mediaType": "image", "mediaUrl": cat}),
            envelope("image", json!({"link": cat, "caption": "a cat"})),
        ),
        (
            json!({"mediaType": "document", "mediaUrl": pdf, "fileName": "receipt.pdf"}),
            envelope("document", json!({"link": pdf, "filename": "receipt.pdf"})),
        ),
        (
            json!({"body": "your receipt", "mediaType": "document", "mediaUrl": pdf,
                   "fileName": "receipt.pdf"}),
            envelope(
                "document",
                json!({"link": pdf, "caption": "your receipt", "filename": "receipt.pdf"}),
            ),
        ),
        // Meta takes no caption on audio: the body stays in zaphook only.
        (
            json!({"body": "listen", "mediaType": "audio", "mediaUrl": ogg}),
            envelope("audio", json!({"link": ogg})),
        ),
        (
            json!({"body": "it is ready", "externalKey": "PEDIDO-123"}),
            envelope("text", json!({"body": "it is ready", "preview_url": false})),
        ),
        (
            json!({"body": "yes, in blue too", "quotedMessageId": INBOUND}),
            {
                let mut v = envelope(
                    "text",
                    json!({"body": "yes, in blue too", "preview_url": false}),
                );
                v["context"] = json!({"message_id": INBOUND});
                v
            },
        ),
    ];
    for (n, (extra, expected)) in cases.into_iter().enumerate() {
        let mut request = json!({"connectionId": cloud.connection, "number": TO});
        for (k, v) in extra.as_object().unwrap() {
            request[k] = v.clone();
        }
        let accepted = post_message(&cloud, request.clone()).await;
        let id = accepted["id"].as_str().unwrap();
        let event = created(&cloud, id).await;
        let sent = &cloud.graph.send_requests()[n];
        assert_sent_as(sent, GRAPH_TOKEN);
        assert_eq!(sent.json.as_ref().unwrap(), &expected, "{request}");
        assert_eq!(sent.status, 200);

        assert_eq!(event["fromMe"], true, "{event}");
        assert_eq!(event["status"], "sended", "{event}");
        assert_eq!(event["messageId"], format!("wamid.stand-in.{}", n + 1));
        assert_eq!(event["sendType"], "API");
        assert_eq!(event["messageBody"], request["body"].as_str().unwrap_or(""));
        assert_eq!(
            event["mediaType"],
            request["mediaType"].as_str().unwrap_or("chat")
        );
        assert_eq!(event["mediaUrl"], request["mediaUrl"]);
        assert_eq!(event["quotedMessageId"], request["quotedMessageId"]);
        assert_eq!(event["error"], Value::Null);
        assert_eq!(
            event["ticket"]["id"], ticket,
            "the customer's ticket is reused"
        );
        assert_eq!(event["contact"]["phoneNumber"], TO);
        assert_eq!(event["whatsapp"]["id"], cloud.connection);
        // The key given once stays on every later payload of the ticket.
        let expected_config = if n >= 6 {
            json!({"externalKey": "PEDIDO-123"})
        } else {
            Value::Null
        };
        assert_eq!(event["ticket"]["apiConfig"], expected_config, "{event}");

        let (_, stored) = cloud.app.get(&format!("/api/v1/messages/{id}")).await;
        assert_eq!(stored["status"], "sended");
        assert_eq!(stored["messageId"], event["messageId"]);
    }
    assert_eq!(cloud.graph.send_requests().len(), 8);
    let state = connection(&cloud, cloud.connection).await;
    assert_eq!(state["cloud"]["lastSendError"], Value::Null, "{state}");
    assert_eq!(state["cloud"]["tokenRefused"], false);
}

#[tokio::test]
async fn templates_go_out_through_cloud_connections_only() {
    let cloud = Cloud::start().await;
    let components = json!([{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]);
    let accepted = post_message(
        &cloud,
        json!({"connectionId": cloud.connection, "number": TO, "template": {
            "name": "order_ready", "language": "pt_BR", "components": components}}),
    )
    .await;
    let event = created(&cloud, accepted["id"].as_str().unwrap()).await;
    assert_eq!(event["status"], "sended");
    assert_eq!(event["fromMe"], true);
    assert_eq!(event["messageId"], "wamid.stand-in.1");
    let sent = &cloud.graph.send_requests()[0];
    assert_sent_as(sent, GRAPH_TOKEN);
    assert_eq!(
        sent.json.as_ref().unwrap(),
        &envelope(
            "template",
            json!({"name": "order_ready", "language": {"code": "pt_BR"}, "components": components})
        )
    );

    // Refused before anything is stored or sent.
    let sandbox = cloud.app.sandbox_connection("Sandbox").await;
    let refusals = [
        (
            json!({"connectionId": sandbox, "number": TO,
                   "template": {"name": "order_ready", "language": "pt_BR"}}),
            "template",
        ),
        (
            json!({"connectionId": cloud.connection, "number": TO,
                   "template": {"name": "Order Ready!", "language": "pt_BR"}}),
            "template.name",
        ),
        (
            json!({"connectionId": cloud.connection, "number": TO,
                   "template": {"name": "order_ready", "language": "pt BR"}}),
            "template.language",
        ),
        (
            json!({"connectionId": cloud.connection, "number": TO,
                   "template": {"name": "order_ready", "language": "pt_BR", "components": {}}}),
            "template.components",
        ),
        (
            json!({"connectionId": cloud.connection, "number": TO, "mediaType": "image",
                   "mediaUrl": "https://cdn.example.com/a.jpg",
                   "template": {"name": "order_ready", "language": "pt_BR"}}),
            "template",
        ),
    ];
    for (request, field) in refusals {
        let (status, problem) = cloud.app.post("/api/v1/messages", request.clone()).await;
        assert_eq!(status, 422, "{request}: {problem}");
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert!(fields.contains(&field), "{request}: {problem}");
    }
    // A later message is the next send: none of the refused ones was queued.
    let later = send_text(&cloud, cloud.connection, "after the refusals").await;
    assert_eq!(
        created(&cloud, &later).await["messageId"],
        "wamid.stand-in.2"
    );
    assert_eq!(cloud.graph.send_requests().len(), 2);
}

#[tokio::test]
async fn an_agent_reaction_goes_out_naming_the_customers_message() {
    let cloud = Cloud::start().await;
    let inbound = customer_writes(&cloud).await;
    let id = inbound["id"].as_str().unwrap();
    let user = cloud
        .app
        .ok(
            "/api/v1/users",
            json!({"name": "Bia", "email": "bia@example.com"}),
            201,
        )
        .await;
    let user_id = user["id"].as_i64().unwrap();

    let (status, reacted) = cloud
        .app
        .post(
            &format!("/api/v1/messages/{id}/reactions"),
            json!({"emoji": "👍", "userId": user_id}),
        )
        .await;
    assert_eq!(status, 200, "{reacted}");
    let updated = cloud
        .event("message.updated", |v| {
            v["id"] == id && v["reactions"].as_array().is_some_and(|r| !r.is_empty())
        })
        .await;
    assert_eq!(updated["reactions"][0]["emoji"], "👍");
    assert_eq!(updated["reactions"][0]["fromMe"], true);
    assert_eq!(updated["reactions"][0]["userId"], user_id);
    let sends = cloud.graph.wait_for_sends(1).await;
    assert_eq!(
        sends[0],
        envelope("reaction", json!({"message_id": INBOUND, "emoji": "👍"}))
    );
    assert_sent_as(&cloud.graph.send_requests()[0], GRAPH_TOKEN);

    // Taking it back sends an empty emoji, by the channel's id as well.
    let (status, _) = cloud
        .app
        .post(
            &format!("/api/v1/messages/{INBOUND}/reactions"),
            json!({"emoji": "", "userId": user_id}),
        )
        .await;
    assert_eq!(status, 200);
    let sends = cloud.graph.wait_for_sends(2).await;
    assert_eq!(
        sends[1],
        envelope("reaction", json!({"message_id": INBOUND, "emoji": ""}))
    );

    // A reaction is no message: a later one is the only new message.created.
    let later = send_text(&cloud, cloud.connection, "anything else?").await;
    assert_eq!(
        created(&cloud, &later).await["messageId"],
        "wamid.stand-in.3"
    );
    assert_eq!(events_of(&cloud, "message.created", id).len(), 1);
    let all_created = cloud
        .receiver
        .all()
        .iter()
        .filter(|r| r.event() == "message.created")
        .count();
    assert_eq!(all_created, 2, "the customer's message and the later one");
    assert_eq!(cloud.graph.send_requests().len(), 3);
}

#[tokio::test]
async fn transient_errors_are_retried_until_meta_accepts() {
    let cloud = Cloud::start().await;
    // A permanent failure first, so the connection has a last error to clear.
    cloud
        .graph
        .fail_next_sends(&[(400, meta_error(131026, "Message undeliverable", None))]);
    let doomed = send_text(&cloud, cloud.connection, "doomed").await;
    failed(&cloud, &doomed).await;
    let state = connection(&cloud, cloud.connection).await;
    assert_eq!(
        state["cloud"]["lastSendError"],
        "131026: Message undeliverable"
    );
    assert!(state["cloud"]["lastSendErrorAt"].is_string(), "{state}");

    cloud.graph.fail_next_sends(&[
        (500, meta_error(131000, "Something went wrong", None)),
        (429, meta_error(130429, "Rate limit hit", None)),
    ]);
    let id = send_text(&cloud, cloud.connection, "try me again").await;
    let event = created(&cloud, &id).await;
    assert_eq!(event["status"], "sended");
    assert_eq!(event["messageId"], "wamid.stand-in.1");
    let statuses: Vec<u16> = sends_of(&cloud.graph, "try me again")
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [500, 429, 200]);
    let state = connection(&cloud, cloud.connection).await;
    assert_eq!(state["cloud"]["lastSendError"], Value::Null, "{state}");
    assert_eq!(state["cloud"]["lastSendErrorAt"], Value::Null, "{state}");
    assert_eq!(state["cloud"]["tokenRefused"], false);

    // Once the next message is through, the retried one was sent once and created once.
    let later = send_text(&cloud, cloud.connection, "and another").await;
    assert_eq!(
        created(&cloud, &later).await["messageId"],
        "wamid.stand-in.2"
    );
    assert_eq!(sends_of(&cloud.graph, "try me again").len(), 3);
    assert_eq!(events_of(&cloud, "message.created", &id).len(), 1);
    assert!(events_of(&cloud, "message.updated", &id).is_empty());
}

#[tokio::test]
async fn permanent_errors_fail_the_message_without_retries() {
    let cloud = Cloud::start().await;
    let cases = [
        (
            meta_error(
                131047,
                "Re-engagement message",
                Some(
                    "More than 24 hours have passed since the recipient last replied to the sender number.",
                ),
            ),
            131047,
            vec!["template", "24-hour"],
        ),
        (
            meta_error(131026, "Message undeliverable", None),
            131026,
            vec!["Message undeliverable"],
        ),
    ];
    for (n, (answer, code, words)) in cases.into_iter().enumerate() {
        let body = format!("outside the window {n}");
        cloud.graph.fail_next_sends(&[(400, answer)]);
        let id = send_text(&cloud, cloud.connection, &body).await;
        let updated = failed(&cloud, &id).await;
        assert_eq!(updated["fromMe"], true);
        assert_eq!(updated["messageId"], Value::Null, "Meta never took it");
        assert_eq!(updated["error"]["code"], code, "{updated}");
        assert_eq!(updated["error"]["source"], "whatsapp");
        let title = updated["error"]["title"].as_str().unwrap();
        for word in words {
            assert!(title.contains(word), "{title}");
        }
        assert_eq!(sends_of(&cloud.graph, &body).len(), 1);
        let (_, stored) = cloud.app.get(&format!("/api/v1/messages/{id}")).await;
        assert_eq!(stored["status"], "failed");
        assert_eq!(stored["error"], updated["error"]);
        let state = connection(&cloud, cloud.connection).await;
        assert_eq!(
            state["cloud"]["lastSendError"],
            format!("{code}: {title}"),
            "{state}"
        );
        assert_eq!(state["cloud"]["tokenRefused"], false);

        // A later message goes through while the failed one is never sent again.
        let later = send_text(&cloud, cloud.connection, &format!("later {n}")).await;
        assert_eq!(
            created(&cloud, &later).await["messageId"],
            format!("wamid.stand-in.{}", n + 1)
        );
        assert_eq!(sends_of(&cloud.graph, &body).len(), 1);
        assert!(events_of(&cloud, "message.created", &id).is_empty());
        assert_eq!(events_of(&cloud, "message.updated", &id).len(), 1);
    }
    assert_eq!(cloud.graph.send_requests().len(), 4);
}

#[tokio::test]
async fn a_refused_token_fails_sends_until_it_is_replaced() {
    let cloud = Cloud::start().await;
    let rotated = "rotated-graph-token-4711";
    // Meta no longer takes the connection's token: 401 with code 190.
    cloud.graph.set_token(rotated);
    let first = send_text(&cloud, cloud.connection, "token one").await;
    let updated = failed(&cloud, &first).await;
    assert_eq!(updated["error"]["code"], 190, "{updated}");
    assert!(
        updated["error"]["title"]
            .as_str()
            .unwrap()
            .contains("access token"),
        "{updated}"
    );
    let tries = sends_of(&cloud.graph, "token one");
    assert_eq!(tries.len(), 1);
    assert_eq!(tries[0].status, 401);
    assert_sent_as(&tries[0], GRAPH_TOKEN);
    let state = connection(&cloud, cloud.connection).await;
    assert_eq!(state["cloud"]["tokenRefused"], true, "{state}");
    assert!(
        state["cloud"]["lastSendError"]
            .as_str()
            .unwrap()
            .starts_with("190: "),
        "{state}"
    );

    // Changing anything but the token leaves the refusal standing.
    let (_, other) = cloud
        .app
        .patch(
            &format!("/api/v1/connections/{}", cloud.connection),
            json!({"cloud": {"graphVersion": "v25.0"}}),
        )
        .await;
    assert_eq!(other["cloud"]["tokenRefused"], true, "{other}");

    // The new token: the refusal is cleared, and the answer shows no secret.
    let (status, patched) = cloud
        .app
        .patch(
            &format!("/api/v1/connections/{}", cloud.connection),
            json!({"cloud": {"accessToken": rotated}}),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["cloud"]["tokenRefused"], false, "{patched}");
    let shown = connection(&cloud, cloud.connection).await;
    assert_eq!(shown["cloud"]["tokenRefused"], false, "{shown}");
    for text in [patched.to_string(), shown.to_string()] {
        for secret in [rotated, GRAPH_TOKEN, APP_SECRET, VERIFY_TOKEN] {
            assert!(!text.contains(secret), "{secret} shown in {text}");
        }
    }

    let second = send_text(&cloud, cloud.connection, "token two").await;
    assert_eq!(
        created(&cloud, &second).await["messageId"],
        "wamid.stand-in.1"
    );
    let tries = sends_of(&cloud.graph, "token two");
    assert_eq!(tries.len(), 1);
    assert_sent_as(&tries[0], rotated);
    let state = connection(&cloud, cloud.connection).await;
    assert_eq!(state["cloud"]["lastSendError"], Value::Null, "{state}");
    assert_eq!(state["cloud"]["tokenRefused"], false);
    // The refused message was not tried again.
    assert_eq!(sends_of(&cloud.graph, "token one").len(), 1);
    assert!(events_of(&cloud, "message.created", &first).is_empty());

    // Code 190 without a 401 is a refused token too.
    cloud.graph.fail_next_sends(&[(
        400,
        meta_error(
            190,
            "Error validating access token: Session has expired",
            None,
        ),
    )]);
    let third = send_text(&cloud, cloud.connection, "token three").await;
    let updated = failed(&cloud, &third).await;
    assert_eq!(updated["error"]["code"], 190);
    let state = connection(&cloud, cloud.connection).await;
    assert_eq!(state["cloud"]["tokenRefused"], true, "{state}");
    assert_eq!(
        state["cloud"]["lastSendError"],
        "190: Error validating access token: Session has expired"
    );
    assert_eq!(sends_of(&cloud.graph, "token three").len(), 1);
}

#[tokio::test]
async fn retries_give_up_after_the_schedule_with_the_last_error() {
    let cloud = Cloud::start().await;
    let schedule = 3; // fast_channels
    let failures: Vec<(u16, Value)> = (1..=schedule + 3)
        .map(|i| {
            (
                503,
                meta_error(131016, &format!("Service unavailable ({i})"), None),
            )
        })
        .collect();
    cloud.graph.fail_next_sends(&failures);
    let id = send_text(&cloud, cloud.connection, "never through").await;
    let updated = failed(&cloud, &id).await;
    assert_eq!(
        updated["error"],
        json!({"code": 131016, "title": format!("Service unavailable ({})", schedule + 1),
               "source": "whatsapp"})
    );
    let tries = sends_of(&cloud.graph, "never through");
    assert_eq!(tries.len(), schedule + 1);
    assert!(tries.iter().all(|r| r.status == 503));
    let state = connection(&cloud, cloud.connection).await;
    assert_eq!(
        state["cloud"]["lastSendError"],
        format!("131016: Service unavailable ({})", schedule + 1)
    );

    // The next message takes the two failures left and goes through on its third try; the
    // given-up one is never tried again.
    let later = send_text(&cloud, cloud.connection, "through at last").await;
    assert_eq!(
        created(&cloud, &later).await["messageId"],
        "wamid.stand-in.1"
    );
    assert_eq!(sends_of(&cloud.graph, "through at last").len(), 3);
    assert_eq!(sends_of(&cloud.graph, "never through").len(), schedule + 1);
    assert!(events_of(&cloud, "message.created", &id).is_empty());
}

/// One request the held Graph server got, on arrival.
#[derive(Debug, Clone)]
struct Arrival {
    at: Instant,
    authorization: String,
    body: Value,
}

#[derive(Default)]
struct HeldState {
    arrivals: Mutex<Vec<Arrival>>,
    answered: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// How long the next requests wait before answering, in order (then none).
    delays: Mutex<VecDeque<Duration>>,
    changed: Notify,
}

/// Counts a request in flight until its handler ends, answered or dropped.
struct InFlight(Arc<HeldState>);

impl InFlight {
    fn enter(state: &Arc<HeldState>) -> Self {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// A Graph server that records each send when it arrives (the shared stand-in records it
/// when it answers), answers each after its scripted delay and only while the gate is open,
/// and counts how many it holds at once. It answers every send like Meta, with
/// `wamid.held.<arrival number>`.
struct HeldGraph {
    addr: std::net::SocketAddr,
    state: Arc<HeldState>,
    gate: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl Drop for HeldGraph {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl HeldGraph {
    async fn start(open: bool) -> Self {
        let state = Arc::new(HeldState::default());
        let (gate, _) = watch::channel(open);
        let (shared, opened) = (state.clone(), gate.clone());
        let router = axum::Router::new().fallback(move |request: Request| {
            let (state, gate) = (shared.clone(), opened.subscribe());
            async move { held(state, gate, request).await }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        HeldGraph {
            addr,
            state,
            gate,
            handle,
        }
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn delay_next(&self, delays: &[Duration]) {
        self.state.delays.lock().unwrap().extend(delays);
    }

    fn open(&self) {
        self.gate.send_replace(true);
    }

    fn arrivals(&self) -> Vec<Arrival> {
        self.state.arrivals.lock().unwrap().clone()
    }

    fn answered(&self) -> usize {
        self.state.answered.load(Ordering::SeqCst)
    }

    fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    async fn wait_for_arrivals(&self, n: usize) -> Vec<Arrival> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let changed = self.state.changed.notified();
            let arrivals = self.arrivals();
            if arrivals.len() >= n {
                return arrivals;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!(
                    "the held graph server got {} sends, not {n}",
                    arrivals.len()
                );
            }
        }
    }
}

async fn held(
    state: Arc<HeldState>,
    mut gate: watch::Receiver<bool>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let number = {
        let mut arrivals = state.arrivals.lock().unwrap();
        arrivals.push(Arrival {
            at: Instant::now(),
            authorization: parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        });
        arrivals.len()
    };
    let _in_flight = InFlight::enter(&state);
    state.changed.notify_waiters();
    let delay = state.delays.lock().unwrap().pop_front();
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let _ = gate.wait_for(|open| *open).await;
    state.answered.fetch_add(1, Ordering::SeqCst);
    state.changed.notify_waiters();
    let answer = json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": TO, "wa_id": TO}],
        "messages": [{"id": format!("wamid.held.{number}")}],
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        answer.to_string(),
    )
        .into_response()
}

#[tokio::test]
async fn a_send_slower_than_the_graph_timeout_is_sent_by_the_retry_alone() {
    // fast_channels: graph_timeout 2 s, send_lease 5 s, retries 100 ms apart.
    let cloud = Cloud::start().await;
    let graph = HeldGraph::start(true).await;
    let slow = other_connection(&cloud, "Slow", "222333444555666", &graph.base_url()).await;
    graph.delay_next(&[Duration::from_secs(10)]);

    let id = send_text(&cloud, slow, "slow at first").await;
    let event = created(&cloud, &id).await;
    // The second try's answer, not the first's (which comes, if ever, long after).
    assert_eq!(event["messageId"], "wamid.held.2", "{event}");
    assert_eq!(event["status"], "sended");
    let arrivals = graph.arrivals();
    assert_eq!(arrivals.len(), 2, "{arrivals:?}");
    for a in &arrivals {
        assert_eq!(a.body["text"]["body"], "slow at first");
        assert_eq!(a.authorization, format!("Bearer {GRAPH_TOKEN}"));
    }
    // The first try was given up at the Graph timeout before the retry went out.
    let gap = arrivals[1].at - arrivals[0].at;
    assert!(gap >= Duration::from_secs(2), "retried after {gap:?}");
    assert_eq!(graph.answered(), 1, "only the retry was answered");
    // Giving up drops the connection, so the server drops the first try's handler too:
    // never two tries of the message at once.
    assert_eq!(graph.max_in_flight(), 1);
    let state = connection(&cloud, slow).await;
    assert_eq!(state["cloud"]["lastSendError"], Value::Null, "{state}");

    // Once the next message is through, the slow one was created once and tried twice.
    let later = send_text(&cloud, slow, "quick now").await;
    assert_eq!(created(&cloud, &later).await["messageId"], "wamid.held.3");
    assert_eq!(graph.arrivals().len(), 3);
    assert_eq!(events_of(&cloud, "message.created", &id).len(), 1);
    assert!(events_of(&cloud, "message.updated", &id).is_empty());
    assert!(cloud.graph.send_requests().is_empty());
}

#[tokio::test]
async fn the_app_refuses_a_send_lease_that_does_not_outlast_the_graph_timeout() {
    for lease in [Duration::from_secs(2), Duration::from_secs(1)] {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = test_settings(dir.path().to_path_buf());
        settings.channels.graph_timeout = Duration::from_secs(2);
        settings.channels.send_lease = lease;
        let refused = zaphook::app::Application::build(settings)
            .await
            .err()
            .unwrap_or_else(|| panic!("a send lease of {lease:?} was taken"));
        let text = refused.to_string();
        assert!(text.contains("lease"), "{text}");
        assert!(text.contains("timeout"), "{text}");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path().to_path_buf());
    settings.channels.graph_timeout = Duration::from_secs(2);
    settings.channels.send_lease = Duration::from_millis(2001);
    assert!(zaphook::app::Application::build(settings).await.is_ok());
}

#[tokio::test]
async fn a_connection_stuck_at_graph_does_not_hold_up_another() {
    // A Graph timeout long enough that the held send stays in flight until the test opens
    // the gate: the order below is decided by the gate, not by timings.
    let cloud = cloud_with(|s| {
        s.channels.graph_timeout = Duration::from_secs(12);
        s.channels.send_lease = Duration::from_secs(30);
    })
    .await;
    let graph = HeldGraph::start(false).await;
    let stuck = other_connection(&cloud, "Stuck", "222333444555666", &graph.base_url()).await;

    let s1 = send_text(&cloud, stuck, "stuck one").await;
    graph.wait_for_arrivals(1).await;
    let s2 = send_text(&cloud, stuck, "stuck two").await;

    // While the stuck connection's send is in flight, the other connection's go out.
    let f1 = send_text(&cloud, cloud.connection, "fast one").await;
    let f1_created = tokio::time::timeout(Duration::from_secs(10), created(&cloud, &f1))
        .await
        .unwrap_or_else(|_| {
            panic!("a send on one connection waited for another connection's Graph call")
        });
    assert_eq!(f1_created["messageId"], "wamid.stand-in.1");
    let f2 = send_text(&cloud, cloud.connection, "fast two").await;
    assert_eq!(created(&cloud, &f2).await["messageId"], "wamid.stand-in.2");
    assert_eq!(graph.answered(), 0);
    assert!(events_of(&cloud, "message.created", &s1).is_empty());
    // The stuck connection's own messages go one at a time, in order.
    assert_eq!(graph.arrivals().len(), 1);

    graph.open();
    assert_eq!(created(&cloud, &s1).await["messageId"], "wamid.held.1");
    assert_eq!(created(&cloud, &s2).await["messageId"], "wamid.held.2");
    let bodies: Vec<Value> = graph
        .arrivals()
        .iter()
        .map(|a| a.body["text"]["body"].clone())
        .collect();
    assert_eq!(bodies, [json!("stuck one"), json!("stuck two")]);
    assert_eq!(graph.max_in_flight(), 1);
    assert!(position(&cloud, "message.created", &f2) < position(&cloud, "message.created", &s1));
}

#[tokio::test]
async fn a_closed_graph_port_is_retried_then_fails_with_a_connect_error() {
    let cloud = Cloud::start().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let nowhere = other_connection(
        &cloud,
        "Nowhere",
        "333444555666777",
        &format!("http://{closed}"),
    )
    .await;
    let started = Instant::now();
    let id = send_text(&cloud, nowhere, "is anybody there").await;
    let updated = failed(&cloud, &id).await;
    let title = updated["error"]["title"].as_str().unwrap();
    assert!(title.starts_with("connect"), "{updated}");
    assert_eq!(updated["error"]["code"], 0, "no code of Meta's");
    assert_eq!(
        updated["error"]["source"], "zaphook",
        "it never reached Meta"
    );
    // The three retries of fast_channels, 100 ms apart, came first.
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "failed after {:?}",
        started.elapsed()
    );
    let state = connection(&cloud, nowhere).await;
    assert_eq!(state["cloud"]["lastSendError"], title, "{state}");
    assert_eq!(state["cloud"]["tokenRefused"], false);
    assert!(events_of(&cloud, "message.created", &id).is_empty());
    // The other connection's Graph saw nothing of it.
    assert!(cloud.graph.send_requests().is_empty());
}
