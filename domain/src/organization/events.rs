//! Events of an organization's life. Persisted forever: never rename or reshape one, add an upcaster.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What happened to an organization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrganizationEvent {
    OrganizationCreated {
        organization_id: Uuid,
        name: String,
        org_id_auth_enabled: bool,
    },
    OrgIdAuthenticationChanged {
        enabled: bool,
    },
}

impl DomainEvent for OrganizationEvent {
    fn event_type(&self) -> String {
        match self {
            Self::OrganizationCreated { .. } => "OrganizationCreated",
            Self::OrgIdAuthenticationChanged { .. } => "OrgIdAuthenticationChanged",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
