//! The OpenAPI document is a snapshot: a change to the API shows up as a change to
//! `tests/snapshots/openapi.json` (regenerate with `UPDATE_SNAPSHOTS=1 cargo test --test openapi`).
//! Then every documented route is fed junk: nothing a request carries may cause a 5xx.

mod common;

use common::spawn_app;
use reqwest::Method;

#[test]
fn the_openapi_document_matches_its_snapshot() {
    let doc = serde_json::to_string_pretty(&zaphook::api::openapi()).unwrap() + "\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots/openapi.json");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(path, &doc).unwrap();
    }
    let stored = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        stored == doc,
        "the API changed: review it and run `UPDATE_SNAPSHOTS=1 cargo test --test openapi`"
    );
}

#[tokio::test]
async fn junk_sent_to_every_route_never_causes_a_server_error() {
    let app = spawn_app().await;
    let conn = app.sandbox_connection("A").await;
    app.inbound(conn, "5511900000001", "hello").await;
    app.webhook("http://127.0.0.1:9/x", &["message.created"])
        .await;

    let doc = serde_json::to_value(zaphook::api::openapi()).unwrap();
    let long = "9".repeat(500);
    let ids = [
        "1",
        "0",
        "-1",
        "abc",
        "msg_nothing",
        "99999999999999999999",
        "%00",
        &long,
    ];
    let nested = "[".repeat(10_000);
    let bodies = [
        "",
        "null",
        "{}",
        "[]",
        "\"x\"",
        "{\"a\":",
        "{\"name\":null}",
        &nested,
        "{\"url\":\"http://[::1\"}",
        "{\"from\":\"\\ud800\",\"body\":\"x\"}",
    ];
    let mut requests = 0;
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for method in methods.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            for id in ids {
                let path = path.replace("{id}", id);
                for body in bodies {
                    let mut req = app
                        .client
                        .request(method.clone(), app.url(&path))
                        .bearer_auth(&app.token);
                    if !body.is_empty() {
                        req = req
                            .header("content-type", "application/json")
                            .body(body.to_string());
                    }
                    let status = req.send().await.unwrap().status();
                    requests += 1;
                    assert!(
                        status.as_u16() < 500,
                        "{method} {path} with {:.40} answered {status}",
                        body
                    );
                }
            }
        }
    }
    assert!(requests > 1000);
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}
