//! Mutations: projects, releases, the queue's assignment actions, corrections of mistakes, and API keys.

mod api_key;
mod corrections;
mod project;
mod queue;
mod release;
mod retire;

use uuid::Uuid;

use projections::{projects, releases};

use crate::error::ApiError;
use crate::graphql::Resolver;

pub use api_key::ApiKeyMutation;
pub use corrections::CorrectionMutation;
pub use project::ProjectMutation;
pub use queue::QueueMutation;
pub use release::ReleaseMutation;
pub use retire::HousekeepingMutation;

async fn load_project(r: &Resolver<'_>, id: Uuid) -> Result<projects::ProjectRow, ApiError> {
    projects::find(&r.state.pool, r.organization_id(), id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no project {id}")))
}

async fn load_release(r: &Resolver<'_>, id: Uuid) -> Result<releases::ReleaseRow, ApiError> {
    releases::find(&r.state.pool, r.organization_id(), id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no release {id}")))
}
