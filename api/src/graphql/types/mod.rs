//! GraphQL output types over the read-model rows.

mod builds;
mod deliveries;
mod keys;
mod projects;
mod releases;
mod retention_sync;

use async_graphql::SimpleObject;
use chrono::{DateTime, Utc};

use projections::deliveries::DeliveryRow;
use projections::{builds::BuildRow, releases::ReleaseRow, Page};

use super::cursor;

pub use builds::*;
pub use deliveries::*;
pub use keys::*;
pub use projects::*;
pub use releases::*;
pub use retention_sync::*;

macro_rules! connection_type {
    ($connection:ident, $edge:ident, $node:ty, counted) => {
        /// A page of results with keyset cursors, and how many there are in all.
        #[derive(SimpleObject)]
        pub struct $connection {
            pub edges: Vec<$edge>,
            pub page_info: PageInfo,
            /// How many items the whole list holds (every page).
            pub total_count: i64,
        }

        /// One result and its cursor.
        #[derive(SimpleObject)]
        pub struct $edge {
            pub cursor: String,
            pub node: $node,
        }

        impl From<(Vec<(String, $node)>, PageInfo)> for $connection {
            fn from((items, page_info): (Vec<(String, $node)>, PageInfo)) -> Self {
                Self {
                    edges: items
                        .into_iter()
                        .map(|(cursor, node)| $edge { cursor, node })
                        .collect(),
                    page_info,
                    total_count: 0,
                }
            }
        }
    };
    ($connection:ident, $edge:ident, $node:ty) => {
        /// A page of results with keyset cursors.
        #[derive(SimpleObject)]
        pub struct $connection {
            pub edges: Vec<$edge>,
            pub page_info: PageInfo,
        }

        /// One result and its cursor.
        #[derive(SimpleObject)]
        pub struct $edge {
            pub cursor: String,
            pub node: $node,
        }

        impl From<(Vec<(String, $node)>, PageInfo)> for $connection {
            fn from((items, page_info): (Vec<(String, $node)>, PageInfo)) -> Self {
                Self {
                    edges: items
                        .into_iter()
                        .map(|(cursor, node)| $edge { cursor, node })
                        .collect(),
                    page_info,
                }
            }
        }
    };
}

connection_type!(QueuedBuildConnection, QueuedBuildEdge, QueuedBuild, counted);
connection_type!(BuildConnection, BuildEdge, Build, counted);
connection_type!(ReleaseConnection, ReleaseEdge, Release);
connection_type!(TestResultConnection, TestResultEdge, TestResult);
connection_type!(DeliveryConnection, DeliveryEdge, Delivery);

/// Where a page starts and ends (Relay's `PageInfo`).
#[derive(SimpleObject)]
pub struct PageInfo {
    /// Whether older items follow (read them with `first` and `after: endCursor`).
    pub has_next_page: bool,
    /// Whether newer items come before (read them with `last` and `before: startCursor`). Lists that only
    /// page forwards answer whether the page was read after a cursor.
    pub has_previous_page: bool,
    /// The first item's cursor: pass as `before` to read the page before.
    pub start_cursor: Option<String>,
    /// The last item's cursor: pass as `after` to read the next page.
    pub end_cursor: Option<String>,
}

/// Turns a read-model page into a connection, with cursors made from each row's sort key.
pub fn connection<R, N, C>(
    page: Page<R>,
    sort_time: impl Fn(&R) -> DateTime<Utc>,
    node: impl Fn(R) -> N,
) -> C
where
    R: RowId,
    C: From<(Vec<(String, N)>, PageInfo)>,
{
    let (has_next_page, has_previous_page) = (page.has_next_page, page.has_previous_page);
    let items: Vec<(String, N)> = page
        .items
        .into_iter()
        .map(|row| (cursor::encode(sort_time(&row), row.row_id()), node(row)))
        .collect();
    let start_cursor = items.first().map(|(cursor, _)| cursor.clone());
    let end_cursor = items.last().map(|(cursor, _)| cursor.clone());
    C::from((
        items,
        PageInfo {
            has_next_page,
            has_previous_page,
            start_cursor,
            end_cursor,
        },
    ))
}

/// A build's or release's project, read with the other projects of the same list (see [`crate::graphql::loaders`]).
pub(crate) async fn project_of(
    ctx: &async_graphql::Context<'_>,
    organization_id: uuid::Uuid,
    project_id: Option<uuid::Uuid>,
) -> async_graphql::Result<Option<Project>> {
    let Some(project_id) = project_id else {
        return Ok(None);
    };
    let row = ctx
        .data::<crate::graphql::loaders::Loaders>()?
        .load_one(crate::graphql::loaders::ProjectOf {
            organization_id,
            project_id,
        })
        .await
        .map_err(crate::error::ApiError::from)?;
    Ok(row.map(|row| Project((*row).clone())))
}

/// A build's release, read with the releases of the other builds of the same list.
pub(crate) async fn release_of(
    ctx: &async_graphql::Context<'_>,
    organization_id: uuid::Uuid,
    release_id: Option<uuid::Uuid>,
) -> async_graphql::Result<Option<Release>> {
    let Some(release_id) = release_id else {
        return Ok(None);
    };
    let row = ctx
        .data::<crate::graphql::loaders::Loaders>()?
        .load_one(crate::graphql::loaders::ReleaseOf {
            organization_id,
            release_id,
        })
        .await
        .map_err(crate::error::ApiError::from)?;
    Ok(row.map(|row| Release::from((*row).clone())))
}

/// The id a row's cursor is made from.
pub trait RowId {
    fn row_id(&self) -> uuid::Uuid;
}

impl RowId for BuildRow {
    fn row_id(&self) -> uuid::Uuid {
        self.build_id
    }
}

impl RowId for DeliveryRow {
    fn row_id(&self) -> uuid::Uuid {
        self.delivery_id
    }
}

impl RowId for ReleaseRow {
    fn row_id(&self) -> uuid::Uuid {
        self.release_id
    }
}
