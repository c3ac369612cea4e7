//! Liveness, readiness and request ids.

use lathe_tests::spawn_app;

#[tokio::test]
async fn healthz_and_readyz_answer_ok_with_a_request_id() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let response = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let id = response
            .headers()
            .get("x-request-id")
            .expect("a request id");
        assert!(uuid::Uuid::parse_str(id.to_str().unwrap()).is_ok());
    }
}

#[tokio::test]
async fn a_request_id_sent_by_the_caller_is_kept() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/healthz", app.address))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
}

#[tokio::test]
async fn an_overlong_or_odd_request_id_is_replaced_by_a_new_one() {
    let app = spawn_app().await;
    for id in ["x".repeat(129), "two words".to_owned()] {
        let response = app
            .client
            .get(format!("{}/healthz", app.address))
            .header("x-request-id", id.as_str())
            .send()
            .await
            .unwrap();
        let given = response.headers()["x-request-id"].to_str().unwrap();
        assert_ne!(given, id);
        assert!(uuid::Uuid::parse_str(given).is_ok(), "{given}");
    }
    let kept = "x".repeat(128);
    let response = app
        .client
        .get(format!("{}/healthz", app.address))
        .header("x-request-id", kept.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], kept.as_str());
}

#[tokio::test]
async fn readyz_reports_an_unreachable_database() {
    let app = spawn_app().await;
    app.pool.close().await;
    let response = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
}

#[tokio::test]
async fn the_service_connections_carry_their_session_settings() {
    let app = spawn_app().await;
    let setting = |pool: &sqlx::PgPool, name: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(&format!("SHOW {name}"))
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let (events, relaxed) = (&app.state.pool, &app.state.relaxed_pool);
    assert_eq!(setting(events, "search_path").await, "read,public");
    assert_eq!(setting(events, "backend_flush_after").await, "256kB");
    assert_eq!(setting(events, "synchronous_commit").await, "on");
    assert_eq!(setting(relaxed, "search_path").await, "read,public");
    assert_eq!(setting(relaxed, "backend_flush_after").await, "256kB");
    assert_eq!(setting(relaxed, "synchronous_commit").await, "off");
}
