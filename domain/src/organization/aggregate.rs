//! The organization aggregate: one stream per organization, holding only its own settings. Builds, projects and
//! keys live in streams of their own so that they never contend on this one.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{OrganizationCommand, OrganizationError, OrganizationEvent};
use crate::validate_name;

/// State an organization needs to decide its commands.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Organization {
    pub organization_id: Option<Uuid>,
    pub org_id_auth_enabled: bool,
}

impl Aggregate for Organization {
    const TYPE: &'static str = "Organization";
    type Command = OrganizationCommand;
    type Event = OrganizationEvent;
    type Error = OrganizationError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            OrganizationCommand::CreateOrganization {
                organization_id,
                name,
            } => {
                if self.organization_id.is_some() {
                    return Err(OrganizationError::AlreadyExists);
                }
                let name = validate_name(&name).map_err(OrganizationError::InvalidName)?;
                // Off until a key holding `builds:create` turns it on: the organization id is no secret (any key
                // reads it), so authenticating by it must be a deliberate choice. Organizations created earlier
                // keep what their `OrganizationCreated` event recorded.
                let event = OrganizationEvent::OrganizationCreated {
                    organization_id,
                    name,
                    org_id_auth_enabled: false,
                };
                sink.write(event, self).await;
            }
            OrganizationCommand::SetOrgIdAuthentication { enabled } => {
                if self.organization_id.is_none() {
                    return Err(OrganizationError::NotFound);
                }
                // Setting what is already set records nothing: the audit trail only shows changes.
                if self.org_id_auth_enabled != enabled {
                    let event = OrganizationEvent::OrgIdAuthenticationChanged { enabled };
                    sink.write(event, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            OrganizationEvent::OrganizationCreated {
                organization_id,
                org_id_auth_enabled,
                ..
            } => {
                self.organization_id = Some(organization_id);
                self.org_id_auth_enabled = org_id_auth_enabled;
            }
            OrganizationEvent::OrgIdAuthenticationChanged { enabled } => {
                self.org_id_auth_enabled = enabled;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::NameError;

    type OrganizationTest = TestFramework<Organization>;

    fn created(id: Uuid) -> OrganizationEvent {
        OrganizationEvent::OrganizationCreated {
            organization_id: id,
            name: "Fabrikam".to_owned(),
            org_id_auth_enabled: false,
        }
    }

    #[test]
    fn a_new_organization_starts_with_org_id_authentication_off() {
        let id = Uuid::new_v4();
        // Given / When / Then
        OrganizationTest::with(())
            .given_no_previous_events()
            .when(OrganizationCommand::CreateOrganization {
                organization_id: id,
                name: " Fabrikam ".to_owned(),
            })
            .then_expect_events(vec![created(id)]);
    }

    #[test]
    fn an_organization_cannot_be_created_twice() {
        let id = Uuid::new_v4();
        OrganizationTest::with(())
            .given(vec![created(id)])
            .when(OrganizationCommand::CreateOrganization {
                organization_id: id,
                name: "Again".to_owned(),
            })
            .then_expect_error(OrganizationError::AlreadyExists);
    }

    #[test]
    fn a_blank_name_is_refused() {
        OrganizationTest::with(())
            .given_no_previous_events()
            .when(OrganizationCommand::CreateOrganization {
                organization_id: Uuid::new_v4(),
                name: "  ".to_owned(),
            })
            .then_expect_error(OrganizationError::InvalidName(NameError::Empty));
    }

    #[test]
    fn org_id_authentication_can_be_turned_on_once() {
        let id = Uuid::new_v4();
        OrganizationTest::with(())
            .given(vec![created(id)])
            .when(OrganizationCommand::SetOrgIdAuthentication { enabled: true })
            .then_expect_events(vec![OrganizationEvent::OrgIdAuthenticationChanged {
                enabled: true,
            }]);
        OrganizationTest::with(())
            .given(vec![created(id)])
            .when(OrganizationCommand::SetOrgIdAuthentication { enabled: false })
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_organization_created_with_org_id_authentication_on_keeps_it() {
        // Organizations created before it was off by default recorded `true`: their history is not rewritten.
        let id = Uuid::new_v4();
        let earlier = OrganizationEvent::OrganizationCreated {
            organization_id: id,
            name: "Fabrikam".to_owned(),
            org_id_auth_enabled: true,
        };
        OrganizationTest::with(())
            .given(vec![earlier])
            .when(OrganizationCommand::SetOrgIdAuthentication { enabled: true })
            .then_expect_events(vec![]);
    }

    #[test]
    fn settings_of_an_unknown_organization_are_refused() {
        OrganizationTest::with(())
            .given_no_previous_events()
            .when(OrganizationCommand::SetOrgIdAuthentication { enabled: false })
            .then_expect_error(OrganizationError::NotFound);
    }
}
