//! The dashboard in a real headless Chromium: signing in (and a wrong token refused), the
//! connections page in both languages, a form posted without its form token refused, signing
//! out; and the accessibility basics on every page: a label on every control, every control
//! reached with the Tab key, and no horizontal scrolling at 320 px. With
//! `UPDATE_SCREENSHOTS=1` the pages' screenshots in `docs/screenshots/` are made again.

mod common;

use common::browser::Browser;
use common::{TestApp, spawn_app};
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
    for _ in 0..focusable.len() + 2 {
        browser.tab().await;
        let active = browser
            .script("return document.activeElement.outerHTML;", json!([]))
            .await;
        reached.push(active.as_str().unwrap_or_default().to_string());
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
    browser.click("form.stack button[type=submit]").await;
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
    browser.click("a[hreflang=pt-BR]").await;
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
    common::eventually("the refusal page", || async {
        browser.text().await.contains("Este formulário expirou")
    })
    .await;
    browser.goto(&app.url("/ui/connections")).await;
    assert!(browser.url().await.ends_with("/ui/connections"));

    browser.click("form[action=\"/ui/signout\"] button").await;
    assert!(browser.url().await.ends_with("/ui/signin"));
    browser.goto(&app.url("/ui/connections")).await;
    assert!(browser.url().await.ends_with("/ui/signin"), "signed out");
    browser.quit().await;
    app.stop().await;
}
