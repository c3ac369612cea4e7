//! The build-queue aggregate: decides where a build goes and guards that it is assigned or rejected at most once.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    BuildQueueCommand, BuildQueueError, BuildQueueEvent, QueueReason, Route, TestResultsUpload,
};
use crate::release::{ReleaseRef, ReleaseStatus};
use crate::validate_name;

/// Where a build is in its life.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryStatus {
    /// Nothing received yet: the stream is empty.
    #[default]
    New,
    /// Went straight into a release.
    Created,
    /// Waiting for a user.
    Queued,
    Assigned,
    Rejected,
    /// Removed by the retention policy.
    Expired,
}

/// State a build-queue entry needs to decide its commands.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildQueue {
    pub status: EntryStatus,
    pub project_id: Option<Uuid>,
    pub release_id: Option<Uuid>,
    /// Uploads already stored, so that a retried one is recognised.
    pub upload_ids: Vec<Uuid>,
    /// The organization the build was received for: commands from callers of another organization are refused.
    pub organization_id: Option<Uuid>,
    /// Why the build waits (or last waited) in the queue: what undoing a rejection restores.
    pub queue_reason: Option<QueueReason>,
}

impl Aggregate for BuildQueue {
    const TYPE: &'static str = "BuildQueue";
    type Command = BuildQueueCommand;
    type Event = BuildQueueEvent;
    type Error = BuildQueueError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            BuildQueueCommand::ReceiveBuild {
                identity,
                mut details,
                route,
                received_at,
                results,
            } => {
                if self.status != EntryStatus::New {
                    return Err(BuildQueueError::AlreadyReceived);
                }
                let recorded = results
                    .map(|upload| self.record(upload, received_at))
                    .transpose()?;
                details.name =
                    validate_name(&details.name).map_err(BuildQueueError::InvalidName)?;
                let routed = match route {
                    Route::Release(release) => {
                        check_release(&release, None)?;
                        BuildQueueEvent::BuildCreatedInRelease {
                            release_id: release.release_id,
                            project_id: release.project_id,
                        }
                    }
                    Route::Queue { project_id, reason } => {
                        BuildQueueEvent::BuildQueued { project_id, reason }
                    }
                };
                let received = BuildQueueEvent::BuildReceived {
                    entry_id: identity.entry_id(),
                    organization_id: identity.organization_id,
                    source: identity.source,
                    source_key: identity.key,
                    details,
                    received_at,
                };
                sink.write(received, self).await;
                sink.write(routed, self).await;
                if let Some(recorded) = recorded {
                    sink.write(recorded, self).await;
                }
            }
            BuildQueueCommand::RecordTestResults { upload, at } => {
                match self.status {
                    EntryStatus::New => return Err(BuildQueueError::NotFound),
                    EntryStatus::Expired => return Err(BuildQueueError::Expired),
                    _ => {}
                }
                let recorded = self.record(upload, at)?;
                sink.write(recorded, self).await;
            }
            BuildQueueCommand::SelectProject { project_id } => {
                self.require_queued()?;
                if self.project_id != Some(project_id) {
                    sink.write(
                        BuildQueueEvent::ProjectSelectedForBuild { project_id },
                        self,
                    )
                    .await;
                }
            }
            BuildQueueCommand::AssignToRelease {
                release,
                project_archived,
                at,
            } => {
                self.require_queued()?;
                if project_archived {
                    return Err(BuildQueueError::ProjectArchived);
                }
                check_release(&release, self.project_id)?;
                let event = BuildQueueEvent::BuildAssignedToRelease {
                    release_id: release.release_id,
                    project_id: release.project_id,
                    assigned_at: at,
                };
                sink.write(event, self).await;
            }
            BuildQueueCommand::Expire { reason, at } => {
                match self.status {
                    EntryStatus::New => return Err(BuildQueueError::NotFound),
                    EntryStatus::Expired => return Err(BuildQueueError::Expired),
                    _ => {}
                }
                let event = BuildQueueEvent::BuildExpired {
                    release_id: self.release_id,
                    reason,
                    expired_at: at,
                };
                sink.write(event, self).await;
            }
            BuildQueueCommand::LinkWorkItem {
                test_result_ids,
                work_item_id,
                url,
                at,
            } => {
                if self.status == EntryStatus::New {
                    return Err(BuildQueueError::NotFound);
                }
                let event = BuildQueueEvent::WorkItemLinked {
                    test_result_ids,
                    work_item_id,
                    url,
                    linked_at: at,
                };
                sink.write(event, self).await;
            }
            command @ (BuildQueueCommand::MoveToRelease { .. }
            | BuildQueueCommand::ReturnToQueue { .. }
            | BuildQueueCommand::RestoreRejected { .. }) => {
                let event = self.decide_correction(command)?;
                sink.write(event, self).await;
            }
            BuildQueueCommand::Reject { reason, at } => {
                self.require_queued()?;
                let reason = validate_name(&reason).map_err(BuildQueueError::InvalidReason)?;
                let event = BuildQueueEvent::QueuedBuildRejected {
                    reason,
                    rejected_at: at,
                };
                sink.write(event, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            BuildQueueEvent::BuildReceived {
                organization_id, ..
            } => self.organization_id = Some(organization_id),
            BuildQueueEvent::BuildCreatedInRelease {
                release_id,
                project_id,
            } => {
                self.status = EntryStatus::Created;
                self.project_id = Some(project_id);
                self.release_id = Some(release_id);
            }
            BuildQueueEvent::BuildQueued { project_id, reason } => {
                self.status = EntryStatus::Queued;
                self.project_id = project_id;
                self.queue_reason = Some(reason);
            }
            BuildQueueEvent::ProjectSelectedForBuild { project_id } => {
                self.project_id = Some(project_id);
                self.queue_reason = Some(QueueReason::ProjectSelected);
            }
            BuildQueueEvent::BuildAssignedToRelease {
                release_id,
                project_id,
                ..
            } => {
                self.status = EntryStatus::Assigned;
                self.project_id = Some(project_id);
                self.release_id = Some(release_id);
            }
            BuildQueueEvent::QueuedBuildRejected { .. } => self.status = EntryStatus::Rejected,
            BuildQueueEvent::TestResultsRecorded { upload_id, .. } => {
                self.upload_ids.push(upload_id)
            }
            BuildQueueEvent::BuildExpired { .. } => self.status = EntryStatus::Expired,
            BuildQueueEvent::WorkItemLinked { .. } => {}
            BuildQueueEvent::BuildMovedToRelease {
                release_id,
                project_id,
                ..
            } => {
                self.release_id = Some(release_id);
                self.project_id = Some(project_id);
            }
            BuildQueueEvent::BuildReturnedToQueue { project_id, .. } => {
                self.status = EntryStatus::Queued;
                self.release_id = None;
                self.project_id = project_id;
                self.queue_reason = Some(QueueReason::ReturnedToQueue);
            }
            BuildQueueEvent::RejectedBuildRestored {
                project_id, reason, ..
            } => {
                self.status = EntryStatus::Queued;
                self.project_id = project_id;
                self.queue_reason = Some(reason);
            }
        }
    }
}

impl BuildQueue {
    /// Validates an upload and turns it into its event; a retried upload is refused as already recorded.
    fn record(
        &self,
        mut upload: TestResultsUpload,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<BuildQueueEvent, BuildQueueError> {
        if self.upload_ids.contains(&upload.upload_id) {
            return Err(BuildQueueError::UploadAlreadyRecorded);
        }
        for index in 0..upload.results.len() {
            let title = validate_test_title(&upload.results[index].title)
                .map_err(|error| BuildQueueError::InvalidTestTitle { index, error })?;
            if title != upload.results[index].title {
                // Copies the results only when a title changes and another holder shares them.
                std::sync::Arc::make_mut(&mut upload.results)[index].title = title;
            }
        }
        Ok(BuildQueueEvent::TestResultsRecorded {
            upload_id: upload.upload_id,
            summary: upload.summary(),
            results: upload.results,
            recorded_at: at,
        })
    }

    /// Only a waiting entry can be changed; anything else says why not.
    fn require_queued(&self) -> Result<(), BuildQueueError> {
        match self.status {
            EntryStatus::Queued => Ok(()),
            EntryStatus::New => Err(BuildQueueError::NotFound),
            EntryStatus::Created => Err(BuildQueueError::NotQueued),
            EntryStatus::Assigned => Err(BuildQueueError::AlreadyAssigned(
                self.release_id.unwrap_or_default(),
            )),
            EntryStatus::Rejected => Err(BuildQueueError::AlreadyRejected),
            EntryStatus::Expired => Err(BuildQueueError::Expired),
        }
    }
}

/// A build may only join an active release, and only one of its own project when it has one.
pub(super) fn check_release(
    release: &ReleaseRef,
    project_id: Option<Uuid>,
) -> Result<(), BuildQueueError> {
    if release.status != ReleaseStatus::Active {
        return Err(BuildQueueError::ReleaseNotActive(release.status));
    }
    match project_id {
        Some(project_id) if project_id != release.project_id => {
            Err(BuildQueueError::ReleaseInAnotherProject)
        }
        _ => Ok(()),
    }
}

/// Test titles are often long (parameterised names), so they get more room than other names.
fn validate_test_title(title: &str) -> Result<String, crate::NameError> {
    let trimmed = title.trim();
    if trimmed.is_empty() {
        return Err(crate::NameError::Empty);
    }
    if trimmed.chars().count() > crate::MAX_TEST_TITLE_CHARS {
        return Err(crate::NameError::TooLong);
    }
    Ok(trimmed.to_owned())
}

/// The reason a queued build shows, derived from its project and the releases found for it.
pub fn queue_reason(project_matches: usize, active_releases: usize) -> Option<QueueReason> {
    match (project_matches, active_releases) {
        (0, _) => Some(QueueReason::NoProjectMatched),
        (1, 0) => Some(QueueReason::NoActiveRelease),
        (1, 1) => None,
        (1, _) => Some(QueueReason::SeveralActiveReleases),
        _ => Some(QueueReason::ProjectAmbiguous),
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
