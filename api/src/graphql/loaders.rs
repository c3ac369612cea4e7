//! Batched reads for nested lists: the builds of a page of releases, the test results of a page of builds and the
//! project of each are read with one statement per list, not one per parent (async-graphql's DataLoader gathers
//! the keys every item of a list asks for, then calls [`Loader::load`] once).

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use sqlx::PgPool;
use uuid::Uuid;

use projections::builds::BuildRow;
use projections::projects::ProjectRow;
use projections::releases::ReleaseRow;
use projections::test_results::TestResultRow;
use projections::{builds, projects, test_results, Keyset, Page};

use crate::error::ApiError;

/// The read-model pool behind every loader; one [`DataLoader`] of it per request, so nothing is cached across
/// requests (or organizations).
pub struct Reads {
    pool: PgPool,
}

/// The loaders of one request.
pub type Loaders = DataLoader<Reads>;

/// A request's loaders.
pub fn for_request(pool: PgPool) -> Loaders {
    DataLoader::new(Reads { pool }, tokio::spawn)
}

/// Why a batch failed; shared by every item that waited for it.
#[derive(Clone)]
pub struct LoadError(Arc<sqlx::Error>);

impl From<LoadError> for ApiError {
    fn from(error: LoadError) -> Self {
        ApiError::internal(anyhow::anyhow!("batched read failed: {}", error.0))
    }
}

/// Groups keys that differ only in their parent, so that each group is one statement.
fn grouped<K, G: std::hash::Hash + Eq>(keys: &[K], group: impl Fn(&K) -> G) -> HashMap<G, Vec<&K>> {
    let mut groups: HashMap<G, Vec<&K>> = HashMap::new();
    for key in keys {
        groups.entry(group(key)).or_default().push(key);
    }
    groups
}

/// A page of one release's builds.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ReleaseBuilds {
    pub release_id: Uuid,
    pub keyset: Keyset,
    pub limit: i64,
}

impl Loader<ReleaseBuilds> for Reads {
    type Value = Arc<Page<BuildRow>>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[ReleaseBuilds],
    ) -> Result<HashMap<ReleaseBuilds, Self::Value>, Self::Error> {
        let mut loaded = HashMap::new();
        for ((keyset, limit), keys) in grouped(keys, |key| (key.keyset, key.limit)) {
            let ids: Vec<Uuid> = keys.iter().map(|key| key.release_id).collect();
            let mut pages = builds::release_pages(&self.pool, &ids, keyset, limit)
                .await
                .map_err(|error| LoadError(Arc::new(error)))?;
            for key in keys {
                if let Some(page) = pages.remove(&key.release_id) {
                    loaded.insert(key.clone(), Arc::new(page));
                }
            }
        }
        Ok(loaded)
    }
}

/// A page of one build's test results.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BuildResults {
    pub build_id: Uuid,
    pub status: Option<&'static str>,
    pub after: Option<i64>,
    pub limit: i64,
}

impl Loader<BuildResults> for Reads {
    type Value = Arc<Page<TestResultRow>>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[BuildResults],
    ) -> Result<HashMap<BuildResults, Self::Value>, Self::Error> {
        let mut loaded = HashMap::new();
        for ((status, after, limit), keys) in
            grouped(keys, |key| (key.status, key.after, key.limit))
        {
            let ids: Vec<Uuid> = keys.iter().map(|key| key.build_id).collect();
            let mut pages = test_results::pages(&self.pool, &ids, status, after, limit)
                .await
                .map_err(|error| LoadError(Arc::new(error)))?;
            for key in keys {
                if let Some(page) = pages.remove(&key.build_id) {
                    loaded.insert(key.clone(), Arc::new(page));
                }
            }
        }
        Ok(loaded)
    }
}

/// A project of an organization.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProjectOf {
    pub organization_id: Uuid,
    pub project_id: Uuid,
}

impl Loader<ProjectOf> for Reads {
    type Value = Arc<ProjectRow>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[ProjectOf],
    ) -> Result<HashMap<ProjectOf, Self::Value>, Self::Error> {
        let mut loaded = HashMap::new();
        for (organization_id, keys) in grouped(keys, |key| key.organization_id) {
            let ids: Vec<Uuid> = keys.iter().map(|key| key.project_id).collect();
            let rows = projects::of_ids(&self.pool, organization_id, &ids)
                .await
                .map_err(|error| LoadError(Arc::new(error)))?;
            for row in rows {
                loaded.insert(
                    ProjectOf {
                        organization_id,
                        project_id: row.project_id,
                    },
                    Arc::new(row),
                );
            }
        }
        Ok(loaded)
    }
}

/// A release of an organization (the release of each build of a page).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ReleaseOf {
    pub organization_id: Uuid,
    pub release_id: Uuid,
}

impl Loader<ReleaseOf> for Reads {
    type Value = Arc<ReleaseRow>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[ReleaseOf],
    ) -> Result<HashMap<ReleaseOf, Self::Value>, Self::Error> {
        let mut loaded = HashMap::new();
        for (organization_id, keys) in grouped(keys, |key| key.organization_id) {
            let ids: Vec<Uuid> = keys.iter().map(|key| key.release_id).collect();
            let rows = projections::nodes::releases(&self.pool, organization_id, &ids)
                .await
                .map_err(|error| LoadError(Arc::new(error)))?;
            for row in rows {
                loaded.insert(
                    ReleaseOf {
                        organization_id,
                        release_id: row.release_id,
                    },
                    Arc::new(row),
                );
            }
        }
        Ok(loaded)
    }
}
