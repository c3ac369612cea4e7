//! New builds, set-based: the rows of many `BuildReceived` events and their routing in one statement each.

use chrono::{DateTime, Utc};
use cqrs_es::EventEnvelope;
use sqlx::PgConnection;
use uuid::Uuid;

use domain::build_queue::{BuildQueue, BuildQueueEvent};

use crate::organizations::aggregate_uuid;
use crate::projector::event_time;

use super::queue_status;

/// Inserts many new builds in one statement, each already routed when its routing event is in `routing`.
pub(super) async fn insert_received(
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
pub(super) async fn apply_routing(
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
