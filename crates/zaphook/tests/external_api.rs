//! The WHAZING external API (`/v1/api/external/{apiId}`), called as an n8n HTTP Request node
//! would, and the API configs that are its keys.

mod common;

use common::external::External;
use common::{TestApp, spawn_app};
use serde_json::{Value, json};

/// An API config of a new sandbox connection: `(connection, apiId, token)`.
async fn api_config(app: &TestApp) -> (i64, String, String) {
    let connection = app.sandbox_connection("Comercial").await;
    let created = app
        .ok(
            &format!("/api/v1/connections/{connection}/api-configs"),
            json!({"name": "n8n"}),
            201,
        )
        .await;
    let (id, token) = (
        created["apiId"].as_str().unwrap().to_string(),
        created["token"].as_str().unwrap().to_string(),
    );
    (connection, id, token)
}

#[tokio::test]
async fn api_configs_are_created_listed_and_revoked_by_their_company_only() {
    let app = spawn_app().await;
    let (connection, id, token) = api_config(&app).await;
    assert!(token.starts_with("zx_") && token.len() == 35, "{token}");
    let (status, listed) = app
        .get(&format!("/api/v1/connections/{connection}/api-configs"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["apiId"], id.as_str());
    assert_eq!(listed[0]["name"], "n8n");
    assert_eq!(listed[0]["connectionId"], connection);
    assert_eq!(listed[0]["tokenPrefix"], &token[..11]);
    assert!(
        listed[0].get("token").is_none(),
        "never shown again: {listed}"
    );

    // Validation, and connections that are not there (or are another company's).
    let (status, problem) = app
        .post(
            &format!("/api/v1/connections/{connection}/api-configs"),
            json!({"name": ""}),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    let (_, other_token) = zaphook::app::create_company(&app.store, "Other")
        .await
        .unwrap();
    let other = |method: reqwest::Method, path: String| {
        app.client
            .request(method, app.url(&path))
            .bearer_auth(&other_token)
            .header("content-type", "application/json")
            .body(r#"{"name":"intruder"}"#)
            .send()
    };
    for (method, path) in [
        (
            reqwest::Method::POST,
            format!("/api/v1/connections/{connection}/api-configs"),
        ),
        (
            reqwest::Method::GET,
            format!("/api/v1/connections/{connection}/api-configs"),
        ),
        (reqwest::Method::DELETE, format!("/api/v1/api-configs/{id}")),
    ] {
        let answer = other(method.clone(), path.clone()).await.unwrap();
        assert_eq!(answer.status(), 404, "{method} {path}");
    }
    let (status, _) = app
        .post("/api/v1/connections/999/api-configs", json!({"name": "x"}))
        .await;
    assert_eq!(status, 404);

    let revoke = |path: String| {
        app.client
            .delete(app.url(&path))
            .bearer_auth(&app.token)
            .send()
    };
    let answer = revoke(format!("/api/v1/api-configs/{id}")).await.unwrap();
    assert_eq!(answer.status(), 204);
    let answer = revoke(format!("/api/v1/api-configs/{id}")).await.unwrap();
    assert_eq!(answer.status(), 404);
    let (_, listed) = app
        .get(&format!("/api/v1/connections/{connection}/api-configs"))
        .await;
    assert_eq!(listed, json!([]));
}

#[tokio::test]
async fn every_route_checks_the_token_and_answers_whazings_error_shape() {
    let app = spawn_app().await;
    let (_, id, token) = api_config(&app).await;
    let (_, other_id, other_token) = api_config(&app).await;
    let routes = [
        ("POST", ""),
        ("GET", "/params"),
        ("POST", "/createticket"),
        ("POST", "/showticket"),
        ("POST", "/showallticket"),
        ("POST", "/updateticketinfo"),
        ("POST", "/updatequeue"),
        ("GET", "/ticket/1"),
        ("POST", "/createcontact"),
        ("POST", "/updatecontact"),
        ("POST", "/contact"),
        ("GET", "/statuschannel"),
    ];
    for (method, route) in routes {
        let url = app.url(&format!("/v1/api/external/{id}{route}"));
        let request = |auth: Option<&str>| {
            let mut r = app
                .client
                .request(method.parse().unwrap(), &url)
                .header("content-type", "application/json")
                .body("{}");
            if let Some(auth) = auth {
                r = r.header("authorization", auth);
            }
            r
        };
        let cases = [
            (None, "Token was not provided."),
            (Some("Bearer ".to_string()), "Invalid token."),
            (Some(token.clone()), "Invalid token."),
            (Some(format!("Bearer {token}x")), "Invalid token."),
            (Some(format!("Bearer {}", app.token)), "Invalid token."),
            (
                Some(format!("Bearer {other_token}")),
                "ERR_SESSION_NOT_AUTH_TOKEN",
            ),
        ];
        for (auth, error) in cases {
            let (status, body) = External::answer(request(auth.as_deref())).await;
            assert_eq!(status, 403, "{method} {route} with {auth:?}: {body}");
            assert_eq!(body, json!({ "error": error }), "{method} {route} {auth:?}");
        }
    }
    // A token of another config is refused on this one's apiId, and accepted on its own.
    let mine = External::of(&app, &other_id, &other_token);
    let (status, body) = mine.get("/statuschannel").await;
    assert_eq!(status, 200, "{body}");
    // A revoked token stops working.
    let revoked = app
        .client
        .delete(app.url(&format!("/api/v1/api-configs/{other_id}")))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    let (status, body) = mine.get("/statuschannel").await;
    assert_eq!((status, body), (403, json!({"error": "Invalid token."})));
}

#[tokio::test]
async fn messages_sent_through_the_external_api_carry_the_external_key() {
    let app = spawn_app().await;
    let receiver = common::TestReceiver::start().await;
    app.webhook(&receiver.url(), &["message.created", "ticket.created"])
        .await;
    let (connection, id, token) = api_config(&app).await;
    let api = External::of(&app, &id, &token);

    // JSON with the number as a JSON number, the way many flows write it.
    let (status, body) = api
        .json(
            "",
            json!({"number": 5511987654321_i64, "body": "Seu pedido saiu", "externalKey": "PEDIDO-1"}),
        )
        .await;
    assert_eq!(
        (status, body),
        (200, json!({"message": "Message add queue"}))
    );
    let sent = receiver
        .wait_until(|all| {
            all.iter().any(|r| {
                r.event() == "message.created" && r.json()["messageBody"] == "Seu pedido saiu"
            })
        })
        .await;
    let created = sent
        .iter()
        .map(|r| r.json())
        .find(|v| v["event"] == "message.created")
        .unwrap();
    assert_eq!(created["fromMe"], true);
    assert_eq!(created["sendType"], "API");
    assert_eq!(
        created["ticket"]["apiConfig"],
        json!({"externalKey": "PEDIDO-1"})
    );
    assert_eq!(created["whatsapp"]["id"], connection);
    let ticket_id = created["ticket"]["id"].as_i64().unwrap();

    // A form, to the ticket, with the eight-digit form of the number on another call.
    let (status, body) = api
        .form(
            "",
            &[
                ("ticketId", &ticket_id.to_string()),
                ("body", "Chega amanhã"),
            ],
        )
        .await;
    assert_eq!(
        (status, body),
        (200, json!({"message": "Message add queue"}))
    );
    // The same as a link, the token in the query.
    // (With the trailing slash WHAZING's Postman collection writes.)
    let link = format!(
        "{}/params/?body={}&number=551187654321&externalKey=PEDIDO-2&bearertoken={token}",
        api.base, "Obrigado%21"
    );
    let (status, body) = External::answer(app.client.get(&link)).await;
    assert_eq!(
        (status, body),
        (200, json!({"message": "Message add queue"}))
    );
    let all = receiver
        .wait_until(|all| {
            all.iter()
                .filter(|r| r.event() == "message.created")
                .count()
                >= 3
        })
        .await;
    let bodies: Vec<Value> = all
        .iter()
        .filter(|r| r.event() == "message.created")
        .map(|r| r.json())
        .collect();
    let last = bodies
        .iter()
        .find(|v| v["messageBody"] == "Obrigado!")
        .unwrap();
    assert_eq!(
        last["ticket"]["id"], ticket_id,
        "one contact: the ninth digit"
    );
    assert_eq!(
        last["ticket"]["apiConfig"],
        json!({"externalKey": "PEDIDO-2"})
    );
    // ?bearertoken= is for /params only.
    let (status, _) = External::answer(
        app.client
            .get(format!("{}/statuschannel?bearertoken={token}", api.base)),
    )
    .await;
    assert_eq!(status, 403);

    // Validation answers 400 {"error"}.
    for (body, words) in [
        (json!({"body": "no one"}), "number is a required field"),
        (
            json!({"number": "5511987654321"}),
            "body is a required field",
        ),
        (json!({"number": "not a number", "body": "x"}), "number"),
        (json!({"ticketId": "abc", "body": "x"}), "not an id"),
        (
            json!({"number": "5511987654321", "body": "x", "mediaUrl": "ftp://x"}),
            "mediaUrl",
        ),
    ] {
        let (status, answer) = api.json("", body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(words),
            "{body}: {answer}"
        );
    }
    let (status, answer) = api.json("", json!({"ticketId": 999, "body": "x"})).await;
    assert_eq!(
        (status, answer),
        (404, json!({"error": "ERR_NO_TICKET_FOUND"}))
    );
    let (status, answer) = External::answer(
        app.client
            .post(&api.base)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
}

#[tokio::test]
async fn tickets_are_opened_found_changed_and_read_on_the_configs_connection() {
    let app = spawn_app().await;
    let receiver = common::TestReceiver::start().await;
    app.webhook(
        &receiver.url(),
        &["ticket.created", "ticket.transferred", "ticket.closed"],
    )
    .await;
    let (connection, id, token) = api_config(&app).await;
    let api = External::of(&app, &id, &token);
    let queue = app
        .ok("/api/v1/queues", json!({"name": "Vendas"}), 201)
        .await["id"]
        .clone();

    let (status, answer) = api
        .json("/showticket", json!({"number": "5511912345678"}))
        .await;
    assert_eq!(
        (status, answer),
        (404, json!({"error": "ERR_NO_TICKET_FOUND"}))
    );
    let (status, ticket) = api
        .form(
            "/createticket",
            &[
                ("number", "+55 11 91234-5678"),
                ("status", "open"),
                ("externalKey", "CRM-9"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{ticket}");
    assert_eq!(ticket["status"], "open");
    assert_eq!(ticket["whatsappId"], connection);
    assert_eq!(ticket["apiConfig"], json!({"externalKey": "CRM-9"}));
    assert_eq!(ticket["contact"]["number"], "5511912345678");
    let ticket_id = ticket["id"].as_i64().unwrap();
    // Creating again answers the same ticket.
    let (_, again) = api
        .json("/createticket", json!({"number": "5511912345678"}))
        .await;
    assert_eq!(again["id"], ticket_id);
    let (status, shown) = api
        .json("/showticket", json!({"number": "5511912345678"}))
        .await;
    assert_eq!((status, shown["id"].clone()), (200, json!(ticket_id)));

    // A transfer, then closing it.
    let (status, moved) = api
        .json(
            "/updatequeue",
            json!({"ticketId": ticket_id, "queueId": queue}),
        )
        .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["queueId"], queue);
    let (status, closed) = api
        .form(
            "/updateticketinfo",
            &[("ticketId", &ticket_id.to_string()), ("status", "closed")],
        )
        .await;
    assert_eq!((status, closed["status"].clone()), (200, json!("closed")));
    let got = receiver
        .wait_until(|all| {
            ["ticket.created", "ticket.transferred", "ticket.closed"]
                .iter()
                .all(|e| all.iter().any(|r| r.event() == *e))
        })
        .await;
    let created = got
        .iter()
        .find(|r| r.event() == "ticket.created")
        .unwrap()
        .json();
    assert_eq!(
        created["ticket"]["apiConfig"],
        json!({"externalKey": "CRM-9"})
    );
    let (status, answer) = api
        .json("/showticket", json!({"number": "5511912345678"}))
        .await;
    assert_eq!(
        (status, answer),
        (404, json!({"error": "ERR_NO_TICKET_FOUND"}))
    );

    // Every ticket of the contact, newest first, and a ticket's messages.
    let (_, second) = api
        .json("/createticket", json!({"number": "5511912345678"}))
        .await;
    let (status, all) = api
        .json("/showallticket", json!({"number": "5511912345678"}))
        .await;
    assert_eq!(status, 200, "{all}");
    let ids: Vec<Value> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].clone())
        .collect();
    assert_eq!(ids, [second["id"].clone(), json!(ticket_id)]);
    let (status, answer) = api
        .json("/showallticket", json!({"number": "5511900000000"}))
        .await;
    assert_eq!(
        (status, answer),
        (404, json!({"error": "ERR_NO_CONTACT_FOUND"}))
    );
    app.inbound(connection, "5511912345678", "quero comprar")
        .await;
    let (status, read) = api.get(&format!("/ticket/{}", second["id"])).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["messages"][0]["body"], "quero comprar");
    assert_eq!(read["count"], 1);

    // Tickets of another connection (or none) are not this config's.
    let (_, other_id, other_token) = api_config(&app).await;
    let other = External::of(&app, &other_id, &other_token);
    for (status, answer) in [
        other.get(&format!("/ticket/{ticket_id}")).await,
        other
            .json(
                "/updatequeue",
                json!({"ticketId": ticket_id, "queueId": queue}),
            )
            .await,
        api.get("/ticket/999").await,
        api.get("/ticket/abc").await,
    ] {
        assert_eq!(
            (status, answer),
            (404, json!({"error": "ERR_NO_TICKET_FOUND"}))
        );
    }
    for (body, words) in [
        (json!({"ticketId": ticket_id}), "queueId"),
        (json!({"queueId": queue}), "ticketId"),
    ] {
        let (status, answer) = api.json("/updatequeue", body).await;
        assert_eq!(status, 400);
        assert!(
            answer["error"].as_str().unwrap().contains(words),
            "{answer}"
        );
    }
    let (status, answer) = api
        .json(
            "/createticket",
            json!({"number": "5511912345670", "status": "sleeping"}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = api
        .json(
            "/updatequeue",
            json!({"ticketId": ticket_id, "queueId": 999}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
}

#[tokio::test]
async fn contacts_are_created_found_and_updated_and_the_channel_answers_its_state() {
    let app = spawn_app().await;
    let (connection, id, token) = api_config(&app).await;
    let api = External::of(&app, &id, &token);
    let (status, contact) = api
        .json(
            "/createcontact",
            json!({"name": "Maria", "number": "551188887777", "email": "maria@example.com",
                   "extraInfo": [{"name": "cpf", "value": "123.456.789-00"},
                                 {"name": "pedidos", "value": 3}]}),
        )
        .await;
    assert_eq!(status, 200, "{contact}");
    assert_eq!(contact["number"], "5511988887777");
    assert_eq!(contact["email"], "maria@example.com");
    assert_eq!(
        contact["extraInfo"],
        json!([{"name": "cpf", "value": "123.456.789-00"}, {"name": "pedidos", "value": "3"}])
    );
    let (status, answer) = api
        .json(
            "/createcontact",
            json!({"name": "Maria", "number": "5511988887777"}),
        )
        .await;
    assert_eq!(
        (status, answer),
        (400, json!({"error": "ERR_DUPLICATED_CONTACT"}))
    );
    let (status, found) = api.form("/contact", &[("number", "5511988887777")]).await;
    assert_eq!((status, found["id"].clone()), (200, contact["id"].clone()));
    let (status, found) = api
        .json("/contact", json!({"contactId": contact["id"]}))
        .await;
    assert_eq!((status, found["name"].clone()), (200, json!("Maria")));
    let (status, updated) = api
        .json(
            "/updatecontact",
            json!({"contactId": contact["id"], "name": "Maria Souza", "email": "m@example.com"}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["name"], "Maria Souza");
    assert_eq!(
        updated["extraInfo"], contact["extraInfo"],
        "kept when not given"
    );
    let (_, listed) = app.get("/api/v1/contacts?number=5511988887777").await;
    assert_eq!(listed[0]["name"], "Maria Souza");
    assert_eq!(listed[0]["email"], "m@example.com");
    assert_eq!(listed[0]["extraInfo"], contact["extraInfo"]);
    // A list given replaces the fields; an empty one clears them.
    let (status, updated) = api
        .json(
            "/updatecontact",
            json!({"number": "5511988887777", "extraInfo": [{"id": 7, "name": "plano", "value": "ouro"}]}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        updated["extraInfo"],
        json!([{"name": "plano", "value": "ouro"}])
    );
    let (_, found) = api
        .json("/contact", json!({"number": "5511988887777"}))
        .await;
    assert_eq!(found["extraInfo"], updated["extraInfo"]);
    let (_, cleared) = api
        .json(
            "/updatecontact",
            json!({"contactId": contact["id"], "extraInfo": []}),
        )
        .await;
    assert_eq!(cleared["extraInfo"], json!([]));
    for (route, body) in [
        ("/contact", json!({"number": "5511900000000"})),
        ("/updatecontact", json!({"contactId": 999, "name": "x"})),
    ] {
        let (status, answer) = api.json(route, body).await;
        assert_eq!(
            (status, answer),
            (404, json!({"error": "ERR_NO_CONTACT_FOUND"}))
        );
    }
    for (route, body) in [
        ("/createcontact", json!({"number": "5511977776666"})),
        (
            "/createcontact",
            json!({"name": "A", "number": "5511977776666", "email": "nope"}),
        ),
        ("/createcontact", json!({"name": "A", "number": "x"})),
        (
            "/createcontact",
            json!({"name": "A", "number": "5511977776666", "extraInfo": {"cpf": "1"}}),
        ),
        (
            "/createcontact",
            json!({"name": "A", "number": "5511977776666", "extraInfo": [{"value": "1"}]}),
        ),
        (
            "/createcontact",
            json!({"name": "A", "number": "5511977776666",
                   "extraInfo": [{"name": "cpf", "value": "1"}, {"name": "cpf", "value": "2"}]}),
        ),
        (
            "/updatecontact",
            json!({"contactId": contact["id"], "extraInfo": [{"name": "x", "value": {"a": 1}}]}),
        ),
        ("/contact", json!({})),
    ] {
        let (status, answer) = api.json(route, body.clone()).await;
        assert_eq!(status, 400, "{route} {body}: {answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }

    let (status, channel) = api.get("/statuschannel").await;
    assert_eq!(status, 200);
    assert_eq!(channel["id"], connection);
    assert_eq!(channel["name"], "Comercial");
    assert_eq!(channel["status"], "CONNECTED");
}

/// A multipart form as n8n's "Form-Data" body sends it: text fields and one file.
fn multipart(fields: &[(&str, &str)], file: Option<(&str, &str, &[u8])>) -> (String, Vec<u8>) {
    let boundary = "----n8nFormBoundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\ncontent-disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    if let Some((file_name, mime, bytes)) = file {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\ncontent-disposition: form-data; name=\"media\"; filename=\"{file_name}\"\r\ncontent-type: {mime}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn files_are_sent_as_uploads_or_base64_and_served_from_their_media_url() {
    use base64::Engine;
    let app = spawn_app().await;
    let receiver = common::TestReceiver::start().await;
    app.webhook(&receiver.url(), &["message.created"]).await;
    let (_, id, token) = api_config(&app).await;
    let api = External::of(&app, &id, &token);
    let png: Vec<u8> = [&b"\x89PNG\r\n\x1a\n"[..], &[7u8; 600][..]].concat();
    let pdf = b"%PDF-1.4 a small boleto".to_vec();

    let (content_type, body) = multipart(
        &[
            ("number", "5511955554444"),
            ("body", "a foto"),
            ("externalKey", "K-1"),
        ],
        Some(("foto.png", "image/png", &png)),
    );
    let (status, answer) = External::answer(
        app.client
            .post(&api.base)
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body),
    )
    .await;
    assert_eq!(
        (status, answer),
        (200, json!({"message": "Message add queue"}))
    );
    let (status, answer) = api
        .json(
            "",
            json!({"number": "5511955554444", "body": "o boleto", "mediaMessage": {
                "mediaType": "document", "fileName": "boleto.pdf",
                "media": base64::engine::general_purpose::STANDARD.encode(&pdf)}}),
        )
        .await;
    assert_eq!(
        (status, answer),
        (200, json!({"message": "Message add queue"}))
    );
    let got = receiver
        .wait_until(|all| {
            all.iter()
                .filter(|r| r.event() == "message.created")
                .count()
                >= 2
        })
        .await;
    let created: Vec<Value> = got.iter().map(|r| r.json()).collect();
    let photo = created
        .iter()
        .find(|v| v["messageBody"] == "a foto")
        .unwrap();
    let boleto = created
        .iter()
        .find(|v| v["messageBody"] == "o boleto")
        .unwrap();
    assert_eq!(photo["mediaType"], "image");
    assert_eq!(photo["ticket"]["apiConfig"], json!({"externalKey": "K-1"}));
    assert_eq!(boleto["mediaType"], "document");
    for (message, bytes) in [(photo, &png), (boleto, &pdf)] {
        let url = message["mediaUrl"].as_str().unwrap();
        let served = app.client.get(url).send().await.unwrap();
        assert_eq!(served.status(), 200, "{url}");
        assert_eq!(&served.bytes().await.unwrap()[..], &bytes[..]);
    }

    // Too large, not base64, a file and a URL at once, an unknown media type.
    let big = vec![0u8; 16 * 1024 * 1024 + 1];
    let (content_type, body) = multipart(
        &[("number", "5511955554444")],
        Some(("big.bin", "application/octet-stream", &big)),
    );
    let (status, answer) = External::answer(
        app.client
            .post(&api.base)
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body),
    )
    .await;
    assert_eq!(status, 413, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("16 MiB"),
        "{answer}"
    );
    for (body, words) in [
        (
            json!({"number": "5511955554444", "mediaMessage": {"media": "***not base64***"}}),
            "base64",
        ),
        (
            json!({"number": "5511955554444", "mediaUrl": "https://x.test/a.png",
                "mediaMessage": {"media": "aGVsbG8="}}),
            "not both",
        ),
        (
            json!({"number": "5511955554444", "mediaMessage": {"media": "aGVsbG8=", "mediaType": "hologram"}}),
            "mediaType",
        ),
    ] {
        let (status, answer) = api.json("", body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(words),
            "{body}: {answer}"
        );
    }
}
