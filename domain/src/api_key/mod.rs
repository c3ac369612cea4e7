//! Organization-scoped API keys: created with scopes and an expiry, revocable. Only hashes are recorded.

mod aggregate;
mod commands;
mod error;
mod events;

pub use aggregate::*;
pub use commands::*;
pub use error::*;
pub use events::*;
