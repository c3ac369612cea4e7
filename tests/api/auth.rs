//! API keys: format, storage, scopes, revocation, expiry and organization isolation.

use serde_json::json;
use sha2::{Digest, Sha256};

use lathe_tests::{error_code, spawn_app};

#[tokio::test]
async fn a_request_without_a_valid_key_is_unauthenticated() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let wrong = format!("pt_live_{}", "A".repeat(40));
    // The key with its last character changed (to one it does not already have).
    let last = if org.key.ends_with('x') { 'y' } else { 'x' };
    let almost = format!("{}{last}", &org.key[..org.key.len() - 1]);
    for key in [
        None,
        Some("not-a-key"),
        Some(wrong.as_str()),
        Some(almost.as_str()),
    ] {
        let body = app.graphql(key, "{ projects { id } }", json!({})).await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{key:?}");
    }
    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("authorization", format!("Token {}", org.key))
        .json(&json!({ "query": "{ projects { id } }" }))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
}

#[tokio::test]
async fn a_key_is_stored_only_as_its_hash_and_prefix() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let (key, id) = app.create_key(&org.key, &["builds:read"]).await;
    assert!(key.starts_with("pt_live_"));
    assert!(key.len() >= 8 + 32);
    assert!(key[8..].bytes().all(|b| b.is_ascii_alphanumeric()));

    let (prefix, hash): (String, String) =
        sqlx::query_as("SELECT prefix, key_hash FROM api_keys WHERE api_key_id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(prefix, &key[..12]);
    let expected: String = Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hash, expected);

    // No stored byte anywhere holds either key.
    for table in ["events", "api_keys"] {
        let dump: String = sqlx::query_scalar(&format!(
            "SELECT coalesce(string_agg(t::text, ' '), '') FROM {table} t"
        ))
        .fetch_one(&app.pool)
        .await
        .unwrap();
        assert!(!dump.contains(&key), "{table} holds the new key");
        assert!(!dump.contains(&org.key), "{table} holds the first key");
    }

    let listed = app
        .graphql_ok(&org.key, "{ apiKeys { id prefix scopes } }", json!({}))
        .await;
    let keys = listed["apiKeys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["prefix"], &key[..12]);
    assert_eq!(keys[0]["scopes"], json!(["builds:read"]));
    assert!(
        !listed.to_string().contains(&key),
        "a key is shown only once"
    );
}

#[tokio::test]
async fn a_revoked_key_is_refused_at_once() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let (key, id) = app.create_key(&org.key, &["builds:read"]).await;
    app.graphql_ok(&key, "{ projects { id } }", json!({})).await;
    let revoked = app
        .graphql_ok(
            &org.key,
            "mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }",
            json!({ "id": id }),
        )
        .await;
    assert!(revoked["revokeApiKey"]["revokedAt"].is_string());
    let body = app
        .graphql(Some(&key), "{ projects { id } }", json!({}))
        .await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("revoked"));
    let again = app
        .graphql(
            Some(&org.key),
            "mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(error_code(&again), "CONFLICT");
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let expires_at = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let data = app
        .graphql_ok(
            &org.key,
            "mutation($e: DateTime) { createApiKey(input: {name: \"short\", scopes: [\"builds:read\"], expiresAt: $e}) { key } }",
            json!({ "e": expires_at.to_rfc3339() }),
        )
        .await;
    let key = data["createApiKey"]["key"].as_str().unwrap().to_owned();
    app.graphql_ok(&key, "{ projects { id } }", json!({})).await;
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    let body = app
        .graphql(Some(&key), "{ projects { id } }", json!({}))
        .await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("expired"));

    let past = app
        .graphql(
            Some(&org.key),
            "mutation { createApiKey(input: {name: \"x\", scopes: [\"builds:read\"], expiresAt: \"2020-01-01T00:00:00Z\"}) { key } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&past), "BAD_USER_INPUT");
}

#[tokio::test]
async fn every_operation_checks_its_scope() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let project = app.create_project(&org.key, "Web").await;
    let release = app.create_release(&org.key, &project, "r").await;
    let entry = app.enqueue_build(org.id, "1", Some(&project)).await;
    let (reader, _) = app.create_key(&org.key, &["builds:read"]).await;
    let (writer, _) = app.create_key(&org.key, &["builds:create"]).await;

    let writes = [
        "mutation { createProject(input: {name: \"x\"}) { id } }".to_owned(),
        format!("mutation {{ updateProject(id: \"{project}\", input: {{name: \"x\"}}) {{ id }} }}"),
        format!("mutation {{ createRelease(projectId: \"{project}\", name: \"x\") {{ id }} }}"),
        format!("mutation {{ completeRelease(id: \"{release}\") {{ id }} }}"),
        format!("mutation {{ archiveRelease(id: \"{release}\") {{ id }} }}"),
        format!("mutation {{ assignQueuedBuild(id: \"{entry}\", releaseId: \"{release}\") {{ id }} }}"),
        format!("mutation {{ selectProjectForQueuedBuild(id: \"{entry}\", projectId: \"{project}\") {{ id }} }}"),
        format!("mutation {{ rejectQueuedBuild(id: \"{entry}\", reason: \"x\") {{ id }} }}"),
        "mutation { createApiKey(input: {name: \"x\", scopes: [\"builds:read\"]}) { key } }".to_owned(),
        format!("mutation {{ revokeApiKey(id: \"{entry}\") {{ id }} }}"),
        "{ apiKeys { id } }".to_owned(),
    ];
    for query in &writes {
        let body = app.graphql(Some(&reader), query, json!({})).await;
        assert_eq!(error_code(&body), "FORBIDDEN", "{query}");
    }
    let reads = [
        "{ buildQueue { edges { cursor } } }".to_owned(),
        "{ projects { id } }".to_owned(),
        format!("{{ project(id: \"{project}\") {{ id }} }}"),
        "{ releases { edges { cursor } } }".to_owned(),
        format!("{{ release(id: \"{release}\") {{ id }} }}"),
        format!("{{ build(id: \"{entry}\") {{ id }} }}"),
        format!("{{ queuedBuild(id: \"{entry}\") {{ id }} }}"),
        "{ organization { id } }".to_owned(),
    ];
    for query in &reads {
        let body = app.graphql(Some(&writer), query, json!({})).await;
        assert_eq!(error_code(&body), "FORBIDDEN", "{query}");
        app.graphql_ok(&reader, query, json!({})).await;
    }
}

#[tokio::test]
async fn a_key_cannot_grant_scopes_it_lacks_or_unknown_ones() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let (manager, _) = app.create_key(&org.key, &["keys:manage"]).await;
    let body = app
        .graphql(
            Some(&manager),
            "mutation { createApiKey(input: {name: \"x\", scopes: [\"builds:assign\"]}) { key } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), "FORBIDDEN");
    let body = app
        .graphql(
            Some(&org.key),
            "mutation { createApiKey(input: {name: \"x\", scopes: [\"builds:delete\"]}) { key } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
}

#[tokio::test]
async fn an_organization_sees_and_changes_nothing_of_another() {
    let app = spawn_app().await;
    let fabrikam = app.create_org("Fabrikam").await;
    let contoso = app.create_org("Contoso").await;
    let project = app.create_project(&fabrikam.key, "Web").await;
    let release = app.create_release(&fabrikam.key, &project, "r").await;
    let entry = app.enqueue_build(fabrikam.id, "1", Some(&project)).await;
    let (_, fabrikam_key_id) = app.create_key(&fabrikam.key, &["builds:read"]).await;
    let own_project = app.create_project(&contoso.key, "Mine").await;

    let empty = app
        .graphql_ok(
            &contoso.key,
            "{ projects { id } releases { edges { cursor } } buildQueue { edges { cursor } } apiKeys { prefix } }",
            json!({}),
        )
        .await;
    assert_eq!(empty["projects"].as_array().unwrap().len(), 1);
    assert_eq!(empty["releases"]["edges"], json!([]));
    assert_eq!(empty["buildQueue"]["edges"], json!([]));
    assert_eq!(empty["apiKeys"].as_array().unwrap().len(), 1);

    let lookups = app
        .graphql_ok(
            &contoso.key,
            "query($p: ID!, $r: ID!, $b: ID!) { project(id: $p) { id } release(id: $r) { id }
                queuedBuild(id: $b) { id } build(id: $b) { id } }",
            json!({ "p": project, "r": release, "b": entry }),
        )
        .await;
    assert_eq!(
        lookups,
        json!({ "project": null, "release": null, "queuedBuild": null, "build": null })
    );

    let mutations = [
        format!("mutation {{ updateProject(id: \"{project}\", input: {{name: \"x\"}}) {{ id }} }}"),
        format!("mutation {{ createRelease(projectId: \"{project}\", name: \"x\") {{ id }} }}"),
        format!("mutation {{ completeRelease(id: \"{release}\") {{ id }} }}"),
        format!("mutation {{ assignQueuedBuild(id: \"{entry}\", releaseId: \"{release}\") {{ id }} }}"),
        format!("mutation {{ selectProjectForQueuedBuild(id: \"{entry}\", projectId: \"{own_project}\") {{ id }} }}"),
        format!("mutation {{ rejectQueuedBuild(id: \"{entry}\", reason: \"x\") {{ id }} }}"),
        format!("mutation {{ revokeApiKey(id: \"{fabrikam_key_id}\") {{ id }} }}"),
    ];
    for query in &mutations {
        let body = app.graphql(Some(&contoso.key), query, json!({})).await;
        assert_eq!(error_code(&body), "NOT_FOUND", "{query}");
    }
    let still = app
        .graphql_ok(
            &fabrikam.key,
            "query($b: ID!, $r: ID!) { queuedBuild(id: $b) { status } release(id: $r) { status } }",
            json!({ "b": entry, "r": release }),
        )
        .await;
    assert_eq!(
        still,
        json!({ "queuedBuild": { "status": "PENDING" }, "release": { "status": "ACTIVE" } })
    );
}
