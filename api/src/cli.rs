//! The `lathe` command line: `serve` (the default), `migrate`, `org create`, `schema`.

use clap::{Parser, Subcommand};
use serde_json::json;
use uuid::Uuid;

use domain::api_key::Scope;
use domain::organization::{Organization, OrganizationCommand};
use projections::{audit, replay, CommandContext, EventStore, Registry};

use crate::config::Settings;
use crate::telemetry::LogFormat;
use crate::Application;

/// Lathe: Azure DevOps and CI build intake for Lathe Studio.
#[derive(Debug, Parser)]
#[command(name = "lathe", version)]
pub struct Cli {
    /// Log line format.
    #[arg(long, env = "LATHE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub settings: Settings,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What `lathe` does.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the service (the default).
    Serve,
    /// Creates the database if needed and applies the migrations.
    Migrate,
    /// Manages organizations.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Prints the GraphQL schema (SDL).
    Schema,
    /// Rebuilds read models from the event store (all, or the named ones) and swaps them in while the service
    /// keeps running.
    Replay {
        /// A projection to rebuild; repeat for several. Default: all.
        #[arg(long = "projection", value_name = "NAME")]
        projections: Vec<String>,
    },
    /// Walks every stream's hash chain and reports the first broken link (exit status 1 when there is one), then
    /// prints a seal of the history it verified, for the auditor to keep outside the database.
    Verify {
        /// A seal an earlier `lathe verify` printed: also prove that nothing committed before it has been deleted,
        /// cut off, inserted or rewritten since (exit status 1 when something has).
        #[arg(long, value_name = "SEAL")]
        seal: Option<audit::Seal>,
    },
    /// Writes the event history as NDJSON (one event per line, in commit order) to standard output.
    ExportEvents {
        /// Only events recorded at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Only events of this organization.
        #[arg(long = "org", value_name = "ID")]
        organization: Option<Uuid>,
    },
}

/// Organization commands.
#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Creates an organization and a first API key holding every scope.
    Create {
        #[arg(long)]
        name: String,
        /// Print `{"organizationId": …, "apiKey": …}` instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs one command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            Application::build(&cli.settings)
                .await?
                .run_until_stopped()
                .await?
        }
        Command::Migrate => {
            prepare(&cli.settings).await?;
            println!("migrations applied");
        }
        Command::Org {
            command: OrgCommand::Create { name, json },
        } => {
            let pool = prepare(&cli.settings).await?;
            let (organization_id, key) = create_organization(&pool, &name).await?;
            if json {
                println!(
                    "{}",
                    json!({ "organizationId": organization_id, "apiKey": key })
                );
            } else {
                println!("organization: {organization_id}");
                println!("API key (shown once, holds every scope): {key}");
            }
        }
        Command::Schema => print!("{}", crate::graphql::sdl()),
        Command::Replay { projections } => {
            let pool = prepare(&cli.settings).await?;
            let report = replay::rebuild(
                &pool,
                &std::sync::Arc::new(Registry::standard()),
                &projections,
            )
            .await?;
            let seconds = report.duration.as_secs_f64();
            println!(
                "rebuilt {}: {} events in {seconds:.2} s ({:.0} events/s), {} of them committed during the rebuild",
                report.projections.join(", "),
                report.events,
                report.events as f64 / seconds.max(1e-9),
                report.caught_up,
            );
        }
        Command::Verify { seal } => {
            let pool = prepare(&cli.settings).await?;
            let report = audit::verify(&pool, seal.as_ref()).await?;
            match report.first_broken {
                None => {
                    println!(
                        "ok: {} events in {} streams, every link intact",
                        report.events_checked, report.streams_checked
                    );
                    if let Some(new) = &report.seal {
                        println!("seal: {new}");
                    }
                    match (seal, report.matches_seal) {
                        (Some(earlier), Some(true)) => println!(
                            "seal {earlier} holds: the {} events committed before transaction {} are the sealed ones",
                            earlier.events, earlier.horizon
                        ),
                        (Some(earlier), _) => {
                            println!(
                                "SEAL BROKEN: the events committed before transaction {} are not the {} sealed in \
                                 {earlier}: history was deleted, cut off, inserted or rewritten since",
                                earlier.horizon, earlier.events
                            );
                            std::process::exit(1);
                        }
                        (None, _) => {}
                    }
                }
                Some(broken) => {
                    println!(
                        "BROKEN: {}/{} sequence {} (position {}) does not match its chain; {} events checked",
                        broken.aggregate_type,
                        broken.aggregate_id,
                        broken.sequence,
                        broken.position,
                        report.events_checked
                    );
                    std::process::exit(1);
                }
            }
        }
        Command::ExportEvents {
            since,
            organization,
        } => {
            let pool = prepare(&cli.settings).await?;
            let filter = audit::EventFilter {
                organization_id: organization,
                since,
                ..audit::EventFilter::default()
            };
            let mut out = std::io::BufWriter::new(std::io::stdout());
            let written = audit::export(&pool, &filter, &mut out).await?;
            eprintln!("exported {written} events");
        }
    }
    Ok(())
}

async fn prepare(settings: &Settings) -> anyhow::Result<sqlx::PgPool> {
    projections::ensure_database(settings.database_url()).await?;
    projections::migrate(settings.database_url()).await?;
    // A replay uses three connections at once: its lock, its reader and its writer.
    Ok(projections::connect(settings.database_url(), 4).await?)
}

/// Creates an organization and its first key, with every scope. Returns the id and the plaintext key.
pub async fn create_organization(
    pool: &sqlx::PgPool,
    name: &str,
) -> anyhow::Result<(Uuid, String)> {
    let store = EventStore::postgres(pool.clone());
    let organization_id = Uuid::new_v4();
    let context = CommandContext {
        organization_id: Some(organization_id),
        ..CommandContext::operator()
    };
    store
        .execute::<Organization>(
            organization_id,
            OrganizationCommand::CreateOrganization {
                organization_id,
                name: name.to_owned(),
            },
            &context,
        )
        .await
        .map_err(|error| anyhow::anyhow!("cannot create the organization: {error}"))?;
    let spec = crate::keys::KeySpec {
        name: "Initial key".to_owned(),
        scopes: Scope::ALL.to_vec(),
        expires_at: None,
        rate_limit_per_minute: None,
    };
    let issued = crate::keys::issue(&store, pool, organization_id, spec, &context)
        .await
        .map_err(|error| anyhow::anyhow!("cannot create the first key: {error}"))?;
    Ok((organization_id, issued.key))
}
