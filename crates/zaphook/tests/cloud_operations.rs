//! Operating the Cloud API channel: a callback acknowledged right before a SIGKILL is still
//! delivered after the restart; connection secrets are sealed at rest, refused with another
//! key, and sealed when an older database kept them in clear.

mod common;

use std::collections::HashSet;

use common::cloud::{APP_SECRET, VERIFY_TOKEN, body, contact, sign, text};
use common::graph::PHONE_NUMBER_ID;
use common::{ServerProcess, TestReceiver, spawn_app_with, start, test_settings};
use serde_json::{Value, json};

const TOKEN: &str = "cloud-ops-token";

fn spawn_server(data_dir: &std::path::Path) -> ServerProcess {
    ServerProcess::start(
        data_dir,
        &[
            "--bootstrap-token",
            TOKEN,
            "--allow-private-targets",
            "--inbox-lease-ms",
            "1000",
            "--delivery-timeout",
            "1",
            "--delivery-lease",
            "2",
        ],
    )
}

#[tokio::test]
async fn callbacks_acknowledged_before_a_sigkill_are_delivered_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = TestReceiver::start().await;
    let server = spawn_server(dir.path());
    let client = reqwest::Client::new();
    let call = |base: &str, path: &str, body: Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let conn: Value = call(
        &server.base,
        "/api/v1/connections",
        json!({"name": "Cloud", "channel": "cloud", "cloud": {"phoneNumberId": PHONE_NUMBER_ID,
            "accessToken": "t", "appSecret": APP_SECRET, "verifyToken": VERIFY_TOKEN,
            "graphBaseUrl": "http://127.0.0.1:9"}}),
    )
    .await
    .unwrap()
    .text()
    .await
    .map(|t| serde_json::from_str(&t).unwrap())
    .unwrap();
    let conn = conn["id"].as_i64().unwrap();
    let hook = call(
        &server.base,
        "/api/v1/webhooks",
        json!({"url": receiver.url(), "events": ["message.created"]}),
    )
    .await
    .unwrap();
    assert_eq!(hook.status(), 201);

    // Bodies of three messages each, posted concurrently; the server dies right after the
    // last 200.
    let mut expected = HashSet::new();
    let mut posts = Vec::new();
    for b in 0..20 {
        let messages: Vec<Value> = (0..3)
            .map(|m| {
                let id = format!("wamid.kill.{b}.{m}");
                expected.insert(id.clone());
                text(&format!("55119000{b:05}"), &id, "hello")
            })
            .collect();
        let bytes = body(
            contact(&format!("55119000{b:05}"), "C"),
            Value::Array(messages),
            Value::Null,
        );
        let request = client
            .post(format!("{}/channels/cloud/{conn}", server.base))
            .header("x-hub-signature-256", sign(APP_SECRET, &bytes))
            .header("content-type", "application/json")
            .body(bytes)
            .send();
        posts.push(tokio::spawn(request));
    }
    for post in posts {
        assert_eq!(post.await.unwrap().unwrap().status(), 200);
    }
    server.kill();

    let server = spawn_server(dir.path());
    let all = receiver
        .wait_until(|all| {
            let got: HashSet<String> = all
                .iter()
                .map(|r| r.json()["messageId"].as_str().unwrap_or("").to_string())
                .collect();
            expected.iter().all(|id| got.contains(id))
        })
        .await;
    assert!(all.iter().all(|r| r.event() == "message.created"));
    drop(server);
}

/// Every file of the database, concatenated: what a copy of the data directory would hold.
fn database_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for name in ["zaphook.db", "zaphook.db-wal"] {
        if let Ok(b) = std::fs::read(dir.join(name)) {
            bytes.extend(b);
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn connection_secrets_are_sealed_and_open_only_with_their_key() {
    let (access, secret, verify) = (
        "EAAG-access-token-1234",
        "app-secret-5678",
        "verify-token-9012",
    );
    let mut app = spawn_app_with(|_| {}).await;
    let created = app
        .ok(
            "/api/v1/connections",
            json!({"name": "Cloud", "channel": "cloud", "cloud": {"phoneNumberId": "1",
                "accessToken": access, "appSecret": secret, "verifyToken": verify}}),
            201,
        )
        .await;
    let id = created["id"].as_i64().unwrap();
    let patched = app
        .patch(
            &format!("/api/v1/connections/{id}"),
            json!({"cloud": {"accessToken": "EAAG-rotated-token-3456"}}),
        )
        .await
        .1;
    assert_eq!(patched["cloud"]["phoneNumberId"], "1");
    assert!(!patched.to_string().contains("EAAG"), "{patched}");
    let dir = app.take_dir().unwrap();
    app.stop().await;

    let bytes = dir.contents();
    assert!(!bytes.is_empty());
    for plain in [access, "EAAG-rotated-token-3456", secret, verify] {
        assert!(
            !contains(&bytes, plain),
            "{plain} is in the database in clear"
        );
    }
    let key_file = dir.dir.path().join("secret.key");
    assert!(key_file.exists());

    // Another key: the server refuses to start, saying which key it needs.
    let mut settings = common::settings_on(&dir);
    settings.secret_key = Some("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=".into());
    let refused = zaphook::app::Application::build(settings).await;
    let error = refused
        .err()
        .expect("a server with another key does not start")
        .to_string();
    assert!(error.contains("secret key"), "{error}");

    // The key it was set up with opens them: the handshake answers with the verify token.
    let app = start(common::settings_on(&dir)).await;
    let got = app
        .client
        .get(app.url(&format!(
            "/channels/cloud/{id}?hub.mode=subscribe&hub.verify_token={verify}&hub.challenge=42"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn secrets_an_older_database_kept_in_clear_are_sealed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        // A database as versions before the Cloud API channel left it.
        let conn = rusqlite::Connection::open(dir.path().join("zaphook.db")).unwrap();
        conn.execute_batch(include_str!("../migrations/sqlite/0001_init.sql"))
            .unwrap();
        conn.execute_batch(include_str!(
            "../migrations/sqlite/0002_cheaper_delivery_indexes.sql"
        ))
        .unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);
             INSERT INTO schema_migrations VALUES (1, 0), (2, 0);
             INSERT INTO companies (id, name, created_at) VALUES (1, 'Default', 0);
             INSERT INTO connections (id, company_id, name, channel, cloud_config, created_at)
               VALUES (1, 1, 'Old cloud', 'cloud', '{\"phoneNumberId\":\"777\",\"accessToken\":\"old-access-token\",\"appSecret\":\"old-app-secret\",\"verifyToken\":\"old-verify-token\"}', 0),
                      (2, 1, 'Sandbox', 'sandbox', NULL, 0);
             INSERT INTO contacts (id, company_id, number, name, created_at) VALUES (1, 1, '5511900000001', 'A', 0);
             INSERT INTO tickets (id, company_id, connection_id, contact_id, status, protocol, created_at, updated_at)
               VALUES (1, 1, 2, 1, 'pending', '1', 0, 0);
             INSERT INTO messages (id, company_id, connection_id, ticket_id, contact_id, body, timestamp, status, from_me, media_type, created_at)
               VALUES ('msg_OLD', 1, 2, 1, 1, 'queued before the upgrade', 0, 'pending', 1, 'chat', 0);
             INSERT INTO send_jobs (message_id, company_id, connection_id, attempts, next_attempt_at)
               VALUES ('msg_OLD', 1, 2, 0, 0);",
        )
        .unwrap();
    }
    let app = start(test_settings(dir.path().to_path_buf())).await;
    let (_, connection) = app.get("/api/v1/connections/1").await;
    assert_eq!(connection["cloud"]["phoneNumberId"], "777");
    let got = app
        .client
        .get(app.url(
            "/channels/cloud/1?hub.mode=subscribe&hub.verify_token=old-verify-token&hub.challenge=7",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    // The send queued before the upgrade still goes out.
    common::eventually("the old send job to be sent", || async {
        app.get("/api/v1/messages/msg_OLD").await.1["status"] == "sended"
    })
    .await;
    app.stop().await;
    let bytes = database_bytes(dir.path());
    for plain in ["old-access-token", "old-app-secret", "old-verify-token"] {
        assert!(
            !contains(&bytes, plain),
            "{plain} is still in the database in clear"
        );
    }
}

#[tokio::test]
async fn a_callback_is_durable_before_its_200_whatever_happens_to_its_processing() {
    // No workers: nothing reads the inbox, as when the process dies right after the 200.
    let mut app = spawn_app_with(|s| {
        common::cloud::fast_channels(s);
        s.run_workers = false;
    })
    .await;
    let graph = common::graph::GraphStandIn::start().await;
    let conn = common::cloud::cloud_connection(&app, &graph).await;
    let receiver = TestReceiver::start().await;
    app.webhook(&receiver.url(), &["message.created"]).await;
    let bytes = body(
        contact("5511900000001", "A"),
        json!([text("5511900000001", "wamid.durable", "kept")]),
        Value::Null,
    );
    let status =
        common::cloud::post_callback(&app, conn, &bytes, Some(&sign(APP_SECRET, &bytes))).await;
    assert_eq!(status, 200);
    let dir = app.take_dir().unwrap();
    app.stop().await;
    assert!(receiver.all().is_empty());

    let mut settings = common::settings_on(&dir);
    common::cloud::fast_channels(&mut settings);
    let app = start(settings).await;
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].json()["messageId"], "wamid.durable");
    app.stop().await;
}
