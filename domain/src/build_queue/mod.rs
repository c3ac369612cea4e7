//! The build queue: one aggregate instance per incoming build, from delivery to a release or a rejection.

mod aggregate;
mod commands;
mod corrections;
mod error;
mod events;

pub use aggregate::*;
pub use commands::*;
pub use error::*;
pub use events::*;
