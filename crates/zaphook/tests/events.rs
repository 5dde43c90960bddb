//! Every event type, end to end: the real server, a real receiver, every key of every payload,
//! and each request's signature checked with the reference Standard Webhooks implementation.

mod common;

use common::{TestReceiver, spawn_app, verify};
use serde_json::{Value, json};

const ALL: &[&str] = &[
    "message.created",
    "message.updated",
    "ticket.created",
    "ticket.transferred",
    "ticket.closed",
];

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

fn sorted(list: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    k.sort();
    k
}

const MESSAGE_KEYS: &[&str] = &[
    "event",
    "id",
    "messageId",
    "messageBody",
    "timestamp",
    "status",
    "fromMe",
    "mediaType",
    "mediaUrl",
    "isDeleted",
    "sendType",
    "edited",
    "reactions",
    "quotedMessageId",
    "error",
    "mediaBase64",
    "ticket",
    "contact",
    "contactmessage",
    "user",
    "whatsapp",
];
const TICKET_KEYS: &[&str] = &[
    "id",
    "status",
    "protocol",
    "queueId",
    "userId",
    "isGroup",
    "apiConfig",
];
const CONTACT_KEYS: &[&str] = &[
    "id",
    "name",
    "phoneNumber",
    "profilePicUrl",
    "email",
    "isGroup",
    "pushname",
    "lid",
    "bsuid",
    "username",
    "kanbanId",
    "followupId",
];

fn assert_message_shape(v: &Value) {
    assert_eq!(keys(v), sorted(MESSAGE_KEYS), "message payload keys: {v}");
    assert_eq!(keys(&v["ticket"]), sorted(TICKET_KEYS));
    assert_eq!(keys(&v["contact"]), sorted(CONTACT_KEYS));
    assert_eq!(keys(&v["whatsapp"]), sorted(&["id", "name"]));
    assert!(v.get("Type").is_none());
}

fn assert_ticket_shape(v: &Value, with_previous: bool) {
    let mut expected = vec![
        "event",
        "Type",
        "messageBody",
        "ticket",
        "contact",
        "whatsapp",
        "user",
    ];
    if with_previous {
        expected.push("previous");
    }
    assert_eq!(keys(v), sorted(&expected), "ticket payload keys: {v}");
    assert_eq!(keys(&v["ticket"]), sorted(TICKET_KEYS));
    assert_eq!(keys(&v["contact"]), sorted(CONTACT_KEYS));
}

#[tokio::test]
async fn every_event_type_arrives_signed_with_every_key() {
    let app = spawn_app().await;
    let receiver = TestReceiver::start().await;
    let conn = app.sandbox_connection("Comercial").await;
    let queue = app
        .ok("/api/v1/queues", json!({"name": "Vendas"}), 201)
        .await["id"]
        .as_i64()
        .unwrap();
    let agent = app
        .ok(
            "/api/v1/users",
            json!({"name": "Ana", "email": "ana@example.com"}),
            201,
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let hook = app
        .ok(
            "/api/v1/webhooks",
            json!({"url": receiver.url(), "events": ALL, "token": "n8n-secret-key"}),
            201,
        )
        .await;
    let secret = hook["secret"].as_str().unwrap().to_string();

    // 1. A contact writes: ticket.created (NewTicket), then message.created.
    let accepted = app
        .ok(
            &format!("/api/v1/connections/{conn}/sandbox/inbound"),
            json!({"from": "+55 11 98765-4321", "name": "Maria Souza", "body": "Oi, tem em azul?",
                   "id": "wamid.IN1", "timestamp": 1_749_416_383}),
            202,
        )
        .await;
    assert_eq!(accepted["messageId"], "wamid.IN1");
    let got = receiver.wait_for(2).await;
    let opened = got[0].json();
    assert_ticket_shape(&opened, false);
    assert_eq!(opened["event"], "ticket.created");
    assert_eq!(opened["Type"], "NewTicket");
    assert_eq!(opened["messageBody"], "Oi, tem em azul?");
    assert_eq!(opened["ticket"]["status"], "pending");
    assert_eq!(opened["ticket"]["apiConfig"], Value::Null);
    let ticket_id = opened["ticket"]["id"].as_i64().unwrap();
    let protocol = opened["ticket"]["protocol"].as_str().unwrap();
    assert_eq!(protocol.len(), 14 + ticket_id.to_string().len());
    assert!(protocol.ends_with(&ticket_id.to_string()));
    assert_eq!(opened["user"], Value::Null);

    let inbound = got[1].json();
    assert_message_shape(&inbound);
    assert_eq!(inbound["event"], "message.created");
    assert_eq!(inbound["id"], accepted["id"]);
    assert_eq!(inbound["messageId"], "wamid.IN1");
    assert_eq!(inbound["messageBody"], "Oi, tem em azul?");
    assert_eq!(inbound["timestamp"], 1_749_416_383_000_i64);
    assert_eq!(inbound["status"], "received");
    assert_eq!(inbound["fromMe"], false);
    assert_eq!(inbound["mediaType"], "chat");
    assert_eq!(inbound["mediaUrl"], Value::Null);
    assert_eq!(inbound["isDeleted"], false);
    assert_eq!(inbound["sendType"], Value::Null);
    assert_eq!(inbound["edited"], false);
    assert_eq!(inbound["reactions"], json!([]));
    assert_eq!(inbound["quotedMessageId"], Value::Null);
    assert_eq!(inbound["user"], Value::Null);
    assert_eq!(
        inbound["whatsapp"],
        json!({"id": conn, "name": "Comercial"})
    );
    assert_eq!(
        inbound["contact"],
        json!({"id": inbound["contact"]["id"], "name": "Maria Souza", "phoneNumber": "5511987654321",
               "profilePicUrl": null, "email": null, "isGroup": false, "pushname": "Maria Souza",
               "lid": null, "bsuid": null, "username": null, "kanbanId": null, "followupId": null})
    );
    assert_eq!(inbound["ticket"], opened["ticket"]);

    // The same channel id again is the same message: no new event.
    let again = app
        .ok(
            &format!("/api/v1/connections/{conn}/sandbox/inbound"),
            json!({"from": "5511987654321", "body": "Oi, tem em azul?", "id": "wamid.IN1"}),
            202,
        )
        .await;
    assert_eq!(again["id"], accepted["id"]);

    // 2. An agent answers through the API with an external key: message.created, fromMe.
    let sent = app
        .ok(
            "/api/v1/messages",
            json!({"ticketId": ticket_id, "body": "Temos sim!", "userId": agent,
                   "externalKey": "PEDIDO-123", "quotedMessageId": "wamid.IN1"}),
            202,
        )
        .await;
    assert_eq!(sent["status"], "pending");
    assert_eq!(sent["messageId"], Value::Null);
    let got = receiver.wait_for(3).await;
    let outbound = got[2].json();
    assert_message_shape(&outbound);
    assert_eq!(outbound["event"], "message.created");
    assert_eq!(outbound["id"], sent["id"]);
    assert_eq!(outbound["fromMe"], true);
    assert_eq!(outbound["status"], "sended");
    assert_eq!(outbound["sendType"], "manual");
    assert_eq!(outbound["quotedMessageId"], "wamid.IN1");
    assert_eq!(
        outbound["user"],
        json!({"id": agent, "name": "Ana", "email": "ana@example.com"})
    );
    assert_eq!(
        outbound["ticket"]["apiConfig"],
        json!({"externalKey": "PEDIDO-123"})
    );
    let wamid = outbound["messageId"].as_str().unwrap().to_string();
    assert!(!wamid.is_empty());

    // 3. The contact's phone reports read, then a late delivered that changes nothing.
    let status_path = format!("/api/v1/connections/{conn}/sandbox/status");
    app.ok(
        &status_path,
        json!({"messageId": wamid, "status": "read"}),
        200,
    )
    .await;
    let late = app
        .ok(
            &status_path,
            json!({"messageId": wamid, "status": "delivered"}),
            200,
        )
        .await;
    assert_eq!(late["status"], "read");
    // 4. The contact reacts.
    app.ok(
        &format!("/api/v1/connections/{conn}/sandbox/reaction"),
        json!({"from": "5511987654321", "messageId": wamid, "emoji": "👍"}),
        200,
    )
    .await;
    // 5. The agent edits, then deletes the message.
    let msg_path = format!("/api/v1/messages/{}", sent["id"].as_str().unwrap());
    let (s, _) = app
        .patch(&msg_path, json!({"body": "Temos sim, em azul!"}))
        .await;
    assert_eq!(s, 200);
    let (s, _) = app.request(reqwest::Method::DELETE, &msg_path, None).await;
    assert_eq!(s, 200);

    let got = receiver.wait_for(7).await;
    let updates: Vec<Value> = got[3..7].iter().map(|r| r.json()).collect();
    for u in &updates {
        assert_message_shape(u);
        assert_eq!(u["event"], "message.updated");
        assert_eq!(u["id"], sent["id"]);
        assert_eq!(
            u["ticket"]["apiConfig"],
            json!({"externalKey": "PEDIDO-123"})
        );
    }
    assert_eq!(updates[0]["status"], "read");
    assert_eq!(updates[0]["reactions"], json!([]));
    let reaction = &updates[1]["reactions"][0];
    assert_eq!(reaction["emoji"], "👍");
    assert_eq!(reaction["fromMe"], false);
    assert_eq!(reaction["userId"], Value::Null);
    assert_eq!(reaction["contactId"], inbound["contact"]["id"]);
    assert!(reaction["timestamp"].as_i64().unwrap() > 1_700_000_000_000);
    assert_eq!(updates[2]["edited"], true);
    assert_eq!(updates[2]["messageBody"], "Temos sim, em azul!");
    assert_eq!(updates[2]["isDeleted"], false);
    assert_eq!(updates[3]["isDeleted"], true);
    assert_eq!(updates[3]["status"], "read");

    // 6. Transfer to a queue and an agent, then close.
    let (s, _) = app
        .patch(
            &format!("/api/v1/tickets/{ticket_id}"),
            json!({"queueId": queue, "userId": agent, "status": "open"}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = app
        .patch(
            &format!("/api/v1/tickets/{ticket_id}"),
            json!({"status": "closed"}),
        )
        .await;
    assert_eq!(s, 200);
    let got = receiver.wait_for(9).await;
    let transferred = got[7].json();
    assert_ticket_shape(&transferred, true);
    assert_eq!(transferred["event"], "ticket.transferred");
    assert_eq!(transferred["Type"], "TransferTicket");
    assert_eq!(
        transferred["previous"],
        json!({"queueId": null, "userId": null})
    );
    assert_eq!(transferred["ticket"]["queueId"], queue);
    assert_eq!(transferred["ticket"]["userId"], agent);
    assert_eq!(transferred["ticket"]["status"], "open");
    assert_eq!(transferred["messageBody"], "Temos sim!");
    assert_eq!(transferred["user"]["id"], agent);
    assert_eq!(
        transferred["ticket"]["apiConfig"],
        json!({"externalKey": "PEDIDO-123"})
    );
    let closed = got[8].json();
    assert_ticket_shape(&closed, false);
    assert_eq!(closed["event"], "ticket.closed");
    assert_eq!(closed["Type"], "ClosedTicket");
    assert_eq!(closed["ticket"]["status"], "closed");

    // 7. A ticket opened through the API: NewTicketUserCreate with an empty messageBody.
    let created = app
        .ok(
            "/api/v1/tickets",
            json!({"connectionId": conn, "number": "5521999990000", "externalKey": "CRM-7"}),
            201,
        )
        .await;
    let got = receiver.wait_for(10).await;
    let user_created = got[9].json();
    assert_ticket_shape(&user_created, false);
    assert_eq!(user_created["Type"], "NewTicketUserCreate");
    assert_eq!(user_created["messageBody"], "");
    assert_eq!(user_created["ticket"]["id"], created["id"]);
    assert_eq!(
        user_created["ticket"]["apiConfig"],
        json!({"externalKey": "CRM-7"})
    );
    // Asking again answers the same open ticket, with no event.
    let same = app
        .ok(
            "/api/v1/tickets",
            json!({"connectionId": conn, "number": "5521999990000"}),
            200,
        )
        .await;
    assert_eq!(same["id"], created["id"]);

    // 8. The test event.
    let (s, test) = app
        .post(
            &format!("/api/v1/webhooks/{}/test", hook["id"]),
            json!(null),
        )
        .await;
    assert_eq!(s, 200, "{test}");
    assert_eq!(test["delivered"], true);
    assert_eq!(test["statusCode"], 200);
    let got = receiver.wait_for(11).await;
    let t = got[10].json();
    assert_eq!(keys(&t), sorted(&["event", "origin", "timestamp"]));
    assert_eq!(t["event"], "webhook.test");
    assert_eq!(t["origin"], "webhook-config");

    // Nothing else is owed (the test event is sent directly, outside the log), and every
    // request carries the contract's headers.
    let log = app.settled_log(hook["id"].as_i64().unwrap()).await;
    assert_eq!(log.len(), 10);
    let all = receiver.all();
    assert_eq!(
        all.len(),
        11,
        "{:?}",
        all.iter().map(|r| r.event()).collect::<Vec<_>>()
    );
    let mut ids = std::collections::HashSet::new();
    for r in &all {
        verify(&secret, r).expect("signature verifies with the reference implementation");
        assert_eq!(r.header("x-n8n-api-key"), "n8n-secret-key");
        assert_eq!(r.header("x-zaphook-event"), r.event());
        assert_eq!(r.header("content-type"), "application/json");
        assert!(r.header("user-agent").starts_with("zaphook/"));
        assert!(r.header("webhook-id").starts_with("evt_"));
        assert!(
            ids.insert(r.header("webhook-id").to_string()),
            "ids are unique"
        );
        assert!(r.header("webhook-signature").starts_with("v1,"));
    }
}

#[tokio::test]
async fn endpoint_filters_pick_events() {
    let app = spawn_app().await;
    let default_receiver = TestReceiver::start().await;
    let other_connection = TestReceiver::start().await;
    let conn = app.sandbox_connection("A").await;
    let other = app.sandbox_connection("B").await;
    // The default subscription is message.created alone.
    let v = app
        .ok(
            "/api/v1/webhooks",
            json!({"url": default_receiver.url()}),
            201,
        )
        .await;
    assert_eq!(v["events"], json!(["message.created"]));
    let default_hook = v["id"].as_i64().unwrap();
    // A type named twice is subscribed once, where it was first named.
    let mut events = ALL.to_vec();
    events.push(ALL[0]);
    let v = app
        .ok(
            "/api/v1/webhooks",
            json!({"url": other_connection.url(), "events": events, "connectionId": other}),
            201,
        )
        .await;
    assert_eq!(v["events"], json!(ALL));
    let other_hook = v["id"].as_i64().unwrap();
    app.inbound(conn, "5511911112222", "hello").await;
    app.inbound(other, "5511911113333", "hi").await;
    // Each endpoint is owed exactly what it picked.
    assert_eq!(app.settled_log(default_hook).await.len(), 2);
    assert_eq!(app.settled_log(other_hook).await.len(), 2);
    let got = default_receiver.wait_for(2).await;
    assert!(got.iter().all(|r| r.event() == "message.created"));
    let got = other_connection.wait_for(2).await;
    assert_eq!(got[0].event(), "ticket.created");
    assert_eq!(got[1].json()["whatsapp"]["id"], other);
    assert_eq!(default_receiver.all().len(), 2);
    assert_eq!(other_connection.all().len(), 2);
}

#[tokio::test]
async fn a_group_message_names_the_member_who_wrote_it_in_contactmessage() {
    let app = spawn_app().await;
    let receiver = TestReceiver::start().await;
    app.webhook(&receiver.url(), &["message.created"]).await;
    let connection = app.sandbox_connection("Comercial").await;
    let inbound = format!("/api/v1/connections/{connection}/sandbox/inbound");
    app.ok(
        &inbound,
        json!({"from": "120363040000000000@g.us", "name": "Clientes VIP", "body": "bom dia",
               "participant": "+55 11 98765-4321", "participantName": "Joana"}),
        202,
    )
    .await;
    app.ok(
        &inbound,
        json!({"from": "120363040000000000@g.us", "body": "oi", "participant": "5511987654321"}),
        202,
    )
    .await;
    app.inbound(connection, "5511987654321", "em particular")
        .await;

    let got: Vec<Value> = receiver
        .wait_for(3)
        .await
        .iter()
        .map(|r| r.json())
        .collect();
    let by_body = |body: &str| got.iter().find(|v| v["messageBody"] == body).unwrap();
    let first = by_body("bom dia");
    assert_message_shape(first);
    assert_eq!(first["contact"]["phoneNumber"], "120363040000000000@g.us");
    assert_eq!(first["contact"]["isGroup"], true);
    assert_eq!(keys(&first["contactmessage"]), sorted(CONTACT_KEYS));
    assert_eq!(first["contactmessage"]["phoneNumber"], "5511987654321");
    assert_eq!(first["contactmessage"]["name"], "Joana");
    assert_eq!(first["contactmessage"]["isGroup"], false);
    // The same member is one contact, in the group and on their own.
    let member = first["contactmessage"]["id"].clone();
    assert_eq!(by_body("oi")["contactmessage"]["id"], member);
    let private = by_body("em particular");
    assert_eq!(private["contact"]["id"], member);
    assert!(private["contactmessage"].is_null());

    for (body, field) in [
        (
            json!({"from": "5511987654321", "body": "x", "participant": "5511912345678"}),
            "participant",
        ),
        (
            json!({"from": "120363040000000000@g.us", "body": "x", "participant": "1203630400@g.us"}),
            "participant",
        ),
        (
            json!({"from": "120363040000000000@g.us", "body": "x", "participantName": "Joana"}),
            "participantName",
        ),
    ] {
        let (status, problem) = app.post(&inbound, body).await;
        assert_eq!(status, 422, "{problem}");
        assert!(problem.to_string().contains(field), "{problem}");
    }
    app.stop().await;
}
