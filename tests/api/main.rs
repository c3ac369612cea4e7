//! End-to-end tests of the Lathe service: every test starts the real application on port 0 against its own fresh
//! PostgreSQL database and talks to it over HTTP.

mod audit;
mod auth;
mod authority;
mod browser;
mod console;
mod corrections;
mod durability;
mod fake_azure;
mod graphql_cost;
mod health;
mod hostile_input;
mod ingest;
mod integration;
mod process;
mod projects;
mod queue;
mod relay;
mod releases;
mod reports;
mod rules;
mod schema;
mod subscriptions;
mod support;
mod transport;
mod webhook;
