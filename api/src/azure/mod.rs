//! Azure DevOps integration: work items for failed tests and test results on pull requests, delivered through a
//! durable outbox.

pub mod client;
pub mod crypto;
pub mod egress;
pub mod retention_sync;
pub mod worker;

use std::time::Duration;

use secrecy::SecretString;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;
use client::{AzureClient, Target};
use crypto::Sealer;

/// What the integration needs at run time.
#[derive(Clone, Debug)]
pub struct AzureRuntime {
    pub client: AzureClient,
    /// `None` when the server has no `LATHE_SECRET_KEY`: connections cannot be made then.
    pub sealer: Option<Sealer>,
    /// Base of the links to builds put in pull-request statuses.
    pub public_url: String,
    /// First retry delay; doubled on each attempt.
    pub backoff: Duration,
    /// Attempts before a call ends as failed.
    pub max_attempts: i32,
    /// How long a claimed call is reserved for the worker that claimed it: longer than one call can take (at most
    /// three requests, each bounded by the timeout), so that a call is never made twice at once, and short enough
    /// that a crashed worker's call is soon taken up again. Calls are claimed one at a time, each just before it
    /// is made, so no call waits for others under its lease.
    pub lease: Duration,
}

impl std::fmt::Debug for AzureClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AzureClient")
    }
}

impl AzureRuntime {
    /// The sealer, or the error that explains how to configure one.
    pub fn sealer(&self) -> Result<&Sealer, ApiError> {
        self.sealer.as_ref().ok_or_else(|| {
            ApiError::BadUserInput(
                "this server has no LATHE_SECRET_KEY, so it cannot store Azure DevOps tokens; ask its operator"
                    .to_owned(),
            )
        })
    }
}

/// Where and as whom to call for a connected project: its connection with the decrypted token. `None` when the
/// project is not connected; an error (worth another try) while a connection's token is not stored yet, as in the
/// moment between `connectAzureDevOps`' command and the storing of its token.
pub async fn target_of(
    state: &AppState,
    project_id: Uuid,
) -> Result<Option<(Target, projections::azure::ConnectionRow)>, ApiError> {
    let Some(connection) = projections::azure::connection(&state.pool, project_id).await? else {
        return Ok(None);
    };
    let Some((nonce, ciphertext)) = projections::azure::credential(&state.pool, project_id).await?
    else {
        return Err(ApiError::Conflict(
            "the connection's token is not stored yet".to_owned(),
        ));
    };
    let token = state
        .azure
        .sealer()?
        .open(&nonce, &ciphertext)
        .map_err(ApiError::internal)?;
    let target = Target {
        organization_url: connection.organization_url.clone(),
        project: connection.azure_project.clone(),
        token: SecretString::from(token),
    };
    Ok(Some((target, connection)))
}
