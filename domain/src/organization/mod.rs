//! An organization: the tenant that owns projects, releases, builds and API keys.

mod aggregate;
mod commands;
mod error;
mod events;

pub use aggregate::*;
pub use commands::*;
pub use error::*;
pub use events::*;
