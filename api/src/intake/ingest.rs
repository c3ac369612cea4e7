//! `POST /api/v1/results/ingest`: a CI pipeline reports a build and its test results (the spec's
//! `azure-pipelines.yml` step), as the JSON body the spec defines or as the report files test runners write (see
//! `ingest_forms`). Both are described in the README.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;
use uuid::Uuid;

use projections::idempotency::{self, Reservation};
use projections::CommandContext;

use super::deliveries::DeliveryLog;
use super::ingest_forms;
use super::webhook::{refuse_announced_over, request_id};
use super::{authenticate_intake, submit, BuildSubmission, IntakeResponse, Outcome};
use crate::error::{ApiError, FieldError};
use crate::state::AppState;
use crate::transport::ClientIp;

/// Longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Handles one ingest call and records it in the delivery log.
#[tracing::instrument(name = "ingest", skip_all, fields(org.id, outcome))]
pub async fn ingest(
    State(state): State<AppState>,
    client: ClientIp,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut log = DeliveryLog::start("ingest", request_id(&headers));
    log.meta.event_type = Some("results.ingest".to_owned());
    // The work runs on a task of its own, so that a caller who hangs up, or the request timeout, cannot cut it off
    // between the commit of its events and the recording of its `Idempotency-Key`'s answer: the key would stay
    // "in progress" and every retry would get 409 until it is pruned a day later.
    let work = async move {
        let result = handle(&state, client, &uri, &headers, body, &mut log).await;
        log.respond(&state, result).await
    };
    match tokio::spawn(work.instrument(tracing::Span::current())).await {
        Ok(response) => response,
        Err(failed) => ApiError::internal(failed).into_response(),
    }
}

async fn handle(
    state: &AppState,
    client: ClientIp,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
    log: &mut DeliveryLog,
) -> Result<(u16, IntakeResponse), ApiError> {
    // A body announced over the limit is refused before anything is read; one that grows over it, when it does.
    refuse_announced_over(headers, state.limits.ingest_max_bytes)?;
    // The caller is known before its body is read: a wrong key costs one header, not a body.
    let caller = authenticate_intake(state, headers, client).await?;
    let organization_id = caller.organization_id;
    log.organization_id = Some(organization_id);
    log.rate = Some(caller.spend(state).await?);
    let idempotency_key = idempotency_key(headers)?;
    // The body is read as it arrives (a report never whole, see `ingest_forms`), and not held while the events
    // are written.
    let ingest_forms::Understood {
        submission,
        request_hash,
    } = ingest_forms::read(
        uri,
        headers,
        body,
        organization_id,
        idempotency_key.as_deref(),
        state.limits.ingest_max_bytes,
        &state.report_readers,
    )
    .await?;
    let context = CommandContext {
        organization_id: Some(organization_id),
        actor: caller.actor,
        request_id: log.request_id.clone(),
        at: log.received_at,
        extra: vec![("delivery.id".to_owned(), log.delivery_id.to_string())],
    };
    let Some(key) = idempotency_key else {
        return process(state, organization_id, submission, &context).await;
    };
    match idempotency::reserve(&state.pool, organization_id, &key, &request_hash).await? {
        Reservation::Reserved => {}
        Reservation::Replay {
            status_code,
            response,
        } => {
            let response: IntakeResponse =
                serde_json::from_value(response).map_err(ApiError::internal)?;
            return Ok((status_code, response));
        }
        Reservation::Mismatch => {
            return Err(ApiError::InvalidFields(vec![FieldError::new(
                "Idempotency-Key",
                "this key was used before with a different body",
            )]))
        }
        Reservation::InProgress => {
            return Err(ApiError::Conflict(
                "a request with this Idempotency-Key is still being processed; retry shortly"
                    .to_owned(),
            ))
        }
    }
    let result = process(state, organization_id, submission, &context).await;
    match &result {
        Ok((status, response)) => {
            let stored = serde_json::to_value(response).map_err(ApiError::internal)?;
            idempotency::complete(&state.pool, organization_id, &key, *status, &stored).await?;
        }
        Err(_) => idempotency::release(&state.pool, organization_id, &key).await?,
    }
    result
}

async fn process(
    state: &AppState,
    organization_id: Uuid,
    submission: BuildSubmission,
    context: &CommandContext,
) -> Result<(u16, IntakeResponse), ApiError> {
    let response = submit(state, organization_id, submission, context).await?;
    let status = match response.outcome {
        Outcome::Created | Outcome::Queued => 201,
        _ => 200,
    };
    Ok((status, response))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or_default().trim();
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
        return Err(ApiError::BadUserInput(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
        )));
    }
    Ok(Some(key.to_owned()))
}
