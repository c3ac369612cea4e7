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
pub mod nodes;
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
    DecodedBatch, ProjectionError, ProjectionStreams, Projector, Registry, Selection, StoredEvent,
    StoredJson, StreamRows,
};
pub use store::{Actor, AppendStats, CommandContext, CommandError, EventStore, OnConflict};

/// A page of rows from a read model, newest first, with whether more rows follow.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_next_page: bool,
    /// Whether newer rows come before this page (read backwards, or after a cursor).
    pub has_previous_page: bool,
}

impl<T> Page<T> {
    /// Builds a page from `limit + 1` fetched rows: the extra row only tells that another page exists.
    pub(crate) fn from_overfetch(mut rows: Vec<T>, limit: i64) -> Self {
        let has_next_page = rows.len() as i64 > limit;
        rows.truncate(limit.max(0) as usize);
        Self {
            items: rows,
            has_next_page,
            has_previous_page: false,
        }
    }

    /// Builds a page of a newest-first list read at `keyset` from `limit + 1` fetched rows (in the keyset's
    /// order): rows read backwards are put newest first again, and the page knows what lies on either side.
    pub(crate) fn from_keyset(rows: Vec<T>, limit: i64, keyset: &Keyset) -> Self {
        let Page {
            mut items,
            has_next_page: more,
            ..
        } = Self::from_overfetch(rows, limit);
        if keyset.backward {
            items.reverse();
            Self {
                items,
                // The row of the `before` cursor (or older ones) follows.
                has_next_page: keyset.cursor.is_some(),
                has_previous_page: more,
            }
        } else {
            Self {
                items,
                has_next_page: more,
                has_previous_page: keyset.cursor.is_some(),
            }
        }
    }
}

/// Where a page of a newest-first list starts: after a row, reading older rows (`first`/`after`), or before a
/// row, reading newer ones backwards (`last`/`before`); without a cursor, from the newest or the oldest end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Keyset {
    /// The `(sort time, id)` of the row the page starts next to.
    pub cursor: Option<(chrono::DateTime<chrono::Utc>, uuid::Uuid)>,
    /// Reading towards newer rows.
    pub backward: bool,
}

impl Keyset {
    /// Older rows after `cursor`, newest first.
    pub fn after(cursor: Option<(chrono::DateTime<chrono::Utc>, uuid::Uuid)>) -> Self {
        Self {
            cursor,
            backward: false,
        }
    }

    /// The SQL condition on `(time, id)` with the cursor bound as `$time_param` and `$id_param` (a cursor
    /// of `NULL`s matches every row).
    pub(crate) fn condition(&self, time: &str, id: &str, time_param: u8, id_param: u8) -> String {
        let op = if self.backward { ">" } else { "<" };
        format!("(${time_param}::timestamptz IS NULL OR ({time}, {id}) {op} (${time_param}, ${id_param}))")
    }

    /// The SQL order that reads from the cursor: newest first, or oldest first when reading backwards.
    pub(crate) fn order(&self, time: &str, id: &str) -> String {
        let direction = if self.backward { "ASC" } else { "DESC" };
        format!("{time} {direction}, {id} {direction}")
    }

    /// The cursor's time and id, to bind.
    pub(crate) fn binds(&self) -> (Option<chrono::DateTime<chrono::Utc>>, Option<uuid::Uuid>) {
        self.cursor.unzip()
    }
}

/// Splits rows fetched for several parents (`limit + 1` at most each) into one page per parent; a parent without
/// rows gets an empty page.
pub(crate) fn group_pages<T>(
    parents: &[uuid::Uuid],
    rows: Vec<T>,
    parent_of: impl Fn(&T) -> Option<uuid::Uuid>,
    limit: i64,
    keyset: &Keyset,
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
        .map(|(id, rows)| (id, Page::from_keyset(rows, limit, keyset)))
        .collect()
}
