//! The dashboard over real HTTP, as a browser without JavaScript uses it: signing in with an
//! API token, the session cookie's flags, form tokens, the company's own data only, both
//! languages, and signing out (or revoking the token) ending the session.

mod common;

use common::{TestApp, spawn_app, spawn_app_with};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::json;

/// A browser: no redirects followed, so each answer can be looked at.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The `Set-Cookie` line for `name`.
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_string)
    }

    /// The value a `Set-Cookie` gave `name`.
    fn cookie(&self, name: &str) -> String {
        let line = self.set_cookie(name).unwrap_or_default();
        let pair = line.split(';').next().unwrap_or_default();
        pair.split_once('=')
            .map(|(_, v)| v.to_string())
            .unwrap_or_default()
    }

    /// The value of the hidden `csrf` field of the page's first form that has one.
    fn csrf_field(&self) -> String {
        let marker = r#"name="csrf" value=""#;
        let start = self.body.find(marker).expect("a form token in the page") + marker.len();
        let end = self.body[start..].find('"').unwrap();
        self.body[start..start + end].to_string()
    }
}

async fn get(app: &TestApp, path: &str, cookies: &str, lang: &str) -> Answer {
    let mut request = browser().get(app.url(path)).header("accept-language", lang);
    if !cookies.is_empty() {
        request = request.header("cookie", cookies);
    }
    answer(request).await
}

async fn post(app: &TestApp, path: &str, cookies: &str, form: &[(&str, &str)]) -> Answer {
    let body = form
        .iter()
        .map(|(k, v)| format!("{k}={}", url_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut request = browser()
        .post(app.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if !cookies.is_empty() {
        request = request.header("cookie", cookies);
    }
    answer(request).await
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn answer(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.unwrap();
    Answer {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

/// Signs in with `token`; answers the session cookie (`name=value`) and the form token.
async fn sign_in(app: &TestApp, token: &str) -> (String, String) {
    let page = get(app, "/ui/signin", "", "en").await;
    assert_eq!(page.status, 200);
    let signin = format!("zaphook_signin={}", page.cookie("zaphook_signin"));
    let answer = post(
        app,
        "/ui/signin",
        &signin,
        &[("token", token), ("csrf", &page.csrf_field())],
    )
    .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(answer.location(), "/ui/connections");
    let session = format!("zaphook_session={}", answer.cookie("zaphook_session"));
    let connections = get(app, "/ui/connections", &session, "en").await;
    assert_eq!(connections.status, 200, "{}", connections.body);
    (session, connections.csrf_field())
}

#[tokio::test]
async fn a_token_signs_in_to_the_companys_own_connections_and_signing_out_ends_it() {
    let app = spawn_app().await;
    app.sandbox_connection("Comercial").await;
    app.ok(
        "/api/v1/connections",
        json!({"name": "Suporte", "channel": "cloud", "cloud": {
            "phoneNumberId": "1234567890", "accessToken": "EAAG-token", "appSecret": "s3cret",
            "verifyToken": "verify-me-please", "graphBaseUrl": "http://127.0.0.1:9"}}),
        201,
    )
    .await;
    let (_, other_token) = zaphook::app::create_company(&app.store, "Outra")
        .await
        .unwrap();
    let created = app
        .client
        .post(app.url("/api/v1/connections"))
        .bearer_auth(&other_token)
        .header("content-type", "application/json")
        .body(json!({"name": "Intrusa", "channel": "sandbox"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    // Not signed in: every page leads to the sign-in form.
    for path in ["/ui", "/ui/connections"] {
        let answer = get(&app, path, "", "en").await;
        assert_eq!(answer.status, 303, "{path}");
    }
    assert_eq!(
        get(&app, "/ui/connections", "zaphook_session=made-up", "en")
            .await
            .location(),
        "/ui/signin"
    );

    let page = get(&app, "/ui/signin", "", "en").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains(r#"<label for="token">API token</label>"#),
        "{}",
        page.body
    );
    let signin_cookie = page.set_cookie("zaphook_signin").unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(signin_cookie.contains(flag), "{signin_cookie}");
    }
    let signin = format!("zaphook_signin={}", page.cookie("zaphook_signin"));
    let csrf = page.csrf_field();
    assert_eq!(csrf, page.cookie("zaphook_signin"));

    // A wrong token, and a form posted without the form token or from another page.
    let wrong = post(
        &app,
        "/ui/signin",
        &signin,
        &[("token", "zh_wrong"), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("not valid"), "{}", wrong.body);
    assert!(wrong.set_cookie("zaphook_session").is_none());
    for (cookies, form_token) in [
        ("", csrf.as_str()),
        (signin.as_str(), ""),
        (signin.as_str(), "forged"),
    ] {
        let refused = post(
            &app,
            "/ui/signin",
            cookies,
            &[("token", &app.token), ("csrf", form_token)],
        )
        .await;
        assert_eq!(refused.status, 403, "{cookies} {form_token}");
        assert!(refused.set_cookie("zaphook_session").is_none());
    }

    let answer = post(
        &app,
        "/ui/signin",
        &signin,
        &[("token", &app.token), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(answer.status, 303);
    let session_cookie = answer.set_cookie("zaphook_session").unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=43200"] {
        assert!(session_cookie.contains(flag), "{session_cookie}");
    }
    assert!(
        !session_cookie.contains("Secure"),
        "plain http: {session_cookie}"
    );
    let session = format!("zaphook_session={}", answer.cookie("zaphook_session"));

    let page = get(&app, "/ui/connections", &session, "en").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Comercial") && page.body.contains("Suporte"));
    assert!(
        !page.body.contains("Intrusa"),
        "another company's connection"
    );
    assert!(
        page.body.contains("/channels/cloud/"),
        "the callback URL for Meta"
    );
    assert!(page.body.contains("verify-me-please"));
    assert!(!page.body.contains("EAAG-token") && !page.body.contains("s3cret"));
    assert_eq!(
        page.headers.get("cache-control").unwrap(),
        "no-store",
        "pages are not cached"
    );

    // Signing out needs the form token, and then the cookie opens nothing.
    let form_token = page.csrf_field();
    let refused = post(&app, "/ui/signout", &session, &[("csrf", "forged")]).await;
    assert_eq!(refused.status, 403);
    assert_eq!(
        get(&app, "/ui/connections", &session, "en").await.status,
        200
    );
    let out = post(&app, "/ui/signout", &session, &[("csrf", &form_token)]).await;
    assert_eq!((out.status.as_u16(), out.location()), (303, "/ui/signin"));
    assert!(
        out.set_cookie("zaphook_session")
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        get(&app, "/ui/connections", &session, "en")
            .await
            .location(),
        "/ui/signin"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_revoked_token_ends_its_sessions() {
    let app = spawn_app().await;
    let (_, token) = zaphook::app::create_company(&app.store, "Revogada")
        .await
        .unwrap();
    let (session, _) = sign_in(&app, &token).await;
    let prefix = zaphook::app::token_prefix(&token);
    let revoked = zaphook::store::write(&app.store, move |tx| tx.revoke_tokens(&prefix, 1))
        .await
        .unwrap();
    assert_eq!(revoked, 1);
    let answer = get(&app, "/ui/connections", &session, "en").await;
    assert_eq!(
        (answer.status.as_u16(), answer.location()),
        (303, "/ui/signin")
    );
    app.stop().await;
}

#[tokio::test]
async fn pages_speak_the_browsers_language_until_the_switch_says_otherwise() {
    let app = spawn_app().await;
    let page = get(&app, "/ui/signin", "", "pt-BR,pt;q=0.9,en;q=0.8").await;
    assert!(page.body.contains(r#"<html lang="pt-BR">"#));
    assert!(page.body.contains("Token de API"), "{}", page.body);
    let (session, _) = sign_in(&app, &app.token).await;
    let page = get(&app, "/ui/connections", &session, "pt-BR").await;
    assert!(page.body.contains("<h1>Conexões</h1>"), "{}", page.body);

    let switch = get(
        &app,
        "/ui/lang?to=en&back=/ui/connections",
        &session,
        "pt-BR",
    )
    .await;
    assert_eq!(
        (switch.status.as_u16(), switch.location()),
        (303, "/ui/connections")
    );
    let lang = format!("zaphook_lang={}", switch.cookie("zaphook_lang"));
    assert_eq!(lang, "zaphook_lang=en");
    let page = get(
        &app,
        "/ui/connections",
        &format!("{session}; {lang}"),
        "pt-BR",
    )
    .await;
    assert!(page.body.contains("<h1>Connections</h1>"), "{}", page.body);
    // The switch goes back only to the dashboard's own pages.
    let elsewhere = get(
        &app,
        "/ui/lang?to=pt-BR&back=https://evil.example/",
        "",
        "en",
    )
    .await;
    assert_eq!(elsewhere.location(), "/ui/connections");
    app.stop().await;
}

#[tokio::test]
async fn behind_https_the_session_cookie_is_secure() {
    let app = spawn_app_with(|s| s.public_url = Some("https://zaphook.example.com".into())).await;
    let page = get(&app, "/ui/signin", "", "en").await;
    assert!(
        page.set_cookie("zaphook_signin")
            .unwrap()
            .contains("; Secure")
    );
    let signin = format!("zaphook_signin={}", page.cookie("zaphook_signin"));
    let answer = post(
        &app,
        "/ui/signin",
        &signin,
        &[("token", &app.token), ("csrf", &page.csrf_field())],
    )
    .await;
    assert!(
        answer
            .set_cookie("zaphook_session")
            .unwrap()
            .contains("; Secure"),
        "{:?}",
        answer.set_cookie("zaphook_session")
    );
    app.stop().await;
}

#[tokio::test]
async fn endpoints_and_deliveries_are_the_companys_own_and_their_forms_need_the_form_token() {
    let app = spawn_app().await;
    let receiver = common::TestReceiver::start().await;
    let (webhook, _) = app.webhook(&receiver.url(), &["message.created"]).await;
    let connection = app.sandbox_connection("Comercial").await;
    app.inbound(connection, "5511955550010", "oi").await;
    let log = app.settled_log(webhook).await;
    let delivery = log[0]["id"].as_str().unwrap().to_string();

    let (session, csrf) = sign_in(&app, &app.token).await;
    let page = get(&app, &format!("/ui/deliveries/{delivery}"), &session, "en").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("delivered")
            && page.body.contains("&#34;messageBody&#34;: &#34;oi&#34;"),
        "{}",
        page.body
    );
    let page = get(&app, &format!("/ui/endpoints/{webhook}"), &session, "en").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(&delivery));

    // Forms without the session's form token change nothing.
    let retry = format!("/ui/deliveries/{delivery}/retry");
    assert_eq!(
        post(&app, &retry, &session, &[("csrf", "forged")])
            .await
            .status,
        403
    );
    let add = [
        ("csrf", ""),
        ("url", "http://127.0.0.1:9/x"),
        ("events", "message.created"),
    ];
    assert_eq!(
        post(&app, "/ui/endpoints", &session, &add).await.status,
        403
    );
    let (_, listed) = app.get("/api/v1/webhooks").await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    // With it, the retry is queued and the page shows the delivery again.
    let queued = post(&app, &retry, &session, &[("csrf", &csrf)]).await;
    assert_eq!(
        (queued.status.as_u16(), queued.location()),
        (303, retry.trim_end_matches("/retry"))
    );

    // Another company: the same ids are not found.
    let (_, other) = zaphook::app::create_company(&app.store, "Outra")
        .await
        .unwrap();
    let (other_session, other_csrf) = sign_in(&app, &other).await;
    for path in [
        format!("/ui/deliveries/{delivery}"),
        format!("/ui/endpoints/{webhook}"),
        "/ui/endpoints/x".into(),
    ] {
        let page = get(&app, &path, &other_session, "en").await;
        assert_eq!(page.status, 404, "{path}");
        assert!(!page.body.contains("oi"), "{path}");
    }
    let refused = post(&app, &retry, &other_session, &[("csrf", &other_csrf)]).await;
    assert_eq!(refused.status, 404);
    app.stop().await;
}

#[tokio::test]
async fn an_endpoint_is_disabled_enabled_tested_and_given_a_new_secret_from_its_page() {
    let app = spawn_app().await;
    let receiver = common::TestReceiver::start().await;
    let (webhook, secret) = app.webhook(&receiver.url(), &["message.created"]).await;
    let (session, csrf) = sign_in(&app, &app.token).await;
    let page = format!("/ui/endpoints/{webhook}");
    let act = |action: &str| format!("{page}/{action}");

    let off = post(&app, &act("disable"), &session, &[("csrf", &csrf)]).await;
    assert_eq!((off.status.as_u16(), off.location()), (303, page.as_str()));
    let (_, read) = app.get(&format!("/api/v1/webhooks/{webhook}")).await;
    assert_eq!(read["enabled"], false);
    assert!(
        get(&app, &page, &session, "en")
            .await
            .body
            .contains("/enable\"")
    );
    post(&app, &act("enable"), &session, &[("csrf", &csrf)]).await;
    let (_, read) = app.get(&format!("/api/v1/webhooks/{webhook}")).await;
    assert_eq!(read["enabled"], true);

    let tested = post(&app, &act("test"), &session, &[("csrf", &csrf)]).await;
    assert_eq!(tested.status, 200);
    assert!(
        tested.body.contains("The test event was delivered"),
        "{}",
        tested.body
    );
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].event(), "webhook.test");
    common::verify(&secret, &got[0]).unwrap();

    let rotated = post(&app, &act("rotate"), &session, &[("csrf", &csrf)]).await;
    assert_eq!(rotated.status, 200);
    let start = rotated.body.find("whsec_").expect("the new secret, once");
    let new_secret: String = rotated.body[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "_+/=".contains(*c))
        .collect();
    assert_ne!(new_secret, secret);
    post(&app, &act("test"), &session, &[("csrf", &csrf)]).await;
    let got = receiver.wait_for(2).await;
    common::verify(&new_secret, &got[1]).expect("signed with the new secret");
    assert!(
        !get(&app, &page, &session, "en")
            .await
            .body
            .contains(&new_secret),
        "shown once"
    );

    for (action, form_token) in [("disable", "forged"), ("explode", csrf.as_str())] {
        let refused = post(&app, &act(action), &session, &[("csrf", form_token)]).await;
        assert!(
            [403, 404].contains(&refused.status.as_u16()),
            "{action}: {}",
            refused.status
        );
    }
    let (_, read) = app.get(&format!("/api/v1/webhooks/{webhook}")).await;
    assert_eq!(read["enabled"], true);
    app.stop().await;
}

#[tokio::test]
async fn an_endpoints_page_counts_its_attempts_and_draws_them() {
    let app = spawn_app().await;
    let receiver = common::TestReceiver::start().await;
    let (webhook, _) = app.webhook(&receiver.url(), &["message.created"]).await;
    let connection = app.sandbox_connection("Comercial").await;
    let (session, _) = sign_in(&app, &app.token).await;
    let page = format!("/ui/endpoints/{webhook}");
    let empty = get(&app, &page, &session, "en").await;
    assert!(
        empty.body.contains("0 attempts") && !empty.body.contains("<rect"),
        "{}",
        empty.body
    );

    // Delivered at the third attempt; then one given up after all six.
    receiver.answer(&[500, 500]);
    app.inbound(connection, "5511955550011", "primeira").await;
    app.settled_log(webhook).await;
    receiver.answer(&[500; 6]);
    app.inbound(connection, "5511955550012", "segunda").await;
    let log = app.settled_log(webhook).await;
    assert_eq!(log.len(), 2);

    let shown = get(&app, &page, &session, "en").await;
    assert_eq!(shown.status, 200);
    let body = &shown.body;
    // The hour and the day: 9 attempts, 1 delivered.
    assert_eq!(body.matches("9 attempts").count(), 2, "{body}");
    assert_eq!(body.matches("11.1 %").count(), 2, "{body}");
    assert!(body.contains("≤ 50 ms"), "local answers are fast: {body}");
    assert!(body.contains("<dd id=\"waiting\">0</dd>"), "{body}");
    for class in ["delivered", "failed", "dead"] {
        assert!(
            body.contains(&format!("<rect class=\"{class}\"")),
            "a {class} bar: {body}"
        );
    }
    assert!(
        body.contains("1 delivered, 7 failed, to be retried, 1 given up"),
        "{body}"
    );
    assert!(body.contains("<polyline class=\"p95\""), "{body}");

    let list = get(&app, "/ui/endpoints", &session, "en").await;
    assert!(
        list.body.contains("9 attempts · 11.1 %") && list.body.contains("p95"),
        "the list has each endpoint's last hour: {}",
        list.body
    );

    let log = get(&app, "/ui/deliveries", &session, "en").await;
    assert!(
        log.body.contains("Every endpoint&#39;s attempts")
            && log
                .body
                .contains("1 delivered, 7 failed, to be retried, 1 given up"),
        "the log has the company's charts: {}",
        log.body
    );

    // In Portuguese too.
    let pt = get(&app, &page, &session, "pt-BR").await;
    assert!(
        pt.body.contains("Taxa de sucesso") && pt.body.contains("9 tentativas"),
        "{}",
        pt.body
    );
    app.stop().await;
}

#[tokio::test]
async fn an_endpoints_scope_filters_and_ordering_are_changed_from_its_form() {
    let app = spawn_app().await;
    let (webhook, _) = app
        .webhook("http://127.0.0.1:9/hook", &["message.created"])
        .await;
    let queue = app
        .ok("/api/v1/queues", json!({"name": "Suporte"}), 201)
        .await;
    let queue = queue["id"].as_i64().unwrap().to_string();
    let (session, csrf) = sign_in(&app, &app.token).await;
    let edit = format!("/ui/endpoints/{webhook}/edit");

    let form = get(&app, &edit, &session, "en").await;
    assert_eq!(form.status, 200);
    for control in ["url", "connectionId", "queueId", "description"] {
        assert!(
            form.body.contains(&format!("<label for=\"{control}\">")),
            "{control} has a label: {}",
            form.body
        );
    }
    assert!(form.body.contains(">Suporte</option>"), "{}", form.body);
    assert!(
        form.body.contains("name=\"received\" value=\"on\" checked"),
        "filters start as the endpoint has them: {}",
        form.body
    );

    let changed = [
        ("csrf", csrf.as_str()),
        ("url", "http://127.0.0.1:9/other"),
        ("events", "message.created"),
        ("events", "ticket.closed"),
        ("connectionId", ""),
        ("queueId", queue.as_str()),
        ("startOnTransfer", "on"),
        ("sent", "on"),
        ("ticketOpen", "on"),
        ("mediaBase64", "on"),
        ("description", "CRM"),
    ];
    let saved = post(&app, &edit, &session, &changed).await;
    assert_eq!(
        (saved.status.as_u16(), saved.location()),
        (303, format!("/ui/endpoints/{webhook}").as_str())
    );
    let (_, read) = app.get(&format!("/api/v1/webhooks/{webhook}")).await;
    assert_eq!(read["url"], "http://127.0.0.1:9/other");
    assert_eq!(read["events"], json!(["message.created", "ticket.closed"]));
    assert_eq!(read["queueId"].to_string(), queue);
    assert_eq!(read["startOnTransfer"], true);
    assert_eq!(read["ordering"], "none");
    assert_eq!(read["description"], "CRM");
    assert_eq!(
        read["filters"],
        json!({"received": false, "sent": true, "includeGroups": false, "ticketOpen": true,
               "ticketPending": false, "mediaBase64": true})
    );
    assert_eq!(
        read["enabled"], true,
        "what the form does not show keeps its value"
    );

    // What the API refuses is shown beside the form, which keeps what was typed.
    let mut bad = changed.to_vec();
    bad[1] = ("url", "ftp://example.com/x");
    let refused = post(&app, &edit, &session, &bad).await;
    assert_eq!(refused.status, 422);
    assert!(
        refused.body.contains("role=\"alert\"") && refused.body.contains("ftp://example.com/x"),
        "{}",
        refused.body
    );
    let mut no_queue = changed.to_vec();
    no_queue[5] = ("queueId", "");
    let refused = post(&app, &edit, &session, &no_queue).await;
    assert_eq!(
        refused.status, 422,
        "startOnTransfer needs a queue: {}",
        refused.body
    );
    let (_, read) = app.get(&format!("/api/v1/webhooks/{webhook}")).await;
    assert_eq!(read["url"], "http://127.0.0.1:9/other", "nothing changed");

    bad[0] = ("csrf", "forged");
    assert_eq!(post(&app, &edit, &session, &bad).await.status, 403);
    let (_, other) = zaphook::app::create_company(&app.store, "Outra")
        .await
        .unwrap();
    let (other_session, other_csrf) = sign_in(&app, &other).await;
    assert_eq!(get(&app, &edit, &other_session, "en").await.status, 404);
    let mut theirs = changed.to_vec();
    theirs[0] = ("csrf", other_csrf.as_str());
    assert_eq!(post(&app, &edit, &other_session, &theirs).await.status, 404);
    app.stop().await;
}

#[tokio::test]
async fn a_tickets_timeline_shows_its_messages_and_events_with_their_deliveries() {
    let app = spawn_app().await;
    let receiver = common::TestReceiver::start().await;
    let (webhook, _) = app
        .webhook(
            &receiver.url(),
            &["message.created", "ticket.transferred", "ticket.closed"],
        )
        .await;
    let connection = app.sandbox_connection("Comercial").await;
    let queue = app
        .ok("/api/v1/queues", json!({"name": "Suporte"}), 201)
        .await;
    let agent = json!({"name": "Ana", "email": "ana@example.com"});
    let agent = app.ok("/api/v1/users", agent, 201).await["id"].clone();
    let created = app
        .inbound(connection, "5511955550013", "quero ajuda")
        .await;
    let message = created["id"].as_str().unwrap().to_string();
    let (_, tickets) = app.get("/api/v1/tickets").await;
    let ticket = tickets["items"][0]["id"].as_i64().unwrap();
    app.ok(
        "/api/v1/messages",
        json!({"ticketId": ticket, "body": "já vamos ver"}),
        202,
    )
    .await;
    let (status, patched) = app
        .patch(
            &format!("/api/v1/tickets/{ticket}"),
            json!({"queueId": queue["id"], "userId": agent}),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    app.settled_log(webhook).await;
    receiver.wait_for(3).await;

    let (session, _) = sign_in(&app, &app.token).await;
    let list = get(&app, "/ui/conversations", &session, "en").await;
    assert_eq!(list.status, 200);
    for shown in [
        format!("/ui/conversations/{ticket}"),
        "Contact".into(),
        "5511955550013".into(),
        "Suporte".into(),
        format!("#{agent}"),
    ] {
        assert!(list.body.contains(&shown), "{shown}: {}", list.body);
    }
    let closed = get(&app, "/ui/conversations?status=closed", &session, "en").await;
    assert!(
        !closed
            .body
            .contains(&format!("/ui/conversations/{ticket}\"")),
        "{}",
        closed.body
    );

    let page = get(&app, &format!("/ui/conversations/{ticket}"), &session, "en").await;
    assert_eq!(page.status, 200);
    let body = &page.body;
    let (asked, answered) = (
        body.find("quero ajuda").expect("the contact's message"),
        body.find("já vamos ver").expect("the reply"),
    );
    assert!(asked < answered, "in time order");
    assert!(body.contains(&format!("id=\"{message}\"")), "{body}");
    let log = app.delivery_log(webhook).await;
    assert_eq!(log.len(), 3, "two messages and the transfer: {log:?}");
    for d in &log {
        let id = d["id"].as_str().unwrap();
        assert!(
            body.contains(&format!("/ui/deliveries/{id}")),
            "{} links to {id}: {body}",
            d["eventType"]
        );
    }
    let transfer = body.find("ticket.transferred").expect("the transfer");
    assert!(transfer > answered, "{body}");

    let (_, other) = zaphook::app::create_company(&app.store, "Outra")
        .await
        .unwrap();
    let (other_session, _) = sign_in(&app, &other).await;
    let theirs = get(
        &app,
        &format!("/ui/conversations/{ticket}"),
        &other_session,
        "en",
    )
    .await;
    assert_eq!(theirs.status, 404);
    let their_list = get(&app, "/ui/conversations", &other_session, "en").await;
    assert!(!their_list.body.contains("quero ajuda"));
    app.stop().await;
}

/// The ids of the deliveries a log page lists, in order.
fn listed(body: &str) -> Vec<String> {
    body.split(r#"<tr id=""#)
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect()
}

/// The page's link to older deliveries (or to search further back), as a path.
fn older(body: &str) -> Option<String> {
    let end = body.find(r#"" rel="next""#)?;
    let start = body[..end].rfind(r#"href=""#)? + r#"href=""#.len();
    Some(body[start..end].replace("&#38;", "&").replace("&amp;", "&"))
}

/// Every delivery id the log lists for `query`, following its links from page to page.
async fn whole_log(app: &TestApp, session: &str, query: &str) -> Vec<String> {
    let mut all = Vec::new();
    let mut next = Some(format!("/ui/deliveries?{query}"));
    while let Some(path) = next {
        let page = get(app, &path, session, "en").await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        all.extend(listed(&page.body));
        next = older(&page.body);
        assert!(
            all.len() < 10_000,
            "the log never ends: {path} {:?}",
            older(&page.body)
        );
    }
    all
}

#[tokio::test]
async fn the_delivery_log_is_narrowed_by_each_filter_paged_by_key_and_the_companys_own() {
    let app = spawn_app().await;
    let receiver = common::TestReceiver::start().await;
    let refusing = common::TestReceiver::with_responder(|_| 500).await;
    let (first, _) = app
        .webhook(&receiver.url(), &["message.created", "ticket.created"])
        .await;
    let (second, _) = app.webhook(&refusing.url(), &["message.created"]).await;
    let connection = app.sandbox_connection("Comercial").await;
    let mut messages = Vec::new();
    for i in 0..30 {
        let from = format!("55119555500{:02}", i % 3);
        messages.push(
            app.inbound(connection, &from, &format!("mensagem {i}"))
                .await,
        );
    }
    app.inbound(connection, "5511955550099", "palavra-unica")
        .await;
    let first_log = app.settled_log(first).await;
    let second_log = app.delivery_log(second).await;
    // Another company's deliveries, with the same words in them.
    let (_, other) = zaphook::app::create_company(&app.store, "Outra")
        .await
        .unwrap();
    let call = |path: &str, body: serde_json::Value| {
        app.client
            .post(app.url(path))
            .bearer_auth(&other)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let theirs: serde_json::Value = call(
        "/api/v1/connections",
        json!({"name": "Intrusa", "channel": "sandbox"}),
    )
    .await
    .unwrap()
    .json_text()
    .await;
    let their_hook: serde_json::Value = call(
        "/api/v1/webhooks",
        json!({"url": receiver.url(), "events": ["message.created"]}),
    )
    .await
    .unwrap()
    .json_text()
    .await;
    let inbound = format!("/api/v1/connections/{}/sandbox/inbound", theirs["id"]);
    let sent = call(
        &inbound,
        json!({"from": "5511900000001", "body": "palavra-unica"}),
    )
    .await
    .unwrap();
    assert_eq!(sent.status(), 202);

    let (session, _) = sign_in(&app, &app.token).await;
    let everything = whole_log(&app, &session, "").await;
    let mut expected: Vec<String> = first_log
        .iter()
        .chain(&second_log)
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    let mut unique = everything.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), everything.len(), "no delivery on two pages");
    expected.sort();
    assert_eq!(
        unique, expected,
        "every delivery of the company, and no other"
    );
    assert!(expected.len() > 50, "more than a page: {}", expected.len());
    let first_page = get(&app, "/ui/deliveries", &session, "en").await;
    assert_eq!(listed(&first_page.body).len(), 50);
    assert!(
        first_page
            .body
            .contains(&format!(r#"<option value="{first}">"#))
            && !first_page.body.contains("Intrusa"),
    );
    let their_hook = their_hook["id"].as_i64().unwrap();
    assert!(
        whole_log(&app, &session, &format!("endpoint={their_hook}"))
            .await
            .is_empty(),
        "another company's endpoint shows nothing"
    );

    // Each filter narrows the log to what it names.
    let ids_of = |log: &[serde_json::Value], keep: &dyn Fn(&serde_json::Value) -> bool| {
        let mut ids: Vec<String> = log
            .iter()
            .filter(|d| keep(d))
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let sorted = |mut ids: Vec<String>| {
        ids.sort();
        ids
    };
    let by_endpoint = whole_log(&app, &session, &format!("endpoint={second}")).await;
    assert_eq!(sorted(by_endpoint), ids_of(&second_log, &|_| true));
    let by_event = whole_log(&app, &session, "event=ticket.created").await;
    assert_eq!(
        sorted(by_event),
        ids_of(&first_log, &|d| d["eventType"] == "ticket.created")
    );
    assert_eq!(
        ids_of(&first_log, &|d| d["eventType"] == "ticket.created").len(),
        4
    );
    let failing = whole_log(&app, &session, "status=failed").await;
    let second_now = app.delivery_log(second).await;
    assert!(!failing.is_empty());
    assert!(
        failing
            .iter()
            .all(|id| ids_of(&second_now, &|d| d["status"] == "failed").contains(id)),
        "only failed deliveries"
    );
    let delivered = whole_log(&app, &session, "status=delivered").await;
    assert_eq!(sorted(delivered), ids_of(&first_log, &|_| true));
    let (_, message) = app
        .get(&format!(
            "/api/v1/messages/{}",
            messages[0]["id"].as_str().unwrap()
        ))
        .await;
    let ticket = message["ticketId"].as_i64().unwrap();
    let by_ticket = whole_log(&app, &session, &format!("ticket={ticket}")).await;
    assert_eq!(
        by_ticket.len(),
        10 * 2 + 1,
        "ten messages to two endpoints, one ticket.created"
    );
    let by_text = whole_log(&app, &session, "text=palavra-unica").await;
    // Its message to both endpoints and its new ticket (whose last message it is) to the
    // first; never the other company's.
    assert_eq!(by_text.len(), 3, "{by_text:?}");
    assert!(by_text.iter().all(|id| expected.contains(id)));
    let mut page = get(&app, "/ui/deliveries?text=palavra-unica", &session, "en").await;
    assert!(page.body.contains(r#"value="palavra-unica""#));
    let until_before = whole_log(&app, &session, "to=2000-01-01T00:00").await;
    assert!(until_before.is_empty());
    let since_then = whole_log(
        &app,
        &session,
        "from=2000-01-01T00:00&endpoint=".to_string().as_str(),
    )
    .await;
    assert_eq!(since_then.len(), expected.len());
    let combined = whole_log(
        &app,
        &session,
        &format!("endpoint={first}&event=message.created&ticket={ticket}&text=mensagem"),
    )
    .await;
    assert_eq!(combined.len(), 10);

    // What cannot be read is said, and never breaks the page.
    page = get(
        &app,
        "/ui/deliveries?ticket=abc&from=yesterday&status=nope&before=x.y&text=%00%FF",
        &session,
        "en",
    )
    .await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("Ticket: is not a number")
            && page.body.contains("From (UTC): is not a time"),
        "{}",
        page.body
    );
    // The endpoint's page leads to its log.
    let endpoint_page = get(&app, &format!("/ui/endpoints/{first}"), &session, "en").await;
    assert!(
        endpoint_page
            .body
            .contains(&format!(r#"href="/ui/deliveries?endpoint={first}""#))
    );
    app.stop().await;
}

#[tokio::test]
async fn recovering_since_a_time_shows_its_progress_until_every_delivery_is_delivered() {
    let app = spawn_app().await;
    let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = up.clone();
    let receiver = common::TestReceiver::with_responder(move |_| {
        if flag.load(std::sync::atomic::Ordering::SeqCst) {
            200
        } else {
            503
        }
    })
    .await;
    let (webhook, _) = app.webhook(&receiver.url(), &["message.created"]).await;
    let connection = app.sandbox_connection("Comercial").await;
    // Four tickets, so none waits behind another.
    for i in 0..4 {
        app.inbound(connection, &format!("551195555001{i}"), "m")
            .await;
    }
    common::eventually("every delivery to fail once", || async {
        let log = app.delivery_log(webhook).await;
        log.len() == 4 && log.iter().all(|d| d["status"] == "failed")
    })
    .await;
    let (session, csrf) = sign_in(&app, &app.token).await;
    let log = get(
        &app,
        &format!("/ui/deliveries?endpoint={webhook}"),
        &session,
        "en",
    )
    .await;
    assert!(
        log.body
            .contains(&format!(r#"<option value="{webhook}" selected>"#)),
        "the recovery form starts with the filtered endpoint"
    );
    let form = [
        ("csrf", csrf.as_str()),
        ("endpoint", &webhook.to_string()),
        ("since", "2000-01-01T00:00"),
    ];

    // Without the form token nothing is queued again.
    let mut forged = form;
    forged[0].1 = "forged";
    let refused = post(&app, "/ui/recoveries", &session, &forged).await;
    assert_eq!(refused.status, 403);
    let log = get(&app, "/ui/deliveries", &session, "en").await;
    assert!(
        !log.body.contains("/ui/recoveries/"),
        "no recovery was made"
    );
    assert!(
        app.delivery_log(webhook)
            .await
            .iter()
            .all(|d| d["status"] == "failed")
    );
    let mut bad = form;
    bad[2].1 = "soon";
    assert_eq!(
        post(&app, "/ui/recoveries", &session, &bad).await.status,
        422
    );

    // The receiver is back: the recovery queues the four again, and its page follows them.
    up.store(true, std::sync::atomic::Ordering::SeqCst);
    let started = post(&app, "/ui/recoveries", &session, &form).await;
    assert_eq!(started.status, 303, "{}", started.body);
    let page_path = started.location().to_string();
    assert!(page_path.starts_with("/ui/recoveries/"), "{page_path}");
    let page = get(&app, &page_path, &session, "en").await;
    assert!(
        page.body.contains(r#"<dd id="queued">4</dd>"#),
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"data-live="#));
    common::eventually(
        "the recovery's page to show every delivery delivered",
        || async {
            let page = get(&app, &page_path, &session, "en").await;
            page.body.contains(r#"<span id="delivered">4</span>"#)
                && page
                    .body
                    .contains(r#"<dd class="status-pending" id="waiting">0</dd>"#)
                && page
                    .body
                    .contains("Every delivery of this recovery was delivered.")
        },
    )
    .await;
    let log = get(&app, "/ui/deliveries", &session, "en").await;
    assert!(
        log.body.contains(&page_path),
        "listed among the recent recoveries"
    );

    // Another company sees nothing of it, and cannot recover this endpoint.
    let (_, other) = zaphook::app::create_company(&app.store, "Outra")
        .await
        .unwrap();
    let (other_session, other_csrf) = sign_in(&app, &other).await;
    assert_eq!(
        get(&app, &page_path, &other_session, "en").await.status,
        404
    );
    let mut theirs = form;
    theirs[0].1 = &other_csrf;
    assert_eq!(
        post(&app, "/ui/recoveries", &other_session, &theirs)
            .await
            .status,
        404
    );
    assert_eq!(
        get(&app, "/ui/recoveries/abc", &session, "en").await.status,
        404
    );
    app.stop().await;
}

/// The body of a JSON answer (reqwest here has no `json` feature).
trait JsonText {
    async fn json_text(self) -> serde_json::Value;
}

impl JsonText for reqwest::Response {
    async fn json_text(self) -> serde_json::Value {
        serde_json::from_str(&self.text().await.unwrap()).unwrap()
    }
}

#[tokio::test]
async fn open_pages_hear_of_changes_from_an_event_stream_that_ends_with_the_server() {
    let app = spawn_app().await;
    let connection = app.sandbox_connection("Comercial").await;
    let unsigned = get(&app, "/ui/live", "", "en").await;
    assert_eq!(
        (unsigned.status.as_u16(), unsigned.location()),
        (303, "/ui/signin")
    );

    let (session, _) = sign_in(&app, &app.token).await;
    let mut stream = browser()
        .get(app.url("/ui/live"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(
        stream.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    // A message comes in: its commit reaches the open stream as one `change`.
    app.inbound(connection, "5511955550015", "oi").await;
    let mut heard = String::new();
    let deadline = tokio::time::Instant::now() + common::DEADLINE;
    while !heard.contains("event: change") {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .expect("a change event before the deadline")
            .unwrap()
            .expect("the stream stays open");
        heard.push_str(&String::from_utf8_lossy(&chunk));
    }

    // Stopping the server ends the stream instead of waiting on it.
    tokio::time::timeout(common::DEADLINE, app.stop())
        .await
        .expect("the server stops with a stream open");
    let rest = tokio::time::timeout(common::DEADLINE, async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(rest.is_ok(), "the stream ended");
}
