//! The console's files, embedded at compile time and served with headers that keep them on this origin.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Every file under `api/console/` the browser loads: name, content type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../console/index.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../console/style.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/api.js"),
    ),
    (
        "ui.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/ui.js"),
    ),
    (
        "releases.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/releases.js"),
    ),
    (
        "admin.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/admin.js"),
    ),
    (
        "operations.graphql",
        "application/graphql; charset=utf-8",
        include_bytes!("../../console/operations.graphql"),
    ),
];

/// The operations document, for the test that validates it.
#[cfg(test)]
pub(super) fn operations() -> &'static str {
    let (_, _, bytes) = FILES
        .iter()
        .find(|(name, _, _)| *name == "operations.graphql")
        .expect("operations.graphql is embedded");
    std::str::from_utf8(bytes).expect("operations.graphql is UTF-8")
}

/// The scripts, by name, for the test that checks the operations they name exist.
#[cfg(test)]
pub(super) fn scripts() -> impl Iterator<Item = (&'static str, &'static str)> {
    FILES
        .iter()
        .filter(|(name, _, _)| name.ends_with(".js"))
        .map(|(name, _, bytes)| {
            (
                *name,
                std::str::from_utf8(bytes).expect("scripts are UTF-8"),
            )
        })
}

/// One operation of the document, cut the way `api.js` cuts it: from a line starting with its keyword and name
/// to the next line starting with a keyword.
#[cfg(test)]
pub(super) fn operation<'a>(document: &'a str, name: &str) -> Option<&'a str> {
    const KEYWORDS: [&str; 3] = ["query ", "mutation ", "subscription "];
    let starts = |line: &str| KEYWORDS.iter().any(|k| line.starts_with(k));
    let mut offset = 0;
    let mut start = None;
    for line in document.split_inclusive('\n') {
        if starts(line) {
            if let Some(start) = start {
                return Some(&document[start..offset]);
            }
            let named = line.split_whitespace().nth(1).unwrap_or_default();
            let named = named.split(['(', '{']).next().unwrap_or_default();
            if named == name {
                start = Some(offset);
            }
        }
        offset += line.len();
    }
    start.map(|start| &document[start..])
}

/// Scripts, styles, images and connections from this origin only; no framing; forms post only here.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// `GET /console/`: the page every screen is drawn in.
pub async fn index() -> Response {
    serve("index.html")
}

/// `GET /console/<file>`: one embedded file; anything else is 404 (screens are addressed by the URL's fragment).
pub async fn file(Path(name): Path<String>) -> Response {
    serve(&name)
}

fn serve(name: &str) -> Response {
    let Some((_, content_type, bytes)) = FILES.iter().find(|(file, _, _)| *file == name) else {
        return (StatusCode::NOT_FOUND, "no such console file").into_response();
    };
    let mut response = (*bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Small files, changed with every release of the binary: revalidated each time rather than versioned.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}
