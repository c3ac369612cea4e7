//! Releases through GraphQL: their life and their listing.

use serde_json::json;

use lathe_tests::{error_code, spawn_app};

const COMPLETE: &str = "mutation($id: ID!) { completeRelease(id: $id) { status completedAt } }";
const ARCHIVE: &str = "mutation($id: ID!) { archiveRelease(id: $id) { status archivedAt } }";

#[tokio::test]
async fn a_release_goes_from_active_to_completed_to_archived() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let project = app.create_project(&org.key, "Web").await;
    let release = app.create_release(&org.key, &project, "2026.11").await;

    let read = app
        .graphql_ok(
            &org.key,
            "query($id: ID!) { release(id: $id) { name status buildCount project { name } builds { edges { cursor } } } }",
            json!({ "id": release }),
        )
        .await;
    assert_eq!(
        read["release"],
        json!({ "name": "2026.11", "status": "ACTIVE", "buildCount": 0, "project": { "name": "Web" },
                "builds": { "edges": [] } })
    );

    let body = app
        .graphql(Some(&org.key), ARCHIVE, json!({ "id": release }))
        .await;
    assert_eq!(
        error_code(&body),
        "CONFLICT",
        "an active release cannot be archived"
    );

    let done = app
        .graphql_ok(&org.key, COMPLETE, json!({ "id": release }))
        .await;
    assert_eq!(done["completeRelease"]["status"], "COMPLETED");
    let body = app
        .graphql(Some(&org.key), COMPLETE, json!({ "id": release }))
        .await;
    assert_eq!(error_code(&body), "CONFLICT", "a release completes once");

    let archived = app
        .graphql_ok(&org.key, ARCHIVE, json!({ "id": release }))
        .await;
    assert_eq!(archived["archiveRelease"]["status"], "ARCHIVED");
}

#[tokio::test]
async fn a_release_needs_a_project_of_the_organization() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let body = app
        .graphql(
            Some(&org.key),
            r#"mutation { createRelease(projectId: "00000000-0000-4000-8000-000000000000", name: "x") { id } }"#,
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), "NOT_FOUND");
    let project = app.create_project(&org.key, "Web").await;
    let body = app
        .graphql(
            Some(&org.key),
            "mutation($p: ID!) { createRelease(projectId: $p, name: \"\") { id } }",
            json!({ "p": project }),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
}

#[tokio::test]
async fn releases_are_paged_newest_first_and_filtered() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let web = app.create_project(&org.key, "Web").await;
    let api = app.create_project(&org.key, "Api").await;
    let mut web_releases = Vec::new();
    for n in 0..5 {
        web_releases.push(
            app.create_release(&org.key, &web, &format!("web-{n}"))
                .await,
        );
    }
    app.create_release(&org.key, &api, "api-0").await;
    app.graphql_ok(&org.key, COMPLETE, json!({ "id": web_releases[0] }))
        .await;

    const PAGE: &str = "query($p: ID, $s: ReleaseStatus, $after: String) {
        releases(projectId: $p, status: $s, first: 2, after: $after) {
            edges { node { name } } pageInfo { hasNextPage endCursor } } }";
    let mut names = Vec::new();
    let mut after = serde_json::Value::Null;
    loop {
        let data = app
            .graphql_ok(&org.key, PAGE, json!({ "p": web, "after": after }))
            .await;
        let page = &data["releases"];
        for edge in page["edges"].as_array().unwrap() {
            names.push(edge["node"]["name"].as_str().unwrap().to_owned());
        }
        if !page["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(names, ["web-4", "web-3", "web-2", "web-1", "web-0"]);

    let active = app
        .graphql_ok(&org.key, PAGE, json!({ "p": web, "s": "COMPLETED" }))
        .await;
    assert_eq!(
        active["releases"]["edges"],
        json!([{ "node": { "name": "web-0" } }])
    );
    let all = app
        .graphql_ok(
            &org.key,
            "{ releases(first: 100) { edges { node { name } } } }",
            json!({}),
        )
        .await;
    assert_eq!(all["releases"]["edges"].as_array().unwrap().len(), 6);

    let body = app
        .graphql(
            Some(&org.key),
            "{ releases(first: 0) { edges { cursor } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    let body = app
        .graphql(
            Some(&org.key),
            "{ releases(after: \"garbage\") { edges { cursor } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
}
