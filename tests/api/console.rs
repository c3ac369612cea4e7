//! The browser console (issue 17): its flows in headless Chromium against the real service, and its session
//! cookie and cross-site defences over plain HTTP.

use serde_json::{json, Value};

use lathe_tests::{payload, spawn_app, spawn_app_with, Auth, TestApp};

use crate::browser::Browser;

const DESKTOP: (u32, u32) = (1280, 800);
const PHONE: (u32, u32) = (390, 844);

/// The queue row of the build named `name` (an XPath).
fn queue_row(name: &str) -> String {
    format!("//section[contains(@class,'queue')]//tr[th[contains(normalize-space(), '{name}')]]")
}

async fn queue_status(app: &TestApp, key: &str, id: &str) -> Value {
    app.graphql_ok(
        key,
        "query($id: ID!) { queuedBuild(id: $id) { status releaseId rejectionReason project { name } } }",
        json!({ "id": id }),
    )
    .await["data"]["queuedBuild"]
        .clone()
}

#[tokio::test]
async fn a_person_signs_in_with_a_key_a_wrong_key_is_told_so_and_sign_out_ends_the_session() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let browser = Browser::start(DESKTOP.0, DESKTOP.1).await;

    browser.goto(&format!("{}/console/", app.address)).await;
    browser.screenshot("sign-in").await;
    browser.fill("input[name=key]", &format!("pt_live_{}", "x".repeat(40))).await;
    browser.click_button("//form", "Sign in").await;
    browser.wait_for_text("form .error", "not valid").await;

    browser.fill("input[name=key]", &org.key).await;
    browser.click_button("//form", "Sign in").await;
    browser.wait_for_text("main h1", "Releases").await;
    browser.wait_for_text("#queue-h", "Build Queue").await;
    // The key is nowhere a script can read it: not in a cookie scripts see, not in storage.
    let readable = browser
        .eval(
            "return document.cookie + JSON.stringify(localStorage) + JSON.stringify(sessionStorage);",
            json!([]),
        )
        .await;
    assert!(!readable.as_str().unwrap().contains("pt_live_"), "{readable}");
    assert!(!readable.as_str().unwrap().contains("lathe_session"), "{readable}");

    browser.click("#sign-out").await;
    browser.wait_for_text("main h1", "Sign in").await;
    // After a reload the session is still gone.
    browser.goto(&format!("{}/console/", app.address)).await;
    browser.wait_for_text("main h1", "Sign in").await;
}
