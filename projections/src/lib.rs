//! Lathe's read models and its event store seam. Every SQL statement of the service lives in this crate.
//!
//! Commands go through [`EventStore`], whose repository appends the events and applies every projection in the
//! same transaction: a read model is never behind its events, and nothing is half-written. `replay` rebuilds the
//! read models from the event table aside and swaps them in; `audit` verifies and exports the history.

pub mod api_keys;
pub mod audit;
pub mod azure;
pub mod builds;
mod database;
pub mod deliveries;
pub mod housekeeping;
pub mod idempotency;
pub mod jobs;
pub mod live;
pub mod organizations;
pub mod outbox;
mod projector;
pub mod projects;
pub mod rate_limits;
pub mod releases;
pub mod replay;
mod store;
pub mod test_results;

pub use database::{
    connect, connect_relaxed, ensure_database, migrate, DatabaseError, HeldConnection, READ_SCHEMA,
};
pub use projector::{
    DecodedBatch, ProjectionError, Projector, Registry, Selection, StoredEvent, StoredJson,
};
pub use store::{Actor, AppendStats, CommandContext, CommandError, EventStore, OnConflict};

/// A page of rows from a read model, newest first, with whether more rows follow.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_next_page: bool,
}

impl<T> Page<T> {
    /// Builds a page from `limit + 1` fetched rows: the extra row only tells that another page exists.
    pub(crate) fn from_overfetch(mut rows: Vec<T>, limit: i64) -> Self {
        let has_next_page = rows.len() as i64 > limit;
        rows.truncate(limit.max(0) as usize);
        Self {
            items: rows,
            has_next_page,
        }
    }
}

/// Splits rows fetched for several parents (`limit + 1` at most each) into one page per parent; a parent without
/// rows gets an empty page.
pub(crate) fn group_pages<T>(
    parents: &[uuid::Uuid],
    rows: Vec<T>,
    parent_of: impl Fn(&T) -> Option<uuid::Uuid>,
    limit: i64,
) -> std::collections::HashMap<uuid::Uuid, Page<T>> {
    let mut grouped: std::collections::HashMap<uuid::Uuid, Vec<T>> =
        parents.iter().map(|id| (*id, Vec::new())).collect();
    for row in rows {
        if let Some(rows) = parent_of(&row).and_then(|id| grouped.get_mut(&id)) {
            rows.push(row);
        }
    }
    grouped
        .into_iter()
        .map(|(id, rows)| (id, Page::from_overfetch(rows, limit)))
        .collect()
}
