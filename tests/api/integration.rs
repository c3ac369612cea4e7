//! Azure DevOps work items and pull-request statuses, against the loopback stand-in for Azure DevOps.

use std::time::Duration;

use serde_json::{json, Value};

use crate::fake_azure::{FakeAzure, Fault, PROJECT, REPOSITORY, TOKEN};
use crate::process::spawn_process;
use lathe_tests::{error_code, payload, spawn_app, spawn_app_with, Auth, TestApp, TestOrg};

const CONNECT: &str =
    "mutation($p: ID!, $i: AzureDevOpsInput!) { connectAzureDevOps(projectId: $p, input: $i) {
    azureDevOps { organizationUrl project workItemType autoCreateWorkItems failureThreshold
    fieldMappings { source field } } } }";

fn connection(fake: &FakeAzure, auto_create: bool) -> Value {
    json!({ "organizationUrl": fake.url, "project": PROJECT, "personalAccessToken": TOKEN,
        "autoCreateWorkItems": auto_create, "failureThreshold": 3, "postPullRequestComments": true,
        "environmentField": "Microsoft.VSTS.TCM.SystemInfo" })
}

async fn connected_project(
    app: &TestApp,
    org: &TestOrg,
    fake: &FakeAzure,
    auto_create: bool,
) -> String {
    let project = app.create_project(&org.key, "FabrikamFiberChat").await;
    app.graphql_ok(
        &org.key,
        CONNECT,
        json!({ "p": project, "i": connection(fake, auto_create) }),
    )
    .await;
    project
}

/// Results for the Azure build 2727068 (the sample delivery's), some failed.
fn results(titles: &[(&str, &str)]) -> Value {
    let results: Vec<Value> = titles
        .iter()
        .map(|(title, status)| json!({ "title": title, "status": status, "priority": 1, "steps": "open\nclick",
            "error_message": "expected <ok>", "tester_notes": "seen twice", "environment": "ubuntu-22.04" }))
        .collect();
    json!({ "build_name": "Build 1", "project": "FabrikamFiberChat", "test_results": results })
}

/// Runs the outbox until nothing is due or `deadline` passes.
async fn deliver_until(app: &TestApp, done: impl Fn() -> bool, deadline: Duration) {
    let start = std::time::Instant::now();
    while start.elapsed() < deadline {
        lathe_api::azure::worker::deliver_due(&app.state)
            .await
            .unwrap();
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn deliveries(app: &TestApp, key: &str, status: &str) -> Vec<Value> {
    let data = app
        .graphql_ok(
            key,
            "query($s: DeliveryStatus) { azureDevOpsDeliveries(status: $s) { kind status attempts lastError lastHttpStatus result } }",
            json!({ "s": status }),
        )
        .await;
    data["azureDevOpsDeliveries"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_connection_is_checked_against_azure_devops_and_its_token_never_shows() {
    let fake = FakeAzure::start().await;
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let project = app.create_project(&org.key, "Web").await;
    for (change, needle) in [
        (
            json!({ "personalAccessToken": "wrong" }),
            "token was rejected",
        ),
        (json!({ "project": "Nope" }), "does not know the project"),
        (json!({ "workItemType": "Epic" }), "work item type `Epic`"),
        (
            json!({ "environmentField": "Custom.Nope" }),
            "has no field Custom.Nope",
        ),
        (json!({ "organizationUrl": "not a url" }), "organizationUrl"),
    ] {
        let mut input = connection(&fake, true);
        for (k, v) in change.as_object().unwrap() {
            input[k] = v.clone();
        }
        let body = app
            .graphql(Some(&org.key), CONNECT, json!({ "p": project, "i": input }))
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{change}: {body}");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{change}: {message}");
        assert!(!message.contains(TOKEN));
    }
    let data = app
        .graphql_ok(
            &org.key,
            CONNECT,
            json!({ "p": project, "i": connection(&fake, true) }),
        )
        .await;
    let shown = &data["connectAzureDevOps"]["azureDevOps"];
    assert_eq!(shown["workItemType"], "Bug");
    assert_eq!(
        shown["fieldMappings"],
        json!([{ "source": "TEST_CASE_TITLE", "field": "System.Title" },
               { "source": "PRIORITY", "field": "Microsoft.VSTS.Common.Priority" },
               { "source": "TEST_STEPS", "field": "Microsoft.VSTS.TCM.ReproSteps" },
               { "source": "TESTER_NOTES", "field": "System.Description" },
               { "source": "ENVIRONMENT", "field": "Microsoft.VSTS.TCM.SystemInfo" }])
    );
    for table in ["events", "read.azure_connections", "azure_credentials"] {
        let dump: String = sqlx::query_scalar(&format!(
            "SELECT coalesce(string_agg(t::text, ' '), '') FROM {table} t"
        ))
        .fetch_one(&app.pool)
        .await
        .unwrap();
        assert!(!dump.contains(TOKEN), "{table} holds the token in clear");
    }
    let ciphertext: i64 = sqlx::query_scalar("SELECT count(*) FROM azure_credentials")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(ciphertext, 1, "the token is stored, encrypted");

    let off = app
        .graphql_ok(&org.key, "mutation($p: ID!) { disconnectAzureDevOps(projectId: $p) { azureDevOps { project } } }", json!({ "p": project }))
        .await;
    assert_eq!(off["disconnectAzureDevOps"]["azureDevOps"], Value::Null);

    let keyless = spawn_app_with(|s| s.secret_key = None).await;
    let org = keyless.create_org("NoKey").await;
    let project = keyless.create_project(&org.key, "Web").await;
    let body = keyless
        .graphql(
            Some(&org.key),
            CONNECT,
            json!({ "p": project, "i": connection(&fake, true) }),
        )
        .await;
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("LATHE_SECRET_KEY"));
}

#[tokio::test]
async fn failed_tests_get_one_work_item_each_with_the_mapped_fields() {
    let fake = FakeAzure::start().await;
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    connected_project(&app, &org, &fake, true).await;
    let auth = Auth::Bearer(org.key.clone());
    let first = app
        .ingest(
            &auth,
            &results(&[
                ("login works", "failed"),
                ("logout works", "failed"),
                ("home", "passed"),
            ]),
            &[],
        )
        .await;
    assert_eq!(first.status, 201, "{first:?}");
    deliver_until(
        &app,
        || fake.work_items().len() == 2,
        Duration::from_secs(10),
    )
    .await;
    let items = fake.work_items();
    assert_eq!(items.len(), 2);
    let login = items
        .iter()
        .find(|w| w.fields["System.Title"] == "Test failed: login works")
        .expect("a work item");
    assert_eq!(login.fields["Microsoft.VSTS.Common.Priority"], 1);
    let steps = login.fields["Microsoft.VSTS.TCM.ReproSteps"]
        .as_str()
        .unwrap();
    assert!(
        steps.contains("open<br>click") && steps.contains("expected &lt;ok&gt;"),
        "{steps}"
    );
    assert_eq!(login.fields["System.Description"], "seen twice");
    assert_eq!(
        login.fields["Microsoft.VSTS.TCM.SystemInfo"],
        "ubuntu-22.04"
    );

    let build = first.body["buildId"]
        .as_str()
        .or(first.body["queuedBuildId"].as_str())
        .unwrap();
    let data = app
        .graphql_ok(
            &org.key,
            "query($b: ID!) { queuedBuild(id: $b) { id } }",
            json!({ "b": build }),
        )
        .await;
    assert!(data["queuedBuild"].is_object());
    let linked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM read.test_results WHERE work_item_id IS NOT NULL")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(linked, 2);
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'WorkItemLinked'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(events, 2, "each link is an event");

    // The same test fails again while its work item is open: no second work item, the new result is linked.
    app.ingest(&auth, &results(&[("login works", "failed")]), &[])
        .await;
    deliver_until(&app, || false, Duration::from_millis(600)).await;
    assert_eq!(fake.work_items().len(), 2);
    // Once that work item is closed, a new failure gets a new one.
    fake.set_state(login.id, "Closed");
    app.ingest(&auth, &results(&[("login works", "failed")]), &[])
        .await;
    deliver_until(
        &app,
        || fake.work_items().len() == 3,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(fake.work_items().len(), 3);
}

#[tokio::test]
async fn a_failing_test_with_the_longest_title_in_a_three_byte_script_is_linked_to_its_work_item() {
    let fake = FakeAzure::start().await;
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    connected_project(&app, &org, &fake, true).await;
    let auth = Auth::Bearer(org.key.clone());
    // 2,000 characters (the longest title ingest takes) of three bytes each, varied so that they do not compress:
    // 6,000 bytes, over what one B-tree entry of PostgreSQL holds, so a key on the title could never store the link.
    let title: String = (0..2_000u32)
        .map(|i| char::from_u32(0x4E00 + (i * 7_919) % 20_000).unwrap())
        .collect();
    let first = app
        .ingest(&auth, &results(&[(title.as_str(), "failed")]), &[])
        .await;
    assert_eq!(first.status, 201, "{first:?}");
    deliver_until(
        &app,
        || fake.work_items().len() == 1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(fake.work_items().len(), 1);
    let linked = |app: &TestApp| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM read.test_results WHERE work_item_id IS NOT NULL",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let start = std::time::Instant::now();
    while linked(&app).await < 1 && start.elapsed() < Duration::from_secs(10) {
        deliver_until(&app, || false, Duration::from_millis(100)).await;
    }
    assert_eq!(linked(&app).await, 1, "the link is stored");

    // It fails again while its work item is open: linked to the same work item, no second one.
    app.ingest(&auth, &results(&[(title.as_str(), "failed")]), &[])
        .await;
    let start = std::time::Instant::now();
    while linked(&app).await < 2 && start.elapsed() < Duration::from_secs(10) {
        deliver_until(&app, || false, Duration::from_millis(100)).await;
    }
    assert_eq!(linked(&app).await, 2);
    assert_eq!(fake.work_items().len(), 1);
}

#[tokio::test]
async fn more_failures_than_the_threshold_make_one_summary_work_item() {
    let fake = FakeAzure::start().await;
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    connected_project(&app, &org, &fake, true).await;
    let failures: Vec<(String, &str)> = (0..6).map(|n| (format!("broken {n}"), "failed")).collect();
    let failures: Vec<(&str, &str)> = failures.iter().map(|(t, s)| (t.as_str(), *s)).collect();
    app.ingest(&Auth::Bearer(org.key.clone()), &results(&failures), &[])
        .await;
    deliver_until(
        &app,
        || !fake.work_items().is_empty(),
        Duration::from_secs(10),
    )
    .await;
    deliver_until(&app, || false, Duration::from_millis(300)).await;
    let items = fake.work_items();
    assert_eq!(items.len(), 1, "one work item for the build, not six");
    assert_eq!(
        items[0].fields["System.Title"],
        "6 tests failed in build Build 1"
    );
    let linked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM read.test_results WHERE work_item_id IS NOT NULL")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(linked, 6);
}

#[tokio::test]
async fn a_work_item_is_created_on_demand_and_retries_honour_retry_after() {
    let fake = FakeAzure::start().await;
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    connected_project(&app, &org, &fake, false).await;
    app.ingest(
        &Auth::Bearer(org.key.clone()),
        &results(&[("flaky", "failed")]),
        &[],
    )
    .await;
    deliver_until(&app, || false, Duration::from_millis(300)).await;
    assert!(
        fake.work_items().is_empty(),
        "automatic creation is off by default"
    );
    let id: String = sqlx::query_scalar("SELECT test_result_id::text FROM read.test_results")
        .fetch_one(&app.pool)
        .await
        .unwrap();

    fake.fail_next(
        "work_item",
        Fault::TooManyRequests {
            retry_after_secs: 1,
        },
    );
    let started = std::time::Instant::now();
    let data = app
        .graphql_ok(
            &org.key,
            "mutation($t: ID!) { createWorkItem(testResultId: $t) { kind status } }",
            json!({ "t": id }),
        )
        .await;
    assert_eq!(
        data["createWorkItem"],
        json!({ "kind": "work_item", "status": "PENDING" })
    );
    deliver_until(
        &app,
        || !fake.work_items().is_empty(),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(fake.work_items().len(), 1);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
    let done = deliveries(&app, &org.key, "SUCCEEDED").await;
    assert_eq!(done[0]["attempts"], 2);
    let data = app
        .graphql_ok(
            &org.key,
            "{ buildQueue { edges { node { id } } } }",
            json!({}),
        )
        .await;
    let build = data["buildQueue"]["edges"][0]["node"]["id"].clone();
    let shown = app
        .graphql(
            Some(&org.key),
            "query($b: ID!) { build(id: $b) { id } }",
            json!({ "b": build }),
        )
        .await;
    assert!(shown["data"].is_object());
    let link: (i64, String) =
        sqlx::query_as("SELECT work_item_id, work_item_url FROM read.test_results")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(link.0 as u64, fake.work_items()[0].id);
    assert!(link.1.ends_with(&format!("/_workitems/edit/{}", link.0)));
    // Asking again returns the same call: no second work item.
    app.graphql_ok(
        &org.key,
        "mutation($t: ID!) { createWorkItem(testResultId: $t) { status } }",
        json!({ "t": id }),
    )
    .await;
    deliver_until(&app, || false, Duration::from_millis(300)).await;
    assert_eq!(fake.work_items().len(), 1);
}

#[tokio::test]
async fn a_timed_out_creation_is_not_made_twice_and_errors_end_visible() {
    let fake = FakeAzure::start().await;
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    connected_project(&app, &org, &fake, true).await;
    // Azure DevOps creates the work item but answers after the client gave up.
    fake.fail_next("work_item", Fault::Stall(Duration::from_millis(1500)));
    fake.fail_next("any", Fault::ServerError);
    app.ingest(
        &Auth::Bearer(org.key.clone()),
        &results(&[("slow", "failed")]),
        &[],
    )
    .await;
    deliver_until(&app, || false, Duration::from_secs(1)).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    deliver_until(&app, || false, Duration::from_secs(2)).await;
    assert_eq!(
        fake.work_items().len(),
        1,
        "the retry found the work item by its tag"
    );
    let done = deliveries(&app, &org.key, "SUCCEEDED").await;
    assert_eq!(done.len(), 1, "{done:?}");

    // A refusal for good ends the call as failed at once, with the error.
    fake.fail_next("work_item", Fault::Forbidden);
    app.ingest(
        &Auth::Bearer(org.key.clone()),
        &results(&[("denied", "failed")]),
        &[],
    )
    .await;
    deliver_until(&app, || false, Duration::from_millis(500)).await;
    let failed = deliveries(&app, &org.key, "FAILED").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["attempts"], 1);
    assert_eq!(failed[0]["lastHttpStatus"], 403);
    assert!(failed[0]["lastError"]
        .as_str()
        .unwrap()
        .contains("Contribute"));

    // A call that keeps failing ends failed after the bounded number of attempts.
    fake.set_down(true);
    app.ingest(
        &Auth::Bearer(org.key.clone()),
        &results(&[("down", "failed")]),
        &[],
    )
    .await;
    deliver_until(&app, || false, Duration::from_secs(3)).await;
    let failed = deliveries(&app, &org.key, "FAILED").await;
    let gave_up = failed
        .iter()
        .find(|d| d["lastHttpStatus"] == 503)
        .expect("the outage ends failed");
    assert_eq!(gave_up["attempts"], 4);
    assert!(gave_up["lastError"]
        .as_str()
        .unwrap()
        .starts_with("gave up after 4 attempts"));
}

#[tokio::test]
async fn calls_survive_a_restart() {
    let fake = FakeAzure::start().await;
    // This process only sets up; the service processes below deliver.
    let app = spawn_app_with(|s| s.background_jobs = false).await;
    let org = app.create_org("Fabrikam").await;
    connected_project(&app, &org, &fake, true).await;
    fake.set_down(true);
    let first = spawn_process(&app.database_url).await;
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/results/ingest", first.address))
        .bearer_auth(&org.key)
        .json(&results(&[("survives", "failed")]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(first);
    assert!(fake.work_items().is_empty());
    fake.set_down(false);
    let _second = spawn_process(&app.database_url).await;
    for _ in 0..100 {
        if !fake.work_items().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        fake.work_items().len(),
        1,
        "the restarted service delivered the stored call"
    );
}

/// The sample build.complete as a pull-request build of the fake's Azure Repos repository.
fn pull_request_build(number: i64, repository: &str) -> Value {
    let mut body = payload("build.complete.msdocs-2022.json");
    body["resource"]["id"] = json!(5000 + number);
    body["resource"]["reason"] = json!("pullRequest");
    body["resource"]["sourceBranch"] = json!(format!("refs/pull/{number}/merge"));
    body["resource"]["triggerInfo"] =
        json!({ "pr.number": number.to_string(), "pr.triggerRepository": repository });
    body
}

#[tokio::test]
async fn pull_request_builds_get_a_status_and_a_comment_once_results_are_in() {
    let fake = FakeAzure::start().await;
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    connected_project(&app, &org, &fake, false).await;
    let auth = Auth::Bearer(org.key.clone());
    app.webhook(&auth, &pull_request_build(42, REPOSITORY))
        .await;
    let mut body = results(&[
        ("a", "passed"),
        ("b", "failed"),
        ("c", "skipped"),
        ("d", "passed"),
    ]);
    body["azure_build_id"] = json!(5042);
    body["azure_collection_url"] = json!("https://dev.azure.com/FabrikamFiber/");
    let answer = app.ingest(&auth, &body, &[]).await;
    assert_eq!(answer.body["outcome"], "attached", "{answer:?}");
    deliver_until(&app, || !fake.threads().is_empty(), Duration::from_secs(10)).await;
    let statuses = fake.statuses();
    assert_eq!(statuses.len(), 1);
    let (pr, status) = &statuses[0];
    assert_eq!(*pr, 42);
    assert_eq!(status["state"], "failed");
    assert_eq!(status["description"], "2 passed, 1 failed, 1 skipped");
    assert_eq!(status["context"]["name"], "lathe-studio/tests");
    assert!(status["targetUrl"].as_str().unwrap().contains("/builds/"));
    assert!(fake.threads()[0].1["comments"][0]["content"]
        .as_str()
        .unwrap()
        .contains("2 passed, 1 failed"));
    assert!(fake
        .requests()
        .iter()
        .any(|(method, path)| method == "POST" && path.ends_with("/statuses")));

    // A completed pull request refuses statuses: recorded as failed, not retried.
    fake.state.lock().unwrap().inactive_pull_requests.insert(43);
    app.webhook(&auth, &pull_request_build(43, REPOSITORY))
        .await;
    let mut body = results(&[("a", "passed")]);
    body["azure_build_id"] = json!(5043);
    body["azure_collection_url"] = json!("https://dev.azure.com/FabrikamFiber/");
    app.ingest(&auth, &body, &[]).await;
    // A GitHub-hosted repository is out of scope, and says so.
    app.webhook(&auth, &pull_request_build(44, "dotnet/runtime"))
        .await;
    let mut body = results(&[("a", "passed")]);
    body["azure_build_id"] = json!(5044);
    body["azure_collection_url"] = json!("https://dev.azure.com/FabrikamFiber/");
    app.ingest(&auth, &body, &[]).await;
    deliver_until(&app, || false, Duration::from_secs(1)).await;
    let failed = deliveries(&app, &org.key, "FAILED").await;
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed.iter().all(|d| d["attempts"] == 1));
    assert!(failed.iter().any(|d| d["lastError"]
        .as_str()
        .unwrap()
        .contains("no longer active")));
    assert!(failed.iter().any(|d| d["lastError"]
        .as_str()
        .unwrap()
        .contains("hosted on GitHub")));
}
