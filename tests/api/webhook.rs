//! `POST /api/webhooks/azure-devops` with the real sample payloads, every routing branch, every authentication
//! method and failure, bad input, and duplicate deliveries.

use serde_json::{json, Value};

use lathe_tests::{payload, payload_bytes, spawn_app, Answer, Auth, TestApp, TestOrg};

const CHAT_2022: &str = "build.complete.msdocs-2022.json";
const CHAT_2024: &str = "build.complete.msdocs-2024.json";
const XAML_2016: &str = "build.complete.go-playground-webhooks.json";
const RUN_2019: &str = "ms.vss-pipelines.run-state-changed-event.msdocs-2019.json";
const PULL_REQUEST: &str = "git.pullrequest.created.go-playground-webhooks.json";

async fn setup() -> (TestApp, TestOrg, Auth) {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let auth = Auth::Bearer(org.key.clone());
    (app, org, auth)
}

/// Creates a project with the given input (GraphQL literal) and returns its id.
async fn project(app: &TestApp, key: &str, input: &str) -> String {
    let data = app
        .graphql_ok(
            key,
            &format!("mutation {{ createProject(input: {input}) {{ id }} }}"),
            json!({}),
        )
        .await;
    data["createProject"]["id"].as_str().unwrap().to_owned()
}

fn outcome(answer: &Answer) -> &str {
    answer.body["outcome"]
        .as_str()
        .unwrap_or_else(|| panic!("no outcome: {answer:?}"))
}

async fn queued_reason(app: &TestApp, key: &str, id: &str) -> Value {
    let data = app
        .graphql_ok(
            key,
            "query($id: ID!) { queuedBuild(id: $id) { reason status project { id } buildName branch commitSha
                source pullRequest { number repositoryId } } }",
            json!({ "id": id }),
        )
        .await;
    data["queuedBuild"].clone()
}

#[tokio::test]
async fn every_sample_payload_gets_the_right_outcome() {
    let (app, org, auth) = setup().await;
    // The 2022 and 2024 samples are the same build (FabrikamFiber, build 2727068): the second is a duplicate.
    for (name, expected) in [
        (CHAT_2022, "queued"),
        (CHAT_2024, "duplicate"),
        (XAML_2016, "queued"),
        (RUN_2019, "queued"),
        (PULL_REQUEST, "ignored"),
    ] {
        let answer = app.webhook(&auth, &payload(name)).await;
        assert_eq!(answer.status, 200, "{name}: {answer:?}");
        assert_eq!(outcome(&answer), expected, "{name}: {answer:?}");
        assert!(answer.body["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let data = app
        .graphql_ok(
            &org.key,
            "{ buildQueue { edges { node { buildName reason } } } }",
            json!({}),
        )
        .await;
    let names: Vec<&str> = data["buildQueue"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"]["buildName"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "TEST-CI 11",
            "ConsumerAddressModule ConsumerAddressModule_20150407.1",
            "MainRepo (1) 20221202.1"
        ]
    );
}

#[tokio::test]
async fn the_xaml_era_shape_gives_branch_and_commit_from_the_source_get_version() {
    let (app, org, auth) = setup().await;
    let answer = app.webhook(&auth, &payload(XAML_2016)).await;
    let id = answer.body["queuedBuildId"].as_str().unwrap();
    let build = queued_reason(&app, &org.key, id).await;
    assert_eq!(build["branch"], "refs/heads/master");
    assert_eq!(
        build["commitSha"],
        "600c52d2d5b655caa111abfd863e5a9bd304bb0e"
    );
    assert_eq!(build["source"], "azure-devops");
}

#[tokio::test]
async fn a_build_with_a_project_and_one_active_release_is_created_in_it() {
    let (app, org, auth) = setup().await;
    let chat = project(&app, &org.key, r#"{name: "Chat", url: "https://fabrikamfiber.visualstudio.com/DefaultCollection/FabrikamFiberChat/"}"#).await;
    let release = app.create_release(&org.key, &chat, "2026.11").await;
    let answer = app.webhook(&auth, &payload(CHAT_2022)).await;
    assert_eq!(outcome(&answer), "created", "{answer:?}");
    let build_id = answer.body["buildId"].as_str().unwrap();
    assert!(answer.body.get("queuedBuildId").is_none());
    let data = app
        .graphql_ok(
            &org.key,
            "query($b: ID!, $r: ID!) { build(id: $b) { releaseId branch commitSha result url }
                release(id: $r) { buildCount } buildQueue { edges { cursor } } }",
            json!({ "b": build_id, "r": release }),
        )
        .await;
    assert_eq!(data["build"]["releaseId"], release.as_str());
    assert_eq!(data["build"]["branch"], "refs/heads/main");
    assert_eq!(
        data["build"]["commitSha"],
        "6e12f6141917f66a2964af55952ee33914d2d91f"
    );
    assert_eq!(data["build"]["result"], "succeeded");
    assert_eq!(
        data["build"]["url"],
        "https://dev.azure.com/FabrikamFiber/16dcfeeb-d8fd-495c-917b-fec46cb44fbb/_build/results?buildId=2727068"
    );
    assert_eq!(data["release"]["buildCount"], 1);
    assert_eq!(data["buildQueue"]["edges"], json!([]));
}

#[tokio::test]
async fn a_project_without_an_active_release_queues_the_build_for_a_release() {
    let (app, org, auth) = setup().await;
    let chat = project(
        &app,
        &org.key,
        r#"{name: "Chat", azureProjectId: "16DCFEEB-D8FD-495C-917B-FEC46CB44FBB"}"#,
    )
    .await;
    let answer = app.webhook(&auth, &payload(CHAT_2022)).await;
    assert_eq!(outcome(&answer), "queued");
    let build = queued_reason(
        &app,
        &org.key,
        answer.body["queuedBuildId"].as_str().unwrap(),
    )
    .await;
    assert_eq!(build["reason"], "NO_ACTIVE_RELEASE");
    assert_eq!(build["project"]["id"], chat.as_str());
}

#[tokio::test]
async fn a_project_with_several_active_releases_queues_the_build() {
    let (app, org, auth) = setup().await;
    let chat = project(
        &app,
        &org.key,
        r#"{name: "Chat", repositoryUrls: ["https://FabrikamFiber.visualstudio.com/FabrikamFiberChat/_git/FabrikamFiberChat.git"]}"#,
    )
    .await;
    app.create_release(&org.key, &chat, "a").await;
    app.create_release(&org.key, &chat, "b").await;
    let answer = app.webhook(&auth, &payload(CHAT_2022)).await;
    let build = queued_reason(
        &app,
        &org.key,
        answer.body["queuedBuildId"].as_str().unwrap(),
    )
    .await;
    assert_eq!(build["reason"], "SEVERAL_ACTIVE_RELEASES");
    assert_eq!(build["project"]["id"], chat.as_str());
}

#[tokio::test]
async fn two_projects_matching_equally_are_ambiguous_and_nothing_is_guessed() {
    let (app, org, auth) = setup().await;
    for name in ["Fabrikam", "FiberChat"] {
        let id = project(&app, &org.key, &format!("{{name: \"{name}\"}}")).await;
        app.create_release(&org.key, &id, "r").await;
    }
    let answer = app.webhook(&auth, &payload(CHAT_2022)).await;
    assert_eq!(outcome(&answer), "queued");
    let build = queued_reason(
        &app,
        &org.key,
        answer.body["queuedBuildId"].as_str().unwrap(),
    )
    .await;
    assert_eq!(build["reason"], "PROJECT_AMBIGUOUS");
    assert_eq!(build["project"], Value::Null);
}

#[tokio::test]
async fn a_build_matching_no_project_is_queued_for_project_and_release() {
    let (app, org, auth) = setup().await;
    project(
        &app,
        &org.key,
        r#"{name: "Mobile", url: "https://dev.azure.com/FabrikamFiber/Mobile"}"#,
    )
    .await;
    let answer = app.webhook(&auth, &payload(CHAT_2022)).await;
    let build = queued_reason(
        &app,
        &org.key,
        answer.body["queuedBuildId"].as_str().unwrap(),
    )
    .await;
    assert_eq!(build["reason"], "NO_PROJECT_MATCHED");
}

#[tokio::test]
async fn a_pull_request_build_keeps_its_number_and_repository() {
    let (app, org, auth) = setup().await;
    let mut body = payload(CHAT_2022);
    body["resource"]["reason"] = json!("pullRequest");
    body["resource"]["sourceBranch"] = json!("refs/pull/42/merge");
    body["resource"]["triggerInfo"] = json!({ "pr.number": "42", "pr.isFork": "False",
        "pr.triggerRepository": "e5994ecb-b917-4d23-aa75-d52205c3c19b", "pr.triggerRepository.Type": "TfsGit" });
    let answer = app.webhook(&auth, &body).await;
    let build = queued_reason(
        &app,
        &org.key,
        answer.body["queuedBuildId"].as_str().unwrap(),
    )
    .await;
    assert_eq!(
        build["pullRequest"],
        json!({ "number": 42, "repositoryId": "e5994ecb-b917-4d23-aa75-d52205c3c19b" })
    );
}

#[tokio::test]
async fn every_authentication_method_is_accepted() {
    let (app, org, _) = setup().await;
    app.enable_org_id_auth(&org).await;
    let (key, _) = app.create_key(&org.key, &["builds:create"]).await;
    for (n, auth) in [
        Auth::Bearer(key.clone()),
        Auth::Basic("azure-devops".to_owned(), key.clone()),
        Auth::OrgId(org.id.to_string()),
    ]
    .into_iter()
    .enumerate()
    {
        let mut body = payload(CHAT_2022);
        body["resource"]["id"] = json!(1000 + n);
        let answer = app.webhook(&auth, &body).await;
        assert_eq!(answer.status, 200, "{auth:?}: {answer:?}");
        assert_eq!(outcome(&answer), "queued");
    }
}

#[tokio::test]
async fn every_authentication_failure_is_a_clear_401_or_403() {
    let (app, org, _) = setup().await;
    let (reader, _) = app.create_key(&org.key, &["builds:read"]).await;
    let (revoked, revoked_id) = app.create_key(&org.key, &["builds:create"]).await;
    app.graphql_ok(
        &org.key,
        "mutation($id: ID!) { revokeApiKey(id: $id) { id } }",
        json!({ "id": revoked_id }),
    )
    .await;
    let other = spawn_app().await.create_org("Elsewhere").await;
    app.enable_org_id_auth(&org).await;
    for (auth, status) in [
        (Auth::None, 401),
        (Auth::Bearer("pt_live_wrong".to_owned()), 401),
        (Auth::Bearer(format!("pt_live_{}", "Z".repeat(40))), 401),
        (Auth::Basic("user".to_owned(), "not-a-key".to_owned()), 401),
        (Auth::Bearer(revoked), 401),
        (Auth::Bearer(reader), 403),
        (Auth::OrgId("not-a-uuid".to_owned()), 401),
        (Auth::OrgId(other.id.to_string()), 401),
    ] {
        let answer = app.webhook(&auth, &payload(CHAT_2022)).await;
        assert_eq!(answer.status, status, "{auth:?}: {answer:?}");
        assert!(answer.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }

    app.graphql_ok(
        &org.key,
        "mutation { setOrgIdAuthentication(enabled: false) { orgIdAuthEnabled } }",
        json!({}),
    )
    .await;
    let answer = app
        .webhook(&Auth::OrgId(org.id.to_string()), &payload(CHAT_2022))
        .await;
    assert_eq!(answer.status, 401, "org-id authentication was turned off");

    let data = app
        .graphql_ok(&org.key, "{ buildQueue { edges { cursor } } }", json!({}))
        .await;
    assert_eq!(
        data["buildQueue"]["edges"],
        json!([]),
        "no refused delivery created anything"
    );
}

#[tokio::test]
async fn malformed_json_is_a_400_that_says_what_is_wrong() {
    let (app, _, auth) = setup().await;
    let answer = app
        .post_raw(
            "/api/webhooks/azure-devops",
            &auth,
            b"{\"eventType\": \"build.complete\",".to_vec(),
            &[],
        )
        .await;
    assert_eq!(answer.status, 400);
    let message = answer.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("not valid JSON") && message.contains("line 1"),
        "{message}"
    );
    for body in [json!([1, 2]), json!({ "resource": {} })] {
        let answer = app.webhook(&auth, &body).await;
        assert_eq!(answer.status, 400, "{body}");
    }
}

#[tokio::test]
async fn a_byte_order_mark_and_unknown_fields_are_tolerated() {
    let (app, _, auth) = setup().await;
    let mut body = payload(CHAT_2022);
    body["aFieldFromTheFuture"] = json!({ "nested": [1, 2, 3] });
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend(serde_json::to_vec(&body).unwrap());
    let answer = app
        .post_raw("/api/webhooks/azure-devops", &auth, bytes, &[])
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(outcome(&answer), "queued");
}

#[tokio::test]
async fn a_body_over_two_megabytes_is_413() {
    let (app, _, auth) = setup().await;
    let mut body = payload(CHAT_2022);
    body["padding"] = json!("x".repeat(2 * 1024 * 1024));
    let answer = app.webhook(&auth, &body).await;
    assert_eq!(answer.status, 413, "{answer:?}");
}

#[tokio::test]
async fn deliveries_that_cannot_become_builds_get_200_and_say_why() {
    let (app, org, auth) = setup().await;
    let mut test_button = payload(CHAT_2022);
    test_button["subscriptionId"] = json!("00000000-0000-0000-0000-000000000000");
    let mut no_resource = payload(CHAT_2022);
    no_resource["resource"] = Value::Null;
    no_resource["resourceVersion"] = Value::Null;
    let mut in_progress = payload(RUN_2019);
    in_progress["resource"]["run"]["state"] = json!("inProgress");
    let mut unknown = payload(CHAT_2022);
    unknown["eventType"] = json!("workitem.updated");
    for (body, needle) in [
        (test_button, "Test button"),
        (no_resource, "no resource"),
        (in_progress, "only completed runs"),
        (unknown, "workitem.updated"),
    ] {
        let answer = app.webhook(&auth, &body).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(outcome(&answer), "ignored");
        assert!(
            answer.body["message"].as_str().unwrap().contains(needle),
            "{answer:?}"
        );
    }
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'BuildQueue'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, 0, "nothing was created");
    let data = app
        .graphql_ok(
            &org.key,
            "{ webhookDeliveries(outcome: \"ignored\") { edges { node { outcome } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data["webhookDeliveries"]["edges"].as_array().unwrap().len(),
        4
    );
}

#[tokio::test]
async fn a_redelivery_is_a_duplicate_with_the_same_ids() {
    let (app, org, auth) = setup().await;
    let chat = project(&app, &org.key, r#"{name: "FabrikamFiberChat"}"#).await;
    app.create_release(&org.key, &chat, "r").await;
    let first = app.webhook(&auth, &payload(CHAT_2022)).await;
    assert_eq!(outcome(&first), "created");
    // Azure retries with a new notification; the build is the same.
    let mut again = payload(CHAT_2022);
    again["notificationId"] = json!(2);
    let second = app.webhook(&auth, &again).await;
    assert_eq!(second.status, 200);
    assert_eq!(outcome(&second), "duplicate");
    assert_eq!(second.body["buildId"], first.body["buildId"]);
    // The run-state event of the same run is the same build too.
    let mut run = payload(RUN_2019);
    run["resourceContainers"] = payload(CHAT_2022)["resourceContainers"].clone();
    run["resource"]["run"]["id"] = json!(2727068);
    let third = app.webhook(&auth, &run).await;
    assert_eq!(outcome(&third), "duplicate", "{third:?}");
    assert_eq!(third.body["buildId"], first.body["buildId"]);
}

#[tokio::test]
async fn concurrent_deliveries_of_one_build_create_it_once() {
    let (app, org, auth) = setup().await;
    let body = payload(CHAT_2022);
    let answers = futures::future::join_all((0..8).map(|_| app.webhook(&auth, &body))).await;
    let outcomes: Vec<&str> = answers.iter().map(outcome).collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == "queued").count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| **o == "duplicate").count(),
        7,
        "{outcomes:?}"
    );
    let ids: std::collections::HashSet<&Value> =
        answers.iter().map(|a| &a.body["queuedBuildId"]).collect();
    assert_eq!(ids.len(), 1, "every answer names the same entry");
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'BuildQueue'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(events, 2, "BuildReceived and BuildQueued, once");
    let data = app
        .graphql_ok(&org.key, "{ buildQueue { edges { cursor } } }", json!({}))
        .await;
    assert_eq!(data["buildQueue"]["edges"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_delivery_log_shows_an_organization_its_own_deliveries_without_secrets() {
    let (app, org, auth) = setup().await;
    app.webhook(&auth, &payload(CHAT_2022)).await;
    app.webhook(&auth, &payload(CHAT_2022)).await;
    app.webhook(&auth, &payload(PULL_REQUEST)).await;
    app.webhook(
        &Auth::Bearer(format!("pt_live_{}", "Q".repeat(40))),
        &payload(CHAT_2022),
    )
    .await;
    let other = app.create_org("Contoso").await;
    app.webhook(&Auth::Bearer(other.key.clone()), &payload(XAML_2016))
        .await;

    let data = app
        .graphql_ok(
            &org.key,
            "{ webhookDeliveries(first: 10) { edges { node { outcome httpStatus eventType subscriptionId
                notificationId message queuedBuildId source } } } }",
            json!({}),
        )
        .await;
    let nodes: Vec<&Value> = data["webhookDeliveries"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| &edge["node"])
        .collect();
    let outcomes: Vec<&str> = nodes
        .iter()
        .map(|n| n["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["ignored", "duplicate", "queued"]);
    assert_eq!(
        nodes[2]["subscriptionId"],
        "4f6e6328-0251-4814-a009-c01dfa368e3f"
    );
    assert_eq!(nodes[2]["eventType"], "build.complete");
    assert_eq!(nodes[2]["httpStatus"], 200);
    assert!(nodes[2]["queuedBuildId"].is_string());

    let unauthorized: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE outcome = 'unauthorized'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        unauthorized, 0,
        "a delivery refused before its organization is known has no reader and is not recorded"
    );
    let versions: Vec<i32> = sqlx::query_scalar(
        "SELECT DISTINCT get_byte(uuid_send(delivery_id), 6) >> 4 FROM deliveries",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(versions, [7], "delivery ids are time-ordered (UUID v7)");
    let dump: String = sqlx::query_scalar("SELECT string_agg(d::text, ' ') FROM deliveries d")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(!dump.contains(&org.key) && !dump.contains(&other.key) && !dump.contains("QQQQQQQQ"));
}

#[tokio::test]
async fn events_record_who_delivered_and_never_the_key() {
    let (app, org, auth) = setup().await;
    app.webhook(&auth, &payload(CHAT_2022)).await;
    let metadata: Value =
        sqlx::query_scalar("SELECT metadata::jsonb FROM events WHERE event_type = 'BuildReceived'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(metadata["actor.type"], "api_key");
    assert_eq!(metadata["actor.api_key_prefix"], &org.key[..12]);
    assert_eq!(
        metadata["azure.subscription_id"],
        "4f6e6328-0251-4814-a009-c01dfa368e3f"
    );
    assert_eq!(metadata["azure.notification_id"], "1");
    let dump: String = sqlx::query_scalar("SELECT string_agg(e::text, ' ') FROM events e")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(!dump.contains(&org.key));
    let _ = payload_bytes(CHAT_2022);
}
