//! xUnit.net v2 result files: `<assemblies>` of `<assembly>`, each with `<collection>`s of `<test>`s and the
//! `<errors>` that belong to no test (a class's or assembly's cleanup failed, a fatal error).

use domain::build_queue::TestStatus;

use super::case::{qualified, seconds_to_ms, Case};
use super::xml::{Element, Handler};
use super::{ReportError, Sink};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Nothing,
    Message,
    Detail,
    Stdout,
}

pub(super) struct Xunit<'s, 'a> {
    sink: &'s mut Sink<'a>,
    assembly: Option<String>,
    environment: Option<String>,
    /// The test, or the `<error>` of no test, being read.
    case: Option<Case>,
    target: Target,
    message: super::case::Capped,
}

impl<'s, 'a> Xunit<'s, 'a> {
    pub(super) fn new(sink: &'s mut Sink<'a>) -> Self {
        Self {
            sink,
            assembly: None,
            environment: None,
            case: None,
            target: Target::Nothing,
            message: super::case::Capped::default(),
        }
    }
}

impl Handler for Xunit<'_, '_> {
    fn start(&mut self, element: &Element<'_>) -> Result<(), ReportError> {
        match element.name.as_str() {
            "assembly" => {
                self.assembly = element.attr("name").map(str::to_owned);
                self.environment = element.attr("environment").map(str::to_owned);
            }
            "test" => {
                let name = element.attr("name").unwrap_or_default();
                let class = element.attr("type");
                let mut case = Case::new(element.line, qualified(class, name));
                case.duration_ms = seconds_to_ms(element.attr("time"));
                let result = element.attr("result").unwrap_or("Pass");
                case.status = match result {
                    "Pass" => TestStatus::Passed,
                    "Skip" | "NotRun" => TestStatus::Skipped,
                    _ => TestStatus::Failed,
                };
                case.outcome = Some(format!("xUnit result {result}"));
                case.environment = self.environment.clone();
                case.note("class", class);
                case.note("assembly", self.assembly.as_deref());
                case.note("source file", element.attr("source-file"));
                self.case = Some(case);
            }
            "error" if self.case.is_none() => {
                // An error of no test: named by what failed (a class, a collection, the assembly).
                let kind = element.attr("type").unwrap_or("error");
                let of = element
                    .attr("name")
                    .or(self.assembly.as_deref())
                    .unwrap_or("test assembly");
                let mut case = Case::new(element.line, format!("{of} ({kind}, no test case)"));
                case.status = TestStatus::Failed;
                case.outcome = Some(format!("xUnit error of type {kind}, outside any test"));
                case.environment = self.environment.clone();
                case.note("assembly", self.assembly.as_deref());
                self.case = Some(case);
            }
            "failure" => {
                if let Some(case) = self.case.as_mut() {
                    case.status = TestStatus::Failed;
                    if let Some(exception) = element.attr("exception-type") {
                        case.note("exception type", Some(exception));
                    }
                }
            }
            "message" => self.target = Target::Message,
            // A skip's reason is its message.
            "reason" => self.target = Target::Message,
            "stack-trace" => self.target = Target::Detail,
            "output" => self.target = Target::Stdout,
            "trait" => {
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
            "message" | "reason" => {
                let message = self.message.take();
                if let Some(case) = self.case.as_mut() {
                    if case.message.is_none() {
                        case.message = message;
                    }
                }
                self.target = Target::Nothing;
            }
            "stack-trace" | "output" => self.target = Target::Nothing,
            "test" | "error" => {
                if let Some(case) = self.case.take() {
                    self.sink.push(case);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn text(&mut self, text: &str) {
        match (self.target, self.case.as_mut()) {
            (Target::Message, _) => self.message.push(text),
            (Target::Detail, Some(case)) => case.detail.push(text),
            (Target::Stdout, Some(case)) => case.stdout.push(text),
            _ => {}
        }
    }
}
