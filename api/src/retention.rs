//! The retention job: expires builds and archives completed releases per each project's policy. It runs on an
//! interval in every process, but only one process at a time does the work (a database advisory lock). What it
//! does is recorded as events, with the job as actor and the rule as reason.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use domain::build_queue::{BuildQueue, BuildQueueCommand, BuildQueueError};
use domain::release::{Release, ReleaseCommand, ReleaseError};
use projections::{builds, jobs, projects, releases, Actor, CommandContext, CommandError};

use crate::state::AppState;

/// Advisory-lock key of the retention job.
const RETENTION_LOCK: i64 = 0x6c61_7468_6572_6574;

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// `false` when another process held the job.
    pub ran: bool,
    pub builds_expired: u64,
    pub releases_archived: u64,
    /// Operational rows past their horizon (delivery log, idempotency answers, idle buckets, finished calls).
    pub pruned: projections::housekeeping::Pruned,
}

/// Runs the job on an interval for as long as the service runs.
pub fn spawn(state: AppState, every: Duration) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate; the first run waits one interval, so that processes starting together do not
        // all race for the job (and an operator's own `run_once` right after start-up is not refused).
        ticker.tick().await;
        loop {
            ticker.tick().await;
            match run_once(&state).await {
                Ok(report) if report.builds_expired + report.releases_archived > 0 => {
                    tracing::info!(
                        builds.expired = report.builds_expired,
                        releases.archived = report.releases_archived,
                        "retention applied"
                    )
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::error!(error = %error, "retention run failed; it will run again")
                }
            }
        }
    });
}

/// Applies every project's retention policy once, unless another process is doing it right now.
pub async fn run_once(state: &AppState) -> Result<RetentionReport, anyhow::Error> {
    let Some(lock) = jobs::try_lock(&state.pool, RETENTION_LOCK).await? else {
        return Ok(RetentionReport::default());
    };
    let mut result = apply_policies(state).await;
    if let Ok(report) = &mut result {
        let horizons = projections::housekeeping::Horizons {
            delivery_log_days: state.limits.delivery_log_days,
            idempotency_hours: 24,
            finished_outbox_days: 30,
        };
        report.pruned = projections::housekeeping::prune(&state.pool, horizons).await?;
    }
    lock.release().await?;
    result
}

async fn apply_policies(state: &AppState) -> Result<RetentionReport, anyhow::Error> {
    let mut report = RetentionReport {
        ran: true,
        ..RetentionReport::default()
    };
    let now = Utc::now();
    for mut project in projects::with_retention(&state.pool).await? {
        let context = CommandContext {
            actor: Actor::System { job: "retention" },
            organization_id: Some(project.organization_id),
            request_id: None,
            at: now,
            extra: vec![("project_id".to_owned(), project.project_id.to_string())],
        };
        if project.retention_sync && project.archived_at.is_none() {
            project = refresh_azure_retention(state, project, &context).await?;
        }
        let policy = project.effective_retention();
        let live = builds::of_project(&state.pool, project.project_id).await?;
        let mut per_branch: HashMap<Option<&str>, u32> = HashMap::new();
        for (rank, build) in live.iter().enumerate() {
            let branch_rank = per_branch.entry(build.branch.as_deref()).or_default();
            // The newest builds of each branch are kept whatever their age (Azure DevOps'
            // retainRunsPerProtectedBranch).
            let kept_for_branch = policy
                .keep_newest_per_branch
                .is_some_and(|newest| *branch_rank < newest);
            *branch_rank += 1;
            let days = match build.pull_request {
                true => policy.pull_request_keep_days,
                false => policy.keep_days,
            };
            let too_old = days
                .filter(|_| !kept_for_branch)
                .filter(|days| days_before(now, *days).is_some_and(|cut| build.received_at < cut));
            let beyond_last = policy.keep_last.filter(|last| rank >= *last as usize);
            let reason = match (too_old, beyond_last) {
                (Some(days), _) if project.retention().keep_days.is_some() => {
                    format!("received more than {days} days ago (project keeps {days} days)")
                }
                (Some(days), _) => format!(
                    "received more than {days} days ago (Azure DevOps retention keeps {} {days} days)",
                    if build.pull_request { "pull-request runs" } else { "runs" }
                ),
                (None, Some(last)) => format!("older than the project's newest {last} builds"),
                (None, None) => continue,
            };
            if expire(state, build.build_id, reason, &context).await? {
                report.builds_expired += 1;
            }
        }
        if let Some(before) = policy
            .archive_completed_after_days
            .and_then(|days| days_before(now, days))
        {
            for release_id in
                releases::completed_before(&state.pool, project.project_id, before).await?
            {
                let command = ReleaseCommand::ArchiveRelease { at: now };
                match state
                    .store
                    .execute::<Release>(release_id, command, &context)
                    .await
                {
                    Ok(()) => report.releases_archived += 1,
                    // Archived by a person meanwhile: nothing to do.
                    Err(CommandError::Domain(ReleaseError::NotCompleted(_))) => {}
                    Err(error) => {
                        return Err(anyhow::anyhow!("archiving release {release_id}: {error}"))
                    }
                }
            }
        }
    }
    Ok(report)
}

/// Reads the project's Azure DevOps retention again and records a change (or why it cannot be read: the last
/// values stay in force). Returns the project as it now is.
async fn refresh_azure_retention(
    state: &AppState,
    project: projects::ProjectRow,
    context: &CommandContext,
) -> Result<projects::ProjectRow, anyhow::Error> {
    let outcome = crate::azure::retention_sync::read(state, project.project_id).await;
    if let Err(unreadable) = &outcome {
        tracing::warn!(project.id = %project.project_id, reason = %unreadable.message, "Azure DevOps retention not synced");
    }
    // One project's record failing (a concurrent change, the database busy) must not stop the others': its last
    // values stay in force and the next run tries again.
    if let Err(error) =
        crate::azure::retention_sync::record(state, project.project_id, outcome, context).await
    {
        error.log_if_internal();
        tracing::warn!(project.id = %project.project_id, error = %error, "Azure DevOps retention not recorded");
        return Ok(project);
    }
    Ok(
        projects::find(&state.pool, project.organization_id, project.project_id)
            .await?
            .unwrap_or(project),
    )
}

async fn expire(
    state: &AppState,
    build_id: Uuid,
    reason: String,
    context: &CommandContext,
) -> Result<bool, anyhow::Error> {
    let command = BuildQueueCommand::Expire {
        reason,
        at: context.at,
    };
    match state
        .store
        .execute::<BuildQueue>(build_id, command, context)
        .await
    {
        Ok(()) => Ok(true),
        Err(CommandError::Domain(BuildQueueError::Expired)) => Ok(false),
        Err(error) => Err(anyhow::anyhow!("expiring build {build_id}: {error}")),
    }
}

/// `days` before `now`, or `None` before the first representable date (a rule kept by an older version may count
/// more days than there are dates; nothing is that old).
fn days_before(now: DateTime<Utc>, days: u32) -> Option<DateTime<Utc>> {
    now.checked_sub_signed(chrono::Duration::days(i64::from(days)))
}
