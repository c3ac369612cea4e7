//! JUnit XML as pytest, Maven Surefire, Gradle, jest-junit, mocha-junit-reporter, go-junit-report, gotestsum,
//! PHPUnit, Playwright and dotnet loggers write it: `<testsuites>` or a lone `<testsuite>`, suites nested or not.

use domain::build_queue::TestStatus;

use super::case::{qualified, seconds_to_ms, Capped, Case};
use super::xml::{Element, Handler};
use super::{ReportError, Sink};

/// A `<testsuite>` being read.
struct Suite {
    name: Option<String>,
    hostname: Option<String>,
    file: Option<String>,
    /// A `<failure>` or `<error>` of the suite itself (no test case): setup or collection failed.
    failure: Option<Case>,
    stdout: Capped,
    stderr: Capped,
}

/// Where the text being read goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Nothing,
    Detail,
    Stdout,
    Stderr,
}

pub(super) struct Junit<'s, 'a> {
    sink: &'s mut Sink<'a>,
    suites: Vec<Suite>,
    case: Option<Case>,
    into: Target,
    /// Inside a `<flakyFailure>`/`<rerunFailure>` (Surefire's reruns): its text is not the failure's.
    in_rerun: bool,
}

impl<'s, 'a> Junit<'s, 'a> {
    pub(super) fn new(sink: &'s mut Sink<'a>) -> Self {
        Self {
            sink,
            suites: Vec::new(),
            case: None,
            into: Target::Nothing,
            in_rerun: false,
        }
    }

    fn start_case(&mut self, element: &Element<'_>) {
        let suite = self.suites.last();
        let name = element.attr("name").unwrap_or_default();
        let class = element.attr("classname");
        let mut case = Case::new(element.line, qualified(class, name));
        case.duration_ms = seconds_to_ms(element.attr("time"));
        case.environment = suite.and_then(|s| s.hostname.clone());
        case.note("suite", suite.and_then(|s| s.name.as_deref()));
        case.note("class", class);
        let file = element
            .attr("file")
            .or_else(|| element.attr("filepath"))
            .or_else(|| suite.and_then(|s| s.file.as_deref()));
        let file = match (file, element.attr("line")) {
            (Some(file), Some(line)) => Some(format!("{file}:{line}")),
            (file, _) => file.map(str::to_owned),
        };
        case.note("file", file.as_deref());
        self.case = Some(case);
    }

    /// `<failure>`, `<error>` or `<skipped>`, of a test case or of a suite.
    fn outcome(case: &mut Case, element: &Element<'_>) {
        let kind = element.name.as_str();
        let message = element.attr("message");
        let kind_of = element.attr("type");
        if kind == "skipped" {
            if case.status != TestStatus::Failed {
                case.status = TestStatus::Skipped;
                case.message = message.map(str::to_owned);
            }
            return;
        }
        case.status = TestStatus::Failed;
        case.outcome = Some(match (kind, kind_of) {
            ("error", Some(t)) => {
                format!("error (JUnit <error> of type {t}: not an assertion failure)")
            }
            ("error", None) => "error (JUnit <error>: not an assertion failure)".to_owned(),
            (_, Some(t)) => format!("failure (JUnit <failure> of type {t})"),
            _ => "failure (JUnit <failure>)".to_owned(),
        });
        case.message = match (message, kind_of) {
            (Some(m), Some(t)) if !m.contains(t) => Some(format!("{t}: {m}")),
            (Some(m), _) => Some(m.to_owned()),
            (None, Some(t)) => Some(format!("{t} (the report gives no message)")),
            (None, None) => None,
        };
    }
}

impl Handler for Junit<'_, '_> {
    fn start(&mut self, element: &Element<'_>) -> Result<(), ReportError> {
        if self.in_rerun {
            return Ok(());
        }
        match element.name.as_str() {
            "testsuite" => {
                let parent = self.suites.last();
                self.suites.push(Suite {
                    name: element.attr("name").map(str::to_owned),
                    hostname: element
                        .attr("hostname")
                        .map(str::to_owned)
                        .or_else(|| parent.and_then(|p| p.hostname.clone())),
                    file: element
                        .attr("file")
                        .or_else(|| element.attr("filepath"))
                        .map(str::to_owned),
                    failure: None,
                    stdout: Capped::default(),
                    stderr: Capped::default(),
                });
            }
            "testcase" => self.start_case(element),
            "failure" | "error" | "skipped" => {
                self.into = Target::Detail;
                if let Some(case) = self.case.as_mut() {
                    if element.name == "skipped" && case.status == TestStatus::Failed {
                        self.into = Target::Nothing;
                    } else {
                        Self::outcome(case, element);
                    }
                } else if let Some(suite) = self.suites.last_mut() {
                    // A failure of the suite itself: setup, collection or teardown failed outside any test.
                    let title = format!(
                        "{} (suite-level failure)",
                        suite.name.as_deref().unwrap_or("test suite")
                    );
                    let failure = suite
                        .failure
                        .get_or_insert_with(|| Case::new(element.line, title));
                    if element.name == "skipped" {
                        self.into = Target::Nothing;
                    } else {
                        Self::outcome(failure, element);
                    }
                }
            }
            "flakyFailure" | "flakyError" | "rerunFailure" | "rerunError" => {
                if let Some(case) = self.case.as_mut() {
                    let passed_later = element.name.starts_with("flaky");
                    let what = if passed_later {
                        "flaky: failed, then passed on a rerun"
                    } else {
                        "failed again on a rerun"
                    };
                    case.note(what, element.attr("message").or(Some("(no message)")));
                }
                self.in_rerun = true;
            }
            "system-out" => self.into = Target::Stdout,
            "system-err" => self.into = Target::Stderr,
            "property" => {
                // A test case's properties (pytest's record_property, Playwright's annotations); a suite's
                // (Surefire's every JVM system property) are left out.
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
            "flakyFailure" | "flakyError" | "rerunFailure" | "rerunError" => self.in_rerun = false,
            _ if self.in_rerun => {}
            "testcase" => {
                if let Some(case) = self.case.take() {
                    self.sink.push(case);
                }
                self.into = Target::Nothing;
            }
            "testsuite" => {
                if let Some(mut suite) = self.suites.pop() {
                    if let Some(mut failure) = suite.failure.take() {
                        failure.note("suite", suite.name.as_deref());
                        failure.environment = suite.hostname.clone();
                        failure.stdout = std::mem::take(&mut suite.stdout);
                        failure.stderr = std::mem::take(&mut suite.stderr);
                        self.sink.push(failure);
                    }
                }
            }
            "failure" | "error" | "skipped" | "system-out" | "system-err" => {
                self.into = Target::Nothing;
            }
            _ => {}
        }
        Ok(())
    }

    fn text(&mut self, text: &str) {
        if self.in_rerun || self.into == Target::Nothing {
            return;
        }
        let target = match self.case.as_mut() {
            Some(case) => match self.into {
                Target::Detail => &mut case.detail,
                Target::Stdout => &mut case.stdout,
                _ => &mut case.stderr,
            },
            None => {
                let Some(suite) = self.suites.last_mut() else {
                    return;
                };
                match (self.into, suite.failure.as_mut()) {
                    (Target::Detail, Some(failure)) => &mut failure.detail,
                    (Target::Stdout, _) => &mut suite.stdout,
                    (Target::Stderr, _) => &mut suite.stderr,
                    _ => return,
                }
            }
        };
        target.push(text);
    }
}
