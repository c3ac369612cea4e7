//! `POST /api/webhooks/azure-devops`: Azure DevOps service-hook deliveries.
//!
//! Azure DevOps puts a subscription on probation after an error answer other than 408/502/503/504, and then loses
//! new events. So whatever a retry cannot fix but is not the caller's mistake (an event type we do not handle, a
//! delivery without resource details, the dialog's Test button) is answered 200 with a message saying what was
//! done and why. A delivery that can never be stored (a NUL character in an identifier, a field over its length,
//! a pull-request number out of range: see `azure_fields`) is answered 422 naming the fields: retrying it cannot
//! help, so it is not a 503.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use projections::CommandContext;

use super::azure::{self, Delivery};
use super::deliveries::DeliveryLog;
use super::{authenticate_intake, submit, IntakeResponse};
use crate::error::ApiError;
use crate::state::AppState;
use crate::transport::ClientIp;

/// Azure DevOps's own payload limit.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Handles one delivery and records it in the delivery log.
#[tracing::instrument(name = "webhook.azure_devops", skip_all, fields(org.id, outcome))]
pub async fn azure_devops(
    State(state): State<AppState>,
    client: ClientIp,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut log = DeliveryLog::start("azure-devops", request_id(&headers));
    let result = handle(&state, client, &headers, body, &mut log).await;
    log.respond(&state, result).await
}

async fn handle(
    state: &AppState,
    client: ClientIp,
    headers: &HeaderMap,
    body: Body,
    log: &mut DeliveryLog,
) -> Result<(u16, IntakeResponse), ApiError> {
    refuse_announced_over(headers, MAX_BODY_BYTES)?;
    // The caller is known before its body is read: a wrong key costs one header, not a body.
    let caller = authenticate_intake(state, headers, client).await?;
    log.organization_id = Some(caller.organization_id);
    log.rate = Some(caller.spend(state).await?);
    let body = super::ingest_forms::read_whole(body, MAX_BODY_BYTES).await?;
    let value = azure::parse(&body)
        .map_err(|error| ApiError::BadUserInput(format!("the body is not valid JSON: {error}")))?;
    log.meta = azure::meta(&value);
    super::azure_fields::check(&value)?;
    let delivery = azure::interpret(&value, &log.meta).map_err(ApiError::BadUserInput)?;
    let submission = match delivery {
        Delivery::Ignore(why) => return Ok((200, IntakeResponse::ignored(why))),
        Delivery::Build(submission) => *submission,
    };
    let mut extra = vec![("delivery.id".to_owned(), log.delivery_id.to_string())];
    for (name, value) in [
        ("azure.subscription_id", &log.meta.subscription_id),
        ("azure.notification_id", &log.meta.notification_id),
        ("azure.event_id", &log.meta.event_id),
    ] {
        if let Some(value) = value {
            extra.push((name.to_owned(), value.clone()));
        }
    }
    let context = CommandContext {
        organization_id: Some(caller.organization_id),
        actor: caller.actor,
        request_id: log.request_id.clone(),
        at: log.received_at,
        extra,
    };
    let response = submit(state, caller.organization_id, submission, &context).await?;
    Ok((200, response))
}

/// The response for a failed delivery. Our own failures answer 503 with `Retry-After`: Azure DevOps retries a
/// 503 (a transient failure) with backoff but puts the subscription on probation after a 500, and a CI step can
/// retry too. Nothing of the delivery was stored.
pub(crate) fn error_response(error: ApiError) -> Response {
    let internal = matches!(error, ApiError::Internal(_));
    let mut response = error.into_response();
    if internal {
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        response
            .headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("5"));
    }
    response
}

/// The request id set by the request-id layer.
pub(crate) fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// Refuses a body whose `Content-Length` is over `limit` (413) before anything is read.
pub(crate) fn refuse_announced_over(headers: &HeaderMap, limit: usize) -> Result<(), ApiError> {
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit_bytes: limit });
    }
    Ok(())
}
