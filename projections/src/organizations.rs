//! Read model of organizations: their names and whether they accept `X-Pt-Org-Id` authentication.

use async_trait::async_trait;
use cqrs_es::EventEnvelope;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use domain::organization::{Organization, OrganizationEvent};

use crate::{Projector, StreamRows};

/// Projects organization events into `organizations`.
pub struct OrganizationsProjector;

#[async_trait]
impl Projector<Organization> for OrganizationsProjector {
    fn projection(&self) -> &'static str {
        "organizations"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["organizations"]
    }

    fn stream_rows(&self) -> Option<StreamRows> {
        Some(StreamRows {
            table: "organizations",
            key: "organization_id",
            removed_by: None,
        })
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &EventEnvelope<Organization>,
    ) -> Result<(), sqlx::Error> {
        match &event.payload {
            OrganizationEvent::OrganizationCreated {
                organization_id,
                name,
                org_id_auth_enabled,
            } => {
                sqlx::query(
                    "INSERT INTO organizations (organization_id, name, org_id_auth_enabled)
                     VALUES ($1, $2, $3)",
                )
                .bind(organization_id)
                .bind(name)
                .bind(org_id_auth_enabled)
                .execute(conn)
                .await?;
            }
            OrganizationEvent::OrgIdAuthenticationChanged { enabled } => {
                sqlx::query(
                    "UPDATE organizations SET org_id_auth_enabled = $2 WHERE organization_id = $1",
                )
                .bind(aggregate_uuid(&event.aggregate_id))
                .bind(enabled)
                .execute(conn)
                .await?;
            }
        }
        Ok(())
    }
}

/// An organization as the API shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrganizationRow {
    pub organization_id: Uuid,
    pub name: String,
    pub org_id_auth_enabled: bool,
}

/// Finds one organization.
pub async fn find(
    pool: &PgPool,
    organization_id: Uuid,
) -> Result<Option<OrganizationRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT organization_id, name, org_id_auth_enabled FROM organizations WHERE organization_id = $1",
    )
    .bind(organization_id)
    .fetch_optional(pool)
    .await
}

/// Aggregate ids are UUIDs written by [`crate::EventStore::execute`]; anything else maps to the nil UUID, which
/// matches no row.
pub(crate) fn aggregate_uuid(aggregate_id: &str) -> Uuid {
    aggregate_id.parse().unwrap_or_default()
}
