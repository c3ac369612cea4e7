//! The committed `schema.graphql` is what the server serves.

use lathe_tests::spawn_app;

#[tokio::test]
async fn schema_graphql_equals_the_served_sdl() {
    let app = spawn_app().await;
    let served = app
        .client
        .get(format!("{}/graphql/schema.graphql", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../schema.graphql"))
            .expect("schema.graphql at the repository root");
    assert!(
        served == committed,
        "schema.graphql is stale: regenerate it with `cargo run -p lathe-api -- schema > schema.graphql`"
    );
    for name in [
        "buildQueue(",
        "assignQueuedBuild(",
        "createApiKey(",
        "revokeApiKey(",
    ] {
        assert!(served.contains(name), "the schema keeps {name}");
    }
}

#[tokio::test]
async fn graphiql_is_served_on_get() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/graphql", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.text().await.unwrap().contains("graphiql"));
}
