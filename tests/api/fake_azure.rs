//! A stand-in for Azure DevOps on loopback that checks each request the way Azure DevOps does (path,
//! `api-version`, content type, Basic authentication with the token as password, body shape) and answers with the
//! REST API's shapes. Faults can be scripted: 429 with `Retry-After`, 500, 403, or a stall.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

pub const ORGANIZATION: &str = "fabrikam";
pub const PROJECT: &str = "Web";
pub const TOKEN: &str = "fake-pat-0123456789";
pub const REPOSITORY: &str = "e5994ecb-b917-4d23-aa75-d52205c3c19b";
pub const BUG_FIELDS: [&str; 7] = [
    "System.Title",
    "System.Description",
    "System.Tags",
    "System.State",
    "Microsoft.VSTS.Common.Priority",
    "Microsoft.VSTS.TCM.ReproSteps",
    "Microsoft.VSTS.TCM.SystemInfo",
];

/// A fault the next matching request gets.
#[derive(Debug, Clone)]
pub enum Fault {
    TooManyRequests {
        retry_after_secs: u64,
    },
    ServerError,
    Forbidden,
    /// Answers normally, but only after this long (longer than the client waits).
    Stall(Duration),
    /// Answers 302 to this URL.
    Redirect(String),
    /// Answers this status and body, as a service that is not Azure DevOps would.
    Foreign {
        status: u16,
        content_type: &'static str,
        body: String,
    },
}

/// A work item the fake holds.
#[derive(Debug, Clone)]
pub struct FakeWorkItem {
    pub id: u64,
    pub fields: HashMap<String, Value>,
}

/// Everything the fake saw and holds.
#[derive(Default)]
pub struct FakeState {
    pub requests: Vec<(String, String)>,
    pub work_items: Vec<FakeWorkItem>,
    pub statuses: Vec<(i64, Value)>,
    pub threads: Vec<(i64, Value)>,
    /// Faults by route kind: `work_item`, `status`, `any`.
    pub faults: HashMap<&'static str, VecDeque<Fault>>,
    /// While set, every request is answered 503.
    pub down: bool,
    pub inactive_pull_requests: HashSet<i64>,
    /// While set, every request is answered only after this long (less than the client waits).
    pub slow: Option<Duration>,
    /// The project's build retention settings (`_apis/build/retention`), as Azure DevOps answers them.
    pub retention: Value,
}

/// The running fake.
#[derive(Clone)]
pub struct FakeAzure {
    pub url: String,
    pub state: Arc<Mutex<FakeState>>,
}

impl FakeAzure {
    /// Starts the fake on a random loopback port.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(FakeState {
            retention: retention_settings(30, 10, 3),
            ..FakeState::default()
        }));
        let app = Router::new()
            .route("/{org}/_apis/projects/{project}", get(project))
            .route(
                "/{org}/{project}/_apis/wit/workitemtypes/{kind}/fields",
                get(fields),
            )
            .route(
                "/{org}/{project}/_apis/wit/workitems/{kind}",
                post(create_work_item).get(work_item),
            )
            .route("/{org}/{project}/_apis/wit/wiql", post(wiql))
            .route(
                "/{org}/{project}/_apis/build/retention",
                get(build_retention),
            )
            .route(
                "/{org}/{project}/_apis/git/repositories/{repo}/pullRequests/{pr}/statuses",
                post(pull_request_status),
            )
            .route(
                "/{org}/{project}/_apis/git/repositories/{repo}/pullRequests/{pr}/threads",
                post(pull_request_thread),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/{ORGANIZATION}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, state }
    }

    /// Scripts a fault for the next request of a kind (`work_item`, `status`, `any`).
    pub fn fail_next(&self, kind: &'static str, fault: Fault) {
        self.state
            .lock()
            .unwrap()
            .faults
            .entry(kind)
            .or_default()
            .push_back(fault);
    }

    pub fn set_slow(&self, slow: Option<Duration>) {
        self.state.lock().unwrap().slow = slow;
    }

    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    pub fn work_items(&self) -> Vec<FakeWorkItem> {
        self.state.lock().unwrap().work_items.clone()
    }

    pub fn set_state(&self, id: u64, state: &str) {
        let mut fake = self.state.lock().unwrap();
        if let Some(item) = fake.work_items.iter_mut().find(|w| w.id == id) {
            item.fields.insert("System.State".to_owned(), json!(state));
        }
    }

    /// Changes the project's build retention (`purgeRuns`, `purgePullRequestRuns`, `retainRunsPerProtectedBranch`).
    pub fn set_retention(&self, runs_days: u64, pull_request_days: u64, per_branch: u64) {
        self.state.lock().unwrap().retention =
            retention_settings(runs_days, pull_request_days, per_branch);
    }

    pub fn statuses(&self) -> Vec<(i64, Value)> {
        self.state.lock().unwrap().statuses.clone()
    }

    pub fn threads(&self) -> Vec<(i64, Value)> {
        self.state.lock().unwrap().threads.clone()
    }

    pub fn requests(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().requests.clone()
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(
            json!({ "$id": "1", "innerException": null, "message": message, "typeName": "Fake",
        "typeKey": "FakeException", "errorCode": 0, "eventId": 3000 }),
        ),
    )
        .into_response()
}

/// The build retention settings as `GET _apis/build/retention` answers them (a `ProjectRetentionSetting`: each
/// setting with its `min`, `max` and `value`).
pub fn retention_settings(runs_days: u64, pull_request_days: u64, per_branch: u64) -> Value {
    json!({
        "purgeArtifacts": { "min": 1, "max": 60, "value": 30 },
        "purgePullRequestRuns": { "min": 1, "max": 30, "value": pull_request_days },
        "purgeRuns": { "min": 30, "max": 731, "value": runs_days },
        "retainRunsPerProtectedBranch": { "min": 0, "max": 50, "value": per_branch }
    })
}

/// The checks every request passes before its handler, and the scripted faults.
async fn gate(
    state: &Arc<Mutex<FakeState>>,
    kind: &'static str,
    method: &str,
    path: String,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<(), Response> {
    gate_version(state, kind, method, path, headers, query, "7.1").await
}

/// [`gate`] for an API that exists in another version (the build retention API: `7.1-preview.1`).
async fn gate_version(
    state: &Arc<Mutex<FakeState>>,
    kind: &'static str,
    method: &str,
    path: String,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    version: &str,
) -> Result<(), Response> {
    let (fault, down, slow) = {
        let mut fake = state.lock().unwrap();
        fake.requests.push((method.to_owned(), path));
        let fault = fake
            .faults
            .get_mut(kind)
            .and_then(VecDeque::pop_front)
            .or_else(|| fake.faults.get_mut("any").and_then(VecDeque::pop_front));
        (fault, fake.down, fake.slow)
    };
    if let Some(slow) = slow {
        tokio::time::sleep(slow).await;
    }
    if down {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "TF400898: An Internal Error Occurred.",
        ));
    }
    let expected = format!("Basic {}", STANDARD.encode(format!(":{TOKEN}")));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "TF400813: The user is not authorized to access this resource.",
        ));
    }
    if query.get("api-version").map(String::as_str) != Some(version) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            &format!("VssVersionOutOfRangeException: api-version {version} is required"),
        ));
    }
    match fault {
        None => Ok(()),
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "TF400733: The request has been canceled",
            );
            response
                .headers_mut()
                .insert("retry-after", retry_after_secs.into());
            Err(response)
        }
        Some(Fault::ServerError) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "TF400898: An Internal Error Occurred.",
        )),
        Some(Fault::Forbidden) => Err(error(
            StatusCode::FORBIDDEN,
            "TF401027: You need the Git 'Contribute' permission",
        )),
        Some(Fault::Stall(duration)) => {
            tokio::time::sleep(duration).await;
            Ok(())
        }
        Some(Fault::Redirect(location)) => {
            Err((StatusCode::FOUND, [("location", location)]).into_response())
        }
        Some(Fault::Foreign {
            status,
            content_type,
            body,
        }) => Err((
            StatusCode::from_u16(status).unwrap(),
            [("content-type", content_type)],
            body,
        )
            .into_response()),
    }
}

async fn project(
    State(state): State<Arc<Mutex<FakeState>>>,
    Path((_, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = gate(
        &state,
        "project",
        "GET",
        format!("projects/{name}"),
        &headers,
        &query,
    )
    .await
    {
        return response;
    }
    if name != PROJECT {
        return error(
            StatusCode::NOT_FOUND,
            &format!("TF200016: The following project does not exist: {name}."),
        );
    }
    Json(json!({ "id": "6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c", "name": PROJECT, "state": "wellFormed" })).into_response()
}

async fn build_retention(
    State(state): State<Arc<Mutex<FakeState>>>,
    Path((_, project)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = gate_version(
        &state,
        "retention",
        "GET",
        "build/retention".to_owned(),
        &headers,
        &query,
        "7.1-preview.1",
    )
    .await
    {
        return response;
    }
    if project != PROJECT {
        return error(
            StatusCode::NOT_FOUND,
            &format!("TF200016: The following project does not exist: {project}."),
        );
    }
    let retention = state.lock().unwrap().retention.clone();
    Json(retention).into_response()
}

async fn fields(
    State(state): State<Arc<Mutex<FakeState>>>,
    Path((_, project, kind)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = gate(
        &state,
        "fields",
        "GET",
        format!("workitemtypes/{kind}/fields"),
        &headers,
        &query,
    )
    .await
    {
        return response;
    }
    if project != PROJECT || kind != "Bug" {
        return error(
            StatusCode::NOT_FOUND,
            &format!("VS402323: Work item type {kind} does not exist."),
        );
    }
    let value: Vec<Value> = BUG_FIELDS
        .iter()
        .map(|f| json!({ "referenceName": f, "name": f }))
        .collect();
    Json(json!({ "count": value.len(), "value": value })).into_response()
}

async fn create_work_item(
    State(state): State<Arc<Mutex<FakeState>>>,
    Path((_, project, kind)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(response) = gate(
        &state,
        "work_item",
        "POST",
        format!("workitems/{kind}"),
        &headers,
        &query,
    )
    .await
    {
        return response;
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok())
        != Some("application/json-patch+json")
    {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be application/json-patch+json",
        );
    }
    if project != PROJECT || kind != "$Bug" {
        return error(
            StatusCode::NOT_FOUND,
            "VS402323: Work item type does not exist.",
        );
    }
    let Ok(Value::Array(operations)) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "You must pass a valid patch document in the body of the request.",
        );
    };
    let mut fields = HashMap::new();
    for operation in operations {
        let (Some("add"), Some(path)) = (operation["op"].as_str(), operation["path"].as_str())
        else {
            return error(StatusCode::BAD_REQUEST, "each operation needs op and path");
        };
        let Some(field) = path.strip_prefix("/fields/") else {
            return error(StatusCode::BAD_REQUEST, &format!("unsupported path {path}"));
        };
        if !BUG_FIELDS.contains(&field) {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("TF51535: Cannot find field {field}."),
            );
        }
        fields.insert(field.to_owned(), operation["value"].clone());
    }
    if !fields.contains_key("System.Title") {
        return error(
            StatusCode::BAD_REQUEST,
            "TF401320: Rule Error for field Title. Error code: Required.",
        );
    }
    fields.insert("System.State".to_owned(), json!("New"));
    let mut fake = state.lock().unwrap();
    let id = 1000 + fake.work_items.len() as u64;
    fake.work_items.push(FakeWorkItem {
        id,
        fields: fields.clone(),
    });
    let html = format!("https://dev.azure.com/{ORGANIZATION}/{PROJECT}/_workitems/edit/{id}");
    Json(json!({ "id": id, "rev": 1, "fields": fields, "_links": { "html": { "href": html } } }))
        .into_response()
}

async fn work_item(
    State(state): State<Arc<Mutex<FakeState>>>,
    Path((_, _, id)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = gate(
        &state,
        "work_item_get",
        "GET",
        format!("workitems/{id}"),
        &headers,
        &query,
    )
    .await
    {
        return response;
    }
    let fake = state.lock().unwrap();
    match fake.work_items.iter().find(|w| w.id.to_string() == id) {
        Some(item) => Json(
            json!({ "id": item.id, "fields": { "System.State": item.fields["System.State"] } }),
        )
        .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            &format!("TF401232: Work item {id} does not exist."),
        ),
    }
}

async fn wiql(
    State(state): State<Arc<Mutex<FakeState>>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Err(response) = gate(&state, "wiql", "POST", "wiql".to_owned(), &headers, &query).await {
        return response;
    }
    let text = body["query"].as_str().unwrap_or_default();
    let Some(tag) = text
        .split("CONTAINS '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "TF51005: The query references a field that does not exist.",
        );
    };
    let fake = state.lock().unwrap();
    let found: Vec<Value> = fake
        .work_items
        .iter()
        .filter(|w| w.fields.get("System.Tags").and_then(Value::as_str).is_some_and(|t| t.contains(tag)))
        .map(|w| json!({ "id": w.id, "url": format!("https://dev.azure.com/_apis/wit/workItems/{}", w.id) }))
        .collect();
    Json(json!({ "queryType": "flat", "workItems": found })).into_response()
}

async fn pull_request_status(
    State(state): State<Arc<Mutex<FakeState>>>,
    Path((_, _, repo, pr)): Path<(String, String, String, i64)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Err(response) = gate(
        &state,
        "status",
        "POST",
        format!("pullRequests/{pr}/statuses"),
        &headers,
        &query,
    )
    .await
    {
        return response;
    }
    if repo != REPOSITORY {
        return error(
            StatusCode::NOT_FOUND,
            "TF401019: The Git repository does not exist.",
        );
    }
    if body["context"]["name"].as_str().is_none_or(str::is_empty) {
        return error(
            StatusCode::BAD_REQUEST,
            "Context.Name cannot be null or empty.",
        );
    }
    let mut fake = state.lock().unwrap();
    if fake.inactive_pull_requests.contains(&pr) {
        return error(
            StatusCode::FORBIDDEN,
            "The requested pull request status cannot be updated as it requires an active pull request.",
        );
    }
    fake.statuses.push((pr, body.clone()));
    Json(json!({ "id": fake.statuses.len(), "state": body["state"], "context": body["context"] }))
        .into_response()
}

async fn pull_request_thread(
    State(state): State<Arc<Mutex<FakeState>>>,
    Path((_, _, _, pr)): Path<(String, String, String, i64)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Err(response) = gate(
        &state,
        "thread",
        "POST",
        format!("pullRequests/{pr}/threads"),
        &headers,
        &query,
    )
    .await
    {
        return response;
    }
    if body["comments"].as_array().is_none_or(Vec::is_empty) {
        return error(
            StatusCode::BAD_REQUEST,
            "Thread must contain at least one comment.",
        );
    }
    let mut fake = state.lock().unwrap();
    fake.threads.push((pr, body.clone()));
    Json(json!({ "id": fake.threads.len(), "status": "active" })).into_response()
}
