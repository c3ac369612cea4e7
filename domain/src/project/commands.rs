//! Commands a project accepts.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The settings a user gives a project; the matcher compares incoming builds against them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectSettings {
    pub name: String,
    /// The Lathe project URL, matched exactly (after normalization) against a build's project URL.
    pub url: Option<String>,
    pub repository_urls: Vec<String>,
    /// Azure DevOps project GUID, when known: the most reliable match.
    pub azure_project_id: Option<String>,
    /// Azure Repos repository GUIDs (or `owner/name` for GitHub repositories built by Azure Pipelines).
    pub azure_repository_ids: Vec<String>,
}

/// What can be asked of a project.
#[derive(Debug, Clone, PartialEq)]
pub enum ProjectCommand {
    CreateProject {
        project_id: Uuid,
        organization_id: Uuid,
        settings: ProjectSettings,
    },
    /// Replaces every setting at once, so that the event records the whole new state.
    UpdateProject { settings: ProjectSettings },
}
