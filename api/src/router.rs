//! Every route of the service, and the layers around them.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, State};
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::console;
use crate::graphql::{self, LatheSchema};
use crate::intake::{ingest, webhook};
use crate::state::AppState;
use crate::transport::Edge;

/// State of the router: handlers extract the part they need.
#[derive(Clone)]
pub struct RouterState {
    pub app: AppState,
    pub schema: LatheSchema,
}

impl FromRef<RouterState> for AppState {
    fn from_ref(state: &RouterState) -> Self {
        state.app.clone()
    }
}

impl FromRef<RouterState> for LatheSchema {
    fn from_ref(state: &RouterState) -> Self {
        state.schema.clone()
    }
}

/// Every route of the application with its state, without the layers (see [`with_layers`]). `/metrics` is added
/// by the caller, on this router or on a listener of its own.
pub fn routes(app: AppState) -> Router {
    let schema = graphql::build_schema(app.clone());
    let sessions = Arc::new(console::Sessions::new(Duration::from_secs(
        app.limits.console_session_idle_minutes.saturating_mul(60),
    )));
    let console = console::router(app.clone(), sessions.clone());
    Router::new()
        .route("/api/webhooks/azure-devops", post(webhook::azure_devops))
        // The ingest body is read as it arrives, with its own limit (`intake::ingest_forms`).
        .route("/api/v1/results/ingest", post(ingest::ingest))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/graphql/schema.graphql", get(graphql::schema_sdl))
        .route(
            "/graphql",
            get(graphql::graphiql).post(graphql::graphql_handler),
        )
        .route("/graphql/ws", get(graphql::ws::handler))
        .with_state(RouterState { app, schema })
        .merge(console)
        // The console's session cookie stands for its key on `/graphql` only, after the cross-site checks.
        .layer(axum::middleware::from_fn_with_state(
            sessions,
            console::cookie_to_bearer,
        ))
}

/// Wraps `routes` in every layer a served router has: the panic guard, timeouts and client addresses (see
/// [`crate::transport::layers`]), then tracing and request ids.
pub fn with_layers(routes: Router, edge: &Edge) -> Router {
    crate::transport::layers(routes, edge)
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .on_response(DefaultOnResponse::new().level(Level::INFO))
                .make_span_with(|request: &Request<_>| {
                    let request_id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or_default();
                    tracing::info_span!(
                        "request",
                        http.method = %request.method(),
                        http.path = request.uri().path(),
                        request.id = request_id,
                    )
                }),
        )
        // Outermost, so that the id exists before the span is made and is echoed on every response.
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(axum::middleware::map_request(drop_unusable_request_id))
}

/// Longest request id a caller may choose; it is kept in the metadata of every event the request causes.
const MAX_REQUEST_ID_BYTES: usize = 128;

/// A caller's `X-Request-Id` that is overlong or holds anything but visible ASCII is replaced by a new one (events
/// are forever: a 60 KB id would be copied into each of them).
async fn drop_unusable_request_id(
    mut request: Request<axum::body::Body>,
) -> Request<axum::body::Body> {
    let usable = request.headers().get("x-request-id").is_none_or(|id| {
        !id.is_empty()
            && id.len() <= MAX_REQUEST_ID_BYTES
            && id.as_bytes().iter().all(u8::is_ascii_graphic)
    });
    if !usable {
        request.headers_mut().remove("x-request-id");
    }
    request
}

/// `GET /healthz`: the process is up.
async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the database answers.
async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    match sqlx::query("SELECT 1").execute(&state.pool).await {
        Ok(_) => (StatusCode::OK, "ready"),
        Err(error) => {
            tracing::warn!(error = %error, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
        }
    }
}
