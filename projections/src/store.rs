//! The event store seam: the one place that knows which event store backs each aggregate and which projections
//! follow it. A second backend (SQLite) is a second constructor here.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventStore as _, Query};
use postgres_es::{postgres_cqrs, PostgresCqrs, PostgresEventRepository};
use sqlx::PgPool;
use uuid::Uuid;

use domain::api_key::ApiKey;
use domain::build_queue::BuildQueue;
use domain::organization::Organization;
use domain::project::Project;
use domain::release::Release;

use crate::{api_keys, builds, organizations, projects, releases, Projection};

/// Who caused a command, recorded in the metadata of every event it produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A caller authenticated with an API key: its id and public prefix (never the key).
    ApiKey { api_key_id: Uuid, prefix: String },
    /// A caller authenticated with the `X-Pt-Org-Id` header.
    OrganizationId { organization_id: Uuid },
    /// The operator, through the `lathe` command line.
    Operator,
}

/// Context recorded with each event: who, in which request, when.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub actor: Actor,
    pub request_id: Option<String>,
    pub at: DateTime<Utc>,
    /// Further provenance, e.g. `azure.subscription_id` and `azure.notification_id` of a service-hook delivery.
    pub extra: Vec<(String, String)>,
}

impl CommandContext {
    /// A context for the operator's own commands.
    pub fn operator() -> Self {
        Self {
            actor: Actor::Operator,
            request_id: None,
            at: Utc::now(),
            extra: Vec::new(),
        }
    }

    fn metadata(&self) -> HashMap<String, String> {
        let mut metadata = HashMap::new();
        match &self.actor {
            Actor::ApiKey { api_key_id, prefix } => {
                metadata.insert("actor.type".to_owned(), "api_key".to_owned());
                metadata.insert("actor.api_key_id".to_owned(), api_key_id.to_string());
                metadata.insert("actor.api_key_prefix".to_owned(), prefix.clone());
            }
            Actor::OrganizationId { organization_id } => {
                metadata.insert("actor.type".to_owned(), "organization_id".to_owned());
                metadata.insert(
                    "actor.organization_id".to_owned(),
                    organization_id.to_string(),
                );
            }
            Actor::Operator => {
                metadata.insert("actor.type".to_owned(), "operator".to_owned());
            }
        }
        if let Some(request_id) = &self.request_id {
            metadata.insert("request_id".to_owned(), request_id.clone());
        }
        metadata.insert("at".to_owned(), self.at.to_rfc3339());
        metadata.extend(self.extra.iter().cloned());
        metadata
    }
}

/// Why a command produced no events.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    /// The aggregate refused the command: a rule of the domain.
    #[error(transparent)]
    Domain(E),
    /// Another command changed the aggregate between our load and our append.
    #[error("the aggregate was changed concurrently")]
    Conflict,
    /// The event store failed; nothing was appended.
    #[error("event store: {0}")]
    Store(String),
}

impl<E: std::error::Error> From<AggregateError<E>> for CommandError<E> {
    fn from(error: AggregateError<E>) -> Self {
        match error {
            AggregateError::UserError(error) => Self::Domain(error),
            AggregateError::AggregateConflict => Self::Conflict,
            other => Self::Store(other.to_string()),
        }
    }
}

/// Gives the framework that handles one aggregate type.
pub trait Handles<A: Aggregate> {
    fn framework(&self) -> &PostgresCqrs<A>;
}

/// Every aggregate's command handler, each with the projections that follow its events.
pub struct EventStore {
    organizations: PostgresCqrs<Organization>,
    projects: PostgresCqrs<Project>,
    releases: PostgresCqrs<Release>,
    builds: PostgresCqrs<BuildQueue>,
    api_keys: PostgresCqrs<ApiKey>,
    pool: PgPool,
}

impl EventStore {
    /// The PostgreSQL event store (postgres-es, no snapshots: its snapshot stores double-apply events).
    pub fn postgres(pool: PgPool) -> Self {
        Self {
            organizations: postgres_cqrs(
                pool.clone(),
                queries(Projection::new(
                    pool.clone(),
                    organizations::OrganizationsProjector,
                )),
                (),
            ),
            projects: postgres_cqrs(
                pool.clone(),
                queries(Projection::new(pool.clone(), projects::ProjectsProjector)),
                (),
            ),
            releases: postgres_cqrs(
                pool.clone(),
                queries(Projection::new(pool.clone(), releases::ReleasesProjector)),
                (),
            ),
            builds: postgres_cqrs(
                pool.clone(),
                queries(Projection::new(pool.clone(), builds::BuildsProjector)),
                (),
            ),
            api_keys: postgres_cqrs(
                pool.clone(),
                queries(Projection::new(pool.clone(), api_keys::ApiKeysProjector)),
                (),
            ),
            pool,
        }
    }

    /// Runs `command` against the aggregate `id`, recording `context` with each event it produces.
    pub async fn execute<A>(
        &self,
        id: Uuid,
        command: A::Command,
        context: &CommandContext,
    ) -> Result<(), CommandError<A::Error>>
    where
        A: Aggregate,
        Self: Handles<A>,
    {
        self.framework()
            .execute_with_metadata(&id.to_string(), command, context.metadata())
            .await
            .map_err(CommandError::from)
    }
}

impl EventStore {
    /// The current state of one aggregate, folded from its stored events (e.g. to answer a duplicate delivery
    /// with what the first one did, even before the read model has caught up).
    pub async fn load<A>(&self, id: Uuid) -> Result<A, CommandError<A::Error>>
    where
        A: Aggregate + Clone,
    {
        let store: PersistedEventStore<PostgresEventRepository, A> =
            PersistedEventStore::new_event_store(PostgresEventRepository::new(self.pool.clone()));
        let mut context = store.load_aggregate(&id.to_string()).await?;
        Ok(context.aggregate().clone())
    }
}

fn queries<A: Aggregate + 'static>(query: impl Query<A> + 'static) -> Vec<Box<dyn Query<A>>> {
    vec![Box::new(query)]
}

macro_rules! handles {
    ($aggregate:ty, $field:ident) => {
        impl Handles<$aggregate> for EventStore {
            fn framework(&self) -> &PostgresCqrs<$aggregate> {
                &self.$field
            }
        }
    };
}

handles!(Organization, organizations);
handles!(Project, projects);
handles!(Release, releases);
handles!(BuildQueue, builds);
handles!(ApiKey, api_keys);
