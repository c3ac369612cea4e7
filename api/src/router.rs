//! Every route of the service, and the layers around them.

use axum::extract::DefaultBodyLimit;
use axum::extract::{FromRef, State};
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::graphql::{self, LatheSchema};
use crate::intake::{ingest, webhook};
use crate::state::AppState;

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

/// Builds the application's router.
pub fn router(app: AppState) -> Router {
    let schema = graphql::build_schema(app.clone());
    let ingest_limit = app.limits.ingest_max_bytes;
    Router::new()
        .route(
            "/api/webhooks/azure-devops",
            post(webhook::azure_devops).layer(DefaultBodyLimit::max(webhook::MAX_BODY_BYTES)),
        )
        .route(
            "/api/v1/results/ingest",
            post(ingest::ingest).layer(DefaultBodyLimit::max(ingest_limit)),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/graphql/schema.graphql", get(graphql::schema_sdl))
        .route(
            "/graphql",
            get(graphql::graphiql).post(graphql::graphql_handler),
        )
        .with_state(RouterState { app, schema })
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
}

/// `GET /healthz`: the process is up.
async fn healthz() -> &'static str {
    "ok"
}

/// `GET /metrics`: Prometheus text: events stored and how far each projection is behind them.
async fn metrics(State(state): State<AppState>) -> Result<String, crate::error::ApiError> {
    use std::fmt::Write;
    let events = projections::audit::event_count(&state.pool).await?;
    let missing =
        projections::replay::missing_streams(&state.pool, &projections::Registry::standard())
            .await?;
    let mut out = String::new();
    let _ = writeln!(out, "# HELP lathe_events_total Events in the event store.");
    let _ = writeln!(out, "# TYPE lathe_events_total gauge");
    let _ = writeln!(out, "lathe_events_total {events}");
    let stats = state.store.append_stats();
    for (name, help, value) in [
        (
            "lathe_appends_total",
            "Commands whose events this process committed.",
            &stats.appends,
        ),
        (
            "lathe_append_batches_total",
            "Group-commit transactions of this process (appends / batches = mean batch).",
            &stats.batches,
        ),
        (
            "lathe_append_slow_batches_total",
            "Group-commit transactions that took over 250 ms to commit.",
            &stats.slow_batches,
        ),
    ] {
        let value = value.load(std::sync::atomic::Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP lathe_projection_missing_streams Streams without their row in a read model."
    );
    let _ = writeln!(out, "# TYPE lathe_projection_missing_streams gauge");
    for (name, count) in missing {
        let _ = writeln!(
            out,
            "lathe_projection_missing_streams{{projection=\"{name}\"}} {count}"
        );
    }
    Ok(out)
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
