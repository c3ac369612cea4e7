//! The auditors' GraphQL types: stored events (with payloads too long to send whole read in pieces), a build's
//! history, seals and projection status.

use async_graphql::{ComplexObject, Context, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use domain::api_key::Scope;
use domain::build_queue::BuildQueue;
use projections::audit::{self, EventFilter, EventRecord};

use crate::error::ApiError;
use crate::graphql::types::{Delivery, PageInfo};
use crate::graphql::{budget, cursor, Resolver};

/// Payloads up to this many characters are sent with their event; longer ones (an upload of many test results
/// is about 160 characters per result) are read with `payloadChunk`.
pub const PAYLOAD_INLINE_CHARS: i64 = 65_536;
/// The most characters one `payloadChunk` returns.
pub const PAYLOAD_CHUNK_MAX_CHARS: i32 = 1_000_000;

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
    /// The event's data; `null` when it is longer than 65,536 characters (`payloadTruncated`): read it with
    /// `payloadChunk`.
    async fn payload(&self) -> Option<async_graphql::Json<&Value>> {
        (!self.0.payload_truncated).then_some(async_graphql::Json(&self.0.payload))
    }
    /// Whether `payload` was left out for its length.
    async fn payload_truncated(&self) -> bool {
        self.0.payload_truncated
    }
    /// Characters in the payload's stored JSON text.
    async fn payload_length(&self) -> Option<i64> {
        self.0.payload_chars
    }
    /// Up to `length` characters (at most 1,000,000) of the payload's stored JSON text from character `offset`:
    /// read a long payload in pieces and join them. Each piece costs its length / 1,000 in the request's budget.
    #[graphql(complexity = "1 + (length.clamp(1, PAYLOAD_CHUNK_MAX_CHARS) as usize) / 1_000")]
    async fn payload_chunk(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 0)] offset: i32,
        #[graphql(default = 65_536)] length: i32,
    ) -> async_graphql::Result<String> {
        let r = Resolver::new(ctx, Scope::AuditRead)?;
        if offset < 0 || !(1..=PAYLOAD_CHUNK_MAX_CHARS).contains(&length) {
            return Err(ApiError::BadUserInput(format!(
                "`offset` must be 0 or more and `length` between 1 and {PAYLOAD_CHUNK_MAX_CHARS}"
            ))
            .into());
        }
        let chunk = audit::payload_chunk(
            &r.state.pool,
            r.organization_id(),
            (
                &self.0.aggregate_type,
                &self.0.aggregate_id,
                self.0.sequence,
            ),
            offset,
            length,
        )
        .await
        .map_err(ApiError::from)?;
        Ok(chunk.unwrap_or_default())
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

impl AuditEventConnection {
    /// Reads a page of events matching `filter` (payloads over [`PAYLOAD_INLINE_CHARS`] left out).
    pub async fn read(
        pool: &sqlx::PgPool,
        mut filter: EventFilter,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Self, ApiError> {
        filter.after = after.as_deref().map(cursor::decode_pair).transpose()?;
        filter.payload_inline_max = Some(PAYLOAD_INLINE_CHARS);
        let page = audit::page(pool, &filter, cursor::page_size(first)?).await?;
        let edges: Vec<AuditEventEdge> = page
            .items
            .into_iter()
            .map(|record| AuditEventEdge {
                cursor: cursor::encode_pair(record.transaction_id, record.position),
                node: AuditEvent(record),
            })
            .collect();
        let start_cursor = edges.first().map(|edge| edge.cursor.clone());
        let end_cursor = edges.last().map(|edge| edge.cursor.clone());
        Ok(Self {
            edges,
            page_info: PageInfo {
                has_next_page: page.has_next_page,
                has_previous_page: filter.after.is_some(),
                start_cursor,
                end_cursor,
            },
        })
    }
}

/// Everything that happened to one build: the deliveries that reported it and the events of its stream.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct BuildHistory {
    pub build_id: ID,
    pub deliveries: Vec<Delivery>,
    #[graphql(skip)]
    pub organization_id: Uuid,
}

impl BuildHistory {
    /// The filter for this build's stream.
    pub fn stream(organization_id: Uuid, build_id: &str) -> EventFilter {
        EventFilter {
            organization_id: Some(organization_id),
            aggregate_type: Some(<BuildQueue as cqrs_es::Aggregate>::TYPE.to_owned()),
            aggregate_id: Some(build_id.to_owned()),
            ..EventFilter::default()
        }
    }
}

#[ComplexObject]
impl BuildHistory {
    /// The build's events in order, a page at a time.
    #[graphql(complexity = "budget::paged(first, child_complexity)")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<AuditEventConnection> {
        let r = Resolver::new(ctx, Scope::AuditRead)?;
        let filter = Self::stream(self.organization_id, self.build_id.as_str());
        Ok(AuditEventConnection::read(&r.state.pool, filter, first, after).await?)
    }
}

/// Whether one projection holds every stream of the organization.
#[derive(SimpleObject)]
pub struct ProjectionStatus {
    pub name: String,
    /// The organization's streams in the event store without their row in this read model (expired builds
    /// excepted). Projections are applied in the append's own transaction, so this is 0 unless a read model was
    /// edited behind the service's back; `lathe replay` repairs it.
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
