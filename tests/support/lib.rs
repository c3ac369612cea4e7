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

/// Drops the databases earlier test runs left behind, once per test process.
async fn drop_leftover_databases() {
    if CLEANUP.set(()).is_err() {
        return;
    }
    let Ok(mut conn) = PgConnection::connect(&admin_url()).await else {
        return;
    };
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'lathe_test_%'")
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
    for name in names {
        // A database still in use belongs to a test running right now; leave it.
        let _ = conn
            .execute(format!("DROP DATABASE \"{name}\"").as_str())
            .await;
    }
}

/// A running application and a client for it.
pub struct TestApp {
    pub address: String,
    pub pool: PgPool,
    pub state: AppState,
    pub database_url: String,
    pub client: reqwest::Client,
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
    let name = format!("lathe_test_{}", Uuid::new_v4().simple());
    let database_url = database_url(&name);
    let mut settings = Settings::for_database(&database_url);
    // Tests send far more than 60 requests a minute with one key; the rate-limit tests set their own limits.
    settings.rate_limit_per_minute = 1_000_000;
    settings.secret_key = Some(secrecy::SecretString::from(TEST_SECRET_KEY.to_owned()));
    settings.azure_timeout_ms = 700;
    settings.azure_backoff_ms = 50;
    settings.azure_max_attempts = 4;
    // The Azure DevOps stand-in (tests/api/fake_azure.rs) serves on loopback: an Azure DevOps Server the operator
    // allowed, on a private address it allowed. The egress tests turn both off again.
    settings.azure_server_hosts = vec!["127.0.0.1".to_owned()];
    settings.azure_allow_private_addresses = true;
    configure(&mut settings);
    let app = Application::build(&settings)
        .await
        .expect("the application starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        pool: state.pool.clone(),
        state,
        database_url,
        client: reqwest::Client::new(),
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
        assert_eq!(response.status().as_u16(), 200, "GraphQL answers 200");
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
    /// POSTs raw bytes as JSON to `path`.
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
            .header("content-type", "application/json")
            .body(body);
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
