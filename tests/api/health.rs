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
