//! A project: what builds are matched to, by its URL, name, repositories and Azure DevOps ids.

mod aggregate;
mod commands;
mod error;
mod events;
mod lifecycle;
mod retention;

pub use aggregate::*;
pub use commands::*;
pub use error::*;
pub use events::*;
pub use retention::*;
