//! The builds projector: applies each build-queue event to `builds` (and results to `test_results`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::EventEnvelope;
use sqlx::PgConnection;
use uuid::Uuid;

use domain::build_queue::{BuildQueue, BuildQueueEvent, QueueReason};

use crate::organizations::aggregate_uuid;
use crate::projector::event_time;
use crate::{Projector, StreamRows};

use super::queue_status;
use super::received::{apply_routing, insert_received};

/// Projects build-queue events into `builds` and `test_results`.
pub struct BuildsProjector;

#[async_trait]
impl Projector<BuildQueue> for BuildsProjector {
    fn projection(&self) -> &'static str {
        "builds"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["builds", "test_results", "work_item_links"]
    }

    fn stream_rows(&self) -> Option<StreamRows> {
        Some(StreamRows {
            table: "builds",
            key: "build_id",
            removed_by: Some("BuildExpired"),
        })
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
            BuildQueueEvent::BuildMovedToRelease {
                from_project_id,
                release_id,
                project_id,
                moved_at,
                ..
            } => {
                // The results stay the build's rows (keyed by build), with their work items and pull request.
                add_to_release(conn, build_id, *release_id, *project_id, *moved_at).await?;
                if *from_project_id != Some(*project_id) {
                    crate::azure::carry_work_item_links(conn, build_id, *project_id, *moved_at)
                        .await?;
                }
            }
            BuildQueueEvent::BuildReturnedToQueue { project_id, .. } => {
                sqlx::query(
                    "UPDATE builds SET release_id = NULL, added_to_release_at = NULL, project_id = $2,
                        queue_status = $3, queue_reason = $4, rejection_reason = NULL, resolved_at = NULL
                     WHERE build_id = $1",
                )
                .bind(build_id)
                .bind(project_id)
                .bind(queue_status::PENDING)
                .bind(QueueReason::ReturnedToQueue.as_str())
                .execute(conn)
                .await?;
            }
            BuildQueueEvent::RejectedBuildRestored {
                project_id, reason, ..
            } => {
                sqlx::query(
                    "UPDATE builds SET project_id = $2, queue_status = $3, queue_reason = $4,
                        rejection_reason = NULL, resolved_at = NULL
                     WHERE build_id = $1",
                )
                .bind(build_id)
                .bind(project_id)
                .bind(queue_status::PENDING)
                .bind(reason.as_str())
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
