//! The outbox of calls to Azure DevOps. Rows are written by a reactor in the transaction of the event that causes
//! them (so a call is never lost nor made for an event that was rolled back), and delivered by the service's
//! worker: claimed with a lease, retried with backoff, ended succeeded or failed.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::EventEnvelope;
use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use domain::build_queue::{BuildQueue, BuildQueueEvent, TestStatus};

use crate::organizations::aggregate_uuid;
use crate::Projector;

/// Kinds of calls.
pub mod kind {
    /// One work item for one failed test.
    pub const WORK_ITEM: &str = "work_item";
    /// One summary work item for a build with more failures than the project's threshold.
    pub const WORK_ITEM_SUMMARY: &str = "work_item_summary";
    /// The test summary as a pull-request status (and comment thread, if the project asks).
    pub const PULL_REQUEST_STATUS: &str = "pull_request_status";
}

/// Enqueues the Azure DevOps calls that recorded test results call for. Not a read model: it is never replayed
/// (a rebuild must not call Azure DevOps again).
pub struct OutboxReactor;

#[async_trait]
impl Projector<BuildQueue> for OutboxReactor {
    fn projection(&self) -> &'static str {
        "outbox"
    }

    fn has_side_effects(&self) -> bool {
        true
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &EventEnvelope<BuildQueue>,
    ) -> Result<(), sqlx::Error> {
        let build_id = aggregate_uuid(&event.aggregate_id);
        let (upload_id, results) = match &event.payload {
            BuildQueueEvent::TestResultsRecorded {
                upload_id, results, ..
            } => (upload_id, results),
            BuildQueueEvent::BuildMovedToRelease {
                from_project_id,
                project_id,
                ..
            } if *from_project_id != Some(*project_id) => {
                return status_after_move(conn, build_id, event.sequence).await;
            }
            _ => return Ok(()),
        };
        // An archived project's calls stop: nothing is enqueued for it.
        let connected: Option<(Uuid, Uuid, Option<i64>, bool, i32)> = sqlx::query_as(
            "SELECT b.organization_id, b.project_id, b.pull_request_number, c.auto_create_work_items,
                c.failure_threshold
             FROM builds b JOIN azure_connections c ON c.project_id = b.project_id
             JOIN projects p ON p.project_id = b.project_id AND p.archived_at IS NULL
             WHERE b.build_id = $1",
        )
        .bind(build_id)
        .fetch_optional(&mut *conn)
        .await?;
        let Some((organization_id, project_id, pull_request, auto_create, threshold)) = connected
        else {
            return Ok(());
        };
        let failed: Vec<Uuid> = results
            .iter()
            .filter(|r| r.status == TestStatus::Failed)
            .map(|r| r.test_result_id)
            .collect();
        let mut calls: Vec<(&str, String, Value)> = Vec::new();
        if auto_create && !failed.is_empty() {
            if failed.len() > threshold.max(1) as usize {
                calls.push((
                    kind::WORK_ITEM_SUMMARY,
                    format!("summary:{build_id}:{upload_id}"),
                    json!({ "build_id": build_id, "test_result_ids": failed }),
                ));
            } else {
                for id in &failed {
                    calls.push((
                        kind::WORK_ITEM,
                        format!("work_item:{id}"),
                        json!({ "build_id": build_id, "test_result_id": id }),
                    ));
                }
            }
        }
        if pull_request.is_some() {
            calls.push((
                kind::PULL_REQUEST_STATUS,
                format!("pr_status:{build_id}:{upload_id}"),
                json!({ "build_id": build_id }),
            ));
        }
        for (kind, dedupe_key, payload) in calls {
            enqueue(
                &mut *conn,
                organization_id,
                project_id,
                kind,
                &dedupe_key,
                &payload,
            )
            .await?;
        }
        Ok(())
    }
}

/// A pull-request build with results moved to another project: its pull request gets the status again through
/// the new project's connection (if it has one and is not archived), so the status follows the build.
async fn status_after_move(
    conn: &mut PgConnection,
    build_id: Uuid,
    sequence: usize,
) -> Result<(), sqlx::Error> {
    let target: Option<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT b.organization_id, b.project_id FROM builds b
         JOIN azure_connections c ON c.project_id = b.project_id
         JOIN projects p ON p.project_id = b.project_id AND p.archived_at IS NULL
         WHERE b.build_id = $1 AND b.pull_request_number IS NOT NULL AND b.tests_total > 0",
    )
    .bind(build_id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((organization_id, project_id)) = target {
        enqueue(
            conn,
            organization_id,
            project_id,
            kind::PULL_REQUEST_STATUS,
            &format!("pr_status:{build_id}:moved:{sequence}"),
            &json!({ "build_id": build_id }),
        )
        .await?;
    }
    Ok(())
}

/// Adds a call; a call with the same dedupe key is added once.
pub async fn enqueue(
    conn: &mut PgConnection,
    organization_id: Uuid,
    project_id: Uuid,
    kind: &str,
    dedupe_key: &str,
    payload: &Value,
) -> Result<Uuid, sqlx::Error> {
    let id: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO public.outbox (outbox_id, organization_id, project_id, kind, dedupe_key, payload)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (dedupe_key) DO NOTHING RETURNING outbox_id",
    )
    .bind(Uuid::new_v4())
    .bind(organization_id)
    .bind(project_id)
    .bind(kind)
    .bind(dedupe_key)
    .bind(payload)
    .fetch_optional(&mut *conn)
    .await?;
    match id {
        Some(id) => Ok(id),
        None => {
            sqlx::query_scalar("SELECT outbox_id FROM public.outbox WHERE dedupe_key = $1")
                .bind(dedupe_key)
                .fetch_one(conn)
                .await
        }
    }
}

/// One call and where it stands.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub outbox_id: Uuid,
    pub organization_id: Uuid,
    pub project_id: Uuid,
    pub kind: String,
    pub payload: Value,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub last_status: Option<i32>,
    pub result: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "outbox_id, organization_id, project_id, kind, payload, status, attempts, next_attempt_at, \
    last_error, last_status, result, created_at, updated_at";

/// Claims up to `limit` due calls for `lease_secs`: another worker (or process) will not take them meanwhile, and a
/// worker that dies leaves them to be claimed again when the lease ends. The lease covers every call claimed, so a
/// worker that makes its calls one after another claims one at a time.
pub async fn claim(
    pool: &PgPool,
    lease_secs: f64,
    limit: i64,
) -> Result<Vec<OutboxRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE public.outbox SET next_attempt_at = now() + make_interval(secs => $1), attempts = attempts + 1,
            updated_at = now()
         WHERE outbox_id IN (
            SELECT outbox_id FROM public.outbox WHERE status = 'pending' AND next_attempt_at <= now()
            ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING {COLUMNS}"
    ))
    .bind(lease_secs)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Marks a call done.
pub async fn succeed(
    pool: &PgPool,
    id: Uuid,
    status: Option<u16>,
    result: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE public.outbox SET status = 'succeeded', last_status = $2, result = $3, last_error = NULL,
            updated_at = now() WHERE outbox_id = $1",
    )
    .bind(id)
    .bind(status.map(i32::from))
    .bind(storable_json(result).as_ref())
    .execute(pool)
    .await?;
    Ok(())
}

/// Schedules another attempt after `after_secs`.
pub async fn retry(
    pool: &PgPool,
    id: Uuid,
    after_secs: f64,
    status: Option<u16>,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE public.outbox SET next_attempt_at = now() + make_interval(secs => $2), last_status = $3,
            last_error = $4, updated_at = now() WHERE outbox_id = $1",
    )
    .bind(id)
    .bind(after_secs)
    .bind(status.map(i32::from))
    .bind(storable_error(error))
    .execute(pool)
    .await?;
    Ok(())
}

/// Ends a call as failed, with its last error.
pub async fn fail(
    pool: &PgPool,
    id: Uuid,
    status: Option<u16>,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE public.outbox SET status = 'failed', last_status = $2, last_error = $3, updated_at = now()
         WHERE outbox_id = $1",
    )
    .bind(id)
    .bind(status.map(i32::from))
    .bind(storable_error(error))
    .execute(pool)
    .await?;
    Ok(())
}

/// An organization's calls, newest first, optionally of one status.
pub async fn list(
    pool: &PgPool,
    organization_id: Uuid,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<OutboxRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM public.outbox WHERE organization_id = $1 AND ($2::text IS NULL OR status = $2)
         ORDER BY created_at DESC, outbox_id DESC LIMIT $3"
    ))
    .bind(organization_id)
    .bind(status)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// One call of an organization.
pub async fn find(
    pool: &PgPool,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<OutboxRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM public.outbox WHERE organization_id = $1 AND outbox_id = $2"
    ))
    .bind(organization_id)
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Longest error text kept of a call (Azure DevOps's own message, or ours).
const MAX_ERROR_CHARS: usize = 4_096;

/// An error as PostgreSQL can store it: an answer from the other side may hold NUL characters, and a refused
/// update would leave the call to be tried again and again.
fn storable_error(error: &str) -> std::borrow::Cow<'_, str> {
    domain::clean_text(error, MAX_ERROR_CHARS)
}

/// A result as `jsonb` can store it: without NUL characters in its strings (`jsonb` refuses `\u0000`).
fn storable_json(value: &Value) -> std::borrow::Cow<'_, Value> {
    fn has_nul(value: &Value) -> bool {
        match value {
            Value::String(text) => text.contains('\0'),
            Value::Array(items) => items.iter().any(has_nul),
            Value::Object(fields) => fields.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    fn strip(value: &Value) -> Value {
        match value {
            Value::String(text) => Value::String(text.replace('\0', "")),
            Value::Array(items) => Value::Array(items.iter().map(strip).collect()),
            Value::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.replace('\0', ""), strip(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    if has_nul(value) {
        std::borrow::Cow::Owned(strip(value))
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

#[cfg(test)]
mod storable_tests {
    use super::*;

    #[test]
    fn nul_characters_from_the_other_side_never_reach_postgresql() {
        assert_eq!(storable_error("bad\0 answer"), "bad answer");
        let result = json!({ "url": "https://x/\0", "n": [1, "a\0"], "k\0": true });
        assert_eq!(
            storable_json(&result).into_owned(),
            json!({ "url": "https://x/", "n": [1, "a"], "k": true })
        );
        let clean = json!({ "id": 7 });
        assert!(matches!(
            storable_json(&clean),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
