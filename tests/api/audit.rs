//! The audit trail: who caused each event, the history in commit order for auditors, tamper evidence, export.

use serde_json::{json, Value};

use crate::process::run_cli;
use lathe_tests::{error_code, payload, spawn_app, Auth, TestApp, TestOrg};
use projections::audit::{self, EventFilter};

const EVENTS: &str = "query($t: String, $id: String, $a: String) { events(aggregateType: $t, aggregateId: $id,
    first: 3, after: $a) { edges { cursor node { position aggregateType aggregateId sequence eventType payload
    hash actor { type apiKeyPrefix } } } pageInfo { hasNextPage endCursor } } }";

#[tokio::test]
async fn every_event_records_who_caused_it_in_which_request_and_when() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .bearer_auth(&org.key)
        .header("x-request-id", "req-from-dashboard-1")
        .json(&json!({ "query": "mutation { createProject(input: {name: \"Web\"}) { id } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let metadata: Value = sqlx::query_scalar(
        "SELECT metadata::jsonb FROM events WHERE event_type = 'ProjectCreated'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(metadata["actor.type"], "api_key");
    assert_eq!(metadata["actor.api_key_prefix"], &org.key[..12]);
    assert_eq!(metadata["request_id"], "req-from-dashboard-1");
    assert_eq!(metadata["organization_id"], org.id.to_string());
    assert!(chrono::DateTime::parse_from_rfc3339(metadata["at"].as_str().unwrap()).is_ok());
    let operator: Value = sqlx::query_scalar(
        "SELECT metadata::jsonb FROM events WHERE event_type = 'OrganizationCreated'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(operator["actor.type"], "operator");
}

#[tokio::test]
async fn auditors_read_their_organizations_history_in_commit_order() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let other = app.create_org("Contoso").await;
    app.create_project(&org.key, "Web").await;
    app.webhook(
        &Auth::Bearer(org.key.clone()),
        &payload("build.complete.msdocs-2022.json"),
    )
    .await;
    app.create_project(&other.key, "Theirs").await;

    let (auditor, _) = app.create_key(&org.key, &["audit:read"]).await;
    // The feed shows settled transactions only; another test's transaction may hold it back for a moment.
    let mut seen = Vec::new();
    for _ in 0..50 {
        seen.clear();
        let mut after = Value::Null;
        loop {
            let data = app
                .graphql_ok(&auditor, EVENTS, json!({ "a": after }))
                .await;
            for edge in data["events"]["edges"].as_array().unwrap() {
                seen.push(edge["node"].clone());
            }
            if !data["events"]["pageInfo"]["hasNextPage"].as_bool().unwrap() {
                break;
            }
            after = data["events"]["pageInfo"]["endCursor"].clone();
        }
        if seen.len() >= 6 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let types: Vec<&str> = seen
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "OrganizationCreated",
            "ApiKeyCreated",
            "ProjectCreated",
            "BuildReceived",
            "BuildQueued",
            "ApiKeyCreated"
        ]
    );
    let positions: Vec<i64> = seen
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "commit order: {positions:?}"
    );
    assert!(
        !serde_json::to_string(&seen).unwrap().contains("Theirs"),
        "only its own organization"
    );
    assert!(seen.iter().all(|e| e["hash"].as_str().unwrap().len() == 64));

    let (reader, _) = app.create_key(&org.key, &["builds:read"]).await;
    let body = app.graphql(Some(&reader), EVENTS, json!({})).await;
    assert_eq!(error_code(&body), "FORBIDDEN", "events need audit:read");
}

#[tokio::test]
async fn a_builds_history_shows_its_whole_life_with_actors() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let (hook_key, _) = app.create_key(&org.key, &["builds:create"]).await;
    let (assigner, _) = app
        .create_key(&org.key, &["builds:assign", "builds:read"])
        .await;
    let (auditor, _) = app.create_key(&org.key, &["audit:read"]).await;
    let project = app.create_project(&org.key, "FabrikamFiberChat").await;
    let delivered = app
        .webhook(
            &Auth::Bearer(hook_key.clone()),
            &payload("build.complete.msdocs-2022.json"),
        )
        .await;
    let id = delivered.body["queuedBuildId"].as_str().unwrap().to_owned();
    app.webhook(
        &Auth::Bearer(hook_key.clone()),
        &payload("build.complete.msdocs-2022.json"),
    )
    .await;
    let release = app.create_release(&org.key, &project, "r").await;
    app.graphql_ok(
        &assigner,
        "mutation($b: ID!, $r: ID!) { assignQueuedBuild(id: $b, releaseId: $r) { id } }",
        json!({ "b": id, "r": release }),
    )
    .await;

    let data = app
        .graphql_ok(
            &auditor,
            "query($id: ID!) { buildHistory(id: $id) { deliveries { outcome subscriptionId }
                events { edges { node { eventType actor { type apiKeyPrefix azureSubscriptionId } } } } } }",
            json!({ "id": id }),
        )
        .await;
    let history = &data["buildHistory"];
    assert_eq!(
        history["deliveries"],
        json!([{ "outcome": "queued", "subscriptionId": "4f6e6328-0251-4814-a009-c01dfa368e3f" },
               { "outcome": "duplicate", "subscriptionId": "4f6e6328-0251-4814-a009-c01dfa368e3f" }])
    );
    let events: Vec<&serde_json::Value> = history["events"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| &edge["node"])
        .collect();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["BuildReceived", "BuildQueued", "BuildAssignedToRelease"]
    );
    assert_eq!(events[0]["actor"]["apiKeyPrefix"], &hook_key[..12]);
    assert_eq!(
        events[0]["actor"]["azureSubscriptionId"],
        "4f6e6328-0251-4814-a009-c01dfa368e3f"
    );
    assert_eq!(events[2]["actor"]["apiKeyPrefix"], &assigner[..12]);

    let other = app.create_org("Contoso").await;
    let body = app
        .graphql(
            Some(&other.key),
            "query($id: ID!) { buildHistory(id: $id) { buildId } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        error_code(&body),
        "NOT_FOUND",
        "another organization's build"
    );
}

/// A service with one organization and one build its webhook delivered (queued: no project matched): the build's id.
async fn one_delivered_build() -> (TestApp, TestOrg, String) {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let answer = app
        .webhook(
            &Auth::Bearer(org.key.clone()),
            &payload("build.complete.msdocs-2022.json"),
        )
        .await;
    let id = answer.body["queuedBuildId"].as_str().unwrap().to_owned();
    (app, org, id)
}

#[tokio::test]
async fn verify_reports_the_first_broken_link_after_a_stored_event_is_edited() {
    let (app, org, id) = one_delivered_build().await;
    app.create_project(&org.key, "Web").await;

    let report = audit::verify(&app.pool, None).await.unwrap();
    assert_eq!(report.first_broken, None);
    assert!(report.events_checked >= 5);
    let output = run_cli(&app.database_url, &["verify"]);
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("ok:"));

    // Someone with database access rewrites history: the queue reason of one build.
    sqlx::query(
        "UPDATE events SET payload = '{\"BuildQueued\":{\"project_id\":null,\"reason\":\"NoActiveRelease\"}}'
         WHERE aggregate_type = 'BuildQueue' AND aggregate_id = $1 AND sequence = 2",
    )
    .bind(&id)
    .execute(&app.pool)
    .await
    .unwrap();
    let report = audit::verify(&app.pool, None).await.unwrap();
    let broken = report.first_broken.expect("the edit is found");
    assert_eq!(
        (
            broken.aggregate_type.as_str(),
            broken.aggregate_id.as_str(),
            broken.sequence
        ),
        ("BuildQueue", id.as_str(), 2)
    );
    let output = run_cli(&app.database_url, &["verify"]);
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains(&format!("BuildQueue/{id} sequence 2")),
        "{text}"
    );
}

#[tokio::test]
async fn verify_reports_a_deleted_event() {
    let (app, _org, id) = one_delivered_build().await;
    sqlx::query("DELETE FROM events WHERE aggregate_type = 'BuildQueue' AND sequence = 1")
        .execute(&app.pool)
        .await
        .unwrap();
    let broken = audit::verify(&app.pool, None)
        .await
        .unwrap()
        .first_broken
        .expect("the gap is found");
    assert_eq!(
        (broken.aggregate_id.as_str(), broken.sequence),
        (id.as_str(), 2)
    );
}

/// A seal covering every event stored so far. The horizon is the oldest transaction still running on the whole
/// server, so another test's open transaction can leave the newest events out for a moment: asked again until
/// none is.
async fn seal_of_everything(app: &TestApp) -> audit::Seal {
    let stored = audit::event_count(&app.pool).await.unwrap() as u64;
    for _ in 0..200 {
        let report = audit::verify(&app.pool, None).await.unwrap();
        assert_eq!(report.first_broken, None);
        let seal = report.seal.expect("an intact history is sealed");
        if seal.events == stored {
            return seal;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the seal never covered all {stored} events");
}

#[tokio::test]
async fn a_seal_shows_events_cut_from_a_streams_end_which_the_chains_cannot() {
    let (app, org, id) = one_delivered_build().await;
    let seal = seal_of_everything(&app).await;

    // History appended after the seal leaves it holding.
    app.create_project(&org.key, "Web").await;
    let report = audit::verify(&app.pool, Some(&seal)).await.unwrap();
    assert_eq!(report.matches_seal, Some(true));
    let new_seal = seal_of_everything(&app).await;
    assert!(new_seal.events > seal.events, "{new_seal} after {seal}");

    // The build's last event removed: its chain still holds from the first event to the new last one.
    sqlx::query(
        "DELETE FROM events WHERE aggregate_type = 'BuildQueue' AND aggregate_id = $1 AND sequence = 2",
    )
    .bind(&id)
    .execute(&app.pool)
    .await
    .unwrap();
    let report = audit::verify(&app.pool, Some(&seal)).await.unwrap();
    assert_eq!(report.first_broken, None, "every remaining chain is intact");
    assert_eq!(report.matches_seal, Some(false));
}

#[tokio::test]
async fn lathe_verify_prints_a_seal_and_a_later_check_finds_a_deleted_stream() {
    let (app, _org, id) = one_delivered_build().await;
    let expected = seal_of_everything(&app).await;
    let output = run_cli(&app.database_url, &["verify"]);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let printed = text
        .lines()
        .find_map(|line| line.strip_prefix("seal: "))
        .unwrap_or_else(|| panic!("no seal in {text}"));
    assert_eq!(
        printed.parse::<audit::Seal>().unwrap().events,
        expected.events
    );

    let output = run_cli(&app.database_url, &["verify", "--seal", printed]);
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("holds"));

    // The whole stream of a build deleted: no chain shows it, the seal does.
    sqlx::query("DELETE FROM events WHERE aggregate_type = 'BuildQueue' AND aggregate_id = $1")
        .bind(&id)
        .execute(&app.pool)
        .await
        .unwrap();
    let output = run_cli(&app.database_url, &["verify"]);
    assert!(output.status.success(), "the chains alone: {output:?}");
    let output = run_cli(&app.database_url, &["verify", "--seal", printed]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("SEAL BROKEN"));

    let output = run_cli(&app.database_url, &["verify", "--seal", "not-a-seal"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "a malformed seal is a usage error: {output:?}"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("a seal reads"));
}

/// The organization's seal over GraphQL, once it covers every event the organization has so far (another test's
/// open transaction can hold the horizon back for a moment).
async fn organization_seal(
    app: &lathe_tests::TestApp,
    auditor: &str,
    organization_id: uuid::Uuid,
) -> String {
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE organization_id = $1")
        .bind(organization_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    for _ in 0..200 {
        let data = app
            .graphql_ok(
                auditor,
                "{ auditSeal { seal events horizon digest } }",
                json!({}),
            )
            .await;
        let seal = &data["auditSeal"];
        if seal["events"] == stored {
            let text = seal["seal"].as_str().unwrap().to_owned();
            assert_eq!(
                text,
                format!(
                    "{}:{}:{}",
                    seal["horizon"].as_str().unwrap(),
                    stored,
                    seal["digest"].as_str().unwrap()
                )
            );
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the seal never covered all {stored} events");
}

#[tokio::test]
async fn an_organizations_auditor_seals_its_history_and_finds_a_deleted_build_later() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let other = app.create_org("Contoso").await;
    let (auditor, _) = app.create_key(&org.key, &["audit:read"]).await;
    let answer = app
        .webhook(
            &Auth::Bearer(org.key.clone()),
            &payload("build.complete.msdocs-2022.json"),
        )
        .await;
    let id = answer.body["queuedBuildId"].as_str().unwrap().to_owned();
    let seal = organization_seal(&app, &auditor, org.id).await;
    let holds = |seal: String| {
        let app = &app;
        let auditor = auditor.clone();
        async move {
            app.graphql_ok(
                &auditor,
                "query($s: String!) { auditSealHolds(seal: $s) }",
                json!({ "s": seal }),
            )
            .await["auditSealHolds"]
                .as_bool()
                .unwrap()
        }
    };
    assert!(holds(seal.clone()).await);

    // Later history, the organization's and another's, leaves the seal holding.
    app.create_project(&org.key, "Web").await;
    app.create_project(&other.key, "Theirs").await;
    assert!(holds(seal.clone()).await);

    // The build's whole stream deleted: every remaining chain is intact, the seal is not.
    sqlx::query("DELETE FROM events WHERE aggregate_type = 'BuildQueue' AND aggregate_id = $1")
        .bind(&id)
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        audit::verify(&app.pool, None).await.unwrap().first_broken,
        None
    );
    assert!(!holds(seal.clone()).await);

    let body = app
        .graphql(
            Some(&auditor),
            "query($s: String!) { auditSealHolds(seal: $s) }",
            json!({ "s": "not-a-seal" }),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    let (_, _, digest) = {
        let mut parts = seal.split(':');
        (parts.next(), parts.next(), parts.next().unwrap().to_owned())
    };
    let body = app
        .graphql(
            Some(&auditor),
            "query($s: String!) { auditSealHolds(seal: $s) }",
            json!({ "s": format!("{}:1:{digest}", i64::MAX) }),
        )
        .await;
    assert_eq!(
        error_code(&body),
        "BAD_USER_INPUT",
        "a seal from the future"
    );
    let (reader, _) = app.create_key(&org.key, &["builds:read"]).await;
    let body = app
        .graphql(Some(&reader), "{ auditSeal { seal } }", json!({}))
        .await;
    assert_eq!(error_code(&body), "FORBIDDEN", "seals need audit:read");
}

#[tokio::test]
async fn export_writes_ndjson_an_auditor_can_archive_and_filter() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let other = app.create_org("Contoso").await;
    app.create_project(&org.key, "Web").await;
    app.create_project(&other.key, "Theirs").await;
    let mut out = Vec::new();
    let filter = EventFilter {
        organization_id: Some(org.id),
        ..EventFilter::default()
    };
    let written = audit::export(&app.pool, &filter, &mut out).await.unwrap();
    let lines: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(written, 3);
    assert_eq!(lines.len(), 3);
    assert!(lines
        .iter()
        .all(|l| l["organizationId"] == org.id.to_string()));
    assert_eq!(lines[2]["eventType"], "ProjectCreated");
    assert_eq!(
        lines[2]["payload"]["ProjectCreated"]["settings"]["name"],
        "Web"
    );

    let output = run_cli(
        &app.database_url,
        &["export-events", "--since", "2999-01-01T00:00:00Z"],
    );
    assert!(output.status.success(), "{output:?}");
    assert!(output.stdout.is_empty(), "nothing recorded in the future");
    let output = run_cli(&app.database_url, &["export-events"]);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).lines().count(),
        6,
        "both organizations"
    );
}

#[tokio::test]
async fn metrics_and_projection_status_show_missing_streams() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    app.webhook(
        &Auth::Bearer(org.key.clone()),
        &payload("build.complete.msdocs-2022.json"),
    )
    .await;
    // The gauges are computed in the background (every second in the tests).
    let text = app
        .metrics_when(|text| text.contains("lathe_events_total 4"))
        .await;
    // The organization's commands came through the operator's command line; this process committed the delivery.
    assert!(text.contains("lathe_appends_total 1\n"), "{text}");
    assert!(text.contains("lathe_append_batches_total 1\n"), "{text}");
    assert!(
        text.contains("lathe_append_slow_batches_total 0\n"),
        "{text}"
    );
    assert!(
        text.contains("lathe_projection_missing_streams{projection=\"builds\"} 0"),
        "{text}"
    );
    let data = app
        .graphql_ok(
            &org.key,
            "{ projectionStatus { name missingStreams } }",
            json!({}),
        )
        .await;
    assert!(data["projectionStatus"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["missingStreams"] == 0));

    // A read model edited behind the service's back shows; a rebuild repairs it.
    sqlx::query("DELETE FROM read.builds")
        .execute(&app.pool)
        .await
        .unwrap();
    let data = app
        .graphql_ok(
            &org.key,
            "{ projectionStatus { name missingStreams } }",
            json!({}),
        )
        .await;
    let builds = data["projectionStatus"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "builds")
        .unwrap()
        .clone();
    assert_eq!(builds["missingStreams"], 1);
    projections::replay::rebuild(
        &app.pool,
        &std::sync::Arc::new(projections::Registry::standard()),
        &[],
    )
    .await
    .unwrap();
    let data = app
        .graphql_ok(
            &org.key,
            "{ projectionStatus { name missingStreams } }",
            json!({}),
        )
        .await;
    assert!(data["projectionStatus"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["missingStreams"] == 0));
}
