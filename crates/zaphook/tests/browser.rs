//! The dashboard in a real headless Chromium: signing in (and a wrong token refused), the
//! connections page in both languages, a form posted without its form token refused, signing
//! out; and the accessibility basics on every page: a label on every control, every control
//! reached with the Tab key, and no horizontal scrolling at 320 px. With
//! `UPDATE_SCREENSHOTS=1` the pages' screenshots in `docs/screenshots/` are made again.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use common::browser::Browser;
use common::{TestApp, TestReceiver, eventually, spawn_app, spawn_app_with};
use serde_json::json;

/// Controls that no label names (by `<label>`, `aria-label`, or a button's own text).
const UNLABELLED: &str = r#"
    return [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
            && !(e.tagName === 'BUTTON' && e.textContent.trim()))
        .map(e => e.outerHTML);"#;

/// Every control a keyboard user must reach, each described once.
const FOCUSABLE: &str = r#"
    return [...document.querySelectorAll('a[href], button, input:not([type=hidden]), select, textarea')]
        .map(e => e.outerHTML);"#;

/// The lab of checks every page passes.
async fn accessible(browser: &Browser, page: &str) {
    let unlabelled = browser.script(UNLABELLED, json!([])).await;
    assert_eq!(unlabelled, json!([]), "{page}: controls without a label");

    let focusable = browser.script(FOCUSABLE, json!([])).await;
    let focusable: Vec<String> = serde_json::from_value(focusable).unwrap();
    browser
        .script(
            "document.activeElement && document.activeElement.blur();",
            json!([]),
        )
        .await;
    let mut reached = Vec::new();
    // A date and time input takes one Tab per part (day, month, year, hours, …).
    for _ in 0..focusable.len() * 8 + 2 {
        browser.tab().await;
        let active = browser
            .script("return document.activeElement.outerHTML;", json!([]))
            .await;
        reached.push(active.as_str().unwrap_or_default().to_string());
        if focusable.iter().all(|c| reached.contains(c)) {
            break;
        }
    }
    for control in &focusable {
        assert!(
            reached.contains(control),
            "{page}: {control} is not reached with Tab (reached {reached:?})"
        );
    }

    browser.viewport(320, 700).await;
    let widths = browser
        .script(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];",
            json!([]),
        )
        .await;
    assert!(
        widths[0].as_i64() <= widths[1].as_i64(),
        "{page}: scrolls sideways at 320 px: {widths}"
    );
    browser.viewport(1024, 700).await;
}

/// Writes the page's screenshot to `docs/screenshots/<name>.png` when asked to.
async fn screenshot(browser: &Browser, name: &str) {
    // Without the focus ring the checks above leave on some control.
    browser
        .script(
            "document.activeElement && document.activeElement.blur();",
            json!([]),
        )
        .await;
    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "{name}: a PNG");
    if std::env::var("UPDATE_SCREENSHOTS").is_ok() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

async fn sign_in(browser: &Browser, app: &TestApp, token: &str) {
    browser.goto(&app.url("/ui/signin")).await;
    browser.type_into("#token", token).await;
    browser
        .click_to_load("form.stack button[type=submit]")
        .await;
}

#[tokio::test]
async fn the_dashboard_signs_in_shows_connections_in_both_languages_and_refuses_forged_forms() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = spawn_app().await;
    app.sandbox_connection("Comercial").await;
    app.ok(
        "/api/v1/connections",
        json!({"name": "Suporte (Cloud API)", "channel": "cloud", "cloud": {
            "phoneNumberId": "106540352242922", "accessToken": "EAAG-token",
            "appSecret": "s3cret", "verifyToken": "verify-me-please",
            "graphBaseUrl": "http://127.0.0.1:9"}}),
        201,
    )
    .await;

    // Not signed in: the dashboard opens on the sign-in form.
    browser.goto(&app.url("/ui")).await;
    assert!(browser.url().await.ends_with("/ui/signin"));
    browser.viewport(1024, 700).await;
    accessible(&browser, "sign-in").await;
    screenshot(&browser, "signin-en").await;

    sign_in(&browser, &app, "zh_not_a_token").await;
    assert!(browser.url().await.ends_with("/ui/signin"));
    let text = browser.text().await;
    assert!(text.contains("That token is not valid"), "{text}");

    sign_in(&browser, &app, &app.token).await;
    assert!(browser.url().await.ends_with("/ui/connections"));
    let text = browser.text().await;
    for shown in [
        "Connections",
        "Comercial",
        "Suporte (Cloud API)",
        "verify-me-please",
    ] {
        assert!(text.contains(shown), "{shown} in {text}");
    }
    assert!(text.contains("/channels/cloud/"), "{text}");
    accessible(&browser, "connections").await;
    screenshot(&browser, "connections-en").await;

    // The switch is remembered: the next page is Portuguese too.
    browser.click_to_load("a[hreflang=pt-BR]").await;
    let text = browser.text().await;
    assert!(
        text.contains("Conexões") && text.contains("Token de verificação"),
        "{text}"
    );
    browser.goto(&app.url("/ui/connections")).await;
    assert!(browser.text().await.contains("Conexões"));
    accessible(&browser, "conexões").await;
    screenshot(&browser, "connections-pt-BR").await;

    // A form posted without its form token (as another site would) is refused, and the
    // session goes on.
    browser
        .script(
            "const f = document.querySelector('form[action=\"/ui/signout\"]');
             f.querySelector('input[name=csrf]').remove(); f.submit();",
            json!([]),
        )
        .await;
    eventually("the refusal page", || async {
        browser.text().await.contains("Este formulário expirou")
    })
    .await;
    browser.goto(&app.url("/ui/connections")).await;
    assert!(browser.url().await.ends_with("/ui/connections"));

    browser
        .click_to_load("form[action=\"/ui/signout\"] button")
        .await;
    assert!(browser.url().await.ends_with("/ui/signin"));
    browser.goto(&app.url("/ui/connections")).await;
    assert!(browser.url().await.ends_with("/ui/signin"), "signed out");
    browser.quit().await;
    app.stop().await;
}

#[tokio::test]
async fn a_delivery_that_failed_is_seen_and_sent_again_from_the_dashboard() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    // No retry comes by itself within the test: only the button sends it again.
    let app =
        spawn_app_with(|s| s.delivery.retry.schedule = vec![Duration::from_secs(3600); 3]).await;
    let answer = Arc::new(AtomicU16::new(500));
    let status = Arc::clone(&answer);
    let receiver = TestReceiver::with_responder(move |_| status.load(Ordering::SeqCst)).await;
    let connection = app.sandbox_connection("Comercial").await;

    sign_in(&browser, &app, &app.token).await;
    browser.goto(&app.url("/ui/endpoints")).await;
    assert!(browser.text().await.contains("No endpoints yet"));
    accessible(&browser, "endpoints").await;
    // A wrong address is refused with the API's reason, and the form keeps what was typed.
    browser.type_into("#url", "ftp://example.com/hook").await;
    browser
        .click_to_load("form[action=\"/ui/endpoints\"] button[type=submit]")
        .await;
    let text = browser.text().await;
    assert!(text.contains("url:"), "{text}");
    browser.type_into("#url", &receiver.url()).await;
    browser.type_into("#description", "CRM").await;
    browser
        .click_to_load("form[action=\"/ui/endpoints\"] button[type=submit]")
        .await;
    let text = browser.text().await;
    assert!(text.contains("whsec_"), "the secret, once: {text}");
    assert!(text.contains(&receiver.url()), "{text}");

    let endpoint = browser.url().await;
    assert!(
        endpoint.ends_with("/ui/endpoints"),
        "the form posts to the list: {endpoint}"
    );
    browser.goto(&app.url("/ui/endpoints")).await;
    browser.click_to_load(".cards h2 a").await;
    assert!(browser.text().await.contains("No deliveries yet"));
    // The message comes while the page is open: it shows the failed delivery without a reload.
    browser
        .script("window.__zaphook_not_reloaded = true;", json!([]))
        .await;
    app.inbound(connection, "5511955550009", "Chegou o pedido?")
        .await;
    eventually("the failed delivery on the open endpoint page", || async {
        browser.text().await.contains("failed (500)")
    })
    .await;
    let kept = browser
        .script("return window.__zaphook_not_reloaded === true;", json!([]))
        .await;
    assert_eq!(kept, json!(true), "updated in place, not reloaded");
    accessible(&browser, "endpoint").await;
    screenshot(&browser, "endpoint-en").await;

    browser.click_to_load("table tbody a").await;
    let delivery_page = browser.url().await;
    let text = browser.text().await;
    assert!(text.contains("failed") && text.contains("500"), "{text}");
    assert!(text.contains("Chegou o pedido?"), "the payload: {text}");
    accessible(&browser, "delivery").await;
    screenshot(&browser, "delivery-failed-en").await;

    answer.store(200, Ordering::SeqCst);
    browser
        .click_to_load("form[action$=\"/retry\"] button")
        .await;
    assert_eq!(browser.url().await, delivery_page);
    eventually("the delivery to succeed, on the open page", || async {
        browser
            .script(
                "return document.getElementById('delivery-status').textContent;",
                json!([]),
            )
            .await
            == "delivered"
    })
    .await;
    let text = browser.text().await;
    assert!(text.contains("200"), "the second attempt: {text}");
    assert_eq!(receiver.all().len(), 2);

    // Another company sees nothing of it.
    browser
        .click_to_load("form[action=\"/ui/signout\"] button")
        .await;
    let (_, other) = zaphook::app::create_company(&app.store, "Outra")
        .await
        .unwrap();
    sign_in(&browser, &app, &other).await;
    browser.goto(&delivery_page).await;
    let text = browser.text().await;
    assert!(
        text.contains("Not found") && !text.contains("Chegou"),
        "{text}"
    );
    browser.quit().await;
    app.stop().await;
}

#[tokio::test]
async fn an_endpoint_is_changed_and_a_conversation_followed_from_the_dashboard() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = spawn_app().await;
    let receiver = TestReceiver::start().await;
    let (webhook, _) = app
        .webhook(&receiver.url(), &["message.created", "ticket.transferred"])
        .await;
    let connection = app.sandbox_connection("Comercial").await;
    app.ok("/api/v1/queues", json!({"name": "Suporte"}), 201)
        .await;
    app.inbound(connection, "5511955550014", "Bom dia, meu pedido atrasou")
        .await;
    let (_, tickets) = app.get("/api/v1/tickets").await;
    let ticket = tickets["items"][0]["id"].as_i64().unwrap();
    app.ok(
        "/api/v1/messages",
        json!({"ticketId": ticket, "body": "Vamos verificar agora mesmo."}),
        202,
    )
    .await;
    app.settled_log(webhook).await;

    sign_in(&browser, &app, &app.token).await;
    browser
        .goto(&app.url(&format!("/ui/endpoints/{webhook}")))
        .await;
    let text = browser.text().await;
    assert!(
        text.contains("100.0 %") && text.contains("2 attempts"),
        "{text}"
    );
    browser.click_to_load("a[href$=\"/edit\"]").await;
    accessible(&browser, "edit").await;
    // Messages received no longer go to it; tickets of queue Suporte only.
    browser.click("input[name=received]").await;
    browser
        .script(
            "const s = document.getElementById('queueId'); s.value = s.options[1].value;",
            json!([]),
        )
        .await;
    screenshot(&browser, "endpoint-edit-en").await;
    browser
        .click_to_load("form[action$=\"/edit\"] button[type=submit]")
        .await;
    let text = browser.text().await;
    assert!(
        text.contains("✗ Messages received") && text.contains("Queue"),
        "{text}"
    );
    let (_, read) = app.get(&format!("/api/v1/webhooks/{webhook}")).await;
    assert_eq!(read["filters"]["received"], false);
    assert!(read["queueId"].is_i64(), "{read}");

    browser.goto(&app.url("/ui/conversations")).await;
    let text = browser.text().await;
    assert!(text.contains("5511955550014"), "{text}");
    accessible(&browser, "conversations").await;
    screenshot(&browser, "conversations-en").await;
    browser
        .click_to_load(&format!("a[href=\"/ui/conversations/{ticket}\"]"))
        .await;
    let text = browser.text().await;
    let (asked, answered) = (
        text.find("meu pedido atrasou")
            .expect("the contact's message"),
        text.find("Vamos verificar").expect("the reply"),
    );
    assert!(asked < answered, "{text}");
    accessible(&browser, "ticket").await;
    screenshot(&browser, "ticket-en").await;
    // The reply's delivery, from its place on the timeline.
    browser.click_to_load(".from-me .event a").await;
    let text = browser.text().await;
    assert!(
        text.contains("delivered") && text.contains("Vamos verificar"),
        "{text}"
    );
    browser.quit().await;
    app.stop().await;
}

#[tokio::test]
async fn the_delivery_log_is_filtered_and_its_failed_deliveries_recovered_from_the_dashboard() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    // No retry comes by itself within the test: only the recovery sends them again.
    let app =
        spawn_app_with(|s| s.delivery.retry.schedule = vec![Duration::from_secs(3600); 3]).await;
    let answer = Arc::new(AtomicU16::new(500));
    let status = Arc::clone(&answer);
    let receiver = TestReceiver::with_responder(move |_| status.load(Ordering::SeqCst)).await;
    let (webhook, _) = app.webhook(&receiver.url(), &["message.created"]).await;
    let connection = app.sandbox_connection("Comercial").await;
    for (i, body) in ["Bom dia", "Chegou o pedido 42?", "Obrigado"]
        .iter()
        .enumerate()
    {
        app.inbound(connection, &format!("551195555002{i}"), body)
            .await;
    }
    eventually("every delivery to fail once", || async {
        let log = app.delivery_log(webhook).await;
        log.iter().filter(|d| d["status"] == "failed").count() == 3
    })
    .await;

    sign_in(&browser, &app, &app.token).await;
    browser
        .goto(&app.url(&format!("/ui/endpoints/{webhook}")))
        .await;
    browser
        .click_to_load(&format!("a[href=\"/ui/deliveries?endpoint={webhook}\"]"))
        .await;
    let text = browser.text().await;
    assert_eq!(text.matches("failed (500)").count(), 3, "{text}");
    accessible(&browser, "deliveries").await;
    browser.script("window.scrollTo(0, 0);", json!([])).await;
    screenshot(&browser, "deliveries-en").await;
    browser
        .goto(&app.url("/ui/lang?to=pt-BR&back=/ui/deliveries"))
        .await;
    assert!(browser.text().await.contains("Registro de entregas"));
    accessible(&browser, "registro de entregas").await;
    browser.script("window.scrollTo(0, 0);", json!([])).await;
    screenshot(&browser, "deliveries-pt-BR").await;
    browser
        .goto(&app.url("/ui/lang?to=en&back=/ui/deliveries"))
        .await;

    // The text in a payload narrows the log to its one delivery.
    browser.type_into("#f-text", "pedido 42").await;
    browser
        .script(
            "document.getElementById('f-status').value = 'failed';",
            json!([]),
        )
        .await;
    browser
        .click_to_load("form.filters button[type=submit]")
        .await;
    let url = browser.url().await;
    assert!(
        url.contains("text=pedido+42") && url.contains("status=failed"),
        "{url}"
    );
    let text = browser.text().await;
    assert_eq!(text.matches("failed (500)").count(), 1, "{text}");
    browser.click_to_load("table.log tbody a").await;
    assert!(browser.text().await.contains("Chegou o pedido 42?"));
    assert!(
        browser.text().await.contains("webhook-signature: v1,"),
        "the headers the attempt sent"
    );
    browser
        .goto(&app.url(&format!("/ui/deliveries?endpoint={webhook}")))
        .await;

    // The receiver is back: recovering since a time queues the three again, and the
    // recovery's page shows them delivered as it happens.
    answer.store(200, Ordering::SeqCst);
    browser
        .script(
            "document.getElementById('r-since').value = '2000-01-01T00:00:00';",
            json!([]),
        )
        .await;
    browser
        .click_to_load("form[action=\"/ui/recoveries\"] button[type=submit]")
        .await;
    assert!(browser.url().await.contains("/ui/recoveries/"));
    eventually("the recovery to show every delivery delivered", || async {
        browser
            .text()
            .await
            .contains("Every delivery of this recovery was delivered.")
    })
    .await;
    let text = browser.text().await;
    assert!(
        text.contains("Queued again\n3") || text.contains("Queued again\t3"),
        "{text}"
    );
    accessible(&browser, "recovery").await;
    assert_eq!(receiver.all().len(), 6);
    browser.quit().await;
    app.stop().await;
}
