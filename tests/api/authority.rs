//! Authority where it belongs (issue 13): bounded branch filters, org-id authentication off by default and turned
//! on only by a key that may create builds, a cap on per-key rate limits, Azure DevOps calls only to Azure DevOps
//! (no private addresses, no foreign redirects, no foreign bodies quoted), no credential left by a refused
//! connection, and each outbox call delivered once by several workers.

use serde_json::{json, Value};

use lathe_api::azure::worker::deliver_due;
use lathe_api::config::Settings;
use lathe_api::state::AppState;
use lathe_api::Application;
use lathe_tests::{error_code, payload, spawn_app, spawn_app_with, Auth, TestApp, TEST_SECRET_KEY};

use crate::fake_azure::{FakeAzure, Fault, PROJECT, TOKEN};

const CHAT_2022: &str = "build.complete.msdocs-2022.json";

fn delivery(build_id: u64, branch: &str) -> Value {
    let mut body = payload(CHAT_2022);
    body["resource"]["id"] = json!(build_id);
    body["resource"]["sourceBranch"] = json!(branch);
    body
}

fn message(body: &Value) -> String {
    body["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn branch_patterns_over_the_length_or_count_bound_are_refused_when_a_project_is_saved() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let create = "mutation($i: [String!], $e: [String!]) {
        createProject(input: {name: \"Web\", branchInclude: $i, branchExclude: $e}) { id } }";
    let long = format!("release/{}", "*a".repeat(1_000));
    let body = app
        .graphql(Some(&org.key), create, json!({ "i": [long], "e": [] }))
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    assert!(message(&body).contains("at most 256 characters"), "{body}");
    assert!(
        message(&body).len() < 300,
        "the pattern is not echoed whole"
    );

    let many: Vec<String> = (0..40).map(|n| format!("team{n}/*")).collect();
    let body = app
        .graphql(Some(&org.key), create, json!({ "i": many, "e": many }))
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    assert!(message(&body).contains("at most 64"), "{body}");

    let project = app.create_project(&org.key, "Web").await;
    let body = app
        .graphql(
            Some(&org.key),
            "mutation($id: ID!, $e: [String!]) { updateProject(id: $id, input: {branchExclude: $e}) { id } }",
            json!({ "id": project, "e": ["x".repeat(257)] }),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");

    // At the bounds, a hostile pattern is still matched at once against the longest branch.
    let hostile = format!("{}b", "*a".repeat(127));
    let data = app
        .graphql_ok(
            &org.key,
            "mutation($id: ID!, $i: [String!]) { updateProject(id: $id, input: {name: \"FabrikamFiberChat\", branchInclude: $i}) { branchInclude } }",
            json!({ "id": project, "i": [hostile] }),
        )
        .await;
    assert_eq!(
        data["updateProject"]["branchInclude"][0]
            .as_str()
            .unwrap()
            .len(),
        255
    );
    let auth = Auth::Bearer(org.key.clone());
    let answer = app.webhook(&auth, &delivery(1, &"a".repeat(1_024))).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["outcome"], "filtered", "{answer:?}");
}

#[tokio::test]
async fn a_branch_over_the_bound_is_refused_naming_the_field_on_both_endpoints() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let auth = Auth::Bearer(org.key.clone());
    let long = format!("refs/heads/{}", "a".repeat(1_000_000));

    let answer = app.webhook(&auth, &delivery(2, &long)).await;
    assert_eq!(answer.status, 422, "{answer:?}");
    assert_eq!(
        answer.body["error"]["fields"][0]["field"],
        "resource.sourceBranch"
    );
    assert!(answer.body["error"]["fields"][0]["message"]
        .as_str()
        .unwrap()
        .contains("at most 1024 characters"));

    let ingest = json!({ "build_name": "Build 1", "branch": long, "test_results": [] });
    let answer = app.ingest(&auth, &ingest, &[]).await;
    assert_eq!(answer.status, 422, "{answer:?}");
    assert_eq!(answer.body["error"]["fields"][0]["field"], "branch");

    let data = app
        .graphql_ok(&org.key, "{ buildQueue { edges { cursor } } }", json!({}))
        .await;
    assert_eq!(data["buildQueue"]["edges"], json!([]), "nothing was stored");
}

#[tokio::test]
async fn a_new_organization_does_not_accept_its_id_as_credentials() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let by_id = Auth::OrgId(org.id.to_string());
    let answer = app.webhook(&by_id, &delivery(3, "refs/heads/main")).await;
    assert_eq!(answer.status, 401, "{answer:?}");
    let ingest = json!({ "build_name": "Build 1", "test_results": [] });
    let answer = app.ingest(&by_id, &ingest, &[]).await;
    assert_eq!(answer.status, 401, "{answer:?}");
    let data = app
        .graphql_ok(&org.key, "{ organization { orgIdAuthEnabled } }", json!({}))
        .await;
    assert_eq!(data["organization"]["orgIdAuthEnabled"], false);
}

#[tokio::test]
async fn only_a_key_that_may_create_builds_can_turn_org_id_authentication_on() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let turn = |enabled: bool| {
        format!("mutation {{ setOrgIdAuthentication(enabled: {enabled}) {{ orgIdAuthEnabled }} }}")
    };
    let (manager, _) = app.create_key(&org.key, &["keys:manage"]).await;
    let body = app.graphql(Some(&manager), &turn(true), json!({})).await;
    assert_eq!(error_code(&body), "FORBIDDEN", "{body}");
    assert!(message(&body).contains("builds:create"), "{body}");
    let by_id = Auth::OrgId(org.id.to_string());
    let answer = app.webhook(&by_id, &delivery(4, "refs/heads/main")).await;
    assert_eq!(answer.status, 401, "still off: {answer:?}");

    let (creator, _) = app
        .create_key(&org.key, &["keys:manage", "builds:create"])
        .await;
    let data = app.graphql_ok(&creator, &turn(true), json!({})).await;
    assert_eq!(data["setOrgIdAuthentication"]["orgIdAuthEnabled"], true);
    let answer = app.webhook(&by_id, &delivery(5, "refs/heads/main")).await;
    assert_eq!(answer.status, 200, "{answer:?}");

    // Turning it off takes nothing away from anyone: keys:manage is enough.
    let data = app.graphql_ok(&manager, &turn(false), json!({})).await;
    assert_eq!(data["setOrgIdAuthentication"]["orgIdAuthEnabled"], false);
    let answer = app.webhook(&by_id, &delivery(6, "refs/heads/main")).await;
    assert_eq!(answer.status, 401, "{answer:?}");
}

#[tokio::test]
async fn a_key_rate_limit_above_the_operators_cap_is_refused_naming_the_cap() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let create = "mutation($l: Int) { createApiKey(input: {name: \"hook\", scopes: [\"keys:manage\"], rateLimitPerMinute: $l}) {
        key apiKey { id rateLimitPerMinute } } }";
    let body = app
        .graphql(Some(&org.key), create, json!({ "l": 1_000_000 }))
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    assert!(message(&body).contains("6000"), "{body}");
    assert!(
        message(&body).contains("LATHE_RATE_LIMIT_MAX_PER_MINUTE"),
        "{body}"
    );
    let data = app
        .graphql_ok(&org.key, create, json!({ "l": 6_000 }))
        .await;
    assert_eq!(data["createApiKey"]["apiKey"]["rateLimitPerMinute"], 6_000);

    // A keys:manage key cannot lift its own limit past the cap either.
    let own_key = data["createApiKey"]["key"].as_str().unwrap().to_owned();
    let own_id = data["createApiKey"]["apiKey"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let update = "mutation($id: ID!, $l: Int) { updateApiKey(id: $id, input: {rateLimitPerMinute: $l}) { rateLimitPerMinute } }";
    let body = app
        .graphql(
            Some(&own_key),
            update,
            json!({ "id": own_id, "l": 1_000_000 }),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    let data = app
        .graphql_ok(&own_key, update, json!({ "id": own_id, "l": 100 }))
        .await;
    assert_eq!(data["updateApiKey"]["rateLimitPerMinute"], 100);

    let capped = spawn_app_with(|s| s.rate_limit_max_per_minute = 50).await;
    let org = capped.create_org("Contoso").await;
    let body = capped
        .graphql(Some(&org.key), create, json!({ "l": 51 }))
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    assert!(message(&body).contains("50"), "{body}");
}

const CONNECT: &str =
    "mutation($p: ID!, $i: AzureDevOpsInput!) { connectAzureDevOps(projectId: $p, input: $i) { id } }";

fn connection(organization_url: &str) -> Value {
    json!({ "organizationUrl": organization_url, "project": PROJECT, "personalAccessToken": TOKEN,
        "autoCreateWorkItems": true, "failureThreshold": 50, "postPullRequestComments": false })
}

/// Another service process (its own state, pool and workers) on the same database as `app`.
async fn second_service(app: &TestApp, configure: impl FnOnce(&mut Settings)) -> AppState {
    let mut settings = Settings::for_database(&app.database_url);
    settings.rate_limit_per_minute = 1_000_000;
    settings.secret_key = Some(secrecy::SecretString::from(TEST_SECRET_KEY.to_owned()));
    settings.azure_timeout_ms = 700;
    settings.azure_backoff_ms = 50;
    settings.azure_max_attempts = 4;
    settings.azure_server_hosts = vec!["127.0.0.1".to_owned()];
    settings.azure_allow_private_addresses = true;
    configure(&mut settings);
    let service = Application::build(&settings)
        .await
        .expect("the application starts");
    let state = service.state().clone();
    tokio::spawn(service.run_until_stopped());
    state
}

fn not_local(settings: &mut Settings) {
    settings.azure_server_hosts = Vec::new();
    settings.azure_allow_private_addresses = false;
}

async fn failed_deliveries(app: &TestApp, key: &str) -> Vec<Value> {
    let data = app
        .graphql_ok(
            key,
            "{ azureDevOpsDeliveries(status: FAILED) { kind attempts lastError } }",
            json!({}),
        )
        .await;
    data["azureDevOpsDeliveries"].as_array().unwrap().clone()
}

#[tokio::test]
async fn connecting_refuses_urls_that_are_not_azure_devops_without_calling_them() {
    let fake = FakeAzure::start().await;
    let app = spawn_app_with(not_local).await;
    let org = app.create_org("Fabrikam").await;
    let project = app.create_project(&org.key, "Web").await;
    for url in [
        fake.url.as_str(),
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:5432/postgres",
        "http://dev.azure.com/fabrikam",
        "https://dev.azure.com.evil.example/fabrikam",
    ] {
        let body = app
            .graphql(
                Some(&org.key),
                CONNECT,
                json!({ "p": project, "i": connection(url) }),
            )
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{url}: {body}");
        assert!(message(&body).contains("organizationUrl"), "{url}: {body}");
    }
    assert!(fake.requests().is_empty(), "no request left the service");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM azure_credentials")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn a_configured_server_on_a_private_address_is_refused_unless_allowed_even_behind_a_name() {
    let fake = FakeAzure::start().await;
    let app = spawn_app_with(|s| {
        s.azure_server_hosts = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        s.azure_allow_private_addresses = false;
    })
    .await;
    let org = app.create_org("Fabrikam").await;
    let project = app.create_project(&org.key, "Web").await;
    // The literal address, and a name that resolves to it: the resolved addresses are checked too.
    for url in [fake.url.clone(), fake.url.replace("127.0.0.1", "localhost")] {
        let body = app
            .graphql(
                Some(&org.key),
                CONNECT,
                json!({ "p": project, "i": connection(&url) }),
            )
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{url}: {body}");
        assert!(
            message(&body).contains("LATHE_AZURE_ALLOW_PRIVATE_ADDRESSES"),
            "{url}: {body}"
        );
    }
    assert!(fake.requests().is_empty(), "no request left the service");
}

#[tokio::test]
async fn a_redirect_to_another_host_is_not_followed_and_a_foreign_body_is_not_quoted() {
    let fake = FakeAzure::start().await;
    let elsewhere = FakeAzure::start().await;
    let app = spawn_app_with(|s| s.azure_server_hosts.push("localhost".to_owned())).await;
    let org = app.create_org("Fabrikam").await;
    let project = app.create_project(&org.key, "Web").await;
    let connect = || async {
        app.graphql(
            Some(&org.key),
            CONNECT,
            json!({ "p": project, "i": connection(&fake.url) }),
        )
        .await
    };

    // Another host, though one this service may call: not followed, so it never sees the token.
    let other_host = elsewhere.url.replace("127.0.0.1", "localhost");
    fake.fail_next(
        "project",
        Fault::Redirect(format!(
            "{other_host}/_apis/projects/{PROJECT}?api-version=7.1"
        )),
    );
    let body = connect().await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    assert!(message(&body).contains("redirect"), "{body}");
    assert!(
        elsewhere.requests().is_empty(),
        "the redirect was not followed"
    );

    // Whatever a service that is not Azure DevOps answers stays with this service.
    for (status, content_type, text) in [
        (
            400,
            "text/html",
            "<html>internal-admin-console secret</html>",
        ),
        (
            400,
            "application/json",
            r#"{"message": "internal secret json"}"#,
        ),
        (500, "text/plain", "stack trace with secret"),
    ] {
        fake.fail_next(
            "project",
            Fault::Foreign {
                status,
                content_type,
                body: text.to_owned(),
            },
        );
        let body = connect().await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
        assert!(!message(&body).contains("secret"), "{body}");
        assert!(message(&body).contains(&status.to_string()), "{body}");
    }
    // Azure DevOps' own typed errors are still reported.
    fake.fail_next("project", Fault::Forbidden);
    let body = connect().await;
    assert!(message(&body).contains("403"), "{body}");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM azure_credentials")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "no refused connection stored a token");
}

#[tokio::test]
async fn the_outbox_worker_applies_the_same_rules_to_a_stored_url() {
    let fake = FakeAzure::start().await;
    // Connected while this service allowed the stand-in; delivered by one that does not.
    let app = spawn_app_with(|s| s.background_jobs = false).await;
    let org = app.create_org("Fabrikam").await;
    let project = app.create_project(&org.key, "FabrikamFiberChat").await;
    app.graphql_ok(
        &org.key,
        CONNECT,
        json!({ "p": project, "i": connection(&fake.url) }),
    )
    .await;
    let results = json!({ "build_name": "Build 1", "project": "FabrikamFiberChat",
        "test_results": [{ "title": "login", "status": "failed" }] });
    let answer = app
        .ingest(&Auth::Bearer(org.key.clone()), &results, &[])
        .await;
    assert_eq!(answer.status, 201, "{answer:?}");
    let strict = second_service(&app, |s| {
        not_local(s);
        s.background_jobs = false;
    })
    .await;
    let before = fake.requests().len();
    assert_eq!(deliver_due(&strict).await.unwrap(), 1);
    assert_eq!(fake.requests().len(), before, "no request was made");
    let failed = failed_deliveries(&app, &org.key).await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["attempts"], 1, "refused for good, not retried");
    assert!(failed[0]["lastError"]
        .as_str()
        .unwrap()
        .contains("LATHE_AZURE_SERVER_HOSTS"));
}

#[tokio::test]
async fn a_refused_connection_leaves_no_credential_behind() {
    let fake = FakeAzure::start().await;
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let project = app.create_project(&org.key, "Web").await;
    // A project the read model shows but the event store does not know: its command is refused after every check
    // against Azure DevOps has passed.
    let ghost = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO read.projects SELECT (jsonb_populate_record(p, jsonb_build_object('project_id', $2::uuid, 'name', 'Ghost'))).*
         FROM read.projects p WHERE project_id = $1",
    )
    .bind(uuid::Uuid::parse_str(&project).unwrap())
    .bind(ghost)
    .execute(&app.pool)
    .await
    .unwrap();
    let body = app
        .graphql(
            Some(&org.key),
            CONNECT,
            json!({ "p": ghost.to_string(), "i": connection(&fake.url) }),
        )
        .await;
    assert!(body.get("errors").is_some(), "{body}");
    assert!(!fake.requests().is_empty(), "Azure DevOps was asked first");
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM azure_credentials WHERE project_id = $1")
            .bind(ghost)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, 0, "the refused connection stored no token");

    app.graphql_ok(
        &org.key,
        CONNECT,
        json!({ "p": project, "i": connection(&fake.url) }),
    )
    .await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM azure_credentials")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 1, "an accepted connection stores its token");
}

#[tokio::test]
async fn two_workers_make_each_outbox_call_exactly_once_however_slow_azure_devops_is() {
    let fake = FakeAzure::start().await;
    // Each call takes half a second; one call's lease is 6 s (four times the 1.5 s timeout). A batch of 16 calls
    // under one lease used to outlast it, and the other worker made the late calls a second time.
    let slow = |s: &mut Settings| s.azure_timeout_ms = 1_500;
    let app = spawn_app_with(|s| {
        slow(s);
        s.background_jobs = false;
    })
    .await;
    let org = app.create_org("Fabrikam").await;
    let project = app.create_project(&org.key, "FabrikamFiberChat").await;
    app.graphql_ok(
        &org.key,
        CONNECT,
        json!({ "p": project, "i": connection(&fake.url) }),
    )
    .await;
    fake.set_slow(Some(std::time::Duration::from_millis(500)));
    let titles: Vec<String> = (0..16).map(|n| format!("failing test {n}")).collect();
    let results: Vec<Value> = titles
        .iter()
        .map(|title| json!({ "title": title, "status": "failed" }))
        .collect();
    let body =
        json!({ "build_name": "Build 1", "project": "FabrikamFiberChat", "test_results": results });
    let answer = app.ingest(&Auth::Bearer(org.key.clone()), &body, &[]).await;
    assert_eq!(answer.status, 201, "{answer:?}");

    // Two service processes with their outbox workers, against the one database.
    let _first = second_service(&app, slow).await;
    let _second = second_service(&app, slow).await;
    let succeeded = || async {
        let data = app
            .graphql_ok(
                &org.key,
                "{ azureDevOpsDeliveries(status: SUCCEEDED) { kind } }",
                json!({}),
            )
            .await;
        data["azureDevOpsDeliveries"].as_array().unwrap().len()
    };
    for _ in 0..600 {
        if succeeded().await == 16 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(succeeded().await, 16);
    // Any second attempt at a call still under way would land within a request's time.
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    // Counted at the stand-in: the work items it made (a retry after a timeout finds its work item by tag, so
    // even a request cut off on a loaded machine makes no second one).
    let mut made: Vec<String> = fake
        .work_items()
        .iter()
        .map(|item| item.fields["System.Title"].as_str().unwrap().to_owned())
        .collect();
    made.sort();
    let mut expected: Vec<String> = titles.iter().map(|t| format!("Test failed: {t}")).collect();
    expected.sort();
    assert_eq!(made, expected, "each call made exactly one work item");
}
