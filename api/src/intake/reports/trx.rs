//! VSTest TRX files (`dotnet test --logger trx`, Azure DevOps' VSTest task): `<UnitTestResult>`s joined to their
//! `<UnitTest>` definitions (for the class and the assembly), which come after the results, so a result's title
//! is completed when the file ends.

use std::collections::HashMap;

use domain::build_queue::TestStatus;

use super::case::{qualified, Capped, Case};
use super::xml::{Element, Handler};
use super::{ReportError, Sink};

/// A `<UnitTestResult>` being read: data-driven tests nest their rows' results inside their own.
struct Frame {
    test_id: Option<String>,
    case: Case,
    has_rows: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Nothing,
    Message,
    Detail,
    Stdout,
    Stderr,
    RunInfo,
}

pub(super) struct Trx<'s, 'a> {
    sink: &'s mut Sink<'a>,
    run_name: Option<String>,
    frames: Vec<Frame>,
    /// Results read, waiting for their definitions.
    read: Vec<(Option<String>, Case)>,
    /// Test id -> (class, storage), from `<TestDefinitions>`.
    definitions: HashMap<String, (Option<String>, Option<String>)>,
    definition: Option<(String, Option<String>)>,
    target: Target,
    message: Capped,
    /// The run's own outcome (`<ResultSummary outcome>`), and its error messages (`<RunInfo outcome="Error">`).
    run_outcome: Option<String>,
    run_computer: Option<String>,
    run_messages: Capped,
    in_run_error: bool,
}

impl<'s, 'a> Trx<'s, 'a> {
    pub(super) fn new(sink: &'s mut Sink<'a>) -> Self {
        Self {
            sink,
            run_name: None,
            frames: Vec::new(),
            read: Vec::new(),
            definitions: HashMap::new(),
            definition: None,
            target: Target::Nothing,
            message: Capped::default(),
            run_outcome: None,
            run_computer: None,
            run_messages: Capped::default(),
            in_run_error: false,
        }
    }
}

/// A TRX outcome as a status: only what ran and did not fail passed, and what did not run is skipped.
fn status(outcome: &str) -> TestStatus {
    match outcome {
        "Passed" | "PassedButRunAborted" | "Completed" | "Warning" => TestStatus::Passed,
        "NotExecuted" | "Inconclusive" | "Pending" | "InProgress" | "NotRunnable" => {
            TestStatus::Skipped
        }
        // Failed, Error, Timeout, Aborted, Disconnected and anything unknown.
        _ => TestStatus::Failed,
    }
}

/// `hh:mm:ss.fffffff` (or `d.hh:mm:ss.fffffff`) to milliseconds.
fn duration_ms(text: Option<&str>) -> Option<u64> {
    let mut parts = text?.trim().rsplitn(3, ':');
    let seconds: f64 = parts.next()?.parse().ok()?;
    let minutes: f64 = parts.next()?.parse().ok()?;
    let hours_part = parts.next()?;
    let hours: f64 = match hours_part.split_once('.') {
        Some((days, hours)) => days.parse::<f64>().ok()? * 24.0 + hours.parse::<f64>().ok()?,
        None => hours_part.parse().ok()?,
    };
    super::case::seconds_to_ms(Some(
        &(hours * 3600.0 + minutes * 60.0 + seconds).to_string(),
    ))
}

impl Handler for Trx<'_, '_> {
    fn start(&mut self, element: &Element<'_>) -> Result<(), ReportError> {
        match element.name.as_str() {
            "TestRun" => self.run_name = element.attr("name").map(str::to_owned),
            "UnitTestResult" => {
                if let Some(parent) = self.frames.last_mut() {
                    parent.has_rows = true;
                }
                let name = element.attr("testName").unwrap_or_default();
                let mut case = Case::new(element.line, name.to_owned());
                case.duration_ms = duration_ms(element.attr("duration"));
                let outcome = element.attr("outcome").unwrap_or("Failed");
                case.status = status(outcome);
                case.outcome = Some(format!("TRX outcome {outcome}"));
                case.environment = element.attr("computerName").map(str::to_owned);
                self.frames.push(Frame {
                    test_id: element.attr("testId").map(str::to_owned),
                    case,
                    has_rows: false,
                });
            }
            "StdOut" if !self.frames.is_empty() => self.target = Target::Stdout,
            "StdErr" if !self.frames.is_empty() => self.target = Target::Stderr,
            "Message" if !self.frames.is_empty() => self.target = Target::Message,
            "StackTrace" if !self.frames.is_empty() => self.target = Target::Detail,
            "UnitTest" => {
                if let Some(id) = element.attr("id") {
                    self.definition =
                        Some((id.to_owned(), element.attr("storage").map(str::to_owned)));
                }
            }
            "TestMethod" => {
                if let Some((id, storage)) = self.definition.take() {
                    // Older MSTest writes `Namespace.Class, Assembly, Version=…`.
                    let class = element
                        .attr("className")
                        .map(|c| c.split(',').next().unwrap_or(c).trim().to_owned());
                    self.definitions.insert(id, (class, storage));
                }
            }
            "ResultSummary" => {
                self.run_outcome = element.attr("outcome").map(str::to_owned);
                self.run_computer = None;
            }
            "RunInfo" if element.attr("outcome") == Some("Error") => {
                self.in_run_error = true;
                if self.run_computer.is_none() {
                    self.run_computer = element.attr("computerName").map(str::to_owned);
                }
            }
            "Text" if self.in_run_error => self.target = Target::RunInfo,
            _ => {}
        }
        Ok(())
    }

    fn end(&mut self, name: &str) -> Result<(), ReportError> {
        match name {
            "UnitTestResult" => {
                if let Some(mut frame) = self.frames.pop() {
                    if let Some(message) = self.message.take() {
                        frame.case.message.get_or_insert(message);
                    }
                    // A data-driven test's own result repeats its rows: the rows are stored.
                    if !frame.has_rows {
                        self.read.push((frame.test_id, frame.case));
                    }
                }
            }
            "Message" => {
                if let (Some(message), Some(frame)) = (self.message.take(), self.frames.last_mut())
                {
                    frame.case.message.get_or_insert(message);
                }
                self.target = Target::Nothing;
            }
            "Text" if self.target == Target::RunInfo => {
                self.run_messages.push("\n");
                self.target = Target::Nothing;
            }
            "RunInfo" => self.in_run_error = false,
            "StdOut" | "StdErr" | "StackTrace" => self.target = Target::Nothing,
            _ => {}
        }
        Ok(())
    }

    fn text(&mut self, text: &str) {
        match (self.target, self.frames.last_mut()) {
            (Target::Message, _) => self.message.push(text),
            (Target::RunInfo, _) => self.run_messages.push(text),
            (Target::Detail, Some(frame)) => frame.case.detail.push(text),
            (Target::Stdout, Some(frame)) => frame.case.stdout.push(text),
            (Target::Stderr, Some(frame)) => frame.case.stderr.push(text),
            _ => {}
        }
    }

    fn finish(&mut self) {
        for (test_id, mut case) in std::mem::take(&mut self.read) {
            let definition = test_id.and_then(|id| self.definitions.get(&id));
            if let Some((class, storage)) = definition {
                case.title = qualified(class.as_deref(), &case.title);
                case.note("class", class.as_deref());
                case.note("assembly", storage.as_deref());
            }
            self.sink.push(case);
        }
        // The adapters' error lines repeat the failed tests' in a run that finished; in a run that did not
        // (the test host crashed, the run timed out), they are the only word of what went wrong, so the run
        // becomes a failed result of its own.
        if let Some(outcome @ ("Aborted" | "Error" | "Timeout")) = self.run_outcome.as_deref() {
            let run = self.run_name.as_deref().unwrap_or("test run");
            let mut case = Case::new(0, format!("{run} (run-level failure)"));
            case.status = TestStatus::Failed;
            case.outcome = Some(format!("the TRX run ended {outcome}, outside any test"));
            case.message = self.run_messages.take();
            case.environment = self.run_computer.take();
            self.sink.push(case);
        }
    }
}
