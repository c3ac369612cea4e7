//! How events reach read models: every projector runs inside the transaction that appends the events, so a read
//! model is never behind or ahead of the event store, and a failure in either rolls back both.

use std::any::Any;
use std::collections::HashMap;

use async_trait::async_trait;
use cqrs_es::{Aggregate, EventEnvelope};
use sqlx::PgConnection;

use domain::api_key::ApiKey;
use domain::build_queue::BuildQueue;
use domain::organization::Organization;
use domain::project::Project;
use domain::release::Release;

use crate::store::Projectable;
use crate::{api_keys, builds, organizations, projects, releases};

/// One read model's reaction to one aggregate type's events. It writes only through the connection it is given.
#[async_trait]
pub trait Projector<A: Aggregate>: Send + Sync {
    /// The projection (read model) this projector feeds. Several projectors, of different aggregate types, may
    /// feed one projection; `lathe replay --projection NAME` rebuilds them together.
    fn projection(&self) -> &'static str;

    /// The tables this projector writes, which a rebuild of its projection builds aside and swaps in. A
    /// projection's tables are those of all its projectors.
    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    /// Where this projector keeps one row per stream of its aggregate type, if it does: what `lathe verify` and
    /// `/metrics` check for streams the read model is missing.
    fn stream_rows(&self) -> Option<StreamRows> {
        None
    }

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

    /// Applies a batch of events: whole commands, in order per aggregate, of different aggregates (the commands
    /// committed together by the event store's group commit, or a rebuild's batch). The default applies them one by
    /// one; a projector may group them into set-based statements as long as each aggregate's events keep their
    /// order.
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[&EventEnvelope<A>],
    ) -> Result<(), sqlx::Error> {
        for event in events {
            self.apply(conn, event).await?;
        }
        Ok(())
    }
}

/// A read-model table with one row per stream of an aggregate type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamRows {
    pub table: &'static str,
    /// The column holding the stream's id.
    pub key: &'static str,
    /// The event type after which the stream's row is gone on purpose (an expired build leaves the read models).
    pub removed_by: Option<&'static str>,
}

/// A projection's rows per stream, with the aggregate type of those streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectionStreams {
    pub projection: &'static str,
    pub aggregate_type: &'static str,
    pub rows: StreamRows,
}

/// An event as the event table holds it.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub payload: StoredJson,
    pub metadata: StoredJson,
}

/// An event's JSON as a rebuild reads it back: text, decoded straight into the typed event (no intermediate
/// `Value`).
#[derive(Debug, Clone)]
pub struct StoredJson(pub String);

impl StoredJson {
    /// Decodes into a typed value.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.0)
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
    /// The tables each rebuildable projector writes, by projection.
    fn tables(&self) -> Vec<(&'static str, &'static [&'static str])>;
    /// The rebuildable projectors' rows per stream.
    fn stream_rows(&self) -> Vec<ProjectionStreams>;
    /// For the live path, which knows the aggregate type statically and hands over typed events.
    fn as_any(&self) -> &dyn Any;
    /// Decodes stored events of this type into typed envelopes (a `Vec<EventEnvelope<A>>`).
    fn decode(&self, events: &[StoredEvent])
        -> Result<Box<dyn Any + Send + Sync>, ProjectionError>;
    /// Applies what [`AggregateProjectors::decode`] made.
    async fn apply_decoded(
        &self,
        conn: &mut PgConnection,
        decoded: &(dyn Any + Send + Sync),
        selection: &Selection,
    ) -> Result<(), ProjectionError>;
}

/// Stored events decoded into typed events, in runs of one aggregate type, ready to be applied by
/// [`Registry::apply_decoded`]. A rebuild decodes the next batch while the database applies this one.
pub struct DecodedBatch {
    runs: Vec<(&'static str, Box<dyn Any + Send + Sync>)>,
    events: usize,
}

impl DecodedBatch {
    /// How many stored events it was decoded from.
    pub fn events(&self) -> usize {
        self.events
    }
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

    fn tables(&self) -> Vec<(&'static str, &'static [&'static str])> {
        self.projectors
            .iter()
            .filter(|p| !p.has_side_effects())
            .map(|p| (p.projection(), p.tables()))
            .collect()
    }

    fn stream_rows(&self) -> Vec<ProjectionStreams> {
        self.projectors
            .iter()
            .filter(|p| !p.has_side_effects())
            .filter_map(|p| {
                Some(ProjectionStreams {
                    projection: p.projection(),
                    aggregate_type: A::TYPE,
                    rows: p.stream_rows()?,
                })
            })
            .collect()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn decode(
        &self,
        events: &[StoredEvent],
    ) -> Result<Box<dyn Any + Send + Sync>, ProjectionError> {
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
        Ok(Box::new(envelopes))
    }

    async fn apply_decoded(
        &self,
        conn: &mut PgConnection,
        decoded: &(dyn Any + Send + Sync),
        selection: &Selection,
    ) -> Result<(), ProjectionError> {
        let envelopes: Vec<&EventEnvelope<A>> = decoded
            .downcast_ref::<Vec<EventEnvelope<A>>>()
            .expect("decoded by the same aggregate type's projectors")
            .iter()
            .collect();
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

    /// The tables a projection owns: those of its projectors, each once.
    pub fn tables_of(&self, projection: &str) -> Vec<&'static str> {
        let mut tables: Vec<&'static str> = Vec::new();
        for projectors in self.by_type.values() {
            for (name, owned) in projectors.tables() {
                if name == projection {
                    tables.extend(
                        owned
                            .iter()
                            .filter(|t| !tables.contains(t))
                            .collect::<Vec<_>>(),
                    );
                }
            }
        }
        tables.sort_unstable();
        tables
    }

    /// Every projection's rows per stream, by projection name.
    pub fn stream_rows(&self) -> Vec<ProjectionStreams> {
        let mut rows: Vec<ProjectionStreams> = self
            .by_type
            .values()
            .flat_map(|p| p.stream_rows())
            .collect();
        rows.sort_unstable_by_key(|rows| rows.projection);
        rows
    }

    /// Every aggregate type with projectors.
    pub fn all_aggregate_types(&self) -> Vec<&'static str> {
        let mut types: Vec<&'static str> = self.by_type.keys().copied().collect();
        types.sort_unstable();
        types
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

    /// Decodes events for [`Registry::apply_decoded`], in runs of one aggregate type; events of types without
    /// projectors are left out.
    pub fn decode(&self, events: &[StoredEvent]) -> Result<DecodedBatch, ProjectionError> {
        let mut runs = Vec::new();
        for run in events.chunk_by(|a, b| a.aggregate_type == b.aggregate_type) {
            if let Some((kind, projectors)) =
                self.by_type.get_key_value(run[0].aggregate_type.as_str())
            {
                runs.push((*kind, projectors.decode(run)?));
            }
        }
        Ok(DecodedBatch {
            runs,
            events: events.len(),
        })
    }

    /// Applies a decoded batch to fresh read models (a rebuild), run by run so that each projector can work
    /// set-based; runs keep their order, so effects across types (a release before its builds) hold.
    pub async fn apply_decoded(
        &self,
        conn: &mut PgConnection,
        batch: &DecodedBatch,
        selection: &Selection,
    ) -> Result<(), ProjectionError> {
        for (kind, decoded) in &batch.runs {
            if let Some(projectors) = self.by_type.get(kind) {
                projectors
                    .apply_decoded(conn, decoded.as_ref(), selection)
                    .await?;
            }
        }
        Ok(())
    }

    /// Applies the new events of commands committed together to every projection of their type, side effects
    /// included (the live path, inside the append's transaction).
    pub(crate) async fn apply_live<A: Aggregate + 'static>(
        &self,
        conn: &mut PgConnection,
        events: &[&EventEnvelope<A>],
    ) -> Result<(), ProjectionError> {
        let Some(typed) = self
            .by_type
            .get(A::TYPE)
            .and_then(|projectors| projectors.as_any().downcast_ref::<Typed<A>>())
        else {
            return Ok(());
        };
        for projector in &typed.projectors {
            projector.apply_batch(conn, events).await?;
        }
        Ok(())
    }
}

/// A command's typed events on their way to the read models.
pub(crate) struct TypedEvents<A: Aggregate>(pub Vec<EventEnvelope<A>>);

#[async_trait]
impl<A: Aggregate + 'static> Projectable for TypedEvents<A> {
    fn aggregate_type(&self) -> &'static str {
        A::TYPE
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    async fn project_run(
        &self,
        run: &[&dyn Projectable],
        conn: &mut PgConnection,
        registry: &Registry,
    ) -> Result<(), ProjectionError> {
        let events: Vec<&EventEnvelope<A>> = run
            .iter()
            .filter_map(|item| item.as_any().downcast_ref::<Self>())
            .flat_map(|typed| typed.0.iter())
            .collect();
        registry.apply_live(conn, &events).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_projection_declares_its_tables_and_rows_once_and_the_registry_derives_the_lists() {
        let registry = Registry::standard();
        for projection in registry.projections() {
            assert!(
                !registry.tables_of(projection).is_empty(),
                "{projection} declares no tables: a rebuild could not swap it in"
            );
        }
        assert_eq!(
            registry.tables_of("builds"),
            ["builds", "test_results", "work_item_links"]
        );
        // Two projectors (of releases and of builds) write `releases`: it is rebuilt once.
        assert_eq!(registry.tables_of("releases"), ["releases"]);
        let rows = registry.stream_rows();
        let builds = rows.iter().find(|r| r.projection == "builds").unwrap();
        assert_eq!(builds.aggregate_type, "BuildQueue");
        assert_eq!(builds.rows.removed_by, Some("BuildExpired"));
        // Every stream table is one of its projection's tables.
        for streams in &rows {
            assert!(registry
                .tables_of(streams.projection)
                .contains(&streams.rows.table));
        }
        assert_eq!(
            registry.all_aggregate_types(),
            ["ApiKey", "BuildQueue", "Organization", "Project", "Release"]
        );
    }
}
