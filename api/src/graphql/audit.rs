//! The auditors' view (scope `audit:read`): the event history in commit order, one build's whole life, and how
//! far each projection is behind the events.

use async_graphql::{Context, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use serde_json::Value;

use domain::api_key::Scope;
use domain::build_queue::BuildQueue;
use projections::audit::{self, EventFilter, EventRecord};
use projections::{deliveries, replay, Registry};

use super::types::{Delivery, PageInfo};
use super::{cursor, parse_id, Resolver};
use crate::error::ApiError;

/// Who caused an event, read from its metadata.
#[derive(SimpleObject)]
pub struct EventActor {
    /// `api_key`, `organization_id` or `operator`.
    pub r#type: Option<String>,
    pub api_key_id: Option<String>,
    pub api_key_prefix: Option<String>,
    pub organization_id: Option<String>,
    /// The Azure DevOps service-hook subscription and notification that delivered the build, if any.
    pub azure_subscription_id: Option<String>,
    pub azure_notification_id: Option<String>,
    pub request_id: Option<String>,
}

/// One stored event.
pub struct AuditEvent(pub EventRecord);

#[Object]
impl AuditEvent {
    /// The event's place in the global order (with the transaction id).
    async fn position(&self) -> i64 {
        self.0.position
    }
    async fn aggregate_type(&self) -> &str {
        &self.0.aggregate_type
    }
    async fn aggregate_id(&self) -> &str {
        &self.0.aggregate_id
    }
    async fn sequence(&self) -> i64 {
        self.0.sequence
    }
    async fn event_type(&self) -> &str {
        &self.0.event_type
    }
    async fn event_version(&self) -> &str {
        &self.0.event_version
    }
    async fn payload(&self) -> async_graphql::Json<&Value> {
        async_graphql::Json(&self.0.payload)
    }
    async fn metadata(&self) -> async_graphql::Json<&Value> {
        async_graphql::Json(&self.0.metadata)
    }
    async fn recorded_at(&self) -> DateTime<Utc> {
        self.0.recorded_at
    }
    /// This event's link in its stream's SHA-256 chain.
    async fn hash(&self) -> &str {
        &self.0.hash
    }
    async fn actor(&self) -> EventActor {
        let field = |name: &str| {
            self.0
                .metadata
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        EventActor {
            r#type: field("actor.type"),
            api_key_id: field("actor.api_key_id"),
            api_key_prefix: field("actor.api_key_prefix"),
            organization_id: field("organization_id"),
            azure_subscription_id: field("azure.subscription_id"),
            azure_notification_id: field("azure.notification_id"),
            request_id: field("request_id"),
        }
    }
}

/// A page of events with cursors.
#[derive(SimpleObject)]
pub struct AuditEventConnection {
    pub edges: Vec<AuditEventEdge>,
    pub page_info: PageInfo,
}

/// One event and its cursor.
#[derive(SimpleObject)]
pub struct AuditEventEdge {
    pub cursor: String,
    pub node: AuditEvent,
}

/// Everything that happened to one build: the deliveries that reported it and the events of its stream.
#[derive(SimpleObject)]
pub struct BuildHistory {
    pub build_id: ID,
    pub deliveries: Vec<Delivery>,
    pub events: Vec<AuditEvent>,
}

/// Whether one projection holds every stream of the event store.
#[derive(SimpleObject)]
pub struct ProjectionStatus {
    pub name: String,
    /// Streams in the event store without their row in this read model (expired builds excepted). Projections are
    /// applied in the append's own transaction, so this is 0 unless a read model was edited behind the service's
    /// back; `lathe replay` repairs it.
    pub missing_streams: i64,
}

/// A seal of the organization's event history, to keep outside Lathe (see `auditSealHolds`).
#[derive(SimpleObject)]
pub struct AuditSeal {
    /// `<horizon>:<events>:<digest>`: the line to keep.
    pub seal: String,
    /// Every transaction with a lower id had ended when the seal was taken; the sealed events are the ones they
    /// committed.
    pub horizon: String,
    /// The organization's events committed before the horizon.
    pub events: i64,
    /// SHA-256 (hex) over the last link of each of the organization's streams before the horizon.
    pub digest: String,
}

/// Audit queries, merged into the root query.
#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// The organization's events in commit order, optionally of one aggregate type or instance.
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
            after: after.as_deref().map(cursor::decode_pair).transpose()?,
            ..EventFilter::default()
        };
        let page = audit::page(&r.state.pool, &filter, cursor::page_size(first)?)
            .await
            .map_err(ApiError::from)?;
        let edges: Vec<AuditEventEdge> = page
            .items
            .into_iter()
            .map(|record| AuditEventEdge {
                cursor: cursor::encode_pair(record.transaction_id, record.position),
                node: AuditEvent(record),
            })
            .collect();
        let end_cursor = edges.last().map(|edge| edge.cursor.clone());
        Ok(AuditEventConnection {
            edges,
            page_info: PageInfo {
                has_next_page: page.has_next_page,
                end_cursor,
            },
        })
    }

    /// The whole life of one build or queue entry, from delivery to assignment or rejection, with actors.
    async fn build_history(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<BuildHistory> {
        let r = Resolver::new(ctx, Scope::AuditRead)?;
        let build_id = parse_id(&id, "id")?;
        let filter = EventFilter {
            organization_id: Some(r.organization_id()),
            aggregate_type: Some(<BuildQueue as cqrs_es::Aggregate>::TYPE.to_owned()),
            aggregate_id: Some(build_id.to_string()),
            ..EventFilter::default()
        };
        let events = audit::page(&r.state.pool, &filter, 10_000)
            .await
            .map_err(ApiError::from)?
            .items;
        if events.is_empty() {
            return Err(ApiError::NotFound(format!("no build {build_id}")).into());
        }
        let deliveries = deliveries::for_build(&r.state.pool, r.organization_id(), build_id)
            .await
            .map_err(ApiError::from)?;
        Ok(BuildHistory {
            build_id: id,
            deliveries: deliveries.into_iter().map(Delivery).collect(),
            events: events.into_iter().map(AuditEvent).collect(),
        })
    }

    /// Seals the organization's event history as it stands. Each stream's hash chain shows an edited or removed
    /// event inside it; a seal kept outside Lathe also shows a stream deleted whole, events cut from a stream's end,
    /// or a stream rewritten with recomputed links.
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
    /// change the answer.
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

    /// Whether each projection holds every stream of the event store.
    async fn projection_status(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<ProjectionStatus>> {
        let r = Resolver::new(ctx, Scope::AuditRead)?;
        let missing = replay::missing_streams(&r.state.pool, &Registry::standard())
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
