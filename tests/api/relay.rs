//! Relay conventions dashboards rely on: full `PageInfo`, `last`/`before` on newest-first lists, `totalCount`,
//! the `Node` interface with `node(id:)`/`nodes(ids:)`, and a page's projects and releases read in a few statements.

use serde_json::{json, Value};

use lathe_tests::{error_code, spawn_app, TestApp};

/// Queues `count` builds of `project` (oldest first) and returns their ids, newest first.
async fn queue(app: &TestApp, org: uuid::Uuid, project: Option<&str>, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..count {
        let build = uuid::Uuid::new_v4().to_string();
        ids.push(app.enqueue_build(org, &build, project).await);
    }
    ids.reverse();
    ids
}

fn ids(connection: &Value) -> Vec<String> {
    connection["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"]["id"].as_str().unwrap().to_owned())
        .collect()
}

const QUEUE: &str = "query($first: Int, $after: String, $last: Int, $before: String) {
    buildQueue(first: $first, after: $after, last: $last, before: $before) {
        edges { cursor node { id } }
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    } }";

#[tokio::test]
async fn pages_have_start_cursors_and_last_before_pages_back_up_a_newest_first_list() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let all = queue(&app, org.id, None, 5).await;

    let first = &app.graphql_ok(&org.key, QUEUE, json!({"first": 2})).await["buildQueue"];
    assert_eq!(ids(first), all[0..2]);
    assert_eq!(first["pageInfo"]["hasNextPage"], true);
    assert_eq!(first["pageInfo"]["hasPreviousPage"], false);
    assert_eq!(
        first["pageInfo"]["startCursor"],
        first["edges"][0]["cursor"]
    );
    assert_eq!(first["pageInfo"]["endCursor"], first["edges"][1]["cursor"]);

    let second = &app
        .graphql_ok(
            &org.key,
            QUEUE,
            json!({"first": 2, "after": first["pageInfo"]["endCursor"]}),
        )
        .await["buildQueue"];
    assert_eq!(ids(second), all[2..4]);
    assert_eq!(second["pageInfo"]["hasPreviousPage"], true);

    // Back up from the second page: the first page again, newest first.
    let back = &app
        .graphql_ok(
            &org.key,
            QUEUE,
            json!({"last": 2, "before": second["pageInfo"]["startCursor"]}),
        )
        .await["buildQueue"];
    assert_eq!(ids(back), all[0..2]);
    assert_eq!(back["pageInfo"]["hasPreviousPage"], false);
    assert_eq!(back["pageInfo"]["hasNextPage"], true);

    // `last` alone: the oldest end of the list, still newest first.
    let oldest = &app.graphql_ok(&org.key, QUEUE, json!({"last": 2})).await["buildQueue"];
    assert_eq!(ids(oldest), all[3..5]);
    assert_eq!(oldest["pageInfo"]["hasPreviousPage"], true);
    assert_eq!(oldest["pageInfo"]["hasNextPage"], false);

    // One direction at a time, named.
    let both = app
        .graphql(Some(&org.key), QUEUE, json!({"first": 2, "last": 2}))
        .await;
    assert_eq!(error_code(&both), "BAD_USER_INPUT");
    assert!(both["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("`last`"));
}

#[tokio::test]
async fn releases_and_deliveries_page_backwards_too() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let project = app.create_project(&org.key, "Web").await;
    let mut releases = Vec::new();
    for n in 0..3 {
        releases.push(
            app.create_release(&org.key, &project, &format!("r{n}"))
                .await,
        );
    }
    releases.reverse();
    let query =
        "query($before: String) { releases(last: 1, before: $before) { edges { cursor node { id } }
        pageInfo { hasPreviousPage startCursor } } }";
    let oldest = &app.graphql_ok(&org.key, query, json!({})).await["releases"];
    assert_eq!(ids(oldest), releases[2..3]);
    let newer = &app
        .graphql_ok(
            &org.key,
            query,
            json!({"before": oldest["pageInfo"]["startCursor"]}),
        )
        .await["releases"];
    assert_eq!(ids(newer), releases[1..2]);
    assert_eq!(newer["pageInfo"]["hasPreviousPage"], true);

    let deliveries = app
        .graphql_ok(
            &org.key,
            "{ webhookDeliveries(last: 5) { pageInfo { hasNextPage hasPreviousPage } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        deliveries["webhookDeliveries"]["pageInfo"]["hasNextPage"],
        false
    );
}

#[tokio::test]
async fn total_count_counts_the_queue_per_status_and_a_releases_builds() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let project = app.create_project(&org.key, "Web").await;
    let release = app.create_release(&org.key, &project, "1.0").await;
    let queued = queue(&app, org.id, Some(&project), 4).await;
    app.graphql_ok(
        &org.key,
        "mutation($id: ID!) { rejectQueuedBuild(id: $id, reason: \"flaky\") { id } }",
        json!({ "id": queued[0] }),
    )
    .await;
    for id in &queued[1..3] {
        app.graphql_ok(
            &org.key,
            "mutation($id: ID!, $r: ID!) { assignQueuedBuild(id: $id, releaseId: $r) { id } }",
            json!({ "id": id, "r": release }),
        )
        .await;
    }
    let data = app
        .graphql_ok(
            &org.key,
            "query($r: ID!) {
                pending: buildQueue(status: PENDING, first: 1) { totalCount edges { node { id } } }
                assigned: buildQueue(status: ASSIGNED, first: 1) { totalCount }
                rejected: buildQueue(status: REJECTED) { totalCount }
                release(id: $r) { builds(first: 1) { totalCount edges { node { id } } } } }",
            json!({ "r": release }),
        )
        .await;
    assert_eq!(data["pending"]["totalCount"], 1);
    assert_eq!(data["pending"]["edges"].as_array().unwrap().len(), 1);
    assert_eq!(data["assigned"]["totalCount"], 2);
    assert_eq!(data["rejected"]["totalCount"], 1);
    assert_eq!(data["release"]["builds"]["totalCount"], 2);
}

#[tokio::test]
async fn node_and_nodes_refetch_each_type_by_id_within_the_organization() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let other = app.create_org("Contoso").await;
    let project = app.create_project(&org.key, "Web").await;
    let release = app.create_release(&org.key, &project, "1.0").await;
    let queued = queue(&app, org.id, Some(&project), 2).await;
    app.graphql_ok(
        &org.key,
        "mutation($id: ID!, $r: ID!) { assignQueuedBuild(id: $id, releaseId: $r) { id } }",
        json!({ "id": queued[0], "r": release }),
    )
    .await;
    let (_, key_id) = app.create_key(&org.key, &["builds:read"]).await;
    let foreign = app.create_project(&other.key, "Theirs").await;

    let query = "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }";
    let asked = json!([
        project,
        release,
        queued[0],
        queued[1],
        key_id,
        foreign,
        uuid::Uuid::new_v4()
    ]);
    let data = app
        .graphql_ok(&org.key, query, json!({ "ids": asked }))
        .await;
    let types: Vec<Value> = data["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| node["__typename"].clone())
        .collect();
    assert_eq!(
        types,
        vec![
            json!("Project"),
            json!("Release"),
            json!("Build"),
            json!("QueuedBuild"),
            json!("ApiKey"),
            Value::Null,
            Value::Null
        ]
    );
    assert_eq!(data["nodes"][1]["id"], release.as_str());

    // One object, with its fields through a fragment.
    let one = app
        .graphql_ok(
            &org.key,
            "query($id: ID!) { node(id: $id) { ... on Release { name buildCount } } }",
            json!({ "id": release }),
        )
        .await;
    assert_eq!(one["node"]["name"], "1.0");
    assert_eq!(one["node"]["buildCount"], 1);

    // API keys only with keys:manage.
    let (reader, _) = app.create_key(&org.key, &["builds:read"]).await;
    let hidden = app
        .graphql_ok(
            &reader,
            "query($id: ID!) { node(id: $id) { id } }",
            json!({ "id": key_id }),
        )
        .await;
    assert!(hidden["node"].is_null());

    let too_many: Vec<String> = (0..101).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let refused = app
        .graphql(Some(&org.key), query, json!({ "ids": too_many }))
        .await;
    assert_eq!(error_code(&refused), "BAD_USER_INPUT");
}

#[tokio::test]
async fn a_page_of_queue_entries_with_their_projects_and_releases_is_read_in_a_few_statements() {
    let (app, statements) = crate::graphql_cost::spawn_app_behind_counting_proxy().await;
    let org = app.create_org("Fabrikam").await;
    for p in 0..4 {
        let project = app.create_project(&org.key, &format!("Project {p}")).await;
        let release = app.create_release(&org.key, &project, "r").await;
        for id in queue(&app, org.id, Some(&project), 10)
            .await
            .into_iter()
            .take(5)
        {
            app.graphql_ok(
                &org.key,
                "mutation($id: ID!, $r: ID!) { assignQueuedBuild(id: $id, releaseId: $r) { id } }",
                json!({ "id": id, "r": release }),
            )
            .await;
        }
    }
    let query = "{ assigned: buildQueue(status: ASSIGNED, first: 100) { totalCount edges { node {
            project { name } release { name project { name } } } } }
        pending: buildQueue(first: 100) { edges { node { project { name } release { name } } } } }";
    app.graphql_ok(&org.key, query, json!({})).await;
    let (data, executed) =
        crate::graphql_cost::fewest_statements(&app, &org.key, query, &statements).await;
    assert_eq!(data["assigned"]["totalCount"], 20);
    assert_eq!(data["pending"]["edges"].as_array().unwrap().len(), 20);
    let with_release = data["assigned"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|edge| edge["node"]["release"]["name"] == "r")
        .count();
    assert_eq!(with_release, 20);
    // One statement per row would be over 100.
    assert!(executed <= 10, "40 entries took {executed} statements");
}
