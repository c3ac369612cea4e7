//! GraphQL subscriptions over WebSocket (`/graphql/ws`, graphql-transport-ws) with a real WebSocket client: what
//! arrives, across processes and organizations, revoked keys, stalled readers, caps and the protocol's close codes.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use lathe_tests::{payload, spawn_app, spawn_app_with};

use crate::process::spawn_process;

const CHAT_2022: &str = "build.complete.msdocs-2022.json";
/// Longest a test waits for something that must happen; reaching it fails the test (it is not a timing assert).
const PATIENCE: Duration = Duration::from_secs(30);

/// A graphql-transport-ws client.
pub struct Socket {
    ws: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
}

/// What the server sent next, pings answered and skipped.
#[derive(Debug)]
pub enum Received {
    Message(Value),
    Closed(Option<(u16, String)>),
}

impl Socket {
    /// Connects to `/graphql/ws` of the service at `address` (http://…), with an optional `Authorization` header.
    pub async fn connect(address: &str, header_key: Option<&str>) -> Socket {
        let url = format!("{}/graphql/ws", address.replacen("http", "ws", 1));
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            "graphql-transport-ws".parse().unwrap(),
        );
        if let Some(key) = header_key {
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {key}").parse().unwrap());
        }
        let (ws, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("the WebSocket upgrade succeeds");
        assert_eq!(
            response.headers()["sec-websocket-protocol"],
            "graphql-transport-ws"
        );
        Socket { ws }
    }

    /// Connects with the key in the `connection_init` payload and waits for `connection_ack`.
    pub async fn open(address: &str, key: &str) -> Socket {
        let mut socket = Socket::connect(address, None).await;
        socket
            .send(json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {key}")}}))
            .await;
        socket.expect_ack().await;
        socket
    }

    pub async fn expect_ack(&mut self) {
        match self.receive().await {
            Received::Message(message) => {
                assert_eq!(message["type"], "connection_ack", "{message}")
            }
            closed => panic!("expected connection_ack, got {closed:?}"),
        }
    }

    pub async fn send(&mut self, message: Value) {
        self.ws
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("the message is sent");
    }

    /// Starts a subscription with id `id`.
    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({"id": id, "type": "subscribe", "payload": {"query": query, "variables": variables}}))
            .await;
    }

    /// The next message or the close, answering the server's pings on the way.
    pub async fn receive(&mut self) -> Received {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("the server sends something in time");
            match frame {
                None | Some(Err(_)) => return Received::Closed(None),
                Some(Ok(Message::Close(frame))) => {
                    return Received::Closed(
                        frame.map(|CloseFrame { code, reason }| {
                            (u16::from(code), reason.to_string())
                        }),
                    )
                }
                Some(Ok(Message::Text(text))) => {
                    let message: Value = serde_json::from_str(&text).unwrap();
                    if message["type"] == "ping" {
                        self.send(json!({"type": "pong"})).await;
                        continue;
                    }
                    return Received::Message(message);
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next `next` message's payload (`data` and/or `errors`), for subscription `id`.
    /// (A `complete` of an earlier subscription is skipped.)
    pub async fn next_payload(&mut self, id: &str) -> Value {
        match self.receive().await {
            Received::Message(message) if message["type"] == "complete" && message["id"] != id => {
                Box::pin(self.next_payload(id)).await
            }
            Received::Message(message) => {
                assert_eq!(message["type"], "next", "{message}");
                assert_eq!(message["id"], id, "{message}");
                message["payload"].clone()
            }
            closed => panic!("expected a message, got {closed:?}"),
        }
    }

    /// The close code the server ends the connection with.
    pub async fn close_code(&mut self) -> u16 {
        loop {
            match self.receive().await {
                Received::Closed(Some((code, _))) => return code,
                Received::Closed(None) => panic!("the connection ended without a close frame"),
                Received::Message(_) => continue,
            }
        }
    }
}

/// Waits until the service at `address` reports `count` open subscriptions, so that a change made next is one the
/// subscriptions must see.
pub async fn wait_for_subscriptions(address: &str, count: usize) {
    let client = reqwest::Client::new();
    let expected = format!("lathe_subscriptions_open {count}\n");
    let started = std::time::Instant::now();
    loop {
        let text = client
            .get(format!("{address}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains(&expected) {
            return;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "never {count} open subscriptions:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A gauge of the service's `/metrics`.
async fn metric(address: &str, name: &str) -> u64 {
    let text = reqwest::get(format!("{address}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

/// Waits until the service at `address` reports `count` distinct subscription executions.
async fn wait_for_executions(address: &str, count: u64) {
    let started = std::time::Instant::now();
    while metric(address, "lathe_subscription_executions").await != count {
        assert!(
            started.elapsed() < PATIENCE,
            "never {count} subscription executions"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const DELIVERIES: &str =
    "subscription { deliveryRecorded { id outcome httpStatus queuedBuildId buildId } }";
const QUEUE: &str = "subscription($s: QueueStatus) { buildQueueChanged(status: $s) { id status buildName project { name } } }";

/// A webhook delivery of build `n` of the sample payload; returns the answer's body.
async fn deliver(address: &str, key: &str, n: i64) -> Value {
    let mut body = payload(CHAT_2022);
    body["resource"]["id"] = json!(n);
    let response = reqwest::Client::new()
        .post(format!("{address}/api/webhooks/azure-devops"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "the webhook answers 2xx, not {}",
        response.status()
    );
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_delivery_and_its_queued_build_appear_on_subscriptions() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let mut socket = Socket::open(&app.address, &org.key).await;
    socket.subscribe("d", DELIVERIES, json!({})).await;
    socket.subscribe("q", QUEUE, json!({"s": "PENDING"})).await;
    wait_for_subscriptions(&app.address, 2).await;

    let answer = deliver(&app.address, &org.key, 1).await;
    let queued = answer["queuedBuildId"].as_str().unwrap();

    let mut seen_delivery = false;
    let mut seen_queued = false;
    while !(seen_delivery && seen_queued) {
        let Received::Message(message) = socket.receive().await else {
            panic!("the connection closed");
        };
        let payload = &message["payload"];
        match message["id"].as_str().unwrap() {
            "d" => {
                let delivery = &payload["data"]["deliveryRecorded"];
                assert_eq!(delivery["outcome"], "queued", "{payload}");
                assert_eq!(delivery["queuedBuildId"], queued);
                seen_delivery = true;
            }
            "q" => {
                let build = &payload["data"]["buildQueueChanged"];
                assert_eq!(build["id"], queued, "{payload}");
                assert_eq!(build["status"], "PENDING");
                seen_queued = true;
            }
            other => panic!("unexpected id {other}"),
        }
    }
}

#[tokio::test]
async fn a_change_made_through_one_process_reaches_a_subscriber_of_another() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let a = spawn_process(&app.database_url).await;
    let b = spawn_process(&app.database_url).await;
    let mut socket = Socket::open(&b.address, &org.key).await;
    socket.subscribe("q", QUEUE, json!({})).await;
    socket.subscribe("d", DELIVERIES, json!({})).await;
    wait_for_subscriptions(&b.address, 2).await;

    let answer = deliver(&a.address, &org.key, 7).await;
    let queued = answer["queuedBuildId"].as_str().unwrap().to_owned();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let Received::Message(message) = socket.receive().await else {
            panic!("the connection closed");
        };
        let data = &message["payload"]["data"];
        let id = data["buildQueueChanged"]["id"]
            .as_str()
            .or_else(|| data["deliveryRecorded"]["queuedBuildId"].as_str())
            .unwrap_or_else(|| panic!("unexpected message {message}"));
        ids.push(id.to_owned());
    }
    assert_eq!(ids, vec![queued.clone(), queued]);
}

#[tokio::test]
async fn a_revoked_keys_sockets_close_on_every_process() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let (key, key_id) = app.create_key(&org.key, &["builds:read"]).await;
    let other = spawn_process(&app.database_url).await;
    let mut here = Socket::open(&app.address, &key).await;
    let mut there = Socket::open(&other.address, &key).await;
    there.subscribe("d", DELIVERIES, json!({})).await;
    wait_for_subscriptions(&other.address, 1).await;

    app.graphql_ok(
        &org.key,
        "mutation($id: ID!) { revokeApiKey(id: $id) { id } }",
        json!({ "id": key_id }),
    )
    .await;

    assert_eq!(here.close_code().await, 4403);
    assert_eq!(there.close_code().await, 4403);
    // And the key opens no new connection.
    let mut again = Socket::connect(&other.address, None).await;
    again
        .send(json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {key}")}}))
        .await;
    // The other process may hold the key's row for its cache's half second; the revocation is read at once here.
    let mut fresh = Socket::connect(&app.address, None).await;
    fresh
        .send(json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {key}")}}))
        .await;
    assert_eq!(fresh.close_code().await, 4403);
    drop(again);
}

#[tokio::test]
async fn one_organization_never_sees_anothers_changes() {
    let app = spawn_app().await;
    let a = app.create_org("Fabrikam").await;
    let b = app.create_org("Contoso").await;
    let mut watcher = Socket::open(&app.address, &b.key).await;
    watcher.subscribe("d", DELIVERIES, json!({})).await;
    watcher.subscribe("q", QUEUE, json!({})).await;
    wait_for_subscriptions(&app.address, 2).await;

    // A's changes commit first; if B's subscriber were sent them, they would arrive before B's own.
    deliver(&app.address, &a.key, 1).await;
    app.create_project(&a.key, "Fabrikam Web").await;
    let own = deliver(&app.address, &b.key, 2).await;
    let own_id = own["queuedBuildId"].as_str().unwrap();
    for _ in 0..2 {
        let Received::Message(message) = watcher.receive().await else {
            panic!("the connection closed");
        };
        let data = &message["payload"]["data"];
        let id = data["buildQueueChanged"]["id"]
            .as_str()
            .or_else(|| data["deliveryRecorded"]["queuedBuildId"].as_str());
        assert_eq!(id, Some(own_id), "B was sent {message}");
    }
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_does_not_hold_back_the_webhook_and_is_told_it_missed_changes(
) {
    let app = spawn_app_with(|settings| {
        settings.subscription_buffer = 64;
        // Long enough that the stalled socket is not dropped meanwhile: it is to be told, when it reads again.
        settings.websocket_ping_interval_secs = 600;
    })
    .await;
    let org = app.create_org("Fabrikam").await;

    // The stalled subscriber reads through a tiny receive buffer and asks for large messages, so that the
    // socket's buffers fill after a few of them.
    let stalled_stream = {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let address = app.address.trim_start_matches("http://").parse().unwrap();
        socket.connect(address).await.unwrap()
    };
    let mut request = format!("{}/graphql/ws", app.address.replacen("http", "ws", 1))
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (ws, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stalled_stream))
        .await
        .unwrap();
    let mut stalled = Socket { ws };
    stalled
        .send(json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {}", org.key)}}))
        .await;
    stalled.expect_ack().await;
    let fields: String = (0..400).map(|n| format!(" f{n}: message")).collect();
    let big = format!("subscription {{ deliveryRecorded {{ queuedBuildId {fields} }} }}");
    stalled.subscribe("big", &big, json!({})).await;
    // The healthy one subscribes to the same operation with the same key: they share one execution, and still
    // only the stalled one misses anything.
    let mut reader = Socket::open(&app.address, &org.key).await;
    reader.subscribe("d", &big, json!({})).await;
    wait_for_subscriptions(&app.address, 2).await;
    assert_eq!(
        metric(&app.address, "lathe_subscription_executions").await,
        1
    );

    // The healthy subscriber reads on while the webhook is called; the stalled one reads nothing.
    const DELIVERIES_SENT: i64 = 300;
    let (last_sent, mut last) = tokio::sync::watch::channel(String::new());
    let reading = tokio::spawn(async move {
        let mut seen = std::collections::HashSet::new();
        loop {
            let wanted = last.borrow_and_update().clone();
            if !wanted.is_empty() && seen.contains(&wanted) {
                return;
            }
            tokio::select! {
                payload = reader.next_payload("d") => {
                    assert!(payload.get("errors").is_none(), "the healthy subscriber: {payload}");
                    if let Some(id) = payload["data"]["deliveryRecorded"]["queuedBuildId"].as_str() {
                        seen.insert(id.to_owned());
                    }
                }
                _ = last.changed() => {}
            }
        }
    });
    for n in 1..=DELIVERIES_SENT {
        let answer = deliver(&app.address, &org.key, n).await;
        if n == DELIVERIES_SENT {
            let id = answer["queuedBuildId"].as_str().unwrap().to_owned();
            last_sent.send(id).unwrap();
        }
    }
    tokio::time::timeout(PATIENCE, reading)
        .await
        .expect("the healthy subscriber saw the last delivery")
        .unwrap();

    // The stalled subscriber reads again: before it could have read every change, it is told it missed some.
    let mut received = 0;
    while let Received::Message(message) = stalled.receive().await {
        let payload = &message["payload"];
        if payload["errors"][0]["extensions"]["code"] == "MISSED_CHANGES" {
            assert!(
                payload["errors"][0]["extensions"]["missed"]
                    .as_u64()
                    .unwrap()
                    > 0
            );
            return;
        }
        received += 1;
        assert!(
            received < DELIVERIES_SENT,
            "the stalled subscriber got every message and was never told it missed any"
        );
    }
    panic!("the stalled subscriber was closed instead of told (its ping interval is 10 minutes)");
}

#[tokio::test]
async fn the_key_may_come_in_the_upgrade_headers() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let mut socket = Socket::connect(&app.address, Some(&org.key)).await;
    socket.send(json!({"type": "connection_init"})).await;
    socket.expect_ack().await;
    socket.subscribe("d", DELIVERIES, json!({})).await;
    wait_for_subscriptions(&app.address, 1).await;
    deliver(&app.address, &org.key, 3).await;
    let payload = socket.next_payload("d").await;
    assert_eq!(payload["data"]["deliveryRecorded"]["outcome"], "queued");
}

#[tokio::test]
async fn an_upgrade_with_a_wrong_key_in_its_headers_is_refused_before_upgrading() {
    let app = spawn_app().await;
    let url = format!("{}/graphql/ws", app.address.replacen("http", "ws", 1));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    request.headers_mut().insert(
        "authorization",
        format!("Bearer pt_live_{}", "x".repeat(40))
            .parse()
            .unwrap(),
    );
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401)
        }
        other => panic!("expected 401, got {other:?}"),
    }
}

#[tokio::test]
async fn an_init_without_a_valid_key_is_closed_with_4403() {
    let app = spawn_app().await;
    for payload in [
        json!({}),
        json!({"authorization": format!("Bearer pt_live_{}", "x".repeat(40))}),
        json!({"authorization": "Basic abc"}),
    ] {
        let mut socket = Socket::connect(&app.address, None).await;
        socket
            .send(json!({"type": "connection_init", "payload": payload}))
            .await;
        assert_eq!(socket.close_code().await, 4403, "{payload}");
    }
}

#[tokio::test]
async fn a_connection_that_never_sends_init_is_closed_with_4408() {
    let app = spawn_app_with(|settings| settings.websocket_init_timeout_secs = 1).await;
    let mut socket = Socket::connect(&app.address, None).await;
    assert_eq!(socket.close_code().await, 4408);
}

#[tokio::test]
async fn a_subscribe_before_the_acknowledgement_is_closed_with_4401_and_a_bad_message_with_4400() {
    let app = spawn_app().await;
    let mut socket = Socket::connect(&app.address, None).await;
    socket.subscribe("d", DELIVERIES, json!({})).await;
    assert_eq!(socket.close_code().await, 4401);

    let org = app.create_org("Fabrikam").await;
    let mut socket = Socket::open(&app.address, &org.key).await;
    socket.send(json!({"type": "no such message"})).await;
    assert_eq!(socket.close_code().await, 4400);
}

#[tokio::test]
async fn a_second_init_is_closed_with_4429() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let mut socket = Socket::open(&app.address, &org.key).await;
    socket
        .send(json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {}", org.key)}}))
        .await;
    assert_eq!(socket.close_code().await, 4429);
}

#[tokio::test]
async fn a_bad_query_or_a_missing_scope_is_an_error_for_that_subscription_only() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let (keys_only, _) = app.create_key(&org.key, &["keys:manage"]).await;
    let mut socket = Socket::open(&app.address, &keys_only).await;

    socket
        .subscribe("bad", "subscription { noSuchField }", json!({}))
        .await;
    let payload = socket.next_payload("bad").await;
    assert_eq!(payload["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");

    socket.subscribe("scope", DELIVERIES, json!({})).await;
    let payload = socket.next_payload("scope").await;
    assert_eq!(
        payload["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{payload}"
    );

    // The connection is still usable: a ping is answered.
    socket.send(json!({"type": "ping"})).await;
    loop {
        match socket.receive().await {
            Received::Message(message) if message["type"] == "pong" => break,
            Received::Message(_) => continue,
            closed => panic!("the connection closed: {closed:?}"),
        }
    }
}

#[tokio::test]
async fn a_subscription_over_the_query_budget_is_refused_naming_it() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let mut socket = Socket::open(&app.address, &org.key).await;
    socket
        .subscribe(
            "costly",
            "subscription { releaseChanged { builds(first: 100) { edges { node { testResults(first: 100) { edges { node { title } } } } } } } }",
            json!({}),
        )
        .await;
    let payload = socket.next_payload("costly").await;
    assert_eq!(payload["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    assert!(
        payload["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("budget"),
        "{payload}"
    );
}

#[tokio::test]
async fn subscriptions_past_the_per_key_cap_are_refused() {
    let app = spawn_app_with(|settings| settings.subscriptions_max_per_key = 2).await;
    let org = app.create_org("Fabrikam").await;
    let mut socket = Socket::open(&app.address, &org.key).await;
    socket.subscribe("1", DELIVERIES, json!({})).await;
    socket.subscribe("2", DELIVERIES, json!({})).await;
    wait_for_subscriptions(&app.address, 2).await;
    socket.subscribe("3", DELIVERIES, json!({})).await;
    let payload = socket.next_payload("3").await;
    assert_eq!(payload["errors"][0]["extensions"]["code"], "RATE_LIMITED");
    // Completing one frees its place.
    socket.send(json!({"id": "1", "type": "complete"})).await;
    wait_for_subscriptions(&app.address, 1).await;
    socket.subscribe("4", DELIVERIES, json!({})).await;
    wait_for_subscriptions(&app.address, 2).await;
}

#[tokio::test]
async fn identical_subscriptions_of_one_key_share_one_execution() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let other = app.create_org("Contoso").await;
    let mut first = Socket::open(&app.address, &org.key).await;
    let mut second = Socket::open(&app.address, &org.key).await;
    let mut elsewhere = Socket::open(&app.address, &other.key).await;
    first.subscribe("a", DELIVERIES, json!({})).await;
    second.subscribe("b", DELIVERIES, json!({})).await;
    // Other variables, another organization's key: executions of their own.
    first.subscribe("p", QUEUE, json!({"s": "PENDING"})).await;
    second.subscribe("r", QUEUE, json!({"s": "REJECTED"})).await;
    elsewhere.subscribe("c", DELIVERIES, json!({})).await;
    wait_for_subscriptions(&app.address, 5).await;
    assert_eq!(
        metric(&app.address, "lathe_subscription_executions").await,
        4
    );

    let answer = deliver(&app.address, &org.key, 1).await;
    let queued = answer["queuedBuildId"].as_str().unwrap();
    let mut got_delivery = false;
    let mut got_pending = false;
    while !(got_delivery && got_pending) {
        let Received::Message(message) = first.receive().await else {
            panic!("the connection closed");
        };
        let data = &message["payload"]["data"];
        match message["id"].as_str().unwrap() {
            "a" => {
                assert_eq!(data["deliveryRecorded"]["queuedBuildId"], queued);
                got_delivery = true;
            }
            "p" => {
                assert_eq!(data["buildQueueChanged"]["id"], queued);
                got_pending = true;
            }
            id => panic!("unexpected subscription {id}: {message}"),
        }
    }
    // The second socket's copy of the shared answer; a REJECTED filter is not told of a pending build.
    let payload = second.next_payload("b").await;
    assert_eq!(payload["data"]["deliveryRecorded"]["queuedBuildId"], queued);

    // One sharer leaving does not end the execution for the other.
    first.send(json!({"id": "a", "type": "complete"})).await;
    wait_for_subscriptions(&app.address, 4).await;
    assert_eq!(
        metric(&app.address, "lathe_subscription_executions").await,
        4
    );
    let answer = deliver(&app.address, &org.key, 2).await;
    let payload = second.next_payload("b").await;
    assert_eq!(
        payload["data"]["deliveryRecorded"]["queuedBuildId"],
        answer["queuedBuildId"]
    );
    // The last one leaving ends it (without waiting for a change).
    second.send(json!({"id": "b", "type": "complete"})).await;
    wait_for_subscriptions(&app.address, 3).await;
    wait_for_executions(&app.address, 3).await;
    drop(first);
    drop(second);
    drop(elsewhere);
    wait_for_subscriptions(&app.address, 0).await;
    wait_for_executions(&app.address, 0).await;
}

#[tokio::test]
async fn a_release_change_carries_the_release_with_its_builds() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let project = app
        .graphql_ok(
            &org.key,
            r#"mutation { createProject(input: {name: "Web", url: "https://dev.azure.com/fabrikam-fiber-inc/Fabrikam-Fiber-Git"}) { id } }"#,
            json!({}),
        )
        .await["createProject"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let release = app.create_release(&org.key, &project, "1.0").await;
    let mut socket = Socket::open(&app.address, &org.key).await;
    socket
        .subscribe(
            "r",
            "subscription($p: ID) { releaseChanged(projectId: $p) { id status buildCount } }",
            json!({ "p": project }),
        )
        .await;
    wait_for_subscriptions(&app.address, 1).await;
    app.graphql_ok(
        &org.key,
        "mutation($id: ID!) { completeRelease(id: $id) { id } }",
        json!({ "id": release }),
    )
    .await;
    // The release's creation may still be on its way (a change that committed just before the subscription):
    // messages carry the release as it is now, and the completion arrives.
    loop {
        let payload = socket.next_payload("r").await;
        assert_eq!(payload["data"]["releaseChanged"]["id"], release.as_str());
        if payload["data"]["releaseChanged"]["status"] == "COMPLETED" {
            break;
        }
    }
}

#[tokio::test]
async fn a_build_moved_out_of_a_release_changes_the_release_it_left_too() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let project = app.create_project(&org.key, "Web").await;
    let left = app.create_release(&org.key, &project, "1.0").await;
    let created = app
        .ingest(
            &lathe_tests::Auth::Bearer(org.key.clone()),
            &json!({ "build_name": "b", "project": "Web", "test_results": [] }),
            &[],
        )
        .await;
    assert_eq!(created.body["outcome"], "created", "{created:?}");
    let build = created.body["buildId"].as_str().unwrap().to_owned();
    let joined = app.create_release(&org.key, &project, "1.1").await;
    let mut socket = Socket::open(&app.address, &org.key).await;
    socket
        .subscribe(
            "r",
            "subscription($p: ID) { releaseChanged(projectId: $p) { id buildCount } }",
            json!({ "p": project }),
        )
        .await;
    wait_for_subscriptions(&app.address, 1).await;
    app.graphql_ok(
        &org.key,
        "mutation($id: ID!, $r: ID!) { moveBuild(id: $id, releaseId: $r, reason: \"wrong release\") { id } }",
        json!({ "id": build, "r": joined }),
    )
    .await;
    // Both releases changed: the one the build joined, and the one it left (which the build's row no longer names).
    let mut counts = std::collections::HashMap::new();
    let both = async {
        while counts.get(left.as_str()) != Some(&json!(0))
            || counts.get(joined.as_str()) != Some(&json!(1))
        {
            let payload = socket.next_payload("r").await;
            let release = &payload["data"]["releaseChanged"];
            counts.insert(
                release["id"].as_str().unwrap().to_owned(),
                release["buildCount"].clone(),
            );
        }
    };
    tokio::time::timeout(PATIENCE, both)
        .await
        .expect("both releases' changes arrive");
}

#[tokio::test]
async fn each_operation_on_a_socket_spends_the_keys_rate_limit() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let data = app
        .graphql_ok(
            &org.key,
            r#"mutation { createApiKey(input: {name: "slow", scopes: ["builds:read"], rateLimitPerMinute: 2}) { key } }"#,
            json!({}),
        )
        .await;
    let key = data["createApiKey"]["key"].as_str().unwrap();
    let mut socket = Socket::open(&app.address, key).await;
    for id in ["1", "2"] {
        socket
            .subscribe(id, "query { organization { name } }", json!({}))
            .await;
        let payload = socket.next_payload(id).await;
        assert_eq!(
            payload["data"]["organization"]["name"], "Fabrikam",
            "{payload}"
        );
    }
    socket.subscribe("3", DELIVERIES, json!({})).await;
    let payload = socket.next_payload("3").await;
    assert_eq!(
        payload["errors"][0]["extensions"]["code"], "RATE_LIMITED",
        "{payload}"
    );
}

#[tokio::test]
async fn a_key_that_expires_while_connected_closes_its_socket() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let expires_at = chrono::Utc::now() + chrono::Duration::seconds(2);
    let data = app
        .graphql_ok(
            &org.key,
            "mutation($at: DateTime) { createApiKey(input: {name: \"brief\", scopes: [\"builds:read\"], expiresAt: $at}) { key } }",
            json!({ "at": expires_at.to_rfc3339() }),
        )
        .await;
    let key = data["createApiKey"]["key"].as_str().unwrap();
    let mut socket = Socket::open(&app.address, key).await;
    socket.subscribe("d", DELIVERIES, json!({})).await;
    assert_eq!(socket.close_code().await, 4403);
}

#[tokio::test]
async fn the_legacy_graphql_ws_subprotocol_is_spoken_too() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let url = format!("{}/graphql/ws", app.address.replacen("http", "ws", 1));
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "graphql-ws".parse().unwrap());
    let (ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "graphql-ws");
    let mut socket = Socket { ws };
    socket
        .send(json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {}", org.key)}}))
        .await;
    socket.expect_ack().await;
    socket
        .send(json!({"id": "1", "type": "start", "payload": {"query": DELIVERIES}}))
        .await;
    wait_for_subscriptions(&app.address, 1).await;
    deliver(&app.address, &org.key, 5).await;
    loop {
        let Received::Message(message) = socket.receive().await else {
            panic!("the connection closed");
        };
        if message["type"] == "data" {
            assert_eq!(
                message["payload"]["data"]["deliveryRecorded"]["outcome"],
                "queued"
            );
            break;
        }
    }
}
