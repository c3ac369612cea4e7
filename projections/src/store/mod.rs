//! The event store seam: the one place that knows which event store backs each aggregate and which projections
//! follow it. A second backend (SQLite) is a second repository and constructor here.

mod repository;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateContext, AggregateError, CqrsFramework, EventStore as _};
use sqlx::PgPool;
use uuid::Uuid;

pub use repository::LatheEventRepository;

use domain::api_key::ApiKey;
use domain::build_queue::BuildQueue;
use domain::organization::Organization;
use domain::project::Project;
use domain::release::Release;

use crate::projector::Registry;

/// The framework that handles one aggregate type's commands.
pub type Framework<A> = CqrsFramework<A, PersistedEventStore<LatheEventRepository, A>>;

/// Who caused a command, recorded in the metadata of every event it produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A caller authenticated with an API key: its id and public prefix (never the key).
    ApiKey { api_key_id: Uuid, prefix: String },
    /// A caller authenticated with the `X-Pt-Org-Id` header.
    OrganizationId { organization_id: Uuid },
    /// The operator, through the `lathe` command line.
    Operator,
    /// A background job of the service, e.g. `retention`.
    System { job: &'static str },
}

/// Context recorded with each event: who, for which organization, in which request, when.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub actor: Actor,
    /// The organization the command acts in; stored with its events so that auditors see their own.
    pub organization_id: Option<Uuid>,
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
            organization_id: None,
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
            Actor::System { job } => {
                metadata.insert("actor.type".to_owned(), "system".to_owned());
                metadata.insert("actor.job".to_owned(), (*job).to_owned());
            }
        }
        if let Some(organization_id) = self.organization_id {
            metadata.insert("organization_id".to_owned(), organization_id.to_string());
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
    fn framework(&self) -> &Framework<A>;
}

/// Whether a command that lost an optimistic-concurrency race may be decided again against the new state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    /// The command carries only intent; `handle` re-checks every rule against the state it loads. Retried a few
    /// times before the caller gets `Conflict`.
    Redecide,
    /// The command was computed from state the caller read (e.g. a partial update merged onto a read model):
    /// deciding it again would overwrite the concurrent change, so the caller gets `Conflict` at once.
    Fail,
}

/// How many times a command is decided in all when it keeps losing races (to another process: within one
/// process, commands on one aggregate take turns).
const MAX_ATTEMPTS: u32 = 5;
/// Commands on one aggregate take turns within the process: a lock per shard of aggregate ids.
const LOCK_SHARDS: usize = 256;

/// Every aggregate's command handler. Each append carries its read-model updates in the same transaction.
pub struct EventStore {
    organizations: Framework<Organization>,
    projects: Framework<Project>,
    releases: Framework<Release>,
    builds: Framework<BuildQueue>,
    api_keys: Framework<ApiKey>,
    repository: LatheEventRepository,
    turns: Vec<tokio::sync::Mutex<()>>,
}

impl EventStore {
    /// The PostgreSQL event store with the service's projections.
    pub fn postgres(pool: PgPool) -> Self {
        let repository = LatheEventRepository::new(pool, Arc::new(Registry::standard()));
        Self {
            organizations: framework(&repository),
            projects: framework(&repository),
            releases: framework(&repository),
            builds: framework(&repository),
            api_keys: framework(&repository),
            repository,
            turns: (0..LOCK_SHARDS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    /// Runs `command` against the aggregate `id`, recording `context` with each event it produces. A command that
    /// loses a race is decided again against the new state, up to a few times.
    pub async fn execute<A>(
        &self,
        id: Uuid,
        command: A::Command,
        context: &CommandContext,
    ) -> Result<(), CommandError<A::Error>>
    where
        A: Aggregate,
        A::Command: Clone,
        Self: Handles<A>,
    {
        self.execute_with(id, command, context, OnConflict::Redecide)
            .await
    }

    /// Like [`EventStore::execute`], with an explicit conflict policy.
    pub async fn execute_with<A>(
        &self,
        id: Uuid,
        command: A::Command,
        context: &CommandContext,
        on_conflict: OnConflict,
    ) -> Result<(), CommandError<A::Error>>
    where
        A: Aggregate,
        A::Command: Clone,
        Self: Handles<A>,
    {
        let attempts = match on_conflict {
            OnConflict::Redecide => MAX_ATTEMPTS,
            OnConflict::Fail => 1,
        };
        let metadata = context.metadata();
        // Commands on one aggregate in this process take turns, so that they never conflict with each other; a
        // conflict then means another process, and is decided again after a short, jittered pause.
        let turn = &self.turns[shard(A::TYPE, id)];
        let mut attempt = 1;
        loop {
            let result = {
                let _turn = turn.lock().await;
                self.framework()
                    .execute_with_metadata(&id.to_string(), command.clone(), metadata.clone())
                    .await
                    .map_err(CommandError::from)
            };
            match result {
                Err(CommandError::Conflict) if attempt < attempts => {
                    let pause_ms = rand::random::<u64>() % (2_u64 << attempt);
                    tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// The current state of one aggregate, folded from its stored events (e.g. to answer a duplicate delivery
    /// with what the first one did).
    pub async fn load<A>(&self, id: Uuid) -> Result<A, CommandError<A::Error>>
    where
        A: Aggregate + Clone,
    {
        let store: PersistedEventStore<LatheEventRepository, A> =
            PersistedEventStore::new_event_store(self.repository.clone());
        let mut context = store.load_aggregate(&id.to_string()).await?;
        Ok(context.aggregate().clone())
    }
}

fn shard(aggregate_type: &str, id: Uuid) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (aggregate_type, id).hash(&mut hasher);
    (hasher.finish() % LOCK_SHARDS as u64) as usize
}

fn framework<A: Aggregate>(repository: &LatheEventRepository) -> Framework<A>
where
    A::Services: Default,
{
    // No queries: the repository applies the projections inside the append's transaction.
    CqrsFramework::new(
        PersistedEventStore::new_event_store(repository.clone()),
        Vec::new(),
        A::Services::default(),
    )
}

macro_rules! handles {
    ($aggregate:ty, $field:ident) => {
        impl Handles<$aggregate> for EventStore {
            fn framework(&self) -> &Framework<$aggregate> {
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
