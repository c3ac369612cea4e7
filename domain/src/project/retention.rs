//! A project's build retention taken from Azure DevOps, and the retention in force once the project's own rules
//! are laid over it.

use serde::{Deserialize, Serialize};

use super::RetentionPolicy;

/// The build retention of an Azure DevOps project (`GET {org}/{project}/_apis/build/retention`): the `value` of
/// each of its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AzureRetention {
    /// `purgeRuns`: days runs are kept.
    pub purge_runs_days: u32,
    /// `purgePullRequestRuns`: days pull-request runs are kept.
    pub purge_pull_request_runs_days: u32,
    /// `retainRunsPerProtectedBranch`: the newest runs of each protected branch are kept whatever their age.
    pub retain_runs_per_protected_branch: u32,
}

/// The rules the retention job applies to a project.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EffectiveRetention {
    /// Builds received more than this many days ago expire.
    pub keep_days: Option<u32>,
    /// Pull-request builds received more than this many days ago expire.
    pub pull_request_keep_days: Option<u32>,
    /// Only the newest this many builds are kept.
    pub keep_last: Option<u32>,
    /// The newest this many builds of each branch never expire by age (Lathe does not know which branches Azure
    /// DevOps protects, so it keeps them for every branch).
    pub keep_newest_per_branch: Option<u32>,
    pub archive_completed_after_days: Option<u32>,
}

impl RetentionPolicy {
    /// The rules in force: the project's own, and where it sets no `keepDays`, the synced Azure DevOps days
    /// (`purgeRuns` for every build, `purgePullRequestRuns` for pull-request builds). A rule set on the project
    /// overrides the synced value.
    pub fn effective(&self, synced: Option<&AzureRetention>) -> EffectiveRetention {
        let nonzero = |v: u32| (v > 0).then_some(v);
        EffectiveRetention {
            keep_days: self
                .keep_days
                .or_else(|| synced.and_then(|s| nonzero(s.purge_runs_days))),
            pull_request_keep_days: self
                .keep_days
                .or_else(|| synced.and_then(|s| nonzero(s.purge_pull_request_runs_days))),
            keep_last: self.keep_last,
            keep_newest_per_branch: synced
                .and_then(|s| nonzero(s.retain_runs_per_protected_branch)),
            archive_completed_after_days: self.archive_completed_after_days,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synced_days_apply_where_the_project_sets_none_and_its_own_rules_win() {
        let synced = AzureRetention {
            purge_runs_days: 30,
            purge_pull_request_runs_days: 10,
            retain_runs_per_protected_branch: 3,
        };
        let none = RetentionPolicy::default().effective(Some(&synced));
        assert_eq!(none.keep_days, Some(30));
        assert_eq!(none.pull_request_keep_days, Some(10));
        assert_eq!(none.keep_newest_per_branch, Some(3));
        let own = RetentionPolicy {
            keep_days: Some(90),
            keep_last: Some(5),
            archive_completed_after_days: None,
        }
        .effective(Some(&synced));
        assert_eq!(own.keep_days, Some(90));
        assert_eq!(own.pull_request_keep_days, Some(90));
        assert_eq!(own.keep_last, Some(5));
        assert_eq!(
            RetentionPolicy::default().effective(None),
            EffectiveRetention::default()
        );
    }
}
