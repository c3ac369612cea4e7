//! Recording each delivery in the delivery log, once, where the response is made.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use projections::deliveries::{self, DeliveryRow};
use projections::HeldConnection;

use super::azure::DeliveryMeta;
use super::IntakeResponse;
use crate::error::ApiError;
use crate::state::AppState;

/// What is known of a delivery while it is handled.
pub struct DeliveryLog {
    pub delivery_id: Uuid,
    pub received_at: DateTime<Utc>,
    pub source: &'static str,
    pub request_id: Option<String>,
    pub organization_id: Option<Uuid>,
    pub meta: DeliveryMeta,
    /// The rate limit that applied, echoed in the response headers.
    pub rate: Option<crate::rate_limit::RateInfo>,
}

impl DeliveryLog {
    /// Starts the record of a delivery to `source` (`azure-devops` or `ingest`).
    pub fn start(source: &'static str, request_id: Option<String>) -> Self {
        Self {
            // Time-ordered, so that the log's primary key grows at one end instead of touching a random page per
            // delivery (each such page costs a full-page image in the WAL after every checkpoint).
            delivery_id: Uuid::now_v7(),
            received_at: Utc::now(),
            source,
            request_id,
            organization_id: None,
            meta: DeliveryMeta::default(),
            rate: None,
        }
    }

    /// Records the delivery and turns its outcome into the response, with the rate-limit headers that applied.
    pub async fn respond(
        self,
        state: &AppState,
        result: Result<(u16, IntakeResponse), ApiError>,
    ) -> Response {
        let span = tracing::Span::current();
        if let Some(org) = self.organization_id {
            span.record("org.id", tracing::field::display(org));
        }
        match &result {
            Ok((_, response)) => span.record("outcome", response.outcome.as_str()),
            Err(error) => span.record("outcome", error.code()),
        };
        let rate = self.rate;
        // A delivery refused before its organization was known (no valid credentials, an unreadable body) is not
        // written: no organization could read the row, and a flood of them would only grow the table. The request
        // log and `lathe_unauthenticated_refusals_total` count them.
        if self.organization_id.is_some() {
            self.finish(state, &result).await;
        }
        let mut response = match result {
            Ok((status, body)) => (
                StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                Json(body),
            )
                .into_response(),
            Err(error) => super::webhook::error_response(error),
        };
        if let Some(rate) = rate {
            rate.write_headers(response.headers_mut());
        }
        response
    }

    /// Writes the record. A failure to write is logged and does not change the answer: the build itself is
    /// already safe in the event store.
    async fn finish(self, state: &AppState, result: &Result<(u16, IntakeResponse), ApiError>) {
        let (outcome, http_status, message, build_id, queued_build_id) = match result {
            Err(ApiError::Internal(_)) => (
                "failed".to_owned(),
                503,
                "internal error".to_owned(),
                None,
                None,
            ),
            Ok((status, response)) => (
                response.outcome.as_str().to_owned(),
                *status,
                response.message.clone(),
                response.build_id,
                response.queued_build_id,
            ),
            Err(error) => {
                let outcome = match error {
                    ApiError::Unauthenticated(_) | ApiError::Forbidden(_) => "unauthorized",
                    ApiError::RateLimited { .. } => "rate_limited",
                    ApiError::Internal(_) => "failed",
                    _ => "invalid",
                };
                (
                    outcome.to_owned(),
                    error.status().as_u16(),
                    error.to_string(),
                    None,
                    None,
                )
            }
        };
        let row = DeliveryRow {
            delivery_id: self.delivery_id,
            organization_id: self.organization_id,
            received_at: self.received_at,
            source: self.source.to_owned(),
            event_type: self.meta.event_type,
            outcome,
            http_status: i32::from(http_status),
            message,
            build_id,
            queued_build_id,
            subscription_id: self.meta.subscription_id,
            notification_id: self.meta.notification_id,
            event_id: self.meta.event_id,
            request_id: self.request_id,
        };
        state.delivery_log.record(row).await;
    }
}

/// Rows written to the delivery log at most in one statement.
const MAX_ROWS: usize = 256;

/// Writes `rows` in one statement. If PostgreSQL refuses that statement, each row is written alone, so that a row
/// it refuses costs only itself; each lost row is logged once. When the database cannot be reached at all, the
/// rows are logged as lost without trying them one by one (each try would wait for a connection in vain).
async fn write(conn: &mut HeldConnection, rows: &[DeliveryRow]) {
    let error = match try_write(conn, rows).await {
        Ok(()) => return,
        Err(error) => error,
    };
    if rows.len() == 1 || !matches!(error, sqlx::Error::Database(_)) {
        for row in rows {
            tracing::error!(delivery.id = %row.delivery_id, error = %error, "cannot record the delivery");
        }
        return;
    }
    for (index, row) in rows.iter().enumerate() {
        match try_write(conn, std::slice::from_ref(row)).await {
            Ok(()) => {}
            Err(error @ sqlx::Error::Database(_)) => {
                tracing::error!(delivery.id = %row.delivery_id, error = %error, "cannot record the delivery");
            }
            Err(error) => {
                for row in &rows[index..] {
                    tracing::error!(delivery.id = %row.delivery_id, error = %error, "cannot record the delivery");
                }
                return;
            }
        }
    }
}

/// One statement on the held connection. A statement PostgreSQL refused leaves the connection as good as before;
/// after any other failure it is given up, so the next write starts on a fresh one.
async fn try_write(conn: &mut HeldConnection, rows: &[DeliveryRow]) -> Result<(), sqlx::Error> {
    let result = match conn.get().await {
        Ok(held) => deliveries::record(held, rows).await,
        Err(error) => Err(error),
    };
    if matches!(result, Err(ref error) if !matches!(error, sqlx::Error::Database(_))) {
        conn.discard();
    }
    result
}

/// Writes delivery-log rows with group commit: the rows of deliveries answered at the same moment go in one
/// statement. A caller waits for its row to be written, so the log is complete when the response leaves.
#[derive(Clone)]
pub struct DeliveryRecorder {
    queue: mpsc::UnboundedSender<(DeliveryRow, oneshot::Sender<()>)>,
}

impl DeliveryRecorder {
    /// Starts the writer on `pool`; it stops when the last recorder is dropped.
    pub fn start(pool: PgPool) -> Self {
        let (queue, mut incoming) = mpsc::unbounded_channel::<(DeliveryRow, oneshot::Sender<()>)>();
        tokio::spawn(async move {
            let mut conn = HeldConnection::new(pool);
            while let Some(first) = incoming.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_ROWS {
                    match incoming.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (rows, waiting): (Vec<DeliveryRow>, Vec<oneshot::Sender<()>>) =
                    batch.into_iter().unzip();
                write(&mut conn, &rows).await;
                for done in waiting {
                    let _ = done.send(());
                }
            }
        });
        Self { queue }
    }

    /// Writes `row`. A failure to write is logged and does not change the answer: the build itself is already
    /// safe in the event store.
    pub async fn record(&self, row: DeliveryRow) {
        let (done, written) = oneshot::channel();
        if self.queue.send((row, done)).is_ok() {
            let _ = written.await;
        }
    }
}
