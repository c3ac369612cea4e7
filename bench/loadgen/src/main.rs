//! `loadgen`: drives a running Lathe service over HTTP for the benchmark harness (`bench/run.sh`) and prints one
//! JSON summary line on stdout (counts, throughput, latency percentiles).
//!
//! ```text
//! loadgen --url http://127.0.0.1:18080 --key pt_live_… --concurrency 32 --requests 100000 --duration 300 \
//!     webhook --template tests/fixtures/azure-devops/build.complete.msdocs-2022.json --first-id 1
//! loadgen … --rate 400 --duration 20 webhook …          # open loop at a fixed rate
//! loadgen … --concurrency 8 --requests 200 ingest --results 1000
//! loadgen … --concurrency 4 --requests 300 junit --results 1000       # JUnit XML bodies
//! loadgen … --concurrency 1 --requests 2000 graphql --query '{ buildQueue(first: 20) { … } }'
//! ```
//!
//! It is its own Cargo workspace, built apart from the service, so that the service's tests never build it.

mod runner;
mod subscribers;
mod workload;

use std::time::Duration;

use clap::{Parser, Subcommand};

use runner::{Limits, Target};
use workload::Workload;

/// Load generator for the Lathe benchmark.
#[derive(Debug, Parser)]
#[command(name = "loadgen")]
struct Args {
    /// Base URL of the service (loopback only in the harness).
    #[arg(long, global = true, default_value = "http://127.0.0.1:18080")]
    url: String,
    /// API key, sent as `Authorization: Bearer`.
    #[arg(long, global = true, env = "LOADGEN_KEY", default_value = "")]
    key: String,
    /// Closed loop: this many connections, each sending when its last request is answered.
    #[arg(long, global = true, conflicts_with = "rate")]
    concurrency: Option<usize>,
    /// Open loop: this many requests per second, whatever the answers do.
    #[arg(long, global = true)]
    rate: Option<f64>,
    /// Open loop: most requests in flight at once.
    #[arg(long, global = true, default_value_t = 256)]
    max_in_flight: usize,
    /// Stop after this many requests…
    #[arg(long, global = true, default_value_t = u64::MAX)]
    requests: u64,
    /// …or after this many seconds, whichever comes first.
    #[arg(long, global = true, default_value_t = 60.0)]
    duration: f64,
    /// Give up on one request after this many seconds (it then counts as an error).
    #[arg(long, global = true, default_value_t = 60.0)]
    timeout: f64,
    /// A 2xx answer must contain this text, or it counts as an error.
    #[arg(long, global = true)]
    expect: Option<String>,
    /// Runtime threads of the load generator (it shares the machine with the service).
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    #[command(subcommand)]
    workload: WorkloadArg,
}

/// What to send.
#[derive(Debug, Subcommand)]
enum WorkloadArg {
    /// Azure DevOps webhook deliveries, each a distinct build (`resource.id` = first-id + request number).
    Webhook {
        /// A service-hook payload (JSON file).
        #[arg(long)]
        template: String,
        #[arg(long, default_value_t = 1)]
        first_id: u64,
    },
    /// Results-ingest calls, each a new build with this many test results.
    Ingest {
        #[arg(long, default_value_t = 1000)]
        results: usize,
    },
    /// Results-ingest calls, each a new build with one JUnit XML file of this many test cases as the body.
    Junit {
        #[arg(long, default_value_t = 1000)]
        results: usize,
    },
    /// One GraphQL query, again and again.
    Graphql {
        #[arg(long)]
        query: String,
    },
    /// Open GraphQL subscriptions and time the messages (see `subscribers.rs`); `--duration` is how long to listen.
    Subscribers {
        /// Active subscribers (`deliveryRecorded` with `--key`, each message timed).
        #[arg(long, default_value_t = 10)]
        active: usize,
        /// Idle subscribers (`buildQueueChanged` with the `--idle-keys`, round robin).
        #[arg(long, default_value_t = 990)]
        idle: usize,
        /// Keys of organizations that receive no builds, comma-separated.
        #[arg(long, value_delimiter = ',')]
        idle_keys: Vec<String>,
        /// The service's process id, to read its memory before and after the idle subscriptions open.
        #[arg(long)]
        service_pid: Option<u32>,
        /// Written with `ready` once every subscription is open.
        #[arg(long)]
        ready_file: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let WorkloadArg::Subscribers {
        active,
        idle,
        idle_keys,
        service_pid,
        ready_file,
    } = &args.workload
    {
        let plan = subscribers::Plan {
            base_url: args.url.trim_end_matches('/').to_owned(),
            active_key: args.key.clone(),
            idle_keys: idle_keys.clone(),
            active: *active,
            idle: if idle_keys.is_empty() { 0 } else { *idle },
            service_pid: *service_pid,
            ready_file: ready_file.clone(),
            duration: Duration::from_secs_f64(args.duration),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads.max(1))
            .enable_all()
            .build()?;
        let mut summary = runtime.block_on(subscribers::run(plan))?;
        summary["workload"] = "subscribers".into();
        println!("{summary}");
        return Ok(());
    }
    let (name, workload) = match &args.workload {
        WorkloadArg::Webhook { template, first_id } => {
            ("webhook", Workload::webhook(template, *first_id)?)
        }
        WorkloadArg::Ingest { results } => ("ingest", Workload::ingest(*results)),
        WorkloadArg::Junit { results } => ("junit", Workload::junit(*results)),
        WorkloadArg::Graphql { query } => ("graphql", Workload::graphql(query)),
        WorkloadArg::Subscribers { .. } => unreachable!("handled above"),
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs_f64(args.timeout))
        .pool_max_idle_per_host(usize::MAX)
        .tcp_nodelay(true)
        .build()?;
    let target = Target {
        base_url: args.url.trim_end_matches('/').to_owned(),
        api_key: args.key.clone(),
        expect: args.expect.clone(),
    };
    let limits = Limits {
        requests: args.requests,
        duration: Duration::from_secs_f64(args.duration),
    };
    let body_bytes = workload.body_bytes();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let (mode, stats) = match (args.rate, args.concurrency) {
        (Some(rate), _) => (
            format!("rate {rate}/s"),
            runtime.block_on(runner::open_loop(
                client,
                target,
                workload,
                rate,
                args.max_in_flight,
                limits,
            )),
        ),
        (None, concurrency) => {
            let connections = concurrency.unwrap_or(1).max(1);
            (
                format!("{connections} connections"),
                runtime.block_on(runner::closed_loop(
                    client,
                    target,
                    workload,
                    connections,
                    limits,
                )),
            )
        }
    };
    let mut summary = stats.to_json();
    summary["workload"] = name.into();
    summary["mode"] = mode.into();
    summary["body_bytes"] = body_bytes.into();
    println!("{summary}");
    Ok(())
}
