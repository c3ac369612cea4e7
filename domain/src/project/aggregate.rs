//! The project aggregate: validates settings and records each change whole.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ProjectCommand, ProjectError, ProjectEvent, ProjectSettings, RetentionPolicy};
use crate::branches::BranchFilters;
use crate::validate_name;

/// State a project needs to decide its commands.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    pub project_id: Option<Uuid>,
    pub organization_id: Option<Uuid>,
    pub settings: ProjectSettings,
    pub branch_filters: BranchFilters,
    pub retention: RetentionPolicy,
    pub azure_devops: Option<crate::azure::AzureDevOpsSettings>,
    /// An archived project matches no new builds and makes no Azure DevOps calls.
    pub archived: bool,
    /// Whether the build retention is taken from Azure DevOps.
    pub retention_sync: bool,
    /// The last Azure DevOps retention read, and the last failure to read it (cleared by a success).
    pub azure_retention: Option<super::AzureRetention>,
    pub azure_retention_error: Option<String>,
}

impl Aggregate for Project {
    const TYPE: &'static str = "Project";
    type Command = ProjectCommand;
    type Event = ProjectEvent;
    type Error = ProjectError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            ProjectCommand::CreateProject {
                project_id,
                organization_id,
                settings,
                branch_filters,
                retention,
            } => {
                if self.project_id.is_some() {
                    return Err(ProjectError::AlreadyExists);
                }
                let settings = validate(settings)?;
                let filters = branch_filters
                    .validated()
                    .map_err(ProjectError::InvalidBranchFilter)?;
                let retention = validate_retention(retention)?;
                let event = ProjectEvent::ProjectCreated {
                    project_id,
                    organization_id,
                    settings,
                };
                sink.write(event, self).await;
                if !filters.is_empty() {
                    sink.write(ProjectEvent::BranchFiltersChanged { filters }, self)
                        .await;
                }
                if !retention.is_empty() {
                    sink.write(
                        ProjectEvent::RetentionPolicyChanged { policy: retention },
                        self,
                    )
                    .await;
                }
            }
            ProjectCommand::UpdateProject {
                settings,
                branch_filters,
                retention,
            } => {
                if self.project_id.is_none() {
                    return Err(ProjectError::NotFound);
                }
                // Everything is validated before anything is written: all of the update or none of it.
                let settings = validate(settings)?;
                let filters = branch_filters
                    .map(|f| f.validated().map_err(ProjectError::InvalidBranchFilter))
                    .transpose()?;
                let retention = retention.map(validate_retention).transpose()?;
                if settings != self.settings {
                    sink.write(ProjectEvent::ProjectUpdated { settings }, self)
                        .await;
                }
                if let Some(filters) = filters.filter(|f| *f != self.branch_filters) {
                    sink.write(ProjectEvent::BranchFiltersChanged { filters }, self)
                        .await;
                }
                if let Some(policy) = retention.filter(|r| *r != self.retention) {
                    sink.write(ProjectEvent::RetentionPolicyChanged { policy }, self)
                        .await;
                }
            }
            ProjectCommand::ConnectAzureDevOps { settings } => {
                if self.project_id.is_none() {
                    return Err(ProjectError::NotFound);
                }
                let settings = settings
                    .validated()
                    .map_err(ProjectError::InvalidAzureDevOps)?;
                // Reconnecting with the same settings is still recorded: the token may have changed.
                sink.write(ProjectEvent::AzureDevOpsConnected { settings }, self)
                    .await;
            }
            ProjectCommand::ArchiveProject { .. }
            | ProjectCommand::RestoreProject { .. }
            | ProjectCommand::SetRetentionSync { .. }
            | ProjectCommand::RecordAzureRetention { .. } => {
                if self.project_id.is_none() {
                    return Err(ProjectError::NotFound);
                }
                if let Some(event) = self.decide_lifecycle(command)? {
                    sink.write(event, self).await;
                }
            }
            ProjectCommand::DisconnectAzureDevOps => {
                if self.project_id.is_none() {
                    return Err(ProjectError::NotFound);
                }
                if self.azure_devops.is_none() {
                    return Err(ProjectError::NotConnected);
                }
                sink.write(ProjectEvent::AzureDevOpsDisconnected, self)
                    .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ProjectEvent::ProjectCreated {
                project_id,
                organization_id,
                settings,
            } => {
                self.project_id = Some(project_id);
                self.organization_id = Some(organization_id);
                self.settings = settings;
            }
            ProjectEvent::ProjectUpdated { settings } => self.settings = settings,
            ProjectEvent::BranchFiltersChanged { filters } => self.branch_filters = filters,
            ProjectEvent::RetentionPolicyChanged { policy } => self.retention = policy,
            ProjectEvent::AzureDevOpsConnected { settings } => self.azure_devops = Some(settings),
            ProjectEvent::AzureDevOpsDisconnected => self.azure_devops = None,
            ProjectEvent::ProjectArchived { .. } => self.archived = true,
            ProjectEvent::ProjectRestored { .. } => self.archived = false,
            ProjectEvent::RetentionSyncChanged { enabled } => self.retention_sync = enabled,
            ProjectEvent::AzureRetentionSynced { retention, .. } => {
                self.azure_retention = Some(retention);
                self.azure_retention_error = None;
            }
            ProjectEvent::AzureRetentionSyncFailed { message, .. } => {
                self.azure_retention_error = Some(message)
            }
        }
    }
}

fn validate_retention(policy: RetentionPolicy) -> Result<RetentionPolicy, ProjectError> {
    for (name, value) in [
        ("keepDays", policy.keep_days),
        ("keepLast", policy.keep_last),
        (
            "archiveCompletedAfterDays",
            policy.archive_completed_after_days,
        ),
    ] {
        if value == Some(0) {
            return Err(ProjectError::InvalidRetention(name));
        }
    }
    Ok(policy)
}

/// Trims every field, drops empty optional values and refuses what can never match.
fn validate(settings: ProjectSettings) -> Result<ProjectSettings, ProjectError> {
    let name = validate_name(&settings.name).map_err(ProjectError::InvalidName)?;
    let url = optional(settings.url)
        .map(|url| http_url("url", url))
        .transpose()?;
    let repository_urls = settings
        .repository_urls
        .into_iter()
        .map(|url| {
            let url = url.trim().to_owned();
            if url.is_empty() {
                return Err(ProjectError::BlankEntry {
                    field: "repositoryUrls",
                });
            }
            http_url("repositoryUrls", url)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let azure_repository_ids = settings
        .azure_repository_ids
        .into_iter()
        .map(|id| {
            let id = id.trim().to_owned();
            if id.is_empty() {
                return Err(ProjectError::BlankEntry {
                    field: "azureRepositoryIds",
                });
            }
            Ok(id)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ProjectSettings {
        name,
        url,
        repository_urls,
        azure_project_id: optional(settings.azure_project_id),
        azure_repository_ids,
    })
}

fn optional(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn http_url(field: &'static str, value: String) -> Result<String, ProjectError> {
    match url::Url::parse(&value) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => Ok(value),
        _ => Err(ProjectError::InvalidUrl { field, value }),
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::NameError;

    type ProjectTest = TestFramework<Project>;

    fn settings() -> ProjectSettings {
        ProjectSettings {
            name: "Fabrikam Web".to_owned(),
            url: Some("https://dev.azure.com/fabrikam/web".to_owned()),
            repository_urls: vec!["https://dev.azure.com/fabrikam/web/_git/web".to_owned()],
            azure_project_id: None,
            azure_repository_ids: vec![],
        }
    }

    fn created(project_id: Uuid, organization_id: Uuid) -> ProjectEvent {
        ProjectEvent::ProjectCreated {
            project_id,
            organization_id,
            settings: settings(),
        }
    }

    #[test]
    fn creating_a_project_records_its_trimmed_settings() {
        let (project_id, organization_id) = (Uuid::new_v4(), Uuid::new_v4());
        let mut given = settings();
        given.name = "  Fabrikam Web ".to_owned();
        given.azure_project_id = Some("  ".to_owned());
        // Given / When / Then
        ProjectTest::with(())
            .given_no_previous_events()
            .when(ProjectCommand::CreateProject {
                project_id,
                organization_id,
                settings: given,
                branch_filters: BranchFilters::default(),
                retention: RetentionPolicy::default(),
            })
            .then_expect_events(vec![created(project_id, organization_id)]);
    }

    #[test]
    fn a_project_cannot_be_created_twice() {
        let (project_id, organization_id) = (Uuid::new_v4(), Uuid::new_v4());
        ProjectTest::with(())
            .given(vec![created(project_id, organization_id)])
            .when(ProjectCommand::CreateProject {
                project_id,
                organization_id,
                settings: settings(),
                branch_filters: BranchFilters::default(),
                retention: RetentionPolicy::default(),
            })
            .then_expect_error(ProjectError::AlreadyExists);
    }

    #[test]
    fn urls_that_are_not_http_are_refused() {
        let mut bad = settings();
        bad.repository_urls = vec!["git@github.com:x/y.git".to_owned()];
        ProjectTest::with(())
            .given_no_previous_events()
            .when(ProjectCommand::CreateProject {
                project_id: Uuid::new_v4(),
                organization_id: Uuid::new_v4(),
                settings: bad,
                branch_filters: BranchFilters::default(),
                retention: RetentionPolicy::default(),
            })
            .then_expect_error(ProjectError::InvalidUrl {
                field: "repositoryUrls",
                value: "git@github.com:x/y.git".to_owned(),
            });
    }

    #[test]
    fn a_blank_name_is_refused() {
        let mut bad = settings();
        bad.name = String::new();
        ProjectTest::with(())
            .given_no_previous_events()
            .when(ProjectCommand::CreateProject {
                project_id: Uuid::new_v4(),
                organization_id: Uuid::new_v4(),
                settings: bad,
                branch_filters: BranchFilters::default(),
                retention: RetentionPolicy::default(),
            })
            .then_expect_error(ProjectError::InvalidName(NameError::Empty));
    }

    #[test]
    fn updating_records_the_new_settings_and_ignores_no_change() {
        let (project_id, organization_id) = (Uuid::new_v4(), Uuid::new_v4());
        let mut changed = settings();
        changed.azure_repository_ids = vec!["5e5d7b9a-0000-4000-8000-000000000001".to_owned()];
        ProjectTest::with(())
            .given(vec![created(project_id, organization_id)])
            .when(ProjectCommand::UpdateProject {
                settings: changed.clone(),
                branch_filters: None,
                retention: None,
            })
            .then_expect_events(vec![ProjectEvent::ProjectUpdated { settings: changed }]);
        ProjectTest::with(())
            .given(vec![created(project_id, organization_id)])
            .when(ProjectCommand::UpdateProject {
                settings: settings(),
                branch_filters: None,
                retention: None,
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_unknown_project_cannot_be_updated() {
        ProjectTest::with(())
            .given_no_previous_events()
            .when(ProjectCommand::UpdateProject {
                settings: settings(),
                branch_filters: None,
                retention: None,
            })
            .then_expect_error(ProjectError::NotFound);
    }

    #[test]
    fn filters_and_retention_are_recorded_when_they_change() {
        let (project_id, organization_id) = (Uuid::new_v4(), Uuid::new_v4());
        let filters = BranchFilters {
            include: vec!["main".to_owned(), "release/*".to_owned()],
            exclude: vec!["dependabot/*".to_owned()],
        };
        let policy = RetentionPolicy {
            keep_days: Some(30),
            keep_last: None,
            archive_completed_after_days: Some(7),
        };
        // Given / When / Then
        ProjectTest::with(())
            .given(vec![created(project_id, organization_id)])
            .when(ProjectCommand::UpdateProject {
                settings: settings(),
                branch_filters: Some(filters.clone()),
                retention: Some(policy),
            })
            .then_expect_events(vec![
                ProjectEvent::BranchFiltersChanged {
                    filters: filters.clone(),
                },
                ProjectEvent::RetentionPolicyChanged { policy },
            ]);
        ProjectTest::with(())
            .given(vec![
                created(project_id, organization_id),
                ProjectEvent::BranchFiltersChanged {
                    filters: filters.clone(),
                },
            ])
            .when(ProjectCommand::UpdateProject {
                settings: settings(),
                branch_filters: Some(filters),
                retention: None,
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_invalid_glob_or_zero_retention_refuses_the_whole_update() {
        let (project_id, organization_id) = (Uuid::new_v4(), Uuid::new_v4());
        let mut renamed = settings();
        renamed.name = "Renamed".to_owned();
        ProjectTest::with(())
            .given(vec![created(project_id, organization_id)])
            .when(ProjectCommand::UpdateProject {
                settings: renamed.clone(),
                branch_filters: Some(BranchFilters {
                    include: vec!["feat/[a-z]".to_owned()],
                    exclude: vec![],
                }),
                retention: None,
            })
            .then_expect_error(ProjectError::InvalidBranchFilter(
                crate::branches::GlobError::Unsupported("feat/[a-z]".to_owned()),
            ));
        ProjectTest::with(())
            .given(vec![created(project_id, organization_id)])
            .when(ProjectCommand::UpdateProject {
                settings: renamed,
                branch_filters: None,
                retention: Some(RetentionPolicy {
                    keep_last: Some(0),
                    ..RetentionPolicy::default()
                }),
            })
            .then_expect_error(ProjectError::InvalidRetention("keepLast"));
    }

    #[test]
    fn a_project_connects_to_azure_devops_and_disconnects_once() {
        let (project_id, organization_id) = (Uuid::new_v4(), Uuid::new_v4());
        let settings = crate::azure::AzureDevOpsSettings {
            organization_url: "https://dev.azure.com/fabrikam".to_owned(),
            project: "Web".to_owned(),
            work_item_type: "Bug".to_owned(),
            field_mappings: crate::azure::default_mappings(),
            auto_create_work_items: true,
            post_pull_request_comments: false,
            failure_threshold: 20,
        };
        ProjectTest::with(())
            .given(vec![created(project_id, organization_id)])
            .when(ProjectCommand::ConnectAzureDevOps {
                settings: settings.clone(),
            })
            .then_expect_events(vec![ProjectEvent::AzureDevOpsConnected {
                settings: settings.clone(),
            }]);
        ProjectTest::with(())
            .given(vec![
                created(project_id, organization_id),
                ProjectEvent::AzureDevOpsConnected { settings },
                ProjectEvent::AzureDevOpsDisconnected,
            ])
            .when(ProjectCommand::DisconnectAzureDevOps)
            .then_expect_error(ProjectError::NotConnected);
    }
}
