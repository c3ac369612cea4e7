//! What every handler shares.

use std::sync::Arc;

use cqrs_es::Aggregate;
use sqlx::PgPool;
use uuid::Uuid;

use domain::api_key::ApiKey;
use domain::matching::ProjectCandidate;
use domain::organization::Organization;
use domain::project::Project;
use domain::release::Release;
use projections::api_keys::ApiKeyRow;
use projections::organizations::OrganizationRow;
use projections::releases::ReleaseRow;
use projections::EventStore;

use crate::cache::ReadCache;

/// Shared by every request: the read-model pool, the event store and the request limits.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// For operational writes that need no disk flush per commit (see `projections::connect_relaxed`).
    pub relaxed_pool: PgPool,
    pub store: Arc<EventStore>,
    pub limits: Limits,
    pub usage: Arc<crate::usage::Usage>,
    pub azure: Arc<crate::azure::AzureRuntime>,
    pub caches: Arc<Caches>,
    pub leases: Arc<crate::rate_limit::Leases>,
    pub delivery_log: crate::intake::DeliveryRecorder,
    /// Budgets of the client addresses whose requests carry no valid credentials.
    pub unauthenticated: Arc<crate::address_limit::AddressLimiter>,
    /// The last database gauges of `GET /metrics`.
    pub gauges: Arc<crate::metrics::Gauges>,
    /// Live changes for subscriptions (see [`crate::live`]).
    pub live: Arc<crate::live::Live>,
    /// The subscription executions shared by identical operations (see [`crate::graphql::shared`]).
    pub shared_streams: Arc<crate::graphql::shared::SharedStreams>,
    /// The report uploads being read, per organization (see [`crate::intake::ReportReaders`]).
    pub report_readers: Arc<crate::intake::ReportReaders>,
}

/// The intake path's read-model lookups, cached briefly (see [`crate::cache`]).
pub struct Caches {
    /// API-key rows by public prefix.
    pub keys: ReadCache<String, Vec<ApiKeyRow>>,
    pub organizations: ReadCache<Uuid, Option<OrganizationRow>>,
    /// An organization's projects, as the matcher sees them.
    pub projects: ReadCache<Uuid, Vec<ProjectCandidate>>,
    /// A project's active releases, by organization and project.
    pub active_releases: ReadCache<(Uuid, Uuid), Vec<ReleaseRow>>,
}

impl Caches {
    /// Caches of at most `max_entries` entries each.
    pub fn new(max_entries: u64) -> Self {
        Self {
            keys: ReadCache::new(ApiKey::TYPE, max_entries),
            organizations: ReadCache::new(Organization::TYPE, max_entries),
            projects: ReadCache::new(Project::TYPE, max_entries),
            active_releases: ReadCache::new(Release::TYPE, max_entries),
        }
    }
}

/// Sizes an operator may tune.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest ingest body accepted, in bytes.
    pub ingest_max_bytes: usize,
    /// Requests per minute for keys without a limit of their own, and per organization for org-id callers.
    pub rate_limit_per_minute: u32,
    /// Days the delivery log keeps a delivery.
    pub delivery_log_days: u32,
    /// Largest GraphQL body from a caller with an API key, in bytes.
    pub graphql_max_body_bytes: usize,
    /// Largest GraphQL body from a caller without one, in bytes.
    pub graphql_anonymous_max_body_bytes: usize,
    /// Most fields per GraphQL request (aliases and fragment uses counted).
    pub graphql_max_fields: usize,
    /// Most a GraphQL request may cost (see `graphql::budget`).
    pub graphql_max_cost: usize,
    /// Most bytes of text and JSON in one GraphQL answer.
    pub graphql_max_response_bytes: usize,
    /// Requests a minute per client address that carry no valid credentials.
    pub unauthenticated_rate_limit_per_minute: u32,
    /// Entries each read cache holds at most.
    pub cache_max_entries: u64,
    /// Highest per-key rate limit that can be set through the API.
    pub rate_limit_max_per_minute: u32,
    /// Most builds one bulk mutation may name.
    pub bulk_max_builds: usize,
    /// Open subscriptions one API key may hold in one process.
    pub subscriptions_max_per_key: usize,
    /// Open subscriptions in one process.
    pub subscriptions_max_per_process: usize,
    /// Open WebSocket connections in one process.
    pub websocket_max_connections: usize,
    /// Changes an organization's live channel holds for its slowest subscriber.
    pub subscription_buffer: usize,
    /// Seconds a WebSocket connection has to send `connection_init`.
    pub websocket_init_timeout_secs: u64,
    /// Seconds between the server's pings on a WebSocket connection.
    pub websocket_ping_interval_secs: u64,
    /// Minutes a console session may stay unused.
    pub console_session_idle_minutes: u64,
}

impl AppState {
    /// Wires the event store to `pool`.
    pub fn new(
        pool: PgPool,
        relaxed_pool: PgPool,
        limits: Limits,
        azure: crate::azure::AzureRuntime,
    ) -> Self {
        Self {
            delivery_log: crate::intake::DeliveryRecorder::start(relaxed_pool.clone()),
            relaxed_pool,
            store: Arc::new(EventStore::postgres(pool.clone())),
            pool,
            limits,
            usage: Arc::default(),
            azure: Arc::new(azure),
            caches: Arc::new(Caches::new(limits.cache_max_entries)),
            leases: Arc::default(),
            unauthenticated: Arc::new(crate::address_limit::AddressLimiter::new(
                limits.unauthenticated_rate_limit_per_minute,
            )),
            gauges: Arc::default(),
            live: Arc::new(crate::live::Live::new(crate::live::LiveLimits {
                buffer: limits.subscription_buffer,
                per_key: limits.subscriptions_max_per_key,
                per_process: limits.subscriptions_max_per_process,
                connections: limits.websocket_max_connections,
            })),
            shared_streams: Arc::default(),
            report_readers: Arc::default(),
        }
    }
}
