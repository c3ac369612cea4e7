//! Read model of test results: the rows behind `build.testResults`, in the order they were uploaded.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use domain::build_queue::TestResult;

use crate::Page;

/// Inserts one upload's results after the build's existing ones. They are streamed with `COPY` in chunks of
/// [`COPY_CHUNK`] bytes, so that a 100,000-result upload is never encoded whole a second time (as one statement's
/// parameters, then again in the connection's buffer).
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
    if results.is_empty() {
        return Ok(());
    }
    let mut copy = conn
        .copy_in_raw(
            "COPY test_results (test_result_id, build_id, organization_id, ordinal, title, status, duration_ms,
                error_message, priority, steps, tester_notes, environment, recorded_at) FROM STDIN",
        )
        .await?;
    let fixed = format!("{build_id}\t{organization_id}");
    let recorded_at = recorded_at.to_rfc3339();
    let mut chunk = String::with_capacity(COPY_CHUNK + 4096);
    for (n, result) in results.iter().enumerate() {
        use std::fmt::Write;
        let _ = write!(
            chunk,
            "{}\t{fixed}\t{}\t",
            result.test_result_id,
            already + n as i64 + 1
        );
        copy_text(&mut chunk, Some(&result.title));
        chunk.push('\t');
        chunk.push_str(result.status.as_str());
        chunk.push('\t');
        copy_text(
            &mut chunk,
            result.duration_ms.map(|d| d.to_string()).as_deref(),
        );
        chunk.push('\t');
        copy_text(&mut chunk, result.error_message.as_deref());
        chunk.push('\t');
        copy_text(
            &mut chunk,
            result.priority.map(|p| p.to_string()).as_deref(),
        );
        chunk.push('\t');
        copy_text(&mut chunk, result.steps.as_deref());
        chunk.push('\t');
        copy_text(&mut chunk, result.tester_notes.as_deref());
        chunk.push('\t');
        copy_text(&mut chunk, result.environment.as_deref());
        chunk.push('\t');
        chunk.push_str(&recorded_at);
        chunk.push('\n');
        if chunk.len() >= COPY_CHUNK {
            copy.send(chunk.as_bytes()).await?;
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        copy.send(chunk.as_bytes()).await?;
    }
    copy.finish().await?;
    Ok(())
}

/// Bytes of `COPY` data sent at a time.
const COPY_CHUNK: usize = 256 * 1024;

/// Appends a value in `COPY`'s text format: `\N` for null, and backslash, tab, newline and carriage return escaped.
fn copy_text(out: &mut String, value: Option<&str>) {
    let Some(value) = value else {
        out.push_str("\\N");
        return;
    };
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
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

/// The same page of each of several builds' results: one statement for the test results of a page of builds,
/// instead of one per build.
pub async fn pages(
    pool: &PgPool,
    build_ids: &[Uuid],
    status: Option<&str>,
    after: Option<i64>,
    limit: i64,
) -> Result<std::collections::HashMap<Uuid, Page<TestResultRow>>, sqlx::Error> {
    let rows: Vec<TestResultRow> = sqlx::query_as(
        "SELECT t.* FROM unnest($1::uuid[]) WITH ORDINALITY AS p(build_id, n)
         CROSS JOIN LATERAL (
             SELECT test_result_id, build_id, ordinal, title, status, duration_ms, error_message, priority, steps,
                 tester_notes, environment, recorded_at, work_item_id, work_item_url
             FROM test_results
             WHERE build_id = p.build_id AND ($2::text IS NULL OR status = $2) AND ordinal > $3
             ORDER BY ordinal
             LIMIT $4) t
         ORDER BY p.n, t.ordinal",
    )
    .bind(build_ids)
    .bind(status)
    .bind(after.unwrap_or(0))
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    Ok(crate::group_pages(
        build_ids,
        rows,
        |row| Some(row.build_id),
        limit,
        // Results are paged by ordinal, forwards only.
        &crate::Keyset::default(),
    ))
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

#[cfg(test)]
mod tests {
    use super::copy_text;

    #[test]
    fn copy_text_escapes_what_copy_would_read_as_structure() {
        let mut out = String::new();
        copy_text(&mut out, Some("a\tb\nc\rd\\e \\N"));
        assert_eq!(out, "a\\tb\\nc\\rd\\\\e \\\\N");
        out.clear();
        copy_text(&mut out, None);
        assert_eq!(out, "\\N");
    }
}
