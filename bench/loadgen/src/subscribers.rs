//! The subscription figure: many open GraphQL subscriptions (`/graphql/ws`, graphql-transport-ws) while the
//! webhook runs.
//!
//! Idle subscriptions (`buildQueueChanged` of organizations that receive no builds, spread over their keys) hold
//! sockets open; active ones (`deliveryRecorded` of the organization the webhook delivers to) time every message:
//! from the delivery's `receivedAt` (the service's clock when the request arrived, on the same machine) to the
//! message's arrival here. That span holds the commit, so it bounds commit → message from above. The service's
//! resident memory is read before and after the idle subscriptions open, for the memory per idle subscription.
//! Writes `ready` to the given file once every subscription is open, then listens for `duration` seconds.

use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// What to open and how long to listen.
#[derive(Debug, Clone)]
pub struct Plan {
    pub base_url: String,
    pub active_key: String,
    pub idle_keys: Vec<String>,
    pub active: usize,
    pub idle: usize,
    pub service_pid: Option<u32>,
    pub ready_file: Option<String>,
    pub duration: Duration,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a connection with `key`, acknowledged, with one subscription.
async fn open(base_url: &str, key: &str, query: &str) -> anyhow::Result<Socket> {
    let url = format!("{}/graphql/ws", base_url.replacen("http", "ws", 1));
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "graphql-transport-ws".parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .context("the WebSocket upgrade")?;
    let init =
        json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {key}")}});
    socket.send(Message::Text(init.to_string().into())).await?;
    match socket.next().await {
        Some(Ok(Message::Text(text))) if text.contains("connection_ack") => {}
        other => bail!("no connection_ack: {other:?}"),
    }
    let subscribe = json!({"id": "1", "type": "subscribe", "payload": {"query": query}});
    socket
        .send(Message::Text(subscribe.to_string().into()))
        .await?;
    Ok(socket)
}

/// The service's resident memory in KB.
fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
}

/// Waits until the service reports `count` open subscriptions (they open after the subscribe message is read).
async fn wait_open(base_url: &str, count: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let expected = format!("lathe_subscriptions_open {count}\n");
    let started = Instant::now();
    loop {
        let text = client
            .get(format!("{base_url}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        if text.contains(&expected) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the service never reported {count} open subscriptions");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What one active subscriber saw.
#[derive(Default)]
struct Seen {
    messages: u64,
    missed: u64,
    closed_early: bool,
}

/// Runs the plan and returns the summary.
pub async fn run(plan: Plan) -> anyhow::Result<Value> {
    let idle_query = "subscription { buildQueueChanged { id status } }";
    let active_query = "subscription { deliveryRecorded { receivedAt outcome } }";
    let rss_before = plan.service_pid.and_then(rss_kb);
    let mut idle = Vec::with_capacity(plan.idle);
    for n in 0..plan.idle {
        let key = &plan.idle_keys[n % plan.idle_keys.len().max(1)];
        idle.push(open(&plan.base_url, key, idle_query).await?);
    }
    wait_open(&plan.base_url, plan.idle).await?;
    // Let the allocator settle before reading the memory again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = plan.service_pid.and_then(rss_kb);
    let (histogram_tx, mut histogram_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for _ in 0..plan.active {
        let mut socket = open(&plan.base_url, &plan.active_key, active_query).await?;
        let histogram_tx = histogram_tx.clone();
        let duration = plan.duration;
        tasks.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            let deadline = tokio::time::Instant::now() + duration;
            loop {
                let frame = tokio::select! {
                    frame = socket.next() => frame,
                    () = tokio::time::sleep_until(deadline) => break,
                };
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(_)) => continue,
                    _ => {
                        seen.closed_early = true;
                        break;
                    }
                };
                let arrived = SystemTime::now();
                let message: Value = serde_json::from_str(&text).unwrap_or_default();
                if message["type"] == "ping" {
                    let pong = json!({"type": "pong"}).to_string();
                    let _ = socket.send(Message::Text(pong.into())).await;
                    continue;
                }
                let payload = &message["payload"];
                if payload["errors"][0]["extensions"]["code"] == "MISSED_CHANGES" {
                    seen.missed += payload["errors"][0]["extensions"]["missed"]
                        .as_u64()
                        .unwrap_or(1);
                    continue;
                }
                let Some(received_at) = payload["data"]["deliveryRecorded"]["receivedAt"].as_str()
                else {
                    continue;
                };
                let Ok(received_at) = chrono::DateTime::parse_from_rfc3339(received_at) else {
                    continue;
                };
                let received_at = SystemTime::from(received_at);
                let micros = arrived
                    .duration_since(received_at)
                    .map_or(1, |span| span.as_micros() as u64);
                seen.messages += 1;
                let _ = histogram_tx.send(micros);
            }
            seen
        }));
    }
    drop(histogram_tx);
    if plan.active > 0 {
        wait_open(&plan.base_url, plan.idle + plan.active).await?;
    }
    if let Some(file) = &plan.ready_file {
        std::fs::write(file, "ready")?;
    }
    let mut histogram: Histogram<u64> =
        Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds");
    let collect = async {
        while let Some(micros) = histogram_rx.recv().await {
            let _ = histogram.record(micros.clamp(1, 600_000_000));
        }
    };
    let mut seen = Seen::default();
    let ((), results) = tokio::join!(collect, futures_util::future::join_all(tasks));
    for result in results {
        let one = result?;
        seen.messages += one.messages;
        seen.missed += one.missed;
        seen.closed_early |= one.closed_early;
    }
    // The idle sockets stayed open throughout; count the ones the service closed.
    let mut idle_closed = 0;
    for socket in &mut idle {
        if let Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) =
            tokio::time::timeout(Duration::from_millis(1), socket.next()).await
        {
            idle_closed += 1;
        }
    }
    let ms = |micros: u64| (micros as f64) / 1000.0;
    let per_idle_kb = match (rss_before, rss_after) {
        (Some(before), Some(after)) if plan.idle > 0 => {
            json!((after.saturating_sub(before)) as f64 / plan.idle as f64)
        }
        _ => Value::Null,
    };
    Ok(json!({
        "idle": plan.idle,
        "active": plan.active,
        "rss_before_kb": rss_before,
        "rss_after_kb": rss_after,
        "kb_per_idle_subscription": per_idle_kb,
        "messages": seen.messages,
        "missed": seen.missed,
        "active_closed_early": seen.closed_early,
        "idle_closed": idle_closed,
        "latency_ms": {
            "p50": ms(histogram.value_at_quantile(0.50)),
            "p99": ms(histogram.value_at_quantile(0.99)),
            "p999": ms(histogram.value_at_quantile(0.999)),
            "max": ms(histogram.max()),
        },
    }))
}
