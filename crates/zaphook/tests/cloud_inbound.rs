//! The Cloud API callback end to end: the real server, Meta-shaped bodies signed over their
//! raw bytes, a stand-in Graph server for media, and what a real receiver got.

mod common;

use common::cloud::{
    APP_SECRET, Cloud, VERIFY_TOKEN, body, contact, envelope, fixture, post_callback, sign, status,
    text,
};
use common::graph::{PHONE_NUMBER_ID, sha256_base64};
use serde_json::{Value, json};

const WAMID_TEXT: &str = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=";

#[tokio::test]
async fn the_verification_handshake_answers_only_the_right_token() {
    let cloud = Cloud::start().await;
    let url = |query: &str| cloud.app.url(&format!("{}?{query}", cloud.callback_path()));
    let ok = cloud
        .app
        .client
        .get(url(&format!(
            "hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["content-type"], "text/plain");
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    for query in [
        "hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
        "hub.mode=unsubscribe&hub.verify_token=verify-me-please&hub.challenge=1",
        "hub.mode=subscribe&hub.challenge=1",
        "hub.mode=subscribe&hub.verify_token=verify-me-please",
        "",
    ] {
        let got = cloud.app.client.get(url(query)).send().await.unwrap();
        assert_eq!(got.status(), 403, "{query}");
    }
    // A connection that is not a cloud one has no callback.
    let sandbox = cloud.app.sandbox_connection("S").await;
    let got = cloud
        .app
        .client
        .get(cloud.app.url(&format!(
            "/channels/cloud/{sandbox}?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 403);
}

#[tokio::test]
async fn only_bodies_signed_over_their_raw_bytes_are_taken() {
    let cloud = Cloud::start().await;
    // Accents and emoji, with spacing no serialiser would reproduce: signed as they are.
    let raw = format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"1","phone_number_id":"{PHONE_NUMBER_ID}"}},"contacts":[{{"profile":{{"name":"João Araújo"}},"wa_id":"5511987654321"}}],"messages":[{{"from":"5511987654321","id":"wamid.accents","timestamp":"1796000000","type":"text","text":{{"body":"Olá, ação! 👋🏽  ok"}}}}]}}}}]}}]}}"#
    );
    let forged = sign("not_the_app_secret", raw.as_bytes());
    assert_eq!(
        cloud.callback_signed(raw.as_bytes(), Some(&forged)).await,
        401
    );
    assert_eq!(cloud.callback_signed(raw.as_bytes(), None).await, 401);
    assert_eq!(
        cloud
            .callback_signed(raw.as_bytes(), Some("sha256=00"))
            .await,
        401
    );
    // A signature over the re-serialised JSON is not a signature over these bytes.
    let reserialised = serde_json::to_vec(&serde_json::from_str::<Value>(&raw).unwrap()).unwrap();
    let wrong = sign(APP_SECRET, &reserialised);
    assert_ne!(reserialised, raw.as_bytes());
    assert_eq!(
        cloud.callback_signed(raw.as_bytes(), Some(&wrong)).await,
        401
    );
    let (_, metrics) = cloud.app.get("/metrics").await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains(r#"zaphook_cloud_callbacks_total{outcome="bad_signature"}"#),
        "{metrics}"
    );
    // Nothing refused was stored.
    let (_, contacts) = cloud.app.get("/api/v1/contacts").await;
    assert_eq!(contacts, json!([]));

    assert_eq!(cloud.callback(raw.as_bytes()).await, 200);
    let created = cloud
        .event("message.created", |v| v["messageId"] == "wamid.accents")
        .await;
    assert_eq!(created["messageBody"], "Olá, ação! 👋🏽  ok");
    assert_eq!(created["contact"]["name"], "João Araújo");
    assert_eq!(created["contact"]["phoneNumber"], "5511987654321");

    // No cloud connection, no callback.
    let sandbox = cloud.app.sandbox_connection("S").await;
    let status = post_callback(
        &cloud.app,
        sandbox,
        raw.as_bytes(),
        Some(&sign(APP_SECRET, raw.as_bytes())),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(post_callback(&cloud.app, 9999, b"{}", None).await, 404);
}

#[tokio::test]
async fn the_shared_fixtures_become_contacts_tickets_and_events() {
    let cloud = Cloud::start().await;
    assert_eq!(cloud.callback(&fixture("text.json")).await, 200);
    let opened = cloud.event("ticket.created", |_| true).await;
    assert_eq!(opened["Type"], "NewTicket");
    assert_eq!(opened["messageBody"], "Does it come in another color?");
    let created = cloud
        .event("message.created", |v| v["messageId"] == WAMID_TEXT)
        .await;
    assert_eq!(created["messageBody"], "Does it come in another color?");
    assert_eq!(created["timestamp"], 1_749_416_383_000_i64);
    assert_eq!(created["fromMe"], false);
    assert_eq!(created["status"], "received");
    assert_eq!(created["mediaType"], "chat");
    assert_eq!(created["sendType"], Value::Null);
    assert_eq!(created["contact"]["name"], "Sheena Nelson");
    assert_eq!(created["contact"]["pushname"], "Sheena Nelson");
    assert_eq!(created["contact"]["phoneNumber"], "16505551234");
    assert_eq!(created["contact"]["bsuid"], Value::Null);
    assert_eq!(created["whatsapp"]["name"], "Cloud");

    // The reaction fixture reacts to the text fixture's message.
    assert_eq!(cloud.callback(&fixture("reaction.json")).await, 200);
    let reacted = cloud
        .event("message.updated", |v| v["messageId"] == WAMID_TEXT)
        .await;
    assert_eq!(reacted["reactions"][0]["emoji"], "👍");
    assert_eq!(
        reacted["reactions"][0]["contactId"],
        created["contact"]["id"]
    );
    assert_eq!(reacted["reactions"][0]["fromMe"], false);

    // A status of a message zaphook never sent is counted and dropped.
    assert_eq!(cloud.callback(&fixture("status-sent.json")).await, 200);
    common::eventually("the status to be counted", || async {
        let (_, m) = cloud.app.get("/metrics").await;
        m.as_str().unwrap_or("").contains(
            r#"zaphook_cloud_notifications_total{kind="status",outcome="unknown_target"}"#,
        )
    })
    .await;

    // The image fixture announces a sha256 the stand-in's bytes do not have: the download
    // is refused each time, and message.created goes out without media after the wait.
    cloud.graph.add_media(
        "1003383421387256",
        b"not the taj mahal".to_vec(),
        "image/jpeg",
    );
    assert_eq!(cloud.callback(&fixture("image.json")).await, 200);
    let image = cloud
        .event("message.created", |v| v["mediaType"] == "image")
        .await;
    assert_eq!(image["messageBody"], "Taj Mahal");
    assert_eq!(image["mediaUrl"], Value::Null);

    // The original object is kept on the message.
    let ticket = created["ticket"]["id"].as_i64().unwrap();
    let messages = cloud.messages(ticket).await;
    assert_eq!(
        messages[0]["original"]["text"]["body"],
        "Does it come in another color?"
    );
}

#[tokio::test]
async fn a_batched_body_is_read_whole_and_a_redelivery_changes_nothing() {
    let cloud = Cloud::start().await;
    let from = "5511987654321";
    let messages = json!([
        text(from, "wamid.1", "first"),
        {"from": from, "id": "wamid.2", "timestamp": "1796000001", "type": "location",
         "location": {"latitude": -23.55, "longitude": -46.63, "name": "Loja", "address": "Av. Paulista"}},
        {"from": from, "id": "wamid.3", "timestamp": "1796000002", "type": "contacts",
         "contacts": [{"name": {"formatted_name": "Ana"}, "phones": [{"phone": "+55 11 5555-0000"}]}]},
        {"from": from, "id": "wamid.4", "timestamp": "1796000003", "type": "interactive",
         "context": {"from": "15550783881", "id": "wamid.menu"},
         "interactive": {"type": "list_reply", "list_reply": {"id": "opt_2", "title": "Boleto"}}},
        {"from": from, "id": "wamid.5", "timestamp": "1796000004", "type": "button",
         "button": {"payload": "STOP", "text": "Parar"}},
        {"from": from, "id": "wamid.6", "timestamp": "1796000005", "type": "order",
         "order": {"catalog_id": "1", "product_items": []}, "future_field": {"x": 1}},
        {"from": from, "id": "wamid.7", "timestamp": "1796000006", "type": "sticker",
         "sticker": {"id": "st1", "mime_type": "image/webp", "animated": false}}
    ]);
    cloud
        .graph
        .add_media("st1", b"RIFF....WEBP".to_vec(), "image/webp");
    let first = body(contact(from, "Maria"), messages.clone(), Value::Null);
    // A second entry in the same body, for the same number.
    let mut doc: Value = serde_json::from_slice(&first).unwrap();
    let second: Value = serde_json::from_slice(&body(
        contact(from, "Maria"),
        json!([text(from, "wamid.8", "last")]),
        Value::Null,
    ))
    .unwrap();
    doc["entry"]
        .as_array_mut()
        .unwrap()
        .push(second["entry"][0].clone());
    let bytes = serde_json::to_vec(&doc).unwrap();
    assert_eq!(cloud.callback(&bytes).await, 200);

    let all = cloud
        .receiver
        .wait_until(|all| {
            all.iter()
                .filter(|r| r.event() == "message.created")
                .count()
                >= 8
        })
        .await;
    let created: Vec<Value> = all
        .iter()
        .filter(|r| r.event() == "message.created")
        .map(|r| r.json())
        .collect();
    let by_id = |id: &str| {
        created
            .iter()
            .find(|v| v["messageId"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id("wamid.2")["mediaType"], "location");
    assert!(
        by_id("wamid.2")["messageBody"]
            .as_str()
            .unwrap()
            .contains("-23.55,-46.63")
    );
    assert_eq!(by_id("wamid.3")["mediaType"], "contacts");
    assert!(
        by_id("wamid.3")["messageBody"]
            .as_str()
            .unwrap()
            .contains("Ana")
    );
    assert_eq!(by_id("wamid.4")["mediaType"], "interactive");
    assert_eq!(by_id("wamid.4")["messageBody"], "Boleto (opt_2)");
    assert_eq!(by_id("wamid.4")["quotedMessageId"], "wamid.menu");
    assert_eq!(by_id("wamid.5")["messageBody"], "Parar (STOP)");
    assert_eq!(by_id("wamid.6")["mediaType"], "unsupported");
    assert_eq!(by_id("wamid.7")["mediaType"], "sticker");
    assert!(
        by_id("wamid.7")["mediaUrl"]
            .as_str()
            .unwrap()
            .contains("/media/")
    );
    // One ticket for all of them, in the order of the body.
    let ticket = by_id("wamid.1")["ticket"]["id"].clone();
    assert!(created.iter().all(|v| v["ticket"]["id"] == ticket));
    let ids: Vec<&str> = created
        .iter()
        .map(|v| v["messageId"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "wamid.1", "wamid.2", "wamid.3", "wamid.4", "wamid.5", "wamid.6", "wamid.7", "wamid.8"
        ]
    );
    let stored = cloud.messages(ticket.as_i64().unwrap()).await;
    let order = stored.iter().find(|m| m["messageId"] == "wamid.6").unwrap();
    assert_eq!(order["original"]["future_field"]["x"], 1);

    // Meta redelivers the same body (and sends it to every app): nothing new happens.
    let count = cloud.receiver.all().len();
    assert_eq!(cloud.callback(&bytes).await, 200);
    cloud.inbox_drained().await;
    // A later message proves events still flow; the redelivery added none.
    assert_eq!(
        cloud
            .callback(&body(
                contact(from, "Maria"),
                json!([text(from, "wamid.9", "after")]),
                Value::Null
            ))
            .await,
        200
    );
    cloud
        .event("message.created", |v| v["messageId"] == "wamid.9")
        .await;
    assert_eq!(cloud.receiver.all().len(), count + 1);
}

#[tokio::test]
async fn a_user_known_only_by_bsuid_gets_a_contact_and_replies_go_to_the_bsuid() {
    let cloud = Cloud::start().await;
    let bsuid = "BR.1502576394655843";
    let contacts =
        json!([{"profile": {"name": "Sheena", "username": "sheena.n"}, "user_id": bsuid}]);
    let messages = json!([{"from_user_id": bsuid, "id": "wamid.b1", "timestamp": "1796000000",
                           "type": "text", "text": {"body": "oi"}}]);
    assert_eq!(
        cloud.callback(&body(contacts, messages, Value::Null)).await,
        200
    );
    let created = cloud
        .event("message.created", |v| v["messageId"] == "wamid.b1")
        .await;
    assert_eq!(created["contact"]["phoneNumber"], Value::Null);
    assert_eq!(created["contact"]["bsuid"], bsuid);
    assert_eq!(created["contact"]["username"], "sheena.n");
    assert_eq!(created["contact"]["name"], "Sheena");

    // A reply goes to the BSUID.
    let ticket = created["ticket"]["id"].as_i64().unwrap();
    cloud
        .app
        .ok(
            "/api/v1/messages",
            json!({"ticketId": ticket, "body": "olá"}),
            202,
        )
        .await;
    let sends = cloud.graph.wait_for_sends(1).await;
    assert_eq!(sends[0]["recipient"], bsuid, "{}", sends[0]);
    assert!(sends[0].get("to").is_none(), "{}", sends[0]);

    // The user's BSUID changes: the same contact, under the new id.
    let new_bsuid = "BR.9990001112223334";
    let system = json!([{"from_user_id": bsuid, "id": "wamid.sys", "timestamp": "1796000100",
        "type": "system", "system": {"body": "User Sheena changed", "type": "user_changed_user_id",
        "user_id": new_bsuid}}]);
    assert_eq!(
        cloud
            .callback(&body(Value::Null, system, Value::Null))
            .await,
        200
    );
    let later = json!([{"from_user_id": new_bsuid, "id": "wamid.b2", "timestamp": "1796000200",
                        "type": "text", "text": {"body": "de novo"}}]);
    let later_contacts = json!([{"profile": {"name": "Sheena"}, "user_id": new_bsuid}]);
    assert_eq!(
        cloud
            .callback(&body(later_contacts, later, Value::Null))
            .await,
        200
    );
    let again = cloud
        .event("message.created", |v| v["messageId"] == "wamid.b2")
        .await;
    assert_eq!(again["contact"]["id"], created["contact"]["id"]);
    assert_eq!(again["contact"]["bsuid"], new_bsuid);
    assert_eq!(again["ticket"]["id"], ticket);

    // Later the phone number shows up beside the BSUID: the contact learns it.
    let both =
        json!([{"profile": {"name": "Sheena"}, "user_id": new_bsuid, "wa_id": "16505550000"}]);
    let msg = json!([{"from": "16505550000", "from_user_id": new_bsuid, "id": "wamid.b3",
                      "timestamp": "1796000300", "type": "text", "text": {"body": "meu número"}}]);
    assert_eq!(cloud.callback(&body(both, msg, Value::Null)).await, 200);
    let numbered = cloud
        .event("message.created", |v| v["messageId"] == "wamid.b3")
        .await;
    assert_eq!(numbered["contact"]["id"], created["contact"]["id"]);
    assert_eq!(numbered["contact"]["phoneNumber"], "16505550000");
}

#[tokio::test]
async fn a_message_under_a_new_bsuid_waits_for_the_earlier_body_that_announces_it() {
    let cloud = Cloud::start().await;
    let (old, new) = ("BR.1111222233334444", "BR.5555666677778888");
    let contacts = json!([{"profile": {"name": "Sheena"}, "user_id": old}]);
    let first = json!([{"from_user_id": old, "id": "wamid.n1", "timestamp": "1796000000",
                        "type": "text", "text": {"body": "oi"}}]);
    assert_eq!(
        cloud
            .callback(&body(contacts.clone(), first, Value::Null))
            .await,
        200
    );
    let created = cloud
        .event("message.created", |v| v["messageId"] == "wamid.n1")
        .await;

    // The body announcing the change also carries a photo whose download fails a few times,
    // so it is still being read when the next body, under the new BSUID, arrives.
    let bytes = b"\x89PNG photo".to_vec();
    cloud.graph.add_media("img7", bytes.clone(), "image/png");
    cloud.graph.fail_next_downloads(3, 500);
    let change = json!([
        {"from_user_id": old, "id": "wamid.n2", "timestamp": "1796000100", "type": "image",
         "image": {"id": "img7", "mime_type": "image/png", "sha256": sha256_base64(&bytes)}},
        {"from_user_id": old, "id": "wamid.nsys", "timestamp": "1796000101", "type": "system",
         "system": {"body": "User Sheena changed", "type": "user_changed_user_id", "user_id": new}}]);
    assert_eq!(
        cloud.callback(&body(contacts, change, Value::Null)).await,
        200
    );
    let later = json!([{"from_user_id": new, "id": "wamid.n3", "timestamp": "1796000200",
                        "type": "text", "text": {"body": "de novo"}}]);
    let later_contacts = json!([{"profile": {"name": "Sheena"}, "user_id": new}]);
    assert_eq!(
        cloud
            .callback(&body(later_contacts, later, Value::Null))
            .await,
        200
    );
    let again = cloud
        .event("message.created", |v| v["messageId"] == "wamid.n3")
        .await;
    assert_eq!(again["contact"]["id"], created["contact"]["id"], "{again}");
    assert_eq!(again["contact"]["bsuid"], new);
}

#[tokio::test]
async fn echoes_edits_and_revokes_of_a_coexistence_number() {
    let cloud = Cloud::start().await;
    let from = "5511987654321";
    assert_eq!(
        cloud
            .callback(&body(
                contact(from, "Maria"),
                json!([text(from, "wamid.e1", "qual o preço?")]),
                Value::Null
            ))
            .await,
        200
    );
    let asked = cloud
        .event("message.created", |v| v["messageId"] == "wamid.e1")
        .await;

    // The business answers from the WhatsApp Business app on its phone.
    let echo = envelope(vec![(
        "smb_message_echoes",
        json!({"messaging_product": "whatsapp",
               "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
               "message_echoes": [{"from": "15550783881", "to": from, "id": "wamid.echo1",
                   "timestamp": "1796000050", "type": "text", "text": {"body": "R$ 10"}}]}),
    )]);
    assert_eq!(cloud.callback(&echo).await, 200);
    let echoed = cloud
        .event("message.created", |v| v["messageId"] == "wamid.echo1")
        .await;
    assert_eq!(echoed["fromMe"], true);
    assert_eq!(echoed["sendType"], "phone");
    assert_eq!(echoed["status"], "sended");
    assert_eq!(echoed["messageBody"], "R$ 10");
    assert_eq!(echoed["contact"]["id"], asked["contact"]["id"]);
    assert_eq!(echoed["ticket"]["id"], asked["ticket"]["id"]);

    // The contact edits, then deletes, their question.
    let edit = json!([{"from": from, "id": "wamid.edit1", "timestamp": "1796000060", "type": "edit",
        "edit": {"original_message_id": "wamid.e1",
                 "message": {"type": "text", "text": {"body": "qual o preço do azul?"}}}}]);
    assert_eq!(
        cloud
            .callback(&body(contact(from, "Maria"), edit, Value::Null))
            .await,
        200
    );
    let edited = cloud
        .event("message.updated", |v| {
            v["messageId"] == "wamid.e1" && v["edited"] == true
        })
        .await;
    assert_eq!(edited["messageBody"], "qual o preço do azul?");

    // An edit to content zaphook cannot read still marks the message edited.
    let odd = json!([{"from": from, "id": "wamid.edit2", "timestamp": "1796000065", "type": "edit",
        "edit": {"original_message_id": "wamid.e1", "message": {"type": "poll", "poll": {}}}}]);
    assert_eq!(
        cloud
            .callback(&body(contact(from, "Maria"), odd, Value::Null))
            .await,
        200
    );

    let revoke = json!([{"from": from, "id": "wamid.rev1", "timestamp": "1796000070", "type": "revoke",
        "revoke": {"original_message_id": "wamid.e1"}}]);
    assert_eq!(
        cloud
            .callback(&body(contact(from, "Maria"), revoke, Value::Null))
            .await,
        200
    );
    let deleted = cloud
        .event("message.updated", |v| {
            v["messageId"] == "wamid.e1" && v["isDeleted"] == true
        })
        .await;
    assert_eq!(deleted["messageBody"], "qual o preço do azul?");

    // A reaction removed leaves the array.
    let react = |emoji: &str, id: &str| {
        json!([{"from": from, "id": id, "timestamp": "1796000080", "type": "reaction",
                "reaction": {"message_id": "wamid.echo1", "emoji": emoji}}])
    };
    assert_eq!(
        cloud
            .callback(&body(
                contact(from, "Maria"),
                react("❤️", "wamid.r1"),
                Value::Null
            ))
            .await,
        200
    );
    cloud
        .event("message.updated", |v| {
            v["messageId"] == "wamid.echo1" && v["reactions"][0]["emoji"] == "❤️"
        })
        .await;
    assert_eq!(
        cloud
            .callback(&body(
                contact(from, "Maria"),
                react("😂", "wamid.r2"),
                Value::Null
            ))
            .await,
        200
    );
    cloud
        .event("message.updated", |v| {
            v["messageId"] == "wamid.echo1" && v["reactions"][0]["emoji"] == "😂"
        })
        .await;
    assert_eq!(
        cloud
            .callback(&body(
                contact(from, "Maria"),
                react("", "wamid.r3"),
                Value::Null
            ))
            .await,
        200
    );
    let removed = cloud
        .event("message.updated", |v| {
            v["messageId"] == "wamid.echo1" && v["reactions"] == json!([])
        })
        .await;
    assert_eq!(removed["reactions"], json!([]));
}

#[tokio::test]
async fn media_that_fails_twice_then_arrives_is_on_message_created() {
    let cloud = Cloud::start().await;
    let bytes = b"\x89PNG fake image bytes".to_vec();
    cloud.graph.add_media("img1", bytes.clone(), "image/png");
    cloud.graph.fail_next_downloads(2, 500);
    let from = "5511987654321";
    let image = json!([{"from": from, "id": "wamid.img1", "timestamp": "1796000000", "type": "image",
        "image": {"id": "img1", "mime_type": "image/png", "sha256": sha256_base64(&bytes), "caption": "foto"}}]);
    assert_eq!(
        cloud
            .callback(&body(contact(from, "Maria"), image, Value::Null))
            .await,
        200
    );
    let created = cloud
        .event("message.created", |v| v["messageId"] == "wamid.img1")
        .await;
    assert_eq!(created["messageBody"], "foto");
    let url = created["mediaUrl"]
        .as_str()
        .expect("media URL on message.created")
        .to_string();
    assert!(
        url.starts_with(&format!("http://{}/media/", cloud.app.addr)),
        "{url}"
    );
    let got = cloud.app.client.get(&url).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "image/png");
    assert_eq!(got.bytes().await.unwrap().to_vec(), bytes);
    // Every Graph request carried the connection's token.
    let requests = cloud.graph.requests();
    assert!(requests.len() >= 4);
    assert!(
        requests
            .iter()
            .all(|r| r.header("authorization") == "Bearer test-graph-token")
    );
    // A guessed key gets nothing.
    let guessed = url.rsplit_once('/').unwrap().0.to_string() + "/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    assert_eq!(
        cloud
            .app
            .client
            .get(&guessed)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn media_late_for_message_created_follows_as_message_updated() {
    let cloud = Cloud::start().await;
    let bytes = b"%PDF-1.7 fake".to_vec();
    cloud
        .graph
        .add_media("doc1", bytes.clone(), "application/pdf");
    // More failures than the tries that fit in the wait (five, in tests), fewer than the
    // media job's tries after it.
    cloud.graph.fail_next_downloads(6, 503);
    let from = "5511987654321";
    let doc = json!([{"from": from, "id": "wamid.doc1", "timestamp": "1796000000", "type": "document",
        "document": {"id": "doc1", "mime_type": "application/pdf", "filename": "boleto.pdf",
                     "sha256": sha256_base64(&bytes)}}]);
    assert_eq!(
        cloud
            .callback(&body(contact(from, "Maria"), doc, Value::Null))
            .await,
        200
    );
    let created = cloud
        .event("message.created", |v| v["messageId"] == "wamid.doc1")
        .await;
    assert_eq!(created["mediaUrl"], Value::Null);
    assert_eq!(created["mediaType"], "document");
    let updated = cloud
        .event("message.updated", |v| {
            v["messageId"] == "wamid.doc1" && v["mediaUrl"].is_string()
        })
        .await;
    let got = cloud
        .app
        .client
        .get(updated["mediaUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap().to_vec(), bytes);
}

#[tokio::test]
async fn statuses_move_forward_out_of_order_and_a_failure_says_why() {
    let cloud = Cloud::start().await;
    let to = "5511987654321";
    let conn = cloud.connection;
    let sent = cloud
        .app
        .ok(
            "/api/v1/messages",
            json!({"connectionId": conn, "number": to, "body": "oi"}),
            202,
        )
        .await;
    let created = cloud
        .event("message.created", |v| v["id"] == sent["id"])
        .await;
    let wamid = created["messageId"].as_str().unwrap().to_string();
    assert_eq!(created["status"], "sended");
    // Meta reorders and repeats: read first, then delivered, then read again, then sent.
    let statuses = json!([
        status(&wamid, "read", to),
        status(&wamid, "delivered", to),
        status(&wamid, "read", to),
        status(&wamid, "sent", to)
    ]);
    assert_eq!(
        cloud
            .callback(&body(Value::Null, Value::Null, statuses))
            .await,
        200
    );
    cloud
        .event("message.updated", |v| {
            v["messageId"] == wamid && v["status"] == "read"
        })
        .await;
    let played = json!([status(&wamid, "played", to)]);
    assert_eq!(
        cloud
            .callback(&body(Value::Null, Value::Null, played))
            .await,
        200
    );
    cloud
        .event("message.updated", |v| {
            v["messageId"] == wamid && v["status"] == "played"
        })
        .await;
    let updates: Vec<Value> = cloud
        .receiver
        .all()
        .iter()
        .filter(|r| r.event() == "message.updated")
        .map(|r| r.json()["status"].clone())
        .collect();
    assert_eq!(updates, [json!("read"), json!("played")]);

    // A message Meta could not deliver fails with Meta's code and title.
    let other = cloud
        .app
        .ok(
            "/api/v1/messages",
            json!({"connectionId": conn, "number": to, "body": "promo"}),
            202,
        )
        .await;
    let created = cloud
        .event("message.created", |v| v["id"] == other["id"])
        .await;
    let wamid = created["messageId"].as_str().unwrap().to_string();
    let mut failed = status(&wamid, "failed", to);
    failed["errors"] = json!([{"code": 131026, "title": "Message undeliverable",
        "message": "Message undeliverable", "error_data": {"details": "Unable to deliver"}}]);
    failed["pricing"] = json!({"billable": false, "pricing_model": "PMP", "category": "marketing"});
    assert_eq!(
        cloud
            .callback(&body(Value::Null, Value::Null, json!([failed])))
            .await,
        200
    );
    let update = cloud
        .event("message.updated", |v| v["messageId"] == wamid)
        .await;
    assert_eq!(update["status"], "failed");
    assert_eq!(
        update["error"],
        json!({"code": 131026, "title": "Message undeliverable", "source": "whatsapp"})
    );
}

#[tokio::test]
async fn a_body_for_another_number_of_the_company_goes_to_that_connection() {
    let cloud = Cloud::start().await;
    let other = cloud
        .app
        .ok(
            "/api/v1/connections",
            json!({"name": "Second", "channel": "cloud", "cloud": {"phoneNumberId": "222",
                "accessToken": "t2", "appSecret": "other-secret", "verifyToken": "v2",
                "graphBaseUrl": cloud.graph.base_url()}}),
            201,
        )
        .await;
    let mut doc: Value = serde_json::from_slice(&body(
        contact("5511900000001", "A"),
        json!([text("5511900000001", "wamid.n2", "for the second number")]),
        Value::Null,
    ))
    .unwrap();
    doc["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = json!("222");
    let mut unknown = doc["entry"][0].clone();
    unknown["changes"][0]["value"]["metadata"]["phone_number_id"] = json!("333");
    unknown["changes"][0]["value"]["messages"][0]["id"] = json!("wamid.n3");
    doc["entry"].as_array_mut().unwrap().push(unknown);
    // Meta calls the app's callback URL: here the first connection's, signed with its secret.
    assert_eq!(
        cloud.callback(&serde_json::to_vec(&doc).unwrap()).await,
        200
    );
    let created = cloud
        .event("message.created", |v| v["messageId"] == "wamid.n2")
        .await;
    assert_eq!(created["whatsapp"]["id"], other["id"]);
    common::eventually("the unknown number to be counted", || async {
        let (_, m) = cloud.app.get("/metrics").await;
        m.as_str()
            .unwrap_or("")
            .contains(r#"outcome="unknown_number""#)
    })
    .await;
    assert!(
        !cloud
            .receiver
            .all()
            .iter()
            .any(|r| r.json()["messageId"] == "wamid.n3")
    );
}

#[tokio::test]
async fn a_reaction_arriving_while_its_photo_waits_for_media_is_not_lost() {
    let cloud = Cloud::start().await;
    let bytes = b"\x89PNG photo".to_vec();
    cloud.graph.add_media("img9", bytes.clone(), "image/png");
    // The photo's body waits for a few failed downloads before it is filed.
    cloud.graph.fail_next_downloads(3, 500);
    let from = "5511987654321";
    let photo = json!([{"from": from, "id": "wamid.photo", "timestamp": "1796000000", "type": "image",
        "image": {"id": "img9", "mime_type": "image/png", "sha256": sha256_base64(&bytes)}}]);
    let reaction = json!([{"from": from, "id": "wamid.react", "timestamp": "1796000001",
        "type": "reaction", "reaction": {"message_id": "wamid.photo", "emoji": "🔥"}}]);
    assert_eq!(
        cloud
            .callback(&body(contact(from, "Maria"), photo, Value::Null))
            .await,
        200
    );
    assert_eq!(
        cloud
            .callback(&body(contact(from, "Maria"), reaction, Value::Null))
            .await,
        200
    );
    let created = cloud
        .event("message.created", |v| v["messageId"] == "wamid.photo")
        .await;
    assert!(created["mediaUrl"].is_string());
    let updated = cloud
        .event("message.updated", |v| v["messageId"] == "wamid.photo")
        .await;
    assert_eq!(updated["reactions"][0]["emoji"], "🔥");
}

#[tokio::test]
async fn a_callback_body_over_3_mib_is_refused() {
    let cloud = Cloud::start().await;
    let big = vec![b' '; 3 * 1024 * 1024 + 1];
    assert_eq!(cloud.callback(&big).await, 413);
    // Just under the limit is read (and, not being a notification, kept with its reason).
    let mut fits = br#"{"object":"whatsapp_business_account","entry":[]}"#.to_vec();
    fits.resize(3 * 1024 * 1024, b' ');
    assert_eq!(cloud.callback(&fits).await, 200);
}

#[tokio::test]
async fn a_message_sent_through_the_cloud_api_cannot_be_edited_or_deleted() {
    let cloud = Cloud::start().await;
    let sent = cloud
        .app
        .ok(
            "/api/v1/messages",
            json!({"connectionId": cloud.connection, "number": "5511987654321", "body": "oi"}),
            202,
        )
        .await;
    cloud
        .event("message.created", |v| v["id"] == sent["id"])
        .await;
    let path = format!("/api/v1/messages/{}", sent["id"].as_str().unwrap());
    let (status, problem) = cloud.app.patch(&path, json!({"body": "olá"})).await;
    assert_eq!(status, 409, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("Cloud API"));
    let (status, _) = cloud
        .app
        .request(reqwest::Method::DELETE, &path, None)
        .await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn a_brazilian_mobile_with_and_without_the_ninth_digit_is_one_contact() {
    let cloud = Cloud::start().await;
    // An old account: WhatsApp reports the eight-digit form.
    let first = body(
        json!([contact("551187654321", "Ana")]),
        json!([text("551187654321", "wamid.ninth.1", "oi")]),
        json!([]),
    );
    assert_eq!(cloud.callback(&first).await, 200);
    let created = cloud
        .event("message.created", |v| v["messageId"] == "wamid.ninth.1")
        .await;
    assert_eq!(created["contact"]["phoneNumber"], "5511987654321");
    // The integration writes the nine-digit number, in any of the usual ways: one contact.
    for written in [
        "5511987654321",
        "+55 (11) 8765-4321",
        "5511987654321@s.whatsapp.net",
    ] {
        let (status, found) = cloud
            .app
            .get(&format!("/api/v1/contacts?number={}", urlencode(written)))
            .await;
        assert_eq!(status, 200, "{found}");
        assert_eq!(
            found[0]["id"], created["contact"]["id"],
            "{written}: {found}"
        );
    }
    // A reply through the API to the nine-digit number goes on the same ticket.
    let sent = cloud
        .app
        .ok(
            "/api/v1/messages",
            json!({"connectionId": cloud.connection, "number": "5511987654321", "body": "olá"}),
            202,
        )
        .await;
    assert_eq!(sent["ticketId"], created["ticket"]["id"]);
    // And the next message of the account, still in the eight-digit form, too.
    let second = body(
        json!([contact("551187654321", "Ana")]),
        json!([text("551187654321", "wamid.ninth.2", "tudo bem?")]),
        json!([]),
    );
    assert_eq!(cloud.callback(&second).await, 200);
    let next = cloud
        .event("message.created", |v| v["messageId"] == "wamid.ninth.2")
        .await;
    assert_eq!(next["ticket"]["id"], created["ticket"]["id"]);
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
