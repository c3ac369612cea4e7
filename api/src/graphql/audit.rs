//! The auditors' view (scope `audit:read`): the event history in commit order, one build's whole life, and how
//! far each projection is behind the events. The fields that read a whole history may be asked for once per
//! request (see [`super::budget::ONCE_PER_REQUEST`]).

mod types;

use async_graphql::{Context, Object, ID};

use domain::api_key::Scope;
use projections::audit::{self, EventFilter};
use projections::{deliveries, replay, Registry};

use super::types::Delivery;
use super::{budget, parse_id, Resolver};
use crate::error::ApiError;

use types::{AuditEventConnection, AuditSeal, BuildHistory, ProjectionStatus};

/// Audit queries, merged into the root query.
#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// The organization's events in commit order, optionally of one aggregate type or instance.
    #[graphql(complexity = "budget::paged(first, child_complexity)")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        aggregate_type: Option<String>,
        aggregate_id: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<AuditEventConnection> {
        let r = Resolver::new(ctx, Scope::AuditRead)?;
        let filter = EventFilter {
            organization_id: Some(r.organization_id()),
            aggregate_type,
            aggregate_id,
            ..EventFilter::default()
        };
        Ok(AuditEventConnection::read(&r.state.pool, filter, first, after).await?)
    }

    /// The whole life of one build or queue entry, from delivery to assignment or rejection, with actors. Once per
    /// request; its events come a page at a time.
    #[graphql(complexity = "50 + child_complexity")]
    async fn build_history(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<BuildHistory> {
        let r = Resolver::new(ctx, Scope::AuditRead)?;
        let build_id = parse_id(&id, "id")?;
        let mut first = BuildHistory::stream(r.organization_id(), &build_id.to_string());
        // Whether the stream exists, without reading a payload.
        first.payload_inline_max = Some(0);
        let exists = !audit::page(&r.state.pool, &first, 1)
            .await
            .map_err(ApiError::from)?
            .items
            .is_empty();
        if !exists {
            return Err(ApiError::NotFound(format!("no build {build_id}")).into());
        }
        let deliveries = deliveries::for_build(&r.state.pool, r.organization_id(), build_id)
            .await
            .map_err(ApiError::from)?;
        Ok(BuildHistory {
            build_id: ID(build_id.to_string()),
            deliveries: deliveries.into_iter().map(Delivery).collect(),
            organization_id: r.organization_id(),
        })
    }

    /// Seals the organization's event history as it stands. Each stream's hash chain shows an edited or removed
    /// event inside it; a seal kept outside Lathe also shows a stream deleted whole, events cut from a stream's end,
    /// or a stream rewritten with recomputed links. Once per request.
    #[graphql(complexity = "500 + child_complexity")]
    async fn audit_seal(&self, ctx: &Context<'_>) -> async_graphql::Result<AuditSeal> {
        let r = Resolver::new(ctx, Scope::AuditRead)?;
        let seal = audit::organization_seal(&r.state.pool, r.organization_id(), None)
            .await
            .map_err(ApiError::from)?;
        Ok(AuditSeal {
            seal: seal.to_string(),
            horizon: seal.horizon.to_string(),
            events: seal.events as i64,
            digest: seal.digest,
        })
    }

    /// Whether the organization's events committed before `seal` (from `auditSeal`) are still the sealed ones:
    /// false when any of them was deleted, cut off, inserted or rewritten since. Events committed after it do not
    /// change the answer. Once per request.
    #[graphql(complexity = 500)]
    async fn audit_seal_holds(
        &self,
        ctx: &Context<'_>,
        seal: String,
    ) -> async_graphql::Result<bool> {
        let r = Resolver::new(ctx, Scope::AuditRead)?;
        let seal: audit::Seal = seal.parse().map_err(ApiError::BadUserInput)?;
        let current = audit::current_horizon(&r.state.pool)
            .await
            .map_err(ApiError::from)?;
        if seal.horizon > current {
            return Err(ApiError::BadUserInput(format!(
                "the seal's horizon {} is later than this server's {current}: it was not taken here",
                seal.horizon
            ))
            .into());
        }
        let now = audit::organization_seal(&r.state.pool, r.organization_id(), Some(seal.horizon))
            .await
            .map_err(ApiError::from)?;
        Ok(now == seal)
    }

    /// Whether each projection holds every stream of the organization. Once per request.
    #[graphql(complexity = "100 + child_complexity")]
    async fn projection_status(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<ProjectionStatus>> {
        let r = Resolver::new(ctx, Scope::AuditRead)?;
        let missing = replay::missing_streams_of(
            &r.state.pool,
            &Registry::standard(),
            Some(r.organization_id()),
        )
        .await
        .map_err(ApiError::from)?;
        Ok(missing
            .into_iter()
            .map(|(name, missing_streams)| ProjectionStatus {
                name,
                missing_streams,
            })
            .collect())
    }
}
