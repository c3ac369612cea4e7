//! GraphQL for the Azure DevOps integration: connecting a project, creating work items on demand, and the outbox
//! of calls with their last errors. The personal access token goes in and never comes out.

mod mutation;
mod types;

use async_graphql::{Context, Object};

use domain::api_key::Scope;
use projections::outbox;

use crate::error::ApiError;
use crate::graphql::Resolver;

pub use mutation::AzureMutation;
pub use types::{AzureDevOpsConnection, AzureDevOpsDelivery, DeliveryStatus};

/// The integration's queries, merged into the root query.
#[derive(Default)]
pub struct AzureQuery;

#[Object]
impl AzureQuery {
    /// Calls to Azure DevOps, newest first: pending ones with their next attempt, failed ones with their error.
    #[graphql(
        complexity = "crate::graphql::budget::listed(first.clamp(1, 500) as usize, child_complexity)"
    )]
    async fn azure_dev_ops_deliveries(
        &self,
        ctx: &Context<'_>,
        status: Option<DeliveryStatus>,
        #[graphql(default = 50)] first: i32,
    ) -> async_graphql::Result<Vec<AzureDevOpsDelivery>> {
        let r = Resolver::new(ctx, Scope::BuildsRead)?;
        let rows = outbox::list(
            &r.state.pool,
            r.organization_id(),
            status.map(DeliveryStatus::as_str),
            i64::from(first.clamp(1, 500)),
        )
        .await
        .map_err(ApiError::from)?;
        Ok(rows.into_iter().map(AzureDevOpsDelivery).collect())
    }
}
