//! Headless Chromium for the console's tests, driven over the W3C WebDriver protocol (`chromedriver`, Debian's
//! `chromium-driver`). The protocol is a handful of JSON calls, made here with the `reqwest` client the tests already
//! use, rather than a WebDriver crate and its dependency tree. A missing `chromium` or `chromedriver` fails the test
//! that needs it (`.ci/run` installs both).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

/// How long a wait for something to appear may take before the test fails (generous: a loaded 2-core machine).
const WAIT: Duration = Duration::from_secs(30);
/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_program(names: &[&str]) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain([
        PathBuf::from("/usr/bin"),
        PathBuf::from("/usr/lib/chromium"),
    ]) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "the console's browser tests need {names:?}: install Debian's `chromium` and `chromium-driver` \
         (`apt-get install -y chromium chromium-driver`, as .ci/run does)"
    )
}

/// One Chromium, with a fresh profile, and its chromedriver; both end with the value.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    http: reqwest::Client,
    _profile: TempDir,
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a window of `width` × `height`.
    pub async fn start(width: u32, height: u32) -> Browser {
        let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"]);
        let chromedriver = find_program(&["chromedriver"]);
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile =
            TempDir(std::env::temp_dir().join(format!("lathe-chromium-{}", uuid::Uuid::new_v4())));
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let ready = http.get(format!("{base}/status")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            format!("--user-data-dir={}", profile.0.display()),
            format!("--window-size={width},{height}"),
        ];
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
        }}});
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("a JSON answer");
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("Chromium did not start: {created}"))
            .to_owned();
        let browser = Browser {
            driver,
            port,
            session,
            http,
            _profile: profile,
        };
        browser.resize(width, height).await;
        browser
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!(
            "http://127.0.0.1:{}/session/{}{path}",
            self.port, self.session
        );
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("JSON");
        answer["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Sets the window's outer size.
    pub async fn resize(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({ "width": width, "height": height }))
            .await;
    }

    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) {
        let answer = self.post("/url", json!({ "url": url })).await;
        assert!(answer.is_null(), "navigation to {url} failed: {answer}");
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page and returns its value.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// The first element matching `css`, once there is one.
    pub async fn find(&self, css: &str) -> String {
        self.find_by("css selector", css).await
    }

    /// The first element matching the XPath `xpath`, once there is one.
    pub async fn find_xpath(&self, xpath: &str) -> String {
        self.find_by("xpath", xpath).await
    }

    async fn find_by(&self, using: &str, value: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let found = self
                .post("/element", json!({ "using": using, "value": value }))
                .await;
            if let Some(id) = found[ELEMENT].as_str() {
                return id.to_owned();
            }
            if tokio::time::Instant::now() >= deadline {
                let page = self.page_text().await;
                panic!("nothing matches {value} ({found}); the page shows: {page}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the element matching `css`, found again if the live page drew it anew in between.
    pub async fn click(&self, css: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let element = self.find(css).await;
            let answer = self
                .post(&format!("/element/{element}/click"), json!({}))
                .await;
            if answer.is_null() {
                return;
            }
            let stale = answer["error"] == "stale element reference";
            assert!(
                stale && tokio::time::Instant::now() < deadline,
                "the click failed: {answer}"
            );
        }
    }

    /// Clicks the button whose text is `text`, inside the element matching the XPath `within` (e.g. `//main`).
    /// A live page may draw the button anew between finding and clicking it: then it is found again.
    pub async fn click_button(&self, within: &str, text: &str) {
        let xpath = format!("{within}//button[normalize-space()='{text}']");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let element = self.find_xpath(&xpath).await;
            let answer = self
                .post(&format!("/element/{element}/click"), json!({}))
                .await;
            if answer.is_null() {
                return;
            }
            let stale = answer["error"] == "stale element reference";
            assert!(
                stale && tokio::time::Instant::now() < deadline,
                "the click failed: {answer}"
            );
        }
    }

    /// Types `text` into the element matching `css`, replacing what it held.
    pub async fn fill(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.post(&format!("/element/{element}/clear"), json!({}))
            .await;
        self.post(
            &format!("/element/{element}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    /// The visible text of the element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        self.call(
            reqwest::Method::GET,
            &format!("/element/{element}/text"),
            None,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Waits until the element matching `css` shows `expected` in its text; returns that text.
    pub async fn wait_for_text(&self, css: &str, expected: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let found = self
                .eval(
                    "const el = document.querySelector(arguments[0]); return el ? el.innerText : null;",
                    json!([css]),
                )
                .await;
            let text = found.as_str().unwrap_or_default();
            if text.contains(expected) {
                return text.to_owned();
            }
            if tokio::time::Instant::now() >= deadline {
                let page = self.page_text().await;
                panic!(
                    "{css} never showed {expected:?}; it shows {text:?}; the page shows: {page}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The page's address and visible text, for failure messages.
    pub async fn page_text(&self) -> Value {
        self.eval(
            "return location.href + '\\n' + document.body.innerText;",
            json!([]),
        )
        .await
    }

    /// Waits until `script` (a function body) returns `true`.
    pub async fn wait_until(&self, what: &str, script: &str, args: Value) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.eval(script, args.clone()).await != Value::Bool(true) {
            assert!(tokio::time::Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Accepts the page's `confirm()` dialog.
    pub async fn accept_dialog(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let answer = self.post("/alert/accept", json!({})).await;
            if answer.is_null() {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "no dialog appeared");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a screenshot as `docs/screenshots/<name>.png` when `LATHE_SCREENSHOTS` is set (so that ordinary runs
    /// leave the working tree as it was).
    pub async fn screenshot(&self, name: &str) {
        if std::env::var_os("LATHE_SCREENSHOTS").is_none() {
            return;
        }
        use base64::Engine as _;
        let png = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("a screenshot"))
            .expect("base64");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
        std::fs::create_dir_all(&dir).expect("docs/screenshots");
        std::fs::write(dir.join(format!("{name}.png")), bytes).expect("the screenshot is written");
    }

    /// Signs in to the console at `address` with `key` and waits for the Releases page.
    pub async fn sign_in(&self, address: &str, key: &str) {
        self.goto(&format!("{address}/console/")).await;
        self.fill("input[name=key]", key).await;
        self.click_button("//form", "Sign in").await;
        self.wait_for_text("main h1", "Releases").await;
    }
}

impl Drop for Browser {
    /// Ends the WebDriver session (which closes Chromium) with a plain blocking request, since `Drop` cannot wait
    /// for a future, then stops chromedriver.
    fn drop(&mut self) {
        use std::io::{Read, Write};
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                self.session, self.port
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                let mut answer = Vec::new();
                let _ = stream.read_to_end(&mut answer);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
