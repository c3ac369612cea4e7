//! Relay's `Node` interface: `node(id:)` and `nodes(ids:)` refetch any object a dashboard shows by its id (ids are
//! UUIDs, unique across types), with one statement per type however many ids are asked for.

use std::collections::HashMap;

use async_graphql::{Context, Interface, Object, ID};
use uuid::Uuid;

use domain::api_key::Scope;
use projections::nodes;

use super::types::{ApiKey, Build, Project, QueuedBuild, Release, TestResult};
use super::{parse_id, Resolver};
use crate::error::ApiError;

/// Most ids one `nodes` call may ask for.
pub const MAX_IDS: usize = 100;

/// An object that can be refetched by its id.
#[derive(Interface)]
#[graphql(field(name = "id", ty = "ID"))]
pub enum Node {
    QueuedBuild(QueuedBuild),
    Build(Build),
    Release(Release),
    Project(Project),
    ApiKey(ApiKey),
    TestResult(TestResult),
}

/// `node` and `nodes`.
#[derive(Default)]
pub struct NodeQuery;

#[Object]
impl NodeQuery {
    /// The object with this id in the caller's organization, or null. A build that is in a release is a
    /// `Build`, one that is not (pending or rejected) a `QueuedBuild`. API keys need the scope `keys:manage`.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Node>> {
        let ids = [parse_id(&id, "id")?];
        Ok(find(ctx, &ids).await?.into_iter().next().flatten())
    }

    /// The objects with these ids, in the same order, null where there is none. At most 100 ids.
    #[graphql(complexity = "ids.len() * child_complexity")]
    async fn nodes(
        &self,
        ctx: &Context<'_>,
        ids: Vec<ID>,
    ) -> async_graphql::Result<Vec<Option<Node>>> {
        if ids.len() > MAX_IDS {
            return Err(ApiError::BadUserInput(format!(
                "`nodes` takes at most {MAX_IDS} ids, not {}",
                ids.len()
            ))
            .into());
        }
        let ids = ids
            .iter()
            .map(|id| parse_id(id, "ids"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(find(ctx, &ids).await?)
    }
}

async fn find(ctx: &Context<'_>, ids: &[Uuid]) -> Result<Vec<Option<Node>>, ApiError> {
    let r = Resolver::new(ctx, Scope::BuildsRead)?;
    let with_keys = r.principal.require(Scope::KeysManage).is_ok();
    let found = nodes::find(&r.state.pool, r.organization_id(), ids, with_keys).await?;
    let mut by_id: HashMap<Uuid, Node> = HashMap::new();
    for row in found.builds {
        let id = row.build_id;
        let node = if row.release_id.is_some() {
            Node::Build(Build(row))
        } else {
            Node::QueuedBuild(QueuedBuild(row))
        };
        by_id.insert(id, node);
    }
    for row in found.releases {
        by_id.insert(row.release_id, Node::Release(Release::from(row)));
    }
    for row in found.projects {
        by_id.insert(row.project_id, Node::Project(Project(row)));
    }
    for row in found.api_keys {
        by_id.insert(row.api_key_id, Node::ApiKey(ApiKey(row)));
    }
    for row in found.test_results {
        by_id.insert(row.test_result_id, Node::TestResult(TestResult(row)));
    }
    Ok(ids.iter().map(|id| by_id.remove(id)).collect())
}
