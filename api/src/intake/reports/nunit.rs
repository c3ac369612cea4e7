//! NUnit 3 (`<test-run>`) and NUnit 2 (`<test-results>`) result files: `<test-case>`s inside nested
//! `<test-suite>`s (assembly, namespace, fixture, parameterised method).

use domain::build_queue::TestStatus;

use super::case::{seconds_to_ms, Capped, Case};
use super::xml::{Element, Handler};
use super::{ReportError, Sink};

/// A `<test-suite>` being read.
struct Suite {
    name: Option<String>,
    kind: Option<String>,
    /// NUnit 3's `site` of a failure: `SetUp`/`TearDown` are the suite's own; `Child`/`Parent` are not.
    site: Option<String>,
    /// The suite's own `<failure>`, as a result of its own until we know whether it had test cases.
    failure: Option<Case>,
    has_cases: bool,
    environment: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Nothing,
    Message,
    Detail,
    Stdout,
}

pub(super) struct Nunit<'s, 'a> {
    sink: &'s mut Sink<'a>,
    suites: Vec<Suite>,
    case: Option<Case>,
    environment: Option<String>,
    target: Target,
    message: Capped,
    /// Inside `<assertions>` (each assertion repeats the failure's message) or `<attachments>`.
    in_ignored: bool,
}

impl<'s, 'a> Nunit<'s, 'a> {
    pub(super) fn new(sink: &'s mut Sink<'a>) -> Self {
        Self {
            sink,
            suites: Vec::new(),
            case: None,
            environment: None,
            target: Target::Nothing,
            message: Capped::default(),
            in_ignored: false,
        }
    }

    /// The case that `<failure>`, `<reason>` and `<output>` belong to: the test case, else the suite's failure.
    fn current(&mut self) -> Option<&mut Case> {
        match self.case.as_mut() {
            Some(case) => Some(case),
            None => self.suites.last_mut().and_then(|s| s.failure.as_mut()),
        }
    }

    fn start_case(&mut self, element: &Element<'_>) {
        let name = element
            .attr("fullname")
            .or_else(|| element.attr("name"))
            .unwrap_or_default();
        let mut case = Case::new(element.line, name.to_owned());
        case.duration_ms = seconds_to_ms(element.attr("duration").or_else(|| element.attr("time")));
        let (status, outcome) = status(element);
        case.status = status;
        case.outcome = outcome;
        case.environment = self.environment();
        for suite in &mut self.suites {
            suite.has_cases = true;
        }
        let fixture = self
            .suites
            .iter()
            .rev()
            .find(|s| s.kind.as_deref() == Some("TestFixture"))
            .and_then(|s| s.name.as_deref());
        case.note("class", element.attr("classname").or(fixture));
        case.note(
            "assembly",
            self.suites
                .iter()
                .find(|s| s.kind.as_deref() == Some("Assembly"))
                .and_then(|s| s.name.as_deref()),
        );
        self.case = Some(case);
    }

    fn environment(&self) -> Option<String> {
        self.suites
            .iter()
            .rev()
            .find_map(|s| s.environment.clone())
            .or_else(|| self.environment.clone())
    }
}

/// A test case's status and what NUnit says beyond it.
fn status(element: &Element<'_>) -> (TestStatus, Option<String>) {
    let result = element.attr("result").unwrap_or("Passed");
    let label = element.attr("label");
    let site = element.attr("site");
    if element.attr("executed") == Some("False") && result != "Error" && result != "Failure" {
        return (
            TestStatus::Skipped,
            Some(format!("not executed (NUnit result {result})")),
        );
    }
    let status = match result {
        "Passed" | "Success" | "Warning" => TestStatus::Passed,
        "Skipped" | "Ignored" | "Inconclusive" | "NotRun" => TestStatus::Skipped,
        _ => TestStatus::Failed,
    };
    let mut outcome = format!("NUnit result {result}");
    if let Some(label) = label {
        outcome.push_str(&format!(", label {label}"));
    }
    if let Some(site) = site {
        outcome.push_str(&format!(", site {site}"));
    }
    if label == Some("Error") || result == "Error" {
        outcome.push_str(" (an exception, not an assertion failure)");
    }
    (status, Some(outcome))
}

impl Handler for Nunit<'_, '_> {
    fn start(&mut self, element: &Element<'_>) -> Result<(), ReportError> {
        if self.in_ignored {
            return Ok(());
        }
        match element.name.as_str() {
            "test-suite" => self.suites.push(Suite {
                name: element
                    .attr("fullname")
                    .or_else(|| element.attr("name"))
                    .map(str::to_owned),
                kind: element.attr("type").map(str::to_owned),
                site: element.attr("site").map(str::to_owned),
                failure: None,
                has_cases: false,
                environment: None,
            }),
            "environment" => {
                let machine = element.attr("machine-name");
                let os = element.attr("os-version");
                let runtime = element
                    .attr("clr-version")
                    .or_else(|| element.attr("framework-version"));
                let text = [machine, os, runtime.map(|r| r.trim())]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("; ");
                let text = Some(text).filter(|t| !t.is_empty());
                match self.suites.last_mut() {
                    Some(suite) => suite.environment = text,
                    None => self.environment = text,
                }
            }
            "test-case" => self.start_case(element),
            "failure" if self.case.is_none() => {
                if let Some(suite) = self.suites.last_mut() {
                    let title = format!(
                        "{} (suite-level failure)",
                        suite.name.as_deref().unwrap_or("test suite")
                    );
                    let mut failure = Case::new(element.line, title);
                    failure.status = TestStatus::Failed;
                    failure.outcome = Some(match suite.site.as_deref() {
                        Some(site) => format!("the suite failed (NUnit site {site})"),
                        None => "the suite failed".to_owned(),
                    });
                    suite.failure = Some(failure);
                }
            }
            "message" => self.target = Target::Message,
            "stack-trace" => self.target = Target::Detail,
            "output" => self.target = Target::Stdout,
            "assertions" | "attachments" => self.in_ignored = true,
            "property" => {
                if let (Some(case), Some(name)) = (self.case.as_mut(), element.attr("name")) {
                    case.note(name, element.attr("value"));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn end(&mut self, name: &str) -> Result<(), ReportError> {
        match name {
            "assertions" | "attachments" => self.in_ignored = false,
            _ if self.in_ignored => {}
            "message" => {
                let message = self.message.take();
                if let Some(case) = self.current() {
                    if case.message.is_none() {
                        case.message = message;
                    }
                }
                self.target = Target::Nothing;
            }
            "stack-trace" | "output" => self.target = Target::Nothing,
            "test-case" => {
                if let Some(case) = self.case.take() {
                    self.sink.push(case);
                }
            }
            "test-suite" => {
                if let Some(suite) = self.suites.pop() {
                    let own = matches!(suite.site.as_deref(), Some("SetUp" | "TearDown"))
                        || (!suite.has_cases
                            && !matches!(suite.site.as_deref(), Some("Child" | "Parent")));
                    if let (true, Some(mut failure)) = (own, suite.failure) {
                        failure.environment = suite.environment.or_else(|| self.environment());
                        self.sink.push(failure);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn text(&mut self, text: &str) {
        if self.in_ignored || self.target == Target::Nothing {
            return;
        }
        if self.target == Target::Message {
            self.message.push(text);
            return;
        }
        let target = self.target;
        if let Some(case) = self.current() {
            match target {
                Target::Detail => case.detail.push(text),
                _ => case.stdout.push(text),
            }
        }
    }
}
