//! Sending a workload: closed loop (a fixed number of connections, each sending its next request when the last
//! one is answered) or open loop (a fixed rate, whatever the answers do), with latencies in an HDR histogram.
//!
//! Both stop at whichever comes first, the request count or the time limit, so a run is always bounded. In the
//! open loop a request's latency counts from the moment it was *due*, not the moment it was sent: when the
//! service falls behind, the wait shows in the percentiles instead of silently lowering the rate.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::workload::Workload;

/// Where to send, and what counts as a good answer.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://host:port`, without a trailing slash.
    pub base_url: String,
    /// Sent as `Authorization: Bearer <key>`.
    pub api_key: String,
    /// When set, a 2xx answer whose body lacks this text counts as an error.
    pub expect: Option<String>,
}

/// How long and how hard to send.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// At most this many requests.
    pub requests: u64,
    /// At most this long (requests still in flight at the deadline are awaited, not counted as sent late).
    pub duration: Duration,
}

/// What a run measured.
#[derive(Debug)]
pub struct Stats {
    histogram: Histogram<u64>,
    statuses: BTreeMap<String, u64>,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
    /// Requests slower than [`SLOW`], by the second of the run in which they were sent: when the tail happened.
    slow_by_second: BTreeMap<u64, u64>,
}

/// A request at least this slow is counted in the run's timeline of slow requests.
const SLOW: Duration = Duration::from_millis(50);

impl Stats {
    fn new() -> Self {
        Self {
            // 1 µs to 10 min at 3 significant digits.
            histogram: Histogram::new_with_bounds(1, 600_000_000, 3)
                .expect("valid histogram bounds"),
            statuses: BTreeMap::new(),
            errors: 0,
            first_error: None,
            elapsed: Duration::ZERO,
            slow_by_second: BTreeMap::new(),
        }
    }

    /// Records a request sent `sent` after the start of the run.
    fn record(&mut self, sent: Duration, latency: Duration, outcome: Result<u16, String>) {
        if latency >= SLOW {
            *self.slow_by_second.entry(sent.as_secs()).or_default() += 1;
        }
        let micros = (latency.as_micros() as u64).clamp(1, 600_000_000);
        self.histogram
            .record(micros)
            .expect("clamped into the histogram's range");
        let status = match outcome {
            Ok(code) => code.to_string(),
            Err(error) => {
                self.errors += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(error);
                }
                "error".to_owned()
            }
        };
        *self.statuses.entry(status).or_default() += 1;
    }

    /// The summary printed on stdout: counts, throughput and latency percentiles in milliseconds.
    pub fn to_json(&self) -> Value {
        let h = &self.histogram;
        let ms = |micros: u64| (micros as f64) / 1000.0;
        let requests = h.len();
        let seconds = self.elapsed.as_secs_f64();
        json!({
            "requests": requests,
            "ok": requests - self.errors,
            "errors": self.errors,
            "first_error": self.first_error,
            "statuses": self.statuses,
            "elapsed_s": seconds,
            "throughput_rps": if seconds > 0.0 { requests as f64 / seconds } else { 0.0 },
            "ok_rps": if seconds > 0.0 { (requests - self.errors) as f64 / seconds } else { 0.0 },
            "latency_ms": {
                "min": ms(h.min()),
                "mean": h.mean() / 1000.0,
                "p50": ms(h.value_at_quantile(0.50)),
                "p90": ms(h.value_at_quantile(0.90)),
                "p99": ms(h.value_at_quantile(0.99)),
                "p999": ms(h.value_at_quantile(0.999)),
                "max": ms(h.max()),
            },
            "over_50ms_by_second": self.slow_by_second,
        })
    }
}

/// Sends one request and reads the whole answer; `Ok(status)` for a good answer, `Err(why)` otherwise.
async fn send(
    client: &reqwest::Client,
    target: &Target,
    workload: &Workload,
    i: u64,
) -> Result<u16, String> {
    let (method, path, body) = workload.request(i);
    let mut request = client
        .request(method, format!("{}{path}", target.base_url))
        .bearer_auth(&target.api_key);
    if let Some(body) = body {
        request = request
            .header("content-type", workload.content_type())
            .body(body);
    }
    let response = request
        .send()
        .await
        .map_err(|error| format!("request {i}: {error}"))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|error| format!("request {i}: reading the answer: {error}"))?;
    if !status.is_success() {
        return Err(format!("request {i}: HTTP {status}: {}", truncate(&text)));
    }
    if let Some(expect) = &target.expect {
        if !text.contains(expect.as_str()) {
            return Err(format!(
                "request {i}: answer lacks `{expect}`: {}",
                truncate(&text)
            ));
        }
    }
    Ok(status.as_u16())
}

fn truncate(text: &str) -> &str {
    let end = text
        .char_indices()
        .nth(300)
        .map_or(text.len(), |(at, _)| at);
    &text[..end]
}

/// Closed loop: `connections` senders, each sending its next request as soon as its last one is answered.
pub async fn closed_loop(
    client: reqwest::Client,
    target: Target,
    workload: Workload,
    connections: usize,
    limits: Limits,
) -> Stats {
    let stats = Arc::new(Mutex::new(Stats::new()));
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + limits.duration;
    let target = Arc::new(target);
    let workload = Arc::new(workload);
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (client, target, workload, stats, next) = (
            client.clone(),
            target.clone(),
            workload.clone(),
            stats.clone(),
            next.clone(),
        );
        senders.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= limits.requests || Instant::now() >= deadline {
                    break;
                }
                let sent = Instant::now();
                let outcome = send(&client, &target, &workload, i).await;
                stats
                    .lock()
                    .expect("not poisoned")
                    .record(sent - start, sent.elapsed(), outcome);
            }
        }));
    }
    for sender in senders {
        sender.await.expect("a sender task does not panic");
    }
    finish(stats, start)
}

/// Open loop: request `i` is due at `start + i / rate`, sent then whether or not earlier ones were answered (at
/// most `max_in_flight` at once).
pub async fn open_loop(
    client: reqwest::Client,
    target: Target,
    workload: Workload,
    rate: f64,
    max_in_flight: usize,
    limits: Limits,
) -> Stats {
    let stats = Arc::new(Mutex::new(Stats::new()));
    let start = Instant::now();
    let deadline = start + limits.duration;
    let target = Arc::new(target);
    let workload = Arc::new(workload);
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..limits.requests {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        if due >= deadline {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let (client, target, workload, stats) = (
            client.clone(),
            target.clone(),
            workload.clone(),
            stats.clone(),
        );
        tasks.spawn(async move {
            let outcome = send(&client, &target, &workload, i).await;
            // From when it was due: a request that waited for a free slot waited because of the service.
            stats
                .lock()
                .expect("not poisoned")
                .record(due - start, due.elapsed(), outcome);
            drop(slot);
        });
        // Reap finished tasks as we go so that a long run does not hold every handle.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    finish(stats, start)
}

fn finish(stats: Arc<Mutex<Stats>>, start: Instant) -> Stats {
    let mut stats = Arc::try_unwrap(stats)
        .expect("every sender has finished")
        .into_inner()
        .expect("not poisoned");
    stats.elapsed = start.elapsed();
    stats
}
