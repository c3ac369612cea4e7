//! Lathe's service: HTTP and GraphQL on axum, commands into the event store, queries against the read models.

pub mod address_limit;
pub mod auth;
pub mod azure;
pub mod cache;
pub mod cli;
pub mod config;
pub mod console;
pub mod error;
pub mod graphql;
pub mod input;
pub mod intake;
pub mod keys;
pub mod live;
pub mod metrics;
pub mod rate_limit;
pub mod retention;
pub mod router;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod transport;
pub mod usage;

pub use startup::Application;
