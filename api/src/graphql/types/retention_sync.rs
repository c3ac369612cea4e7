//! A project's retirement and the retention it takes from Azure DevOps, as GraphQL objects.

use async_graphql::SimpleObject;
use chrono::{DateTime, Utc};

use projections::projects::ProjectRow;

/// The build retention a project takes from its Azure DevOps project.
#[derive(SimpleObject)]
pub struct AzureRetentionSync {
    /// Whether the sync is on (`setRetentionSync`).
    pub enabled: bool,
    /// `purgeRuns`: days Azure DevOps keeps runs (used where the project sets no `keepDays`).
    pub purge_runs_days: Option<i32>,
    /// `purgePullRequestRuns`: days Azure DevOps keeps pull-request runs (likewise).
    pub purge_pull_request_runs_days: Option<i32>,
    /// `retainRunsPerProtectedBranch`: the newest builds of each branch kept whatever their age.
    pub retain_runs_per_protected_branch: Option<i32>,
    /// When the values last changed (the retention job reads them on every run and records only changes).
    pub synced_at: Option<DateTime<Utc>>,
    /// Why the last read failed (e.g. a token without the Build (Read) scope); the last values stay in force.
    pub error: Option<String>,
    pub failed_at: Option<DateTime<Utc>>,
}

impl From<&ProjectRow> for AzureRetentionSync {
    fn from(row: &ProjectRow) -> Self {
        Self {
            enabled: row.retention_sync,
            purge_runs_days: row.azure_purge_runs_days,
            purge_pull_request_runs_days: row.azure_purge_pull_request_runs_days,
            retain_runs_per_protected_branch: row.azure_retain_runs_per_protected_branch,
            synced_at: row.azure_retention_synced_at,
            error: row.azure_retention_error.clone(),
            failed_at: row.azure_retention_failed_at,
        }
    }
}

/// The rules the retention job applies: the project's own, over the synced Azure DevOps ones.
#[derive(SimpleObject)]
pub struct EffectiveRetention {
    pub keep_days: Option<i32>,
    pub pull_request_keep_days: Option<i32>,
    pub keep_last: Option<i32>,
    pub keep_newest_per_branch: Option<i32>,
    pub archive_completed_after_days: Option<i32>,
}

impl From<&ProjectRow> for EffectiveRetention {
    fn from(row: &ProjectRow) -> Self {
        let policy = row.effective_retention();
        let int = |v: Option<u32>| v.map(|v| v as i32);
        Self {
            keep_days: int(policy.keep_days),
            pull_request_keep_days: int(policy.pull_request_keep_days),
            keep_last: int(policy.keep_last),
            keep_newest_per_branch: int(policy.keep_newest_per_branch),
            archive_completed_after_days: int(policy.archive_completed_after_days),
        }
    }
}
