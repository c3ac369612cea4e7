//! Build retention taken from Azure DevOps: reads a connected project's retention settings and records them (or
//! why they could not be read) on the project's stream. Used when the sync is turned on and by the retention job.

use uuid::Uuid;

use domain::project::{AzureRetention, Project, ProjectCommand};
use projections::{CommandContext, CommandError};

use super::client::AzureError;
use super::target_of;
use crate::error::ApiError;
use crate::state::AppState;

/// Reads the Azure DevOps retention of a project, or why it cannot be read, in words a person can act on.
pub async fn read(state: &AppState, project_id: Uuid) -> Result<AzureRetention, Unreadable> {
    let (target, _) = match target_of(state, project_id).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            return Err(Unreadable {
                permanent: true,
                message: "the project is not connected to Azure DevOps".to_owned(),
            })
        }
        Err(error) => {
            error.log_if_internal();
            return Err(Unreadable {
                permanent: false,
                message: "the Azure DevOps connection cannot be read right now".to_owned(),
            });
        }
    };
    state
        .azure
        .client
        .build_retention(&target)
        .await
        .map_err(|error| describe(&target.project, error))
}

/// Why the retention could not be read.
#[derive(Debug, Clone)]
pub struct Unreadable {
    /// Refused by Azure DevOps (a token without the permission, a missing project): another try will not help.
    pub permanent: bool,
    pub message: String,
}

fn describe(project: &str, error: AzureError) -> Unreadable {
    let permanent = matches!(error, AzureError::Rejected { .. });
    let message = match error.status() {
        Some(401 | 403) => format!(
            "Azure DevOps refused to show the build retention of project `{project}` ({error}): the personal \
             access token needs the Build (Read) scope. Reconnect with such a token, or turn the retention sync \
             off; until then the last synced values (or the project's own rules) stay in force"
        ),
        _ => format!("the build retention of Azure DevOps project `{project}` could not be read: {error}"),
    };
    Unreadable { permanent, message }
}

/// Reads the retention and records the outcome on the project's stream (only changes are recorded).
pub async fn sync(
    state: &AppState,
    project_id: Uuid,
    context: &CommandContext,
) -> Result<Result<AzureRetention, Unreadable>, ApiError> {
    let outcome = read(state, project_id).await;
    record(state, project_id, outcome.clone(), context).await?;
    Ok(outcome)
}

/// Records an outcome already read.
pub async fn record(
    state: &AppState,
    project_id: Uuid,
    outcome: Result<AzureRetention, Unreadable>,
    context: &CommandContext,
) -> Result<(), ApiError> {
    let command = ProjectCommand::RecordAzureRetention {
        outcome: outcome.map_err(|unreadable| unreadable.message),
        at: context.at,
    };
    match state
        .store
        .execute::<Project>(project_id, command, context)
        .await
    {
        // Turned off meanwhile: nothing to record.
        Ok(()) | Err(CommandError::Domain(domain::project::ProjectError::RetentionSyncOff)) => {
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}
