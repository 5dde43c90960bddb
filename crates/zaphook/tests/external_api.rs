//! The WHAZING external API (`/v1/api/external/{apiId}`), called as an n8n HTTP Request node
//! would, and the API configs that are its keys.

mod common;

use common::{TestApp, spawn_app};
use serde_json::json;

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
