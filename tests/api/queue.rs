//! The build queue through GraphQL: reading it, and the assignment mutations with their races.

use serde_json::{json, Value};

use lathe_tests::{error_code, spawn_app, TestApp};

const ASSIGN: &str =
    "mutation($id: ID!, $r: ID!) { assignQueuedBuild(id: $id, releaseId: $r) { id status reason releaseId } }";
const REJECT: &str =
    "mutation($id: ID!, $reason: String!) { rejectQueuedBuild(id: $id, reason: $reason) { status rejectionReason } }";
const SELECT: &str =
    "mutation($id: ID!, $p: ID!) { selectProjectForQueuedBuild(id: $id, projectId: $p) {
    reason project { id name } } }";

async fn queue_ids(app: &TestApp, key: &str, status: &str) -> Vec<String> {
    let data = app
        .graphql_ok(
            key,
            "query($s: QueueStatus!) { buildQueue(status: $s, first: 100) { edges { node { id } } } }",
            json!({ "s": status }),
        )
        .await;
    data["buildQueue"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"]["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_queue_lists_pending_builds_newest_first_with_their_fields() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let project = app.create_project(&org.key, "Web").await;
    let first = app.enqueue_build(org.id, "1", None).await;
    let second = app.enqueue_build(org.id, "2", Some(&project)).await;

    let data = app
        .graphql_ok(
            &org.key,
            "{ buildQueue { edges { node { id buildName source project { name } branch commitSha receivedAt
                status reason } } pageInfo { hasNextPage } } }",
            json!({}),
        )
        .await;
    let edges = data["buildQueue"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 2);
    let newest = &edges[0]["node"];
    assert_eq!(newest["id"], second.as_str());
    assert_eq!(newest["buildName"], "Build 2");
    assert_eq!(newest["source"], "azure-devops");
    assert_eq!(newest["project"]["name"], "Web");
    assert_eq!(newest["branch"], "refs/heads/main");
    assert_eq!(newest["commitSha"], "6a8f1c2e");
    assert_eq!(newest["status"], "PENDING");
    assert_eq!(newest["reason"], "NO_ACTIVE_RELEASE");
    assert_eq!(edges[1]["node"]["id"], first.as_str());
    assert_eq!(edges[1]["node"]["reason"], "NO_PROJECT_MATCHED");
    assert_eq!(edges[1]["node"]["project"], Value::Null);
}

#[tokio::test]
async fn the_queue_is_paged_with_cursors() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let mut expected = Vec::new();
    for n in 0..7 {
        expected.push(app.enqueue_build(org.id, &n.to_string(), None).await);
    }
    expected.reverse();
    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let data = app
            .graphql_ok(
                &org.key,
                "query($a: String) { buildQueue(first: 3, after: $a) { edges { node { id } }
                    pageInfo { hasNextPage endCursor } } }",
                json!({ "a": after }),
            )
            .await;
        for edge in data["buildQueue"]["edges"].as_array().unwrap() {
            seen.push(edge["node"]["id"].as_str().unwrap().to_owned());
        }
        if !data["buildQueue"]["pageInfo"]["hasNextPage"]
            .as_bool()
            .unwrap()
        {
            break;
        }
        after = data["buildQueue"]["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn assigning_a_queued_build_adds_it_to_the_release() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let project = app.create_project(&org.key, "Web").await;
    let release = app.create_release(&org.key, &project, "2026.11").await;
    let entry = app.enqueue_build(org.id, "1", Some(&project)).await;

    let data = app
        .graphql_ok(&org.key, ASSIGN, json!({ "id": entry, "r": release }))
        .await;
    assert_eq!(
        data["assignQueuedBuild"],
        json!({ "id": entry, "status": "ASSIGNED", "reason": null, "releaseId": release })
    );
    assert!(queue_ids(&app, &org.key, "PENDING").await.is_empty());
    assert_eq!(
        queue_ids(&app, &org.key, "ASSIGNED").await,
        std::slice::from_ref(&entry)
    );

    let read = app
        .graphql_ok(
            &org.key,
            "query($r: ID!, $b: ID!) { release(id: $r) { buildCount builds { edges { node { id buildName } } } }
                build(id: $b) { releaseId testSummary { total passed failed skipped } } }",
            json!({ "r": release, "b": entry }),
        )
        .await;
    assert_eq!(read["release"]["buildCount"], 1);
    assert_eq!(
        read["release"]["builds"]["edges"],
        json!([{ "node": { "id": entry, "buildName": "Build 1" } }])
    );
    assert_eq!(read["build"]["releaseId"], release.as_str());
    assert_eq!(
        read["build"]["testSummary"],
        json!({ "total": 0, "passed": 0, "failed": 0, "skipped": 0 })
    );
}

#[tokio::test]
async fn a_build_without_a_project_gets_one_selected_then_assigned() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let web = app.create_project(&org.key, "Web").await;
    let api = app.create_project(&org.key, "Api").await;
    let api_release = app.create_release(&org.key, &api, "api-1").await;
    let entry = app.enqueue_build(org.id, "1", None).await;

    let selected = app
        .graphql_ok(&org.key, SELECT, json!({ "id": entry, "p": web }))
        .await;
    assert_eq!(
        selected["selectProjectForQueuedBuild"]["reason"],
        "PROJECT_SELECTED"
    );
    assert_eq!(
        selected["selectProjectForQueuedBuild"]["project"]["name"],
        "Web"
    );

    let body = app
        .graphql(
            Some(&org.key),
            ASSIGN,
            json!({ "id": entry, "r": api_release }),
        )
        .await;
    assert_eq!(
        error_code(&body),
        "BAD_USER_INPUT",
        "a release of another project: {body}"
    );

    let web_release = app.create_release(&org.key, &web, "web-1").await;
    app.graphql_ok(&org.key, ASSIGN, json!({ "id": entry, "r": web_release }))
        .await;
}

#[tokio::test]
async fn a_build_cannot_join_a_completed_release() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let project = app.create_project(&org.key, "Web").await;
    let release = app.create_release(&org.key, &project, "old").await;
    app.graphql_ok(
        &org.key,
        "mutation($id: ID!) { completeRelease(id: $id) { status } }",
        json!({ "id": release }),
    )
    .await;
    let entry = app.enqueue_build(org.id, "1", Some(&project)).await;
    let body = app
        .graphql(Some(&org.key), ASSIGN, json!({ "id": entry, "r": release }))
        .await;
    assert_eq!(error_code(&body), "CONFLICT");
    assert_eq!(queue_ids(&app, &org.key, "PENDING").await, [entry]);
}

#[tokio::test]
async fn a_rejected_build_cannot_be_assigned_and_an_assigned_one_cannot_be_rejected() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let project = app.create_project(&org.key, "Web").await;
    let release = app.create_release(&org.key, &project, "r").await;
    let rejected = app.enqueue_build(org.id, "1", Some(&project)).await;
    let assigned = app.enqueue_build(org.id, "2", Some(&project)).await;

    let data = app
        .graphql_ok(
            &org.key,
            REJECT,
            json!({ "id": rejected, "reason": "flaky agent" }),
        )
        .await;
    assert_eq!(
        data["rejectQueuedBuild"],
        json!({ "status": "REJECTED", "rejectionReason": "flaky agent" })
    );
    let body = app
        .graphql(
            Some(&org.key),
            ASSIGN,
            json!({ "id": rejected, "r": release }),
        )
        .await;
    assert_eq!(error_code(&body), "CONFLICT");

    app.graphql_ok(&org.key, ASSIGN, json!({ "id": assigned, "r": release }))
        .await;
    let body = app
        .graphql(
            Some(&org.key),
            REJECT,
            json!({ "id": assigned, "reason": "late" }),
        )
        .await;
    assert_eq!(error_code(&body), "CONFLICT");
    let body = app
        .graphql(
            Some(&org.key),
            ASSIGN,
            json!({ "id": assigned, "r": release }),
        )
        .await;
    assert_eq!(error_code(&body), "CONFLICT", "assigned at most once");

    assert_eq!(queue_ids(&app, &org.key, "REJECTED").await, [rejected]);
    assert_eq!(queue_ids(&app, &org.key, "ASSIGNED").await, [assigned]);
}

#[tokio::test]
async fn of_two_concurrent_assignments_exactly_one_succeeds_and_the_other_conflicts() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let project = app.create_project(&org.key, "Web").await;
    let first_release = app.create_release(&org.key, &project, "a").await;
    let second_release = app.create_release(&org.key, &project, "b").await;

    // Several entries, so that the race is run more than once.
    for n in 0..8 {
        let entry = app
            .enqueue_build(org.id, &n.to_string(), Some(&project))
            .await;
        let (one, two) = tokio::join!(
            app.graphql(
                Some(&org.key),
                ASSIGN,
                json!({ "id": entry, "r": first_release })
            ),
            app.graphql(
                Some(&org.key),
                ASSIGN,
                json!({ "id": entry, "r": second_release })
            ),
        );
        let outcomes =
            [&one, &two].map(|body| body.get("errors").map(|_| error_code(body).to_owned()));
        let successes = outcomes.iter().filter(|o| o.is_none()).count();
        assert_eq!(successes, 1, "exactly one wins: {one} / {two}");
        assert!(
            outcomes.contains(&Some("CONFLICT".to_owned())),
            "the loser gets CONFLICT: {one} / {two}"
        );
    }
    let counts = app
        .graphql_ok(
            &org.key,
            "query($a: ID!, $b: ID!) { a: release(id: $a) { buildCount } b: release(id: $b) { buildCount } }",
            json!({ "a": first_release, "b": second_release }),
        )
        .await;
    let total =
        counts["a"]["buildCount"].as_i64().unwrap() + counts["b"]["buildCount"].as_i64().unwrap();
    assert_eq!(total, 8, "every entry is in exactly one release");
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'BuildAssignedToRelease'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(stored, 8, "one assignment event per entry");
}

#[tokio::test]
async fn commands_on_unknown_entries_are_not_found() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let project = app.create_project(&org.key, "Web").await;
    let release = app.create_release(&org.key, &project, "r").await;
    let unknown = "00000000-0000-4000-8000-000000000000";
    let body = app
        .graphql(
            Some(&org.key),
            ASSIGN,
            json!({ "id": unknown, "r": release }),
        )
        .await;
    assert_eq!(error_code(&body), "NOT_FOUND");
    let body = app
        .graphql(
            Some(&org.key),
            REJECT,
            json!({ "id": unknown, "reason": "x" }),
        )
        .await;
    assert_eq!(error_code(&body), "NOT_FOUND");
    let entry = app.enqueue_build(org.id, "1", None).await;
    let body = app
        .graphql(Some(&org.key), ASSIGN, json!({ "id": entry, "r": unknown }))
        .await;
    assert_eq!(error_code(&body), "NOT_FOUND");
    let body = app
        .graphql(
            Some(&org.key),
            REJECT,
            json!({ "id": entry, "reason": " " }),
        )
        .await;
    assert_eq!(
        error_code(&body),
        "BAD_USER_INPUT",
        "a rejection needs a reason"
    );
}
