//! Test reports as test runners write them — JUnit XML, NUnit 3 (and 2), xUnit v2, VSTest TRX — read as a stream
//! of XML events into the same results a JSON ingest body holds. The mapping per format is in the README.

mod case;
mod junit;
mod nunit;
mod source;
mod trx;
mod xml;
mod xunit;

#[cfg(test)]
mod tests;

use domain::build_queue::TestResult;

use crate::error::{ApiError, FieldError};
use case::Case;
use xml::{Events, Handler};

pub(super) use source::Tracked;

/// Most problems with test names listed in one answer.
const MAX_PROBLEMS: usize = 100;

/// A report format, as `?format=` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Junit,
    Nunit,
    Xunit,
    Trx,
}

impl Format {
    /// `?format=`'s value.
    pub(super) fn parse(name: &str) -> Option<Self> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "junit" => Self::Junit,
            "nunit" => Self::Nunit,
            "xunit" => Self::Xunit,
            "trx" => Self::Trx,
            _ => return None,
        })
    }

    /// The format a root element belongs to.
    fn of_root(name: &str) -> Option<Self> {
        Some(match name {
            "testsuites" | "testsuite" => Self::Junit,
            "test-run" | "test-results" | "test-suite" => Self::Nunit,
            "assemblies" | "assembly" => Self::Xunit,
            "TestRun" => Self::Trx,
            _ => return None,
        })
    }

    fn roots(self) -> &'static str {
        match self {
            Self::Junit => "<testsuites> or <testsuite>",
            Self::Nunit => "<test-run> (NUnit 3) or <test-results> (NUnit 2)",
            Self::Xunit => "<assemblies> or <assembly>",
            Self::Trx => "<TestRun>",
        }
    }
}

/// Why a report could not be read.
#[derive(Debug)]
pub(super) enum ReportError {
    /// Not well-formed XML, at a line and column.
    Malformed(String),
    /// A DOCTYPE (DTDs and entities are refused).
    Refused(String),
    /// Well-formed, but not a report we read.
    Invalid(String),
    /// Test names that cannot be stored, each named.
    Fields(Vec<FieldError>),
    /// More decoded bytes than the ingest limit.
    TooLarge,
    /// A gzip stream that is not one.
    BadGzip(String),
}

impl ReportError {
    /// The answer, naming the report (`body` or the uploaded file's name).
    pub(super) fn into_api(self, label: &str, limit_bytes: usize) -> ApiError {
        match self {
            Self::Malformed(message) | Self::Refused(message) | Self::Invalid(message) => {
                ApiError::InvalidFields(vec![FieldError::new(label, message)])
            }
            Self::Fields(fields) => ApiError::InvalidFields(fields),
            Self::TooLarge => ApiError::PayloadTooLarge { limit_bytes },
            Self::BadGzip(message) => {
                ApiError::BadUserInput(format!("{label} is not a valid gzip stream: {message}"))
            }
        }
    }
}

/// Where read results go, with the problems of the cases that cannot be stored.
pub(super) struct Sink<'a> {
    label: &'a str,
    results: &'a mut Vec<TestResult>,
    problems: Vec<FieldError>,
}

impl Sink<'_> {
    fn push(&mut self, case: Case) {
        match case.finish(self.label) {
            Ok(result) => self.results.push(result),
            Err(problem) => {
                if self.problems.len() < MAX_PROBLEMS {
                    self.problems.push(problem);
                }
            }
        }
    }
}

/// Reads one report from `source` into `results` and returns how many decoded bytes it held. `format` is the
/// caller's `?format=`, checked against the root element.
pub(super) fn read(
    source: Tracked<'_>,
    format: Option<Format>,
    label: &str,
    results: &mut Vec<TestResult>,
) -> Result<u64, ReportError> {
    let mut events = Events::new(source);
    let root = events.root()?;
    let found = Format::of_root(&root.name);
    let format = match (format, found) {
        (Some(wanted), Some(found)) if wanted == found => found,
        (None, Some(found)) => found,
        (Some(wanted), _) => {
            return Err(ReportError::Invalid(format!(
                "the root element <{}> is not a {wanted:?} report's ({})",
                root.name,
                wanted.roots()
            )))
        }
        (None, None) => {
            return Err(ReportError::Invalid(format!(
                "the root element <{}> is not a test report's: expected JUnit <testsuites>/<testsuite>, NUnit \
                 <test-run>/<test-results>, xUnit <assemblies>/<assembly> or TRX <TestRun>",
                root.name
            )))
        }
    };
    let mut sink = Sink {
        label,
        results,
        problems: Vec::new(),
    };
    {
        let mut handler: Box<dyn Handler + '_> = match format {
            Format::Junit => Box::new(junit::Junit::new(&mut sink)),
            Format::Nunit => Box::new(nunit::Nunit::new(&mut sink)),
            Format::Xunit => Box::new(xunit::Xunit::new(&mut sink)),
            Format::Trx => Box::new(trx::Trx::new(&mut sink)),
        };
        handler.start(&root)?;
        if events.root_open() {
            events.run(handler.as_mut())?;
        } else {
            handler.end(&root.name)?;
        }
        handler.finish();
    }
    if !sink.problems.is_empty() {
        return Err(ReportError::Fields(sink.problems));
    }
    Ok(events.into_source().read())
}
