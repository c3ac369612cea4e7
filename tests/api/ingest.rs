//! `POST /api/v1/results/ingest`: the spec's pipeline body, validation, atomicity, size, idempotency, and meeting
//! the webhook's delivery of the same build.

use serde_json::{json, Value};

use lathe_tests::{payload, spawn_app, spawn_app_with, Auth, TestApp, TestOrg};

async fn setup() -> (TestApp, TestOrg, Auth) {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let auth = Auth::Bearer(org.key.clone());
    (app, org, auth)
}

/// The body of the spec's `azure-pipelines.yml` step, with results filled in.
fn pipeline_body(results: Vec<Value>) -> Value {
    json!({
        "build_name": "Build 20241202.1",
        "branch": "main",
        "commit_sha": "6e12f6141917f66a2964af55952ee33914d2d91f",
        "test_results": results,
    })
}

fn results(count: usize) -> Vec<Value> {
    (0..count)
        .map(|n| {
            let status = ["passed", "failed", "skipped"][n % 3];
            json!({ "title": format!("test {n}"), "status": status, "duration_ms": n,
                "error_message": (status == "failed").then_some("assertion failed"),
                "priority": 2, "steps": "1. open\r\n2. check\tC:\\temp", "tester_notes": "seen on CI",
                "environment": "ubuntu-latest" })
        })
        .collect()
}

async fn summary(app: &TestApp, key: &str, build: &str) -> Value {
    let data = app
        .graphql_ok(
            key,
            "query($b: ID!) { build(id: $b) { testSummary { total passed failed skipped } } }",
            json!({ "b": build }),
        )
        .await;
    data["build"]["testSummary"].clone()
}

/// Connections left idle inside a transaction (which would hold their rows' locks).
async fn idle_in_transaction(app: &TestApp) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

async fn stored_results(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM test_results")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_spec_pipeline_body_creates_a_build_with_its_results() {
    let (app, org, auth) = setup().await;
    let project = app.create_project(&org.key, "Web").await;
    app.create_release(&org.key, &project, "2026.11").await;
    let mut body = pipeline_body(results(5));
    body["project"] = json!("web");
    let answer = app.ingest(&auth, &body, &[]).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    assert_eq!(answer.body["outcome"], "created");
    assert_eq!(answer.body["resultsStored"], 5);
    let build = answer.body["buildId"].as_str().unwrap();
    assert_eq!(
        summary(&app, &org.key, build).await,
        json!({ "total": 5, "passed": 2, "failed": 2, "skipped": 1 })
    );

    let page = app
        .graphql_ok(
            &org.key,
            "query($b: ID!) { build(id: $b) { buildName branch commitSha
                testResults(first: 2, status: FAILED) { edges { node { title status durationMs errorMessage priority
                steps testerNotes environment } } pageInfo { hasNextPage endCursor } } } }",
            json!({ "b": build }),
        )
        .await;
    let build_data = &page["build"];
    assert_eq!(build_data["buildName"], "Build 20241202.1");
    assert_eq!(build_data["branch"], "main");
    let edges = build_data["testResults"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 2);
    assert_eq!(
        edges[0]["node"],
        json!({ "title": "test 1", "status": "FAILED", "durationMs": 1, "errorMessage": "assertion failed",
            "priority": 2, "steps": "1. open\r\n2. check\tC:\\temp", "testerNotes": "seen on CI", "environment": "ubuntu-latest" })
    );
    assert_eq!(edges[1]["node"]["title"], "test 4");
    assert_eq!(build_data["testResults"]["pageInfo"]["hasNextPage"], false);
}

#[tokio::test]
async fn results_are_paged_in_upload_order() {
    let (app, org, auth) = setup().await;
    let answer = app.ingest(&auth, &pipeline_body(results(7)), &[]).await;
    assert_eq!(answer.body["outcome"], "queued");
    let build = answer.body["queuedBuildId"].as_str().unwrap().to_owned();
    // A queued build becomes a build once assigned; its results are there all along.
    let project = app.create_project(&org.key, "Web").await;
    let release = app.create_release(&org.key, &project, "r").await;
    app.graphql_ok(
        &org.key,
        "mutation($b: ID!, $r: ID!) { assignQueuedBuild(id: $b, releaseId: $r) { status } }",
        json!({ "b": build, "r": release }),
    )
    .await;
    let mut titles = Vec::new();
    let mut after = Value::Null;
    loop {
        let data = app
            .graphql_ok(
                &org.key,
                "query($b: ID!, $a: String) { build(id: $b) { testResults(first: 3, after: $a) {
                    edges { node { title } } pageInfo { hasNextPage endCursor } } } }",
                json!({ "b": build, "a": after }),
            )
            .await;
        let connection = &data["build"]["testResults"];
        for edge in connection["edges"].as_array().unwrap() {
            titles.push(edge["node"]["title"].as_str().unwrap().to_owned());
        }
        if !connection["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = connection["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(
        titles,
        (0..7).map(|n| format!("test {n}")).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn invalid_fields_get_422_naming_each_and_nothing_is_stored() {
    let (app, _, auth) = setup().await;
    let mut bad = results(3);
    bad[1]["status"] = json!("exploded");
    bad[2].as_object_mut().unwrap().remove("title");
    let body = json!({ "branch": "main", "test_results": bad, "unknown_field": "tolerated" });
    let answer = app.ingest(&auth, &body, &[]).await;
    assert_eq!(answer.status, 422, "{answer:?}");
    let fields: Vec<&str> = answer.body["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "build_name",
            "test_results[1].status",
            "test_results[2].title"
        ]
    );
    assert_eq!(stored_results(&app).await, 0, "all results or none");
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'BuildQueue'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(events, 0);

    let answer = app
        .post_raw(
            "/api/v1/results/ingest",
            &auth,
            b"{\"build_name\": ".to_vec(),
            &[],
        )
        .await;
    assert_eq!(answer.status, 400, "malformed JSON: {answer:?}");
}

#[tokio::test]
async fn ten_thousand_results_in_one_call_are_stored() {
    let (app, org, auth) = setup().await;
    let answer = app
        .ingest(&auth, &pipeline_body(results(10_000)), &[])
        .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    assert_eq!(answer.body["resultsStored"], 10_000);
    let build = answer.body["queuedBuildId"].as_str().unwrap();
    let project = app.create_project(&org.key, "Web").await;
    let release = app.create_release(&org.key, &project, "r").await;
    app.graphql_ok(
        &org.key,
        "mutation($b: ID!, $r: ID!) { assignQueuedBuild(id: $b, releaseId: $r) { status } }",
        json!({ "b": build, "r": release }),
    )
    .await;
    assert_eq!(
        summary(&app, &org.key, build).await,
        json!({ "total": 10_000, "passed": 3334, "failed": 3333, "skipped": 3333 })
    );
    assert_eq!(stored_results(&app).await, 10_000);
}

#[tokio::test]
async fn a_body_over_the_configured_limit_is_413() {
    let app = spawn_app_with(|settings| settings.ingest_max_bytes = 64 * 1024).await;
    let org = app.create_org("Fabrikam").await;
    let answer = app
        .ingest(
            &Auth::Bearer(org.key.clone()),
            &pipeline_body(results(1_000)),
            &[],
        )
        .await;
    assert_eq!(answer.status, 413, "{answer:?}");
    assert_eq!(stored_results(&app).await, 0);
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_and_stores_nothing_new() {
    let (app, _, auth) = setup().await;
    let body = pipeline_body(results(4));
    let key = [("idempotency-key", "run-8812-attempt-1")];
    let first = app.ingest(&auth, &body, &key).await;
    assert_eq!(first.status, 201);
    let second = app.ingest(&auth, &body, &key).await;
    assert_eq!(second.status, 201);
    assert_eq!(second.body, first.body, "the same answer");
    assert_eq!(stored_results(&app).await, 4, "stored once");

    let mut changed = body.clone();
    changed["build_name"] = json!("Another build");
    let mismatch = app.ingest(&auth, &changed, &key).await;
    assert_eq!(mismatch.status, 422, "{mismatch:?}");
    assert_eq!(
        mismatch.body["error"]["fields"][0]["field"],
        "Idempotency-Key"
    );

    let concurrent = futures::future::join_all(
        (0..6).map(|_| app.ingest(&auth, &body, &[("idempotency-key", "concurrent")])),
    )
    .await;
    for answer in &concurrent {
        assert!(matches!(answer.status, 201 | 409), "{answer:?}");
    }
    assert_eq!(
        stored_results(&app).await,
        8,
        "one more upload of 4, whatever the race"
    );
}

#[tokio::test]
async fn an_upload_cut_off_by_the_request_timeout_still_completes_and_its_retry_gets_the_first_answer(
) {
    let app = spawn_app_with(|settings| settings.request_timeout_secs = 1).await;
    let org = app.create_org("Fabrikam").await;
    let auth = Auth::Bearer(org.key.clone());
    let body = pipeline_body(results(3));
    let key = [("idempotency-key", "cut-off")];

    // Appends wait for this transaction's lock, so the upload outlives its request.
    let mut blocker = app.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE public.events IN EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let first = app.ingest(&auth, &body, &key).await;
    assert_eq!(first.status, 408, "{first:?}");
    blocker.rollback().await.unwrap();

    // The upload went on without its caller: a retry gets its answer instead of 409 for a day.
    let mut retry = app.ingest(&auth, &body, &key).await;
    for _ in 0..100 {
        if retry.status != 409 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        retry = app.ingest(&auth, &body, &key).await;
    }
    assert_eq!(retry.status, 201, "{retry:?}");
    assert_eq!(stored_results(&app).await, 3, "stored once");
}

#[tokio::test]
async fn results_for_an_azure_build_join_the_build_the_webhook_made() {
    let (app, org, auth) = setup().await;
    let delivered = app
        .webhook(&auth, &payload("build.complete.msdocs-2022.json"))
        .await;
    assert_eq!(delivered.body["outcome"], "queued");
    let mut body = pipeline_body(results(3));
    body["azure_build_id"] = json!("2727068");
    body["azure_collection_url"] = json!("https://dev.azure.com/FabrikamFiber/");
    let answer = app.ingest(&auth, &body, &[]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["outcome"], "attached");
    assert_eq!(
        answer.body["queuedBuildId"],
        delivered.body["queuedBuildId"]
    );
    // The upload was first decided as a new build (three events) and found the first two taken: it stored none of
    // them, was decided again, and left no transaction open behind it (an open one would hold its rows' locks).
    let stream: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM events WHERE aggregate_type = 'BuildQueue' ORDER BY sequence",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        stream,
        ["BuildReceived", "BuildQueued", "TestResultsRecorded"]
    );
    assert_eq!(
        idle_in_transaction(&app).await,
        0,
        "connections idle in a transaction"
    );
    let data = app
        .graphql_ok(
            &org.key,
            "{ buildQueue { edges { node { buildName } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data["buildQueue"]["edges"].as_array().unwrap().len(),
        1,
        "one build, not two"
    );
}

#[tokio::test]
async fn results_that_arrive_before_the_webhook_are_met_by_it() {
    let (app, _, auth) = setup().await;
    let mut body = pipeline_body(results(2));
    body["build_url"] =
        json!("https://dev.azure.com/FabrikamFiber/FabrikamFiberChat/_build/results?buildId=2727068&view=results");
    let first = app.ingest(&auth, &body, &[]).await;
    assert_eq!(first.body["outcome"], "queued", "{first:?}");
    let delivered = app
        .webhook(&auth, &payload("build.complete.msdocs-2022.json"))
        .await;
    assert_eq!(delivered.body["outcome"], "duplicate");
    assert_eq!(delivered.body["queuedBuildId"], first.body["queuedBuildId"]);
}

#[tokio::test]
async fn a_named_release_receives_the_build() {
    let (app, org, auth) = setup().await;
    let project = app.create_project(&org.key, "Web").await;
    app.create_release(&org.key, &project, "2026.10").await;
    let wanted = app.create_release(&org.key, &project, "2026.11").await;
    let mut body = pipeline_body(results(1));
    body["project"] = json!(project);
    let answer = app.ingest(&auth, &body, &[]).await;
    assert_eq!(
        answer.body["outcome"], "queued",
        "two active releases and none named"
    );
    let mut body = pipeline_body(results(1));
    body["project"] = json!("Web");
    body["release"] = json!("2026.11");
    let answer = app.ingest(&auth, &body, &[]).await;
    assert_eq!(answer.body["outcome"], "created", "{answer:?}");
    let data = app
        .graphql_ok(
            &org.key,
            "query($b: ID!) { build(id: $b) { releaseId } }",
            json!({ "b": answer.body["buildId"] }),
        )
        .await;
    assert_eq!(data["build"]["releaseId"], wanted.as_str());
}

#[tokio::test]
async fn ingest_needs_a_key_with_builds_create() {
    let (app, org, _) = setup().await;
    let (reader, _) = app.create_key(&org.key, &["builds:read"]).await;
    let answer = app
        .ingest(&Auth::Bearer(reader), &pipeline_body(results(1)), &[])
        .await;
    assert_eq!(answer.status, 403);
    let answer = app
        .ingest(&Auth::None, &pipeline_body(results(1)), &[])
        .await;
    assert_eq!(answer.status, 401);
}

/// Uploads for builds the webhook made and deliveries of new builds, all at once: the group commit then mixes, in
/// one transaction, commands that start streams with uploads first decided as new builds (two of whose three events
/// find their sequences taken; /metrics showed the 32 concurrent appends in 5-7 transactions). Each upload is stored
/// once, after its build's two events, and every new build whole.
#[tokio::test]
async fn uploads_for_existing_builds_among_new_builds_each_store_whole() {
    const BUILDS: u64 = 16;
    let (app, _org, auth) = setup().await;
    let template = payload("build.complete.msdocs-2022.json");
    let delivery = |id: u64| {
        let mut delivery = template.clone();
        delivery["resource"]["id"] = json!(id);
        delivery
    };
    for id in 1..=BUILDS {
        let answer = app.webhook(&auth, &delivery(id)).await;
        assert_eq!(answer.body["outcome"], "queued", "{answer:?}");
    }
    let uploads: Vec<Value> = (1..=BUILDS)
        .map(|id| {
            let mut body = pipeline_body(results(3));
            body["azure_build_id"] = json!(id.to_string());
            body["azure_collection_url"] = json!("https://dev.azure.com/FabrikamFiber/");
            body
        })
        .collect();
    let new_builds: Vec<Value> = (BUILDS + 1..=2 * BUILDS).map(delivery).collect();
    let (uploaded, delivered) = tokio::join!(
        futures::future::join_all(uploads.iter().map(|body| app.ingest(&auth, body, &[]))),
        futures::future::join_all(new_builds.iter().map(|body| app.webhook(&auth, body))),
    );
    for answer in &uploaded {
        assert_eq!(answer.body["outcome"], "attached", "{answer:?}");
    }
    for answer in &delivered {
        assert_eq!(answer.body["outcome"], "queued", "{answer:?}");
    }

    let streams: Vec<(String, i64)> = sqlx::query_as(
        "SELECT events, count(*) FROM (
             SELECT string_agg(event_type, ',' ORDER BY sequence) AS events FROM events
             WHERE aggregate_type = 'BuildQueue' GROUP BY aggregate_id) AS streams
         GROUP BY events ORDER BY events",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        streams,
        [
            ("BuildReceived,BuildQueued".to_owned(), BUILDS as i64),
            (
                "BuildReceived,BuildQueued,TestResultsRecorded".to_owned(),
                BUILDS as i64
            ),
        ]
    );
    assert_eq!(stored_results(&app).await, 3 * BUILDS as i64);
    assert_eq!(
        idle_in_transaction(&app).await,
        0,
        "connections idle in a transaction"
    );
}

/// Large payloads (an upload's results) are compressed with lz4 where the server has it: pglz cost the database
/// three times the CPU for the same size.
#[tokio::test]
async fn an_uploads_event_payload_is_stored_compressed_with_lz4() {
    let (app, _org, auth) = setup().await;
    let answer = app.ingest(&auth, &pipeline_body(results(1_000)), &[]).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    let lz4_available: bool = sqlx::query_scalar(
        "SELECT 'lz4' = ANY (enumvals) FROM pg_settings WHERE name = 'default_toast_compression'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let (size, compression): (i32, Option<String>) = sqlx::query_as(
        "SELECT octet_length(payload::text), pg_column_compression(payload) FROM events
         WHERE event_type = 'TestResultsRecorded'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(
        size > 100_000,
        "the payload is large enough to be compressed: {size} bytes"
    );
    let expected = if lz4_available { "lz4" } else { "pglz" };
    assert_eq!(compression.as_deref(), Some(expected));
}
