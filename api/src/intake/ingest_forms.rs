//! The forms an ingest call's body may take: the JSON body, one report file (build fields in the query), or
//! multipart/form-data with build fields and report files; each may be gzip-encoded. Whatever the form, the
//! decoded bytes count against `LATHE_INGEST_MAX_BYTES`, and the request's hash (for `Idempotency-Key`) is taken
//! over what the call means (fields and decoded files), not over its encoding or multipart boundary.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read as _};

use axum::body::{Body, BodyDataStream, Bytes};
use axum::http::{header, HeaderMap, Uri};
use flate2::bufread::MultiGzDecoder;
use futures::{Stream, StreamExt};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use uuid::Uuid;

use domain::build_queue::TestResult;

use super::ingest_body::{from_fields, parse_body};
use super::reports::{self, Format, ReportError, Tracked};
use super::BuildSubmission;
use crate::error::{ApiError, FieldError};

/// Buffer between the gzip decoder and its readers.
const GZIP_BUFFER: usize = 64 * 1024;
/// Chunks of a report's body waiting for its reader: the most of a report held in memory at once, besides what was
/// read from it.
const CHUNKS_WAITING: usize = 4;
/// Bytes looked at to tell a report from a JSON body when the call names no type.
const SNIFF: usize = 512;
/// Report calls one organization may have being read at once: each holds a thread of the blocking pool while its
/// body arrives (bounded in time by the body's silence timeout and the request timeout), so that one tenant's slow
/// uploads cannot take the pool from the others.
pub const REPORTS_READ_AT_ONCE_PER_ORGANIZATION: usize = 16;

/// The report calls being read, per organization.
#[derive(Default)]
pub struct ReportReaders {
    reading: std::sync::Mutex<std::collections::HashMap<Uuid, usize>>,
}

/// One report call's place among its organization's, given back when dropped.
struct Reading<'a> {
    readers: &'a ReportReaders,
    organization_id: Uuid,
}

impl ReportReaders {
    fn start(&self, organization_id: Uuid) -> Result<Reading<'_>, ApiError> {
        let mut reading = self.reading.lock().expect("report readers");
        let count = reading.entry(organization_id).or_default();
        if *count >= REPORTS_READ_AT_ONCE_PER_ORGANIZATION {
            return Err(ApiError::TooMany(format!(
                "this organization has {REPORTS_READ_AT_ONCE_PER_ORGANIZATION} report uploads being read at once, \
                 the most it may; retry when one has finished"
            )));
        }
        *count += 1;
        Ok(Reading {
            readers: self,
            organization_id,
        })
    }
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        let mut reading = self.readers.reading.lock().expect("report readers");
        if let Some(count) = reading.get_mut(&self.organization_id) {
            *count -= 1;
            if *count == 0 {
                reading.remove(&self.organization_id);
            }
        }
    }
}

/// An ingest call's body, understood.
pub(super) struct Understood {
    pub(super) submission: BuildSubmission,
    /// SHA-256 (hex) of what the call means, for `Idempotency-Key`.
    pub(super) request_hash: String,
}

/// Reads the body in whichever form it came. A report is read as its bytes arrive, never held whole; a JSON
/// body is read whole, then parsed.
pub(super) async fn read(
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
    organization_id: Uuid,
    idempotency_key: Option<&str>,
    limit: usize,
    readers: &ReportReaders,
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
    let mut incoming = Incoming::new(body, limit);
    if mime == "multipart/form-data" {
        let boundary = multer::parse_boundary(content_type).map_err(|error| {
            ApiError::BadUserInput(format!(
                "the multipart body has no usable boundary: {error}"
            ))
        })?;
        let _reading = readers.start(organization_id)?;
        if gzip {
            // A gzip-encoded multipart body (rare: files are usually compressed one by one) is decoded whole.
            let decoded = decode_all(&incoming.collect().await?, limit)?;
            incoming = Incoming::from_bytes(Bytes::from(decoded), limit);
        }
        return multipart(
            incoming,
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
        _ => query.format.is_some() || starts_with_markup(&incoming.peek(SNIFF).await?, gzip),
    };
    if !xml {
        let body = incoming.collect().await?;
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
    let _reading = readers.start(organization_id)?;
    let mut hasher = Sha256::new();
    hasher.update(b"report\n");
    query.hash(&mut hasher);
    let report = read_streamed(
        incoming.into_stream(),
        Some(gzip),
        limit as u64,
        query.format,
        "body".to_owned(),
        hasher,
        limit,
    )
    .await?;
    let submission = from_fields(
        &query.fields,
        report.results,
        organization_id,
        idempotency_key,
    )?;
    Ok(Understood {
        submission,
        request_hash: hex::encode(report.hasher.finalize()),
    })
}

/// Build fields and files from a multipart body, each file read as its part arrives: every file's results
/// become one upload.
async fn multipart(
    incoming: Incoming,
    boundary: &str,
    mut query: Query,
    organization_id: Uuid,
    idempotency_key: Option<&str>,
    limit: usize,
) -> Result<Understood, ApiError> {
    let mut parts = multer::Multipart::new(incoming.into_multer_stream(), boundary);
    let mut hasher = Sha256::new();
    hasher.update(b"multipart\n");
    let mut results = Vec::new();
    let mut budget = limit as u64;
    let mut files = 0usize;
    while let Some(part) = parts.next_field().await.map_err(unreadable)? {
        let name = part.name().unwrap_or_default().to_owned();
        let file_name = part.file_name().map(str::to_owned);
        if file_name.is_none() {
            let value = part.text().await.map_err(unreadable)?;
            query.fields.insert(name, Value::String(value));
            continue;
        }
        let label = format!("file {}", file_name.as_deref().unwrap_or(&name));
        hasher.update(format!("\n{label}\n").as_bytes());
        // Each file may be gzip-compressed on its own (told by its first bytes); the 413 names the call's limit,
        // which all its files share.
        let report = read_streamed(
            part.map(|chunk| chunk.map_err(unreadable)),
            None,
            budget,
            query.format,
            label,
            hasher,
            limit,
        )
        .await?;
        hasher = report.hasher;
        budget -= report.spent;
        results.extend(report.results);
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

/// A whole body, read as it arrives; past `limit` bytes it is 413 at once.
pub(super) async fn read_whole(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    Incoming::new(body, limit).collect().await
}

/// A multipart body that cannot be read; past the call's limit is 413.
fn unreadable(error: multer::Error) -> ApiError {
    if let multer::Error::StreamReadFailed(inner) = &error {
        if let Some(Refused(refused)) = inner.downcast_ref::<Refused>() {
            return match refused {
                ApiError::PayloadTooLarge { limit_bytes } => ApiError::PayloadTooLarge {
                    limit_bytes: *limit_bytes,
                },
                other => ApiError::BadUserInput(other.to_string()),
            };
        }
    }
    ApiError::BadUserInput(format!("the multipart body could not be read: {error}"))
}

/// A report read, with what reading it spent.
struct Report {
    results: Vec<TestResult>,
    hasher: Sha256,
    /// Decoded bytes.
    spent: u64,
}

/// Reads one report from `chunks` as they arrive: the XML reader runs on a thread of the blocking pool and takes
/// the chunks from a short channel, so at most [`CHUNKS_WAITING`] chunks of it are in memory and a slow sender
/// holds no worker of the runtime (it holds a blocking-pool thread, which [`ReportReaders`] bounds per
/// organization). `gzip`: known from the call's `Content-Encoding`, or `None` to tell from the
/// report's first bytes (a multipart file). A failure of the body itself (413, a broken connection) is the answer
/// over whatever the reader made of the truncated report.
async fn read_streamed<S>(
    mut chunks: S,
    gzip: Option<bool>,
    budget: u64,
    format: Option<Format>,
    label: String,
    mut hasher: Sha256,
    limit: usize,
) -> Result<Report, ApiError>
where
    S: Stream<Item = Result<Bytes, ApiError>> + Unpin,
{
    let (sender, receiver) = mpsc::channel(CHUNKS_WAITING);
    let reader = tokio::task::spawn_blocking(move || {
        let mut results = Vec::new();
        let spent = read_report(
            ChunkReader::new(receiver),
            gzip,
            budget,
            format,
            &label,
            &mut hasher,
            &mut results,
        )
        .map_err(|error| error.into_api(&label, limit));
        (spent, results, hasher)
    });
    let mut failed = None;
    loop {
        let chunk = tokio::select! {
            chunk = chunks.next() => chunk,
            // The reader stopped (it found an error, or the report's end): the rest is not waited for.
            () = sender.closed() => break,
        };
        match chunk {
            Some(Ok(chunk)) => {
                if sender.send(chunk).await.is_err() {
                    break;
                }
            }
            Some(Err(error)) => {
                failed = Some(error);
                break;
            }
            None => break,
        }
    }
    drop(sender);
    let (spent, results, hasher) = reader.await.map_err(ApiError::internal)?;
    if let Some(error) = failed {
        return Err(error);
    }
    Ok(Report {
        spent: spent?,
        results,
        hasher,
    })
}

/// Reads one report file into `results`; returns how many decoded bytes it spent of `budget`.
fn read_report(
    source: impl BufRead,
    gzip: Option<bool>,
    budget: u64,
    format: Option<Format>,
    label: &str,
    hasher: &mut Sha256,
    results: &mut Vec<TestResult>,
) -> Result<u64, ReportError> {
    let mut source = source;
    let gzip = match gzip {
        Some(gzip) => gzip,
        None => source
            .fill_buf()
            .map_err(|error| ReportError::Malformed(error.to_string()))?
            .starts_with(&[0x1f, 0x8b]),
    };
    let source: Box<dyn BufRead + '_> = if gzip {
        Box::new(BufReader::with_capacity(
            GZIP_BUFFER,
            MultiGzDecoder::new(source),
        ))
    } else {
        Box::new(source)
    };
    reports::read(Tracked::new(source, budget, hasher), format, label, results)
}

/// The chunks of a report as the XML reader reads them (on a blocking thread).
struct ChunkReader {
    receiver: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl ChunkReader {
    fn new(receiver: mpsc::Receiver<Bytes>) -> Self {
        Self {
            receiver,
            current: Bytes::new(),
        }
    }
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChunkReader {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.current.is_empty() {
            match self.receiver.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => break,
            }
        }
        Ok(&self.current)
    }

    fn consume(&mut self, amount: usize) {
        self.current = self.current.slice(amount.min(self.current.len())..);
    }
}

/// The call's body as it arrives, its bytes counted against the ingest limit (413 past it).
struct Incoming {
    body: BodyDataStream,
    /// Chunks already read (to tell the body's form) and not yet handed on.
    peeked: VecDeque<Bytes>,
    received: usize,
    limit: usize,
}

/// A body's failure, carried through multer.
#[derive(Debug)]
struct Refused(ApiError);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Refused {}

impl Incoming {
    fn new(body: Body, limit: usize) -> Self {
        Self {
            body: body.into_data_stream(),
            peeked: VecDeque::new(),
            received: 0,
            limit,
        }
    }

    fn from_bytes(bytes: Bytes, limit: usize) -> Self {
        let mut incoming = Self::new(Body::empty(), limit);
        incoming.peeked.push_back(bytes);
        incoming
    }

    /// The next chunk, `None` at the end.
    async fn next(&mut self) -> Option<Result<Bytes, ApiError>> {
        match self.peeked.pop_front() {
            Some(chunk) => Some(Ok(chunk)),
            None => self.receive().await,
        }
    }

    /// The next chunk from the connection, counted against the limit.
    async fn receive(&mut self) -> Option<Result<Bytes, ApiError>> {
        let chunk = match self.body.next().await? {
            Ok(chunk) => chunk,
            Err(error) => {
                return Some(Err(ApiError::BadUserInput(format!(
                    "the body could not be read: {error}"
                ))))
            }
        };
        self.received += chunk.len();
        if self.received > self.limit {
            return Some(Err(ApiError::PayloadTooLarge {
                limit_bytes: self.limit,
            }));
        }
        Some(Ok(chunk))
    }

    /// The body's first `at_least` bytes (fewer if it is shorter), kept to be read again.
    async fn peek(&mut self, at_least: usize) -> Result<Vec<u8>, ApiError> {
        let mut head: Vec<u8> = self.peeked.iter().flatten().copied().collect();
        while head.len() < at_least {
            let Some(chunk) = self.receive().await.transpose()? else {
                break;
            };
            head.extend_from_slice(&chunk);
            self.peeked.push_back(chunk);
        }
        Ok(head)
    }

    /// The whole body (a body of one chunk, the usual, without a copy).
    async fn collect(mut self) -> Result<Bytes, ApiError> {
        let mut chunks = Vec::new();
        while let Some(chunk) = self.next().await {
            chunks.push(chunk?);
        }
        Ok(match chunks.len() {
            1 => chunks.swap_remove(0),
            _ => Bytes::from(chunks.concat()),
        })
    }

    fn into_stream(self) -> impl Stream<Item = Result<Bytes, ApiError>> + Unpin {
        Box::pin(futures::stream::unfold(self, |mut incoming| async move {
            let chunk = incoming.next().await?;
            Some((chunk, incoming))
        }))
    }

    /// The chunks for multer, which takes a standard error (unwrapped again by [`unreadable`]).
    fn into_multer_stream(self) -> impl Stream<Item = Result<Bytes, Refused>> + Send {
        self.into_stream().map(|chunk| chunk.map_err(Refused))
    }
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
