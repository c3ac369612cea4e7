//! What one GraphQL request may take from everyone: its cost (rows, not fields), its aliases, the expensive audit
//! fields, the bytes of its answer and of its body; nested lists read in batches; authentication before the body.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use lathe_tests::{error_code, spawn_app, spawn_app_with, Auth, TestApp};

/// Three nested pages of 100 (a million rows) in `aliases` aliases.
fn nested_page_attack(aliases: usize) -> String {
    let one = "releases(first: 100) { edges { node { id name builds(first: 100) { edges { node { id buildName \
               testResults(first: 100) { edges { node { id title errorMessage steps } } } } } } } } }";
    let aliases: Vec<String> = (0..aliases).map(|n| format!("a{n}: {one}")).collect();
    format!("{{ {} }}", aliases.join(" "))
}

/// Ingests a build with `results` test results into the project's active release; returns the build id.
async fn ingest(
    app: &TestApp,
    key: &str,
    project: &str,
    name: &str,
    results: Vec<Value>,
) -> String {
    let answer = app
        .ingest(
            &Auth::Bearer(key.to_owned()),
            &json!({ "build_name": name, "project": project, "test_results": results }),
            &[],
        )
        .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    answer.body["buildId"]
        .as_str()
        .unwrap_or_else(|| panic!("a build id: {:?}", answer.body))
        .to_owned()
}

fn results(count: usize, text: &str) -> Vec<Value> {
    (0..count)
        .map(|n| json!({ "title": format!("test {n}"), "status": "failed", "error_message": text }))
        .collect()
}

#[tokio::test]
async fn an_aliased_nested_page_attack_is_refused_before_it_runs_and_another_organization_still_ingests(
) {
    // A small pool, so that a request holding connections would show.
    let app = spawn_app_with(|settings| settings.db_max_connections = 4).await;
    let attacker = app.create_org("Mallory").await;
    let (reader, _) = app.create_key(&attacker.key, &["builds:read"]).await;
    let victim = app.create_org("Fabrikam").await;
    let project = app.create_project(&victim.key, "Web").await;
    app.create_release(&victim.key, &project, "r1").await;

    // As reported (50 aliases: too many fields), and one alone (a million rows: over the budget), each sent
    // several times at once while the other organization uploads results.
    let (many, one) = (nested_page_attack(50), nested_page_attack(1));
    let attacks = (0..6).map(|n| {
        let query = if n % 2 == 0 { &many } else { &one };
        app.graphql(Some(&reader), query, json!({}))
    });
    let (refused, built) = tokio::join!(
        futures::future::join_all(attacks),
        ingest(&app, &victim.key, &project, "Build 1", results(3, "boom")),
    );
    assert!(!built.is_empty());
    for (n, body) in refused.into_iter().enumerate() {
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
        assert!(body["data"].is_null(), "nothing ran: {body}");
        let message = body["errors"][0]["message"].as_str().unwrap();
        let names = if n % 2 == 0 {
            "limit of 500 per request"
        } else {
            "budget of 25000 per request"
        };
        assert!(
            message.contains(names),
            "the message names the limit: {message}"
        );
    }
}

#[tokio::test]
async fn page_sizes_given_as_variables_count_in_the_cost() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let query = "query($n: Int) { releases(first: $n) { edges { node { builds(first: $n) { edges { node { id } } } } } } }";
    // 20 releases of 20 builds cost about 1,300; 100 of 100 about 30,000.
    app.graphql_ok(&org.key, query, json!({ "n": 20 })).await;
    let body = app
        .graphql(Some(&org.key), query, json!({ "n": 100 }))
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("budget of 25000"),
        "{body}"
    );
}

#[tokio::test]
async fn a_dashboard_page_of_releases_with_their_builds_and_results_is_answered() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let project = app.create_project(&org.key, "Web").await;
    app.create_release(&org.key, &project, "2026.11").await;
    for n in 0..3 {
        ingest(
            &app,
            &org.key,
            &project,
            &format!("Build {n}"),
            results(2, "boom"),
        )
        .await;
    }
    let data = app
        .graphql_ok(
            &org.key,
            "{ releases(first: 20) { edges { node { id name status buildCount project { name }
                builds(first: 20) { edges { node { buildName project { name } testSummary { total failed }
                  testResults(first: 5) { edges { node { title status } } } } } pageInfo { hasNextPage } } } } } }",
            json!({}),
        )
        .await;
    let release = &data["releases"]["edges"][0]["node"];
    assert_eq!(release["project"]["name"], "Web");
    let builds = release["builds"]["edges"].as_array().unwrap();
    assert_eq!(builds.len(), 3);
    for build in builds {
        assert_eq!(build["node"]["project"]["name"], "Web");
        assert_eq!(build["node"]["testSummary"]["total"], 2);
        assert_eq!(
            build["node"]["testResults"]["edges"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }
}

/// The service connected to PostgreSQL through [`counting_proxy`], with no background jobs or metrics ticks of its
/// own, and the proxy's count of statements.
pub(crate) async fn spawn_app_behind_counting_proxy() -> (TestApp, Arc<AtomicUsize>) {
    let (proxy, statements) = counting_proxy().await;
    let app = spawn_app_with(|settings| {
        let url = settings
            .database_url
            .expose_secret()
            .replace("127.0.0.1:5432", &proxy);
        settings.database_url = secrecy::SecretString::from(format!("{url}?sslmode=disable"));
        settings.background_jobs = false;
        settings.metrics_interval_secs = 3600;
        settings.integrity_interval_secs = 3600;
    })
    .await;
    (app, statements)
}

/// Runs `query` three times and returns its answer with the fewest statements any one run executed: the service's
/// own periodic work (key-usage notes, metrics gauges, the live listener) goes through the same proxy, and on a
/// busy machine a run can take long enough for some of it to land inside. Per-parent reads would show in every run.
pub(crate) async fn fewest_statements(
    app: &TestApp,
    key: &str,
    query: &str,
    statements: &AtomicUsize,
) -> (serde_json::Value, usize) {
    let mut fewest = usize::MAX;
    let mut data = serde_json::Value::Null;
    for _ in 0..3 {
        statements.store(0, Ordering::SeqCst);
        data = app.graphql_ok(key, query, json!({})).await;
        fewest = fewest.min(statements.load(Ordering::SeqCst));
    }
    (data, fewest)
}

/// A TCP proxy in front of PostgreSQL that counts the statements clients execute (extended-protocol `Execute`
/// and simple-protocol `Query` messages).
pub(crate) async fn counting_proxy() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect("127.0.0.1:5432").await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                });
                let mut pending: Vec<u8> = Vec::new();
                // The startup message has no type byte; every later message is type, length, body.
                let mut started = false;
                let mut buffer = vec![0u8; 64 * 1024];
                loop {
                    let read = match client_read.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => read,
                    };
                    if server_write.write_all(&buffer[..read]).await.is_err() {
                        return;
                    }
                    pending.extend_from_slice(&buffer[..read]);
                    loop {
                        let header = if started { 5 } else { 4 };
                        if pending.len() < header {
                            break;
                        }
                        let at = header - 4;
                        let length =
                            u32::from_be_bytes(pending[at..at + 4].try_into().unwrap()) as usize;
                        if pending.len() < at + length {
                            break;
                        }
                        if started && matches!(pending[0], b'E' | b'Q') {
                            counted.fetch_add(1, Ordering::SeqCst);
                        }
                        started = true;
                        pending.drain(..at + length);
                    }
                }
            });
        }
    });
    (address, count)
}

#[tokio::test]
async fn the_builds_results_and_projects_of_a_page_of_releases_are_read_in_a_few_statements() {
    let (app, statements) = spawn_app_behind_counting_proxy().await;
    let org = app.create_org("Fabrikam").await;
    for p in 0..4 {
        let project = app.create_project(&org.key, &format!("Project {p}")).await;
        app.create_release(&org.key, &project, "r").await;
        for b in 0..8 {
            ingest(
                &app,
                &org.key,
                &project,
                &format!("Build {p}.{b}"),
                results(2, "x"),
            )
            .await;
        }
    }
    let query = "{ releases(first: 10) { edges { node { name project { name } builds(first: 10) { edges { node {
        buildName project { name } testResults(first: 5) { edges { node { title } } } } } } } } } }";
    // Once to warm the key cache and the connections, then counted.
    app.graphql_ok(&org.key, query, json!({})).await;
    let (data, executed) = fewest_statements(&app, &org.key, query, &statements).await;

    let releases = data["releases"]["edges"].as_array().unwrap();
    assert_eq!(releases.len(), 4);
    let builds: usize = releases
        .iter()
        .map(|r| r["node"]["builds"]["edges"].as_array().unwrap().len())
        .sum();
    assert_eq!(builds, 32);
    eprintln!("statements for 4 releases with 32 builds: {executed}");
    // One statement per parent would be 1 + 4 + 4 + 32 + 32 = 73.
    assert!(
        executed <= 10,
        "4 releases with 32 builds took {executed} statements"
    );
}

#[tokio::test]
async fn expensive_audit_fields_may_be_asked_for_once_per_request() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    app.create_project(&org.key, "Web").await;
    for query in [
        "{ a: auditSeal { seal } b: auditSeal { seal } }".to_owned(),
        "{ a: projectionStatus { name } b: projectionStatus { name } }".to_owned(),
        "query($s: String!) { a: auditSealHolds(seal: $s) b: auditSealHolds(seal: $s) }".to_owned(),
        "query($id: ID!) { a: buildHistory(id: $id) { buildId } ...B } fragment B on Query { buildHistory(id: $id) { buildId } }"
            .to_owned(),
    ] {
        let body = app
            .graphql(
                Some(&org.key),
                &query,
                json!({ "s": "1:1:ab", "id": uuid::Uuid::new_v4() }),
            )
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{query}: {body}");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("once per request"),
            "{body}"
        );
        assert!(body["data"].is_null());
    }
    let data = app
        .graphql_ok(
            &org.key,
            "{ auditSeal { events } projectionStatus { name } }",
            json!({}),
        )
        .await;
    assert!(data["auditSeal"]["events"].is_number(), "{data}");
}

#[tokio::test]
async fn a_long_event_payload_is_left_out_of_its_page_and_read_whole_in_pieces() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let project = app.create_project(&org.key, "Web").await;
    app.create_release(&org.key, &project, "r").await;
    // About 100 characters per result: 1,500 results are a payload well over the 65,536 sent inline.
    let build = ingest(
        &app,
        &org.key,
        &project,
        "Build 1",
        results(1_500, "expected 1 but got 2"),
    )
    .await;

    let page = "query($id: ID!, $after: String) { buildHistory(id: $id) { events(first: 1, after: $after) {
        edges { node { sequence eventType payload payloadTruncated payloadLength } } pageInfo { hasNextPage endCursor } } } }";
    // Each event with the cursor of the page it is on.
    let mut after: Option<String> = None;
    let mut events = Vec::new();
    loop {
        let data = app
            .graphql_ok(&org.key, page, json!({ "id": build, "after": after }))
            .await;
        let connection = &data["buildHistory"]["events"];
        for edge in connection["edges"].as_array().unwrap() {
            events.push((after.clone(), edge["node"].clone()));
        }
        if connection["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = connection["pageInfo"]["endCursor"]
            .as_str()
            .map(str::to_owned);
    }
    assert!(
        events.len() >= 2,
        "the build's events, one page at a time: {events:?}"
    );
    let (cursor_before, long) = events
        .iter()
        .find(|(_, event)| event["payloadTruncated"] == true)
        .expect("the upload's payload is left out");
    assert!(long["payload"].is_null());
    let length = long["payloadLength"].as_i64().unwrap();
    assert!(length > 65_536, "{length}");
    let (_, short) = events
        .iter()
        .find(|(_, event)| event["payloadTruncated"] == false)
        .unwrap();
    assert!(short["payload"].is_object());

    let chunk = "query($id: ID!, $after: String, $offset: Int!) { buildHistory(id: $id) { events(first: 1, after: $after) {
        edges { node { payloadChunk(offset: $offset, length: 40000) } } } } }";
    let sequence = long["sequence"].as_i64().unwrap();
    let mut text = String::new();
    while (text.chars().count() as i64) < length {
        let data = app
            .graphql_ok(
                &org.key,
                chunk,
                json!({ "id": build, "after": cursor_before, "offset": text.chars().count() }),
            )
            .await;
        let piece = data["buildHistory"]["events"]["edges"][0]["node"]["payloadChunk"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(!piece.is_empty(), "the chunks reach the payload's length");
        text.push_str(&piece);
    }
    let stored: String = sqlx::query_scalar(
        "SELECT payload::text FROM events WHERE aggregate_id = $1 AND sequence = $2",
    )
    .bind(&build)
    .bind(sequence)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(text, stored);
    let payload: Value = serde_json::from_str(&text).unwrap();
    assert!(payload.to_string().contains("test 1499"));
}

#[tokio::test]
async fn projection_status_counts_only_the_callers_organization() {
    let app = spawn_app().await;
    let ours = app.create_org("Fabrikam").await;
    let theirs = app.create_org("Contoso").await;
    app.create_project(&ours.key, "Ours").await;
    let their_project = app.create_project(&theirs.key, "Theirs").await;
    // Their read model loses a row behind the service's back.
    sqlx::query("DELETE FROM read.projects WHERE project_id = $1::uuid")
        .bind(&their_project)
        .execute(&app.pool)
        .await
        .unwrap();
    let missing = |data: &Value| {
        data["projectionStatus"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "projects")
            .unwrap()["missingStreams"]
            .as_i64()
            .unwrap()
    };
    let query = "{ projectionStatus { name missingStreams } }";
    let our_view = app.graphql_ok(&ours.key, query, json!({})).await;
    assert_eq!(
        missing(&our_view),
        0,
        "another tenant's streams are not ours"
    );
    let their_view = app.graphql_ok(&theirs.key, query, json!({})).await;
    assert_eq!(missing(&their_view), 1);
}

#[tokio::test]
async fn an_answer_over_the_byte_budget_is_one_clear_error() {
    let app = spawn_app_with(|settings| settings.graphql_max_response_bytes = 20_000).await;
    let org = app.create_org("Fabrikam").await;
    let project = app.create_project(&org.key, "Web").await;
    app.create_release(&org.key, &project, "r").await;
    let build = ingest(
        &app,
        &org.key,
        &project,
        "Build 1",
        results(20, &"x".repeat(2_000)),
    )
    .await;
    let query = "query($b: ID!, $n: Int!) { build(id: $b) { testResults(first: $n) { edges { node { errorMessage } } } } }";
    let small = app
        .graphql_ok(&org.key, query, json!({ "b": build, "n": 5 }))
        .await;
    assert_eq!(
        small["build"]["testResults"]["edges"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    let body = app
        .graphql(Some(&org.key), query, json!({ "b": build, "n": 20 }))
        .await;
    assert!(body["data"].is_null(), "{body}");
    assert_eq!(body["errors"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("20000 bytes"));
}

#[tokio::test]
async fn a_fragment_that_multiplies_fields_is_refused_before_it_is_expanded() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let mut query = String::from("{ projects { ...F0 } }");
    // 2^25 fields once expanded (async-graphql's parser refuses fragments nested past 32 levels itself).
    for n in 0..25 {
        query.push_str(&format!(
            " fragment F{n} on Project {{ ...F{} ...F{} }}",
            n + 1,
            n + 1
        ));
    }
    query.push_str(" fragment F25 on Project { id }");
    let body = app.graphql(Some(&org.key), &query, json!({})).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("limit of 500"),
        "{body}"
    );
}

#[tokio::test]
async fn a_graphql_body_over_its_limit_is_refused_with_413() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let padded = |bytes: usize| {
        serde_json::to_vec(
            &json!({ "query": format!("{{ projects {{ id }} }}{}", " ".repeat(bytes)) }),
        )
        .unwrap()
    };
    let send = |key: Option<String>, body: Vec<u8>| {
        let mut request = app
            .client
            .post(format!("{}/graphql", app.address))
            .header("content-type", "application/json")
            .body(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };
    let big = send(Some(org.key.clone()), padded(1_200_000))
        .await
        .unwrap();
    assert_eq!(big.status().as_u16(), 413);
    let body: Value = big.json().await.unwrap();
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("1048576 bytes"),
        "{body}"
    );
    // 100 KB is fine with a key, too much without one (who may only introspect).
    let with_key = send(Some(org.key.clone()), padded(100_000)).await.unwrap();
    assert_eq!(with_key.status().as_u16(), 200);
    let without = send(None, padded(100_000)).await.unwrap();
    assert_eq!(without.status().as_u16(), 413);
    // A body sent in chunks, without a length, is cut off at the limit too.
    let address = app.address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        org.key
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for chunk in padded(2_000_000).chunks(64 * 1024) {
        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
        framed.extend_from_slice(chunk);
        framed.extend_from_slice(b"\r\n");
        // The server may stop reading once it has answered.
        if stream.write_all(&framed).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = vec![0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    let status = String::from_utf8_lossy(&answer[..read]).into_owned();
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
}

/// Sends request headers announcing a megabyte of body, a few bytes of it, and nothing more; returns the status
/// line of the answer (the body never completes, so only an answer given before reading it arrives).
async fn status_without_the_body(app: &TestApp, authorization: &str) -> String {
    let address = app.address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: {address}\r\nAuthorization: {authorization}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{{\"query\": \""
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 1024];
    // Generous: the answer comes at once, or never while the body is incomplete.
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut answer))
        .await
        .expect("an answer before the body is complete")
        .unwrap();
    let text = String::from_utf8_lossy(&answer[..read]).into_owned();
    text.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_wrong_or_revoked_key_is_refused_without_reading_the_body() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let (revoked, id) = app.create_key(&org.key, &["builds:read"]).await;
    app.graphql_ok(
        &org.key,
        "mutation($id: ID!) { revokeApiKey(id: $id) { id } }",
        json!({ "id": id }),
    )
    .await;
    let wrong = format!("pt_live_{}", "A".repeat(40));
    for key in [wrong.as_str(), revoked.as_str()] {
        let status = status_without_the_body(&app, &format!("Bearer {key}")).await;
        assert!(status.starts_with("HTTP/1.1 401"), "{status}");
    }
    let status = status_without_the_body(&app, "Token nonsense").await;
    assert!(status.starts_with("HTTP/1.1 401"), "{status}");
}

/// The introspection query GraphiQL and code generators send.
const INTROSPECTION: &str = "query IntrospectionQuery { __schema { queryType { name } mutationType { name }
  subscriptionType { name } types { ...FullType } directives { name description locations args { ...InputValue } } } }
fragment FullType on __Type { kind name description
  fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated
    deprecationReason }
  inputFields { ...InputValue } interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef } }
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } } }";

#[tokio::test]
async fn the_whole_introspection_query_fits_without_a_key() {
    let app = spawn_app().await;
    let body = app.graphql(None, INTROSPECTION, json!({})).await;
    assert!(body.get("errors").is_none(), "{body}");
    assert!(body["data"]["__schema"]["types"].as_array().unwrap().len() > 20);
}
