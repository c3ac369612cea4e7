//! The one error type of the API, mapped once to HTTP statuses and to GraphQL `extensions.code`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use domain::api_key::ApiKeyError;
use domain::build_queue::BuildQueueError;
use domain::organization::OrganizationError;
use domain::project::ProjectError;
use domain::release::ReleaseError;
use projections::CommandError;

/// Everything a request can fail with. Messages are for the caller; internal causes are only logged.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 / `BAD_USER_INPUT`: the request is malformed or breaks a validation rule.
    #[error("{0}")]
    BadUserInput(String),
    /// 422 / `BAD_USER_INPUT`: a well-formed body with fields that are missing or wrong, each named.
    #[error("{} invalid field(s): {}", .0.len(), .0.iter().map(|f| format!("{}: {}", f.field, f.message)).take(5).collect::<Vec<_>>().join("; "))]
    InvalidFields(Vec<FieldError>),
    /// 413: the body is larger than the endpoint accepts.
    #[error("the body is larger than the {limit_bytes} bytes this endpoint accepts")]
    PayloadTooLarge { limit_bytes: usize },
    /// 401 / `UNAUTHENTICATED`: no credentials, or credentials that are wrong, revoked or expired.
    #[error("{0}")]
    Unauthenticated(String),
    /// 403 / `FORBIDDEN`: authenticated, but the key lacks the scope.
    #[error("{0}")]
    Forbidden(String),
    /// 404 / `NOT_FOUND`: nothing with that id in the caller's organization.
    #[error("{0}")]
    NotFound(String),
    /// 409 / `CONFLICT`: the state changed (another request won, or the entity is past this step).
    #[error("{0}")]
    Conflict(String),
    /// 429 / `RATE_LIMITED`.
    #[error("rate limit of {} requests per minute exceeded; retry in {retry_after_secs} s", info.limit)]
    RateLimited {
        retry_after_secs: u64,
        info: crate::rate_limit::RateInfo,
    },
    /// 429 / `RATE_LIMITED`: the caller holds as many of something (open subscriptions) as it may.
    #[error("{0}")]
    TooMany(String),
    /// 500 / `INTERNAL`: logged with its cause where it is turned into a response; the caller sees a generic text.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// The GraphQL `extensions.code` of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadUserInput(_) | Self::InvalidFields(_) => "BAD_USER_INPUT",
            Self::PayloadTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::NotFound(_) => "NOT_FOUND",
            Self::Conflict(_) => "CONFLICT",
            Self::RateLimited { .. } | Self::TooMany(_) => "RATE_LIMITED",
            Self::Internal(_) => "INTERNAL",
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadUserInput(_) => StatusCode::BAD_REQUEST,
            Self::InvalidFields(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::RateLimited { .. } | Self::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Shorthand for an internal error from any cause.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self::Internal(cause.into())
    }

    /// Logs the cause of an internal error; every other error is the caller's and is not logged.
    pub fn log_if_internal(&self) {
        if let Self::Internal(cause) = self {
            tracing::error!(error = format!("{cause:#}"), "request failed");
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        Self::internal(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log_if_internal();
        let mut error = json!({ "code": self.code(), "message": self.to_string() });
        if let Self::InvalidFields(fields) = &self {
            error["fields"] = json!(fields);
        }
        let body = Json(json!({ "error": error }));
        let mut response = (self.status(), body).into_response();
        if let Self::RateLimited {
            retry_after_secs,
            info,
        } = self
        {
            let headers = response.headers_mut();
            headers.insert("retry-after", retry_after_secs.into());
            info.write_headers(headers);
        }
        response
    }
}

/// One wrong field of a request body, named by its JSON path (e.g. `test_results[3].status`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    /// A field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// How a domain rule violation reads to a caller.
pub trait DomainRejection: std::error::Error {
    /// The API error for this rejection.
    fn to_api_error(&self) -> ApiError;
}

impl<E: DomainRejection> From<CommandError<E>> for ApiError {
    fn from(error: CommandError<E>) -> Self {
        match error {
            CommandError::Domain(rejection) => rejection.to_api_error(),
            CommandError::Conflict => Self::Conflict(
                "another request changed this entity at the same time; reload and try again"
                    .to_owned(),
            ),
            CommandError::Store(cause) => Self::internal(anyhow::anyhow!(cause)),
        }
    }
}

impl DomainRejection for OrganizationError {
    fn to_api_error(&self) -> ApiError {
        match self {
            Self::AlreadyExists => ApiError::Conflict(self.to_string()),
            Self::NotFound => ApiError::NotFound(self.to_string()),
            Self::InvalidName(_) => ApiError::BadUserInput(self.to_string()),
        }
    }
}

impl DomainRejection for ProjectError {
    fn to_api_error(&self) -> ApiError {
        match self {
            Self::AlreadyExists
            | Self::NotConnected
            | Self::AlreadyArchived
            | Self::NotArchived
            | Self::RetentionSyncOff => ApiError::Conflict(self.to_string()),
            Self::NotFound => ApiError::NotFound(self.to_string()),
            Self::InvalidArchiveReason(_)
            | Self::InvalidName(_)
            | Self::InvalidUrl { .. }
            | Self::BlankEntry { .. }
            | Self::InvalidBranchFilter(_)
            | Self::InvalidRetention(_)
            | Self::InvalidAzureDevOps(_) => ApiError::BadUserInput(self.to_string()),
        }
    }
}

impl DomainRejection for ReleaseError {
    fn to_api_error(&self) -> ApiError {
        match self {
            Self::NotFound => ApiError::NotFound(self.to_string()),
            Self::InvalidName(_) => ApiError::BadUserInput(self.to_string()),
            Self::AlreadyExists
            | Self::NotActive(_)
            | Self::NotCompleted(_)
            | Self::NotReopenable(_)
            | Self::ArchivedIsReadOnly => ApiError::Conflict(self.to_string()),
        }
    }
}

impl DomainRejection for BuildQueueError {
    fn to_api_error(&self) -> ApiError {
        match self {
            Self::NotFound | Self::NotQueued | Self::Expired => {
                ApiError::NotFound(self.to_string())
            }
            Self::InvalidName(_)
            | Self::InvalidReason(_)
            | Self::InvalidCorrectionReason(_)
            | Self::InvalidTestTitle { .. }
            | Self::ReleaseInAnotherProject => ApiError::BadUserInput(self.to_string()),
            Self::AlreadyReceived
            | Self::UploadAlreadyRecorded
            | Self::AlreadyAssigned(_)
            | Self::AlreadyRejected
            | Self::ReleaseNotActive(_)
            | Self::NotInRelease
            | Self::AlreadyInRelease(_)
            | Self::ProjectArchived
            | Self::NotRejected => ApiError::Conflict(self.to_string()),
        }
    }
}

impl DomainRejection for ApiKeyError {
    fn to_api_error(&self) -> ApiError {
        match self {
            Self::NotFound => ApiError::NotFound(self.to_string()),
            Self::AlreadyExists | Self::AlreadyRevoked => ApiError::Conflict(self.to_string()),
            Self::InvalidName(_)
            | Self::NoScopes
            | Self::ExpiryInThePast
            | Self::MalformedSecret
            | Self::InvalidRateLimit => ApiError::BadUserInput(self.to_string()),
        }
    }
}
