//! Webhook scopes and filters as WHAZING users set them: an endpoint scoped to a queue follows
//! its tickets in and out (and may start on transfer), and each filter (received, sent, groups,
//! open and pending tickets, media as base64) holds in both states. What an endpoint is owed
//! is read from its delivery log, which is complete once the calls that made the events have
//! answered; what arrived is read from real receivers.

mod common;

use common::{TestApp, TestReceiver, eventually, spawn_app, verify};
use serde_json::{Value, json};

/// Creates an endpoint from `body` (its url given); answers (id, secret).
async fn endpoint(app: &TestApp, url: &str, mut body: Value) -> (i64, String) {
    body["url"] = json!(url);
    let v = app.ok("/api/v1/webhooks", body, 201).await;
    (
        v["id"].as_i64().unwrap(),
        v["secret"].as_str().unwrap().to_string(),
    )
}

/// What each delivery of an endpoint carried: `(eventType, messageBody)`, in the order the
/// events were committed.
async fn owed(app: &TestApp, webhook: i64) -> Vec<(String, String)> {
    let mut log = app.delivery_log(webhook).await;
    log.sort_by(|a, b| a["eventId"].as_str().cmp(&b["eventId"].as_str()));
    let mut owed = Vec::new();
    for d in log {
        let (status, detail) = app
            .get(&format!("/api/v1/deliveries/{}", d["id"].as_str().unwrap()))
            .await;
        assert_eq!(status, 200, "{detail}");
        owed.push((
            detail["eventType"].as_str().unwrap().to_string(),
            detail["payload"]["messageBody"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ));
    }
    owed
}

/// PATCHes and asserts 200, answering the body.
async fn patched(app: &TestApp, path: &str, body: Value) -> Value {
    let (status, value) = app.patch(path, body).await;
    assert_eq!(status, 200, "PATCH {path}: {value}");
    value
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(e, b)| (e.to_string(), b.to_string()))
        .collect()
}

/// The ticket of a message the sandbox took in.
async fn ticket_of(app: &TestApp, accepted: &Value) -> i64 {
    let (status, message) = app
        .get(&format!(
            "/api/v1/messages/{}",
            accepted["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 200, "{message}");
    message["ticketId"].as_i64().unwrap()
}

#[tokio::test]
async fn a_queue_endpoint_follows_its_tickets_in_and_out_and_may_start_on_transfer() {
    let app = spawn_app().await;
    let receiver = TestReceiver::start().await;
    let connection = app.sandbox_connection("Comercial").await;
    let queue = app
        .ok("/api/v1/queues", json!({"name": "Vendas"}), 201)
        .await["id"]
        .as_i64()
        .unwrap();
    let (in_queue, _) = endpoint(
        &app,
        &receiver.url(),
        json!({"queueId": queue, "events": ["message.created", "ticket.transferred"]}),
    )
    .await;
    let (starter, _) = endpoint(
        &app,
        &receiver.url(),
        json!({"queueId": queue, "startOnTransfer": true, "events": ["message.created"]}),
    )
    .await;
    let (everything, _) = endpoint(
        &app,
        &receiver.url(),
        json!({"events": ["message.created", "ticket.transferred"]}),
    )
    .await;

    let first = app
        .inbound(connection, "5511955550001", "antes da fila")
        .await;
    let ticket = ticket_of(&app, &first).await;
    assert!(owed(&app, in_queue).await.is_empty());
    assert!(owed(&app, starter).await.is_empty());

    // Into the queue: the transfer, and the last message for the endpoint that starts on it.
    patched(
        &app,
        &format!("/api/v1/tickets/{ticket}"),
        json!({"queueId": queue}),
    )
    .await;
    app.inbound(connection, "5511955550001", "na fila").await;
    // Out of it: the queue's endpoint hears of the transfer, then nothing more.
    patched(
        &app,
        &format!("/api/v1/tickets/{ticket}"),
        json!({"queueId": null}),
    )
    .await;
    app.inbound(connection, "5511955550001", "depois da fila")
        .await;

    assert_eq!(
        owed(&app, in_queue).await,
        pairs(&[
            ("ticket.transferred", "antes da fila"),
            ("message.created", "na fila"),
            ("ticket.transferred", "na fila"),
        ])
    );
    assert_eq!(
        owed(&app, starter).await,
        pairs(&[
            ("message.created", "antes da fila"),
            ("message.created", "na fila"),
        ])
    );
    assert_eq!(
        owed(&app, everything).await,
        pairs(&[
            ("message.created", "antes da fila"),
            ("ticket.transferred", "antes da fila"),
            ("message.created", "na fila"),
            ("ticket.transferred", "na fila"),
            ("message.created", "depois da fila"),
        ])
    );

    // What arrived: the started message shows the ticket in its new queue, and the transfer
    // out of the queue what it left.
    let got: Vec<Value> = receiver
        .wait_for(10)
        .await
        .iter()
        .map(|r| r.json())
        .collect();
    let started = got
        .iter()
        .filter(|v| v["event"] == "message.created" && v["messageBody"] == "antes da fila")
        .filter(|v| v["ticket"]["queueId"] == queue)
        .count();
    assert_eq!(started, 1, "{got:?}");
    let left = got
        .iter()
        .filter(|v| v["event"] == "ticket.transferred" && v["ticket"]["queueId"].is_null())
        .collect::<Vec<_>>();
    assert_eq!(left.len(), 2, "{got:?}");
    assert!(left.iter().all(|v| v["previous"]["queueId"] == queue));
    app.settled_log(in_queue).await;
    app.stop().await;
}

#[tokio::test]
async fn each_message_filter_holds_on_and_off() {
    let app = spawn_app().await;
    let receiver = TestReceiver::start().await;
    let connection = app.sandbox_connection("Comercial").await;
    let variants = [
        ("defaults", json!({})),
        ("no received", json!({"filters": {"received": false}})),
        ("no sent", json!({"filters": {"sent": false}})),
        ("no groups", json!({"filters": {"includeGroups": false}})),
        ("no groups, older name", json!({"includeGroups": false})),
        ("no open", json!({"filters": {"ticketOpen": false}})),
        ("no pending", json!({"filters": {"ticketPending": false}})),
        (
            "neither open nor pending",
            json!({"filters": {"ticketOpen": false, "ticketPending": false}}),
        ),
    ];
    let mut ids = Vec::new();
    for (_, body) in &variants {
        let mut body = body.clone();
        body["events"] = json!(["message.created"]);
        ids.push(endpoint(&app, &receiver.url(), body).await.0);
    }

    // A new ticket is pending: the contact writes, we answer; then it is opened and the
    // contact writes again; and someone writes in a group.
    let first = app
        .inbound(connection, "5511955550002", "recebida, pendente")
        .await;
    let ticket = ticket_of(&app, &first).await;
    app.ok(
        "/api/v1/messages",
        json!({"ticketId": ticket, "body": "enviada, pendente"}),
        202,
    )
    .await;
    // The outbound message's event is written once the channel took it.
    eventually("the sent message's event", || async {
        owed(&app, ids[0]).await.len() == 2
    })
    .await;
    patched(
        &app,
        &format!("/api/v1/tickets/{ticket}"),
        json!({"status": "open"}),
    )
    .await;
    app.inbound(connection, "5511955550002", "recebida, aberta")
        .await;
    app.inbound(connection, "120363040000000000@g.us", "no grupo, pendente")
        .await;

    let all = [
        "recebida, pendente",
        "enviada, pendente",
        "recebida, aberta",
        "no grupo, pendente",
    ];
    let expected: [&[&str]; 8] = [
        &all,
        &["enviada, pendente"],
        &[
            "recebida, pendente",
            "recebida, aberta",
            "no grupo, pendente",
        ],
        &[
            "recebida, pendente",
            "enviada, pendente",
            "recebida, aberta",
        ],
        &[
            "recebida, pendente",
            "enviada, pendente",
            "recebida, aberta",
        ],
        &[
            "recebida, pendente",
            "enviada, pendente",
            "no grupo, pendente",
        ],
        &["recebida, aberta"],
        &[],
    ];
    for ((name, _), (id, expected)) in variants.iter().zip(ids.iter().zip(expected)) {
        let bodies: Vec<String> = owed(&app, *id).await.into_iter().map(|(_, b)| b).collect();
        assert_eq!(bodies, *expected, "{name}");
    }
    app.stop().await;
}

#[tokio::test]
async fn media_as_base64_carries_the_stored_file_to_the_endpoints_that_ask() {
    use base64::Engine;
    let app = spawn_app().await;
    let with = TestReceiver::start().await;
    let without = TestReceiver::start().await;
    let (_, with_secret) =
        endpoint(&app, &with.url(), json!({"filters": {"mediaBase64": true}})).await;
    endpoint(&app, &without.url(), json!({})).await;
    let connection = app.sandbox_connection("Comercial").await;
    let created = app
        .ok(
            &format!("/api/v1/connections/{connection}/api-configs"),
            json!({"name": "n8n"}),
            201,
        )
        .await;
    let file: Vec<u8> = [&b"%PDF-1.4 "[..], &[0xA7u8; 3000][..]].concat();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&file);
    let answer = app
        .client
        .post(app.url(&format!(
            "/v1/api/external/{}",
            created["apiId"].as_str().unwrap()
        )))
        .bearer_auth(created["token"].as_str().unwrap())
        .header("content-type", "application/json")
        .body(
            json!({"number": "5511955550003", "body": "o boleto", "mediaMessage": {
            "mediaType": "document", "fileName": "boleto.pdf", "media": encoded}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    // Media zaphook does not hold (a link elsewhere) has no bytes to give.
    app.ok(
        &format!("/api/v1/connections/{connection}/sandbox/inbound"),
        json!({"from": "5511955550003", "body": "a foto", "mediaType": "image",
               "mediaUrl": "https://cdn.example.com/foto.jpg"}),
        202,
    )
    .await;

    for receiver in [&with, &without] {
        receiver.wait_for(2).await;
    }
    let of = |receiver: &TestReceiver, body: &str| {
        receiver
            .all()
            .into_iter()
            .find(|r| r.json()["messageBody"] == body)
            .unwrap()
    };
    let boleto = of(&with, "o boleto");
    assert_eq!(boleto.json()["mediaBase64"], encoded.as_str());
    verify(&with_secret, &boleto).expect("the body with the file is what is signed");
    assert!(of(&with, "a foto").json()["mediaBase64"].is_null());
    assert!(of(&without, "o boleto").json()["mediaBase64"].is_null());
    assert!(of(&without, "a foto").json()["mediaBase64"].is_null());
    app.stop().await;
}

#[tokio::test]
async fn scopes_and_filters_are_validated_shown_and_changed_key_by_key() {
    let app = spawn_app().await;
    let queue = app
        .ok("/api/v1/queues", json!({"name": "Vendas"}), 201)
        .await["id"]
        .as_i64()
        .unwrap();
    let url = "http://127.0.0.1:9/hook";
    for (body, field) in [
        (
            json!({"url": url, "startOnTransfer": true}),
            "startOnTransfer",
        ),
        (
            json!({"url": url, "includeGroups": true, "filters": {"includeGroups": false}}),
            "includeGroups",
        ),
    ] {
        let (status, problem) = app.post("/api/v1/webhooks", body).await;
        assert_eq!(status, 422, "{problem}");
        assert!(problem.to_string().contains(field), "{problem}");
    }
    let (status, problem) = app
        .post(
            "/api/v1/webhooks",
            json!({"url": url, "filters": {"recieved": false}}),
        )
        .await;
    assert!(
        (400..500).contains(&status.as_u16()),
        "an unknown filter is refused: {problem}"
    );

    let created = app
        .ok(
            "/api/v1/webhooks",
            json!({"url": url, "queueId": queue, "startOnTransfer": true,
                   "filters": {"sent": false, "mediaBase64": true}}),
            201,
        )
        .await;
    assert_eq!(created["startOnTransfer"], true);
    assert_eq!(
        created["filters"],
        json!({"received": true, "sent": false, "includeGroups": true, "ticketOpen": true,
               "ticketPending": true, "mediaBase64": true})
    );
    let id = created["id"].as_i64().unwrap();
    // A change names only what changes; the rest is kept.
    let changed = patched(
        &app,
        &format!("/api/v1/webhooks/{id}"),
        json!({"filters": {"ticketPending": false}, "includeGroups": false}),
    )
    .await;
    assert_eq!(
        changed["filters"],
        json!({"received": true, "sent": false, "includeGroups": false, "ticketOpen": true,
               "ticketPending": false, "mediaBase64": true})
    );
    assert_eq!(changed["includeGroups"], false);
    // Leaving the queue while starting on transfer is refused; both at once is fine.
    let (status, problem) = app
        .patch(&format!("/api/v1/webhooks/{id}"), json!({"queueId": null}))
        .await;
    assert_eq!(status, 422, "{problem}");
    let changed = patched(
        &app,
        &format!("/api/v1/webhooks/{id}"),
        json!({"queueId": null, "startOnTransfer": false}),
    )
    .await;
    assert_eq!(changed["startOnTransfer"], false);
    let (_, read) = app.get(&format!("/api/v1/webhooks/{id}")).await;
    assert_eq!(read["filters"], changed["filters"]);
    app.stop().await;
}
