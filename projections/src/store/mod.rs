//! The event store seam: the one place that knows which event store backs each aggregate and which projections
//! follow it. A second backend (SQLite) is a second repository and constructor here.

mod append;
mod stream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent, EventEnvelope};
use sqlx::PgPool;
use uuid::Uuid;

use crate::audit::{link, Chained};
use crate::projector::{Registry, TypedEvents};
use append::{AppendError, Appender, EventRow};

pub use append::AppendStats;
pub(crate) use append::Projectable;

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
    pool: PgPool,
    appender: Appender,
    turns: Vec<tokio::sync::Mutex<()>>,
    /// Per aggregate type, how many of its commands have committed in this process (see [`Self::generation`]).
    generations: HashMap<&'static str, AtomicU64>,
}

impl EventStore {
    /// The PostgreSQL event store with the service's projections. Starts the append writers (group commit), so it
    /// must be called inside a Tokio runtime.
    pub fn postgres(pool: PgPool) -> Self {
        let registry = Arc::new(Registry::standard());
        // One generation per aggregate type that has read models.
        let generations = registry
            .all_aggregate_types()
            .into_iter()
            .map(|aggregate_type| (aggregate_type, AtomicU64::new(0)))
            .collect();
        Self {
            appender: Appender::start(pool.clone(), registry),
            pool,
            turns: (0..LOCK_SHARDS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            generations,
        }
    }

    /// What the group commit has done in this process.
    pub fn append_stats(&self) -> &AppendStats {
        self.appender.stats()
    }

    /// Changes whenever a command on `aggregate_type` commits in this process: a cache of read models that
    /// remembers the generation it read at can tell, without a query, that this process has changed them since.
    pub fn generation(&self, aggregate_type: &str) -> u64 {
        self.generations
            .get(aggregate_type)
            .map_or(0, |generation| generation.load(Ordering::Acquire))
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
        A: Aggregate + 'static,
        A::Command: Clone,
        A::Services: Default,
    {
        self.execute_with::<A>(id, command, context, OnConflict::Redecide)
            .await
    }

    /// Like [`EventStore::execute`], for a command that usually starts its stream (receiving a build): it is first
    /// decided against the empty aggregate without reading the stream, and only if the stream turns out to exist
    /// (its first sequence is taken) read and decided again, like `execute`. Saves a read on every new stream.
    pub async fn execute_expecting_new<A>(
        &self,
        id: Uuid,
        command: A::Command,
        context: &CommandContext,
    ) -> Result<(), CommandError<A::Error>>
    where
        A: Aggregate + 'static,
        A::Command: Clone,
        A::Services: Default,
    {
        let metadata = context.metadata();
        let first = {
            let _turn = self.turns[shard(A::TYPE, id)].lock().await;
            self.decide_and_append::<A>(
                id,
                stream::Stream::empty(),
                command.clone(),
                context,
                &metadata,
            )
            .await
        };
        match first {
            Err(CommandError::Conflict) => {
                self.execute_with::<A>(id, command, context, OnConflict::Redecide)
                    .await
            }
            other => other,
        }
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
        A: Aggregate + 'static,
        A::Command: Clone,
        A::Services: Default,
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
        let mut command = Some(command);
        loop {
            // The last attempt takes the command itself; earlier ones a copy, kept for the next attempt.
            let this = if attempt < attempts {
                command.clone()
            } else {
                command.take()
            }
            .expect("the command is kept until the last attempt");
            let result = {
                let _turn = turn.lock().await;
                match stream::load::<A>(&self.pool, &id.to_string()).await {
                    Ok(stream) => {
                        self.decide_and_append::<A>(id, stream, this, context, &metadata)
                            .await
                    }
                    Err(error) => Err(error),
                }
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

    /// Decides `command` against `stream` and appends what it produces; `Conflict` when the stream moved on.
    async fn decide_and_append<A>(
        &self,
        id: Uuid,
        mut stream: stream::Stream<A>,
        command: A::Command,
        context: &CommandContext,
        metadata: &HashMap<String, String>,
    ) -> Result<(), CommandError<A::Error>>
    where
        A: Aggregate + 'static,
        A::Services: Default,
    {
        let aggregate_id = id.to_string();
        let sink = EventSink::default();
        stream
            .aggregate
            .handle(command, &A::Services::default(), &sink)
            .await
            .map_err(CommandError::Domain)?;
        let events = sink.collect().await;
        if events.is_empty() {
            return Ok(());
        }
        let metadata_text = serde_json::to_string(metadata).map_err(store_error)?;
        let mut previous = stream.last_hash;
        let mut rows = Vec::with_capacity(events.len());
        let mut envelopes = Vec::with_capacity(events.len());
        for (offset, event) in events.into_iter().enumerate() {
            let sequence = stream.last_sequence + 1 + offset as i64;
            // The exact text stored is the text hashed: the `json` column keeps it byte for byte.
            let payload = serde_json::to_string(&event).map_err(store_error)?;
            let (event_type, event_version) = (
                event.event_type().to_string(),
                event.event_version().to_string(),
            );
            previous = link(
                &previous,
                &Chained {
                    aggregate_type: A::TYPE,
                    aggregate_id: &aggregate_id,
                    sequence,
                    event_type: &event_type,
                    event_version: &event_version,
                    payload: &payload,
                    metadata: &metadata_text,
                },
            );
            rows.push(EventRow {
                aggregate_type: A::TYPE,
                aggregate_id: aggregate_id.clone(),
                sequence,
                event_type,
                event_version,
                payload,
                metadata: metadata_text.clone(),
                organization_id: context.organization_id,
                hash: previous.clone(),
            });
            envelopes.push(EventEnvelope::<A> {
                aggregate_id: aggregate_id.clone(),
                sequence: sequence as usize,
                payload: event,
                metadata: metadata.clone(),
            });
        }
        self.appender
            .append(rows, Box::new(TypedEvents(envelopes)))
            .await
            .map_err(|error| match error {
                AppendError::Conflict => CommandError::Conflict,
                other => CommandError::Store(other.to_string()),
            })?;
        if let Some(generation) = self.generations.get(A::TYPE) {
            generation.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }

    /// The current state of one aggregate, folded from its stored events (e.g. to answer a duplicate delivery
    /// with what the first one did).
    pub async fn load<A: Aggregate>(&self, id: Uuid) -> Result<A, CommandError<A::Error>> {
        Ok(stream::load::<A>(&self.pool, &id.to_string())
            .await?
            .aggregate)
    }
}

fn store_error<E: std::error::Error>(error: serde_json::Error) -> CommandError<E> {
    CommandError::Store(format!("encoding: {error}"))
}

fn shard(aggregate_type: &str, id: Uuid) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (aggregate_type, id).hash(&mut hasher);
    (hasher.finish() % LOCK_SHARDS as u64) as usize
}
