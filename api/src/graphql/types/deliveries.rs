//! The delivery log as GraphQL objects.

use async_graphql::{Object, ID};
use chrono::{DateTime, Utc};

use projections::deliveries::DeliveryRow;

/// One call to the webhook or ingest endpoint and what became of it.
pub struct Delivery(pub DeliveryRow);

#[Object]
impl Delivery {
    async fn id(&self) -> ID {
        ID(self.0.delivery_id.to_string())
    }
    async fn received_at(&self) -> DateTime<Utc> {
        self.0.received_at
    }
    /// `azure-devops` or `ingest`.
    async fn source(&self) -> &str {
        &self.0.source
    }
    async fn event_type(&self) -> Option<&str> {
        self.0.event_type.as_deref()
    }
    /// `created`, `queued`, `duplicate`, `attached`, `ignored`, `filtered`, `unauthorized`, `invalid`,
    /// `rate_limited` or `failed`.
    async fn outcome(&self) -> &str {
        &self.0.outcome
    }
    async fn http_status(&self) -> i32 {
        self.0.http_status
    }
    /// What was done and why.
    async fn message(&self) -> &str {
        &self.0.message
    }
    async fn build_id(&self) -> Option<ID> {
        self.0.build_id.map(|id| ID(id.to_string()))
    }
    async fn queued_build_id(&self) -> Option<ID> {
        self.0.queued_build_id.map(|id| ID(id.to_string()))
    }
    /// The Azure DevOps service-hook subscription, to find the delivery in its history.
    async fn subscription_id(&self) -> Option<&str> {
        self.0.subscription_id.as_deref()
    }
    async fn notification_id(&self) -> Option<&str> {
        self.0.notification_id.as_deref()
    }
    async fn event_id(&self) -> Option<&str> {
        self.0.event_id.as_deref()
    }
    async fn request_id(&self) -> Option<&str> {
        self.0.request_id.as_deref()
    }
}
