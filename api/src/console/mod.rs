//! The browser console: the screens of the spec (Releases with the Build Queue, builds, projects, keys,
//! deliveries, the set-up guide) served by the binary itself.
//!
//! Layout:
//! - `api/console/`: the assets, plain HTML, CSS and JavaScript modules (no framework, no build step, no Node
//!   toolchain). `operations.graphql` holds every GraphQL operation the console sends; a test below validates it
//!   against the schema. `README.md` there says which file does what.
//! - [`assets`]: embeds those files at compile time (`include_bytes!`) and serves them under `/console/`; nothing
//!   is loaded from elsewhere at run time, so the console works on a closed network.
//! - [`session`]: signing in (an API key exchanged for an `HttpOnly`, `SameSite=Strict` cookie), who is signed in,
//!   signing out.
//! - [`guard`]: turns the session cookie into the key's `Authorization` header on `/graphql` (and its WebSocket),
//!   after the cross-site checks: the same origin, and the session's CSRF token on every request.

mod assets;
mod guard;
mod session;

use std::sync::Arc;

use axum::response::Redirect;
use axum::routing::get;
use axum::Router;

use crate::state::AppState;

pub use guard::cookie_to_bearer;
pub use session::Sessions;

/// Where the console is served.
pub const BASE: &str = "/console/";

/// The console's routes: its assets, its session endpoints, and `/` sending a browser to it.
pub fn router(app: AppState, sessions: Arc<Sessions>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to(BASE) }))
        .route("/console", get(|| async { Redirect::to(BASE) }))
        .route(
            "/console/session",
            get(session::current)
                .post(session::sign_in)
                .delete(session::sign_out),
        )
        .route("/console/", get(assets::index))
        .route("/console/{*file}", get(assets::file))
        .with_state(session::ConsoleState { app, sessions })
}

#[cfg(test)]
mod operations_test;
