//! How events reach read models: every projector runs inside the transaction that appends the events, so a read
//! model is never behind or ahead of the event store, and a failure in either rolls back both.

use std::collections::HashMap;

use async_trait::async_trait;
use cqrs_es::{Aggregate, EventEnvelope};
use sqlx::PgConnection;

use domain::api_key::ApiKey;
use domain::build_queue::BuildQueue;
use domain::organization::Organization;
use domain::project::Project;
use domain::release::Release;

use crate::{api_keys, builds, organizations, projects, releases};

/// One read model's reaction to one aggregate type's events. It writes only through the connection it is given.
#[async_trait]
pub trait Projector<A: Aggregate>: Send + Sync {
    /// The projection (read model) this projector feeds. Several projectors, of different aggregate types, may
    /// feed one projection; `lathe replay --projection NAME` rebuilds them together.
    fn projection(&self) -> &'static str;

    /// Whether applying has effects outside the read models (e.g. enqueuing calls to Azure DevOps). Such a
    /// projector runs with every append but never in a rebuild.
    fn has_side_effects(&self) -> bool {
        false
    }

    /// Applies one event to the read model.
    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &EventEnvelope<A>,
    ) -> Result<(), sqlx::Error>;

    /// Applies a batch of events, in order per aggregate, to fresh read models (a rebuild). The default applies them
    /// one by one; a projector may group them into set-based statements as long as each aggregate's events keep
    /// their order.
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[EventEnvelope<A>],
    ) -> Result<(), sqlx::Error> {
        for event in events {
            self.apply(conn, event).await?;
        }
        Ok(())
    }
}

/// An event as the event table holds it.
#[derive(Debug, Clone)]
pub struct StoredEvent<'a> {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub payload: StoredJson<'a>,
    pub metadata: StoredJson<'a>,
}

/// An event's JSON as the caller has it: the append's value (borrowed, no copy of a large payload), or the text a
/// rebuild reads back (decoded straight into the typed event, without an intermediate `Value`).
#[derive(Debug, Clone)]
pub enum StoredJson<'a> {
    Value(&'a serde_json::Value),
    Text(String),
}

impl StoredJson<'_> {
    /// Decodes into a typed value.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        match self {
            Self::Value(value) => T::deserialize(*value),
            Self::Text(text) => serde_json::from_str(text),
        }
    }
}

/// Why a projection could not apply events.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(
        "stored event {aggregate_type}/{aggregate_id}#{sequence} does not deserialize: {source}"
    )]
    Deserialize {
        aggregate_type: String,
        aggregate_id: String,
        sequence: i64,
        source: serde_json::Error,
    },
}

/// Which projections to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    Only(Vec<String>),
}

impl Selection {
    fn includes(&self, projection: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(names) => names.iter().any(|name| name == projection),
        }
    }
}

/// The projectors of one aggregate type, behind a type-erased face so that the registry can hold all of them.
#[async_trait]
trait AggregateProjectors: Send + Sync {
    /// The rebuildable projections (side-effect-free) this type feeds.
    fn projections(&self) -> Vec<&'static str>;
    /// Every projection this type feeds, side effects included.
    fn all_projections(&self) -> Vec<&'static str>;

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent<'_>,
        selection: &Selection,
        skip_at_or_below: &HashMap<&'static str, i64>,
    ) -> Result<(), ProjectionError>;
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent<'_>],
        selection: &Selection,
    ) -> Result<(), ProjectionError>;
}

struct Typed<A: Aggregate> {
    projectors: Vec<Box<dyn Projector<A>>>,
}

#[async_trait]
impl<A: Aggregate + 'static> AggregateProjectors for Typed<A> {
    fn projections(&self) -> Vec<&'static str> {
        self.projectors
            .iter()
            .filter(|p| !p.has_side_effects())
            .map(|p| p.projection())
            .collect()
    }

    fn all_projections(&self) -> Vec<&'static str> {
        self.projectors.iter().map(|p| p.projection()).collect()
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent<'_>,
        selection: &Selection,
        skip_at_or_below: &HashMap<&'static str, i64>,
    ) -> Result<(), ProjectionError> {
        let deserialize_error = |source| ProjectionError::Deserialize {
            aggregate_type: event.aggregate_type.clone(),
            aggregate_id: event.aggregate_id.clone(),
            sequence: event.sequence,
            source,
        };
        // Deserialized once for every projector of the type.
        let envelope = EventEnvelope::<A> {
            aggregate_id: event.aggregate_id.clone(),
            sequence: event.sequence as usize,
            payload: event
                .payload
                .decode::<A::Event>()
                .map_err(deserialize_error)?,
            metadata: event
                .metadata
                .decode::<HashMap<String, String>>()
                .unwrap_or_default(),
        };
        for projector in &self.projectors {
            let projection = projector.projection();
            let seen = skip_at_or_below.get(projection).copied().unwrap_or(0);
            if selection.includes(projection) && event.sequence > seen {
                projector.apply(conn, &envelope).await?;
            }
        }
        Ok(())
    }

    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent<'_>],
        selection: &Selection,
    ) -> Result<(), ProjectionError> {
        let envelopes = events
            .iter()
            .map(|event| {
                Ok(EventEnvelope::<A> {
                    aggregate_id: event.aggregate_id.clone(),
                    sequence: event.sequence as usize,
                    payload: event.payload.decode::<A::Event>().map_err(|source| {
                        ProjectionError::Deserialize {
                            aggregate_type: event.aggregate_type.clone(),
                            aggregate_id: event.aggregate_id.clone(),
                            sequence: event.sequence,
                            source,
                        }
                    })?,
                    metadata: event
                        .metadata
                        .decode::<HashMap<String, String>>()
                        .unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>, ProjectionError>>()?;
        for projector in &self.projectors {
            if selection.includes(projector.projection()) && !projector.has_side_effects() {
                projector.apply_batch(conn, &envelopes).await?;
            }
        }
        Ok(())
    }
}

/// Every projector of the service, by aggregate type.
pub struct Registry {
    by_type: HashMap<&'static str, Box<dyn AggregateProjectors>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::standard()
    }
}

impl Registry {
    /// The service's projectors.
    pub fn standard() -> Self {
        let mut registry = Self {
            by_type: HashMap::new(),
        };
        registry.register::<Organization>(vec![Box::new(organizations::OrganizationsProjector)]);
        registry.register::<Project>(vec![Box::new(projects::ProjectsProjector)]);
        registry.register::<Release>(vec![Box::new(releases::ReleasesProjector)]);
        registry.register::<BuildQueue>(vec![
            Box::new(builds::BuildsProjector),
            Box::new(releases::ReleaseBuildCountsProjector),
            // After the builds projection, whose rows it reads in the same transaction.
            Box::new(crate::outbox::OutboxReactor),
        ]);
        registry.register::<ApiKey>(vec![Box::new(api_keys::ApiKeysProjector)]);
        registry
    }

    fn register<A: Aggregate + 'static>(&mut self, projectors: Vec<Box<dyn Projector<A>>>) {
        self.by_type.insert(A::TYPE, Box::new(Typed { projectors }));
    }

    /// Every projection name, sorted.
    pub fn projections(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self
            .by_type
            .values()
            .flat_map(|p| p.projections())
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The aggregate types whose events feed the selected projections.
    pub fn aggregate_types(&self, selection: &Selection) -> Vec<&'static str> {
        let mut types: Vec<&'static str> = self
            .by_type
            .iter()
            .filter(|(_, p)| p.projections().iter().any(|name| selection.includes(name)))
            .map(|(aggregate_type, _)| *aggregate_type)
            .collect();
        types.sort_unstable();
        types
    }

    /// The projections fed by one aggregate type.
    pub fn projections_of(&self, aggregate_type: &str) -> Vec<&'static str> {
        self.by_type
            .get(aggregate_type)
            .map(|p| p.projections())
            .unwrap_or_default()
    }

    /// Applies events in order. Events already applied to a projection (by the per-aggregate checkpoint in
    /// `skip_at_or_below`, keyed by projection) are skipped; the caller moves the checkpoints.
    pub async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent<'_>],
        selection: &Selection,
        skip_at_or_below: &HashMap<&'static str, i64>,
    ) -> Result<(), ProjectionError> {
        for event in events {
            if let Some(projectors) = self.by_type.get(event.aggregate_type.as_str()) {
                projectors
                    .apply(conn, event, selection, skip_at_or_below)
                    .await?;
            }
        }
        Ok(())
    }

    /// Applies events to fresh read models (a rebuild), in runs of one aggregate type so that each projector can
    /// work set-based; runs keep their order, so effects across types (a release before its builds) hold.
    pub async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent<'_>],
        selection: &Selection,
    ) -> Result<(), ProjectionError> {
        let mut start = 0;
        while start < events.len() {
            let kind = &events[start].aggregate_type;
            let end = events[start..]
                .iter()
                .position(|e| &e.aggregate_type != kind)
                .map_or(events.len(), |n| start + n);
            if let Some(projectors) = self.by_type.get(kind.as_str()) {
                projectors
                    .apply_batch(conn, &events[start..end], selection)
                    .await?;
            }
            start = end;
        }
        Ok(())
    }

    /// Applies one aggregate's new events and moves its checkpoints, skipping what a checkpoint says was applied.
    pub async fn apply_inline(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent<'_>],
    ) -> Result<(), ProjectionError> {
        let Some(last) = events.last() else {
            return Ok(());
        };
        let projections = self
            .by_type
            .get(last.aggregate_type.as_str())
            .map(|p| p.all_projections())
            .unwrap_or_default();
        if projections.is_empty() {
            return Ok(());
        }
        // One round trip: read the old checkpoints (locked) and move them to the new last sequence.
        let old: Vec<(String, i64)> = sqlx::query_as(
            "WITH old AS (
                SELECT projection, last_sequence FROM projection_checkpoints
                WHERE projection = ANY($1) AND aggregate_type = $2 AND aggregate_id = $3 FOR UPDATE),
             moved AS (
                INSERT INTO projection_checkpoints (projection, aggregate_type, aggregate_id, last_sequence)
                SELECT name, $2, $3, $4 FROM unnest($1::text[]) AS name
                ON CONFLICT (projection, aggregate_type, aggregate_id)
                DO UPDATE SET last_sequence = GREATEST(projection_checkpoints.last_sequence, EXCLUDED.last_sequence))
             SELECT projection, last_sequence FROM old",
        )
        .bind(&projections)
        .bind(&last.aggregate_type)
        .bind(&last.aggregate_id)
        .bind(last.sequence)
        .fetch_all(&mut *conn)
        .await?;
        let skip: HashMap<&'static str, i64> = projections
            .iter()
            .filter_map(|name| {
                old.iter()
                    .find(|(projection, _)| projection == name)
                    .map(|(_, sequence)| (*name, *sequence))
            })
            .collect();
        self.apply(conn, events, &Selection::All, &skip).await
    }
}

/// The time recorded in an event's metadata by [`crate::EventStore::execute`].
pub(crate) fn event_time<A: Aggregate>(event: &EventEnvelope<A>) -> chrono::DateTime<chrono::Utc> {
    event
        .metadata
        .get("at")
        .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
        .map(|at| at.to_utc())
        .unwrap_or_default()
}
