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
    .await["queuedBuild"]
        .clone()
}

#[tokio::test]
async fn a_person_signs_in_with_a_key_a_wrong_key_is_told_so_and_sign_out_ends_the_session() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let browser = Browser::start(DESKTOP.0, DESKTOP.1).await;

    browser.goto(&format!("{}/console/", app.address)).await;
    browser.screenshot("sign-in").await;
    browser
        .fill("input[name=key]", &format!("pt_live_{}", "x".repeat(40)))
        .await;
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
    assert!(
        !readable.as_str().unwrap().contains("pt_live_"),
        "{readable}"
    );
    assert!(
        !readable.as_str().unwrap().contains("lathe_session"),
        "{readable}"
    );

    browser.click("#sign-out").await;
    browser.wait_for_text("main h1", "Sign in").await;
    // After a reload the session is still gone.
    browser.goto(&format!("{}/console/", app.address)).await;
    browser.wait_for_text("main h1", "Sign in").await;
}

/// The spec's sample delivery with its own build id and branch.
fn delivery(build_id: u64, branch: &str) -> Value {
    let mut body = payload("build.complete.msdocs-2024.json");
    body["resource"]["id"] = json!(build_id);
    body["resource"]["buildNumber"] = json!(format!("2026.{build_id}"));
    body["resource"]["sourceBranch"] = json!(format!("refs/heads/{branch}"));
    body
}

#[tokio::test]
async fn step_3_a_delivery_appears_in_the_build_queue_without_a_reload_is_assigned_and_shows_under_its_release(
) {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    // The sample's project, with two active releases: its builds wait for a person to choose.
    let project = app.create_project(&org.key, "FabrikamFiberChat").await;
    app.create_release(&org.key, &project, "2026.11").await;
    app.create_release(&org.key, &project, "2026.12").await;
    let browser = Browser::start(DESKTOP.0, DESKTOP.1).await;
    browser.sign_in(&app.address, &org.key).await;
    browser
        .wait_for_text("section.queue", "No builds are waiting")
        .await;
    // The page listens on the WebSocket (its poll falls back to every 30 s while the socket is up).
    browser
        .wait_until(
            "the console's subscription is up",
            "return document.documentElement.dataset.live === 'socket';",
            json!([]),
        )
        .await;

    let answer = app
        .webhook(&Auth::Bearer(org.key.clone()), &delivery(4242, "main"))
        .await;
    assert_eq!(answer.body["outcome"], "queued", "{:?}", answer.body);
    let queued_id = answer.body["queuedBuildId"].as_str().unwrap().to_owned();

    // No reload: the open page shows it by itself.
    let row = queue_row("2026.4242");
    browser.find_xpath(&row).await;
    browser
        .wait_for_text("section.queue", "FabrikamFiberChat")
        .await;
    browser
        .wait_for_text("section.queue", "several active releases")
        .await;
    browser.screenshot("releases").await;
    browser.click_button(&row, "Assign to release").await;
    let select = browser.find_xpath(&format!("{row}//form//select")).await;
    browser
        .eval(
            "const s = arguments[0]; s.value = [...s.options].find(o => o.text.includes('2026.12')).value;",
            json!([{ "element-6066-11e4-a52e-4f735466cecf": select }]),
        )
        .await;
    browser
        .click_button(&format!("{row}//form"), "Assign")
        .await;

    browser
        .wait_for_text("section.queue", "No builds are waiting")
        .await;
    let release = "//article[contains(@class,'release')][h3[contains(., '2026.12')]]";
    browser
        .find_xpath(&format!("{release}//a[contains(., '2026.4242')]"))
        .await;
    let status = queue_status(&app, &org.key, &queued_id).await;
    assert_eq!(status["status"], "ASSIGNED");

    // "Wrong release": moved from the page into the other one.
    let row = format!("{release}//tr[th[contains(., '2026.4242')]]");
    browser.click_button(&row, "Move to another release").await;
    browser
        .fill(
            "form[aria-label='Move MainRepo (1) 2026.4242'] input[name=reason]",
            "belongs to 2026.11",
        )
        .await;
    browser.click_button(&format!("{row}//form"), "Move").await;
    let moved = "//article[contains(@class,'release')][h3[contains(., '2026.11')]]";
    browser
        .find_xpath(&format!("{moved}//a[contains(., '2026.4242')]"))
        .await;

    // The build's page: its history names the console's key as the actor of the assignment.
    browser
        .click(&format!("article.release a[href='#/build/{queued_id}']"))
        .await;
    browser.wait_for_text("main h1", "2026.4242").await;
    let prefix: String = org.key.chars().take(12).collect();
    browser
        .wait_for_text(
            "main",
            &format!("BuildAssignedToRelease by API key {prefix}"),
        )
        .await;
    browser.screenshot("build").await;
}

#[tokio::test]
async fn a_person_selects_a_project_then_assigns_and_rejects_another_build_with_a_reason() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let project = app.create_project(&org.key, "Web").await;
    app.create_release(&org.key, &project, "2026.11").await;
    let undetected = app.enqueue_build(org.id, "100", None).await;
    let unwanted = app.enqueue_build(org.id, "200", None).await;
    let bulk = [
        app.enqueue_build(org.id, "250", None).await,
        app.enqueue_build(org.id, "260", None).await,
    ];
    let browser = Browser::start(DESKTOP.0, DESKTOP.1).await;
    browser.sign_in(&app.address, &org.key).await;

    let row = queue_row("Build 100");
    browser
        .find_xpath(&format!("{row}//em[.='not detected']"))
        .await;
    browser.resize(PHONE.0, PHONE.1).await;
    browser.find_xpath(&queue_row("Build 260")).await;
    browser.screenshot("releases-phone").await;
    browser.resize(DESKTOP.0, DESKTOP.1).await;
    browser.click_button(&row, "Select project").await;
    browser
        .click_button(&format!("{row}//form"), "Select project")
        .await;
    // Then assign: the release form for that project opens by itself.
    browser
        .find_xpath(&format!("{row}//form[@aria-label='Assign Build 100']"))
        .await;
    browser
        .click_button(&format!("{row}//form"), "Assign")
        .await;
    browser
        .wait_until(
            "the assigned build leaves the queue",
            "return !document.querySelector(`section.queue tr[data-id='${arguments[0]}']`);",
            json!([undetected]),
        )
        .await;
    let status = queue_status(&app, &org.key, &undetected).await;
    assert_eq!(status["status"], "ASSIGNED");
    assert_eq!(status["project"]["name"], "Web");

    let row = queue_row("Build 200");
    browser.click_button(&row, "Reject").await;
    // An empty reason is refused by the form itself; a reason goes through.
    browser
        .fill(
            &format!("section.queue tr[data-id='{unwanted}'] input[name=reason]"),
            "a test run, not a release build",
        )
        .await;
    browser
        .click_button(&format!("{row}//form"), "Reject")
        .await;
    browser
        .wait_until(
            "the rejected build leaves the queue",
            "return !document.querySelector(`section.queue tr[data-id='${arguments[0]}']`);",
            json!([unwanted]),
        )
        .await;
    let status = queue_status(&app, &org.key, &unwanted).await;
    assert_eq!(status["status"], "REJECTED");
    assert_eq!(status["rejectionReason"], "a test run, not a release build");

    // Several at once: both selected, one reason, one bulk mutation.
    for name in ["Build 250", "Build 260"] {
        browser
            .click(&format!("input[aria-label='Select {name}']"))
            .await;
    }
    browser.wait_for_text(".bulk", "2 selected").await;
    browser.fill("input[name=bulk-reason]", "duplicates").await;
    browser
        .click_button("//div[contains(@class,'bulk')]", "Reject selected")
        .await;
    browser
        .wait_for_text("section.queue", "No builds are waiting")
        .await;
    for id in &bulk {
        let status = queue_status(&app, &org.key, id).await;
        assert_eq!(status["status"], "REJECTED");
        assert_eq!(status["rejectionReason"], "duplicates");
    }
}

#[tokio::test]
async fn a_key_is_created_shown_once_with_a_copy_button_then_only_its_prefix_and_is_revoked() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let browser = Browser::start(DESKTOP.0, DESKTOP.1).await;
    browser.sign_in(&app.address, &org.key).await;
    browser.click("#nav a[href='#/keys']").await;
    browser.wait_for_text("main h1", "API keys").await;

    browser
        .fill(
            "form[aria-label='New API key'] input[name=name]",
            "Azure DevOps hook",
        )
        .await;
    browser
        .click_button("//form[@aria-label='New API key']", "Create key")
        .await;
    let key = browser.text("#new-key").await;
    assert!(key.starts_with("pt_live_") && key.len() == 48, "{key}");
    browser.find_xpath("//button[.='Copy key']").await;
    browser.screenshot("api-keys").await;
    let prefix: String = key.chars().take(12).collect();
    browser.find(&format!("tr[data-prefix='{prefix}']")).await;

    // Once the page is left, the key is gone for good: only its prefix remains.
    browser.click("#nav a[href='#/releases']").await;
    browser.wait_for_text("main h1", "Releases").await;
    browser.click("#nav a[href='#/keys']").await;
    let table = browser.wait_for_text("main table", &prefix).await;
    assert!(!table.contains(&key), "the whole key is shown again");
    let page = browser.page_text().await;
    assert!(
        !page.as_str().unwrap().contains(&key),
        "the whole key is shown again"
    );

    browser
        .click_button(
            &format!("//tr[@data-prefix='{prefix}']"),
            "Revoke Azure DevOps hook",
        )
        .await;
    browser.accept_dialog().await;
    browser
        .wait_for_text(&format!("tr[data-prefix='{prefix}']"), "revoked")
        .await;
    let answer = app.webhook(&Auth::Bearer(key), &delivery(1, "main")).await;
    assert_eq!(answer.status, 401, "the revoked key is refused");
}

#[tokio::test]
async fn branch_filters_edited_in_the_console_show_a_filtered_delivery_in_the_delivery_log() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let project = app.create_project(&org.key, "FabrikamFiberChat").await;
    app.create_release(&org.key, &project, "2026.11").await;
    let browser = Browser::start(DESKTOP.0, DESKTOP.1).await;
    browser.sign_in(&app.address, &org.key).await;

    browser.click("#nav a[href='#/projects']").await;
    browser
        .click(&format!("a[href='#/projects/{project}']"))
        .await;
    browser
        .fill("textarea[name=branchExclude]", "experiment/*")
        .await;
    browser.click_button("//form", "Save project").await;
    browser.wait_for_text("form p.ok", "Saved").await;
    browser.screenshot("project").await;

    let answer = app
        .webhook(
            &Auth::Bearer(org.key.clone()),
            &delivery(77, "experiment/fast-ui"),
        )
        .await;
    assert_eq!(answer.body["outcome"], "filtered", "{:?}", answer.body);
    app.webhook(&Auth::Bearer(org.key.clone()), &delivery(78, "main"))
        .await;

    browser.click("#nav a[href='#/deliveries']").await;
    browser.wait_for_text("main h1", "Deliveries").await;
    browser.find("tr[data-outcome=created]").await;
    let outcome = browser.find("select[name=outcome]").await;
    browser
        .eval(
            "arguments[0].value = 'filtered'; arguments[0].dispatchEvent(new Event('change'));",
            json!([{ "element-6066-11e4-a52e-4f735466cecf": outcome }]),
        )
        .await;
    let log = browser.wait_for_text("main table", "experiment/").await;
    assert!(log.contains("filtered"), "{log}");
    browser
        .wait_until(
            "only filtered deliveries are listed",
            "return !document.querySelector('tr[data-outcome=created]');",
            json!([]),
        )
        .await;
    browser.screenshot("deliveries").await;

    browser.click("#nav a[href='#/setup']").await;
    browser
        .wait_for_text("main", "/api/webhooks/azure-devops")
        .await;
    browser.find_xpath("//button[.='Copy webhook url']").await;
    browser
        .find_xpath("//button[.='Copy azure-pipelines.yml step']")
        .await;
    browser.screenshot("setup").await;
}

#[tokio::test]
async fn a_cross_site_form_post_with_the_session_cookie_is_refused() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    // Another site's page (same host, another port: the browser sends SameSite cookies to it, so only the console's
    // own checks stand between it and the service) with a form that posts a mutation as text/plain JSON.
    let attacker = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let attacker_address = format!("http://{}", attacker.local_addr().unwrap());
    let form = format!(
        r#"<!doctype html><form id="f" method="post" action="{}/graphql" enctype="text/plain">
        <input name='{{"query": "mutation {{ createProject(input: {{name: \"Pwned\"}}) {{ id }} }}", "x": "' value='"}}'>
        </form><script>document.getElementById('f').submit()</script>"#,
        app.address
    );
    let page = axum::Router::new().route(
        "/",
        axum::routing::get(move || async move { axum::response::Html(form) }),
    );
    tokio::spawn(async move { axum::serve(attacker, page).await });

    let browser = Browser::start(DESKTOP.0, DESKTOP.1).await;
    browser.sign_in(&app.address, &org.key).await;
    browser.goto(&attacker_address).await;
    browser
        .wait_until(
            "the form is posted",
            "return location.pathname === '/graphql';",
            json!([]),
        )
        .await;
    let answer = browser.wait_for_text("body", "another site").await;
    assert!(answer.contains("FORBIDDEN"), "{answer}");
    let projects = app
        .graphql_ok(&org.key, "{ projects { name } }", json!({}))
        .await;
    assert_eq!(projects["projects"], json!([]), "the mutation ran");
}

/// Signs in over HTTP as the console does; returns the cookie pair and the CSRF token.
async fn http_sign_in(app: &TestApp, key: &str) -> (String, String, reqwest::Response) {
    let response = app
        .client
        .post(format!("{}/console/session", app.address))
        .header("origin", &app.address)
        .json(&json!({ "key": key }))
        .send()
        .await
        .unwrap();
    let cookie = response
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let pair = cookie.split(';').next().unwrap().to_owned();
    (pair, cookie, response)
}

#[tokio::test]
async fn the_session_cookie_is_httponly_and_strict_and_cookie_requests_need_the_csrf_token_and_this_origin(
) {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let (pair, cookie, response) = http_sign_in(&app, &org.key).await;
    assert_eq!(response.status(), 200);
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let body: Value = response.json().await.unwrap();
    let csrf = body["csrfToken"].as_str().unwrap().to_owned();
    assert!(
        !body.to_string().contains(&org.key),
        "the answer holds no key"
    );

    let mutation = json!({ "query": "mutation { createProject(input: {name: \"Web\"}) { id } }" });
    let post = |headers: Vec<(&'static str, String)>| {
        let mut request = app
            .client
            .post(format!("{}/graphql", app.address))
            .header("cookie", &pair)
            .json(&mutation);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    // Without the token, with a wrong one, or from another origin: refused before anything runs.
    assert_eq!(post(vec![]).await.unwrap().status(), 403);
    assert_eq!(
        post(vec![("x-lathe-csrf", "nope".to_owned())])
            .await
            .unwrap()
            .status(),
        403
    );
    let other = post(vec![
        ("x-lathe-csrf", csrf.clone()),
        ("origin", "https://evil.example".to_owned()),
    ])
    .await
    .unwrap();
    assert_eq!(other.status(), 403);
    let projects = app
        .graphql_ok(&org.key, "{ projects { name } }", json!({}))
        .await;
    assert_eq!(projects["projects"], json!([]));
    // With the token from this origin it runs, as the key.
    let ok: Value = post(vec![
        ("x-lathe-csrf", csrf.clone()),
        ("origin", app.address.clone()),
    ])
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(ok["data"]["createProject"]["id"].is_string(), "{ok}");
    // The cookie authenticates nothing but GraphQL: not the webhook.
    let webhook = app
        .client
        .post(format!("{}/api/webhooks/azure-devops", app.address))
        .header("cookie", &pair)
        .json(&delivery(1, "main"))
        .send()
        .await
        .unwrap();
    assert_eq!(webhook.status(), 401);

    // Signing out ends the session on the server, not just in this browser.
    let out = app
        .client
        .delete(format!("{}/console/session", app.address))
        .header("cookie", &pair)
        .header("x-lathe-csrf", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert_eq!(
        post(vec![("x-lathe-csrf", csrf)]).await.unwrap().status(),
        401
    );
    // Signing in from another site's page is refused too.
    let foreign = app
        .client
        .post(format!("{}/console/session", app.address))
        .header("origin", "https://evil.example")
        .json(&json!({ "key": org.key }))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
}

#[tokio::test]
async fn repeated_wrong_keys_from_one_address_are_slowed_down() {
    let app = spawn_app_with(|settings| settings.unauthenticated_rate_limit_per_minute = 3).await;
    let org = app.create_org("Fabrikam").await;
    let wrong = format!("pt_live_{}", "w".repeat(40));
    for _ in 0..3 {
        let (_, _, response) = http_sign_in(&app, &wrong).await;
        assert_eq!(response.status(), 401);
    }
    let (_, _, limited) = http_sign_in(&app, &wrong).await;
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    // The right key still signs in.
    let (_, _, response) = http_sign_in(&app, &org.key).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn the_cookie_is_secure_when_the_console_is_served_over_https() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    // Behind a proxy that terminates TLS, the browser names the https origin it loaded the console from.
    let host = app.address.trim_start_matches("http://").to_owned();
    let response = app
        .client
        .post(format!("{}/console/session", app.address))
        .header("origin", format!("https://{host}"))
        .json(&json!({ "key": org.key }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.contains("; Secure"), "{cookie}");
}

#[tokio::test]
async fn what_a_keys_scopes_forbid_is_not_offered() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let (reader, _) = app.create_key(&org.key, &["builds:read"]).await;
    app.enqueue_build(org.id, "300", None).await;
    let browser = Browser::start(PHONE.0, PHONE.1).await;
    browser.sign_in(&app.address, &reader).await;
    browser.find_xpath(&queue_row("Build 300")).await;
    let offered = browser
        .eval(
            "return [...document.querySelectorAll('main button, #nav a')].filter(e => e.offsetParent !== null).map(e => e.innerText).join('|');",
            json!([]),
        )
        .await;
    let offered = offered.as_str().unwrap();
    for forbidden in [
        "Assign to release",
        "Select project",
        "Reject",
        "API keys",
        "New release",
    ] {
        assert!(
            !offered.contains(forbidden),
            "{forbidden} is offered: {offered}"
        );
    }
}

#[tokio::test]
async fn the_console_is_served_by_the_binary_gzipped_on_request_and_kept_to_its_own_origin() {
    let app = spawn_app().await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let root = no_redirects
        .get(format!("{}/", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(root.status(), 303);
    assert_eq!(root.headers()["location"], "/console/");

    let page = app
        .client
        .get(format!("{}/console/", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"),
        "{policy}"
    );
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<script type="module" src="app.js">"#));
    assert!(
        !html.contains("https://"),
        "nothing is loaded from elsewhere"
    );

    let gzipped = app
        .client
        .get(format!("{}/console/releases.js", app.address))
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    assert_eq!(
        gzipped.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(&gzipped.bytes().await.unwrap()[..2], &[0x1f, 0x8b]);
    let missing = app
        .client
        .get(format!("{}/console/../Cargo.toml", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn a_project_is_connected_to_azure_devops_and_disconnected_from_its_integrations() {
    use crate::fake_azure::{FakeAzure, PROJECT, TOKEN};
    let fake = FakeAzure::start().await;
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let project = app.create_project(&org.key, "Web").await;
    let browser = Browser::start(DESKTOP.0, DESKTOP.1).await;
    browser.sign_in(&app.address, &org.key).await;
    browser
        .goto(&format!("{}/console/#/projects/{project}", app.address))
        .await;

    let form = "form[aria-label='Connect Azure DevOps']";
    browser
        .fill(&format!("{form} input[name=organizationUrl]"), &fake.url)
        .await;
    browser
        .fill(&format!("{form} input[name=project]"), PROJECT)
        .await;
    browser
        .fill(&format!("{form} input[name=pat]"), "not-the-token")
        .await;
    browser
        .click_button("//form[@aria-label='Connect Azure DevOps']", "Connect")
        .await;
    // Azure DevOps's refusal is shown under the form, in words.
    let refusal = browser
        .wait_for_text(&format!("{form} .error"), "token")
        .await;
    assert!(!refusal.contains("not-the-token"), "{refusal}");

    browser
        .fill(&format!("{form} input[name=pat]"), TOKEN)
        .await;
    browser
        .click_button("//form[@aria-label='Connect Azure DevOps']", "Connect")
        .await;
    browser.wait_for_text("section.card", "Connected").await;
    browser
        .wait_for_text("section.card", "TEST_CASE_TITLE → System.Title")
        .await;
    browser.screenshot("integrations").await;
    browser.click_button("//section", "Disconnect").await;
    browser.find(form).await;
    let data = app
        .graphql_ok(
            &org.key,
            "query($p: ID!) { project(id: $p) { azureDevOps { project } } }",
            json!({ "p": project }),
        )
        .await;
    assert_eq!(data["project"]["azureDevOps"], Value::Null);
}

#[tokio::test]
async fn the_websocket_upgrade_takes_the_session_cookie_only_from_this_origin() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let (pair, _, _) = http_sign_in(&app, &org.key).await;
    let upgrade = |origin: String| {
        app.client
            .get(format!("{}/graphql/ws", app.address))
            .header("cookie", &pair)
            .header("origin", origin)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-protocol", "graphql-transport-ws")
            .send()
    };
    let foreign = upgrade("https://evil.example".to_owned()).await.unwrap();
    assert_eq!(foreign.status(), 403);
    let own = upgrade(app.address.clone()).await.unwrap();
    assert_eq!(own.status(), 101);
}
