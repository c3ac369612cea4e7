//! The release aggregate and its life: active → completed → archived.

use std::fmt;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ReleaseCommand, ReleaseError, ReleaseEvent};
use crate::validate_name;

/// Where a release is in its life.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReleaseStatus {
    #[default]
    Active,
    Completed,
    Archived,
}

impl ReleaseStatus {
    /// The stable lowercase name used in read models and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Completed => "completed",
            Self::Archived => "archived",
        }
    }

    /// Parses [`ReleaseStatus::as_str`] back.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "active" => Some(Self::Active),
            "completed" => Some(Self::Completed),
            "archived" => Some(Self::Archived),
            _ => None,
        }
    }
}

impl fmt::Display for ReleaseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What another aggregate needs to know of a release to add a build to it: read by the caller from the releases
/// read model and carried in the command, so that the build queue decides without I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRef {
    pub release_id: Uuid,
    pub project_id: Uuid,
    pub status: ReleaseStatus,
}

/// State a release needs to decide its commands.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    pub release_id: Option<Uuid>,
    pub project_id: Option<Uuid>,
    pub status: ReleaseStatus,
    /// The current name, so that renaming to it records nothing.
    pub name: Option<String>,
}

impl Aggregate for Release {
    const TYPE: &'static str = "Release";
    type Command = ReleaseCommand;
    type Event = ReleaseEvent;
    type Error = ReleaseError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = match command {
            ReleaseCommand::CreateRelease {
                release_id,
                organization_id,
                project_id,
                name,
                at,
            } => {
                if self.release_id.is_some() {
                    return Err(ReleaseError::AlreadyExists);
                }
                ReleaseEvent::ReleaseCreated {
                    release_id,
                    organization_id,
                    project_id,
                    name: validate_name(&name).map_err(ReleaseError::InvalidName)?,
                    created_at: at,
                }
            }
            ReleaseCommand::CompleteRelease { at } => {
                self.require_exists()?;
                if self.status != ReleaseStatus::Active {
                    return Err(ReleaseError::NotActive(self.status));
                }
                ReleaseEvent::ReleaseCompleted { completed_at: at }
            }
            ReleaseCommand::ArchiveRelease { at } => {
                self.require_exists()?;
                if self.status != ReleaseStatus::Completed {
                    return Err(ReleaseError::NotCompleted(self.status));
                }
                ReleaseEvent::ReleaseArchived { archived_at: at }
            }
            ReleaseCommand::RenameRelease { name, at } => {
                self.require_exists()?;
                if self.status == ReleaseStatus::Archived {
                    return Err(ReleaseError::ArchivedIsReadOnly);
                }
                let name = validate_name(&name).map_err(ReleaseError::InvalidName)?;
                if self.name.as_deref() == Some(name.as_str()) {
                    return Ok(());
                }
                ReleaseEvent::ReleaseRenamed {
                    name,
                    renamed_at: at,
                }
            }
            ReleaseCommand::ReopenRelease { at } => {
                self.require_exists()?;
                if self.status != ReleaseStatus::Completed {
                    return Err(ReleaseError::NotReopenable(self.status));
                }
                ReleaseEvent::ReleaseReopened { reopened_at: at }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ReleaseEvent::ReleaseCreated {
                release_id,
                project_id,
                name,
                ..
            } => {
                self.release_id = Some(release_id);
                self.project_id = Some(project_id);
                self.status = ReleaseStatus::Active;
                self.name = Some(name);
            }
            ReleaseEvent::ReleaseCompleted { .. } => self.status = ReleaseStatus::Completed,
            ReleaseEvent::ReleaseArchived { .. } => self.status = ReleaseStatus::Archived,
            ReleaseEvent::ReleaseRenamed { name, .. } => self.name = Some(name),
            ReleaseEvent::ReleaseReopened { .. } => self.status = ReleaseStatus::Active,
        }
    }
}

impl Release {
    fn require_exists(&self) -> Result<(), ReleaseError> {
        self.release_id.map(|_| ()).ok_or(ReleaseError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use cqrs_es::test::TestFramework;

    use super::*;

    type ReleaseTest = TestFramework<Release>;

    fn at() -> DateTime<Utc> {
        "2026-11-26T10:00:00Z".parse().unwrap()
    }

    fn created() -> ReleaseEvent {
        ReleaseEvent::ReleaseCreated {
            release_id: Uuid::from_u128(1),
            organization_id: Uuid::from_u128(2),
            project_id: Uuid::from_u128(3),
            name: "2026.11".to_owned(),
            created_at: at(),
        }
    }

    #[test]
    fn a_new_release_is_active() {
        // Given / When / Then
        ReleaseTest::with(())
            .given_no_previous_events()
            .when(ReleaseCommand::CreateRelease {
                release_id: Uuid::from_u128(1),
                organization_id: Uuid::from_u128(2),
                project_id: Uuid::from_u128(3),
                name: " 2026.11 ".to_owned(),
                at: at(),
            })
            .then_expect_events(vec![created()]);
    }

    #[test]
    fn a_release_cannot_be_created_twice() {
        ReleaseTest::with(())
            .given(vec![created()])
            .when(ReleaseCommand::CreateRelease {
                release_id: Uuid::from_u128(1),
                organization_id: Uuid::from_u128(2),
                project_id: Uuid::from_u128(3),
                name: "again".to_owned(),
                at: at(),
            })
            .then_expect_error(ReleaseError::AlreadyExists);
    }

    #[test]
    fn an_active_release_completes() {
        ReleaseTest::with(())
            .given(vec![created()])
            .when(ReleaseCommand::CompleteRelease { at: at() })
            .then_expect_events(vec![ReleaseEvent::ReleaseCompleted { completed_at: at() }]);
    }

    #[test]
    fn a_completed_release_cannot_complete_again() {
        ReleaseTest::with(())
            .given(vec![
                created(),
                ReleaseEvent::ReleaseCompleted { completed_at: at() },
            ])
            .when(ReleaseCommand::CompleteRelease { at: at() })
            .then_expect_error(ReleaseError::NotActive(ReleaseStatus::Completed));
    }

    #[test]
    fn a_completed_release_archives() {
        ReleaseTest::with(())
            .given(vec![
                created(),
                ReleaseEvent::ReleaseCompleted { completed_at: at() },
            ])
            .when(ReleaseCommand::ArchiveRelease { at: at() })
            .then_expect_events(vec![ReleaseEvent::ReleaseArchived { archived_at: at() }]);
    }

    #[test]
    fn an_active_release_cannot_be_archived() {
        ReleaseTest::with(())
            .given(vec![created()])
            .when(ReleaseCommand::ArchiveRelease { at: at() })
            .then_expect_error(ReleaseError::NotCompleted(ReleaseStatus::Active));
    }

    #[test]
    fn an_unknown_release_cannot_complete() {
        ReleaseTest::with(())
            .given_no_previous_events()
            .when(ReleaseCommand::CompleteRelease { at: at() })
            .then_expect_error(ReleaseError::NotFound);
    }

    #[test]
    fn a_release_is_renamed_and_an_archived_one_is_not() {
        // Given an active release / When it is renamed / Then the new name is recorded
        ReleaseTest::with(())
            .given(vec![created()])
            .when(ReleaseCommand::RenameRelease {
                name: " 2026.12 ".to_owned(),
                at: at(),
            })
            .then_expect_events(vec![ReleaseEvent::ReleaseRenamed {
                name: "2026.12".to_owned(),
                renamed_at: at(),
            }]);
        // Renaming to the current name records nothing.
        ReleaseTest::with(())
            .given(vec![created()])
            .when(ReleaseCommand::RenameRelease {
                name: "2026.11".to_owned(),
                at: at(),
            })
            .then_expect_events(vec![]);
        ReleaseTest::with(())
            .given(vec![
                created(),
                ReleaseEvent::ReleaseCompleted { completed_at: at() },
                ReleaseEvent::ReleaseArchived { archived_at: at() },
            ])
            .when(ReleaseCommand::RenameRelease {
                name: "later".to_owned(),
                at: at(),
            })
            .then_expect_error(ReleaseError::ArchivedIsReadOnly);
    }

    #[test]
    fn a_completed_release_reopens_but_an_active_or_archived_one_does_not() {
        ReleaseTest::with(())
            .given(vec![
                created(),
                ReleaseEvent::ReleaseCompleted { completed_at: at() },
            ])
            .when(ReleaseCommand::ReopenRelease { at: at() })
            .then_expect_events(vec![ReleaseEvent::ReleaseReopened { reopened_at: at() }]);
        ReleaseTest::with(())
            .given(vec![created()])
            .when(ReleaseCommand::ReopenRelease { at: at() })
            .then_expect_error(ReleaseError::NotReopenable(ReleaseStatus::Active));
        ReleaseTest::with(())
            .given(vec![
                created(),
                ReleaseEvent::ReleaseCompleted { completed_at: at() },
                ReleaseEvent::ReleaseArchived { archived_at: at() },
            ])
            .when(ReleaseCommand::ReopenRelease { at: at() })
            .then_expect_error(ReleaseError::NotReopenable(ReleaseStatus::Archived));
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in [
            ReleaseStatus::Active,
            ReleaseStatus::Completed,
            ReleaseStatus::Archived,
        ] {
            assert_eq!(ReleaseStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(ReleaseStatus::parse("Active"), None);
    }
}
