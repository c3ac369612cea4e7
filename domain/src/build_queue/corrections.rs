//! Corrections of mistakes on a build: moving it to another release, returning it to the queue, undoing its
//! rejection. Each is decided here, from the build's own state, without I/O.

use uuid::Uuid;

use super::aggregate::check_release;
use super::{
    BuildQueue, BuildQueueCommand, BuildQueueError, BuildQueueEvent, EntryStatus, QueueReason,
};
use crate::validate_name;

impl BuildQueue {
    /// Decides a correction; the caller passes only `MoveToRelease`, `ReturnToQueue` and `RestoreRejected`.
    pub(super) fn decide_correction(
        &self,
        command: BuildQueueCommand,
    ) -> Result<BuildQueueEvent, BuildQueueError> {
        Ok(match command {
            BuildQueueCommand::MoveToRelease {
                destination,
                reason,
                at,
            } => {
                let from_release_id = self.require_in_release()?;
                let release = destination.release;
                if release.release_id == from_release_id {
                    return Err(BuildQueueError::AlreadyInRelease(from_release_id));
                }
                if destination.project_archived {
                    return Err(BuildQueueError::ProjectArchived);
                }
                // Moving is the correction of a wrong match: the release may be of another project.
                check_release(&release, None)?;
                BuildQueueEvent::BuildMovedToRelease {
                    from_release_id,
                    from_project_id: self.project_id,
                    release_id: release.release_id,
                    project_id: release.project_id,
                    reason: correction_reason(&reason)?,
                    moved_at: at,
                }
            }
            BuildQueueCommand::ReturnToQueue { reason, at } => {
                let from_release_id = self.require_in_release()?;
                BuildQueueEvent::BuildReturnedToQueue {
                    from_release_id,
                    project_id: self.project_id,
                    reason: correction_reason(&reason)?,
                    returned_at: at,
                }
            }
            BuildQueueCommand::RestoreRejected { at } => {
                match self.status {
                    EntryStatus::Rejected => {}
                    EntryStatus::New => return Err(BuildQueueError::NotFound),
                    EntryStatus::Expired => return Err(BuildQueueError::Expired),
                    _ => return Err(BuildQueueError::NotRejected),
                }
                // Streams from before the aggregate remembered its queue reason fall back to what their project
                // implies.
                let reason = self.queue_reason.unwrap_or(if self.project_id.is_some() {
                    QueueReason::ProjectSelected
                } else {
                    QueueReason::NoProjectMatched
                });
                BuildQueueEvent::RejectedBuildRestored {
                    project_id: self.project_id,
                    reason,
                    restored_at: at,
                }
            }
            _ => unreachable!("only corrections are passed here"),
        })
    }

    /// The release a build is in, for the corrections that take it out; anything else says why not.
    fn require_in_release(&self) -> Result<Uuid, BuildQueueError> {
        match (self.status, self.release_id) {
            (EntryStatus::Created | EntryStatus::Assigned, Some(release_id)) => Ok(release_id),
            (EntryStatus::New, _) => Err(BuildQueueError::NotFound),
            (EntryStatus::Expired, _) => Err(BuildQueueError::Expired),
            _ => Err(BuildQueueError::NotInRelease),
        }
    }
}

/// A correction says why it was made: required, and no longer than a name.
fn correction_reason(reason: &str) -> Result<String, BuildQueueError> {
    validate_name(reason).map_err(BuildQueueError::InvalidCorrectionReason)
}
