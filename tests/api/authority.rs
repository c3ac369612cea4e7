//! Authority where it belongs (issue 13): bounded branch filters, org-id authentication off by default and turned
//! on only by a key that may create builds, a cap on per-key rate limits, Azure DevOps calls only to Azure DevOps
//! (no private addresses, no foreign redirects, no foreign bodies quoted), no credential left by a refused
//! connection, and each outbox call delivered once by several workers.

use serde_json::{json, Value};

use lathe_tests::{error_code, payload, spawn_app, spawn_app_with, Auth};

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
    assert!(message(&body).len() < 300, "the pattern is not echoed whole");

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
    assert_eq!(data["updateProject"]["branchInclude"][0].as_str().unwrap().len(), 255);
    let auth = Auth::Bearer(org.key.clone());
    let answer = app
        .webhook(&auth, &delivery(1, &"a".repeat(1_024)))
        .await;
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
    let own_id = data["createApiKey"]["apiKey"]["id"].as_str().unwrap().to_owned();
    let update = "mutation($id: ID!, $l: Int) { updateApiKey(id: $id, input: {rateLimitPerMinute: $l}) { rateLimitPerMinute } }";
    let body = app
        .graphql(Some(&own_key), update, json!({ "id": own_id, "l": 1_000_000 }))
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
