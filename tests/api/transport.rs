//! How requests reach the service from the internet: TLS, slow and half-sent requests, timeouts, panics, callers
//! without a valid key (per client address, through trusted proxies only), and who may read `/metrics`.

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::{json, Value};

use lathe_tests::{error_code, payload, spawn_app_with, Auth, TestApp};

const DELIVERY: &str = "build.complete.msdocs-2022.json";

fn fixture(name: &str) -> std::path::PathBuf {
    format!("{}/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR")).into()
}

/// A key of the right shape that no organization holds.
fn fake_key(n: usize) -> Auth {
    Auth::Bearer(format!("pt_live_{n:0>40}"))
}

/// Sends `request` on a raw connection to `app`, then reads until the server closes it or answers, for at most
/// 60 s: generous for a loaded machine, and a server without timeouts never closes at all. Returns what was read,
/// or `None` when the server was still holding the connection open at the end.
async fn raw_exchange(
    app: &TestApp,
    request: Vec<u8>,
    trickle: Option<Duration>,
) -> Option<String> {
    let address = app.address.trim_start_matches("http://").to_owned();
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        match trickle {
            None => stream.write_all(&request).unwrap(),
            Some(pause) => {
                stream.write_all(&request).unwrap();
                // One more byte of body now and then, never enough to finish it.
                let writer = stream.try_clone().unwrap();
                std::thread::spawn(move || {
                    let mut writer = writer;
                    for _ in 0..600 {
                        std::thread::sleep(pause);
                        if writer.write_all(b" ").is_err() {
                            break;
                        }
                    }
                });
            }
        }
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => return Some(String::from_utf8_lossy(&answer).into_owned()),
                Ok(n) => {
                    answer.extend_from_slice(&chunk[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                        return Some(String::from_utf8_lossy(&answer).into_owned());
                    }
                }
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                    return Some(String::from_utf8_lossy(&answer).into_owned())
                }
                Err(_) => return None,
            }
        }
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn lathe_serve_terminates_tls_with_the_given_certificate_and_refuses_plain_http() {
    let app = spawn_app_with(|settings| {
        settings.tls_cert = Some(fixture("cert.pem"));
        settings.tls_key = Some(fixture("key.pem"));
    })
    .await;
    assert!(app.address.starts_with("https://"), "{}", app.address);
    let ca = reqwest::Certificate::from_pem(&std::fs::read(fixture("ca.pem")).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let response = client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .expect("an HTTPS answer, trusting only the test CA");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.text().await.unwrap(), "ok");

    let org = app.create_org("Fabrikam").await;
    let answer = client
        .post(format!("{}/api/webhooks/azure-devops", app.address))
        .bearer_auth(&org.key)
        .json(&payload(DELIVERY))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200, "a delivery over HTTPS");

    let plain = app.address.replacen("https://", "http://", 1);
    let refused = reqwest::Client::new()
        .get(format!("{plain}/healthz"))
        .send()
        .await;
    assert!(refused.is_err(), "plain HTTP to the TLS port: {refused:?}");
}

/// A `lathe serve` process, killed when dropped.
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_lathe_serve_command_takes_its_certificate_from_flags_or_the_environment() {
    let app = spawn_app_with(|_| {}).await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(fixture("ca.pem")).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let (cert, key) = (fixture("cert.pem"), fixture("key.pem"));
    for by_flags in [true, false] {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .unwrap()
            .port();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_lathe-under-test"));
        command
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .env("DATABASE_URL", &app.database_url)
            .env("RUST_LOG", "warn")
            .env("LATHE_BACKGROUND_JOBS", "false")
            .stdout(std::process::Stdio::null());
        if by_flags {
            command
                .arg("--tls-cert")
                .arg(&cert)
                .arg("--tls-key")
                .arg(&key);
        } else {
            command
                .env("LATHE_TLS_CERT", &cert)
                .env("LATHE_TLS_KEY", &key);
        }
        let _served = Served(command.spawn().expect("lathe starts"));
        let mut answered = None;
        for _ in 0..200 {
            if let Ok(response) = client
                .get(format!("https://127.0.0.1:{port}/healthz"))
                .send()
                .await
            {
                answered = Some(response.status().as_u16());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            answered,
            Some(200),
            "HTTPS from `lathe serve` (flags: {by_flags})"
        );
    }
    // A certificate without its key is refused at the command line.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lathe-under-test"))
        .args(["serve", "--tls-cert"])
        .arg(&cert)
        .env("DATABASE_URL", &app.database_url)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--tls-key"),
        "{output:?}"
    );
}

#[tokio::test]
async fn on_sigterm_the_request_in_flight_is_answered_before_the_process_ends() {
    let app = spawn_app_with(|_| {}).await;
    let org = app.create_org("Fabrikam").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port();
    let mut served = Served(
        std::process::Command::new(env!("CARGO_BIN_EXE_lathe-under-test"))
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .env("DATABASE_URL", &app.database_url)
            .env("RUST_LOG", "warn")
            .env("LATHE_BACKGROUND_JOBS", "false")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("lathe starts"),
    );
    let key = org.key.clone();
    let exchange = tokio::task::spawn_blocking(move || {
        let body = br#"{"build_name": "in flight", "test_results": []}"#;
        let head = format!(
            "POST /api/v1/results/ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut stream = (0..100)
            .find_map(|_| {
                std::net::TcpStream::connect(("127.0.0.1", port))
                    .map_err(|_| std::thread::sleep(Duration::from_millis(100)))
                    .ok()
            })
            .expect("the service listens");
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&body[..10]).unwrap();
        (stream, body)
    })
    .await
    .unwrap();
    let (mut stream, body) = exchange;
    // The request has begun; the process is told to stop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &served.0.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answer = tokio::task::spawn_blocking(move || {
        stream.write_all(&body[10..]).unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let mut status = None;
    for _ in 0..300 {
        status = served.0.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(status.is_some_and(|status| status.success()), "{status:?}");
}

#[tokio::test]
async fn a_half_sent_request_head_or_a_silent_connection_is_closed_after_the_header_timeout() {
    let app = spawn_app_with(|settings| settings.header_read_timeout_secs = 1).await;
    let half = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".to_vec();
    let answer = raw_exchange(&app, half, None).await;
    assert!(answer.is_some(), "the connection was held open");
    let silent = raw_exchange(&app, Vec::new(), None).await;
    assert!(
        silent.is_some(),
        "a connection that sends nothing was held open"
    );
    // A whole request on a fresh connection is answered as usual.
    let whole = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec();
    let answer = raw_exchange(&app, whole, None).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_refused_after_the_body_timeout() {
    let app = spawn_app_with(|settings| settings.body_read_timeout_secs = 1).await;
    let org = app.create_org("Fabrikam").await;
    let request = format!(
        "POST /api/v1/results/ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{\"build_name\": \"x\", ",
        org.key
    );
    let answer = raw_exchange(&app, request.into_bytes(), None)
        .await
        .expect("an answer before the client gives up");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}

#[tokio::test]
async fn a_request_that_outlasts_the_request_timeout_is_answered_408() {
    let app = spawn_app_with(|settings| {
        settings.request_timeout_secs = 1;
        settings.body_read_timeout_secs = 60;
    })
    .await;
    let org = app.create_org("Fabrikam").await;
    let request = format!(
        "POST /api/v1/results/ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{",
        org.key
    );
    // The body keeps coming, a byte every 100 ms, so only the whole-request timeout can end it.
    let answer = raw_exchange(&app, request.into_bytes(), Some(Duration::from_millis(100)))
        .await
        .expect("an answer before the client gives up");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/json"), "{answer}");
}

#[tokio::test]
async fn a_panicking_handler_is_answered_500_json_and_the_connection_stays_usable() {
    use axum::routing::get;
    let app = spawn_app_with(|_| {}).await;
    // The service's own routes and layers, with one more route that panics.
    let routes = lathe_api::router::routes(app.state.clone()).route(
        "/panics",
        get(|| async {
            if true {
                panic!("a bug in a handler");
            }
        }),
    );
    let settings = lathe_api::config::Settings::for_database(&app.database_url);
    let router = lathe_api::router::with_layers(
        routes,
        &lathe_api::transport::Edge::from_settings(&settings),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(lathe_api::transport::listener::serve(
        listener,
        None,
        router,
        Duration::from_secs(10),
        std::future::pending(),
    ));
    // One connection for both requests: a panic must not take the connection down.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .http1_only()
        .build()
        .unwrap();
    let response = client
        .get(format!("{address}/panics"))
        .send()
        .await
        .expect("an answer, not a dropped connection");
    assert_eq!(response.status().as_u16(), 500);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "INTERNAL");
    assert_eq!(body["error"]["message"], "internal error", "no panic text");
    let after = client
        .get(format!("{address}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status().as_u16(), 200);
}

#[tokio::test]
async fn callers_without_a_valid_key_are_limited_per_address_and_leave_no_delivery_log_rows() {
    let app = spawn_app_with(|settings| settings.unauthenticated_rate_limit_per_minute = 3).await;
    let org = app.create_org("Fabrikam").await;
    for n in 0..3 {
        let answer = app.webhook(&fake_key(n), &payload(DELIVERY)).await;
        assert_eq!(answer.status, 401, "{answer:?}");
    }
    // The budget is the address's, whatever the endpoint or the key.
    let limited = app
        .client
        .post(format!("{}/api/v1/results/ingest", app.address))
        .bearer_auth(format!("pt_live_{}", "Z".repeat(40)))
        .json(&json!({ "build_name": "b", "test_results": [] }))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status().as_u16(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let body = app
        .graphql(None, "{ buildQueue { edges { cursor } } }", json!({}))
        .await;
    assert_eq!(error_code(&body), "RATE_LIMITED", "{body}");
    let no_key = app.webhook(&Auth::None, &payload(DELIVERY)).await;
    assert_eq!(no_key.status, 429);

    // A valid key from the same address is not held back.
    let answer = app
        .webhook(&Auth::Bearer(org.key.clone()), &payload(DELIVERY))
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    app.graphql_ok(&org.key, "{ buildQueue { edges { cursor } } }", json!({}))
        .await;

    // Only the delivery of the real organization is in the log.
    let rows: Vec<Option<uuid::Uuid>> =
        sqlx::query_scalar("SELECT organization_id FROM deliveries")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(rows, [Some(org.id)]);
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
    let forwarded = |app: &TestApp, from: &'static str, n: usize| {
        let request = app
            .client
            .post(format!("{}/api/webhooks/azure-devops", app.address))
            .header("x-forwarded-for", from)
            .bearer_auth(format!("pt_live_{n:0>40}"))
            .json(&payload(DELIVERY));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    // Behind a trusted proxy on loopback: each forwarded client has its own budget.
    let proxied = spawn_app_with(|settings| {
        settings.unauthenticated_rate_limit_per_minute = 2;
        settings.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    assert_eq!(forwarded(&proxied, "198.51.100.1", 1).await, 401);
    assert_eq!(forwarded(&proxied, "198.51.100.1", 2).await, 401);
    assert_eq!(forwarded(&proxied, "198.51.100.1", 3).await, 429);
    // A client cannot pick its address by writing it first: the proxy appended the one it saw.
    assert_eq!(
        forwarded(&proxied, "203.0.113.5, 198.51.100.1", 4).await,
        429
    );
    assert_eq!(forwarded(&proxied, "198.51.100.2", 5).await, 401);

    // Without trusted proxies the header changes nothing: the peer is the client.
    let direct =
        spawn_app_with(|settings| settings.unauthenticated_rate_limit_per_minute = 2).await;
    assert_eq!(forwarded(&direct, "198.51.100.1", 1).await, 401);
    assert_eq!(forwarded(&direct, "198.51.100.2", 2).await, 401);
    assert_eq!(forwarded(&direct, "198.51.100.3", 3).await, 429);
}

#[tokio::test]
async fn a_scrape_serves_the_gauges_computed_in_the_background() {
    let app = spawn_app_with(|settings| settings.metrics_interval_secs = 3600).await;
    // The first computation runs when the service starts; the next one an hour later.
    let first = app
        .metrics_when(|text| text.contains("lathe_events_total "))
        .await;
    let events = |text: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix("lathe_events_total "))
            .map(str::to_owned)
    };
    let org = app.create_org("Fabrikam").await;
    let answer = app
        .webhook(&Auth::Bearer(org.key.clone()), &payload(DELIVERY))
        .await;
    assert_eq!(answer.status, 200);
    for _ in 0..20 {
        let text = app.metrics_when(|_| true).await;
        assert_eq!(events(&text), events(&first), "no count on a scrape");
        // This process's own counters are live.
        assert!(text.contains("lathe_appends_total 1\n"), "{text}");
    }
}

#[tokio::test]
async fn metrics_need_the_operators_token_when_one_is_set() {
    let app = spawn_app_with(|settings| {
        settings.metrics_token = Some(secrecy::SecretString::from("scrape-me".to_owned()));
    })
    .await;
    let scrape = |token: Option<&'static str>| {
        let mut request = app.client.get(format!("{}/metrics", app.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap() }
    };
    assert_eq!(scrape(None).await.status().as_u16(), 401);
    assert_eq!(scrape(Some("guess")).await.status().as_u16(), 401);
    let allowed = scrape(Some("scrape-me")).await;
    assert_eq!(allowed.status().as_u16(), 200);
    assert!(allowed
        .text()
        .await
        .unwrap()
        .contains("lathe_appends_total"));
}

#[tokio::test]
async fn metrics_on_a_listener_of_their_own_leave_the_main_port() {
    let app = spawn_app_with(|settings| {
        settings.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let main = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(main.status().as_u16(), 404);
    let metrics_address = app.metrics_address.clone().expect("a metrics listener");
    let text = app
        .metrics_when(|text| text.contains("lathe_events_total"))
        .await;
    assert!(text.contains("lathe_appends_total"), "{text}");
    let graphql = app
        .client
        .post(format!("{metrics_address}/graphql"))
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(graphql.status().as_u16(), 404, "only metrics there");
}
