//! Never lose an event: failures between the append and the read models, a killed process, races on one
//! aggregate, and rebuilding read models from the event store while the service keeps serving.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::process::{run_cli, spawn_process};
use lathe_tests::{dump_read_models, payload, spawn_app, Auth, TestApp};
use projections::{replay, Registry};

const CHAT_2022: &str = "build.complete.msdocs-2022.json";

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.pool).await.unwrap()
}

#[tokio::test]
async fn a_failing_projection_stores_no_event_and_the_redelivery_succeeds() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let auth = Auth::Bearer(org.key.clone());
    // A real failure inside the read-model write, injected with a trigger.
    sqlx::raw_sql(
        "CREATE FUNCTION public.fail_build() RETURNS trigger LANGUAGE plpgsql AS
            $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$;
         CREATE TRIGGER fail_build BEFORE INSERT ON read.builds FOR EACH ROW EXECUTE FUNCTION public.fail_build();",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let answer = app.webhook(&auth, &payload(CHAT_2022)).await;
    assert_eq!(
        answer.status, 503,
        "a retryable answer for Azure DevOps: {answer:?}"
    );
    assert_eq!(
        answer.body["error"]["message"], "internal error",
        "the cause is not sent"
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM events WHERE aggregate_type = 'BuildQueue'"
        )
        .await,
        0
    );
    assert_eq!(count(&app, "SELECT count(*) FROM read.builds").await, 0);

    sqlx::raw_sql("DROP TRIGGER fail_build ON read.builds")
        .execute(&app.pool)
        .await
        .unwrap();
    let answer = app.webhook(&auth, &payload(CHAT_2022)).await;
    assert_eq!(
        answer.body["outcome"], "queued",
        "Azure's retry creates the build: {answer:?}"
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM events WHERE aggregate_type = 'BuildQueue'"
        )
        .await,
        2
    );
    assert_eq!(count(&app, "SELECT count(*) FROM read.builds").await, 1);
}

#[tokio::test]
async fn a_process_killed_mid_command_leaves_nothing_half_written() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    // The read-model write of this build stalls, so that the process can be killed inside the transaction.
    sqlx::raw_sql(
        "CREATE FUNCTION public.stall_build() RETURNS trigger LANGUAGE plpgsql AS
            $$ BEGIN PERFORM pg_sleep(2); RETURN NEW; END $$;
         CREATE TRIGGER stall_build BEFORE INSERT ON read.builds FOR EACH ROW EXECUTE FUNCTION public.stall_build();",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let mut process = spawn_process(&app.database_url).await;
    let url = format!("{}/api/webhooks/azure-devops", process.address);
    let key = org.key.clone();
    let delivery = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .bearer_auth(key)
            .json(&payload(CHAT_2022))
            .send()
            .await
    });
    // Wait until the command is inside its transaction, then kill the process.
    let mut stalled = false;
    for _ in 0..50 {
        stalled = count(&app, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%INSERT INTO builds%' AND state = 'active'").await > 0;
        if stalled {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(stalled, "the command reached the read-model write");
    process.child.kill().unwrap();
    process.child.wait().unwrap();
    assert!(delivery.await.unwrap().is_err(), "the caller got no answer");
    // PostgreSQL ends the orphaned transaction without committing it.
    for _ in 0..100 {
        if count(&app, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%INSERT INTO builds%' AND state <> 'idle'").await == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM events WHERE aggregate_type = 'BuildQueue'"
        )
        .await,
        0
    );
    assert_eq!(count(&app, "SELECT count(*) FROM read.builds").await, 0);

    // After a restart, Azure's retry is processed normally.
    sqlx::raw_sql("DROP TRIGGER stall_build ON read.builds")
        .execute(&app.pool)
        .await
        .unwrap();
    let restarted = spawn_process(&app.database_url).await;
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/api/webhooks/azure-devops", restarted.address))
        .bearer_auth(&org.key)
        .json(&payload(CHAT_2022))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["outcome"], "queued");
    let before = dump_read_models(&app.pool).await;
    replay::rebuild(&app.pool, &Arc::new(Registry::standard()), &[])
        .await
        .unwrap();
    assert_eq!(
        dump_read_models(&app.pool).await,
        before,
        "the read models are a fold of the events"
    );
}

#[tokio::test]
async fn fifty_concurrent_commands_on_one_build_leave_its_read_model_equal_to_its_events() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let auth = Auth::Bearer(org.key.clone());
    let delivered = app.webhook(&auth, &payload(CHAT_2022)).await;
    let build_id = delivered.body["queuedBuildId"].as_str().unwrap().to_owned();
    // A second server process on the same database: its commands race ours for real.
    let other = spawn_process(&app.database_url).await;
    let client = reqwest::Client::new();
    let uploads = (0..50).map(|n| {
        let body = json!({
            "build_name": "Build 20221202.1",
            "azure_build_id": 2727068,
            "azure_collection_url": "https://dev.azure.com/FabrikamFiber/",
            "test_results": (0..=(n % 4)).map(|t| json!({ "title": format!("upload {n} test {t}"),
                "status": if t % 2 == 0 { "passed" } else { "failed" } })).collect::<Vec<_>>(),
        });
        let (app, auth, client, other, key) =
            (&app, auth.clone(), &client, &other.address, &org.key);
        async move {
            if n % 2 == 0 {
                app.ingest(&auth, &body, &[]).await.status
            } else {
                let url = format!("{other}/api/v1/results/ingest");
                let response = client
                    .post(url)
                    .bearer_auth(key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                response.status().as_u16()
            }
        }
    });
    let statuses = futures::future::join_all(uploads).await;
    let attached = statuses.iter().filter(|s| **s == 200).count();
    let conflicts = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!(
        attached + conflicts,
        50,
        "each call is attached or told to retry: {statuses:?}"
    );
    assert!(
        attached >= 25,
        "races are decided again before anyone is told to retry ({attached} attached)"
    );

    let recorded = count(
        &app,
        "SELECT count(*) FROM events WHERE event_type = 'TestResultsRecorded'",
    )
    .await;
    assert_eq!(recorded as usize, attached, "a 409 stored nothing");
    let (total, passed, failed): (i64, i64, i64) = sqlx::query_as(
        "SELECT coalesce(sum((payload->'TestResultsRecorded'->'summary'->>'total')::bigint), 0)::bigint,
                coalesce(sum((payload->'TestResultsRecorded'->'summary'->>'passed')::bigint), 0)::bigint,
                coalesce(sum((payload->'TestResultsRecorded'->'summary'->>'failed')::bigint), 0)::bigint
         FROM events WHERE event_type = 'TestResultsRecorded'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let row: (i64, i64, i64) = sqlx::query_as(
        "SELECT tests_total, tests_passed, tests_failed FROM read.builds WHERE build_id = $1::uuid",
    )
    .bind(&build_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(row, (total, passed, failed));
    assert_eq!(
        count(&app, "SELECT count(*) FROM read.test_results").await,
        total
    );
}

/// A workload touching every aggregate and most events.
async fn varied_workload(app: &TestApp) {
    let org = app.create_org("Fabrikam").await;
    let auth = Auth::Bearer(org.key.clone());
    let web = app.create_project(&org.key, "Web").await;
    let api = app.create_project(&org.key, "Api").await;
    let release = app.create_release(&org.key, &web, "2026.11").await;
    let old = app.create_release(&org.key, &api, "old").await;
    app.graphql_ok(
        &org.key,
        "mutation($id: ID!) { completeRelease(id: $id) { id } }",
        json!({ "id": old }),
    )
    .await;
    app.graphql_ok(
        &org.key,
        "mutation($id: ID!) { archiveRelease(id: $id) { id } }",
        json!({ "id": old }),
    )
    .await;
    app.graphql_ok(
        &org.key,
        "mutation($id: ID!) { updateProject(id: $id, input: {url: \"https://dev.azure.com/fabrikam/api\"}) { id } }",
        json!({ "id": api }),
    )
    .await;
    let mut entries = Vec::new();
    for n in 0..6 {
        let mut body = payload(CHAT_2022);
        body["resource"]["id"] = json!(9000 + n);
        let answer = app.webhook(&auth, &body).await;
        entries.push(answer.body["queuedBuildId"].as_str().unwrap().to_owned());
    }
    app.graphql_ok(
        &org.key,
        "mutation($b: ID!, $r: ID!) { assignQueuedBuild(id: $b, releaseId: $r) { id } }",
        json!({ "b": entries[0], "r": release }),
    )
    .await;
    app.graphql_ok(
        &org.key,
        "mutation($b: ID!) { rejectQueuedBuild(id: $b, reason: \"flaky\") { id } }",
        json!({ "b": entries[1] }),
    )
    .await;
    app.graphql_ok(
        &org.key,
        "mutation($b: ID!, $p: ID!) { selectProjectForQueuedBuild(id: $b, projectId: $p) { id } }",
        json!({ "b": entries[2], "p": api }),
    )
    .await;
    let results: Vec<Value> = (0..25)
        .map(|n| {
            let status = ["passed", "failed", "skipped"][n % 3];
            json!({ "title": format!("t{n}"), "status": status, "duration_ms": n })
        })
        .collect();
    app.ingest(
        &auth,
        &json!({ "build_name": "CI 1", "project": "Web", "test_results": results }),
        &[],
    )
    .await;
    let (_, key_id) = app.create_key(&org.key, &["builds:read"]).await;
    app.graphql_ok(
        &org.key,
        "mutation($id: ID!) { revokeApiKey(id: $id) { id } }",
        json!({ "id": key_id }),
    )
    .await;
    app.graphql_ok(
        &org.key,
        "mutation($id: ID!) { updateApiKey(id: $id, input: {rateLimitPerMinute: 600}) { id } }",
        json!({ "id": key_id }),
    )
    .await;
    app.graphql_ok(
        &org.key,
        r#"mutation($id: ID!) { updateProject(id: $id, input: {branchInclude: ["main"], retention: {keepLast: 1}}) { id } }"#,
        json!({ "id": web }),
    )
    .await;
    // Retention expires the older of Web's two builds, which is in a release.
    let report = lathe_api::retention::run_once(&app.state).await.unwrap();
    assert_eq!(report.builds_expired, 1);
    app.graphql_ok(
        &org.key,
        "mutation { setOrgIdAuthentication(enabled: true) { id } }",
        json!({}),
    )
    .await;
}

#[tokio::test]
async fn rebuilt_read_models_equal_the_live_ones() {
    let app = spawn_app().await;
    varied_workload(&app).await;
    let live = dump_read_models(&app.pool).await;
    assert!(
        live["builds"].len() > 100 && live["test_results"].len() > 100,
        "the workload left data"
    );

    let report = replay::rebuild(&app.pool, &Arc::new(Registry::standard()), &[])
        .await
        .unwrap();
    assert!(report.events > 20);
    assert_eq!(dump_read_models(&app.pool).await, live);

    replay::rebuild(
        &app.pool,
        &Arc::new(Registry::standard()),
        &["releases".to_owned(), "builds".to_owned()],
    )
    .await
    .unwrap();
    assert_eq!(
        dump_read_models(&app.pool).await,
        live,
        "a partial rebuild too"
    );

    let error = replay::rebuild(
        &app.pool,
        &Arc::new(Registry::standard()),
        &["nope".to_owned()],
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("no projection named `nope`"));

    // A rebuilt read model serves and takes new events like the old one.
    let org = app.create_org("After").await;
    let answer = app
        .webhook(&Auth::Bearer(org.key.clone()), &payload(CHAT_2022))
        .await;
    assert_eq!(answer.body["outcome"], "queued");
}

#[tokio::test]
async fn the_cli_replays_and_reports() {
    let app = spawn_app().await;
    varied_workload(&app).await;
    let live = dump_read_models(&app.pool).await;
    let output = run_cli(&app.database_url, &["replay", "--projection", "builds"]);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("rebuilt builds:") && text.contains("events/s"),
        "{text}"
    );
    assert_eq!(dump_read_models(&app.pool).await, live);
}

#[tokio::test]
async fn a_rebuild_while_serving_never_shows_empty_or_half_built_read_models() {
    let app = Arc::new(spawn_app().await);
    let org = app.create_org("Fabrikam").await;
    let auth = Auth::Bearer(org.key.clone());
    for n in 0..150 {
        let mut body = payload(CHAT_2022);
        body["resource"]["id"] = json!(n);
        app.webhook(&auth, &body).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (app, stop, reads, key) = (app.clone(), stop.clone(), reads.clone(), org.key.clone());
        tokio::spawn(async move {
            let mut bad = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let body = app
                    .graphql(
                        Some(&key),
                        "{ buildQueue(first: 100) { edges { cursor } } }",
                        json!({}),
                    )
                    .await;
                let seen = body["data"]["buildQueue"]["edges"]
                    .as_array()
                    .map_or(0, Vec::len);
                if seen != 100 {
                    bad.push(body);
                }
                reads.fetch_add(1, Ordering::Relaxed);
            }
            bad
        })
    };
    let writer = {
        let (app, auth) = (app.clone(), auth.clone());
        tokio::spawn(async move {
            for n in 1000..1040 {
                let mut body = payload(CHAT_2022);
                body["resource"]["id"] = json!(n);
                let answer = app.webhook(&auth, &body).await;
                assert_eq!(answer.body["outcome"], "queued", "{answer:?}");
            }
        })
    };
    replay::rebuild(&app.pool, &Arc::new(Registry::standard()), &[])
        .await
        .unwrap();
    writer.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let bad = reader.await.unwrap();
    assert!(reads.load(Ordering::Relaxed) > 0);
    assert!(
        bad.is_empty(),
        "a reader saw a partial queue: {:?}",
        bad.first()
    );
    let queued = app
        .graphql_ok(
            &org.key,
            "{ buildQueue(first: 100) { edges { cursor } } }",
            json!({}),
        )
        .await;
    assert_eq!(queued["buildQueue"]["edges"].as_array().unwrap().len(), 100);
    assert_eq!(
        count(&app, "SELECT count(*) FROM read.builds").await,
        190,
        "deliveries during the rebuild are in"
    );
    let live = dump_read_models(&app.pool).await;
    replay::rebuild(&app.pool, &Arc::new(Registry::standard()), &[])
        .await
        .unwrap();
    assert_eq!(dump_read_models(&app.pool).await, live);
}

/// A delivery of the sample build with its own build id and build number.
fn build_numbered(id: u64, number: &str) -> Value {
    let mut body = payload(CHAT_2022);
    body["resource"]["id"] = json!(id);
    body["resource"]["buildNumber"] = json!(number);
    body
}

#[tokio::test]
async fn concurrent_commands_commit_together_and_fail_alone() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let auth = Auth::Bearer(org.key.clone());
    // A build named `poison` fails its read-model write.
    sqlx::raw_sql(
        "CREATE FUNCTION public.poison() RETURNS trigger LANGUAGE plpgsql AS
            $$ BEGIN
                IF NEW.build_name LIKE '%poison%' THEN RAISE EXCEPTION 'injected failure'; END IF;
                RETURN NEW;
            END $$;
         CREATE TRIGGER poison BEFORE INSERT ON read.builds FOR EACH ROW EXECUTE FUNCTION public.poison();",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    // Delivers every body while the queue's table is locked for a second: the appends wait together.
    let deliver_together = |bodies: Vec<Value>| {
        let (app, auth) = (&app, &auth);
        async move {
            let mut lock = app.pool.begin().await.unwrap();
            sqlx::query("LOCK TABLE read.builds IN EXCLUSIVE MODE")
                .execute(&mut *lock)
                .await
                .unwrap();
            let release = async {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                lock.commit().await.unwrap();
            };
            let deliveries =
                futures::future::join_all(bodies.iter().map(|body| app.webhook(auth, body)));
            tokio::join!(deliveries, release).0
        }
    };

    let answers = deliver_together(
        (1..=20)
            .map(|n| build_numbered(n, &format!("batch-{n}")))
            .collect(),
    )
    .await;
    assert!(
        answers.iter().all(|a| a.body["outcome"] == "queued"),
        "{answers:?}"
    );
    let transactions = count(
        &app,
        "SELECT count(DISTINCT transaction_id) FROM events e JOIN read.builds b ON b.build_id::text = e.aggregate_id
         WHERE b.build_name LIKE '%batch-%'",
    )
    .await;
    // Each writer holds the appends it took before the lock; everything after waits in the queue for the next.
    assert!(
        transactions <= 6,
        "20 waiting deliveries committed in {transactions} transactions"
    );

    // One failing delivery among waiting ones: its batch is rolled back and retried one by one.
    let mut bodies: Vec<Value> = (21..=30)
        .map(|n| build_numbered(n, &format!("batch-{n}")))
        .collect();
    bodies.insert(4, build_numbered(31, "poison"));
    let answers = deliver_together(bodies).await;
    for answer in &answers {
        let poisoned = answer.body["outcome"] != "queued";
        assert_eq!(poisoned, answer.status == 503, "{answer:?}");
    }
    assert_eq!(
        answers.iter().filter(|a| a.status == 503).count(),
        1,
        "{answers:?}"
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM read.builds WHERE build_name LIKE '%batch-%'"
        )
        .await,
        30
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM events WHERE aggregate_type = 'BuildQueue'"
        )
        .await,
        2 * 30,
        "the failed build stored no event, every other build its two"
    );

    // Redeliveries among new builds: their appends find their sequences taken and store nothing (answered
    // `duplicate`), while the new builds of the same batches commit together.
    let mut bodies: Vec<Value> = (41..=60)
        .map(|n| build_numbered(n, &format!("again-{n}")))
        .collect();
    for n in 1..=5 {
        bodies.insert(3 * n as usize, build_numbered(n, &format!("batch-{n}")));
    }
    let answers = deliver_together(bodies).await;
    let outcomes: Vec<&str> = answers
        .iter()
        .map(|a| a.body["outcome"].as_str().unwrap_or("none"))
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == "queued").count(),
        20,
        "{answers:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| **o == "duplicate").count(),
        5,
        "{answers:?}"
    );
    let transactions = count(
        &app,
        "SELECT count(DISTINCT transaction_id) FROM events e JOIN read.builds b ON b.build_id::text = e.aggregate_id
         WHERE b.build_name LIKE '%again-%'",
    )
    .await;
    assert!(
        transactions <= 6,
        "20 new builds waiting with 5 redeliveries committed in {transactions} transactions"
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM events WHERE aggregate_type = 'BuildQueue'"
        )
        .await,
        2 * 50
    );
}

#[tokio::test]
async fn a_rebuild_stops_at_an_event_it_cannot_read_and_leaves_the_read_models_as_they_were() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let delivered = app
        .webhook(&Auth::Bearer(org.key.clone()), &payload(CHAT_2022))
        .await;
    assert_eq!(delivered.body["outcome"], "queued");
    let live = dump_read_models(&app.pool).await;
    // An event of a type no version of the service wrote, as a damaged or foreign row would be.
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata,
            organization_id, hash)
         SELECT aggregate_type, aggregate_id, 3, 'Unheard', '1.0', '{\"Unheard\": {}}', metadata,
            organization_id, 'x'
         FROM events WHERE aggregate_type = 'BuildQueue' AND sequence = 2",
    )
    .execute(&app.pool)
    .await
    .unwrap();

    let error = replay::rebuild(&app.pool, &Arc::new(Registry::standard()), &[])
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("#3 does not deserialize"),
        "{error}"
    );
    assert_eq!(dump_read_models(&app.pool).await, live);
    // The next rebuild is not blocked by the failed one.
    sqlx::query("DELETE FROM events WHERE event_type = 'Unheard'")
        .execute(&app.pool)
        .await
        .unwrap();
    replay::rebuild(&app.pool, &Arc::new(Registry::standard()), &[])
        .await
        .unwrap();
    assert_eq!(dump_read_models(&app.pool).await, live);
}
