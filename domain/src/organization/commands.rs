//! Commands an organization accepts.

use uuid::Uuid;

/// What can be asked of an organization.
#[derive(Debug, Clone, PartialEq)]
pub enum OrganizationCommand {
    /// Creates the organization. Org-id authentication (`X-Pt-Org-Id`) starts disabled: the spec calls the API key
    /// the recommended way, and the organization id is readable with any key.
    CreateOrganization { organization_id: Uuid, name: String },
    /// Turns authentication by organization id on or off. The API lets only a key holding `builds:create` (what
    /// org-id authentication grants) turn it on.
    SetOrgIdAuthentication { enabled: bool },
}
