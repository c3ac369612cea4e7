//! Reading the real report files in `tests/fixtures/reports/`, without the service around it.

use domain::build_queue::{TestResult, TestStatus};
use sha2::{Digest, Sha256};

use super::{read, Format, ReportError, Tracked};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../tests/fixtures/reports/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn parse(bytes: &[u8], limit: u64) -> Result<Vec<TestResult>, ReportError> {
    let mut hasher = Sha256::new();
    let mut results = Vec::new();
    read(
        Tracked::new(Box::new(bytes), limit, &mut hasher),
        None,
        "body",
        &mut results,
    )?;
    Ok(results)
}

fn counts(results: &[TestResult]) -> (usize, usize, usize) {
    let of = |s| results.iter().filter(|r| r.status == s).count();
    (
        of(TestStatus::Passed),
        of(TestStatus::Failed),
        of(TestStatus::Skipped),
    )
}

#[test]
fn every_fixture_reads_with_the_counts_its_tool_wrote() {
    for (name, expected) in [
        ("pytest.xml", (6, 2, 2)),
        ("pytest-generated.xml", (3, 2, 2)),
        ("surefire.xml", (2, 7, 0)),
        ("gradle.xml", (2, 1, 0)),
        ("jest-junit.xml", (1, 4, 1)),
        ("mocha-junit-reporter.xml", (109, 0, 0)),
        ("phpunit.xml", (10, 2, 0)),
        ("playwright.xml", (36, 4, 20)),
        ("go-junit-report.xml", (2, 2, 1)),
        ("nunit3.xml", (3, 5, 1)),
        ("nunit2.xml", (18, 2, 8)),
        ("xunit-v2.xml", (2, 2, 1)),
        ("dotnet.trx", (5, 5, 1)),
        ("mstest-pickles.trx", (3, 1, 0)),
    ] {
        let results = parse(&fixture(name), u64::MAX).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(
            counts(&results),
            expected,
            "{name}: (passed, failed, skipped)"
        );
        for result in &results {
            // Every failure says something, and only failures carry notes.
            assert_eq!(
                result.status == TestStatus::Failed,
                result.tester_notes.is_some(),
                "{name}: {}",
                result.title
            );
            if result.status == TestStatus::Failed {
                assert!(result.error_message.is_some(), "{name}: {}", result.title);
            }
        }
    }
}

#[test]
fn a_doctype_is_refused_before_any_entity_is_read() {
    let error = parse(&fixture("nunit2-xxe.xml"), u64::MAX).unwrap_err();
    assert!(
        matches!(&error, ReportError::Refused(m) if m.contains("line 4")),
        "{error:?}"
    );
}

#[test]
fn an_undefined_entity_and_malformed_xml_name_their_place() {
    let error = parse(
        b"<testsuite>\n  <testcase name=\"a&bomb;\"/>\n</testsuite>",
        u64::MAX,
    )
    .unwrap_err();
    assert!(
        matches!(&error, ReportError::Malformed(m) if m.starts_with("line 2")),
        "{error:?}"
    );
    let error = parse(b"<testsuites>\n<testsuite>\n</testsuites>", u64::MAX).unwrap_err();
    assert!(
        matches!(&error, ReportError::Malformed(m) if m.starts_with("line 3")),
        "{error:?}"
    );
    let error = parse(b"<html><body/></html>", u64::MAX).unwrap_err();
    assert!(
        matches!(&error, ReportError::Invalid(m) if m.contains("<html>")),
        "{error:?}"
    );
}

#[test]
fn more_bytes_than_the_limit_stop_the_read() {
    let error = parse(&fixture("mocha-junit-reporter.xml"), 1000).unwrap_err();
    assert!(matches!(error, ReportError::TooLarge));
}

#[test]
fn the_format_named_must_match_the_root() {
    let mut hasher = Sha256::new();
    let error = read(
        Tracked::new(Box::new(&b"<testsuite/>"[..]), 100, &mut hasher),
        Some(Format::Trx),
        "body",
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(
        matches!(&error, ReportError::Invalid(m) if m.contains("<TestRun>")),
        "{error:?}"
    );
}

#[test]
fn an_element_with_too_many_attributes_is_refused() {
    let attributes: String = (0..300).map(|n| format!(" a{n}=\"x\"")).collect();
    let xml = format!("<testsuite>\n<testcase name=\"t\"{attributes}/></testsuite>");
    let error = parse(xml.as_bytes(), u64::MAX).unwrap_err();
    assert!(
        matches!(&error, ReportError::Malformed(m) if m.contains("more than 256 attributes")),
        "{error:?}"
    );
}
