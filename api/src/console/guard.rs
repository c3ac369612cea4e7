//! The console session on `/graphql`: a request carrying the session cookie (and no `Authorization` header) is
//! checked against cross-site use and then sent on with the session's key as `Authorization: Bearer`, so that
//! scopes, rate limits, revocation and the actor recorded in events are exactly those of the key.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde_json::json;

use super::session::{cookie_value, csrf_matches, same_origin, Sessions, CSRF_HEADER};
use crate::error::ApiError;

/// Middleware: see the module's note. The cookie authenticates nothing but `/graphql` and `/graphql/ws` (never the
/// webhook or the ingest API); on `/graphql` every request needs the session's CSRF token in `X-Lathe-CSRF` and,
/// when the browser names one, this origin; the WebSocket upgrade (which cannot carry a header of the script's
/// choosing) needs this origin, which browsers always name on it.
pub async fn cookie_to_bearer(
    State(sessions): State<Arc<Sessions>>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let websocket = path == "/graphql/ws" && request.method() == Method::GET;
    let graphql = path == "/graphql" && request.method() == Method::POST;
    if !(websocket || graphql) || request.headers().contains_key(header::AUTHORIZATION) {
        return next.run(request).await;
    }
    let headers = request.headers();
    let Some(id) = cookie_value(headers) else {
        return next.run(request).await;
    };
    if !same_origin(headers, request.uri(), websocket) {
        return refuse(ApiError::Forbidden(
            "a request from another site is not accepted with the console's session".to_owned(),
        ));
    }
    let Some(session) = sessions.get(id).await else {
        return refuse(ApiError::Unauthenticated(
            "the console session has ended; sign in again".to_owned(),
        ));
    };
    if graphql {
        let sent = headers.get(CSRF_HEADER).map(HeaderValue::as_bytes);
        if !sent.is_some_and(|token| csrf_matches(&session, token)) {
            return refuse(ApiError::Forbidden(
                "the console's CSRF token is missing or wrong (a request from another site?)"
                    .to_owned(),
            ));
        }
    }
    let Ok(bearer) = HeaderValue::from_str(&format!("Bearer {}", session.key.expose_secret()))
    else {
        return refuse(ApiError::Unauthenticated("sign in again".to_owned()));
    };
    let headers = request.headers_mut();
    headers.insert(header::AUTHORIZATION, bearer);
    headers.remove(header::COOKIE);
    next.run(request).await
}

/// A refusal in GraphQL's shape, since the caller is a GraphQL client.
fn refuse(error: ApiError) -> Response {
    let status = error.status();
    let body = json!({
        "data": null,
        "errors": [{ "message": error.to_string(), "extensions": { "code": error.code() } }],
    });
    (status, axum::Json(body)).into_response()
}
