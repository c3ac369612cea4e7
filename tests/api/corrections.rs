//! Correcting mistakes (issue 15): moving a build, returning it to the queue, undoing a rejection, retiring a
//! project, release housekeeping, bulk actions, and build retention taken from Azure DevOps.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::fake_azure::{FakeAzure, Fault, PROJECT, REPOSITORY, TOKEN};
use lathe_tests::{
    dump_read_models, error_code, payload, spawn_app, spawn_app_with, Auth, TestApp, TestOrg,
};
use projections::{replay, Registry};

const MOVE: &str =
    "mutation($id: ID!, $r: ID!, $why: String!) { moveBuild(id: $id, releaseId: $r, reason: $why) {
    id releaseId status reason project { id } } }";
const RETURN: &str =
    "mutation($id: ID!, $why: String!) { returnBuildToQueue(id: $id, reason: $why) {
    id releaseId status reason project { id } } }";
const RELEASE: &str = "query($id: ID!) { release(id: $id) { name status buildCount
    builds { edges { node { id testSummary { total failed } testResults { edges { node { title } } } } } } } }";

/// An organization with two projects, each with an active release: `(org, [project], [release])`.
async fn two_projects(app: &TestApp) -> (TestOrg, [String; 2], [String; 2]) {
    let org = app.create_org("Fabrikam").await;
    let web = app.create_project(&org.key, "Web").await;
    let mobile = app.create_project(&org.key, "Mobile").await;
    let web_release = app.create_release(&org.key, &web, "web 2026.12").await;
    let mobile_release = app
        .create_release(&org.key, &mobile, "mobile 2026.12")
        .await;
    (org, [web, mobile], [web_release, mobile_release])
}

/// A build with two results (one failed) created by an ingest call straight into `project`'s active release.
async fn ingested(app: &TestApp, org: &TestOrg, project: &str, name: &str) -> String {
    let body = json!({ "build_name": name, "project": project, "branch": "main", "test_results": [
        { "title": "login works", "status": "passed" }, { "title": "logout works", "status": "failed" }] });
    let answer = app.ingest(&Auth::Bearer(org.key.clone()), &body, &[]).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    answer.body["buildId"].as_str().unwrap().to_owned()
}

async fn release(app: &TestApp, key: &str, id: &str) -> Value {
    app.graphql_ok(key, RELEASE, json!({ "id": id })).await["release"].clone()
}

/// The build's events as `(eventType, payload, actor type)`.
async fn history(app: &TestApp, key: &str, id: &str) -> Vec<(String, Value, String)> {
    let data = app
        .graphql_ok(
            key,
            "query($id: ID!) { buildHistory(id: $id) { events(first: 50) { edges { node { eventType payload
                actor { type } } } } } }",
            json!({ "id": id }),
        )
        .await;
    data["buildHistory"]["events"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| {
            let node = &edge["node"];
            (
                node["eventType"].as_str().unwrap().to_owned(),
                node["payload"].clone(),
                node["actor"]["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Rebuilds every read model from the events and checks that it equals the live one.
async fn assert_read_models_equal_a_rebuild(app: &TestApp) {
    let live = dump_read_models(&app.pool).await;
    replay::rebuild(&app.pool, &Arc::new(Registry::standard()), &[])
        .await
        .unwrap();
    assert_eq!(
        dump_read_models(&app.pool).await,
        live,
        "the read models are a fold of the events"
    );
}

#[tokio::test]
async fn a_build_created_in_the_wrong_project_moves_to_another_projects_release_with_its_results() {
    let app = spawn_app().await;
    let (org, projects, releases) = two_projects(&app).await;
    let build = ingested(&app, &org, "Web", "Build 1").await;
    assert_eq!(release(&app, &org.key, &releases[0]).await["buildCount"], 1);

    let data = app
        .graphql_ok(
            &org.key,
            MOVE,
            json!({ "id": build, "r": releases[1], "why": "the mobile pipeline matched Web by name" }),
        )
        .await;
    let moved = &data["moveBuild"];
    assert_eq!(moved["releaseId"], releases[1].as_str());
    assert_eq!(moved["project"]["id"], projects[1].as_str());

    // The counts follow, and the results came along.
    let from = release(&app, &org.key, &releases[0]).await;
    assert_eq!(from["buildCount"], 0);
    assert_eq!(from["builds"]["edges"], json!([]));
    let to = release(&app, &org.key, &releases[1]).await;
    assert_eq!(to["buildCount"], 1);
    let node = &to["builds"]["edges"][0]["node"];
    assert_eq!(node["id"], build.as_str());
    assert_eq!(node["testSummary"], json!({ "total": 2, "failed": 1 }));
    assert_eq!(node["testResults"]["edges"].as_array().unwrap().len(), 2);

    // The move is on the build's own stream, with its actor and reason.
    let events = history(&app, &org.key, &build).await;
    let (event_type, payload, actor) = events.last().unwrap();
    assert_eq!(event_type, "BuildMovedToRelease");
    assert_eq!(actor, "api_key");
    let payload = &payload["BuildMovedToRelease"];
    assert_eq!(payload["reason"], "the mobile pipeline matched Web by name");
    assert_eq!(payload["from_release_id"], releases[0].as_str());
    assert_eq!(payload["release_id"], releases[1].as_str());

    assert_read_models_equal_a_rebuild(&app).await;
}

#[tokio::test]
async fn a_move_is_refused_into_an_inactive_release_another_organizations_release_or_an_archived_project(
) {
    let app = spawn_app().await;
    let (org, projects, releases) = two_projects(&app).await;
    let build = ingested(&app, &org, "Web", "Build 1").await;

    // A completed release takes no builds.
    let done = app
        .create_release(&org.key, &projects[1], "mobile 2026.11")
        .await;
    app.graphql_ok(
        &org.key,
        "mutation($id: ID!) { completeRelease(id: $id) { status } }",
        json!({ "id": done }),
    )
    .await;
    let body = app
        .graphql(
            Some(&org.key),
            MOVE,
            json!({ "id": build, "r": done, "why": "x" }),
        )
        .await;
    assert_eq!(error_code(&body), "CONFLICT", "{body}");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("active release"));

    // Another organization's release does not exist for this caller, nor this build for the other.
    let other = app.create_org("Contoso").await;
    let theirs = app.create_project(&other.key, "Web").await;
    let their_release = app.create_release(&other.key, &theirs, "2026.12").await;
    let body = app
        .graphql(
            Some(&org.key),
            MOVE,
            json!({ "id": build, "r": their_release, "why": "x" }),
        )
        .await;
    assert_eq!(error_code(&body), "NOT_FOUND", "{body}");
    let body = app
        .graphql(
            Some(&other.key),
            MOVE,
            json!({ "id": build, "r": their_release, "why": "x" }),
        )
        .await;
    assert_eq!(error_code(&body), "NOT_FOUND", "{body}");

    // A release of an archived project takes no builds.
    app.graphql_ok(
        &org.key,
        "mutation($id: ID!) { archiveProject(id: $id, reason: \"retired\") { archivedAt } }",
        json!({ "id": projects[1] }),
    )
    .await;
    let body = app
        .graphql(
            Some(&org.key),
            MOVE,
            json!({ "id": build, "r": releases[1], "why": "x" }),
        )
        .await;
    assert_eq!(error_code(&body), "CONFLICT", "{body}");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("archived"));
    // Nor is a queued build assigned to it.
    let queued = app.enqueue_build(org.id, "77", Some(&projects[1])).await;
    let body = app
        .graphql(
            Some(&org.key),
            "mutation($b: ID!, $r: ID!) { assignQueuedBuild(id: $b, releaseId: $r) { status } }",
            json!({ "b": queued, "r": releases[1] }),
        )
        .await;
    assert_eq!(error_code(&body), "CONFLICT", "{body}");

    // A move needs a reason.
    let body = app
        .graphql(
            Some(&org.key),
            MOVE,
            json!({ "id": build, "r": releases[0], "why": " " }),
        )
        .await;
    assert!(body.get("errors").is_some(), "{body}");

    // Nothing moved.
    assert_eq!(release(&app, &org.key, &releases[0]).await["buildCount"], 1);
    assert_read_models_equal_a_rebuild(&app).await;
}

#[tokio::test]
async fn an_expired_build_cannot_be_moved_or_returned() {
    let app = spawn_app().await;
    let (org, projects, releases) = two_projects(&app).await;
    let old = ingested(&app, &org, "Web", "Build 1").await;
    ingested(&app, &org, "Web", "Build 2").await;
    app.graphql_ok(
        &org.key,
        "mutation($id: ID!) { updateProject(id: $id, input: {retention: {keepLast: 1}}) { id } }",
        json!({ "id": projects[0] }),
    )
    .await;
    let report = lathe_api::retention::run_once(&app.state).await.unwrap();
    assert_eq!(report.builds_expired, 1);

    for body in [
        app.graphql(
            Some(&org.key),
            MOVE,
            json!({ "id": old, "r": releases[1], "why": "x" }),
        )
        .await,
        app.graphql(Some(&org.key), RETURN, json!({ "id": old, "why": "x" }))
            .await,
    ] {
        assert_eq!(error_code(&body), "NOT_FOUND", "{body}");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("expired"),
            "{body}"
        );
    }
    assert_eq!(release(&app, &org.key, &releases[1]).await["buildCount"], 0);
}

#[tokio::test]
async fn a_build_returned_to_the_queue_is_pending_again_and_can_be_assigned_elsewhere() {
    let app = spawn_app().await;
    let (org, projects, releases) = two_projects(&app).await;
    let build = ingested(&app, &org, "Web", "Build 1").await;

    let data = app
        .graphql_ok(&org.key, RETURN, json!({ "id": build, "why": "not ours" }))
        .await;
    let returned = &data["returnBuildToQueue"];
    assert_eq!(returned["status"], "PENDING");
    assert_eq!(returned["reason"], "RETURNED_TO_QUEUE");
    assert_eq!(returned["releaseId"], Value::Null);
    assert_eq!(returned["project"]["id"], projects[0].as_str());
    assert_eq!(release(&app, &org.key, &releases[0]).await["buildCount"], 0);
    let queue = app
        .graphql_ok(
            &org.key,
            "{ buildQueue { edges { node { id reason } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        queue["buildQueue"]["edges"],
        json!([{ "node": { "id": build, "reason": "RETURNED_TO_QUEUE" } }])
    );

    // Select the right project, then assign.
    app.graphql_ok(
        &org.key,
        "mutation($b: ID!, $p: ID!) { selectProjectForQueuedBuild(id: $b, projectId: $p) { id } }",
        json!({ "b": build, "p": projects[1] }),
    )
    .await;
    let data = app
        .graphql_ok(
            &org.key,
            "mutation($b: ID!, $r: ID!) { assignQueuedBuild(id: $b, releaseId: $r) { status releaseId } }",
            json!({ "b": build, "r": releases[1] }),
        )
        .await;
    assert_eq!(data["assignQueuedBuild"]["status"], "ASSIGNED");
    assert_eq!(release(&app, &org.key, &releases[1]).await["buildCount"], 1);
    let types: Vec<String> = history(&app, &org.key, &build)
        .await
        .into_iter()
        .map(|(t, _, _)| t)
        .collect();
    assert!(
        types.contains(&"BuildReturnedToQueue".to_owned()),
        "{types:?}"
    );
    assert_read_models_equal_a_rebuild(&app).await;
}

#[tokio::test]
async fn a_rejection_made_by_mistake_is_undone_with_the_reason_the_build_had() {
    let app = spawn_app().await;
    let (org, projects, _) = two_projects(&app).await;
    let build = app
        .enqueue_build(org.id, "2727068", Some(projects[0].as_str()))
        .await;
    app.graphql_ok(
        &org.key,
        "mutation($b: ID!) { rejectQueuedBuild(id: $b, reason: \"flaky agent\") { status } }",
        json!({ "b": build }),
    )
    .await;
    let restore =
        "mutation($b: ID!) { restoreRejectedBuild(id: $b) { status reason rejectionReason } }";
    let data = app
        .graphql_ok(&org.key, restore, json!({ "b": build }))
        .await;
    assert_eq!(
        data["restoreRejectedBuild"],
        json!({ "status": "PENDING", "reason": "NO_ACTIVE_RELEASE", "rejectionReason": null })
    );
    // Only a rejected build can be restored.
    let body = app
        .graphql(Some(&org.key), restore, json!({ "b": build }))
        .await;
    assert_eq!(error_code(&body), "CONFLICT", "{body}");
    let (last, _, _) = history(&app, &org.key, &build).await.pop().unwrap();
    assert_eq!(last, "RejectedBuildRestored");
    assert_read_models_equal_a_rebuild(&app).await;
}

#[tokio::test]
async fn an_archived_project_matches_no_new_builds_and_its_releases_stay_readable() {
    let app = spawn_app().await;
    let (org, projects, releases) = two_projects(&app).await;
    let kept = ingested(&app, &org, "Web", "Build 1").await;
    let data = app
        .graphql_ok(
            &org.key,
            "mutation($id: ID!) { archiveProject(id: $id, reason: \"merged into Portal\") { archivedAt archiveReason } }",
            json!({ "id": projects[0] }),
        )
        .await;
    assert_eq!(
        data["archiveProject"]["archiveReason"],
        "merged into Portal"
    );
    assert!(data["archiveProject"]["archivedAt"].is_string());

    // A new build matching it is queued with the reason.
    let body = json!({ "build_name": "Build 2", "project": "Web", "test_results": [] });
    let answer = app.ingest(&Auth::Bearer(org.key.clone()), &body, &[]).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    assert_eq!(answer.body["outcome"], "queued");
    assert!(
        answer.body["message"]
            .as_str()
            .unwrap()
            .contains("archived"),
        "{answer:?}"
    );
    let queue = app
        .graphql_ok(
            &org.key,
            "{ buildQueue { edges { node { reason project { id } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        queue["buildQueue"]["edges"][0]["node"],
        json!({ "reason": "PROJECT_ARCHIVED", "project": { "id": projects[0] } })
    );
    // Its release and builds stay readable.
    let readable = release(&app, &org.key, &releases[0]).await;
    assert_eq!(readable["builds"]["edges"][0]["node"]["id"], kept.as_str());

    // Restored, it matches again.
    app.graphql_ok(
        &org.key,
        "mutation($id: ID!) { restoreProject(id: $id) { archivedAt } }",
        json!({ "id": projects[0] }),
    )
    .await;
    let body = json!({ "build_name": "Build 3", "project": "Web", "test_results": [] });
    let answer = app.ingest(&Auth::Bearer(org.key.clone()), &body, &[]).await;
    assert_eq!(answer.body["outcome"], "created", "{answer:?}");
    let body = app
        .graphql(
            Some(&org.key),
            "mutation($id: ID!) { restoreProject(id: $id) { archivedAt } }",
            json!({ "id": projects[0] }),
        )
        .await;
    assert_eq!(error_code(&body), "CONFLICT", "{body}");
    assert_read_models_equal_a_rebuild(&app).await;
}

#[tokio::test]
async fn an_archived_projects_azure_devops_calls_stop() {
    let fake = FakeAzure::start().await;
    let app = spawn_app_with(|s| s.background_jobs = false).await;
    let org = app.create_org("Fabrikam").await;
    let project = connected(&app, &org, &fake, "Web").await;
    app.create_release(&org.key, &project, "2026.12").await;
    // Enqueued before the project is archived: not made after.
    ingested(&app, &org, "Web", "Build 1").await;
    app.graphql_ok(
        &org.key,
        "mutation($id: ID!) { archiveProject(id: $id) { id } }",
        json!({ "id": project }),
    )
    .await;
    while lathe_api::azure::worker::deliver_due(&app.state)
        .await
        .unwrap()
        > 0
    {}
    assert!(fake.work_items().is_empty());
    let data = app
        .graphql_ok(
            &org.key,
            "{ azureDevOpsDeliveries { status lastError } }",
            json!({}),
        )
        .await;
    let calls = data["azureDevOpsDeliveries"].as_array().unwrap();
    assert!(!calls.is_empty());
    for call in calls {
        assert_eq!(call["status"], "FAILED", "{call}");
        assert!(
            call["lastError"].as_str().unwrap().contains("archived"),
            "{call}"
        );
    }
    // Results of a build that arrives later enqueue nothing at all.
    app.graphql_ok(
        &org.key,
        "mutation($id: ID!) { restoreProject(id: $id) { id } }",
        json!({ "id": project }),
    )
    .await;
    app.graphql_ok(
        &org.key,
        "mutation($id: ID!) { archiveProject(id: $id) { id } }",
        json!({ "id": project }),
    )
    .await;
    let body = json!({ "build_name": "Build 2", "project": "Web",
        "test_results": [{ "title": "t", "status": "failed" }] });
    let answer = app.ingest(&Auth::Bearer(org.key.clone()), &body, &[]).await;
    assert_eq!(answer.body["outcome"], "queued", "{answer:?}");
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM public.outbox WHERE status = 'pending'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(pending, 0);
}

#[tokio::test]
async fn a_release_is_renamed_and_a_completed_one_reopened_but_not_an_archived_one() {
    let app = spawn_app().await;
    let (org, projects, releases) = two_projects(&app).await;
    let data = app
        .graphql_ok(
            &org.key,
            "mutation($id: ID!) { renameRelease(id: $id, name: \"web 2027.01\") { name } }",
            json!({ "id": releases[0] }),
        )
        .await;
    assert_eq!(data["renameRelease"]["name"], "web 2027.01");
    let reopen = "mutation($id: ID!) { reopenRelease(id: $id) { status completedAt } }";
    let body = app
        .graphql(Some(&org.key), reopen, json!({ "id": releases[0] }))
        .await;
    assert_eq!(error_code(&body), "CONFLICT", "an active release: {body}");
    app.graphql_ok(
        &org.key,
        "mutation($id: ID!) { completeRelease(id: $id) { status } }",
        json!({ "id": releases[0] }),
    )
    .await;
    let data = app
        .graphql_ok(&org.key, reopen, json!({ "id": releases[0] }))
        .await;
    assert_eq!(
        data["reopenRelease"],
        json!({ "status": "ACTIVE", "completedAt": null })
    );
    // Reopened, it takes builds again.
    let build = ingested(&app, &org, "Web", "Build 1").await;
    assert_eq!(release(&app, &org.key, &releases[0]).await["buildCount"], 1);
    assert!(!build.is_empty());

    let old = app
        .create_release(&org.key, &projects[1], "mobile 2026.01")
        .await;
    for mutation in [
        "mutation($id: ID!) { completeRelease(id: $id) { status } }",
        "mutation($id: ID!) { archiveRelease(id: $id) { status } }",
    ] {
        app.graphql_ok(&org.key, mutation, json!({ "id": old }))
            .await;
    }
    let body = app
        .graphql(Some(&org.key), reopen, json!({ "id": old }))
        .await;
    assert_eq!(error_code(&body), "CONFLICT", "an archived release: {body}");
    let body = app
        .graphql(
            Some(&org.key),
            "mutation($id: ID!) { renameRelease(id: $id, name: \"x\") { name } }",
            json!({ "id": old }),
        )
        .await;
    assert_eq!(error_code(&body), "CONFLICT", "{body}");
    assert_read_models_equal_a_rebuild(&app).await;
}

const BULK_ASSIGN: &str =
    "mutation($ids: [ID!]!, $r: ID!) { bulkAssignBuilds(ids: $ids, releaseId: $r) {
    id ok code message } }";

#[tokio::test]
async fn a_bulk_assignment_answers_each_build_on_its_own() {
    let app = spawn_app().await;
    let (org, projects, releases) = two_projects(&app).await;
    let other = app.create_org("Contoso").await;
    let first = app.enqueue_build(org.id, "1", Some(&projects[0])).await;
    let second = app.enqueue_build(org.id, "2", None).await;
    let rejected = app.enqueue_build(org.id, "3", None).await;
    let theirs = app.enqueue_build(other.id, "4", None).await;
    app.graphql_ok(
        &org.key,
        "mutation($b: ID!) { rejectQueuedBuild(id: $b, reason: \"noise\") { status } }",
        json!({ "b": rejected }),
    )
    .await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let ids = json!([first, "not-an-id", second, rejected, theirs, unknown, first]);
    let data = app
        .graphql_ok(
            &org.key,
            BULK_ASSIGN,
            json!({ "ids": ids, "r": releases[0] }),
        )
        .await;
    let answers = data["bulkAssignBuilds"].as_array().unwrap();
    let codes: Vec<(&str, bool, Option<&str>)> = answers
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap(),
                a["ok"].as_bool().unwrap(),
                a["code"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            (first.as_str(), true, None),
            ("not-an-id", false, Some("BAD_USER_INPUT")),
            (second.as_str(), true, None),
            (rejected.as_str(), false, Some("CONFLICT")),
            (theirs.as_str(), false, Some("NOT_FOUND")),
            (unknown.as_str(), false, Some("NOT_FOUND")),
            (first.as_str(), false, Some("CONFLICT")),
        ]
    );
    assert!(answers[3]["message"].as_str().unwrap().contains("rejected"));
    assert_eq!(release(&app, &org.key, &releases[0]).await["buildCount"], 2);

    // Move both to the other project's release and return one of them, in bulk too.
    let data = app
        .graphql_ok(
            &org.key,
            "mutation($ids: [ID!]!, $r: ID!) { bulkMoveBuilds(ids: $ids, releaseId: $r, reason: \"wrong project\") { ok } }",
            json!({ "ids": [first, second, rejected], "r": releases[1] }),
        )
        .await;
    assert_eq!(
        data["bulkMoveBuilds"],
        json!([{ "ok": true }, { "ok": true }, { "ok": false }])
    );
    let data = app
        .graphql_ok(
            &org.key,
            "mutation($ids: [ID!]!) { bulkReturnBuildsToQueue(ids: $ids, reason: \"later\") { ok } }",
            json!({ "ids": [second] }),
        )
        .await;
    assert_eq!(data["bulkReturnBuildsToQueue"], json!([{ "ok": true }]));
    let data = app
        .graphql_ok(
            &org.key,
            "mutation($ids: [ID!]!) { bulkRejectBuilds(ids: $ids, reason: \"noise\") { ok code } }",
            json!({ "ids": [second, first] }),
        )
        .await;
    assert_eq!(
        data["bulkRejectBuilds"],
        json!([{ "ok": true, "code": null }, { "ok": false, "code": "CONFLICT" }])
    );
    assert_eq!(release(&app, &org.key, &releases[0]).await["buildCount"], 0);
    assert_eq!(release(&app, &org.key, &releases[1]).await["buildCount"], 1);
    assert_read_models_equal_a_rebuild(&app).await;
}

#[tokio::test]
async fn a_bulk_call_over_the_limit_is_refused_before_anything_runs() {
    let app = spawn_app_with(|s| s.bulk_max_builds = 2).await;
    let (org, projects, releases) = two_projects(&app).await;
    let ids: Vec<String> = [
        app.enqueue_build(org.id, "1", Some(&projects[0])).await,
        app.enqueue_build(org.id, "2", Some(&projects[0])).await,
        app.enqueue_build(org.id, "3", Some(&projects[0])).await,
    ]
    .into();
    let body = app
        .graphql(
            Some(&org.key),
            BULK_ASSIGN,
            json!({ "ids": ids, "r": releases[0] }),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("at most 2"));
    assert_eq!(release(&app, &org.key, &releases[0]).await["buildCount"], 0);
}

const CONNECT: &str =
    "mutation($p: ID!, $i: AzureDevOpsInput!) { connectAzureDevOps(projectId: $p, input: $i) {
    id } }";

async fn connected(app: &TestApp, org: &TestOrg, fake: &FakeAzure, name: &str) -> String {
    let project = app.create_project(&org.key, name).await;
    let input = json!({ "organizationUrl": fake.url, "project": PROJECT, "personalAccessToken": TOKEN,
        "autoCreateWorkItems": true, "failureThreshold": 3 });
    app.graphql_ok(&org.key, CONNECT, json!({ "p": project, "i": input }))
        .await;
    project
}

const SYNC: &str = "mutation($p: ID!, $on: Boolean!) { setRetentionSync(projectId: $p, enabled: $on) {
    azureRetention { enabled purgeRunsDays purgePullRequestRunsDays retainRunsPerProtectedBranch error }
    effectiveRetention { keepDays pullRequestKeepDays keepNewestPerBranch } } }";
const SHOWN: &str = "query($p: ID!) { project(id: $p) {
    azureRetention { enabled purgeRunsDays purgePullRequestRunsDays retainRunsPerProtectedBranch error }
    effectiveRetention { keepDays pullRequestKeepDays keepNewestPerBranch } } }";

#[tokio::test]
async fn build_retention_is_taken_from_azure_devops_refreshed_by_the_job_and_overridable() {
    let fake = FakeAzure::start().await;
    let app = spawn_app_with(|s| s.background_jobs = false).await;
    let org = app.create_org("Fabrikam").await;
    let project = connected(&app, &org, &fake, "Web").await;

    let data = app
        .graphql_ok(&org.key, SYNC, json!({ "p": project, "on": true }))
        .await;
    assert_eq!(
        data["setRetentionSync"],
        json!({ "azureRetention": { "enabled": true, "purgeRunsDays": 30, "purgePullRequestRunsDays": 10,
                    "retainRunsPerProtectedBranch": 3, "error": null },
                "effectiveRetention": { "keepDays": 30, "pullRequestKeepDays": 10, "keepNewestPerBranch": 3 } })
    );
    assert!(fake
        .requests()
        .contains(&("GET".to_owned(), "build/retention".to_owned())));

    // The retention job reads it again.
    fake.set_retention(60, 20, 5);
    lathe_api::retention::run_once(&app.state).await.unwrap();
    let shown = app
        .graphql_ok(&org.key, SHOWN, json!({ "p": project }))
        .await;
    assert_eq!(shown["project"]["azureRetention"]["purgeRunsDays"], 60);
    assert_eq!(
        shown["project"]["effectiveRetention"],
        json!({ "keepDays": 60, "pullRequestKeepDays": 20, "keepNewestPerBranch": 5 })
    );

    // The project's own keepDays overrides the synced days.
    app.graphql_ok(
        &org.key,
        "mutation($id: ID!) { updateProject(id: $id, input: {retention: {keepDays: 90}}) { id } }",
        json!({ "id": project }),
    )
    .await;
    let shown = app
        .graphql_ok(&org.key, SHOWN, json!({ "p": project }))
        .await;
    assert_eq!(
        shown["project"]["effectiveRetention"],
        json!({ "keepDays": 90, "pullRequestKeepDays": 90, "keepNewestPerBranch": 5 })
    );

    // A token that may no longer read the settings: a clear message on the project, the last values kept.
    fake.fail_next("retention", Fault::Forbidden);
    lathe_api::retention::run_once(&app.state).await.unwrap();
    let shown = app
        .graphql_ok(&org.key, SHOWN, json!({ "p": project }))
        .await;
    let synced = &shown["project"]["azureRetention"];
    assert_eq!(synced["purgeRunsDays"], 60);
    let error = synced["error"].as_str().unwrap();
    assert!(
        error.contains("Build (Read)") && error.contains("403"),
        "{error}"
    );
    assert!(!error.contains(TOKEN));

    // Turned off, the synced values no longer apply.
    let data = app
        .graphql_ok(&org.key, SYNC, json!({ "p": project, "on": false }))
        .await;
    assert_eq!(data["setRetentionSync"]["azureRetention"]["enabled"], false);
    assert_eq!(
        data["setRetentionSync"]["effectiveRetention"],
        json!({ "keepDays": 90, "pullRequestKeepDays": 90, "keepNewestPerBranch": null })
    );
    assert_read_models_equal_a_rebuild(&app).await;
}

#[tokio::test]
async fn turning_the_retention_sync_on_with_a_token_that_may_not_read_it_is_refused_with_the_reason(
) {
    let fake = FakeAzure::start().await;
    let app = spawn_app_with(|s| s.background_jobs = false).await;
    let org = app.create_org("Fabrikam").await;
    let project = connected(&app, &org, &fake, "Web").await;
    fake.fail_next("retention", Fault::Forbidden);
    let body = app
        .graphql(Some(&org.key), SYNC, json!({ "p": project, "on": true }))
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("Build (Read)"), "{message}");
    let shown = app
        .graphql_ok(&org.key, SHOWN, json!({ "p": project }))
        .await;
    assert_eq!(shown["project"]["azureRetention"]["enabled"], false);

    // A project without a connection cannot sync.
    let plain = app.create_project(&org.key, "Plain").await;
    let body = app
        .graphql(Some(&org.key), SYNC, json!({ "p": plain, "on": true }))
        .await;
    assert!(body.get("errors").is_some(), "{body}");
}

#[tokio::test]
async fn builds_older_than_the_synced_days_expire_but_the_newest_of_each_branch_stay() {
    use domain::build_queue::{
        BuildDetails, BuildIdentity, BuildQueue, BuildQueueCommand, BuildSource, Route,
    };
    let fake = FakeAzure::start().await;
    let app = spawn_app_with(|s| s.background_jobs = false).await;
    let org = app.create_org("Fabrikam").await;
    let project = connected(&app, &org, &fake, "Web").await;
    let release_id = app.create_release(&org.key, &project, "2026.12").await;
    fake.set_retention(30, 10, 1);
    app.graphql_ok(&org.key, SYNC, json!({ "p": project, "on": true }))
        .await;
    let release_row = projections::releases::find(&app.pool, org.id, release_id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    // Two builds of `main` 40 and 45 days old: the newer stays as main's newest, the older expires.
    let mut ids = Vec::new();
    for (n, days) in [(1, 45), (2, 40)] {
        let identity = BuildIdentity {
            organization_id: org.id,
            source: BuildSource::Ingest,
            key: format!("old-{n}"),
        };
        ids.push(identity.entry_id().to_string());
        let command = BuildQueueCommand::ReceiveBuild {
            identity: identity.clone(),
            details: BuildDetails {
                name: format!("Build {n}"),
                branch: Some("main".to_owned()),
                ..BuildDetails::default()
            },
            route: Route::Release(release_row.as_ref()),
            received_at: chrono::Utc::now() - chrono::Duration::days(days),
            results: None,
        };
        app.state
            .store
            .execute::<BuildQueue>(
                identity.entry_id(),
                command,
                &projections::CommandContext::operator(),
            )
            .await
            .unwrap();
    }
    let report = lathe_api::retention::run_once(&app.state).await.unwrap();
    assert_eq!(report.builds_expired, 1);
    let events = history(&app, &org.key, &ids[0]).await;
    let (event_type, payload, actor) = events.last().unwrap();
    assert_eq!(event_type, "BuildExpired");
    assert_eq!(actor, "system");
    assert!(
        payload["BuildExpired"]["reason"]
            .as_str()
            .unwrap()
            .contains("Azure DevOps"),
        "{payload}"
    );
    assert_eq!(release(&app, &org.key, &release_id).await["buildCount"], 1);
}

#[tokio::test]
async fn a_moved_build_takes_its_work_item_links_and_pull_request_status_to_the_new_project() {
    let fake = FakeAzure::start().await;
    let app = spawn_app_with(|s| s.background_jobs = false).await;
    let org = app.create_org("Fabrikam").await;
    let chat = connected(&app, &org, &fake, "FabrikamFiberChat").await;
    let mobile = connected(&app, &org, &fake, "Mobile").await;
    app.create_release(&org.key, &chat, "chat 2026.12").await;
    let mobile_release = app
        .create_release(&org.key, &mobile, "mobile 2026.12")
        .await;
    let auth = Auth::Bearer(org.key.clone());
    // A pull-request build of the sample delivery, then its results with one failure.
    let mut delivery = payload("build.complete.msdocs-2022.json");
    delivery["resource"]["id"] = json!(5042);
    delivery["resource"]["reason"] = json!("pullRequest");
    delivery["resource"]["sourceBranch"] = json!("refs/pull/42/merge");
    delivery["resource"]["triggerInfo"] =
        json!({ "pr.number": "42", "pr.triggerRepository": REPOSITORY });
    let created = app.webhook(&auth, &delivery).await;
    assert_eq!(created.body["outcome"], "created", "{created:?}");
    let build = created.body["buildId"].as_str().unwrap().to_owned();
    let results = json!({ "build_name": "Build 1", "azure_build_id": 5042,
        "azure_collection_url": "https://dev.azure.com/FabrikamFiber/",
        "test_results": [{ "title": "logout works", "status": "failed" }, { "title": "login works", "status": "passed" }] });
    assert_eq!(
        app.ingest(&auth, &results, &[]).await.body["outcome"],
        "attached"
    );
    while lathe_api::azure::worker::deliver_due(&app.state)
        .await
        .unwrap()
        > 0
    {}
    assert_eq!(fake.work_items().len(), 1);
    assert_eq!(fake.statuses().len(), 1);

    app.graphql_ok(
        &org.key,
        MOVE,
        json!({ "id": build, "r": mobile_release, "why": "a Mobile pipeline" }),
    )
    .await;
    // The pull request gets the status again, through the new project's connection.
    while lathe_api::azure::worker::deliver_due(&app.state)
        .await
        .unwrap()
        > 0
    {}
    let statuses = fake.statuses();
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    assert_eq!(statuses[1].0, 42);
    assert_eq!(
        statuses[1].1["description"],
        "1 passed, 1 failed, 0 skipped"
    );
    let data = app
        .graphql_ok(
            &org.key,
            "query($id: ID!) { build(id: $id) { releaseId pullRequest { number }
                testResults { edges { node { title workItem { id } } } } } }",
            json!({ "id": build }),
        )
        .await;
    assert_eq!(data["build"]["releaseId"], mobile_release.as_str());
    assert_eq!(data["build"]["pullRequest"]["number"], 42);
    let linked: Vec<&Value> = data["build"]["testResults"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|edge| !edge["node"]["workItem"].is_null())
        .collect();
    assert_eq!(linked.len(), 1);
    // The new project tracks the failing test with the same work item: no second one for its next failure.
    let carried: Vec<(String, i64)> = sqlx::query_as(
        "SELECT title, work_item_id FROM read.work_item_links WHERE project_id = $1",
    )
    .bind(uuid::Uuid::parse_str(&mobile).unwrap())
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        carried,
        vec![("logout works".to_owned(), fake.work_items()[0].id as i64)]
    );
    assert_read_models_equal_a_rebuild(&app).await;
}

#[tokio::test]
async fn bulk_mutations_are_costed_per_build_so_that_aliases_cannot_multiply_them() {
    let app = spawn_app().await;
    let (org, _, releases) = two_projects(&app).await;
    let ids: Vec<String> = (0..500).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    // One call of 500 builds fits the budget (500 × (10 + 4 fields) = 7,000 of 25,000); four do not.
    let one = app
        .graphql_ok(
            &org.key,
            BULK_ASSIGN,
            json!({ "ids": ids, "r": releases[0] }),
        )
        .await;
    assert_eq!(one["bulkAssignBuilds"].as_array().unwrap().len(), 500);
    let aliases: String = (0..4)
        .map(|n| {
            format!("a{n}: bulkAssignBuilds(ids: $ids, releaseId: $r) {{ id ok code message }} ")
        })
        .collect();
    let body = app
        .graphql(
            Some(&org.key),
            &format!("mutation($ids: [ID!]!, $r: ID!) {{ {aliases} }}"),
            json!({ "ids": ids, "r": releases[0] }),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("cost"),
        "{body}"
    );
}

#[tokio::test]
async fn a_moved_build_follows_the_retention_of_its_new_project() {
    let app = spawn_app().await;
    let (org, projects, releases) = two_projects(&app).await;
    let older = ingested(&app, &org, "Web", "Build 1").await;
    let newer = ingested(&app, &org, "Web", "Build 2").await;
    // Web keeps only its newest build; Mobile keeps everything.
    app.graphql_ok(
        &org.key,
        "mutation($id: ID!) { updateProject(id: $id, input: {retention: {keepLast: 1}}) { id } }",
        json!({ "id": projects[0] }),
    )
    .await;
    app.graphql_ok(
        &org.key,
        MOVE,
        json!({ "id": older, "r": releases[1], "why": "a Mobile build" }),
    )
    .await;
    let report = lathe_api::retention::run_once(&app.state).await.unwrap();
    assert_eq!(report.builds_expired, 0, "the older build is Mobile's now");
    assert_eq!(release(&app, &org.key, &releases[1]).await["buildCount"], 1);
    assert_eq!(release(&app, &org.key, &releases[0]).await["buildCount"], 1);
    assert!(!newer.is_empty());
}
