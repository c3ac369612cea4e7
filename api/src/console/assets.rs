//! The console's files, embedded at compile time and served with headers that keep them on this origin.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// One embedded file: its name under `/console/`, content type, bytes, and the bytes gzipped by `build.rs`.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
    gzipped: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:literal) => {
        Asset {
            name: $name,
            content_type: $type,
            bytes: include_bytes!(concat!("../../console/", $name)),
            gzipped: include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".gz")),
        }
    };
}

/// Every file under `api/console/` the browser loads (`build.rs` lists the same names).
const FILES: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("ui.js", "text/javascript; charset=utf-8"),
    asset!("releases.js", "text/javascript; charset=utf-8"),
    asset!("admin.js", "text/javascript; charset=utf-8"),
    asset!("operations.graphql", "application/graphql; charset=utf-8"),
];

/// The operations document, for the test that validates it.
#[cfg(test)]
pub(super) fn operations() -> &'static str {
    let asset = FILES
        .iter()
        .find(|asset| asset.name == "operations.graphql")
        .expect("operations.graphql is embedded");
    std::str::from_utf8(asset.bytes).expect("operations.graphql is UTF-8")
}

/// The scripts, by name, for the test that checks the operations they name exist.
#[cfg(test)]
pub(super) fn scripts() -> impl Iterator<Item = (&'static str, &'static str)> {
    FILES
        .iter()
        .filter(|asset| asset.name.ends_with(".js"))
        .map(|asset| {
            (
                asset.name,
                std::str::from_utf8(asset.bytes).expect("scripts are UTF-8"),
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
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /console/<file>`: one embedded file; anything else is 404 (screens are addressed by the URL's fragment).
pub async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(&name, &headers)
}

/// Whether the request accepts gzip (every browser does; `curl` without `--compressed` does not).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or_default().trim();
            let refused = parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

fn serve(name: &str, request: &HeaderMap) -> Response {
    let Some(asset) = FILES.iter().find(|asset| asset.name == name) else {
        return (StatusCode::NOT_FOUND, "no such console file").into_response();
    };
    let gzip = accepts_gzip(request);
    let mut response = if gzip { asset.gzipped } else { asset.bytes }.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_served_only_to_those_who_accept_it() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(value));
            accepts_gzip(&headers)
        };
        assert!(with("gzip, deflate, br, zstd"));
        assert!(with("br;q=1.0, GZIP;q=0.5"));
        assert!(!with("gzip;q=0, br"));
        assert!(!with("identity"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn every_asset_is_embedded_gzipped_and_smaller() {
        for asset in FILES {
            assert_eq!(&asset.gzipped[..2], &[0x1f, 0x8b], "{} is gzip", asset.name);
            assert!(asset.gzipped.len() < asset.bytes.len(), "{}", asset.name);
        }
    }
}
