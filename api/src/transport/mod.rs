//! How requests reach the handlers: the listener (TLS, header deadline, graceful shutdown), the client's address
//! through trusted proxies, body and request timeouts, and the guard that turns a panic into a 500.

mod client;
pub mod listener;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

pub use client::{client_address, ClientIp, IpRange};

use crate::config::Settings;
use crate::error::ApiError;

/// What the layers around the routes need from the settings.
#[derive(Debug, Clone)]
pub struct Edge {
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Arc<[IpRange]>,
    /// Longest silence while a request body is read.
    pub body_read_timeout: Duration,
    /// Longest a whole request may take.
    pub request_timeout: Duration,
}

impl Edge {
    /// The edge of a service run with `settings`.
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            trusted_proxies: settings.trusted_proxies.clone().into(),
            body_read_timeout: Duration::from_secs(settings.body_read_timeout_secs.max(1)),
            request_timeout: Duration::from_secs(settings.request_timeout_secs.max(1)),
        }
    }
}

/// Wraps `routes` in the panic guard, the timeouts and the client-address resolution (innermost first).
pub fn layers(routes: Router, edge: &Edge) -> Router {
    let trusted = edge.trusted_proxies.clone();
    routes
        // Innermost, so that a panic becomes a response every outer layer (trace, request id) still sees.
        .layer(CatchPanicLayer::custom(panic_response))
        // A body that stops arriving fails its read; the handler answers as for any unreadable body.
        .layer(RequestBodyTimeoutLayer::new(edge.body_read_timeout))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            edge.request_timeout,
        ))
        .layer(axum::middleware::map_response(timeout_body))
        .layer(axum::middleware::from_fn(move |request, next| {
            client::resolve(trusted.clone(), request, next)
        }))
}

/// Gives the timeout layer's bare 408 the JSON error body every other refusal has.
async fn timeout_body(response: Response) -> Response {
    if response.status() != StatusCode::REQUEST_TIMEOUT {
        return response;
    }
    let body = serde_json::json!({ "error": {
        "code": "REQUEST_TIMEOUT",
        "message": "the request took longer than this service allows; send it again, faster",
    }});
    (StatusCode::REQUEST_TIMEOUT, axum::Json(body)).into_response()
}

/// The answer to a request whose handler panicked: the usual 500 JSON error, with the panic logged.
fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    // `into_response` logs the cause of an internal error.
    ApiError::internal(anyhow::anyhow!("the handler panicked: {message}")).into_response()
}
