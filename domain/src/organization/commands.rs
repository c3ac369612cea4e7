//! Commands an organization accepts.

use uuid::Uuid;

/// What can be asked of an organization.
#[derive(Debug, Clone, PartialEq)]
pub enum OrganizationCommand {
    /// Creates the organization. Org-id authentication (`X-Pt-Org-Id`) starts enabled, as the spec offers it.
    CreateOrganization { organization_id: Uuid, name: String },
    /// Turns authentication by organization id on or off.
    SetOrgIdAuthentication { enabled: bool },
}
