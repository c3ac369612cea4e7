//! Lathe's domain: the aggregates that turn CI builds into releases, their commands, events and rules.
//!
//! Nothing here does I/O. Every decision a command needs from outside its own stream (the release a build is
//! assigned to, the project a build matched) travels inside the command, so `handle` stays pure and testable
//! with `cqrs_es::test::TestFramework`.

pub mod api_key;
pub mod azure;
pub mod branches;
pub mod build_queue;
pub mod matching;
pub mod organization;
pub mod project;
pub mod release;
mod text;
pub mod urls;

pub use text::{clean_text, validate_name, NameError, MAX_NAME_CHARS, MAX_TEST_TITLE_CHARS};
