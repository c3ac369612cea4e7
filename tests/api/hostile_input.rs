//! Hostile and odd input (issue 13, points 1-4): NUL characters, overlong text and out-of-range numbers in every
//! field of both intake endpoints and in GraphQL arguments are the caller's mistake (4xx) or legitimately cleaned,
//! never a 5xx that Azure DevOps and CI steps would retry forever; and one delivery-log row PostgreSQL refuses never
//! costs other organizations' rows.

use serde_json::{json, Value};
use sqlx::Row;
use uuid::Uuid;

use lathe_tests::{error_code, payload, spawn_app, Answer, Auth, TestApp};

const NUL: &str = "bad\u{0}value";

/// An ingest body with every field the README lists.
fn full_body() -> Value {
    json!({
        "build_name": "Nightly 7",
        "branch": "refs/heads/main",
        "commit_sha": "6a8f1c2e",
        "project": "Web",
        "repository_url": "https://dev.azure.com/fabrikam/web/_git/web",
        "release": "2026.1",
        "azure_build_id": "7",
        "azure_collection_url": "https://dev.azure.com/fabrikam/",
        "build_url": "https://dev.azure.com/fabrikam/web/_build/results?buildId=7",
        "pull_request_number": 12,
        "test_results": [{
            "title": "logs in", "status": "failed", "duration_ms": 1200.5, "priority": 2,
            "error_message": "expected 200", "steps": ["open", "log in"], "tester_notes": "flaky",
            "environment": "Chrome 120"
        }]
    })
}

/// The build's own text fields, each refused with its name when it holds a NUL or is overlong.
const BUILD_TEXT_FIELDS: [&str; 10] = [
    "build_name",
    "branch",
    "commit_sha",
    "project",
    "repository_url",
    "release",
    "azure_build_id",
    "azure_collection_url",
    "build_url",
    "pull_request_number",
];

fn named(answer: &Answer) -> Vec<String> {
    answer.body["error"]["fields"]
        .as_array()
        .map(|fields| {
            fields
                .iter()
                .filter_map(|f| f["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn assert_refused_naming(answer: &Answer, field: &str, what: &str) {
    assert_eq!(answer.status, 422, "{what}: {answer:?}");
    assert!(
        named(answer).iter().any(|f| f == field),
        "{what}: {field} is not named: {answer:?}"
    );
}

async fn setup() -> (TestApp, Auth, String) {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    (app, Auth::Bearer(org.key.clone()), org.key)
}

#[tokio::test]
async fn a_nul_or_an_overlong_value_in_any_ingest_build_field_is_422_naming_it() {
    let (app, auth, _) = setup().await;
    for field in BUILD_TEXT_FIELDS {
        for (variant, value) in [("NUL", NUL.to_owned()), ("overlong", "9".repeat(5_000))] {
            let mut body = full_body();
            body[field] = json!(value);
            let answer = app.ingest(&auth, &body, &[]).await;
            assert_refused_naming(&answer, field, &format!("{variant} in {field}"));
        }
    }
    let mut body = full_body();
    body["test_results"][0]["title"] = json!(NUL);
    let answer = app.ingest(&auth, &body, &[]).await;
    assert_refused_naming(&answer, "test_results[0].title", "NUL in title");
    body["test_results"][0]["title"] = json!("t".repeat(2_001));
    let answer = app.ingest(&auth, &body, &[]).await;
    assert_refused_naming(&answer, "test_results[0].title", "overlong title");
    // A NUL written as `%00` is one too where Lathe decodes it (the build id of a build URL); in a URL's path it
    // stays the text `%00`, which is stored as sent.
    for (field, value) in [
        (
            "build_url",
            "https://dev.azure.com/fabrikam/web/_build/results?buildId=7%00",
        ),
        ("azure_collection_url", "https://dev.azure.com/fab%00rikam/"),
        (
            "repository_url",
            "https://dev.azure.com/fab%00rikam/web/_git/web",
        ),
    ] {
        let mut body = full_body();
        body[field] = json!(value);
        if field == "build_url" {
            body["azure_build_id"] = Value::Null;
            body["azure_collection_url"] = Value::Null;
        }
        let answer = app.ingest(&auth, &body, &[]).await;
        if field == "build_url" {
            assert_refused_naming(&answer, field, value);
        } else {
            assert!(
                [200, 201].contains(&answer.status),
                "{field} = {value}: {answer:?}"
            );
        }
    }
    // Every call was answered, and the service still takes a good one.
    let answer = app.ingest(&auth, &full_body(), &[]).await;
    assert!([200, 201].contains(&answer.status), "{answer:?}");
}

#[tokio::test]
async fn tool_output_with_nul_characters_is_stored_without_them_and_cut_when_overlong() {
    let (app, auth, _) = setup().await;
    let mut body = full_body();
    let result = &mut body["test_results"][0];
    result["error_message"] = json!("expected 200\u{0}\u{0} got 500");
    result["steps"] = json!(["open\u{0}", "log in"]);
    result["tester_notes"] = json!("x".repeat(70_000));
    result["environment"] = json!("Chrome\u{0} 120");
    let answer = app.ingest(&auth, &body, &[]).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    let row = sqlx::query(
        "SELECT error_message, steps, tester_notes, environment FROM read.test_results",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(row.get::<String, _>(0), "expected 200 got 500");
    assert_eq!(row.get::<String, _>(1), "open\nlog in");
    let notes: String = row.get(2);
    assert!(notes.starts_with(&"x".repeat(65_536)), "{}", notes.len());
    assert!(
        notes.ends_with("[… 4464 more characters cut by Lathe]"),
        "{notes:.100}"
    );
    assert_eq!(row.get::<String, _>(3), "Chrome 120");
    // Steps as one text with a NUL, too.
    let mut body = full_body();
    body["azure_build_id"] = json!("8");
    body["build_url"] = Value::Null;
    body["test_results"][0]["steps"] = json!("one\u{0}two");
    let answer = app.ingest(&auth, &body, &[]).await;
    assert_eq!(answer.status, 201, "{answer:?}");
}

#[tokio::test]
async fn out_of_range_numbers_in_an_ingest_body_are_422_naming_the_field() {
    let (app, auth, _) = setup().await;
    let huge = json!(18_446_744_073_709_551_615u64);
    for (field, value) in [
        ("duration_ms", json!(9_223_372_036_854_775_808u64)),
        ("duration_ms", huge.clone()),
        ("duration_ms", json!(1e300)),
        ("duration_ms", json!(-1)),
        ("duration_ms", json!(9_007_199_254_740_992u64)),
        ("priority", json!(2_147_483_648u64)),
        ("priority", json!(1e300)),
    ] {
        let mut body = full_body();
        body["test_results"][0][field] = value.clone();
        let answer = app.ingest(&auth, &body, &[]).await;
        let path = format!("test_results[0].{field}");
        assert_refused_naming(&answer, &path, &format!("{field} = {value}"));
    }
    for value in [
        huge,
        json!("18446744073709551615"),
        json!(2_147_483_648u64),
        json!(0),
        json!(-3),
        json!(1e300),
    ] {
        let mut body = full_body();
        body["pull_request_number"] = value.clone();
        let answer = app.ingest(&auth, &body, &[]).await;
        assert_refused_naming(
            &answer,
            "pull_request_number",
            &format!("pull_request_number = {value}"),
        );
    }
    // The largest values in range are stored as sent.
    let mut body = full_body();
    body["pull_request_number"] = json!(2_147_483_647);
    body["test_results"][0]["duration_ms"] = json!(9_007_199_254_740_991u64);
    let answer = app.ingest(&auth, &body, &[]).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    let (pr, duration): (Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT b.pull_request_number, t.duration_ms FROM read.builds b JOIN read.test_results t USING (build_id)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(pr, Some(2_147_483_647));
    assert_eq!(duration, Some(9_007_199_254_740_991));
}

/// JSON pointers of every string and number in `value`.
fn leaves(value: &Value, at: String, out: &mut Vec<(String, Value)>) {
    let escape = |key: &str| key.replace('~', "~0").replace('/', "~1");
    match value {
        Value::Object(fields) => fields
            .iter()
            .for_each(|(key, v)| leaves(v, format!("{at}/{}", escape(key)), out)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| leaves(v, format!("{at}/{i}"), out)),
        Value::String(_) | Value::Number(_) => out.push((at, value.clone())),
        _ => {}
    }
}

#[tokio::test]
async fn every_field_of_every_sample_webhook_payload_with_nul_overlong_or_out_of_range_values_is_never_a_5xx(
) {
    let (app, auth, _) = setup().await;
    let mut refused = 0;
    for name in [
        "build.complete.msdocs-2022.json",
        "build.complete.msdocs-2024.json",
        "build.complete.go-playground-webhooks.json",
        "ms.vss-pipelines.run-state-changed-event.msdocs-2019.json",
        "git.pullrequest.created.go-playground-webhooks.json",
    ] {
        let sample = payload(name);
        let mut fields = Vec::new();
        leaves(&sample, String::new(), &mut fields);
        for (pointer, original) in fields {
            let variants = match &original {
                Value::String(text) => {
                    vec![json!(format!("{text}\u{0}")), json!("y".repeat(3_000))]
                }
                _ => vec![
                    json!(18_446_744_073_709_551_615u64),
                    json!(-1),
                    json!(1e300),
                ],
            };
            for value in variants {
                let mut body = sample.clone();
                *body.pointer_mut(&pointer).unwrap() = value.clone();
                let answer = app.webhook(&auth, &body).await;
                let what = format!("{name} {pointer} = {:.40}", value.to_string());
                let field = pointer.trim_start_matches('/').replace('/', ".");
                match answer.status {
                    200 => {}
                    422 => {
                        assert!(named(&answer).contains(&field), "{what}: {answer:?}");
                        refused += 1;
                    }
                    _ => panic!("{what}: {answer:?}"),
                }
            }
        }
    }
    // The fields Lathe reads were refused; the rest of a payload is not stored and was accepted.
    assert!(refused > 40, "refused: {refused}");
}

#[tokio::test]
async fn a_webhook_with_a_nul_branch_or_an_out_of_range_pull_request_is_422_naming_the_field() {
    let (app, auth, _) = setup().await;
    let sample = payload("build.complete.msdocs-2022.json");
    for (pointer, value, field) in [
        (
            "/resource/sourceBranch",
            json!("refs/heads/ma\u{0}in"),
            "resource.sourceBranch",
        ),
        ("/resource/id", json!("27\u{0}"), "resource.id"),
        ("/eventType", json!("build.complete\u{0}"), "eventType"),
        (
            "/resourceContainers/collection/baseUrl",
            json!("https://dev.azure.com/\u{0}fabrikam/"),
            "resourceContainers.collection.baseUrl",
        ),
        (
            "/resource/sourceBranch",
            json!("refs/pull/18446744073709551615/merge"),
            "resource.sourceBranch",
        ),
        (
            "/resource/triggerInfo",
            json!({ "pr.number": "4294967297" }),
            "resource.triggerInfo.pr.number",
        ),
    ] {
        let mut body = sample.clone();
        *body.pointer_mut(pointer).unwrap() = value;
        let answer = app.webhook(&auth, &body).await;
        assert_refused_naming(&answer, field, pointer);
    }
    // A pull request numbered at the top of the range is one.
    let mut body = sample.clone();
    body["resource"]["sourceBranch"] = json!("refs/pull/2147483647/merge");
    let answer = app.webhook(&auth, &body).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let number: Option<i64> = sqlx::query_scalar("SELECT pull_request_number FROM read.builds")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(number, Some(2_147_483_647));
}

#[tokio::test]
async fn graphql_string_arguments_with_a_nul_or_overlong_are_bad_user_input_never_internal() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let key = org.key.clone();
    let project = app.create_project(&key, "Web").await;
    let queued = app.enqueue_build(org.id, "1", None).await;
    let operations = [
        "mutation($v: String!) { createProject(input: {name: $v}) { id } }",
        "mutation($v: String!) { createProject(input: {name: \"A\", url: $v}) { id } }",
        "mutation($v: String!) { createProject(input: {name: \"B\", repositoryUrls: [\"https://x\", $v]}) { id } }",
        "mutation($v: String!) { createProject(input: {name: \"C\", branchInclude: [$v]}) { id } }",
        "mutation($v: String!) { createProject(input: {name: \"D\", branchExclude: [$v]}) { id } }",
        "mutation($v: String!) { createProject(input: {name: \"E\", azureProjectId: $v}) { id } }",
        "mutation($v: String!) { createProject(input: {name: \"F\", azureRepositoryIds: [$v]}) { id } }",
        "mutation($v: String!, $p: ID!) { updateProject(id: $p, input: {name: $v}) { id } }",
        "mutation($v: String!, $p: ID!) { updateProject(id: $p, input: {url: $v}) { id } }",
        "mutation($v: String!, $p: ID!) { createRelease(projectId: $p, name: $v) { id } }",
        "mutation($v: String!, $q: ID!) { rejectQueuedBuild(id: $q, reason: $v) { id } }",
        "mutation($v: String!) { createApiKey(input: {name: $v, scopes: [\"builds:read\"]}) { key } }",
        "mutation($v: String!) { createApiKey(input: {name: \"k\", scopes: [$v]}) { key } }",
        "mutation($v: String!, $p: ID!) { connectAzureDevOps(projectId: $p, input: {organizationUrl: $v,
            project: \"Web\", personalAccessToken: \"pat\"}) { id } }",
        "mutation($v: String!, $p: ID!) { connectAzureDevOps(projectId: $p, input: {
            organizationUrl: \"https://dev.azure.com/fabrikam\", project: $v, personalAccessToken: \"pat\"}) { id } }",
        "query($v: String!) { webhookDeliveries(outcome: $v) { edges { cursor } } }",
        "query($v: String!) { webhookDeliveries(after: $v) { edges { cursor } } }",
        "query($v: String!) { events(aggregateType: $v) { edges { cursor } } }",
        "query($v: String!) { events(aggregateId: $v) { edges { cursor } } }",
        "query($v: String!) { auditSealHolds(seal: $v) }",
        "query($v: String!) { buildQueue(after: $v) { edges { cursor } } }",
        "query($v: String!) { releases(after: $v) { edges { cursor } } }",
    ];
    for operation in operations {
        for value in [json!(NUL), json!("z".repeat(3_000))] {
            let variables = json!({ "v": value, "p": project, "q": queued });
            let body = app.graphql(Some(&key), operation, variables).await;
            assert_eq!(error_code(&body), "BAD_USER_INPUT", "{operation}: {body}");
        }
    }
    // The same as literals in the query text, at any depth.
    for operation in [
        r#"mutation { createProject(input: {name: "a\u0000b"}) { id } }"#,
        r#"mutation { createProject(input: {name: "G", repositoryUrls: ["a\u0000b"]}) { id } }"#,
        r#"query { events(aggregateType: "Build\u0000") { edges { cursor } } }"#,
        r#"query { webhookDeliveries(outcome: "ignored\u0000") { edges { cursor } } }"#,
    ] {
        let body = app.graphql(Some(&key), operation, json!({})).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{operation}: {body}");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("NUL"), "{message}");
    }
    let body = app
        .graphql(
            Some(&key),
            "mutation($i: CreateProjectInput!) { createProject(input: $i) { id } }",
            json!({ "i": { "name": "H", "repositoryUrls": ["ok", "b\u{0}"] } }),
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["argument"], "$i.repositoryUrls[1]",
        "{body}"
    );
}

#[tokio::test]
async fn graphql_numbers_out_of_range_are_bad_user_input_never_internal() {
    let (app, _, key) = setup().await;
    let project = app.create_project(&key, "Web").await;
    for (operation, variables) in [
        (
            "mutation($n: Int) { createApiKey(input: {name: \"k\", scopes: [\"builds:read\"], rateLimitPerMinute: $n}) { key } }",
            json!({ "n": -1 }),
        ),
        (
            "mutation($n: Int) { createApiKey(input: {name: \"k\", scopes: [\"builds:read\"], rateLimitPerMinute: $n}) { key } }",
            json!({ "n": 4_294_967_296u64 }),
        ),
        (
            "mutation($n: Int, $p: ID!) { updateProject(id: $p, input: {retention: {keepDays: $n}}) { id } }",
            json!({ "n": -1, "p": project }),
        ),
        (
            "mutation($n: Int, $p: ID!) { updateProject(id: $p, input: {retention: {keepDays: $n}}) { id } }",
            json!({ "n": 2_147_483_647, "p": project }),
        ),
        (
            "mutation($n: Int, $p: ID!) { updateProject(id: $p, input: {retention: {archiveCompletedAfterDays: $n}}) { id } }",
            json!({ "n": 2_147_483_647, "p": project }),
        ),
        (
            "mutation($n: Int, $p: ID!) { updateProject(id: $p, input: {retention: {keepLast: $n}}) { id } }",
            json!({ "n": -5, "p": project }),
        ),
        (
            "query($n: Int) { buildQueue(first: $n) { edges { cursor } } }",
            json!({ "n": -5 }),
        ),
        (
            "query($n: Int) { events(first: $n) { edges { cursor } } }",
            json!({ "n": 1e300 }),
        ),
    ] {
        let body = app.graphql(Some(&key), operation, variables.clone()).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{operation} {variables}: {body}");
    }
}

async fn deliveries_of(app: &TestApp, org: Uuid) -> Vec<Option<String>> {
    sqlx::query_scalar("SELECT event_type FROM public.deliveries WHERE organization_id = $1")
        .bind(org)
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_delivery_with_a_nul_in_its_event_type_costs_no_other_organization_its_log_rows() {
    let app = spawn_app().await;
    let hostile = app.create_org("Hostile").await;
    let victim = app.create_org("Victim").await;
    let sample = payload("build.complete.msdocs-2022.json");
    let (hostile_auth, victim_auth) = (
        Auth::Bearer(hostile.key.clone()),
        Auth::Bearer(victim.key.clone()),
    );
    let mut bad = sample.clone();
    bad["eventType"] = json!("build.complete\u{0}");
    // All at once, so that the log writer takes the bad row into a batch with the good ones.
    let good = (0..80).map(|n| {
        let mut body = sample.clone();
        body["resource"]["id"] = json!(10_000 + n);
        body
    });
    let calls = good
        .map(|body| (victim_auth.clone(), body))
        .chain(std::iter::once((hostile_auth, bad)))
        .map(|(auth, body)| {
            let app = &app;
            async move { app.webhook(&auth, &body).await }
        });
    let answers = futures::future::join_all(calls).await;
    assert!(answers[..80].iter().all(|a| a.status == 200), "{answers:?}");
    assert_refused_naming(&answers[80], "eventType", "NUL in eventType");
    assert_eq!(deliveries_of(&app, victim.id).await.len(), 80);
    // The bad delivery is in the log too, with what it sent minus the NUL.
    assert_eq!(
        deliveries_of(&app, hostile.id).await,
        [Some("build.complete".to_owned())]
    );
}

#[tokio::test]
async fn a_log_row_postgresql_refuses_costs_only_itself_when_written_in_one_batch() {
    let app = spawn_app().await;
    // A row PostgreSQL refuses whatever it holds (as a constraint added later might): the batch it is in fails.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.event_type = 'poison' THEN RAISE EXCEPTION 'poisoned row'; END IF; RETURN NEW; END $$;
         CREATE TRIGGER refuse_poison BEFORE INSERT ON public.deliveries
             FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let (hostile, victim) = (Uuid::new_v4(), Uuid::new_v4());
    let row = |organization_id: Uuid, event_type: &str| projections::deliveries::DeliveryRow {
        delivery_id: Uuid::now_v7(),
        organization_id: Some(organization_id),
        received_at: chrono::Utc::now(),
        source: "azure-devops".to_owned(),
        event_type: Some(event_type.to_owned()),
        outcome: "created".to_owned(),
        http_status: 200,
        message: "ok".to_owned(),
        build_id: None,
        queued_build_id: None,
        subscription_id: None,
        notification_id: None,
        event_id: None,
        request_id: None,
    };
    let mut rows: Vec<_> = (0..80).map(|_| row(victim, "build.complete")).collect();
    rows.insert(40, row(hostile, "poison"));
    // The test runtime has one thread: every row is queued before the writer runs, so they are one batch.
    let log = app.state.delivery_log.clone();
    futures::future::join_all(rows.into_iter().map(|r| log.record(r))).await;
    assert_eq!(deliveries_of(&app, victim).await.len(), 80);
    assert!(deliveries_of(&app, hostile).await.is_empty());
}
