//! Bad input gets a clear problem+json 4xx and writes nothing: missing or wrong tokens,
//! another company's ids, malformed JSON, wrong types, unknown enum values, oversize bodies,
//! webhook URLs that are not http(s).

mod common;

use common::{TestApp, spawn_app};
use reqwest::Method;
use serde_json::{Value, json};

async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Value, String) {
    let mut req = app.client.request(method, app.url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if !body.is_empty() {
        req = req
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        content_type,
    )
}

fn assert_problem(status: u16, expected: u16, body: &Value, content_type: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(body["status"], expected);
    assert!(body["title"].is_string() && body["type"].is_string());
    assert!(!body["detail"].as_str().unwrap_or("").is_empty(), "{body}");
}

async fn counts(app: &TestApp) -> (usize, usize, usize, usize) {
    let len = |v: Value| v.as_array().map(|a| a.len()).unwrap_or(usize::MAX);
    let (_, c) = app.get("/api/v1/connections").await;
    let (_, w) = app.get("/api/v1/webhooks").await;
    let (_, k) = app.get("/api/v1/contacts").await;
    let (_, t) = app.get("/api/v1/tickets").await;
    (
        len(c),
        len(w),
        len(k),
        t["items"].as_array().map(|a| a.len()).unwrap_or(usize::MAX),
    )
}

#[tokio::test]
async fn requests_without_a_valid_token_are_refused() {
    let app = spawn_app().await;
    for token in [None, Some("wrong-token"), Some("")] {
        let (s, body, ct) = raw(&app, Method::GET, "/api/v1/connections", token, "").await;
        assert_problem(s, 401, &body, &ct);
        let (s, body, ct) = raw(
            &app,
            Method::POST,
            "/api/v1/connections",
            token,
            r#"{"name":"x","channel":"sandbox"}"#,
        )
        .await;
        assert_problem(s, 401, &body, &ct);
    }
    assert_eq!(counts(&app).await, (0, 0, 0, 0));
    // Health endpoints are open.
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn another_companys_ids_are_not_found() {
    let app = spawn_app().await;
    let conn = app.sandbox_connection("Mine").await;
    let (hook, _) = app
        .webhook("http://127.0.0.1:9/x", &["message.created"])
        .await;
    let accepted = app.inbound(conn, "5511900000001", "hello").await;
    let (_, tickets) = app.get("/api/v1/tickets").await;
    let ticket = tickets["items"][0]["id"].as_i64().unwrap();
    let message = accepted["id"].as_str().unwrap().to_string();

    let (_, other_token) = zaphook::app::create_company(&app.store, "Other")
        .await
        .unwrap();
    let other = |method: Method, path: String, body: &'static str| {
        let token = other_token.clone();
        let app = &app;
        async move { raw(app, method, &path, Some(&token), body).await }
    };
    for (method, path, body) in [
        (Method::GET, format!("/api/v1/connections/{conn}"), ""),
        (Method::GET, format!("/api/v1/tickets/{ticket}"), ""),
        (
            Method::GET,
            format!("/api/v1/tickets/{ticket}/messages"),
            "",
        ),
        (
            Method::PATCH,
            format!("/api/v1/tickets/{ticket}"),
            r#"{"status":"closed"}"#,
        ),
        (Method::GET, format!("/api/v1/messages/{message}"), ""),
        (
            Method::GET,
            "/api/v1/messages/sandbox-unknown".to_string(),
            "",
        ),
        (Method::DELETE, format!("/api/v1/messages/{message}"), ""),
        (Method::GET, format!("/api/v1/webhooks/{hook}"), ""),
        (
            Method::PATCH,
            format!("/api/v1/webhooks/{hook}"),
            r#"{"enabled":false}"#,
        ),
        (Method::DELETE, format!("/api/v1/webhooks/{hook}"), ""),
        (
            Method::POST,
            format!("/api/v1/webhooks/{hook}/rotate-secret"),
            "{}",
        ),
        (
            Method::GET,
            format!("/api/v1/webhooks/{hook}/deliveries"),
            "",
        ),
        (
            Method::POST,
            format!("/api/v1/connections/{conn}/sandbox/inbound"),
            r#"{"from":"5511900000009","body":"intruder"}"#,
        ),
    ] {
        let (s, body, ct) = other(method.clone(), path.clone(), body).await;
        assert_problem(s, 404, &body, &ct);
    }
    // The other company sees none of it in lists, and sending on our ticket fails.
    let (s, body, _) = other(
        Method::POST,
        "/api/v1/messages".into(),
        r#"{"ticketId":1,"body":"x"}"#,
    )
    .await;
    assert_eq!(s, 404, "{body}");
    let (_, list, _) = other(Method::GET, "/api/v1/tickets".into(), "").await;
    assert_eq!(list["items"], json!([]));
    // Ours is untouched.
    let (_, t) = app.get(&format!("/api/v1/tickets/{ticket}")).await;
    assert_eq!(t["status"], "pending");
    let (_, w) = app.get(&format!("/api/v1/webhooks/{hook}")).await;
    assert_eq!(w["enabled"], true);
    assert_eq!(counts(&app).await, (1, 1, 1, 1));
}

#[tokio::test]
async fn malformed_bodies_get_clear_errors_and_write_nothing() {
    let app = spawn_app().await;
    let conn = app.sandbox_connection("A").await;
    let token = app.token.clone();
    let inbound = format!("/api/v1/connections/{conn}/sandbox/inbound");
    let huge = format!(
        r#"{{"from":"5511900000001","body":"{}"}}"#,
        "x".repeat(300 * 1024)
    );
    let cases: Vec<(&str, &str, u16)> = vec![
        ("/api/v1/connections", "{not json", 400),
        (
            "/api/v1/connections",
            r#"{"name":"A","channel":"telegram"}"#,
            422,
        ),
        (
            "/api/v1/connections",
            r#"{"name":7,"channel":"sandbox"}"#,
            422,
        ),
        (
            "/api/v1/connections",
            r#"{"name":"","channel":"sandbox"}"#,
            422,
        ),
        (
            "/api/v1/connections",
            r#"{"name":"A","channel":"cloud"}"#,
            422,
        ),
        (
            "/api/v1/connections",
            r#"{"name":"A","channel":"sandbox","extra":1}"#,
            422,
        ),
        ("/api/v1/connections", "[]", 422),
        ("/api/v1/webhooks", r#"{"url":"ftp://example.com/x"}"#, 422),
        ("/api/v1/webhooks", r#"{"url":"not a url"}"#, 422),
        ("/api/v1/webhooks", r#"{"url":"javascript:alert(1)"}"#, 422),
        ("/api/v1/webhooks", r#"{}"#, 422),
        (
            "/api/v1/webhooks",
            r#"{"url":"https://example.com","events":["message.exploded"]}"#,
            422,
        ),
        (
            "/api/v1/webhooks",
            r#"{"url":"https://example.com","events":[]}"#,
            422,
        ),
        (
            "/api/v1/webhooks",
            r#"{"url":"https://example.com","secret":"hunter2"}"#,
            422,
        ),
        (
            "/api/v1/webhooks",
            r#"{"url":"https://example.com","ordering":"random"}"#,
            422,
        ),
        (
            "/api/v1/webhooks",
            r#"{"url":"https://example.com","connectionId":999}"#,
            422,
        ),
        (
            "/api/v1/webhooks",
            r#"{"url":"https://example.com","rateLimit":0}"#,
            422,
        ),
        (&inbound, r#"{"from":"abc","body":"x"}"#, 422),
        (&inbound, r#"{"from":"5511900000001","body":""}"#, 422),
        (
            &inbound,
            r#"{"from":"5511900000001","body":"a\u0000b"}"#,
            422,
        ),
        (
            "/api/v1/connections",
            r#"{"name":"A\u0000","channel":"sandbox"}"#,
            422,
        ),
        (
            &inbound,
            r#"{"from":"5511900000001","body":"x","mediaType":"gif"}"#,
            422,
        ),
        (
            &inbound,
            r#"{"from":"5511900000001","body":"x","timestamp":"yesterday"}"#,
            422,
        ),
        (
            &inbound,
            r#"{"from":"5511900000001","mediaType":"image"}"#,
            422,
        ),
        (&inbound, &huge, 413),
        ("/api/v1/tickets", r#"{"connectionId":1}"#, 422),
        (
            "/api/v1/tickets",
            r#"{"connectionId":999,"number":"5511900000001"}"#,
            422,
        ),
        (
            "/api/v1/tickets",
            r#"{"connectionId":1,"number":"5511900000001","status":"closed"}"#,
            422,
        ),
        (
            "/api/v1/tickets",
            r#"{"connectionId":1,"number":"5511900000001","queueId":77}"#,
            422,
        ),
        (
            "/api/v1/messages",
            r#"{"connectionId":1,"number":"5511900000001"}"#,
            422,
        ),
        (
            "/api/v1/messages",
            r#"{"connectionId":1,"number":"5511900000001","body":"x","sendType":"spam"}"#,
            422,
        ),
        (
            "/api/v1/messages",
            r#"{"number":"5511900000001","body":"x"}"#,
            422,
        ),
        (
            "/api/v1/messages",
            r#"{"connectionId":1,"number":"5511900000001","body":"x","userId":5}"#,
            422,
        ),
        (
            "/api/v1/users",
            r#"{"name":"Ana","email":"not-an-email"}"#,
            422,
        ),
        ("/api/v1/contacts", r#"{"number":"12"}"#, 422),
    ];
    for (path, body, expected) in cases {
        let (s, problem, ct) = raw(&app, Method::POST, path, Some(&token), body).await;
        assert_problem(s, expected, &problem, &ct);
        if expected == 422 && problem["type"].as_str().unwrap().ends_with("validation") {
            assert!(problem["errors"][0]["field"].is_string(), "{problem}");
        }
    }
    // Missing content type, unknown route, non-numeric id, bad query.
    let resp = app
        .client
        .post(app.url("/api/v1/queues"))
        .bearer_auth(&token)
        .body(r#"{"name":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let (s, p, ct) = raw(&app, Method::GET, "/api/v1/nothing-here", Some(&token), "").await;
    assert_problem(s, 404, &p, &ct);
    let (s, p, ct) = raw(&app, Method::GET, "/api/v1/tickets/abc", Some(&token), "").await;
    assert_problem(s, 404, &p, &ct);
    let (s, p, ct) = raw(
        &app,
        Method::GET,
        "/api/v1/tickets?limit=0",
        Some(&token),
        "",
    )
    .await;
    assert_problem(s, 422, &p, &ct);
    let (s, p, ct) = raw(
        &app,
        Method::GET,
        "/api/v1/tickets?status=lost",
        Some(&token),
        "",
    )
    .await;
    assert_problem(s, 400, &p, &ct);
    let (s, p, ct) = raw(
        &app,
        Method::GET,
        "/api/v1/tickets/99999999999999999999999",
        Some(&token),
        "",
    )
    .await;
    assert_problem(s, 404, &p, &ct);

    assert_eq!(counts(&app).await, (1, 0, 0, 0));
}

#[tokio::test]
async fn private_targets_are_refused_unless_allowed() {
    let app = common::spawn_app_with(|s| {
        s.http.targets.allow_private = false;
    })
    .await;
    for url in [
        "http://127.0.0.1:8080/x",
        "http://10.0.0.5/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x",
    ] {
        let (s, p) = app.post("/api/v1/webhooks", json!({"url": url})).await;
        assert_eq!(s, 422, "{url}: {p}");
    }
    // A name that resolves to loopback is accepted, but refused when it is resolved.
    let (hook, _) = app
        .webhook("http://localhost:9/x", &["message.created"])
        .await;
    let (s, test) = app
        .post(&format!("/api/v1/webhooks/{hook}/test"), json!({}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(test["delivered"], false);
    assert!(
        test["error"].as_str().unwrap().contains("refused"),
        "{test}"
    );
}

#[tokio::test]
async fn conflicting_changes_are_refused() {
    let app = spawn_app().await;
    let conn = app.sandbox_connection("A").await;
    let accepted = app.inbound(conn, "5511900000001", "hello").await;
    let id = accepted["id"].as_str().unwrap();
    // A received message cannot be edited or deleted by an agent.
    let (s, _) = app
        .patch(
            &format!("/api/v1/messages/{id}"),
            json!({"body": "changed"}),
        )
        .await;
    assert_eq!(s, 409);
    // The same channel id on two connections is ambiguous.
    let other = app.sandbox_connection("B").await;
    for c in [conn, other] {
        app.ok(
            &format!("/api/v1/connections/{c}/sandbox/inbound"),
            json!({"from": "5511900000002", "body": "x", "id": "wamid.SAME"}),
            202,
        )
        .await;
    }
    let (s, p) = app.get("/api/v1/messages/wamid.SAME").await;
    assert_eq!(s, 409, "{p}");
    // Sandbox routes on a cloud connection.
    let cloud = app
        .ok(
            "/api/v1/connections",
            json!({"name": "C", "channel": "cloud", "cloud": {"phoneNumberId": "1",
                   "accessToken": "token-t0k3n", "appSecret": "secret-s3cr3t",
                   "verifyToken": "verify-v3r1fy"}}),
            201,
        )
        .await;
    let shown = cloud.to_string();
    for secret in [
        "token-t0k3n",
        "secret-s3cr3t",
        "verify-v3r1fy",
        "appSecret",
        "accessToken",
    ] {
        assert!(!shown.contains(secret), "{shown}");
    }
    let (s, _) = app
        .post(
            &format!("/api/v1/connections/{}/sandbox/inbound", cloud["id"]),
            json!({"from": "5511900000001", "body": "x"}),
        )
        .await;
    assert_eq!(s, 409);
}
