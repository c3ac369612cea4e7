//! Test support: the real application on port 0 against a fresh PostgreSQL database per test, and helpers that
//! speak to it over HTTP as a client would.

use std::sync::OnceLock;

use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use uuid::Uuid;

use lathe_api::config::Settings;
use lathe_api::state::AppState;
use lathe_api::Application;

/// The server the tests create their databases on; `TEST_DATABASE_URL` overrides it (any database on the server).
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn database_url(name: &str) -> String {
    let admin = admin_url();
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    format!("{base}/{name}")
}

static CLEANUP: OnceLock<()> = OnceLock::new();

/// The server key the tests encrypt Azure DevOps tokens with (32 bytes, base64).
pub const TEST_SECRET_KEY: &str = "bGF0aGUtdGVzdC1rZXktMzItYnl0ZXMtbG9uZyEhISE=";

/// Test databases are named `lathe_test_<pid>_<uuid>`: the process id says whose a database is, so a run only ever
/// drops its own databases and those of test processes that no longer exist (never another run's).
const DATABASE_PREFIX: &str = "lathe_test_";

/// Whether a process with this id is running on this machine.
fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The process that made a test database, from its name; `None` for names without one (earlier runs' format).
fn creator_pid(name: &str) -> Option<u32> {
    name.strip_prefix(DATABASE_PREFIX)?
        .split_once('_')?
        .0
        .parse()
        .ok()
}

/// Drops the databases that test processes which have ended left behind (killed before they could drop their own),
/// once per test process.
async fn drop_leftover_databases() {
    if CLEANUP.set(()).is_err() {
        return;
    }
    let Ok(mut conn) = PgConnection::connect(&admin_url()).await else {
        return;
    };
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
            .bind(DATABASE_PREFIX)
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
    for name in names {
        if creator_pid(&name).is_some_and(process_alive) {
            continue;
        }
        // Without FORCE: a database still in use (say, by a run on another machine sharing the server) stays.
        let _ = conn
            .execute(format!("DROP DATABASE IF EXISTS \"{name}\"").as_str())
            .await;
    }
}

/// Drops one test's database, ending the connections its service still holds. Runs on a thread of its own with its
/// own runtime, because it is called from `Drop`, inside the test's runtime, where blocking on a future would stall it.
fn drop_database(name: String) {
    let dropped = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        runtime.block_on(async {
            let mut conn = PgConnection::connect(&admin_url()).await.ok()?;
            conn.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                .await
                .ok()
        })
    })
    .join();
    if !matches!(dropped, Ok(Some(_))) {
        // Left for the next run's `drop_leftover_databases`, which knows this process has ended.
        eprintln!("note: a test database could not be dropped now");
    }
}

/// A running application and a client for it.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`, or `https://…` when the settings give a TLS certificate.
    pub address: String,
    /// The database's name; it is dropped with the `TestApp`.
    pub database_name: String,
    pub pool: PgPool,
    pub state: AppState,
    pub database_url: String,
    pub client: reqwest::Client,
    /// The separate metrics listener, when `metrics_bind` is set.
    pub metrics_address: Option<String>,
}

/// Starts the application on a random port against a new, empty database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], with settings changed by `configure` first.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    // Quiet by default; `TEST_LOG=1` shows the service's logs (filtered by `RUST_LOG`).
    if std::env::var_os("TEST_LOG").is_some() {
        lathe_api::telemetry::init(lathe_api::telemetry::LogFormat::Text);
    }
    drop_leftover_databases().await;
    let name = format!(
        "{DATABASE_PREFIX}{}_{}",
        std::process::id(),
        Uuid::new_v4().simple()
    );
    let database_url = database_url(&name);
    let mut settings = Settings::for_database(&database_url);
    // Tests send far more than 60 requests a minute with one key; the rate-limit tests set their own limits.
    settings.rate_limit_per_minute = 1_000_000;
    settings.secret_key = Some(secrecy::SecretString::from(TEST_SECRET_KEY.to_owned()));
    settings.azure_timeout_ms = 700;
    settings.azure_backoff_ms = 50;
    settings.azure_max_attempts = 4;
    // Many tests send requests without a valid key from 127.0.0.1; the transport tests set their own limit.
    settings.unauthenticated_rate_limit_per_minute = 1_000_000;
    // The metrics gauges are computed in the background; tests that read them wait for the next computation.
    settings.metrics_interval_secs = 1;
    settings.integrity_interval_secs = 1;
    // The Azure DevOps stand-in (tests/api/fake_azure.rs) serves on loopback: an Azure DevOps Server the operator
    // allowed, on a private address it allowed. The egress tests turn both off again.
    settings.azure_server_hosts = vec!["127.0.0.1".to_owned()];
    settings.azure_allow_private_addresses = true;
    configure(&mut settings);
    let app = Application::build(&settings)
        .await
        .expect("the application starts");
    let scheme = if app.serves_tls() { "https" } else { "http" };
    let address = format!("{scheme}://127.0.0.1:{}", app.port());
    let metrics_address = app
        .metrics_port()
        .map(|port| format!("http://127.0.0.1:{port}"));
    let state = app.state().clone();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        database_name: name,
        pool: state.pool.clone(),
        state,
        database_url,
        client: reqwest::Client::new(),
        metrics_address,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        drop_database(std::mem::take(&mut self.database_name));
    }
}

/// An organization made with the operator's command, and its first key (every scope).
pub struct TestOrg {
    pub id: Uuid,
    pub key: String,
}

impl TestApp {
    /// Creates an organization the way `lathe org create` does.
    pub async fn create_org(&self, name: &str) -> TestOrg {
        let (id, key) = lathe_api::cli::create_organization(&self.pool, name)
            .await
            .expect("the organization is created");
        TestOrg { id, key }
    }

    /// Sends a GraphQL request with a key and returns the whole response body.
    pub async fn graphql(&self, key: Option<&str>, query: &str, variables: Value) -> Value {
        let mut request = self
            .client
            .post(format!("{}/graphql", self.address))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.expect("the request is sent");
        // 401: a key that is not valid is refused before the body is read (a GraphQL error all the same).
        let status = response.status().as_u16();
        assert!(
            status == 200 || status == 401,
            "GraphQL answers 200 (or 401 for a key that is not valid), not {status}"
        );
        response.json().await.expect("the body is JSON")
    }

    /// Sends a GraphQL request that must succeed, and returns its `data`.
    pub async fn graphql_ok(&self, key: &str, query: &str, variables: Value) -> Value {
        let body = self.graphql(Some(key), query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    /// Creates a project and returns its id.
    pub async fn create_project(&self, key: &str, name: &str) -> String {
        let data = self
            .graphql_ok(
                key,
                "mutation($name: String!) { createProject(input: {name: $name}) { id } }",
                json!({ "name": name }),
            )
            .await;
        data["createProject"]["id"].as_str().unwrap().to_owned()
    }

    /// Creates a release of a project and returns its id.
    pub async fn create_release(&self, key: &str, project_id: &str, name: &str) -> String {
        let data = self
            .graphql_ok(
                key,
                "mutation($p: ID!, $n: String!) { createRelease(projectId: $p, name: $n) { id } }",
                json!({ "p": project_id, "n": name }),
            )
            .await;
        data["createRelease"]["id"].as_str().unwrap().to_owned()
    }

    /// Creates a key with the given scopes using `key`, and returns the new plaintext key and its id.
    pub async fn create_key(&self, key: &str, scopes: &[&str]) -> (String, String) {
        let data = self
            .graphql_ok(
                key,
                "mutation($s: [String!]!) { createApiKey(input: {name: \"test\", scopes: $s}) { key apiKey { id } } }",
                json!({ "s": scopes }),
            )
            .await;
        (
            data["createApiKey"]["key"].as_str().unwrap().to_owned(),
            data["createApiKey"]["apiKey"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        )
    }
}

impl TestApp {
    /// `GET /metrics` (on the metrics listener when there is one) until `ready` accepts the text: the database
    /// gauges are computed in the background. Gives up after 30 s, showing the last text.
    pub async fn metrics_when(&self, ready: impl Fn(&str) -> bool) -> String {
        let base = self.metrics_address.as_ref().unwrap_or(&self.address);
        let mut text = String::new();
        for _ in 0..300 {
            text = self
                .client
                .get(format!("{base}/metrics"))
                .send()
                .await
                .expect("the request is sent")
                .text()
                .await
                .expect("a body");
            if ready(&text) {
                return text;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the metrics never showed what was expected:\n{text}");
    }
}

/// The `extensions.code` of the first error of a GraphQL response.
pub fn error_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error with a code: {body}"))
}

/// Opens a single connection to a test database, for assertions on stored rows.
pub async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url)
        .await
        .expect("the database answers")
}

impl TestApp {
    /// Puts a build in the queue through the event store, as build intake does. Returns the queue entry id.
    pub async fn enqueue_build(&self, org: Uuid, build: &str, project_id: Option<&str>) -> String {
        use domain::build_queue::{
            BuildDetails, BuildIdentity, BuildQueue, BuildQueueCommand, BuildSource, QueueReason,
            Route,
        };
        let identity = BuildIdentity {
            organization_id: org,
            source: BuildSource::AzureDevOps,
            key: format!("fabrikam/web/{build}"),
        };
        let entry_id = identity.entry_id();
        let project_id = project_id.map(|id| id.parse().unwrap());
        let reason = if project_id.is_some() {
            QueueReason::NoActiveRelease
        } else {
            QueueReason::NoProjectMatched
        };
        let command = BuildQueueCommand::ReceiveBuild {
            identity,
            details: BuildDetails {
                name: format!("Build {build}"),
                branch: Some("refs/heads/main".to_owned()),
                commit_sha: Some("6a8f1c2e".to_owned()),
                ..BuildDetails::default()
            },
            route: Route::Queue { project_id, reason },
            received_at: chrono::Utc::now(),
            results: None,
        };
        self.state
            .store
            .execute::<BuildQueue>(entry_id, command, &projections::CommandContext::operator())
            .await
            .expect("the build is queued");
        entry_id.to_string()
    }
}

/// How a test authenticates a webhook or ingest call.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    Bearer(String),
    /// HTTP Basic with this user name and the key as password.
    Basic(String, String),
    OrgId(String),
}

/// A webhook or ingest answer: status and JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl TestApp {
    /// POSTs raw bytes to `path`, as JSON unless `headers` name a `content-type`.
    pub async fn post_raw(
        &self,
        path: &str,
        auth: &Auth,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self
            .client
            .post(format!("{}{path}", self.address))
            .body(body);
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            request = request.header("content-type", "application/json");
        }
        request = match auth {
            Auth::None => request,
            Auth::Bearer(key) => request.bearer_auth(key),
            Auth::Basic(user, key) => request.basic_auth(user, Some(key)),
            Auth::OrgId(id) => request.header("x-pt-org-id", id),
        };
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("the request is sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer { status, body }
    }

    /// Delivers a service-hook event to the Azure DevOps webhook.
    pub async fn webhook(&self, auth: &Auth, body: &Value) -> Answer {
        self.post_raw(
            "/api/webhooks/azure-devops",
            auth,
            serde_json::to_vec(body).unwrap(),
            &[],
        )
        .await
    }

    /// Calls the results-ingest API.
    pub async fn ingest(&self, auth: &Auth, body: &Value, headers: &[(&str, &str)]) -> Answer {
        self.post_raw(
            "/api/v1/results/ingest",
            auth,
            serde_json::to_vec(body).unwrap(),
            headers,
        )
        .await
    }
}

/// One of the Azure DevOps sample payloads in `tests/fixtures/azure-devops/`, as bytes.
pub fn payload_bytes(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/fixtures/azure-devops/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// One of the sample payloads, parsed.
pub fn payload(name: &str) -> Value {
    let bytes = payload_bytes(name);
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    serde_json::from_slice(bytes).expect("the sample is JSON")
}

/// Every read-model table, each as its rows in a stable order (JSON text), for comparing two states.
pub async fn dump_read_models(pool: &PgPool) -> std::collections::BTreeMap<String, String> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'read' ORDER BY tablename",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut dump = std::collections::BTreeMap::new();
    for table in tables {
        let rows: String = sqlx::query_scalar(&format!(
            "SELECT coalesce(json_agg(t ORDER BY t::text), '[]')::text FROM read.{table} t"
        ))
        .fetch_one(pool)
        .await
        .unwrap();
        dump.insert(table, rows);
    }
    dump
}

impl TestApp {
    /// Turns `X-Pt-Org-Id` authentication on for an organization (it starts off) with its first key, which holds
    /// `builds:create` as turning it on requires.
    pub async fn enable_org_id_auth(&self, org: &TestOrg) {
        let data = self
            .graphql_ok(
                &org.key,
                "mutation { setOrgIdAuthentication(enabled: true) { orgIdAuthEnabled } }",
                json!({}),
            )
            .await;
        assert_eq!(data["setOrgIdAuthentication"]["orgIdAuthEnabled"], true);
    }
}
