//! A project's connection to Azure DevOps, for work items and pull-request statuses. The personal access token is
//! not part of it: it never enters the domain, so it can never reach an event.

use serde::{Deserialize, Serialize};

/// A Lathe Studio field that can be copied into a work item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MappedField {
    TestCaseTitle,
    Priority,
    TestSteps,
    TesterNotes,
    Environment,
}

impl MappedField {
    /// Every mappable field, in the spec's order.
    pub const ALL: [MappedField; 5] = [
        Self::TestCaseTitle,
        Self::Priority,
        Self::TestSteps,
        Self::TesterNotes,
        Self::Environment,
    ];
}

/// One field mapping: a Lathe field into an Azure DevOps field (its reference name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldMapping {
    pub source: MappedField,
    pub field: String,
}

/// The spec's default mappings; Environment has none until the user picks a field.
pub fn default_mappings() -> Vec<FieldMapping> {
    [
        (MappedField::TestCaseTitle, "System.Title"),
        (MappedField::Priority, "Microsoft.VSTS.Common.Priority"),
        (MappedField::TestSteps, "Microsoft.VSTS.TCM.ReproSteps"),
        (MappedField::TesterNotes, "System.Description"),
    ]
    .into_iter()
    .map(|(source, field)| FieldMapping {
        source,
        field: field.to_owned(),
    })
    .collect()
}

/// How a project talks to Azure DevOps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AzureDevOpsSettings {
    /// `https://dev.azure.com/{org}`, `https://{org}.visualstudio.com` or a server collection URL.
    pub organization_url: String,
    /// The Azure DevOps project (name or id).
    pub project: String,
    pub work_item_type: String,
    pub field_mappings: Vec<FieldMapping>,
    /// Create work items for failed tests automatically (off by default).
    pub auto_create_work_items: bool,
    /// Also post a comment thread with the summary on pull requests.
    pub post_pull_request_comments: bool,
    /// Above this many failed tests in one build, one summary work item is created instead of one per test.
    pub failure_threshold: u32,
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AzureSettingsError {
    #[error("organizationUrl must be an http(s) URL")]
    OrganizationUrl,
    #[error("{0} must not be empty")]
    Blank(&'static str),
    #[error("failureThreshold must be at least 1")]
    Threshold,
    #[error("Test Case Title must be mapped: a work item needs a title")]
    NoTitle,
    #[error("{0:?} is mapped twice")]
    DuplicateMapping(MappedField),
}

impl AzureDevOpsSettings {
    /// Trims the settings and refuses what cannot work.
    pub fn validated(mut self) -> Result<Self, AzureSettingsError> {
        self.organization_url = self
            .organization_url
            .trim()
            .trim_end_matches('/')
            .to_owned();
        match url::Url::parse(&self.organization_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
            _ => return Err(AzureSettingsError::OrganizationUrl),
        }
        self.project = self.project.trim().to_owned();
        self.work_item_type = self.work_item_type.trim().to_owned();
        if self.project.is_empty() {
            return Err(AzureSettingsError::Blank("project"));
        }
        if self.work_item_type.is_empty() {
            return Err(AzureSettingsError::Blank("workItemType"));
        }
        if self.failure_threshold == 0 {
            return Err(AzureSettingsError::Threshold);
        }
        for mapping in &mut self.field_mappings {
            mapping.field = mapping.field.trim().to_owned();
            if mapping.field.is_empty() {
                return Err(AzureSettingsError::Blank("field"));
            }
        }
        for source in MappedField::ALL {
            if self
                .field_mappings
                .iter()
                .filter(|m| m.source == source)
                .count()
                > 1
            {
                return Err(AzureSettingsError::DuplicateMapping(source));
            }
        }
        if !self
            .field_mappings
            .iter()
            .any(|m| m.source == MappedField::TestCaseTitle)
        {
            return Err(AzureSettingsError::NoTitle);
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AzureDevOpsSettings {
        AzureDevOpsSettings {
            organization_url: "https://dev.azure.com/fabrikam/".to_owned(),
            project: " Web ".to_owned(),
            work_item_type: "Bug".to_owned(),
            field_mappings: default_mappings(),
            auto_create_work_items: false,
            post_pull_request_comments: false,
            failure_threshold: 20,
        }
    }

    #[test]
    fn settings_are_trimmed_and_checked() {
        let valid = settings().validated().unwrap();
        assert_eq!(valid.organization_url, "https://dev.azure.com/fabrikam");
        assert_eq!(valid.project, "Web");
        let mut no_title = settings();
        no_title
            .field_mappings
            .retain(|m| m.source != MappedField::TestCaseTitle);
        assert_eq!(no_title.validated(), Err(AzureSettingsError::NoTitle));
        let mut twice = settings();
        twice.field_mappings.push(FieldMapping {
            source: MappedField::Priority,
            field: "Custom.Priority".to_owned(),
        });
        assert_eq!(
            twice.validated(),
            Err(AzureSettingsError::DuplicateMapping(MappedField::Priority))
        );
        let mut bad_url = settings();
        bad_url.organization_url = "dev.azure.com/fabrikam".to_owned();
        assert_eq!(
            bad_url.validated(),
            Err(AzureSettingsError::OrganizationUrl)
        );
    }
}
