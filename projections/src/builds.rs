//! Read model of builds: every build received, the queue (builds with a queue status) and the builds of each
//! release, in one table with an index per slice.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::EventEnvelope;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use domain::build_queue::{BuildQueue, BuildQueueEvent, QueueReason};

use crate::organizations::aggregate_uuid;
use crate::projector::event_time;
use crate::{Page, Projector};

/// Status of a build in the queue, as stored in `builds.queue_status`.
pub mod queue_status {
    pub const PENDING: &str = "pending";
    pub const ASSIGNED: &str = "assigned";
    pub const REJECTED: &str = "rejected";
}

/// Projects build-queue events into `builds` and `test_results`.
pub struct BuildsProjector;

#[async_trait]
impl Projector<BuildQueue> for BuildsProjector {
    fn projection(&self) -> &'static str {
        "builds"
    }

    /// A rebuild's batch, set-based where it matters: every stream starts with `BuildReceived` (sequence 1) and its
    /// routing event (`BuildQueued` or `BuildCreatedInRelease`, sequence 2) in one commit, so those are applied
    /// first, all of a batch's in one statement each, before the rest one by one. Each build keeps its own order;
    /// builds never touch each other's rows.
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[&EventEnvelope<BuildQueue>],
    ) -> Result<(), sqlx::Error> {
        let mut received = Vec::new();
        let mut rest = Vec::new();
        for &event in events {
            match (&event.payload, event.sequence) {
                (BuildQueueEvent::BuildReceived { .. }, 1) => received.push(event),
                _ => rest.push(event),
            }
        }
        // A build's routing event comes in the same command as its first event: it is folded into the insert.
        let received_ids: std::collections::HashSet<&str> =
            received.iter().map(|e| e.aggregate_id.as_str()).collect();
        let mut routing = std::collections::HashMap::new();
        rest.retain(|event| {
            let folded = event.sequence == 2
                && received_ids.contains(event.aggregate_id.as_str())
                && matches!(
                    event.payload,
                    BuildQueueEvent::BuildQueued { .. }
                        | BuildQueueEvent::BuildCreatedInRelease { .. }
                );
            if folded {
                routing.insert(event.aggregate_id.as_str(), *event);
            }
            !folded
        });
        insert_received(conn, &received, &routing).await?;
        // Routing events of builds inserted in an earlier batch (never their own: a stream's first events are
        // inserted above), set-based too.
        let (routed, rest): (Vec<_>, Vec<_>) = rest.into_iter().partition(|event| {
            event.sequence == 2
                && matches!(
                    event.payload,
                    BuildQueueEvent::BuildQueued { .. }
                        | BuildQueueEvent::BuildCreatedInRelease { .. }
                )
        });
        apply_routing(conn, &routed).await?;
        for event in rest {
            self.apply(conn, event).await?;
        }
        Ok(())
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &EventEnvelope<BuildQueue>,
    ) -> Result<(), sqlx::Error> {
        let build_id = aggregate_uuid(&event.aggregate_id);
        match &event.payload {
            BuildQueueEvent::BuildReceived {
                entry_id,
                organization_id,
                source,
                source_key,
                details,
                received_at,
            } => {
                let pull_request = details.pull_request.as_ref();
                sqlx::query(
                    "INSERT INTO builds (build_id, organization_id, source, source_key, build_name, branch,
                        commit_sha, pull_request_number, pull_request_repository_id, url, result, received_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(entry_id)
                .bind(organization_id)
                .bind(source.as_str())
                .bind(source_key)
                .bind(&details.name)
                .bind(&details.branch)
                .bind(&details.commit_sha)
                .bind(pull_request.map(|pr| pr.number as i64))
                .bind(pull_request.and_then(|pr| pr.repository_id.clone()))
                .bind(&details.url)
                .bind(&details.result)
                .bind(received_at)
                .execute(conn)
                .await?;
            }
            BuildQueueEvent::BuildCreatedInRelease {
                release_id,
                project_id,
            } => {
                add_to_release(conn, build_id, *release_id, *project_id, event_time(event)).await?;
            }
            BuildQueueEvent::BuildQueued { project_id, reason } => {
                sqlx::query(
                    "UPDATE builds SET project_id = $2, queue_status = $3, queue_reason = $4 WHERE build_id = $1",
                )
                .bind(build_id)
                .bind(project_id)
                .bind(queue_status::PENDING)
                .bind(reason.as_str())
                .execute(conn)
                .await?;
            }
            BuildQueueEvent::ProjectSelectedForBuild { project_id } => {
                sqlx::query(
                    "UPDATE builds SET project_id = $2, queue_reason = $3 WHERE build_id = $1",
                )
                .bind(build_id)
                .bind(project_id)
                .bind(QueueReason::ProjectSelected.as_str())
                .execute(conn)
                .await?;
            }
            BuildQueueEvent::BuildAssignedToRelease {
                release_id,
                project_id,
                assigned_at,
            } => {
                sqlx::query(
                    "UPDATE builds SET queue_status = $2, queue_reason = NULL, resolved_at = $3 WHERE build_id = $1",
                )
                .bind(build_id)
                .bind(queue_status::ASSIGNED)
                .bind(assigned_at)
                .execute(&mut *conn)
                .await?;
                add_to_release(conn, build_id, *release_id, *project_id, *assigned_at).await?;
            }
            BuildQueueEvent::QueuedBuildRejected {
                reason,
                rejected_at,
            } => {
                sqlx::query(
                    "UPDATE builds SET queue_status = $2, queue_reason = NULL, rejection_reason = $3,
                        resolved_at = $4
                     WHERE build_id = $1",
                )
                .bind(build_id)
                .bind(queue_status::REJECTED)
                .bind(reason)
                .bind(rejected_at)
                .execute(conn)
                .await?;
            }
            BuildQueueEvent::WorkItemLinked {
                test_result_ids,
                work_item_id,
                url,
                linked_at,
            } => {
                crate::azure::link_work_item(
                    conn,
                    build_id,
                    test_result_ids,
                    *work_item_id,
                    url,
                    *linked_at,
                )
                .await?;
            }
            BuildQueueEvent::BuildExpired { .. } => {
                // The events stay; the build and its results leave the read models and storage.
                sqlx::query("DELETE FROM test_results WHERE build_id = $1")
                    .bind(build_id)
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("DELETE FROM builds WHERE build_id = $1")
                    .bind(build_id)
                    .execute(conn)
                    .await?;
            }
            BuildQueueEvent::TestResultsRecorded {
                results,
                summary,
                recorded_at,
                ..
            } => {
                crate::test_results::insert(conn, build_id, results, recorded_at).await?;
                sqlx::query(
                    "UPDATE builds SET tests_total = tests_total + $2, tests_passed = tests_passed + $3,
                        tests_failed = tests_failed + $4, tests_skipped = tests_skipped + $5
                     WHERE build_id = $1",
                )
                .bind(build_id)
                .bind(summary.total as i64)
                .bind(summary.passed as i64)
                .bind(summary.failed as i64)
                .bind(summary.skipped as i64)
                .execute(conn)
                .await?;
            }
        }
        Ok(())
    }
}

/// Inserts the rows of many `BuildReceived` events in one statement.
/// Inserts many new builds in one statement, each already routed when its routing event is in `routing`.
async fn insert_received(
    conn: &mut PgConnection,
    events: &[&EventEnvelope<BuildQueue>],
    routing: &std::collections::HashMap<&str, &EventEnvelope<BuildQueue>>,
) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let mut c = ReceivedColumns::default();
    for event in events {
        if let BuildQueueEvent::BuildReceived {
            entry_id,
            organization_id,
            source,
            source_key,
            details,
            received_at,
        } = &event.payload
        {
            c.build_id.push(*entry_id);
            c.organization_id.push(*organization_id);
            c.source.push(source.as_str());
            c.source_key.push(source_key.as_str());
            c.build_name.push(details.name.as_str());
            c.branch.push(details.branch.as_deref());
            c.commit_sha.push(details.commit_sha.as_deref());
            c.pr_number
                .push(details.pull_request.as_ref().map(|pr| pr.number as i64));
            c.pr_repository.push(
                details
                    .pull_request
                    .as_ref()
                    .and_then(|pr| pr.repository_id.as_deref()),
            );
            c.url.push(details.url.as_deref());
            c.result.push(details.result.as_deref());
            c.received_at.push(*received_at);
            let route = routing.get(event.aggregate_id.as_str());
            let (mut project, mut status, mut reason, mut release, mut added) =
                (None, None, None, None, None);
            match route.map(|r| (&r.payload, r)) {
                Some((
                    BuildQueueEvent::BuildQueued {
                        project_id,
                        reason: why,
                    },
                    _,
                )) => {
                    project = *project_id;
                    status = Some(queue_status::PENDING);
                    reason = Some(why.as_str());
                }
                Some((
                    BuildQueueEvent::BuildCreatedInRelease {
                        release_id,
                        project_id,
                    },
                    routed,
                )) => {
                    project = Some(*project_id);
                    release = Some(*release_id);
                    added = Some(event_time(routed));
                }
                _ => {}
            }
            c.project_id.push(project);
            c.queue_status.push(status);
            c.queue_reason.push(reason);
            c.release_id.push(release);
            c.added_to_release_at.push(added);
        }
    }
    sqlx::query(
        "INSERT INTO builds (build_id, organization_id, source, source_key, build_name, branch, commit_sha,
            pull_request_number, pull_request_repository_id, url, result, received_at, project_id, queue_status,
            queue_reason, release_id, added_to_release_at)
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::bigint[], $9::text[], $10::text[], $11::text[], $12::timestamptz[], $13::uuid[], $14::text[],
            $15::text[], $16::uuid[], $17::timestamptz[])",
    )
    .bind(&c.build_id)
    .bind(&c.organization_id)
    .bind(&c.source)
    .bind(&c.source_key)
    .bind(&c.build_name)
    .bind(&c.branch)
    .bind(&c.commit_sha)
    .bind(&c.pr_number)
    .bind(&c.pr_repository)
    .bind(&c.url)
    .bind(&c.result)
    .bind(&c.received_at)
    .bind(&c.project_id)
    .bind(&c.queue_status)
    .bind(&c.queue_reason)
    .bind(&c.release_id)
    .bind(&c.added_to_release_at)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Default)]
struct ReceivedColumns<'a> {
    build_id: Vec<Uuid>,
    organization_id: Vec<Uuid>,
    source: Vec<&'a str>,
    source_key: Vec<&'a str>,
    build_name: Vec<&'a str>,
    branch: Vec<Option<&'a str>>,
    commit_sha: Vec<Option<&'a str>>,
    pr_number: Vec<Option<i64>>,
    pr_repository: Vec<Option<&'a str>>,
    url: Vec<Option<&'a str>>,
    result: Vec<Option<&'a str>>,
    received_at: Vec<DateTime<Utc>>,
    project_id: Vec<Option<Uuid>>,
    queue_status: Vec<Option<&'a str>>,
    queue_reason: Vec<Option<&'a str>>,
    release_id: Vec<Option<Uuid>>,
    added_to_release_at: Vec<Option<DateTime<Utc>>>,
}

/// Applies many routing events (`BuildQueued`, `BuildCreatedInRelease`) of builds inserted earlier, in one statement
/// each kind (a rebuild can meet them apart from their first events, e.g. when one transaction stored many builds).
async fn apply_routing(
    conn: &mut PgConnection,
    events: &[&EventEnvelope<BuildQueue>],
) -> Result<(), sqlx::Error> {
    let (mut queued_ids, mut queued_projects, mut reasons) = (Vec::new(), Vec::new(), Vec::new());
    let (mut created_ids, mut releases, mut projects, mut times) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for event in events {
        let build_id = aggregate_uuid(&event.aggregate_id);
        match &event.payload {
            BuildQueueEvent::BuildQueued { project_id, reason } => {
                queued_ids.push(build_id);
                queued_projects.push(*project_id);
                reasons.push(reason.as_str());
            }
            BuildQueueEvent::BuildCreatedInRelease {
                release_id,
                project_id,
            } => {
                created_ids.push(build_id);
                releases.push(*release_id);
                projects.push(*project_id);
                times.push(event_time(event));
            }
            _ => {}
        }
    }
    if !queued_ids.is_empty() {
        sqlx::query(
            "UPDATE builds SET project_id = u.project_id, queue_status = $4, queue_reason = u.reason
             FROM UNNEST($1::uuid[], $2::uuid[], $3::text[]) AS u(build_id, project_id, reason)
             WHERE builds.build_id = u.build_id",
        )
        .bind(&queued_ids)
        .bind(&queued_projects)
        .bind(&reasons)
        .bind(queue_status::PENDING)
        .execute(&mut *conn)
        .await?;
    }
    if !created_ids.is_empty() {
        sqlx::query(
            "UPDATE builds SET release_id = u.release_id, project_id = u.project_id, added_to_release_at = u.at
             FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::timestamptz[]) AS u(build_id, release_id, project_id, at)
             WHERE builds.build_id = u.build_id",
        )
        .bind(&created_ids)
        .bind(&releases)
        .bind(&projects)
        .bind(&times)
        .execute(conn)
        .await?;
    }
    Ok(())
}

async fn add_to_release(
    conn: &mut PgConnection,
    build_id: Uuid,
    release_id: Uuid,
    project_id: Uuid,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE builds SET release_id = $2, project_id = $3, added_to_release_at = $4 WHERE build_id = $1",
    )
    .bind(build_id)
    .bind(release_id)
    .bind(project_id)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// A build as the API shows it, in the queue or in a release.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BuildRow {
    pub build_id: Uuid,
    pub organization_id: Uuid,
    pub source: String,
    pub build_name: String,
    pub project_id: Option<Uuid>,
    pub branch: Option<String>,
    pub commit_sha: Option<String>,
    pub pull_request_number: Option<i64>,
    pub pull_request_repository_id: Option<String>,
    pub url: Option<String>,
    pub result: Option<String>,
    pub received_at: DateTime<Utc>,
    pub queue_status: Option<String>,
    pub queue_reason: Option<String>,
    pub rejection_reason: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub release_id: Option<Uuid>,
    pub added_to_release_at: Option<DateTime<Utc>>,
    pub tests_total: i64,
    pub tests_passed: i64,
    pub tests_failed: i64,
    pub tests_skipped: i64,
}

const COLUMNS: &str = "build_id, organization_id, source, build_name, project_id, branch, commit_sha, \
    pull_request_number, pull_request_repository_id, url, result, received_at, queue_status, queue_reason, \
    rejection_reason, resolved_at, release_id, added_to_release_at, tests_total, tests_passed, tests_failed, \
    tests_skipped";

/// Finds one build of an organization, whether queued, in a release, or both.
pub async fn find(
    pool: &PgPool,
    organization_id: Uuid,
    build_id: Uuid,
) -> Result<Option<BuildRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM builds WHERE organization_id = $1 AND build_id = $2"
    ))
    .bind(organization_id)
    .bind(build_id)
    .fetch_optional(pool)
    .await
}

/// A page of the queue with one status, newest first; `after` is the `(received_at, build_id)` of the previous
/// page's last row.
pub async fn queue_page(
    pool: &PgPool,
    organization_id: Uuid,
    status: &str,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Page<BuildRow>, sqlx::Error> {
    let (after_time, after_id) = after.unzip();
    let rows = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM builds
         WHERE organization_id = $1 AND queue_status = $2
           AND ($3::timestamptz IS NULL OR (received_at, build_id) < ($3, $4))
         ORDER BY received_at DESC, build_id DESC
         LIMIT $5"
    ))
    .bind(organization_id)
    .bind(status)
    .bind(after_time)
    .bind(after_id)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    Ok(Page::from_overfetch(rows, limit))
}

/// A page of the builds of a release, newest first; `after` is the `(added_to_release_at, build_id)` of the
/// previous page's last row.
pub async fn release_page(
    pool: &PgPool,
    release_id: Uuid,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Page<BuildRow>, sqlx::Error> {
    let (after_time, after_id) = after.unzip();
    let rows = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM builds
         WHERE release_id = $1
           AND ($2::timestamptz IS NULL OR (added_to_release_at, build_id) < ($2, $3))
         ORDER BY added_to_release_at DESC, build_id DESC
         LIMIT $4"
    ))
    .bind(release_id)
    .bind(after_time)
    .bind(after_id)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    Ok(Page::from_overfetch(rows, limit))
}

/// A project's live builds, newest first: what the retention job measures against its policy.
pub async fn of_project(
    pool: &PgPool,
    project_id: Uuid,
) -> Result<Vec<(Uuid, DateTime<Utc>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT build_id, received_at FROM builds WHERE project_id = $1 ORDER BY received_at DESC, build_id DESC",
    )
    .bind(project_id)
    .fetch_all(pool)
    .await
}
