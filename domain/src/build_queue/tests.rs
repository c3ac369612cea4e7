//! Given / when / then tests of every build-queue command and rule.

use chrono::{DateTime, Utc};
use cqrs_es::test::TestFramework;

use super::*;
use crate::build_queue::{
    BuildDetails, BuildIdentity, BuildSource, Destination, PullRequestRef, TestResult,
    TestResultsUpload, TestStatus, TestSummary,
};

type BuildQueueTest = TestFramework<BuildQueue>;

const ORG: Uuid = Uuid::from_u128(1);
const PROJECT: Uuid = Uuid::from_u128(2);
const OTHER_PROJECT: Uuid = Uuid::from_u128(3);
const RELEASE: Uuid = Uuid::from_u128(4);

fn at() -> DateTime<Utc> {
    "2026-11-26T10:00:00Z".parse().unwrap()
}

fn identity() -> BuildIdentity {
    BuildIdentity {
        organization_id: ORG,
        source: BuildSource::AzureDevOps,
        key: "fabrikamfiber/web/2727068".to_owned(),
    }
}

fn details() -> BuildDetails {
    BuildDetails {
        name: "20241202.1".to_owned(),
        branch: Some("refs/pull/42/merge".to_owned()),
        commit_sha: Some("6a8f1c2".to_owned()),
        pull_request: Some(PullRequestRef {
            number: 42,
            repository_id: Some("repo-guid".to_owned()),
        }),
        ..BuildDetails::default()
    }
}

fn release(status: ReleaseStatus, project_id: Uuid) -> ReleaseRef {
    ReleaseRef {
        release_id: RELEASE,
        project_id,
        status,
    }
}

fn received() -> BuildQueueEvent {
    BuildQueueEvent::BuildReceived {
        entry_id: identity().entry_id(),
        organization_id: ORG,
        source: BuildSource::AzureDevOps,
        source_key: identity().key,
        details: details(),
        received_at: at(),
    }
}

fn queued(project_id: Option<Uuid>, reason: QueueReason) -> Vec<BuildQueueEvent> {
    vec![
        received(),
        BuildQueueEvent::BuildQueued { project_id, reason },
    ]
}

fn receive(route: Route) -> BuildQueueCommand {
    BuildQueueCommand::ReceiveBuild {
        identity: identity(),
        details: details(),
        route,
        received_at: at(),
        results: None,
    }
}

fn assign(status: ReleaseStatus, project_id: Uuid) -> BuildQueueCommand {
    BuildQueueCommand::AssignToRelease {
        release: release(status, project_id),
        project_archived: false,
        at: at(),
    }
}

fn assigned() -> BuildQueueEvent {
    BuildQueueEvent::BuildAssignedToRelease {
        release_id: RELEASE,
        project_id: PROJECT,
        assigned_at: at(),
    }
}

fn rejected() -> BuildQueueEvent {
    BuildQueueEvent::QueuedBuildRejected {
        reason: "flaky agent".to_owned(),
        rejected_at: at(),
    }
}

#[test]
fn the_entry_id_is_the_same_for_every_delivery_of_a_build() {
    assert_eq!(identity().entry_id(), identity().entry_id());
    let mut other = identity();
    other.key.push('9');
    assert_ne!(identity().entry_id(), other.entry_id());
    let mut other_org = identity();
    other_org.organization_id = Uuid::from_u128(99);
    assert_ne!(identity().entry_id(), other_org.entry_id());
}

#[test]
fn a_build_with_one_active_release_goes_straight_into_it() {
    // Given / When / Then
    BuildQueueTest::with(())
        .given_no_previous_events()
        .when(receive(Route::Release(release(
            ReleaseStatus::Active,
            PROJECT,
        ))))
        .then_expect_events(vec![
            received(),
            BuildQueueEvent::BuildCreatedInRelease {
                release_id: RELEASE,
                project_id: PROJECT,
            },
        ]);
}

#[test]
fn a_build_is_never_created_in_a_release_that_is_not_active() {
    BuildQueueTest::with(())
        .given_no_previous_events()
        .when(receive(Route::Release(release(
            ReleaseStatus::Completed,
            PROJECT,
        ))))
        .then_expect_error(BuildQueueError::ReleaseNotActive(ReleaseStatus::Completed));
}

#[test]
fn a_build_without_a_project_is_queued_with_its_reason() {
    BuildQueueTest::with(())
        .given_no_previous_events()
        .when(receive(Route::Queue {
            project_id: None,
            reason: QueueReason::NoProjectMatched,
        }))
        .then_expect_events(queued(None, QueueReason::NoProjectMatched));
}

#[test]
fn a_redelivered_build_is_refused_as_already_received() {
    BuildQueueTest::with(())
        .given(queued(Some(PROJECT), QueueReason::NoActiveRelease))
        .when(receive(Route::Queue {
            project_id: Some(PROJECT),
            reason: QueueReason::NoActiveRelease,
        }))
        .then_expect_error(BuildQueueError::AlreadyReceived);
}

#[test]
fn a_blank_build_name_is_refused() {
    BuildQueueTest::with(())
        .given_no_previous_events()
        .when(BuildQueueCommand::ReceiveBuild {
            identity: identity(),
            details: BuildDetails::default(),
            route: Route::Queue {
                project_id: None,
                reason: QueueReason::NoProjectMatched,
            },
            received_at: at(),
            results: None,
        })
        .then_expect_error(BuildQueueError::InvalidName(crate::NameError::Empty));
}

#[test]
fn selecting_a_project_records_it_once() {
    BuildQueueTest::with(())
        .given(queued(None, QueueReason::NoProjectMatched))
        .when(BuildQueueCommand::SelectProject {
            project_id: PROJECT,
        })
        .then_expect_events(vec![BuildQueueEvent::ProjectSelectedForBuild {
            project_id: PROJECT,
        }]);
    BuildQueueTest::with(())
        .given(queued(Some(PROJECT), QueueReason::NoActiveRelease))
        .when(BuildQueueCommand::SelectProject {
            project_id: PROJECT,
        })
        .then_expect_events(vec![]);
}

#[test]
fn a_queued_build_is_assigned_to_an_active_release_of_its_project() {
    BuildQueueTest::with(())
        .given(queued(Some(PROJECT), QueueReason::NoActiveRelease))
        .when(assign(ReleaseStatus::Active, PROJECT))
        .then_expect_events(vec![assigned()]);
}

#[test]
fn a_build_without_a_project_takes_the_project_of_its_release() {
    BuildQueueTest::with(())
        .given(queued(None, QueueReason::NoProjectMatched))
        .when(assign(ReleaseStatus::Active, PROJECT))
        .then_expect_events(vec![assigned()]);
}

#[test]
fn a_build_cannot_join_a_release_of_another_project() {
    BuildQueueTest::with(())
        .given(queued(Some(PROJECT), QueueReason::NoActiveRelease))
        .when(assign(ReleaseStatus::Active, OTHER_PROJECT))
        .then_expect_error(BuildQueueError::ReleaseInAnotherProject);
}

#[test]
fn a_build_cannot_join_a_completed_or_archived_release() {
    for status in [ReleaseStatus::Completed, ReleaseStatus::Archived] {
        BuildQueueTest::with(())
            .given(queued(Some(PROJECT), QueueReason::NoActiveRelease))
            .when(assign(status, PROJECT))
            .then_expect_error(BuildQueueError::ReleaseNotActive(status));
    }
}

#[test]
fn an_entry_is_assigned_at_most_once() {
    let mut history = queued(Some(PROJECT), QueueReason::NoActiveRelease);
    history.push(assigned());
    BuildQueueTest::with(())
        .given(history)
        .when(assign(ReleaseStatus::Active, PROJECT))
        .then_expect_error(BuildQueueError::AlreadyAssigned(RELEASE));
}

#[test]
fn an_assigned_entry_cannot_be_rejected() {
    let mut history = queued(Some(PROJECT), QueueReason::NoActiveRelease);
    history.push(assigned());
    BuildQueueTest::with(())
        .given(history)
        .when(BuildQueueCommand::Reject {
            reason: "late".to_owned(),
            at: at(),
        })
        .then_expect_error(BuildQueueError::AlreadyAssigned(RELEASE));
}

#[test]
fn a_queued_build_is_rejected_with_its_reason() {
    BuildQueueTest::with(())
        .given(queued(None, QueueReason::NoProjectMatched))
        .when(BuildQueueCommand::Reject {
            reason: " flaky agent ".to_owned(),
            at: at(),
        })
        .then_expect_events(vec![rejected()]);
}

#[test]
fn a_rejection_needs_a_reason() {
    BuildQueueTest::with(())
        .given(queued(None, QueueReason::NoProjectMatched))
        .when(BuildQueueCommand::Reject {
            reason: "".to_owned(),
            at: at(),
        })
        .then_expect_error(BuildQueueError::InvalidReason(crate::NameError::Empty));
}

#[test]
fn a_rejected_entry_cannot_be_assigned_rejected_or_moved() {
    let mut history = queued(None, QueueReason::NoProjectMatched);
    history.push(rejected());
    BuildQueueTest::with(())
        .given(history.clone())
        .when(assign(ReleaseStatus::Active, PROJECT))
        .then_expect_error(BuildQueueError::AlreadyRejected);
    BuildQueueTest::with(())
        .given(history.clone())
        .when(BuildQueueCommand::Reject {
            reason: "again".to_owned(),
            at: at(),
        })
        .then_expect_error(BuildQueueError::AlreadyRejected);
    BuildQueueTest::with(())
        .given(history)
        .when(BuildQueueCommand::SelectProject {
            project_id: PROJECT,
        })
        .then_expect_error(BuildQueueError::AlreadyRejected);
}

#[test]
fn a_build_created_directly_is_not_in_the_queue() {
    BuildQueueTest::with(())
        .given(vec![
            received(),
            BuildQueueEvent::BuildCreatedInRelease {
                release_id: RELEASE,
                project_id: PROJECT,
            },
        ])
        .when(assign(ReleaseStatus::Active, PROJECT))
        .then_expect_error(BuildQueueError::NotQueued);
}

#[test]
fn commands_on_an_unknown_entry_are_refused() {
    BuildQueueTest::with(())
        .given_no_previous_events()
        .when(assign(ReleaseStatus::Active, PROJECT))
        .then_expect_error(BuildQueueError::NotFound);
}

#[test]
fn the_queue_reason_follows_the_spec() {
    assert_eq!(queue_reason(0, 0), Some(QueueReason::NoProjectMatched));
    assert_eq!(queue_reason(2, 1), Some(QueueReason::ProjectAmbiguous));
    assert_eq!(queue_reason(1, 0), Some(QueueReason::NoActiveRelease));
    assert_eq!(queue_reason(1, 1), None);
    assert_eq!(queue_reason(1, 2), Some(QueueReason::SeveralActiveReleases));
}

#[test]
fn names_round_trip() {
    for source in [BuildSource::AzureDevOps, BuildSource::Ingest] {
        assert_eq!(BuildSource::parse(source.as_str()), Some(source));
    }
    for reason in [
        QueueReason::NoProjectMatched,
        QueueReason::ProjectAmbiguous,
        QueueReason::NoActiveRelease,
        QueueReason::SeveralActiveReleases,
        QueueReason::ProjectSelected,
    ] {
        assert_eq!(QueueReason::parse(reason.as_str()), Some(reason));
    }
}

fn upload(id: u128, statuses: &[TestStatus]) -> TestResultsUpload {
    TestResultsUpload {
        upload_id: Uuid::from_u128(id),
        results: statuses
            .iter()
            .enumerate()
            .map(|(n, status)| TestResult {
                test_result_id: Uuid::from_u128(1000 + n as u128),
                title: format!(" test {n} "),
                status: *status,
                duration_ms: Some(12),
                error_message: None,
                priority: None,
                steps: None,
                tester_notes: None,
                environment: None,
            })
            .collect::<Vec<_>>()
            .into(),
    }
}

fn recorded(id: u128, statuses: &[TestStatus]) -> BuildQueueEvent {
    let mut upload = upload(id, statuses);
    for result in std::sync::Arc::make_mut(&mut upload.results) {
        result.title = result.title.trim().to_owned();
    }
    BuildQueueEvent::TestResultsRecorded {
        upload_id: upload.upload_id,
        summary: upload.summary(),
        results: upload.results,
        recorded_at: at(),
    }
}

#[test]
fn results_that_come_with_a_build_are_stored_in_the_same_commit() {
    use TestStatus::*;
    BuildQueueTest::with(())
        .given_no_previous_events()
        .when(BuildQueueCommand::ReceiveBuild {
            identity: identity(),
            details: details(),
            route: Route::Queue {
                project_id: None,
                reason: QueueReason::NoProjectMatched,
            },
            received_at: at(),
            results: Some(upload(7, &[Passed, Failed, Skipped, Passed])),
        })
        .then_expect_events(vec![
            received(),
            BuildQueueEvent::BuildQueued {
                project_id: None,
                reason: QueueReason::NoProjectMatched,
            },
            recorded(7, &[Passed, Failed, Skipped, Passed]),
        ]);
}

#[test]
fn the_summary_counts_each_status() {
    use TestStatus::*;
    assert_eq!(
        upload(1, &[Passed, Failed, Skipped, Passed]).summary(),
        TestSummary {
            total: 4,
            passed: 2,
            failed: 1,
            skipped: 1
        }
    );
}

#[test]
fn results_are_added_to_a_build_in_any_state_once_per_upload() {
    use TestStatus::*;
    let mut history = queued(Some(PROJECT), QueueReason::NoActiveRelease);
    history.push(assigned());
    BuildQueueTest::with(())
        .given(history.clone())
        .when(BuildQueueCommand::RecordTestResults {
            upload: upload(8, &[Failed]),
            at: at(),
        })
        .then_expect_events(vec![recorded(8, &[Failed])]);
    history.push(recorded(8, &[Failed]));
    BuildQueueTest::with(())
        .given(history)
        .when(BuildQueueCommand::RecordTestResults {
            upload: upload(8, &[Failed]),
            at: at(),
        })
        .then_expect_error(BuildQueueError::UploadAlreadyRecorded);
}

#[test]
fn results_need_a_received_build_and_titled_tests() {
    BuildQueueTest::with(())
        .given_no_previous_events()
        .when(BuildQueueCommand::RecordTestResults {
            upload: upload(9, &[TestStatus::Passed]),
            at: at(),
        })
        .then_expect_error(BuildQueueError::NotFound);
    let mut untitled = upload(9, &[TestStatus::Passed, TestStatus::Passed]);
    std::sync::Arc::make_mut(&mut untitled.results)[1].title = "  ".to_owned();
    BuildQueueTest::with(())
        .given(queued(None, QueueReason::NoProjectMatched))
        .when(BuildQueueCommand::RecordTestResults {
            upload: untitled,
            at: at(),
        })
        .then_expect_error(BuildQueueError::InvalidTestTitle {
            index: 1,
            error: crate::NameError::Empty,
        });
}

#[test]
fn retention_expires_a_build_once_and_it_then_takes_nothing() {
    let mut history = queued(Some(PROJECT), QueueReason::NoActiveRelease);
    history.push(assigned());
    let expire = || BuildQueueCommand::Expire {
        reason: "older than 30 days".to_owned(),
        at: at(),
    };
    BuildQueueTest::with(())
        .given(history.clone())
        .when(expire())
        .then_expect_events(vec![BuildQueueEvent::BuildExpired {
            release_id: Some(RELEASE),
            reason: "older than 30 days".to_owned(),
            expired_at: at(),
        }]);
    history.push(BuildQueueEvent::BuildExpired {
        release_id: Some(RELEASE),
        reason: "older than 30 days".to_owned(),
        expired_at: at(),
    });
    BuildQueueTest::with(())
        .given(history.clone())
        .when(expire())
        .then_expect_error(BuildQueueError::Expired);
    BuildQueueTest::with(())
        .given(history)
        .when(BuildQueueCommand::RecordTestResults {
            upload: upload(3, &[TestStatus::Passed]),
            at: at(),
        })
        .then_expect_error(BuildQueueError::Expired);
}

#[test]
fn a_work_item_link_is_recorded_on_the_builds_stream() {
    let ids = vec![Uuid::from_u128(77)];
    BuildQueueTest::with(())
        .given(queued(None, QueueReason::NoProjectMatched))
        .when(BuildQueueCommand::LinkWorkItem {
            test_result_ids: ids.clone(),
            work_item_id: 131489,
            url: "https://dev.azure.com/fabrikam/_workitems/edit/131489".to_owned(),
            at: at(),
        })
        .then_expect_events(vec![BuildQueueEvent::WorkItemLinked {
            test_result_ids: ids,
            work_item_id: 131489,
            url: "https://dev.azure.com/fabrikam/_workitems/edit/131489".to_owned(),
            linked_at: at(),
        }]);
}

#[test]
fn a_test_result_is_stored_without_its_absent_fields_and_read_back_either_way() {
    let result = TestResult {
        test_result_id: Uuid::from_u128(7),
        title: "logs in".to_owned(),
        status: TestStatus::Failed,
        duration_ms: Some(12),
        error_message: None,
        priority: None,
        steps: None,
        tester_notes: None,
        environment: None,
    };
    let stored = serde_json::to_value(&result).unwrap();
    assert_eq!(
        stored,
        serde_json::json!({
            "test_result_id": "00000000-0000-0000-0000-000000000007",
            "title": "logs in",
            "status": "Failed",
            "duration_ms": 12
        })
    );
    // Events stored before spelled every absent field as null.
    let older = serde_json::json!({
        "test_result_id": "00000000-0000-0000-0000-000000000007",
        "title": "logs in",
        "status": "Failed",
        "duration_ms": 12,
        "error_message": null, "priority": null, "steps": null, "tester_notes": null, "environment": null
    });
    assert_eq!(serde_json::from_value::<TestResult>(older).unwrap(), result);
    assert_eq!(
        serde_json::from_value::<TestResult>(stored).unwrap(),
        result
    );
}

const OTHER_RELEASE: Uuid = Uuid::from_u128(5);

fn created_in_release() -> Vec<BuildQueueEvent> {
    vec![
        received(),
        BuildQueueEvent::BuildCreatedInRelease {
            release_id: RELEASE,
            project_id: PROJECT,
        },
    ]
}

fn move_to(status: ReleaseStatus, project_archived: bool) -> BuildQueueCommand {
    BuildQueueCommand::MoveToRelease {
        destination: Destination {
            release: ReleaseRef {
                release_id: OTHER_RELEASE,
                project_id: OTHER_PROJECT,
                status,
            },
            project_archived,
        },
        reason: " wrong project matched ".to_owned(),
        at: at(),
    }
}

fn moved() -> BuildQueueEvent {
    BuildQueueEvent::BuildMovedToRelease {
        from_release_id: RELEASE,
        from_project_id: Some(PROJECT),
        release_id: OTHER_RELEASE,
        project_id: OTHER_PROJECT,
        reason: "wrong project matched".to_owned(),
        moved_at: at(),
    }
}

fn returned() -> BuildQueueEvent {
    BuildQueueEvent::BuildReturnedToQueue {
        from_release_id: RELEASE,
        project_id: Some(PROJECT),
        reason: "not this release".to_owned(),
        returned_at: at(),
    }
}

fn expired() -> BuildQueueEvent {
    BuildQueueEvent::BuildExpired {
        release_id: Some(RELEASE),
        reason: "older than 30 days".to_owned(),
        expired_at: at(),
    }
}

#[test]
fn a_build_in_a_release_moves_to_an_active_release_of_another_project_with_its_reason() {
    // Given a build created straight into a release
    BuildQueueTest::with(())
        .given(created_in_release())
        // When a person moves it into another project's active release
        .when(move_to(ReleaseStatus::Active, false))
        // Then the move records both releases, both projects and the reason
        .then_expect_events(vec![moved()]);
    // An assigned build moves too.
    let mut history = queued(Some(PROJECT), QueueReason::NoActiveRelease);
    history.push(assigned());
    BuildQueueTest::with(())
        .given(history)
        .when(move_to(ReleaseStatus::Active, false))
        .then_expect_events(vec![moved()]);
}

#[test]
fn a_build_moves_only_into_an_active_release_of_a_project_that_is_not_archived() {
    for status in [ReleaseStatus::Completed, ReleaseStatus::Archived] {
        BuildQueueTest::with(())
            .given(created_in_release())
            .when(move_to(status, false))
            .then_expect_error(BuildQueueError::ReleaseNotActive(status));
    }
    BuildQueueTest::with(())
        .given(created_in_release())
        .when(move_to(ReleaseStatus::Active, true))
        .then_expect_error(BuildQueueError::ProjectArchived);
    BuildQueueTest::with(())
        .given(created_in_release())
        .when(BuildQueueCommand::MoveToRelease {
            destination: Destination {
                release: release(ReleaseStatus::Active, PROJECT),
                project_archived: false,
            },
            reason: "again".to_owned(),
            at: at(),
        })
        .then_expect_error(BuildQueueError::AlreadyInRelease(RELEASE));
}

#[test]
fn a_move_needs_a_reason() {
    let BuildQueueCommand::MoveToRelease {
        destination, at, ..
    } = move_to(ReleaseStatus::Active, false)
    else {
        unreachable!()
    };
    BuildQueueTest::with(())
        .given(created_in_release())
        .when(BuildQueueCommand::MoveToRelease {
            destination,
            reason: "  ".to_owned(),
            at,
        })
        .then_expect_error(BuildQueueError::InvalidCorrectionReason(
            crate::NameError::Empty,
        ));
}

#[test]
fn an_expired_queued_or_rejected_build_cannot_be_moved() {
    let mut history = created_in_release();
    history.push(expired());
    BuildQueueTest::with(())
        .given(history.clone())
        .when(move_to(ReleaseStatus::Active, false))
        .then_expect_error(BuildQueueError::Expired);
    BuildQueueTest::with(())
        .given(history)
        .when(BuildQueueCommand::ReturnToQueue {
            reason: "x".to_owned(),
            at: at(),
        })
        .then_expect_error(BuildQueueError::Expired);
    BuildQueueTest::with(())
        .given(queued(None, QueueReason::NoProjectMatched))
        .when(move_to(ReleaseStatus::Active, false))
        .then_expect_error(BuildQueueError::NotInRelease);
    let mut rejected_history = queued(None, QueueReason::NoProjectMatched);
    rejected_history.push(rejected());
    BuildQueueTest::with(())
        .given(rejected_history)
        .when(move_to(ReleaseStatus::Active, false))
        .then_expect_error(BuildQueueError::NotInRelease);
}

#[test]
fn a_build_returned_to_the_queue_is_pending_again_and_can_be_assigned_elsewhere() {
    BuildQueueTest::with(())
        .given(created_in_release())
        .when(BuildQueueCommand::ReturnToQueue {
            reason: "not this release".to_owned(),
            at: at(),
        })
        .then_expect_events(vec![returned()]);
    let mut history = created_in_release();
    history.push(returned());
    // It keeps its project as a suggestion: a person selects another, then assigns.
    BuildQueueTest::with(())
        .given(history.clone())
        .when(BuildQueueCommand::SelectProject {
            project_id: OTHER_PROJECT,
        })
        .then_expect_events(vec![BuildQueueEvent::ProjectSelectedForBuild {
            project_id: OTHER_PROJECT,
        }]);
    BuildQueueTest::with(())
        .given(history.clone())
        .when(assign(ReleaseStatus::Active, PROJECT))
        .then_expect_events(vec![assigned()]);
    // Out of its release, it cannot be returned again.
    BuildQueueTest::with(())
        .given(history)
        .when(BuildQueueCommand::ReturnToQueue {
            reason: "again".to_owned(),
            at: at(),
        })
        .then_expect_error(BuildQueueError::NotInRelease);
}

#[test]
fn undoing_a_rejection_restores_the_queue_reason_it_had() {
    let mut history = queued(Some(PROJECT), QueueReason::SeveralActiveReleases);
    history.push(rejected());
    BuildQueueTest::with(())
        .given(history.clone())
        .when(BuildQueueCommand::RestoreRejected { at: at() })
        .then_expect_events(vec![BuildQueueEvent::RejectedBuildRestored {
            project_id: Some(PROJECT),
            reason: QueueReason::SeveralActiveReleases,
            restored_at: at(),
        }]);
    history.push(BuildQueueEvent::RejectedBuildRestored {
        project_id: Some(PROJECT),
        reason: QueueReason::SeveralActiveReleases,
        restored_at: at(),
    });
    // Pending again: it can be assigned, and it is no longer rejected.
    BuildQueueTest::with(())
        .given(history.clone())
        .when(assign(ReleaseStatus::Active, PROJECT))
        .then_expect_events(vec![assigned()]);
    BuildQueueTest::with(())
        .given(history)
        .when(BuildQueueCommand::RestoreRejected { at: at() })
        .then_expect_error(BuildQueueError::NotRejected);
}

#[test]
fn the_aggregate_remembers_its_organization() {
    let mut entry = BuildQueue::default();
    for event in created_in_release() {
        cqrs_es::Aggregate::apply(&mut entry, event);
    }
    assert_eq!(entry.organization_id, Some(ORG));
}

#[test]
fn a_queued_build_is_not_assigned_to_a_release_of_an_archived_project() {
    BuildQueueTest::with(())
        .given(queued(Some(PROJECT), QueueReason::ProjectArchived))
        .when(BuildQueueCommand::AssignToRelease {
            release: release(ReleaseStatus::Active, PROJECT),
            project_archived: true,
            at: at(),
        })
        .then_expect_error(BuildQueueError::ProjectArchived);
}
