//! `POST /api/v1/results/ingest` with the report files test runners write (JUnit XML, NUnit, xUnit v2, TRX): as
//! the body, as multipart files, gzip-encoded; and what it refuses (entity and gzip bombs, malformed XML).

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::Value;
use uuid::Uuid;

use lathe_tests::{spawn_app, spawn_app_with, Answer, Auth, TestApp};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/fixtures/reports/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// POSTs `body` to the ingest endpoint with `query` and the given content type and headers.
async fn upload(
    app: &TestApp,
    key: &str,
    query: &str,
    content_type: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut headers = headers.to_vec();
    headers.push(("content-type", content_type));
    app.post_raw(
        &format!("/api/v1/results/ingest?{query}"),
        &Auth::Bearer(key.to_owned()),
        body,
        &headers,
    )
    .await
}

/// A multipart/form-data body of text fields and files, with the boundary it uses.
fn multipart(fields: &[(&str, &str)], files: &[(&str, Vec<u8>)], boundary: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    for (name, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"report\"; filename=\"{name}\"\r\n\
                 Content-Type: application/xml\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

/// (passed, failed, skipped) stored for a build.
async fn counts(app: &TestApp, build: &str) -> (i64, i64, i64) {
    let build = Uuid::parse_str(build).unwrap();
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, count(*) FROM test_results WHERE build_id = $1 GROUP BY status",
    )
    .bind(build)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let of = |s: &str| {
        rows.iter()
            .find(|(status, _)| status == s)
            .map_or(0, |(_, n)| *n)
    };
    (of("passed"), of("failed"), of("skipped"))
}

/// One stored result by title: status, duration, error message, notes, environment.
#[derive(Debug, sqlx::FromRow)]
struct Stored {
    status: String,
    duration_ms: Option<i64>,
    error_message: Option<String>,
    tester_notes: Option<String>,
    environment: Option<String>,
}

async fn stored(app: &TestApp, build: &str, title: &str) -> Stored {
    sqlx::query_as(
        "SELECT status, duration_ms, error_message, tester_notes, environment FROM test_results
         WHERE build_id = $1 AND title = $2",
    )
    .bind(Uuid::parse_str(build).unwrap())
    .bind(title)
    .fetch_one(&app.pool)
    .await
    .unwrap_or_else(|error| panic!("{title}: {error}"))
}

async fn stored_results(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM test_results")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// The build the answer names: created or attached (`buildId`), or queued (`queuedBuildId`).
fn build_id(answer: &Answer) -> &str {
    answer.body["buildId"]
        .as_str()
        .or_else(|| answer.body["queuedBuildId"].as_str())
        .unwrap_or_else(|| panic!("{answer:?}"))
}

#[tokio::test]
async fn junit_files_from_each_tool_are_stored_with_their_counts() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    for (file, expected) in [
        ("pytest.xml", (6, 2, 2)),
        ("pytest-generated.xml", (3, 2, 2)),
        ("surefire.xml", (2, 7, 0)),
        ("gradle.xml", (2, 1, 0)),
        ("jest-junit.xml", (1, 4, 1)),
        ("mocha-junit-reporter.xml", (109, 0, 0)),
        ("phpunit.xml", (10, 2, 0)),
        ("playwright.xml", (36, 4, 20)),
        ("go-junit-report.xml", (2, 2, 1)),
    ] {
        let query = format!("build_name={file}&branch=main");
        let answer = upload(
            &app,
            &org.key,
            &query,
            "application/xml",
            fixture(file),
            &[],
        )
        .await;
        assert_eq!(answer.status, 201, "{file}: {answer:?}");
        assert_eq!(answer.body["outcome"], "queued", "{file}");
        let total = expected.0 + expected.1 + expected.2;
        assert_eq!(answer.body["resultsStored"], total, "{file}");
        assert_eq!(counts(&app, build_id(&answer)).await, expected, "{file}");
    }
}

#[tokio::test]
async fn a_pytest_report_keeps_durations_messages_output_and_which_failures_were_errors() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    // text/xml, and the build's fields percent-encoded in the query.
    let answer = upload(
        &app,
        &org.key,
        "build_name=Nightly%20%2342&commit_sha=6e12f61",
        "text/xml",
        fixture("pytest-generated.xml"),
        &[],
    )
    .await;
    assert_eq!(answer.status, 201, "{answer:?}");
    let build = build_id(&answer);
    let passed = stored(
        &app,
        build,
        "tests.test_checkout.test_total_adds_line_items",
    )
    .await;
    assert_eq!(
        (passed.status.as_str(), passed.duration_ms),
        ("passed", Some(251))
    );
    assert_eq!(
        (passed.tester_notes, passed.environment),
        (None, None),
        "notes and environment are kept for failures only"
    );

    let failed = stored(&app, build, "tests.test_checkout.test_discount_is_applied").await;
    assert_eq!(failed.status, "failed");
    let message = failed.error_message.unwrap();
    assert!(
        message.starts_with("AssertionError: discount should leave 80\nassert 90.0 == 80"),
        "{message}"
    );
    assert!(
        message.contains("tests/test_checkout.py:20: AssertionError"),
        "the trace follows: {message}"
    );
    let notes = failed.tester_notes.unwrap();
    assert!(
        notes.contains("outcome: failure (JUnit <failure>)"),
        "{notes}"
    );
    assert!(notes.contains("class: tests.test_checkout"), "{notes}");
    assert!(
        notes.contains("applying discount code SUMMER"),
        "its standard output: {notes}"
    );
    assert_eq!(
        failed.environment.as_deref(),
        Some("vm"),
        "the suite's hostname"
    );

    let error = stored(&app, build, "tests.test_checkout.test_saved_order").await;
    assert_eq!(error.status, "failed");
    assert!(error
        .error_message
        .unwrap()
        .contains("ConnectionError: database unreachable"));
    assert!(error
        .tester_notes
        .unwrap()
        .contains("outcome: error (JUnit <error>"));

    let skipped = stored(&app, build, "tests.test_checkout.test_payment").await;
    assert_eq!(skipped.status, "skipped");
    assert!(skipped
        .error_message
        .unwrap()
        .starts_with("payment sandbox is down"));
}

#[tokio::test]
async fn a_failure_without_a_message_says_what_the_report_does_say() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let report = br#"<testsuite name="smoke"><testcase classname="Api" name="health"><failure/></testcase>
        <testcase classname="Api" name="login"><error type="TimeoutError"/></testcase></testsuite>"#;
    let answer = upload(
        &app,
        &org.key,
        "build_name=b",
        "application/xml",
        report.to_vec(),
        &[],
    )
    .await;
    assert_eq!(answer.status, 201, "{answer:?}");
    let build = build_id(&answer);
    assert_eq!(
        stored(&app, build, "Api.health")
            .await
            .error_message
            .as_deref(),
        Some("failure (JUnit <failure>), with no error message in the report")
    );
    assert_eq!(
        stored(&app, build, "Api.login")
            .await
            .error_message
            .as_deref(),
        Some("TimeoutError (the report gives no message)")
    );
}

#[tokio::test]
async fn a_suite_level_failure_without_a_test_case_becomes_a_failed_result_of_its_own() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let report = br#"<testsuites><testsuite name="tests.test_db" tests="1" errors="1">
        <testcase classname="tests.test_db" name="test_ok" time="0.1"/>
        <error message="fixture 'db' setup failed">Traceback: connection refused</error>
        <system-out>connecting to db:5432</system-out></testsuite></testsuites>"#;
    let answer = upload(
        &app,
        &org.key,
        "build_name=b",
        "application/xml",
        report.to_vec(),
        &[],
    )
    .await;
    assert_eq!(answer.status, 201, "{answer:?}");
    let build = build_id(&answer);
    assert_eq!(counts(&app, build).await, (1, 1, 0));
    let suite = stored(&app, build, "tests.test_db (suite-level failure)").await;
    assert_eq!(
        suite.error_message.as_deref(),
        Some("fixture 'db' setup failed\n\nTraceback: connection refused")
    );
    assert!(suite
        .tester_notes
        .unwrap()
        .contains("connecting to db:5432"));
}

#[tokio::test]
async fn nunit_3_and_nunit_2_results_are_stored_with_their_counts_and_messages() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let answer = upload(
        &app,
        &org.key,
        "build_name=n3",
        "application/xml",
        fixture("nunit3.xml"),
        &[],
    )
    .await;
    assert_eq!(answer.status, 201, "{answer:?}");
    let build = build_id(&answer);
    assert_eq!(counts(&app, build).await, (3, 5, 1));
    let error = stored(
        &app,
        build,
        "DotnetTests.XUnitTests.CalculatorTests.Exception_In_TargetTest",
    )
    .await;
    assert_eq!(error.duration_ms, Some(23));
    assert!(error
        .error_message
        .unwrap()
        .starts_with("System.DivideByZeroException : Attempted to divide by zero."));
    assert!(error.tester_notes.unwrap().contains("label Error"));

    // NUnit 2, named explicitly.
    let answer = upload(
        &app,
        &org.key,
        "build_name=n2&format=nunit",
        "application/xml",
        fixture("nunit2.xml"),
        &[],
    )
    .await;
    assert_eq!(answer.status, 201, "{answer:?}");
    let build = build_id(&answer);
    assert_eq!(counts(&app, build).await, (18, 2, 8));
    let failing = stored(
        &app,
        build,
        "NUnit.Tests.Assemblies.MockTestFixture.FailingTest",
    )
    .await;
    assert_eq!(failing.duration_ms, Some(13));
    assert!(failing
        .error_message
        .unwrap()
        .starts_with("Intentional failure"));
    let ignored = stored(
        &app,
        build,
        "NUnit.Tests.Assemblies.MockTestFixture.MockTest4",
    )
    .await;
    assert_eq!(ignored.status, "skipped");
    assert_eq!(
        ignored.error_message.as_deref(),
        Some("ignoring this test method for now")
    );
}

#[tokio::test]
async fn xunit_v2_and_trx_results_are_stored_with_their_counts_and_messages() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let answer = upload(
        &app,
        &org.key,
        "build_name=x",
        "application/xml",
        fixture("xunit-v2.xml"),
        &[],
    )
    .await;
    assert_eq!(answer.status, 201, "{answer:?}");
    let build = build_id(&answer);
    assert_eq!(counts(&app, build).await, (2, 2, 1));
    let failed = stored(
        &app,
        build,
        "Xunit.Xml.TestLogger.NetCore.Tests.UnitTest1.FailTest11",
    )
    .await;
    assert_eq!(failed.duration_ms, Some(8));
    assert_eq!(
        failed.error_message.as_deref(),
        Some("Assert.False() Failure\nExpected: False\nActual:   True")
    );

    // TRX with a UTF-8 byte-order mark, as `dotnet test --logger trx` writes it; the class comes from the
    // test definitions that follow the results.
    let answer = upload(
        &app,
        &org.key,
        "build_name=t",
        "application/xml",
        fixture("dotnet.trx"),
        &[],
    )
    .await;
    assert_eq!(answer.status, 201, "{answer:?}");
    let build = build_id(&answer);
    assert_eq!(counts(&app, build).await, (5, 5, 1));
    let theory = stored(
        &app,
        build,
        "DotnetTests.XUnitTests.CalculatorTests.Should be even number(i: 3)",
    )
    .await;
    assert_eq!(
        (theory.status.as_str(), theory.duration_ms),
        ("failed", Some(1))
    );
    assert!(theory
        .error_message
        .unwrap()
        .starts_with("Assert.True() Failure\r\nExpected: True"));
    assert_eq!(theory.environment.as_deref(), Some("DORNY-PC"));
    let skipped = stored(
        &app,
        build,
        "DotnetTests.XUnitTests.CalculatorTests.Skipped_Test",
    )
    .await;
    assert_eq!(skipped.status, "skipped", "outcome NotExecuted");

    let answer = upload(
        &app,
        &org.key,
        "build_name=m",
        "application/xml",
        fixture("mstest-pickles.trx"),
        &[],
    )
    .await;
    assert_eq!(answer.status, 201, "{answer:?}");
    assert_eq!(counts(&app, build_id(&answer)).await, (3, 1, 0));
}

#[tokio::test]
async fn a_multipart_call_with_three_files_stores_them_as_one_upload() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let project = app.create_project(&org.key, "Web").await;
    app.create_release(&org.key, &project, "2026.11").await;
    let boundary = "lathe-boundary-1";
    let body = multipart(
        &[
            ("build_name", "Build 20261201.3"),
            ("project", "web"),
            ("branch", "main"),
        ],
        &[
            ("TEST-EmailAddressTest.xml", fixture("surefire.xml")),
            ("nunit.xml", fixture("nunit3.xml")),
            ("results.trx", fixture("dotnet.trx")),
        ],
        boundary,
    );
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let answer = upload(&app, &org.key, "", &content_type, body, &[]).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    assert_eq!(
        answer.body["outcome"], "created",
        "into the project's release"
    );
    assert_eq!(answer.body["resultsStored"], 9 + 9 + 11);
    assert_eq!(
        counts(&app, build_id(&answer)).await,
        (2 + 3 + 5, 7 + 5 + 5, 1 + 1)
    );
}

#[tokio::test]
async fn a_multipart_call_with_one_bad_file_stores_nothing_and_names_the_file() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let boundary = "b0undary";
    let body = multipart(
        &[("build_name", "b")],
        &[
            ("pytest.xml", fixture("pytest.xml")),
            (
                "broken.xml",
                b"<testsuite>\n<testcase name=\"a\">\n</testsuite>".to_vec(),
            ),
        ],
        boundary,
    );
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let answer = upload(&app, &org.key, "", &content_type, body, &[]).await;
    assert_eq!(answer.status, 422, "{answer:?}");
    let field = &answer.body["error"]["fields"][0];
    assert_eq!(field["field"], "file broken.xml", "{answer:?}");
    assert!(
        field["message"]
            .as_str()
            .unwrap()
            .starts_with("line 3, column"),
        "{answer:?}"
    );
    assert_eq!(stored_results(&app).await, 0);
}

#[tokio::test]
async fn a_gzip_encoded_report_is_read_and_json_still_works_gzipped_or_not() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let body = gzip(&fixture("pytest-generated.xml"));
    let answer = upload(
        &app,
        &org.key,
        "build_name=gz",
        "application/xml",
        body,
        &[("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(answer.status, 201, "{answer:?}");
    assert_eq!(counts(&app, build_id(&answer)).await, (3, 2, 2));

    let json = br#"{"build_name": "json", "test_results": [{"title": "t", "status": "passed"}]}"#;
    let answer = upload(&app, &org.key, "", "application/json", json.to_vec(), &[]).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    let answer = upload(
        &app,
        &org.key,
        "",
        "application/json",
        gzip(json),
        &[("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(answer.status, 201, "{answer:?}");
    assert_eq!(answer.body["resultsStored"], 1);
}

#[tokio::test]
async fn a_gzip_bomb_is_413_by_its_decoded_size() {
    let app = spawn_app_with(|settings| settings.ingest_max_bytes = 1024 * 1024).await;
    let org = app.create_org("Fabrikam").await;
    // 64 MB of XML that compresses to about 64 KB.
    let mut xml = b"<testsuite>".to_vec();
    xml.resize(64 * 1024 * 1024, b' ');
    let bomb = gzip(&xml);
    assert!(bomb.len() < 1024 * 1024);
    for content_type in ["application/xml", "application/json"] {
        let answer = upload(
            &app,
            &org.key,
            "build_name=b",
            content_type,
            bomb.clone(),
            &[("content-encoding", "gzip")],
        )
        .await;
        assert_eq!(answer.status, 413, "{content_type}: {answer:?}");
    }
    assert_eq!(stored_results(&app).await, 0);
}

#[tokio::test]
async fn an_entity_bomb_or_an_external_entity_is_422_and_nothing_is_expanded() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let mut bomb =
        String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE testsuite [\n <!ENTITY lol \"lol\">\n");
    for level in 1..10 {
        let previous = if level == 1 {
            "lol".to_owned()
        } else {
            format!("lol{}", level - 1)
        };
        bomb.push_str(&format!(
            " <!ENTITY lol{level} \"{}\">\n",
            format!("&{previous};").repeat(10)
        ));
    }
    bomb.push_str("]>\n<testsuite><testcase name=\"&lol9;\"/></testsuite>");
    for (name, body) in [
        ("billion laughs", bomb.into_bytes()),
        ("nunit2-xxe.xml", fixture("nunit2-xxe.xml")),
    ] {
        let answer = upload(&app, &org.key, "build_name=b", "application/xml", body, &[]).await;
        assert_eq!(answer.status, 422, "{name}: {answer:?}");
        let message = answer.body["error"]["fields"][0]["message"]
            .as_str()
            .unwrap();
        assert!(
            message.contains("<!DOCTYPE> is not accepted"),
            "{name}: {message}"
        );
    }
    // An entity used without a DTD is named, not expanded.
    let answer = upload(
        &app,
        &org.key,
        "build_name=b",
        "application/xml",
        b"<testsuite>\n<testcase name=\"&xxe;\"/></testsuite>".to_vec(),
        &[],
    )
    .await;
    assert_eq!(answer.status, 422, "{answer:?}");
    let message = answer.body["error"]["fields"][0]["message"]
        .as_str()
        .unwrap();
    assert!(
        message.starts_with("line 2") && message.contains("xxe"),
        "{message}"
    );
    assert_eq!(stored_results(&app).await, 0);
}

#[tokio::test]
async fn malformed_xml_and_an_unknown_root_are_422_naming_where() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let malformed = b"<?xml version=\"1.0\"?>\n<testsuites>\n  <testsuite name=\"a\">\n    <testcase name=\"x\">\n  </testsuite>\n</testsuites>";
    let answer = upload(
        &app,
        &org.key,
        "build_name=b",
        "application/xml",
        malformed.to_vec(),
        &[],
    )
    .await;
    assert_eq!(answer.status, 422, "{answer:?}");
    let field = &answer.body["error"]["fields"][0];
    assert_eq!(field["field"], "body");
    assert!(
        field["message"]
            .as_str()
            .unwrap()
            .starts_with("line 5, column"),
        "{answer:?}"
    );

    let answer = upload(
        &app,
        &org.key,
        "build_name=b",
        "application/xml",
        b"<html><body/></html>".to_vec(),
        &[],
    )
    .await;
    assert_eq!(answer.status, 422, "{answer:?}");
    assert!(answer.body["error"]["fields"][0]["message"]
        .as_str()
        .unwrap()
        .contains("<html>"));

    let answer = upload(
        &app,
        &org.key,
        "build_name=b&format=trx",
        "application/xml",
        fixture("pytest.xml"),
        &[],
    )
    .await;
    assert_eq!(answer.status, 422, "{answer:?}");

    // The build's fields follow the JSON rules: a missing build_name is named.
    let answer = upload(
        &app,
        &org.key,
        "branch=main",
        "application/xml",
        fixture("pytest.xml"),
        &[],
    )
    .await;
    assert_eq!(answer.status, 422, "{answer:?}");
    assert_eq!(answer.body["error"]["fields"][0]["field"], "build_name");
    assert_eq!(stored_results(&app).await, 0);
}

#[tokio::test]
async fn an_xml_upload_retried_with_its_idempotency_key_is_stored_once() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let key = [("idempotency-key", "ci-run-7-attempt-1")];
    let first = upload(
        &app,
        &org.key,
        "build_name=b",
        "application/xml",
        fixture("surefire.xml"),
        &key,
    )
    .await;
    assert_eq!(first.status, 201, "{first:?}");
    let again = upload(
        &app,
        &org.key,
        "build_name=b",
        "application/xml",
        fixture("surefire.xml"),
        &key,
    )
    .await;
    assert_eq!((again.status, &again.body), (201, &first.body));
    // The same file gzip-encoded is the same call.
    let gzipped = upload(
        &app,
        &org.key,
        "build_name=b",
        "application/xml",
        gzip(&fixture("surefire.xml")),
        &[key[0], ("content-encoding", "gzip")],
    )
    .await;
    assert_eq!((gzipped.status, &gzipped.body), (201, &first.body));
    assert_eq!(stored_results(&app).await, 9);
    // Other build fields with the same key are another body.
    let other = upload(
        &app,
        &org.key,
        "build_name=c",
        "application/xml",
        fixture("surefire.xml"),
        &key,
    )
    .await;
    assert_eq!(other.status, 422, "{other:?}");

    // A multipart retry carries another boundary (curl picks one per run): still the same call.
    let key = [("idempotency-key", "ci-run-8")];
    let files = [("a.xml", fixture("pytest.xml"))];
    let mut answers = Vec::new();
    for boundary in ["first-boundary", "second-boundary"] {
        let body = multipart(&[("build_name", "b8")], &files, boundary);
        let content_type = format!("multipart/form-data; boundary={boundary}");
        answers.push(upload(&app, &org.key, "", &content_type, body, &key).await);
    }
    assert_eq!(answers[0].status, 201, "{:?}", answers[0]);
    assert_eq!(answers[1].body, answers[0].body);
    assert_eq!(stored_results(&app).await, 9 + 10);
}

#[tokio::test]
async fn results_for_a_build_that_exists_are_attached_as_with_json() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let project = app.create_project(&org.key, "Web").await;
    app.create_release(&org.key, &project, "2026.11").await;
    let query = "build_name=Build%207&project=web&azure_build_id=7&azure_collection_url=https%3A%2F%2Fdev.azure.com%2Ffabrikam%2F";
    let first = upload(
        &app,
        &org.key,
        query,
        "application/xml",
        fixture("nunit3.xml"),
        &[],
    )
    .await;
    assert_eq!(
        (first.status, &first.body["outcome"]),
        (201, &Value::from("created")),
        "{first:?}"
    );
    let second = upload(
        &app,
        &org.key,
        query,
        "application/xml",
        fixture("dotnet.trx"),
        &[],
    )
    .await;
    assert_eq!(
        (second.status, &second.body["outcome"]),
        (200, &Value::from("attached")),
        "{second:?}"
    );
    assert_eq!(second.body["buildId"], first.body["buildId"]);
    assert_eq!(stored_results(&app).await, 9 + 11);
}

/// Opens an ingest call and sends its head and the first `chunk` of a chunked body, and never the rest.
async fn start_upload(
    app: &TestApp,
    key: &str,
    query: &str,
    content_type: &str,
    chunk: &[u8],
) -> tokio::net::TcpStream {
    let target = format!("/api/v1/results/ingest?{query}");
    start_request(app, key, &target, content_type, chunk).await
}

/// Opens a POST to `target` and sends its head and the first `chunk` of a chunked body, and never the rest.
pub async fn start_request(
    app: &TestApp,
    key: &str,
    target: &str,
    content_type: &str,
    chunk: &[u8],
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut head = format!(
        "POST {target} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        chunk.len()
    )
    .into_bytes();
    head.extend_from_slice(chunk);
    head.extend_from_slice(b"\r\n");
    stream.write_all(&head).await.unwrap();
    stream
}

/// The status the service answers an upload with while its body is still open (it can only answer from what it
/// has read so far).
pub async fn answer_while_open(stream: &mut tokio::net::TcpStream) -> u16 {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(30), stream.read(&mut buffer))
            .await
            .expect("the service answers while the body is still open")
            .unwrap();
        assert!(n > 0, "the service closed the connection without answering");
        answer.extend_from_slice(&buffer[..n]);
    }
    let status_line = String::from_utf8_lossy(&answer);
    status_line
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {status_line}"))
}

async fn answer_before_the_body_ends(
    app: &TestApp,
    key: &str,
    query: &str,
    content_type: &str,
    chunk: &[u8],
) -> u16 {
    let mut stream = start_upload(app, key, query, content_type, chunk).await;
    answer_while_open(&mut stream).await
}

#[tokio::test]
async fn a_report_is_read_as_it_arrives_and_a_fault_answered_before_the_body_ends() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let broken = b"<?xml version=\"1.0\"?>\n<testsuite name=\"s\">\n<testcase name=\"a\"></oops>";
    let status = answer_before_the_body_ends(
        &app,
        &org.key,
        "build_name=b&branch=main",
        "application/xml",
        broken,
    )
    .await;
    assert_eq!(status, 422);

    // A file of a multipart body, the same way.
    let mut part =
        b"--XyZ\r\nContent-Disposition: form-data; name=\"report\"; filename=\"a.xml\"\r\n\r\n"
            .to_vec();
    part.extend_from_slice(broken);
    // multer hands on a part's bytes once it knows they are not the start of its boundary.
    part.extend_from_slice(&[b'\n'; 64]);
    let status = answer_before_the_body_ends(
        &app,
        &org.key,
        "build_name=b&branch=main",
        "multipart/form-data; boundary=XyZ",
        &part,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(stored_results(&app).await, 0);
}

#[tokio::test]
async fn an_ingest_call_with_a_wrong_key_is_refused_before_its_body_is_read() {
    let app = spawn_app().await;
    let status = answer_before_the_body_ends(
        &app,
        "pt_live_notakeyatall0000000000",
        "build_name=b&branch=main",
        "application/xml",
        b"<testsuite>",
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn one_organizations_slow_uploads_cannot_hold_every_report_reader() {
    let app = spawn_app().await;
    let org = app.create_org("Fabrikam").await;
    let other = app.create_org("Contoso").await;
    let query = "build_name=b&branch=main";
    // Uploads that never finish, each held open by the test.
    let mut slow = Vec::new();
    for _ in 0..lathe_api::intake::REPORTS_READ_AT_ONCE_PER_ORGANIZATION {
        slow.push(start_upload(&app, &org.key, query, "application/xml", b"<testsuite>").await);
    }
    // Once they are all being read, the organization's next upload is refused (429, saying why)...
    let refused = upload_until(&app, &org.key, query, true).await;
    assert!(
        refused.body.to_string().contains("being read at once"),
        "{refused:?}"
    );
    // ... while another organization's is read as ever.
    let answer = upload(
        &app,
        &other.key,
        query,
        "application/xml",
        b"<testsuite name=\"s\"><testcase name=\"t\"/></testsuite>".to_vec(),
        &[],
    )
    .await;
    assert_eq!(answer.status, 201, "{answer:?}");
    // A slow upload ending gives its place back.
    drop(slow.pop());
    upload_until(&app, &org.key, query, false).await;
}

/// Uploads an empty report until it is refused for too many uploads at once (`refused`) or until it is not; the
/// last answer. Fails the test after 30 s.
async fn upload_until(app: &TestApp, key: &str, query: &str, refused: bool) -> Answer {
    let started = std::time::Instant::now();
    loop {
        let answer = upload(
            app,
            key,
            query,
            "application/xml",
            b"<testsuite/>".to_vec(),
            &[],
        )
        .await;
        if (answer.status == 429) == refused {
            return answer;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "never {}: {answer:?}",
            if refused { "refused" } else { "accepted again" }
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_body_without_a_length_is_413_once_it_grows_over_the_limit() {
    let app = spawn_app_with(|settings| settings.ingest_max_bytes = 4096).await;
    let org = app.create_org("Fabrikam").await;
    // Chunked, so no Content-Length announces it: the count of what arrives refuses it, as JSON and as a report.
    let mut json =
        br#"{"build_name": "b", "branch": "main", "test_results": [], "pad": ""#.to_vec();
    json.resize(8192, b' ');
    let status = answer_before_the_body_ends(&app, &org.key, "", "application/json", &json).await;
    assert_eq!(status, 413);
    let mut xml = b"<testsuite name=\"s\"><!--".to_vec();
    xml.resize(8192, b' ');
    let status = answer_before_the_body_ends(
        &app,
        &org.key,
        "build_name=b&branch=main",
        "application/xml",
        &xml,
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(stored_results(&app).await, 0);
}

#[tokio::test]
async fn a_webhook_delivery_with_a_wrong_key_is_refused_before_its_body_is_read() {
    let app = spawn_app().await;
    let mut stream = start_request(
        &app,
        "pt_live_notakeyatall0000000000",
        "/api/webhooks/azure-devops",
        "application/json",
        b"{\"eventType\": ",
    )
    .await;
    assert_eq!(answer_while_open(&mut stream).await, 401);
}
