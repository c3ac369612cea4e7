//! Rows by id, whatever their type, for GraphQL's `node(id:)` and `nodes(ids:)`: one statement per type (one after
//! the other, on one connection at a time) for any number of ids, each confined to one organization.

use sqlx::PgPool;
use uuid::Uuid;

use crate::api_keys::ApiKeyRow;
use crate::builds::BuildRow;
use crate::projects::ProjectRow;
use crate::releases::ReleaseRow;
use crate::test_results::TestResultRow;

/// The rows of an organization with any of `ids`, by type.
#[derive(Debug, Default)]
pub struct Found {
    pub builds: Vec<BuildRow>,
    pub releases: Vec<ReleaseRow>,
    pub projects: Vec<ProjectRow>,
    pub api_keys: Vec<ApiKeyRow>,
    pub test_results: Vec<TestResultRow>,
}

/// Reads every row of the organization whose id is in `ids`; API keys only with `with_keys`.
pub async fn find(
    pool: &PgPool,
    organization_id: Uuid,
    ids: &[Uuid],
    with_keys: bool,
) -> Result<Found, sqlx::Error> {
    let builds = sqlx::query_as(&format!(
        "SELECT {} FROM builds WHERE organization_id = $1 AND build_id = ANY($2)",
        crate::builds::COLUMNS
    ))
    .bind(organization_id)
    .bind(ids)
    .fetch_all(pool)
    .await?;
    let releases = releases(pool, organization_id, ids).await?;
    let projects = crate::projects::of_ids(pool, organization_id, ids).await?;
    let test_results = sqlx::query_as(
        "SELECT test_result_id, build_id, ordinal, title, status, duration_ms, error_message, priority, steps,
            tester_notes, environment, recorded_at, work_item_id, work_item_url
         FROM test_results WHERE organization_id = $1 AND test_result_id = ANY($2)",
    )
    .bind(organization_id)
    .bind(ids)
    .fetch_all(pool)
    .await?;
    let api_keys = if with_keys {
        sqlx::query_as(&format!(
            "SELECT {} FROM {} WHERE k.organization_id = $1 AND k.api_key_id = ANY($2)",
            crate::api_keys::COLUMNS,
            crate::api_keys::FROM
        ))
        .bind(organization_id)
        .bind(ids)
        .fetch_all(pool)
        .await?
    } else {
        Vec::new()
    };
    Ok(Found {
        builds,
        releases,
        projects,
        api_keys,
        test_results,
    })
}

/// Releases of an organization by id (the releases of a page of builds, in one statement).
pub async fn releases(
    pool: &PgPool,
    organization_id: Uuid,
    ids: &[Uuid],
) -> Result<Vec<ReleaseRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {} FROM releases WHERE organization_id = $1 AND release_id = ANY($2)",
        crate::releases::COLUMNS
    ))
    .bind(organization_id)
    .bind(ids)
    .fetch_all(pool)
    .await
}
