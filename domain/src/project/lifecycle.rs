//! Retiring a project and taking its retention from Azure DevOps: the decisions, kept apart from the settings.

use super::{Project, ProjectCommand, ProjectError, ProjectEvent};
use crate::validate_name;

impl Project {
    /// Decides archive, restore and the retention sync; `None` when the command changes nothing. The caller has
    /// checked that the project exists.
    pub(super) fn decide_lifecycle(
        &self,
        command: ProjectCommand,
    ) -> Result<Option<ProjectEvent>, ProjectError> {
        let event = match command {
            ProjectCommand::ArchiveProject { reason, at } => {
                if self.archived {
                    return Err(ProjectError::AlreadyArchived);
                }
                let reason = reason
                    .filter(|r| !r.trim().is_empty())
                    .map(|r| validate_name(&r).map_err(ProjectError::InvalidArchiveReason))
                    .transpose()?;
                ProjectEvent::ProjectArchived {
                    reason,
                    archived_at: at,
                }
            }
            ProjectCommand::RestoreProject { at } => {
                if !self.archived {
                    return Err(ProjectError::NotArchived);
                }
                ProjectEvent::ProjectRestored { restored_at: at }
            }
            ProjectCommand::SetRetentionSync { enabled } => {
                if enabled && self.azure_devops.is_none() {
                    return Err(ProjectError::NotConnected);
                }
                if enabled == self.retention_sync {
                    return Ok(None);
                }
                ProjectEvent::RetentionSyncChanged { enabled }
            }
            ProjectCommand::RecordAzureRetention { outcome, at } => {
                if !self.retention_sync {
                    return Err(ProjectError::RetentionSyncOff);
                }
                // Only changes are recorded: the job reads the retention on every run.
                match outcome {
                    Ok(retention)
                        if self.azure_retention == Some(retention)
                            && self.azure_retention_error.is_none() =>
                    {
                        return Ok(None)
                    }
                    Ok(retention) => ProjectEvent::AzureRetentionSynced {
                        retention,
                        synced_at: at,
                    },
                    Err(message) if self.azure_retention_error.as_ref() == Some(&message) => {
                        return Ok(None)
                    }
                    Err(message) => ProjectEvent::AzureRetentionSyncFailed {
                        message,
                        failed_at: at,
                    },
                }
            }
            _ => unreachable!("only lifecycle commands are passed here"),
        };
        Ok(Some(event))
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    use super::*;
    use crate::azure::AzureDevOpsSettings;
    use crate::project::{AzureRetention, ProjectSettings};

    type ProjectTest = TestFramework<Project>;

    fn at() -> DateTime<Utc> {
        "2026-11-26T10:00:00Z".parse().unwrap()
    }

    fn created() -> ProjectEvent {
        ProjectEvent::ProjectCreated {
            project_id: Uuid::from_u128(1),
            organization_id: Uuid::from_u128(2),
            settings: ProjectSettings {
                name: "Web".to_owned(),
                ..ProjectSettings::default()
            },
        }
    }

    fn connected() -> ProjectEvent {
        ProjectEvent::AzureDevOpsConnected {
            settings: AzureDevOpsSettings {
                organization_url: "https://dev.azure.com/fabrikam".to_owned(),
                project: "Web".to_owned(),
                work_item_type: "Bug".to_owned(),
                field_mappings: vec![],
                auto_create_work_items: false,
                post_pull_request_comments: false,
                failure_threshold: 10,
            },
        }
    }

    fn retention(days: u32) -> AzureRetention {
        AzureRetention {
            purge_runs_days: days,
            purge_pull_request_runs_days: 10,
            retain_runs_per_protected_branch: 3,
        }
    }

    #[test]
    fn a_project_is_archived_with_its_reason_and_restored() {
        // Given a project / When it is archived / Then the reason is recorded
        ProjectTest::with(())
            .given(vec![created()])
            .when(ProjectCommand::ArchiveProject {
                reason: Some(" merged into Portal ".to_owned()),
                at: at(),
            })
            .then_expect_events(vec![ProjectEvent::ProjectArchived {
                reason: Some("merged into Portal".to_owned()),
                archived_at: at(),
            }]);
        let archived = ProjectEvent::ProjectArchived {
            reason: None,
            archived_at: at(),
        };
        ProjectTest::with(())
            .given(vec![created(), archived.clone()])
            .when(ProjectCommand::ArchiveProject {
                reason: None,
                at: at(),
            })
            .then_expect_error(ProjectError::AlreadyArchived);
        ProjectTest::with(())
            .given(vec![created(), archived])
            .when(ProjectCommand::RestoreProject { at: at() })
            .then_expect_events(vec![ProjectEvent::ProjectRestored { restored_at: at() }]);
        ProjectTest::with(())
            .given(vec![created()])
            .when(ProjectCommand::RestoreProject { at: at() })
            .then_expect_error(ProjectError::NotArchived);
    }

    #[test]
    fn the_retention_sync_needs_a_connection_and_records_only_changes() {
        ProjectTest::with(())
            .given(vec![created()])
            .when(ProjectCommand::SetRetentionSync { enabled: true })
            .then_expect_error(ProjectError::NotConnected);
        let on = ProjectEvent::RetentionSyncChanged { enabled: true };
        ProjectTest::with(())
            .given(vec![created(), connected()])
            .when(ProjectCommand::SetRetentionSync { enabled: true })
            .then_expect_events(vec![on.clone()]);
        let synced = ProjectEvent::AzureRetentionSynced {
            retention: retention(30),
            synced_at: at(),
        };
        ProjectTest::with(())
            .given(vec![created(), connected(), on.clone()])
            .when(ProjectCommand::RecordAzureRetention {
                outcome: Ok(retention(30)),
                at: at(),
            })
            .then_expect_events(vec![synced.clone()]);
        // The same values again: nothing new.
        ProjectTest::with(())
            .given(vec![created(), connected(), on.clone(), synced.clone()])
            .when(ProjectCommand::RecordAzureRetention {
                outcome: Ok(retention(30)),
                at: at(),
            })
            .then_expect_events(vec![]);
        // A failure is recorded once, and a success after it clears it.
        let failed = ProjectEvent::AzureRetentionSyncFailed {
            message: "403".to_owned(),
            failed_at: at(),
        };
        ProjectTest::with(())
            .given(vec![created(), connected(), on.clone(), synced.clone()])
            .when(ProjectCommand::RecordAzureRetention {
                outcome: Err("403".to_owned()),
                at: at(),
            })
            .then_expect_events(vec![failed.clone()]);
        ProjectTest::with(())
            .given(vec![
                created(),
                connected(),
                on.clone(),
                synced.clone(),
                failed.clone(),
            ])
            .when(ProjectCommand::RecordAzureRetention {
                outcome: Err("403".to_owned()),
                at: at(),
            })
            .then_expect_events(vec![]);
        ProjectTest::with(())
            .given(vec![created(), connected(), on, synced.clone(), failed])
            .when(ProjectCommand::RecordAzureRetention {
                outcome: Ok(retention(30)),
                at: at(),
            })
            .then_expect_events(vec![synced]);
        ProjectTest::with(())
            .given(vec![created(), connected()])
            .when(ProjectCommand::RecordAzureRetention {
                outcome: Ok(retention(30)),
                at: at(),
            })
            .then_expect_error(ProjectError::RetentionSyncOff);
    }
}
