//! The external API's rich sends (`POST /location`, `/sendcontact`, `/apioficial`) and the
//! main API's `location` / `contacts`, end to end: what the Graph stand-in got for each, the
//! `message.created` that followed, the sandbox channel, and every refusal answered 400
//! (403 for tokens) with nothing stored and nothing sent.

mod common;

use common::TestApp;
use common::cloud::Cloud;
use common::external::{External, QUEUED};
use common::graph::GraphStandIn;
use serde_json::{Value, json};

const TO: &str = "5511999990001";

/// The Graph request of a message to [`TO`] of `kind`.
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

/// The `message.created` of the sent message whose body is `body`.
async fn created_with_body(cloud: &Cloud, body: &str) -> Value {
    cloud
        .event("message.created", |v| {
            v["fromMe"] == true && v["messageBody"] == body
        })
        .await
}

/// The contacts of `number` (none, or the one).
async fn contacts_of(app: &TestApp, number: &str) -> Vec<Value> {
    let (status, list) = app.get(&format!("/api/v1/contacts?number={number}")).await;
    assert_eq!(status, 200, "{list}");
    list.as_array().cloned().unwrap()
}

/// The graph's sends after the first `n`, once there are `n + 1`.
async fn next_send(graph: &GraphStandIn, n: usize) -> Value {
    graph.wait_for_sends(n + 1).await[n].clone()
}

#[tokio::test]
async fn location_contact_and_cloud_messages_reach_graph_as_meta_takes_them() {
    let cloud = Cloud::start().await;
    let api = External::created(&cloud.app, cloud.connection).await;

    // A pin, the coordinates as JSON numbers, WHAZING's `type` in contents ignored.
    api.queued(
        "/location",
        json!({"number": TO, "externalKey": "PEDIDO-7", "contents": {"type": "location",
            "latitude": -23.5505, "longitude": -46.6333, "name": "Loja",
            "address": "Av. Paulista, 1000"}}),
    )
    .await;
    assert_eq!(
        next_send(&cloud.graph, 0).await,
        envelope(
            "location",
            json!({"latitude": -23.5505, "longitude": -46.6333, "name": "Loja",
                   "address": "Av. Paulista, 1000"})
        )
    );
    let pin = created_with_body(&cloud, "Loja\nAv. Paulista, 1000\n-23.5505,-46.6333").await;
    assert_eq!(pin["mediaType"], "location");
    assert_eq!(pin["status"], "sended");
    assert_eq!(pin["sendType"], "API");
    assert_eq!(pin["messageId"], "wamid.stand-in.1");
    assert_eq!(
        pin["ticket"]["apiConfig"],
        json!({"externalKey": "PEDIDO-7"})
    );
    let ticket = pin["ticket"]["id"].as_i64().unwrap();

    // A contact card, to the ticket; the telephone as a number gets its WhatsApp id.
    api.queued(
        "/sendcontact",
        json!({"ticketId": ticket, "externalKey": "PEDIDO-8",
            "contents": {"type": "contact", "displayName": "Ana Souza",
                         "telephone": "+55 11 98765-4321"}}),
    )
    .await;
    assert_eq!(
        next_send(&cloud.graph, 1).await,
        envelope(
            "contacts",
            json!([{"name": {"formatted_name": "Ana Souza", "first_name": "Ana Souza"},
                    "phones": [{"phone": "+55 11 98765-4321", "wa_id": "5511987654321"}]}])
        )
    );
    let card = created_with_body(&cloud, "Ana Souza: +55 11 98765-4321").await;
    assert_eq!(card["mediaType"], "contacts");
    assert_eq!(card["ticket"]["id"], ticket);
    assert_eq!(
        card["ticket"]["apiConfig"],
        json!({"externalKey": "PEDIDO-8"})
    );

    // Buttons, passed through as they are, with zaphook's envelope.
    let buttons = json!({"type": "button", "body": {"text": "Confirma a entrega?"},
        "footer": {"text": "Loja"},
        "action": {"buttons": [
            {"type": "reply", "reply": {"id": "sim", "title": "Sim"}},
            {"type": "reply", "reply": {"id": "nao", "title": "Não"}}]}});
    api.queued(
        "/apioficial",
        json!({"number": TO, "contents": {"type": "interactive", "interactive": buttons,
            "messaging_product": "whatsapp", "biz_opaque_callback_data": "pedido-7"}}),
    )
    .await;
    let mut expected = envelope("interactive", buttons);
    expected["biz_opaque_callback_data"] = json!("pedido-7");
    assert_eq!(next_send(&cloud.graph, 2).await, expected);
    let interactive = created_with_body(&cloud, "Confirma a entrega?").await;
    assert_eq!(interactive["mediaType"], "interactive");
    assert_eq!(interactive["ticket"]["id"], ticket);
    assert_eq!(
        interactive["ticket"]["apiConfig"],
        json!({"externalKey": "PEDIDO-8"}),
        "kept when a send gives none"
    );

    // A template, as a form whose contents is JSON text.
    let template = json!({"name": "pedido_saiu", "language": {"code": "pt_BR"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]});
    let contents = json!({"type": "template", "template": template}).to_string();
    let (status, answer) = api
        .form(
            "/apioficial",
            &[
                ("ticketId", &ticket.to_string()),
                ("externalKey", "PEDIDO-9"),
                ("contents", &contents),
            ],
        )
        .await;
    assert_eq!((status, answer), (200, json!({ "message": QUEUED })));
    assert_eq!(
        next_send(&cloud.graph, 3).await,
        envelope("template", template.clone())
    );
    let sent = cloud
        .event("message.created", |v| v["messageId"] == "wamid.stand-in.4")
        .await;
    assert_eq!(
        (sent["mediaType"].clone(), sent["messageBody"].clone()),
        (json!("chat"), json!(""))
    );
    assert_eq!(
        sent["ticket"]["apiConfig"],
        json!({"externalKey": "PEDIDO-9"})
    );

    // A template as WHAZING's examples write it: no `type`, the template object itself.
    api.queued("/apioficial", json!({"number": TO, "contents": template}))
        .await;
    assert_eq!(
        next_send(&cloud.graph, 4).await,
        envelope("template", template)
    );

    // A pin as a form, its coordinates as strings.
    let contents = json!({"latitude": "-22.9068", "longitude": "-43.1729"}).to_string();
    let (status, answer) = api
        .form("/location", &[("number", TO), ("contents", &contents)])
        .await;
    assert_eq!((status, answer), (200, json!({ "message": QUEUED })));
    assert_eq!(
        next_send(&cloud.graph, 5).await,
        envelope(
            "location",
            json!({"latitude": -22.9068, "longitude": -43.1729})
        )
    );
    let pin = created_with_body(&cloud, "-22.9068,-43.1729").await;
    assert_eq!(pin["mediaType"], "location");

    // Every send went to Meta as the connection, once.
    assert_eq!(cloud.graph.send_requests().len(), 6);
    assert_eq!(cloud.messages(ticket).await.len(), 6);
}

#[tokio::test]
async fn refused_sends_answer_400_and_store_and_send_nothing() {
    let cloud = Cloud::start().await;
    let api = External::created(&cloud.app, cloud.connection).await;
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/location",
            json!({"contents": {"latitude": 1, "longitude": 2}}),
            "number is a required field",
        ),
        (
            "/sendcontact",
            json!({"contents": {"displayName": "Ana", "telephone": "5511"}}),
            "number is a required field",
        ),
        (
            "/apioficial",
            json!({"contents": {"type": "text", "text": {"body": "oi"}}}),
            "number is a required field",
        ),
        (
            "/location",
            json!({"number": "not a number", "contents": {"latitude": 1, "longitude": 2}}),
            "number",
        ),
        (
            "/location",
            json!({"number": TO, "contents": {"latitude": 91, "longitude": 2}}),
            "contents.latitude: must be from -90 to 90 degrees",
        ),
        (
            "/location",
            json!({"number": TO, "contents": {"latitude": 1, "longitude": "-180.5"}}),
            "contents.longitude: must be from -180 to 180 degrees",
        ),
        (
            "/location",
            json!({"number": TO, "contents": {"latitude": "norte", "longitude": 2}}),
            "contents.latitude: must be a number",
        ),
        (
            "/location",
            json!({"number": TO, "contents": {"latitude": "NaN", "longitude": 2}}),
            "contents.latitude: must be from -90 to 90",
        ),
        (
            "/location",
            json!({"number": TO, "contents": {"longitude": 2}}),
            "contents.latitude: is required",
        ),
        (
            "/location",
            json!({"number": TO, "contents": {"latitude": 1, "longitude": 2, "name": 5}}),
            "contents: invalid type",
        ),
        (
            "/location",
            json!({"number": TO}),
            "contents: is a required field",
        ),
        (
            "/location",
            json!({"number": TO, "contents": [1, 2]}),
            "contents: must be an object",
        ),
        (
            "/sendcontact",
            json!({"number": TO, "contents": {"telephone": "5511987654321"}}),
            "contents.displayName: must not be empty",
        ),
        (
            "/sendcontact",
            json!({"number": TO, "contents": {"displayName": "Ana", "telephone": " "}}),
            "contents.telephone: must not be empty",
        ),
        (
            "/sendcontact",
            json!({"number": TO, "contents": "Ana 5511987654321"}),
            "contents: must be an object",
        ),
        (
            "/apioficial",
            json!({"number": TO, "contents": "not an object"}),
            "contents: must be an object",
        ),
        (
            "/apioficial",
            json!({"number": TO, "contents": {"interactive": {"type": "button"}}}),
            "contents.type: is required",
        ),
        (
            "/apioficial",
            json!({"number": TO, "contents": {"type": "interactive"}}),
            "contents.interactive: is required",
        ),
        (
            "/apioficial",
            json!({"number": TO, "contents": {"type": "text", "text": {"body": "oi"},
                "to": "5511888887777"}}),
            "contents.to",
        ),
        (
            "/apioficial",
            json!({"number": TO, "contents": {"type": "text", "text": {"body": "oi"},
                "recipient_type": "group"}}),
            "contents.recipient_type",
        ),
        (
            "/apioficial",
            json!({"number": TO, "contents": {"type": "reaction",
                "reaction": {"message_id": "wamid.X", "emoji": "👍"}}}),
            "contents.type: a reaction",
        ),
        (
            "/apioficial",
            json!({"number": TO, "contents": {"type": "text",
                "text": {"body": "x".repeat(70 * 1024)}}}),
            "at most 64 KiB",
        ),
        (
            "/apioficial",
            json!({"number": TO, "contents": {"type": "text", "text": {"body": "a\u{0}b"}}}),
            "NUL",
        ),
    ];
    for (route, body, words) in &cases {
        let got = api.json(route, body.clone()).await;
        api.refused(route, body, got, words);
    }
    // Forms too, their contents as JSON text.
    let forms = [
        (
            "/location",
            "{\"latitude\": 100, \"longitude\": 0}",
            "contents.latitude",
        ),
        (
            "/sendcontact",
            "{\"displayName\": \"Ana\"}",
            "contents.telephone",
        ),
        ("/apioficial", "{oops", "contents: must be an object"),
    ];
    for (route, contents, words) in forms {
        let fields = [("number", TO), ("contents", contents)];
        let got = api.form(route, &fields).await;
        api.refused(route, &json!(fields), got, words);
    }
    let (status, answer) = api
        .json(
            "/location",
            json!({"ticketId": 999, "contents": {"latitude": 1, "longitude": 2}}),
        )
        .await;
    assert_eq!(
        (status, answer),
        (404, json!({"error": "ERR_NO_TICKET_FOUND"}))
    );

    // Nothing was stored (no contact, so no ticket) and nothing reached Meta: the next send is
    // the first.
    assert_eq!(contacts_of(&cloud.app, TO).await, Vec::<Value>::new());
    api.queued(
        "/location",
        json!({"number": TO, "contents": {"latitude": 0, "longitude": 0}}),
    )
    .await;
    let sent = cloud.graph.wait_for_sends(1).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        sent[0]["location"],
        json!({"latitude": 0.0, "longitude": 0.0})
    );
    assert_eq!(contacts_of(&cloud.app, TO).await.len(), 1);
}

#[tokio::test]
async fn the_sandbox_sends_pins_and_cards_and_refuses_cloud_messages() {
    let app = common::spawn_app().await;
    let receiver = common::TestReceiver::start().await;
    app.webhook(&receiver.url(), &["message.created", "ticket.created"])
        .await;
    let connection = app.sandbox_connection("Comercial").await;
    let api = External::created(&app, connection).await;

    api.queued(
        "/location",
        json!({"number": TO, "externalKey": "CRM-1",
               "contents": {"latitude": "37.483307", "longitude": -122.148981, "name": "Meta HQ"}}),
    )
    .await;
    api.queued(
        "/sendcontact",
        json!({"number": TO, "contents": {"displayName": "Recepção", "telephone": 551130000000_i64}}),
    )
    .await;
    let all = receiver
        .wait_until(|all| {
            all.iter()
                .filter(|r| r.event() == "message.created")
                .count()
                >= 2
        })
        .await;
    let created: Vec<Value> = all
        .iter()
        .filter(|r| r.event() == "message.created")
        .map(|r| r.json())
        .collect();
    let pin = created
        .iter()
        .find(|v| v["mediaType"] == "location")
        .unwrap();
    assert_eq!(pin["messageBody"], "Meta HQ\n37.483307,-122.148981");
    assert_eq!(pin["status"], "sended");
    assert_eq!(pin["fromMe"], true);
    assert_eq!(pin["whatsapp"]["id"], connection);
    assert_eq!(pin["ticket"]["apiConfig"], json!({"externalKey": "CRM-1"}));
    let card = created
        .iter()
        .find(|v| v["mediaType"] == "contacts")
        .unwrap();
    assert_eq!(card["messageBody"], "Recepção: 551130000000");
    assert_eq!(card["ticket"]["id"], pin["ticket"]["id"]);

    // A Cloud API message object needs a Cloud API connection, also for a number that has no
    // contact yet: nothing is stored for it.
    let other = "5511977776666";
    let body = json!({"number": other, "contents": {"type": "text", "text": {"body": "oi"}}});
    let got = api.json("/apioficial", body.clone()).await;
    api.refused(
        "/apioficial",
        &body,
        got,
        "needs a Cloud API (cloud) connection",
    );
    assert_eq!(contacts_of(&app, other).await, Vec::<Value>::new());
    assert_eq!(contacts_of(&app, TO).await.len(), 1);
    let ticket = pin["ticket"]["id"].as_i64().unwrap();
    let body = json!({"ticketId": ticket,
        "contents": {"type": "template", "template": {"name": "x", "language": {"code": "pt_BR"}}}});
    let got = api.json("/apioficial", body.clone()).await;
    api.refused("/apioficial", &body, got, "Cloud API");
    let (_, page) = app.get(&format!("/api/v1/tickets/{ticket}/messages")).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2, "{page}");
}

#[tokio::test]
async fn the_routes_check_the_token_as_the_others_do() {
    let app = common::spawn_app().await;
    let connection = app.sandbox_connection("Comercial").await;
    let api = External::created(&app, connection).await;
    let other = External::created(&app, connection).await;
    for route in ["/location", "/sendcontact", "/apioficial"] {
        let url = format!("{}{route}", api.base);
        let cases = [
            (None, "Token was not provided."),
            (Some("Bearer ".to_string()), "Invalid token."),
            (Some(api.token.clone()), "Invalid token."),
            (Some(format!("Bearer {}x", api.token)), "Invalid token."),
            (Some(format!("Bearer {}", app.token)), "Invalid token."),
            (
                Some(format!("Bearer {}", other.token)),
                "ERR_SESSION_NOT_AUTH_TOKEN",
            ),
        ];
        for (auth, error) in cases {
            let mut request = app
                .client
                .post(&url)
                .header("content-type", "application/json")
                .body(json!({"number": TO, "contents": {}}).to_string());
            if let Some(auth) = &auth {
                request = request.header("authorization", auth);
            }
            let (status, body) = External::answer(request).await;
            assert_eq!(
                (status, body),
                (403, json!({ "error": error })),
                "{route} {auth:?}"
            );
        }
    }
}

#[tokio::test]
async fn the_main_api_sends_pins_and_cards_too() {
    let cloud = Cloud::start().await;
    let send = |extra: Value| {
        let mut body = json!({"connectionId": cloud.connection, "number": TO});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let m = cloud
        .app
        .ok(
            "/api/v1/messages",
            send(
                json!({"location": {"latitude": 40.4168, "longitude": "-3.7038",
                "address": "Puerta del Sol"}, "externalKey": "ES-1"}),
            ),
            202,
        )
        .await;
    assert_eq!(m["mediaType"], "location");
    assert_eq!(m["body"], "Puerta del Sol\n40.4168,-3.7038");
    assert_eq!(
        next_send(&cloud.graph, 0).await,
        envelope(
            "location",
            json!({"latitude": 40.4168, "longitude": -3.7038, "address": "Puerta del Sol"})
        )
    );
    let pin = created_with_body(&cloud, "Puerta del Sol\n40.4168,-3.7038").await;
    assert_eq!(pin["ticket"]["apiConfig"], json!({"externalKey": "ES-1"}));

    let m = cloud
        .app
        .ok(
            "/api/v1/messages",
            send(
                json!({"contacts": {"displayName": "Suporte", "telephone": "0800 123 4567"},
                "mediaType": "contacts"}),
            ),
            202,
        )
        .await;
    assert_eq!(
        (m["mediaType"].clone(), m["body"].clone()),
        (json!("contacts"), json!("Suporte: 0800 123 4567"))
    );
    assert_eq!(
        next_send(&cloud.graph, 1).await,
        envelope(
            "contacts",
            json!([{"name": {"formatted_name": "Suporte", "first_name": "Suporte"},
                    "phones": [{"phone": "0800 123 4567", "wa_id": "08001234567"}]}])
        )
    );

    // Refusals: 422 naming the field, as the rest of the main API.
    let pin = json!({"latitude": 1, "longitude": 2});
    let card = json!({"displayName": "Ana", "telephone": "5511987654321"});
    let refusals = [
        (
            json!({"location": {"latitude": -91, "longitude": 2}}),
            "location.latitude",
        ),
        (json!({"location": {"latitude": 1}}), "location.longitude"),
        (
            json!({"location": {"latitude": 1, "longitude": 2, "lat": 3}}),
            "",
        ),
        (
            json!({"contacts": {"telephone": "5511987654321"}}),
            "contacts.displayName",
        ),
        (json!({"location": pin, "contacts": card}), "contacts"),
        (json!({"location": pin, "body": "olá"}), "body"),
        (json!({"location": pin, "mediaType": "image"}), "mediaType"),
        (
            json!({"location": pin, "mediaType": "image", "mediaUrl": "https://x.test/a.jpg"}),
            "location",
        ),
        (json!({"mediaType": "location"}), "location"),
        (json!({"mediaType": "contacts", "body": "x"}), "contacts"),
        (
            json!({"contacts": card, "template": {"name": "a", "language": "pt_BR"}}),
            "contacts",
        ),
    ];
    for (extra, field) in refusals {
        let (status, problem) = cloud
            .app
            .post("/api/v1/messages", send(extra.clone()))
            .await;
        assert_eq!(status, 422, "{extra}: {problem}");
        if field.is_empty() {
            continue;
        }
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert!(fields.contains(&field), "{extra}: {problem}");
    }
    assert_eq!(cloud.graph.send_requests().len(), 2);
}
