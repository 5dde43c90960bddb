//! izing's older per-API-config hooks: an API config's `urlMessageStatus` hears the acks of the
//! messages of the tickets it last used, its `urlServiceStatus` the connection's state, both
//! with its `authToken` as a raw `authorization` header, signed, retried and logged as every
//! webhook. Real server, real receivers, the Graph stand-in for a Cloud connection's state.

mod common;

use common::cloud::Cloud;
use common::graph::{PHONE_NUMBER_ID, meta_error};
use common::{Received, TestApp, TestReceiver, spawn_app, spawn_app_with, verify};
use serde_json::{Value, json};

const AUTH: &str = "Bearer integrator-secret-42";

/// An API config of `connection` made from `body`; answers the whole answer.
async fn config(app: &TestApp, connection: i64, body: Value) -> Value {
    app.ok(
        &format!("/api/v1/connections/{connection}/api-configs"),
        body,
        201,
    )
    .await
}

/// POSTs a send to the external API of a config as an n8n node would.
async fn external_send(app: &TestApp, config: &Value, body: Value) {
    let resp = app
        .client
        .post(app.url(&format!(
            "/v1/api/external/{}",
            config["apiId"].as_str().unwrap()
        )))
        .bearer_auth(config["token"].as_str().unwrap())
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

/// The sandbox's contact reports `status` for message `message_id`.
async fn report(app: &TestApp, connection: i64, message_id: &str, status: &str) {
    app.ok(
        &format!("/api/v1/connections/{connection}/sandbox/status"),
        json!({"messageId": message_id, "status": status}),
        200,
    )
    .await;
}

/// The payloads of an endpoint's deliveries as its log keeps them, oldest event first.
async fn logged(app: &TestApp, webhook: i64) -> Vec<Value> {
    let mut log = app.delivery_log(webhook).await;
    log.sort_by(|a, b| a["eventId"].as_str().cmp(&b["eventId"].as_str()));
    let mut payloads = Vec::new();
    for d in log {
        let (status, detail) = app
            .get(&format!("/api/v1/deliveries/{}", d["id"].as_str().unwrap()))
            .await;
        assert_eq!(status, 200, "{detail}");
        payloads.push(detail);
    }
    payloads
}

fn acks(received: &[Received]) -> Vec<i64> {
    received
        .iter()
        .map(|r| r.json()["ack"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn acks_reach_the_config_that_last_used_the_ticket_with_its_auth_token() {
    let app = spawn_app().await;
    let (acks_a, state_a, acks_b) = (
        TestReceiver::start().await,
        TestReceiver::start().await,
        TestReceiver::start().await,
    );
    let everything = TestReceiver::start().await;
    let connection = app.sandbox_connection("Comercial").await;
    let a = config(
        &app,
        connection,
        json!({"name": "n8n", "urlMessageStatus": acks_a.url(),
               "urlServiceStatus": state_a.url(), "authToken": AUTH}),
    )
    .await;
    assert_eq!(a["urlMessageStatus"], acks_a.url().as_str(), "{a}");
    assert_eq!(a["urlServiceStatus"], state_a.url().as_str());
    assert_eq!(a["hasAuthToken"], true);
    assert!(
        !a.to_string().contains(AUTH),
        "the authToken is never shown: {a}"
    );
    let secret = a["hookSecrets"]["urlMessageStatus"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(secret.starts_with("whsec_"), "{a}");
    assert!(a["hookSecrets"]["urlServiceStatus"].is_string(), "{a}");
    let a_hook = a["messageStatusWebhookId"].as_i64().unwrap();
    let b = config(
        &app,
        connection,
        json!({"name": "crm", "urlMessageStatus": acks_b.url()}),
    )
    .await;
    let b_hook = b["messageStatusWebhookId"].as_i64().unwrap();
    let (plain, _) = app
        .webhook(
            &everything.url(),
            &["message.created", "message.updated", "ticket.created"],
        )
        .await;

    // A's send: ack 1 as the channel takes it, then 2 and 3 from the contact's phone.
    external_send(
        &app,
        &a,
        json!({"number": "5511987650001", "body": "Seu pedido saiu", "externalKey": "PEDIDO-1"}),
    )
    .await;
    let wamid = sent_message_id(&app, connection, "Seu pedido saiu").await;
    report(&app, connection, &wamid, "delivered").await;
    report(&app, connection, &wamid, "read").await;
    report(&app, connection, &wamid, "delivered").await; // late: changes nothing
    let got = acks_a.wait_for(3).await;
    assert_eq!(acks(&got), [1, 2, 3], "in the order they happened");
    for (r, ack) in got.iter().zip([1, 2, 3]) {
        assert_eq!(
            r.json(),
            json!({"ack": ack, "messageId": wamid, "externalKey": "PEDIDO-1",
                   "type": "hookMessageStatus"})
        );
        assert_eq!(r.header("authorization"), AUTH, "the raw authToken");
        assert_eq!(r.header("x-n8n-api-key"), "");
        assert_eq!(r.header("x-zaphook-event"), "hookMessageStatus");
        verify(&secret, r).expect("signed like every webhook");
    }
    // The delivery log shows exactly what was sent.
    let log = logged(&app, a_hook).await;
    assert_eq!(log.len(), 3);
    for (detail, r) in log.iter().zip(&got) {
        assert_eq!(detail["payload"], r.json());
        assert_eq!(detail["eventType"], "hookMessageStatus");
        assert_eq!(detail["eventId"], r.header("webhook-id"));
    }

    // A message with no API config behind its ticket: no ack anywhere.
    app.ok(
        "/api/v1/messages",
        json!({"connectionId": connection, "number": "5511987650002", "body": "Oi"}),
        202,
    )
    .await;
    // B's ticket: B hears its acks, A nothing more.
    external_send(
        &app,
        &b,
        json!({"number": "5511987650003", "body": "Boleto", "externalKey": "CRM-9"}),
    )
    .await;
    let from_b = acks_b.wait_for(1).await;
    let b_wamid = from_b[0].json()["messageId"].as_str().unwrap().to_string();
    report(&app, connection, &b_wamid, "played").await;
    let from_b = acks_b.wait_for(2).await;
    assert_eq!(acks(&from_b), [1, 4]);
    assert_eq!(from_b[1].json()["externalKey"], "CRM-9");
    assert_eq!(from_b[1].header("authorization"), "", "B has no authToken");
    // The plain message's status reaches the plain endpoint only.
    let plain_wamid = sent_message_id(&app, connection, "Oi").await;
    report(&app, connection, &plain_wamid, "read").await;
    assert_eq!(logged(&app, a_hook).await.len(), 3);
    assert_eq!(logged(&app, b_hook).await.len(), 2);
    // WHAZING endpoints never get the hooks' events.
    let types: Vec<String> = app
        .delivery_log(plain)
        .await
        .iter()
        .map(|d| d["eventType"].as_str().unwrap().to_string())
        .collect();
    assert!(types.iter().all(|t| !t.starts_with("hook")), "{types:?}");
    assert!(types.contains(&"message.updated".to_string()));

    // When A sends to B's ticket, A hears that ticket's acks from then on.
    external_send(
        &app,
        &a,
        json!({"number": "5511987650003", "body": "Mais um", "externalKey": "PEDIDO-2"}),
    )
    .await;
    let got = acks_a.wait_for(4).await;
    assert_eq!(got[3].json()["externalKey"], "PEDIDO-2");
    assert_eq!(logged(&app, b_hook).await.len(), 2);
    // A sandbox connection never changes state: nothing for urlServiceStatus.
    assert!(state_a.all().is_empty());
}

/// The channel id of the message whose body is `body`, if the channel took it yet.
async fn channel_id_of(app: &TestApp, connection: i64, body: &str) -> Option<String> {
    let (_, tickets) = app
        .get(&format!("/api/v1/tickets?connectionId={connection}"))
        .await;
    for ticket in tickets["items"].as_array().into_iter().flatten() {
        let (_, messages) = app
            .get(&format!("/api/v1/tickets/{}/messages", ticket["id"]))
            .await;
        for m in messages["items"].as_array().into_iter().flatten() {
            if m["body"] == body
                && let Some(id) = m["messageId"].as_str()
            {
                return Some(id.to_string());
            }
        }
    }
    None
}

/// The channel id of the message whose body is `body`, once the channel took it.
async fn sent_message_id(app: &TestApp, connection: i64, body: &str) -> String {
    let deadline = tokio::time::Instant::now() + common::DEADLINE;
    loop {
        if let Some(id) = channel_id_of(app, connection, body).await {
            return id;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the channel never took {body:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_cloud_connections_state_reaches_url_service_status() {
    let cloud = Cloud::start().await;
    let app = &cloud.app;
    let (states, acks_hook) = (TestReceiver::start().await, TestReceiver::start().await);
    let a = config(
        app,
        cloud.connection,
        json!({"name": "n8n", "urlServiceStatus": states.url(),
               "urlMessageStatus": acks_hook.url(), "authToken": AUTH}),
    )
    .await;
    let secret = a["hookSecrets"]["urlServiceStatus"]
        .as_str()
        .unwrap()
        .to_string();
    let status_of = |r: &Received| r.json()["status"].as_str().unwrap().to_string();

    // Meta refuses the token once (code 190): the connection is disconnected.
    cloud.graph.fail_next_sends(&[(
        400,
        meta_error(
            190,
            "Error validating access token: Session has expired",
            None,
        ),
    )]);
    external_send(app, &a, json!({"number": "5511987650001", "body": "um"})).await;
    let got = states.wait_for(1).await;
    let body = got[0].json();
    assert_eq!(body["name"], "Cloud");
    assert_eq!(body["number"], PHONE_NUMBER_ID);
    assert_eq!(body["status"], "DISCONNECTED");
    assert_eq!(body["type"], "hookSessionStatus");
    assert_eq!(body["qrcode"], Value::Null);
    assert!(body["timestamp"].as_i64().unwrap() > 1_700_000_000_000);
    assert_eq!(got[0].header("authorization"), AUTH);
    verify(&secret, &got[0]).expect("signed");
    // The refused message's ack: -1, with no channel id.
    let failed = acks_hook.wait_for(1).await;
    assert_eq!(
        failed[0].json(),
        json!({"ack": -1, "messageId": "", "externalKey": null, "type": "hookMessageStatus"})
    );

    // The next send succeeds: connected again, and the message's ack is 1.
    external_send(app, &a, json!({"number": "5511987650001", "body": "dois"})).await;
    let got = states.wait_for(2).await;
    assert_eq!(status_of(&got[1]), "CONNECTED");
    assert_eq!(acks(&acks_hook.wait_for(2).await), [-1, 1]);

    // A token Meta no longer takes: disconnected once, however many sends it refuses.
    cloud.graph.set_token("rotated-graph-token-4711");
    external_send(app, &a, json!({"number": "5511987650001", "body": "três"})).await;
    external_send(
        app,
        &a,
        json!({"number": "5511987650001", "body": "quatro"}),
    )
    .await;
    assert_eq!(acks(&acks_hook.wait_for(4).await), [-1, 1, -1, -1]);
    let answer = app
        .client
        .get(app.url(&format!(
            "/v1/api/external/{}/statuschannel",
            a["apiId"].as_str().unwrap()
        )))
        .bearer_auth(a["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let channel: Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
    assert_eq!(channel["status"], "DISCONNECTED", "/statuschannel agrees");
    // The operator puts in the new token: connected.
    let (status, _) = app
        .patch(
            &format!("/api/v1/connections/{}", cloud.connection),
            json!({"cloud": {"accessToken": "rotated-graph-token-4711"}}),
        )
        .await;
    assert_eq!(status, 200);
    let got = states.wait_for(4).await;
    let seen: Vec<String> = got.iter().map(status_of).collect();
    assert_eq!(
        seen,
        ["DISCONNECTED", "CONNECTED", "DISCONNECTED", "CONNECTED"],
        "each change once, in order"
    );
    let hook = a["serviceStatusWebhookId"].as_i64().unwrap();
    assert_eq!(logged(app, hook).await.len(), 4, "no more than the changes");
}

#[tokio::test]
async fn hook_deliveries_are_retried_like_any_webhook() {
    let app = spawn_app().await;
    let receiver = TestReceiver::start().await;
    receiver.answer(&[500]);
    let connection = app.sandbox_connection("Comercial").await;
    let a = config(
        &app,
        connection,
        json!({"name": "n8n", "urlMessageStatus": receiver.url(), "authToken": AUTH}),
    )
    .await;
    external_send(
        &app,
        &a,
        json!({"number": "5511987650001", "body": "Oi", "externalKey": "K"}),
    )
    .await;
    let got = receiver.wait_for(2).await;
    assert_eq!((got[0].status, got[1].status), (500, 200));
    assert_eq!(got[0].body, got[1].body);
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    assert_eq!(got[1].header("authorization"), AUTH);
    let hook = a["messageStatusWebhookId"].as_i64().unwrap();
    let log = app.settled_log(hook).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["status"], "delivered");
    assert_eq!(log[0]["attempts"], 2);
}

/// Problem fields of a 422.
fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["field"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn hooks_are_validated_changed_and_removed_with_their_config() {
    let app = spawn_app().await;
    let receiver = TestReceiver::start().await;
    let connection = app.sandbox_connection("Comercial").await;
    let path = format!("/api/v1/connections/{connection}/api-configs");

    // Bad input: 422 naming each field, and nothing made.
    let (status, problem) = app
        .post(
            &path,
            json!({"name": "x", "urlMessageStatus": "ftp://example.com/a",
                   "urlServiceStatus": "not a url", "authToken": "two\nlines"}),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(
        fields(&problem),
        ["urlMessageStatus", "urlServiceStatus", "authToken"]
    );
    let (status, problem) = app
        .post(
            &path,
            json!({"name": "x", "urlDelivery": "https://example.com"}),
        )
        .await;
    assert!(status.is_client_error(), "{problem}");
    let (_, listed) = app.get(&path).await;
    assert_eq!(listed, json!([]));

    // No hooks: nothing shown, no endpoint.
    let plain = config(
        &app,
        connection,
        json!({"name": "n8n", "urlMessageStatus": ""}),
    )
    .await;
    assert_eq!(plain["urlMessageStatus"], Value::Null, "{plain}");
    assert_eq!(plain["messageStatusWebhookId"], Value::Null);
    assert_eq!(plain["hasAuthToken"], false);
    assert!(plain.get("hookSecrets").is_none(), "{plain}");
    let api_id = plain["apiId"].as_str().unwrap().to_string();
    let config_path = format!("/api/v1/api-configs/{api_id}");

    // A hook added later gets an endpoint and its secret; the list shows it without secrets.
    let (status, patched) = app
        .patch(
            &config_path,
            json!({"urlMessageStatus": receiver.url(), "authToken": AUTH}),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    let hook = patched["messageStatusWebhookId"].as_i64().unwrap();
    assert!(
        patched["hookSecrets"]["urlMessageStatus"].is_string(),
        "{patched}"
    );
    assert!(patched["hookSecrets"].get("urlServiceStatus").is_none());
    let (_, listed) = app.get(&path).await;
    assert_eq!(listed[0]["urlMessageStatus"], receiver.url().as_str());
    assert_eq!(listed[0]["hasAuthToken"], true);
    for secret in ["hookSecrets", "token", "authToken"] {
        assert!(listed[0].get(secret).is_none(), "{listed}");
    }
    assert!(!listed.to_string().contains(AUTH));

    // The endpoint is listed as the config's, tested and logged there, but changed only
    // through its config.
    let (_, endpoint) = app.get(&format!("/api/v1/webhooks/{hook}")).await;
    assert_eq!(endpoint["format"], "hook_message_status", "{endpoint}");
    assert_eq!(endpoint["apiConfigId"], api_id.as_str());
    assert_eq!(endpoint["events"], json!(["hookMessageStatus"]));
    assert_eq!(endpoint["connectionId"], connection);
    assert_eq!(endpoint["hasToken"], true);
    let (status, problem) = app
        .patch(
            &format!("/api/v1/webhooks/{hook}"),
            json!({"url": "https://example.com/x"}),
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains(&api_id));
    let delete = |path: String| {
        app.client
            .delete(app.url(&path))
            .bearer_auth(&app.token)
            .send()
    };
    assert_eq!(
        delete(format!("/api/v1/webhooks/{hook}"))
            .await
            .unwrap()
            .status(),
        409
    );
    let (status, tested) = app
        .post(&format!("/api/v1/webhooks/{hook}/test"), json!({}))
        .await;
    assert_eq!((status.as_u16(), &tested["delivered"]), (200, &json!(true)));
    assert_eq!(receiver.wait_for(1).await[0].header("authorization"), AUTH);
    let (status, problem) = app
        .post(
            "/api/v1/webhooks",
            json!({"url": receiver.url(), "events": ["hookMessageStatus"]}),
        )
        .await;
    assert_eq!(status, 422, "not subscribed to: {problem}");

    // Changes: a bad URL is refused; the token changes; "" removes the hook and its endpoint.
    let (status, problem) = app
        .patch(
            &config_path,
            json!({"urlMessageStatus": "javascript:alert(1)"}),
        )
        .await;
    assert_eq!(
        (status.as_u16(), fields(&problem)),
        (422, vec!["urlMessageStatus".into()])
    );
    let (_, patched) = app.patch(&config_path, json!({"authToken": null})).await;
    assert_eq!(patched["hasAuthToken"], false);
    let (_, endpoint) = app.get(&format!("/api/v1/webhooks/{hook}")).await;
    assert_eq!(
        endpoint["hasToken"], false,
        "the hook follows the config's token"
    );
    let (_, patched) = app
        .patch(
            &config_path,
            json!({"urlMessageStatus": "", "name": "renamed"}),
        )
        .await;
    assert_eq!(patched["urlMessageStatus"], Value::Null, "{patched}");
    assert_eq!(patched["name"], "renamed");
    let (status, _) = app.get(&format!("/api/v1/webhooks/{hook}")).await;
    assert_eq!(status, 404);

    // Another company sees none of it; a revoked config takes its hooks with it.
    let (_, other_token) = zaphook::app::create_company(&app.store, "Other")
        .await
        .unwrap();
    let answer = app
        .client
        .patch(app.url(&config_path))
        .bearer_auth(&other_token)
        .header("content-type", "application/json")
        .body(r#"{"name":"intruder"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    let (_, patched) = app
        .patch(&config_path, json!({"urlServiceStatus": receiver.url()}))
        .await;
    let state_hook = patched["serviceStatusWebhookId"].as_i64().unwrap();
    assert_eq!(delete(config_path.clone()).await.unwrap().status(), 204);
    let (status, _) = app.get(&format!("/api/v1/webhooks/{state_hook}")).await;
    assert_eq!(status, 404);
    let (status, _) = app.patch(&config_path, json!({"name": "again"})).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn hook_urls_follow_the_target_rules_of_webhooks() {
    let app = spawn_app_with(|s| s.http.targets.allow_private = false).await;
    let connection = app.sandbox_connection("Comercial").await;
    let (status, problem) = app
        .post(
            &format!("/api/v1/connections/{connection}/api-configs"),
            json!({"name": "n8n", "urlServiceStatus": "http://127.0.0.1:9/hook"}),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(fields(&problem), ["urlServiceStatus"]);
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("private"),
        "{problem}"
    );
}
