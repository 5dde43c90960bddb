//! A real headless Chromium driven over WebDriver (Debian's `chromium` and `chromedriver`):
//! the few commands the dashboard's tests use, spoken as plain JSON over HTTP.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A chromedriver process and one browser session in it; both end when it is dropped.
pub struct Browser {
    driver: Child,
    base: String,
    client: reqwest::Client,
    _profile: tempfile::TempDir,
}

/// A found element, by its WebDriver reference.
pub struct Element(String);

impl Browser {
    /// Starts Chromium, or answers `None` (with the reason printed) where it is not installed
    /// and the browser tests are not required. CI requires them (`CI` or
    /// `ZAPHOOK_TEST_BROWSER=required`): there a missing browser fails the test.
    pub async fn start() -> Option<Browser> {
        let installed =
            std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists();
        if !installed {
            let required = std::env::var("CI").is_ok()
                || std::env::var("ZAPHOOK_TEST_BROWSER").as_deref() == Ok("required");
            assert!(
                !required,
                "the browser tests need {CHROMIUM} and {CHROMEDRIVER}: apt-get install chromium chromium-driver"
            );
            eprintln!(
                "skipped: {CHROMIUM} or {CHROMEDRIVER} is not installed (apt-get install chromium chromium-driver)"
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        super::eventually("chromedriver to answer", || async {
            client
                .get(format!("{base}/status"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args}}}});
        let created = answer(
            client
                .post(format!("{base}/session"))
                .header("content-type", "application/json")
                .body(capabilities.to_string()),
        )
        .await;
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("a browser session: {created}"))
            .to_string();
        Some(Browser {
            driver,
            base: format!("{base}/session/{session}"),
            client,
            _profile: profile,
        })
    }

    /// Runs one command; answers its `value`, panicking on a WebDriver error.
    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .timeout(Duration::from_secs(30));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let answer = answer(request).await;
        if answer["value"].get("error").is_some() {
            panic!("WebDriver {path}: {}", answer["value"]);
        }
        answer["value"].clone()
    }

    /// Ends the browser session, and with it Chromium.
    pub async fn quit(self) {
        let _ = self.command(reqwest::Method::DELETE, "", None).await;
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    pub async fn url(&self) -> String {
        let v = self.command(reqwest::Method::GET, "/url", None).await;
        v.as_str().unwrap_or_default().to_string()
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page; answers its return.
    pub async fn script(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    pub async fn find(&self, css: &str) -> Element {
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        let reference = v
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}"));
        Element(reference.to_string())
    }

    pub async fn click(&self, css: &str) {
        let Element(id) = self.find(css).await;
        self.post(&format!("/element/{id}/click"), json!({})).await;
    }

    /// Clicks what leads to another page (a link, a form's button) and waits until that page
    /// has loaded: the old document's mark is gone and the new one is complete.
    pub async fn click_to_load(&self, css: &str) {
        self.script("window.__zaphook_old_page = true;", json!([]))
            .await;
        self.click(css).await;
        super::eventually(&format!("the page after clicking {css}"), || async {
            self.script(
                "return !window.__zaphook_old_page && document.readyState === 'complete';",
                json!([]),
            )
            .await
                == json!(true)
        })
        .await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let Element(id) = self.find(css).await;
        self.post(&format!("/element/{id}/clear"), json!({})).await;
        self.post(&format!("/element/{id}/value"), json!({"text": text}))
            .await;
    }

    /// The page's visible text.
    pub async fn text(&self) -> String {
        let v = self
            .script("return document.body.innerText;", json!([]))
            .await;
        v.as_str().unwrap_or_default().to_string()
    }

    /// Presses Tab once, as a keyboard user does.
    pub async fn tab(&self) {
        self.post(
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                {"type": "keyDown", "value": "\u{E004}"}, {"type": "keyUp", "value": "\u{E004}"}]}]}),
        )
        .await;
    }

    /// Lays the page out as a screen `width` CSS pixels wide (Chromium's device emulation).
    pub async fn viewport(&self, width: u32, height: u32) {
        self.post(
            "/goog/cdp/execute",
            json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": {
                "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}}),
        )
        .await;
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let v = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .unwrap()
    }
}

async fn answer(request: reqwest::RequestBuilder) -> Value {
    let bytes = request.send().await.unwrap().bytes().await.unwrap();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
