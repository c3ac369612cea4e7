//! The service's settings, read from flags and the environment.

use std::net::SocketAddr;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

/// The database used when `DATABASE_URL` is not set: the local PostgreSQL of a development machine. The database
/// is created on first start.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/lathe";

/// Everything `lathe serve` needs.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// PostgreSQL connection URL. May hold a password, so it is kept secret and never logged.
    #[arg(long, global = true, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_default_value = false)]
    pub database_url: SecretString,

    /// Most connections the service opens to PostgreSQL.
    #[arg(
        long,
        global = true,
        env = "LATHE_DB_MAX_CONNECTIONS",
        default_value_t = 16
    )]
    pub db_max_connections: u32,

    /// Largest body the results-ingest API accepts, in bytes (10,000 results take about 3 MB).
    #[arg(long, global = true, env = "LATHE_INGEST_MAX_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub ingest_max_bytes: usize,

    /// Requests per minute for an API key without a limit of its own, and for each organization authenticating
    /// by organization id.
    #[arg(
        long,
        global = true,
        env = "LATHE_RATE_LIMIT_PER_MINUTE",
        default_value_t = 60
    )]
    pub rate_limit_per_minute: u32,

    /// Seconds between runs of the retention job (build expiry and release archiving).
    #[arg(
        long,
        global = true,
        env = "LATHE_RETENTION_INTERVAL_SECS",
        default_value_t = 3600
    )]
    pub retention_interval_secs: u64,

    /// Key that encrypts Azure DevOps tokens at rest: 32 random bytes, base64 (`openssl rand -base64 32`).
    /// Without it, projects cannot be connected to Azure DevOps.
    #[arg(long, global = true, env = "LATHE_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<SecretString>,

    /// Base URL of Lathe Studio, for the links to builds put in pull-request statuses.
    #[arg(
        long,
        global = true,
        env = "LATHE_PUBLIC_URL",
        default_value = "https://lathestudio.dev"
    )]
    pub public_url: String,

    /// Milliseconds before a call to Azure DevOps is given up as timed out (and retried later).
    #[arg(
        long,
        global = true,
        env = "LATHE_AZURE_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub azure_timeout_ms: u64,

    /// Milliseconds before the first retry of a failed Azure DevOps call; doubled on each attempt.
    #[arg(
        long,
        global = true,
        env = "LATHE_AZURE_BACKOFF_MS",
        default_value_t = 2_000
    )]
    pub azure_backoff_ms: u64,

    /// Attempts before an Azure DevOps call ends as failed.
    #[arg(
        long,
        global = true,
        env = "LATHE_AZURE_MAX_ATTEMPTS",
        default_value_t = 8
    )]
    pub azure_max_attempts: i32,

    /// Run the background jobs (Azure DevOps outbox, retention, key-usage writes) in this process. Turn off for
    /// processes that should only answer requests; at least one process must run them.
    #[arg(long, global = true, env = "LATHE_BACKGROUND_JOBS", default_value_t = true, action = clap::ArgAction::Set)]
    pub background_jobs: bool,

    /// Days the delivery log keeps a delivery (pruned by the retention job).
    #[arg(
        long,
        global = true,
        env = "LATHE_DELIVERY_LOG_DAYS",
        default_value_t = 30
    )]
    pub delivery_log_days: u32,

    /// Address and port to listen on.
    #[arg(
        long,
        global = true,
        env = "LATHE_BIND",
        default_value = "127.0.0.1:8080"
    )]
    pub bind: SocketAddr,

    /// Largest `POST /graphql` body from a caller with an API key, in bytes (a larger one is answered 413).
    #[arg(long, global = true, env = "LATHE_GRAPHQL_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub graphql_max_body_bytes: usize,

    /// Largest `POST /graphql` body from a caller without an API key (who may only introspect), in bytes.
    #[arg(
        long,
        global = true,
        env = "LATHE_GRAPHQL_ANONYMOUS_MAX_BODY_BYTES",
        default_value_t = 64 * 1024
    )]
    pub graphql_anonymous_max_body_bytes: usize,

    /// Most fields one GraphQL request may select, each alias and each use of a fragment counted.
    #[arg(
        long,
        global = true,
        env = "LATHE_GRAPHQL_MAX_FIELDS",
        default_value_t = 500
    )]
    pub graphql_max_fields: usize,

    /// Most a GraphQL request may cost, checked before it runs: each field costs 1 and a list costs its page
    /// size (`first`, default 20) times the cost of one item.
    #[arg(
        long,
        global = true,
        env = "LATHE_GRAPHQL_MAX_COST",
        default_value_t = 25_000
    )]
    pub graphql_max_cost: usize,

    /// Most bytes of text and JSON one GraphQL answer may hold; a request that would exceed it gets one error.
    #[arg(long, global = true, env = "LATHE_GRAPHQL_MAX_RESPONSE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub graphql_max_response_bytes: usize,

    /// PEM file of the certificate chain to serve HTTPS with (rustls); needs `--tls-key`. Without both, the service
    /// speaks plain HTTP (e.g. behind a reverse proxy that terminates TLS).
    #[arg(long, global = true, env = "LATHE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM file of the private key of `--tls-cert`.
    #[arg(long, global = true, env = "LATHE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Reverse proxies whose `X-Forwarded-For` is believed, as IP addresses or CIDR ranges separated by commas
    /// (e.g. `10.0.0.0/8,127.0.0.1`). The client address is then the right-most one not itself a trusted proxy;
    /// from any other peer the header is ignored.
    #[arg(
        long,
        global = true,
        env = "LATHE_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<crate::transport::IpRange>,

    /// Requests per minute from one client address (one /64 for IPv6) that carry no valid credentials; past it they
    /// are answered 429. Counted in each process's memory.
    #[arg(
        long,
        global = true,
        env = "LATHE_UNAUTHENTICATED_RATE_LIMIT_PER_MINUTE",
        default_value_t = 30
    )]
    pub unauthenticated_rate_limit_per_minute: u32,

    /// Seconds a connection may take to send a request's headers (and, for a new connection, to finish its TLS
    /// handshake and start its first request); then it is closed.
    #[arg(
        long,
        global = true,
        env = "LATHE_HEADER_READ_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub header_read_timeout_secs: u64,

    /// Seconds a request body may go without sending any data; then the request is refused. Counts silence, not
    /// the whole upload, so a large ingest on a slow link passes as long as it keeps sending.
    #[arg(
        long,
        global = true,
        env = "LATHE_BODY_READ_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub body_read_timeout_secs: u64,

    /// Seconds a whole request may take, body upload included, before it is answered 408 (a 32 MB ingest at
    /// 1 Mbit/s takes about 270 s).
    #[arg(
        long,
        global = true,
        env = "LATHE_REQUEST_TIMEOUT_SECS",
        default_value_t = 300
    )]
    pub request_timeout_secs: u64,

    /// Seconds between computations of the database gauges of `GET /metrics` (a scrape serves the last ones).
    #[arg(
        long,
        global = true,
        env = "LATHE_METRICS_INTERVAL_SECS",
        default_value_t = 15
    )]
    pub metrics_interval_secs: u64,

    /// Bearer token `GET /metrics` requires (`Authorization: Bearer <token>`); without it metrics are open to
    /// whoever reaches them.
    #[arg(
        long,
        global = true,
        env = "LATHE_METRICS_TOKEN",
        hide_env_values = true
    )]
    pub metrics_token: Option<SecretString>,

    /// Address of a separate listener serving only `GET /metrics` (e.g. `127.0.0.1:9090`); `/metrics` then leaves
    /// the main port.
    #[arg(long, global = true, env = "LATHE_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,

    /// Entries each read cache (API keys, organizations, projects, releases) holds at most; the least useful are
    /// evicted first.
    #[arg(
        long,
        global = true,
        env = "LATHE_CACHE_MAX_ENTRIES",
        default_value_t = 10_000
    )]
    pub cache_max_entries: u64,

    /// Highest `rateLimitPerMinute` a key may be given through the API (`createApiKey`, `updateApiKey`), so that a
    /// `keys:manage` key cannot lift its own budget out of reach. The server default
    /// (`LATHE_RATE_LIMIT_PER_MINUTE`) is the operator's and is not capped by it.
    #[arg(
        long,
        global = true,
        env = "LATHE_RATE_LIMIT_MAX_PER_MINUTE",
        default_value_t = 6_000
    )]
    pub rate_limit_max_per_minute: u32,

    /// Azure DevOps Server hosts projects may be connected to, besides Azure DevOps Services (`dev.azure.com`,
    /// `*.visualstudio.com`): comma-separated `host[:port]` (any port when none is given), over http or https.
    #[arg(
        long,
        global = true,
        env = "LATHE_AZURE_SERVER_HOSTS",
        value_delimiter = ','
    )]
    pub azure_server_hosts: Vec<String>,

    /// Let calls to Azure DevOps go to private, loopback, link-local and unspecified addresses (an Azure DevOps
    /// Server on the internal network). Off: such addresses are refused, as literals and as resolved names.
    #[arg(long, global = true, env = "LATHE_AZURE_ALLOW_PRIVATE_ADDRESSES", default_value_t = false, action = clap::ArgAction::Set)]
    pub azure_allow_private_addresses: bool,

    /// Most builds one bulk mutation (`bulkAssignBuilds`, `bulkRejectBuilds`, `bulkMoveBuilds`,
    /// `bulkReturnBuildsToQueue`) may name; each is its own command, so this bounds one request's writes.
    #[arg(
        long,
        global = true,
        env = "LATHE_BULK_MAX_BUILDS",
        default_value_t = 500
    )]
    pub bulk_max_builds: usize,

    /// Open GraphQL subscriptions one API key may hold in one process; past it a subscribe is refused
    /// (`RATE_LIMITED`).
    #[arg(
        long,
        global = true,
        env = "LATHE_SUBSCRIPTIONS_MAX_PER_KEY",
        default_value_t = 100
    )]
    pub subscriptions_max_per_key: usize,

    /// Open GraphQL subscriptions in one process; past it a subscribe is refused (`RATE_LIMITED`).
    #[arg(
        long,
        global = true,
        env = "LATHE_SUBSCRIPTIONS_MAX_PER_PROCESS",
        default_value_t = 10_000
    )]
    pub subscriptions_max_per_process: usize,

    /// Open WebSocket connections in one process; past it an upgrade is answered 503 with `Retry-After`.
    #[arg(
        long,
        global = true,
        env = "LATHE_WEBSOCKET_MAX_CONNECTIONS",
        default_value_t = 10_000
    )]
    pub websocket_max_connections: usize,

    /// Changes an organization's live channel holds for its slowest subscriber; one that falls further behind
    /// is sent a `MISSED_CHANGES` error in place of what it missed.
    #[arg(
        long,
        global = true,
        env = "LATHE_SUBSCRIPTION_BUFFER",
        default_value_t = 1024
    )]
    pub subscription_buffer: usize,

    /// Seconds a WebSocket connection has to send an accepted `connection_init` (then closed with 4408).
    #[arg(
        long,
        global = true,
        env = "LATHE_WEBSOCKET_INIT_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub websocket_init_timeout_secs: u64,

    /// Seconds between the server's pings; a connection that sends nothing for two intervals is closed (3008),
    /// and one that reads nothing for one is dropped.
    #[arg(
        long,
        global = true,
        env = "LATHE_WEBSOCKET_PING_INTERVAL_SECS",
        default_value_t = 15
    )]
    pub websocket_ping_interval_secs: u64,
    /// Minutes a browser-console session may stay unused before it ends (it also ends when signed out, when its
    /// key is revoked or expires, and when the process restarts: sessions live in the process's memory).
    #[arg(
        long,
        global = true,
        env = "LATHE_CONSOLE_SESSION_IDLE_MINUTES",
        default_value_t = 480
    )]
    pub console_session_idle_minutes: u64,

    /// Seconds between checks for streams missing from a read model (`lathe_projection_missing_streams` of
    /// `GET /metrics`). The check reads the whole event store, so it runs far less often than the other gauges.
    #[arg(
        long,
        global = true,
        env = "LATHE_INTEGRITY_INTERVAL_SECS",
        default_value_t = 600
    )]
    pub integrity_interval_secs: u64,
}

impl Settings {
    /// Settings for a database URL with every other value at its default (used by tests and the CLI).
    pub fn for_database(database_url: &str) -> Self {
        Self {
            database_url: SecretString::from(database_url.to_owned()),
            db_max_connections: 16,
            ingest_max_bytes: 32 * 1024 * 1024,
            rate_limit_per_minute: 60,
            retention_interval_secs: 3600,
            secret_key: None,
            public_url: "https://lathestudio.dev".to_owned(),
            azure_timeout_ms: 10_000,
            azure_backoff_ms: 2_000,
            azure_max_attempts: 8,
            background_jobs: true,
            delivery_log_days: 30,
            bind: "127.0.0.1:0".parse().expect("a valid socket address"),
            graphql_max_body_bytes: 1024 * 1024,
            graphql_anonymous_max_body_bytes: 64 * 1024,
            graphql_max_fields: 500,
            graphql_max_cost: 25_000,
            graphql_max_response_bytes: 16 * 1024 * 1024,
            tls_cert: None,
            tls_key: None,
            trusted_proxies: Vec::new(),
            unauthenticated_rate_limit_per_minute: 30,
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 30,
            request_timeout_secs: 300,
            metrics_interval_secs: 15,
            metrics_token: None,
            metrics_bind: None,
            cache_max_entries: 10_000,
            rate_limit_max_per_minute: 6_000,
            azure_server_hosts: Vec::new(),
            azure_allow_private_addresses: false,
            bulk_max_builds: 500,
            subscriptions_max_per_key: 100,
            subscriptions_max_per_process: 10_000,
            websocket_max_connections: 10_000,
            subscription_buffer: 1024,
            websocket_init_timeout_secs: 10,
            websocket_ping_interval_secs: 15,
            console_session_idle_minutes: 480,
            integrity_interval_secs: 600,
        }
    }

    pub(crate) fn database_url(&self) -> &str {
        self.database_url.expose_secret()
    }
}
