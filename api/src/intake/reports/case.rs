//! One test case as a report format read it, and how it becomes a stored result: the same rules as a JSON
//! result (`crate::input`), with the suite, class, file and output kept in the notes of the results that failed.

use domain::build_queue::{TestResult, TestStatus};
use uuid::Uuid;

use crate::error::FieldError;
use crate::input::{self, TOOL_OUTPUT};

/// Text read from a report (a stack trace, a test's output), kept up to the tool-output limit while the rest is
/// only counted: a 30 MB `<system-out>` never exists in memory whole.
#[derive(Default)]
pub(super) struct Capped {
    text: String,
    chars: usize,
    cut: u64,
}

impl Capped {
    pub(super) fn push(&mut self, piece: &str) {
        let room = TOOL_OUTPUT.max_chars - self.chars;
        match piece.char_indices().nth(room) {
            None => {
                self.text.push_str(piece);
                self.chars += piece.chars().count();
            }
            Some((at, _)) => {
                self.text.push_str(&piece[..at]);
                self.chars = TOOL_OUTPUT.max_chars;
                self.cut += piece[at..].chars().count() as u64;
            }
        }
    }

    /// The text kept, trimmed, with a note of what was cut; `None` when blank.
    pub(super) fn take(&mut self) -> Option<String> {
        let mut text = std::mem::take(&mut self.text).trim().to_owned();
        if self.cut > 0 {
            text.push_str(&format!("\n[… {} more characters cut by Lathe]", self.cut));
        }
        *self = Self::default();
        Some(text).filter(|t| !t.is_empty())
    }
}

/// A test case as read, before it is checked and stored.
pub(super) struct Case {
    /// The line of the report it starts on, for a message naming it.
    pub(super) line: u64,
    /// The stored title (e.g. `class.name`); checked like a JSON `title`.
    pub(super) title: String,
    pub(super) status: TestStatus,
    pub(super) duration_ms: Option<u64>,
    /// The failure's or skip's one-line summary, when the format gives one.
    pub(super) message: Option<String>,
    /// The failure's detail (a stack trace).
    pub(super) detail: Capped,
    /// What the format says of the failure beyond pass/fail (e.g. `error (JUnit <error>)`, `TRX outcome Timeout`).
    pub(super) outcome: Option<String>,
    /// `name: value` lines kept for a person reading the failure (suite, class, file, properties).
    pub(super) context: Vec<(String, String)>,
    pub(super) stdout: Capped,
    pub(super) stderr: Capped,
    pub(super) environment: Option<String>,
}

impl Case {
    pub(super) fn new(line: u64, title: String) -> Self {
        Self {
            line,
            title,
            status: TestStatus::Passed,
            duration_ms: None,
            message: None,
            detail: Capped::default(),
            outcome: None,
            context: Vec::new(),
            stdout: Capped::default(),
            stderr: Capped::default(),
            environment: None,
        }
    }

    /// Adds a `name: value` line to the notes, when there is a value.
    pub(super) fn note(&mut self, name: &str, value: Option<&str>) {
        if let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) {
            self.context.push((name.to_owned(), value.to_owned()));
        }
    }

    /// The stored result, or why its title cannot be stored (named by the report and line).
    ///
    /// A failed result always has an error message: the format's message, else whatever is known (the outcome,
    /// the exception type, the first line of the trace). Notes (suite, class, file, outcome, output) and the
    /// environment (the host it ran on) are kept for failed results only: a reader of a failure needs them, and
    /// 100,000 passing tests would store them for nobody (and hold them in memory while they are written).
    pub(super) fn finish(mut self, label: &str) -> Result<TestResult, FieldError> {
        let title = input::TEST_TITLE
            .apply(self.title.trim())
            .map_err(|problem| {
                FieldError::new(
                    format!("{label}: the test at line {}", self.line),
                    format!("its name {problem}"),
                )
            })?
            .into_owned();
        if title.is_empty() {
            return Err(FieldError::new(
                format!("{label}: the test at line {}", self.line),
                "has no name",
            ));
        }
        let detail = self.detail.take();
        let error_message = match self.status {
            TestStatus::Passed => None,
            TestStatus::Skipped => join(self.message.take(), detail),
            // Without a message, the trace (whose first line is usually the exception) speaks for itself;
            // without either, the message says what the report does say.
            TestStatus::Failed => match (self.message.take(), detail) {
                (None, None) => Some(format!(
                    "{}, with no error message in the report",
                    self.outcome.as_deref().unwrap_or("failed")
                )),
                (message, detail) => join(message, detail),
            },
        };
        let tester_notes = (self.status == TestStatus::Failed)
            .then(|| self.notes())
            .flatten();
        Ok(TestResult {
            test_result_id: Uuid::now_v7(),
            title,
            status: self.status,
            duration_ms: self.duration_ms,
            error_message: error_message.map(|text| cleaned(&text, TOOL_OUTPUT)),
            priority: None,
            steps: None,
            tester_notes: tester_notes.map(|text| cleaned(&text, TOOL_OUTPUT)),
            environment: self
                .environment
                .filter(|_| self.status == TestStatus::Failed)
                .map(|text| cleaned(&text, input::TOOL_OUTPUT_SHORT)),
        })
    }

    fn notes(&mut self) -> Option<String> {
        let mut notes = String::new();
        if let Some(outcome) = &self.outcome {
            notes.push_str(&format!("outcome: {outcome}\n"));
        }
        for (name, value) in &self.context {
            notes.push_str(&format!("{name}: {value}\n"));
        }
        if let Some(out) = self.stdout.take() {
            notes.push_str(&format!("--- standard output ---\n{out}\n"));
        }
        if let Some(err) = self.stderr.take() {
            notes.push_str(&format!("--- standard error ---\n{err}\n"));
        }
        Some(notes.trim_end().to_owned()).filter(|n| !n.is_empty())
    }
}

/// The title of a test named within a class (or file, or package): `class.name`, as Azure DevOps names automated
/// tests, unless the name already holds the class (jest-junit, mocha, xUnit display names).
pub(super) fn qualified(class: Option<&str>, name: &str) -> String {
    match class.map(str::trim).filter(|c| !c.is_empty()) {
        Some(class) if !name.contains(class) => format!("{class}.{name}"),
        _ => name.to_owned(),
    }
}

/// Seconds as reports write them (`0.012`, `12`, `1,234.5`) to milliseconds; `None` when unreadable or out of
/// range (a tool's odd time does not refuse the upload; the result is stored without one).
pub(super) fn seconds_to_ms(text: Option<&str>) -> Option<u64> {
    let seconds: f64 = text?.trim().replace(',', "").parse().ok()?;
    let ms = seconds * 1000.0;
    (ms.is_finite() && (0.0..=input::MAX_DURATION_MS as f64).contains(&ms))
        .then(|| ms.round() as u64)
}

fn join(headline: Option<String>, detail: Option<String>) -> Option<String> {
    match (headline, detail) {
        (Some(h), Some(d)) if d.starts_with(h.trim()) => Some(d),
        (Some(h), Some(d)) => Some(format!("{}\n\n{d}", h.trim())),
        (Some(h), None) => Some(h.trim().to_owned()).filter(|h| !h.is_empty()),
        (None, d) => d,
    }
}

fn cleaned(text: &str, rule: input::TextRule) -> String {
    // Tool output is never refused: `apply` only cleans it.
    rule.apply(text)
        .map(|text| text.into_owned())
        .unwrap_or_default()
}
