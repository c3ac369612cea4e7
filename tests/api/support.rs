//! The test support itself: a test leaves nothing behind on the database server.

use lathe_tests::{admin_url, spawn_app};
use sqlx::{Connection, PgConnection};

async fn database_exists(name: &str) -> bool {
    let mut conn = PgConnection::connect(&admin_url()).await.unwrap();
    sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_test_database_is_dropped_with_its_app_even_while_the_service_holds_connections() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    // The service's pools hold open connections to the database now.
    app.graphql_ok(&org.key, "{ projects { id } }", serde_json::json!({}))
        .await;
    let name = app.database_name.clone();
    assert!(name.starts_with(&format!("lathe_test_{}_", std::process::id())));
    assert!(database_exists(&name).await);

    drop(app);

    assert!(!database_exists(&name).await, "{name} is left behind");
}
