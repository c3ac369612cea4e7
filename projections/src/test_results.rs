//! Read model of test results: the rows behind `build.testResults`, in the order they were uploaded.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use domain::build_queue::TestResult;

use crate::Page;

/// Inserts one upload's results after the build's existing ones, in one statement whatever the batch size.
pub(crate) async fn insert(
    conn: &mut PgConnection,
    build_id: Uuid,
    results: &[TestResult],
    recorded_at: &DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let (organization_id, already): (Uuid, i64) =
        sqlx::query_as("SELECT organization_id, tests_total FROM builds WHERE build_id = $1")
            .bind(build_id)
            .fetch_one(&mut *conn)
            .await?;
    let ordinals: Vec<i64> = (1..=results.len() as i64).map(|n| already + n).collect();
    // Columns borrow the results' text: an upload may hold 100,000 of them.
    let column = |f: fn(&TestResult) -> Option<&str>| results.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO test_results (test_result_id, build_id, organization_id, ordinal, title, status, duration_ms,
            error_message, priority, steps, tester_notes, environment, recorded_at)
         SELECT id, $2, $3, ordinal, title, status, duration_ms, error_message, priority, steps, tester_notes,
            environment, $4
         FROM UNNEST($1::uuid[], $5::bigint[], $6::text[], $7::text[], $8::bigint[], $9::text[], $10::int[],
            $11::text[], $12::text[], $13::text[])
            AS r(id, ordinal, title, status, duration_ms, error_message, priority, steps, tester_notes, environment)",
    )
    .bind(results.iter().map(|r| r.test_result_id).collect::<Vec<_>>())
    .bind(build_id)
    .bind(organization_id)
    .bind(recorded_at)
    .bind(ordinals)
    .bind(results.iter().map(|r| r.title.as_str()).collect::<Vec<_>>())
    .bind(results.iter().map(|r| r.status.as_str()).collect::<Vec<_>>())
    .bind(results.iter().map(|r| r.duration_ms.map(|d| d as i64)).collect::<Vec<_>>())
    .bind(column(|r| r.error_message.as_deref()))
    .bind(results.iter().map(|r| r.priority).collect::<Vec<_>>())
    .bind(column(|r| r.steps.as_deref()))
    .bind(column(|r| r.tester_notes.as_deref()))
    .bind(column(|r| r.environment.as_deref()))
    .execute(conn)
    .await?;
    Ok(())
}

/// One test result as the API shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TestResultRow {
    pub test_result_id: Uuid,
    pub build_id: Uuid,
    pub ordinal: i64,
    pub title: String,
    pub status: String,
    pub duration_ms: Option<i64>,
    pub error_message: Option<String>,
    pub priority: Option<i32>,
    pub steps: Option<String>,
    pub tester_notes: Option<String>,
    pub environment: Option<String>,
    pub recorded_at: DateTime<Utc>,
    pub work_item_id: Option<i64>,
    pub work_item_url: Option<String>,
}

/// A page of a build's results in upload order, optionally of one status; `after` is an ordinal.
pub async fn page(
    pool: &PgPool,
    build_id: Uuid,
    status: Option<&str>,
    after: Option<i64>,
    limit: i64,
) -> Result<Page<TestResultRow>, sqlx::Error> {
    let rows = sqlx::query_as(
        "SELECT test_result_id, build_id, ordinal, title, status, duration_ms, error_message, priority, steps,
            tester_notes, environment, recorded_at, work_item_id, work_item_url
         FROM test_results
         WHERE build_id = $1 AND ($2::text IS NULL OR status = $2) AND ordinal > $3
         ORDER BY ordinal
         LIMIT $4",
    )
    .bind(build_id)
    .bind(status)
    .bind(after.unwrap_or(0))
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    Ok(Page::from_overfetch(rows, limit))
}

/// One test result of an organization, with its build's project.
pub async fn find(
    pool: &PgPool,
    organization_id: Uuid,
    test_result_id: Uuid,
) -> Result<Option<(TestResultRow, Option<Uuid>)>, sqlx::Error> {
    let row: Option<TestResultRow> = sqlx::query_as(
        "SELECT test_result_id, build_id, ordinal, title, status, duration_ms, error_message, priority, steps,
            tester_notes, environment, recorded_at, work_item_id, work_item_url
         FROM test_results WHERE organization_id = $1 AND test_result_id = $2",
    )
    .bind(organization_id)
    .bind(test_result_id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let project: Option<Uuid> =
        sqlx::query_scalar("SELECT project_id FROM builds WHERE build_id = $1")
            .bind(row.build_id)
            .fetch_optional(pool)
            .await?
            .flatten();
    Ok(Some((row, project)))
}

/// Several test results of one build, in upload order.
pub async fn of_ids(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<TestResultRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT test_result_id, build_id, ordinal, title, status, duration_ms, error_message, priority, steps,
            tester_notes, environment, recorded_at, work_item_id, work_item_url
         FROM test_results WHERE test_result_id = ANY($1) ORDER BY ordinal",
    )
    .bind(ids)
    .fetch_all(pool)
    .await
}
