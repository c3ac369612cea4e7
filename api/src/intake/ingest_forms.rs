//! The forms an ingest call's body may take: the JSON body, one report file (build fields in the query), or
//! multipart/form-data with build fields and report files; each may be gzip-encoded. Whatever the form, the
//! decoded bytes count against `LATHE_INGEST_MAX_BYTES`, and the request's hash (for `Idempotency-Key`) is taken
//! over what the call means (fields and decoded files), not over its encoding or multipart boundary.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read as _};

use axum::body::Bytes;
use axum::http::{header, HeaderMap, Uri};
use flate2::bufread::MultiGzDecoder;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use domain::build_queue::TestResult;

use super::ingest_body::{from_fields, parse_body};
use super::reports::{self, Format, ReportError, Tracked};
use super::BuildSubmission;
use crate::error::{ApiError, FieldError};

/// Buffer between the gzip decoder and its readers.
const GZIP_BUFFER: usize = 64 * 1024;

/// An ingest call's body, understood.
pub(super) struct Understood {
    pub(super) submission: BuildSubmission,
    /// SHA-256 (hex) of what the call means, for `Idempotency-Key`.
    pub(super) request_hash: String,
}

/// Reads the body in whichever form it came.
pub(super) async fn read(
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
    organization_id: Uuid,
    idempotency_key: Option<&str>,
    limit: usize,
) -> Result<Understood, ApiError> {
    let gzip = gzip(headers)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let query = Query::parse(uri)?;
    if mime == "multipart/form-data" {
        let boundary = multer::parse_boundary(content_type).map_err(|error| {
            ApiError::BadUserInput(format!(
                "the multipart body has no usable boundary: {error}"
            ))
        })?;
        let body = if gzip {
            Bytes::from(decode_all(&body, limit)?)
        } else {
            body
        };
        return multipart(
            body,
            &boundary,
            query,
            organization_id,
            idempotency_key,
            limit,
        )
        .await;
    }
    let xml = match mime.as_str() {
        "application/json" => false,
        "application/xml" | "text/xml" => true,
        m if m.ends_with("+xml") => true,
        // No type, or curl's default for `--data-binary`: a report is recognised by its first character.
        _ => query.format.is_some() || starts_with_markup(&body, gzip),
    };
    if !xml {
        let decoded = if gzip {
            Bytes::from(decode_all(&body, limit)?)
        } else {
            body
        };
        let request_hash = hex::encode(Sha256::digest(&decoded));
        let submission = parse_body(&decoded, organization_id, idempotency_key)?;
        return Ok(Understood {
            submission,
            request_hash,
        });
    }
    let mut hasher = Sha256::new();
    hasher.update(b"report\n");
    query.hash(&mut hasher);
    let mut results = Vec::new();
    read_report(
        &body,
        gzip,
        limit as u64,
        query.format,
        "body",
        &mut hasher,
        &mut results,
    )
    .map_err(|error| error.into_api("body", limit))?;
    let submission = from_fields(&query.fields, results, organization_id, idempotency_key)?;
    Ok(Understood {
        submission,
        request_hash: hex::encode(hasher.finalize()),
    })
}

/// Build fields and files from a multipart body: every file's results become one upload.
async fn multipart(
    body: Bytes,
    boundary: &str,
    mut query: Query,
    organization_id: Uuid,
    idempotency_key: Option<&str>,
    limit: usize,
) -> Result<Understood, ApiError> {
    let stream = futures::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut parts = multer::Multipart::new(stream, boundary);
    let mut hasher = Sha256::new();
    hasher.update(b"multipart\n");
    let mut results = Vec::new();
    let mut budget = limit as u64;
    let mut files = 0usize;
    let unreadable = |error: multer::Error| {
        ApiError::BadUserInput(format!("the multipart body could not be read: {error}"))
    };
    while let Some(part) = parts.next_field().await.map_err(unreadable)? {
        let name = part.name().unwrap_or_default().to_owned();
        let file_name = part.file_name().map(str::to_owned);
        if file_name.is_none() {
            let value = part.text().await.map_err(unreadable)?;
            query.fields.insert(name, Value::String(value));
            continue;
        }
        let bytes = part.bytes().await.map_err(unreadable)?;
        let label = format!("file {}", file_name.as_deref().unwrap_or(&name));
        hasher.update(format!("\n{label}\n").as_bytes());
        let gzip = bytes.starts_with(&[0x1f, 0x8b]);
        // The 413 names the call's limit, which all its files share.
        budget -= read_report(
            &bytes,
            gzip,
            budget,
            query.format,
            &label,
            &mut hasher,
            &mut results,
        )
        .map_err(|error| error.into_api(&label, limit))?;
        files += 1;
    }
    if files == 0 {
        return Err(ApiError::InvalidFields(vec![FieldError::new(
            "files",
            "a multipart call needs at least one report file (a part with a filename)",
        )]));
    }
    query.hash(&mut hasher);
    let submission = from_fields(&query.fields, results, organization_id, idempotency_key)?;
    Ok(Understood {
        submission,
        request_hash: hex::encode(hasher.finalize()),
    })
}

/// Reads one report file (gzip or not) into `results`; returns how many decoded bytes it spent of `budget`.
fn read_report(
    bytes: &[u8],
    gzip: bool,
    budget: u64,
    format: Option<Format>,
    label: &str,
    hasher: &mut Sha256,
    results: &mut Vec<TestResult>,
) -> Result<u64, ReportError> {
    let source: Box<dyn BufRead + '_> = if gzip {
        Box::new(BufReader::with_capacity(
            GZIP_BUFFER,
            MultiGzDecoder::new(bytes),
        ))
    } else {
        Box::new(bytes)
    };
    reports::read(Tracked::new(source, budget, hasher), format, label, results)
}

/// A gzip body decoded whole, for the forms that need their bytes (JSON, multipart); over `limit` is 413.
fn decode_all(body: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut decoded = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    MultiGzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut decoded)
        .map_err(|error| {
            ApiError::BadUserInput(format!("the body is not a valid gzip stream: {error}"))
        })?;
    if decoded.len() > limit {
        return Err(ApiError::PayloadTooLarge { limit_bytes: limit });
    }
    Ok(decoded)
}

/// Whether the (decoded) body's first character other than a byte-order mark or white space is `<`.
fn starts_with_markup(body: &[u8], gzip: bool) -> bool {
    let mut head = [0u8; 512];
    let n = if gzip {
        MultiGzDecoder::new(body).read(&mut head).unwrap_or(0)
    } else {
        let n = body.len().min(head.len());
        head[..n].copy_from_slice(&body[..n]);
        n
    };
    let head = &head[..n];
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<')
}

/// `Content-Encoding`: none or gzip.
fn gzip(headers: &HeaderMap) -> Result<bool, ApiError> {
    match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or_default().trim().to_ascii_lowercase())
    {
        None => Ok(false),
        Some(encoding) if encoding.is_empty() || encoding == "identity" => Ok(false),
        Some(encoding) if encoding == "gzip" || encoding == "x-gzip" => Ok(true),
        Some(encoding) => Err(ApiError::BadUserInput(format!(
            "Content-Encoding {encoding} is not accepted: send the body as is or gzip-encoded"
        ))),
    }
}

/// The query string of a report upload: the build's fields, and `format`.
struct Query {
    fields: Map<String, Value>,
    format: Option<Format>,
}

impl Query {
    fn parse(uri: &Uri) -> Result<Self, ApiError> {
        let mut fields = Map::new();
        let mut format = None;
        for (key, value) in url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        {
            if key == "format" {
                format = Some(Format::parse(&value).ok_or_else(|| {
                    ApiError::InvalidFields(vec![FieldError::new(
                        "format",
                        "must be junit, nunit, xunit or trx (or left out: the root element tells)",
                    )])
                })?);
            } else {
                fields.insert(key.into_owned(), Value::String(value.into_owned()));
            }
        }
        Ok(Self { fields, format })
    }

    /// Feeds the fields, in a fixed order, to the request's hash.
    fn hash(&self, hasher: &mut Sha256) {
        let sorted: BTreeMap<_, _> = self.fields.iter().collect();
        for (key, value) in sorted {
            hasher.update(format!("\n{key}={}", value.as_str().unwrap_or_default()).as_bytes());
        }
    }
}
