//! A client of the WHAZING external API, as an n8n HTTP Request node calls it: a config's
//! base URL and token, JSON, form and GET requests, and answers that are always JSON.

use serde_json::{Value, json};

use super::TestApp;

/// What a queued send answers.
pub const QUEUED: &str = "Message add queue";

pub struct External {
    pub base: String,
    pub token: String,
    client: reqwest::Client,
}

impl External {
    /// A client of the config `api_id` with its `token`.
    pub fn of(app: &TestApp, api_id: &str, token: &str) -> Self {
        External {
            base: app.url(&format!("/v1/api/external/{api_id}")),
            token: token.to_string(),
            client: app.client.clone(),
        }
    }

    /// A new API config of `connection` and a client of it.
    pub async fn created(app: &TestApp, connection: i64) -> Self {
        let created = app
            .ok(
                &format!("/api/v1/connections/{connection}/api-configs"),
                json!({"name": "n8n"}),
                201,
            )
            .await;
        let (id, token) = (created["apiId"].as_str(), created["token"].as_str());
        External::of(app, id.unwrap(), token.unwrap())
    }

    /// The status and JSON body of a request (checked to be JSON, never problem+json).
    pub async fn answer(request: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = request.send().await.unwrap();
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        assert!(
            content_type.starts_with("application/json"),
            "{content_type}: never problem+json here"
        );
        (status, body)
    }

    /// A JSON POST.
    pub async fn json(&self, route: &str, body: Value) -> (u16, Value) {
        Self::answer(
            self.client
                .post(format!("{}{route}", self.base))
                .bearer_auth(&self.token)
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    /// A form POST (`application/x-www-form-urlencoded`).
    pub async fn form(&self, route: &str, fields: &[(&str, &str)]) -> (u16, Value) {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        Self::answer(
            self.client
                .post(format!("{}{route}", self.base))
                .bearer_auth(&self.token)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body),
        )
        .await
    }

    pub async fn get(&self, route: &str) -> (u16, Value) {
        Self::answer(
            self.client
                .get(format!("{}{route}", self.base))
                .bearer_auth(&self.token),
        )
        .await
    }

    /// A JSON send that must be queued.
    pub async fn queued(&self, route: &str, body: Value) {
        let (status, answer) = self.json(route, body.clone()).await;
        assert_eq!(
            (status, answer),
            (200, json!({ "message": QUEUED })),
            "{route} {body}"
        );
    }

    /// A send that must be refused with 400 and an error naming `words`.
    pub fn refused(&self, route: &str, body: &Value, got: (u16, Value), words: &str) {
        let (status, answer) = got;
        assert_eq!(status, 400, "{route} {body}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(words), "{route} {body}: {answer}");
    }
}
