//! Console sessions: an API key exchanged for a random session id in an `HttpOnly`, `SameSite=Strict` cookie.
//!
//! The key stays on the server, in this process's memory, for as long as the session lives; the browser only holds
//! the session id (out of reach of scripts) and the session's CSRF token (which scripts must send back, so that a
//! request another site makes the browser send is refused). Sessions are not persisted: a restart signs everyone
//! out, and behind a load balancer the console needs sticky sessions.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::distributions::{Alphanumeric, DistString};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::auth::authenticate_key;
use crate::error::ApiError;
use crate::state::AppState;
use crate::transport::ClientIp;

/// The cookie holding the session id.
pub const COOKIE: &str = "lathe_session";
/// The header carrying the session's CSRF token on every cookie-authenticated request.
pub const CSRF_HEADER: &str = "x-lathe-csrf";
/// Sessions held at most; the least recently used go first.
const MAX_SESSIONS: u64 = 10_000;

/// One signed-in browser.
pub struct Session {
    /// The key it signed in with; sent on as `Authorization: Bearer`, so every check a key gets applies.
    pub key: SecretString,
    pub csrf_token: String,
    prefix: String,
}

/// The process's console sessions, by the SHA-256 of their id (a memory dump shows no usable cookie).
pub struct Sessions {
    entries: moka::future::Cache<[u8; 32], Arc<Session>>,
}

impl Sessions {
    /// Sessions that end after `idle` unused.
    pub fn new(idle: Duration) -> Self {
        Self {
            entries: moka::future::Cache::builder()
                .max_capacity(MAX_SESSIONS)
                .time_to_idle(idle)
                .build(),
        }
    }

    /// The session of a cookie's id, if it lives.
    pub async fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.entries.get(&digest(id)).await
    }

    async fn start(&self, key: &str, prefix: String) -> (String, Arc<Session>) {
        let id = Alphanumeric.sample_string(&mut rand::rngs::OsRng, 43);
        let session = Arc::new(Session {
            key: SecretString::from(key.to_owned()),
            csrf_token: Alphanumeric.sample_string(&mut rand::rngs::OsRng, 43),
            prefix,
        });
        self.entries.insert(digest(&id), session.clone()).await;
        (id, session)
    }

    async fn end(&self, id: &str) {
        self.entries.invalidate(&digest(id)).await;
    }
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// What the console's handlers share.
#[derive(Clone)]
pub struct ConsoleState {
    pub app: AppState,
    pub sessions: Arc<Sessions>,
}

/// The session id in a request's cookies.
pub fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// Whether the request's `Origin` names this very host (a request another site makes the browser send names
/// that site). The host is the `Host` header, or over HTTP/2 (which has none) the request's `:authority`. A request
/// without `Origin` passes this check only where `required` is false.
pub fn same_origin(headers: &HeaderMap, uri: &Uri, required: bool) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return !required;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

/// A console refusal: `{"error": {"code", "message"}}` with the error's status.
fn refuse(error: ApiError) -> Response {
    error.into_response()
}

fn cross_site() -> Response {
    refuse(ApiError::Forbidden(
        "a request from another site is not accepted here".to_owned(),
    ))
}

/// The body of `POST /console/session`.
#[derive(Deserialize)]
pub struct SignIn {
    key: String,
}

/// `POST /console/session` with `{"key": "pt_live_…"}`: starts a session. A wrong key is 401 and spends the
/// client address's budget for refused credentials (past it, 429 with `Retry-After`).
pub async fn sign_in(
    State(console): State<ConsoleState>,
    client: ClientIp,
    uri: Uri,
    headers: HeaderMap,
    body: Option<Json<SignIn>>,
) -> Response {
    // A JSON body cannot come from another site's form, and `Origin` says whose page sent it.
    if !same_origin(&headers, &uri, true) {
        return cross_site();
    }
    let Some(Json(SignIn { key })) = body else {
        return refuse(ApiError::BadUserInput(
            "send the API key as JSON: {\"key\": \"pt_live_…\"}".to_owned(),
        ));
    };
    let principal = match authenticate_key(&console.app, key.trim()).await {
        Ok(principal) => principal,
        Err(ApiError::Internal(cause)) => return refuse(ApiError::Internal(cause)),
        Err(refused) => {
            return match console.app.unauthenticated.spend(client.0).await {
                Err(limited) => refuse(limited),
                Ok(()) => refuse(refused),
            }
        }
    };
    let (id, session) = console
        .sessions
        .start(key.trim(), principal.prefix.clone())
        .await;
    // `Secure` whenever the page itself came over HTTPS (also behind a proxy that terminates TLS).
    let secure = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|origin| origin.starts_with("https://"));
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    );
    let scopes: Vec<String> = principal.scopes.iter().map(ToString::to_string).collect();
    let mut response = Json(json!({
        "prefix": principal.prefix,
        "organizationId": principal.organization_id,
        "scopes": scopes,
        "csrfToken": session.csrf_token,
    }))
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `GET /console/session`: the signed-in key (prefix, scopes) and the session's CSRF token, or 401. Another site
/// cannot read the answer (no CORS), and with `SameSite=Strict` its requests carry no cookie anyway.
pub async fn current(State(console): State<ConsoleState>, headers: HeaderMap) -> Response {
    let session = match cookie_value(&headers) {
        Some(id) => console.sessions.get(id).await,
        None => None,
    };
    let Some(session) = session else {
        return refuse(ApiError::Unauthenticated("not signed in".to_owned()));
    };
    // The key may have been revoked or have expired since: the session ends with it.
    match authenticate_key(&console.app, session.key.expose_secret()).await {
        Ok(principal) => {
            let scopes: Vec<String> = principal.scopes.iter().map(ToString::to_string).collect();
            Json(json!({
                "prefix": session.prefix,
                "organizationId": principal.organization_id,
                "scopes": scopes,
                "csrfToken": session.csrf_token,
            }))
            .into_response()
        }
        Err(ApiError::Internal(cause)) => refuse(ApiError::Internal(cause)),
        Err(refused) => {
            if let Some(id) = cookie_value(&headers) {
                console.sessions.end(id).await;
            }
            refuse(refused)
        }
    }
}

/// `DELETE /console/session` (with the CSRF token): ends the session and clears the cookie.
pub async fn sign_out(
    State(console): State<ConsoleState>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if !same_origin(&headers, &uri, false) {
        return cross_site();
    }
    if let Some(id) = cookie_value(&headers) {
        let Some(session) = console.sessions.get(id).await else {
            return clear_cookie(StatusCode::NO_CONTENT.into_response());
        };
        let sent = headers.get(CSRF_HEADER).map(HeaderValue::as_bytes);
        if !sent.is_some_and(|token| csrf_matches(&session, token)) {
            return refuse(ApiError::Forbidden(
                "the console's CSRF token is missing or wrong".to_owned(),
            ));
        }
        console.sessions.end(id).await;
    }
    clear_cookie(StatusCode::NO_CONTENT.into_response())
}

/// Compares a sent CSRF token with the session's in constant time.
pub fn csrf_matches(session: &Session, sent: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(session.csrf_token.as_bytes().ct_eq(sent))
}

fn clear_cookie(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("lathe_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn the_origin_must_name_the_host_the_request_was_sent_to() {
        let path: Uri = "/graphql".parse().unwrap();
        let same = headers(&[
            ("origin", "https://lathe.example"),
            ("host", "lathe.example"),
        ]);
        assert!(same_origin(&same, &path, true));
        let other = headers(&[
            ("origin", "https://evil.example"),
            ("host", "lathe.example"),
        ]);
        assert!(!same_origin(&other, &path, false));
        let port = headers(&[("origin", "http://127.0.0.1:9"), ("host", "127.0.0.1:8080")]);
        assert!(!same_origin(&port, &path, false));
        // HTTP/2 has no Host header: the request's authority stands for it.
        let h2: Uri = "https://lathe.example/graphql".parse().unwrap();
        assert!(same_origin(
            &headers(&[("origin", "https://lathe.example")]),
            &h2,
            true
        ));
        // Without Origin: allowed only where it is not required.
        assert!(same_origin(
            &headers(&[("host", "lathe.example")]),
            &path,
            false
        ));
        assert!(!same_origin(
            &headers(&[("host", "lathe.example")]),
            &path,
            true
        ));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let sent = headers(&[("cookie", "a=1; lathe_session=abc; b=2")]);
        assert_eq!(cookie_value(&sent), Some("abc"));
        assert_eq!(
            cookie_value(&headers(&[("cookie", "xlathe_session=1")])),
            None
        );
    }
}
