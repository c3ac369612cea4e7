//! The service's settings, read from flags and the environment.

use std::net::SocketAddr;

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
            rate_limit_max_per_minute: 6_000,
            azure_server_hosts: Vec::new(),
            azure_allow_private_addresses: false,
        }
    }

    pub(crate) fn database_url(&self) -> &str {
        self.database_url.expose_secret()
    }
}
