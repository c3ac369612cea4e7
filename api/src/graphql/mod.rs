//! The GraphQL API: schema, the HTTP handler, and what resolvers share.

mod audit;
mod azure;
mod budget;
mod cursor;
pub(crate) mod loaders;
mod mutation;
mod node;
mod paging;
mod query;
pub(crate) mod shared;
mod subscription;
mod text_guard;
mod types;
pub mod ws;

use async_graphql::http::GraphiQLSource;
use async_graphql::{Context, Schema};
use async_graphql_axum::GraphQLResponse;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use uuid::Uuid;

use projections::CommandContext;

use crate::auth::{authenticate_key, bearer_token, Principal};
use crate::error::ApiError;
use crate::state::AppState;
use crate::transport::ClientIp;

pub use query::QueryRoot;

/// Every query: the dashboards' and the auditors'.
#[derive(async_graphql::MergedObject, Default)]
#[graphql(name = "Query")]
pub struct Query(
    QueryRoot,
    audit::AuditQuery,
    azure::AzureQuery,
    node::NodeQuery,
);

/// Every mutation.
#[derive(async_graphql::MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct Mutation(
    mutation::ProjectMutation,
    mutation::ReleaseMutation,
    mutation::QueueMutation,
    mutation::ApiKeyMutation,
    azure::AzureMutation,
    mutation::CorrectionMutation,
    mutation::HousekeepingMutation,
);

/// The schema served at `/graphql`.
pub type LatheSchema = Schema<Query, Mutation, subscription::Subscription>;

/// Builds the schema; `state` is available to every resolver. A request's cost is checked by [`budget::Budget`]
/// (with a message naming the budget, instead of async-graphql's own "Query is too complex").
pub fn build_schema(state: AppState) -> LatheSchema {
    let budget = budget::Budget {
        max_fields: state.limits.graphql_max_fields,
        max_cost: state.limits.graphql_max_cost,
    };
    Schema::build(
        Query::default(),
        Mutation::default(),
        subscription::Subscription,
    )
    .data(state)
    .extension(text_guard::TextGuard)
    .extension(budget)
    // Deep enough for the introspection query of GraphiQL and code generators (13 levels); what a request
    // reads is bounded by the budget, not by its depth.
    .limit_depth(16)
    .finish()
}

/// The SDL the server serves; `schema.graphql` at the repository root must equal it.
pub fn sdl() -> String {
    Schema::build(
        Query::default(),
        Mutation::default(),
        subscription::Subscription,
    )
    .finish()
    .sdl()
}

/// The outcome of reading the caller's credentials, kept for resolvers: a query with no key can still be
/// introspected, and every resolver that needs a key reports why there is none.
enum Caller {
    Authenticated(Principal),
    Refused(String),
    Limited {
        retry_after_secs: u64,
        info: crate::rate_limit::RateInfo,
    },
}

/// The request id, for the events a request causes.
struct RequestId(Option<String>);

/// `POST /graphql`. The caller is authenticated from the headers before the body is read: a wrong, revoked or
/// expired key is answered 401 without reading it, a caller without a key (who may only introspect) may send a
/// smaller body than one with a key, and no body is read past its limit (413).
pub async fn graphql_handler(
    State(state): State<AppState>,
    State(schema): State<LatheSchema>,
    client: ClientIp,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut rate = None;
    let with_key = state.limits.graphql_max_body_bytes;
    let (caller, body_limit) = match authenticate(&state, &headers).await {
        Ok(principal) => {
            let bucket = crate::rate_limit::Bucket::ApiKey(principal.api_key_id);
            let limit = principal.rate_limit_per_minute;
            let caller = match crate::rate_limit::spend_and_note(
                &state,
                bucket,
                limit,
                Some(principal.api_key_id),
            )
            .await
            {
                Ok(info) => {
                    rate = Some(info);
                    Caller::Authenticated(principal)
                }
                Err(ApiError::RateLimited {
                    retry_after_secs,
                    info,
                }) => {
                    rate = Some(info);
                    Caller::Limited {
                        retry_after_secs,
                        info,
                    }
                }
                Err(error) => {
                    error.log_if_internal();
                    Caller::Refused("authentication is unavailable; try again".to_owned())
                }
            };
            (caller, with_key)
        }
        Err(ApiError::Internal(cause)) => {
            tracing::error!(error = format!("{cause:#}"), "authentication failed");
            let refused = Caller::Refused("authentication is unavailable; try again".to_owned());
            (refused, with_key)
        }
        // A key that is not valid: answered from the headers, without reading the body, and charged to the
        // client address's budget for refused credentials (past it, 429).
        Err(refused) if headers.contains_key(header::AUTHORIZATION) => {
            return match state.unauthenticated.spend(client.0).await {
                Err(limited @ ApiError::RateLimited { .. }) => request_error(limited),
                _ => request_error(refused),
            };
        }
        Err(refused) => (
            refused_caller(&state, client, refused, &mut rate).await,
            state.limits.graphql_anonymous_max_body_bytes,
        ),
    };
    let bytes = match read_body(&headers, body, body_limit).await {
        Ok(bytes) => bytes,
        Err(error) => return request_error(error),
    };
    let request: async_graphql::Request = match serde_json::from_slice(&bytes) {
        Ok(request) => request,
        Err(error) => {
            return request_error(ApiError::BadUserInput(format!(
                "the body is not a GraphQL request (JSON with `query`, optional `variables` and \
                 `operationName`): {error}"
            )))
        }
    };
    drop(bytes);
    let request_id = headers
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let retry_after = match &caller {
        Caller::Limited {
            retry_after_secs, ..
        } => Some(*retry_after_secs),
        _ => None,
    };
    let response_bytes = std::sync::Arc::new(budget::ResponseBytes::new(
        state.limits.graphql_max_response_bytes,
    ));
    let request = request
        .data(caller)
        .data(RequestId(request_id))
        .data(loaders::for_request(state.pool.clone()))
        .data(response_bytes.clone());
    let mut response = schema.execute(request).await;
    if response_bytes.exceeded() {
        // The partial answer is dropped: one clear error instead of data cut at an arbitrary field.
        let headers = std::mem::take(&mut response.http_headers);
        response = async_graphql::Response::from_errors(vec![async_graphql::ServerError::new(
            response_bytes.message(),
            None,
        )]);
        response.http_headers = headers;
    }
    code_errors(&mut response);
    if let Some(info) = rate {
        info.write_headers(&mut response.http_headers);
    }
    if let Some(seconds) = retry_after {
        response
            .http_headers
            .insert("retry-after", axum::http::HeaderValue::from(seconds));
    }
    GraphQLResponse::from(response).into_response()
}

/// Gives every error of a response its `extensions.code`. Resolver errors are `ApiError`s, kept as the source of the
/// GraphQL error. Errors without a source come from async-graphql itself (parse, validation, input coercion) or
/// from the request budget: they are all the caller's to fix. An error that already has a code (a subscription's
/// `MISSED_CHANGES`) keeps it. Anything else is unexpected, so its text is not sent.
fn code_errors(response: &mut async_graphql::Response) {
    for error in &mut response.errors {
        if error
            .extensions
            .as_ref()
            .is_some_and(|extensions| extensions.get("code").is_some())
        {
            continue;
        }
        let code = match error.source::<ApiError>() {
            Some(api_error) => {
                api_error.log_if_internal();
                api_error.code()
            }
            None if error.source.is_none() => "BAD_USER_INPUT",
            None => {
                tracing::error!(error = %error.message, "resolver failed");
                error.message = "internal error".to_owned();
                "INTERNAL"
            }
        };
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", code);
    }
}

/// Reads the body up to `limit` bytes: a larger `Content-Length` is refused before reading anything, and a body
/// without one is refused as soon as it grows past the limit.
async fn read_body(headers: &HeaderMap, mut body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = ApiError::PayloadTooLarge { limit_bytes: limit };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large);
    }
    let mut bytes = Vec::with_capacity(declared.map_or(0, |length| length as usize));
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let frame = frame.map_err(|error| {
            ApiError::BadUserInput(format!("the body could not be read: {error}"))
        })?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > limit {
                return Err(too_large);
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(bytes))
}

/// A request refused before it runs, as a GraphQL error with the error's HTTP status.
fn request_error(error: ApiError) -> Response {
    error.log_if_internal();
    let mut status = error.status();
    if status == StatusCode::UNPROCESSABLE_ENTITY {
        status = StatusCode::BAD_REQUEST;
    }
    let body = serde_json::json!({
        "data": null,
        "errors": [{ "message": error.to_string(), "extensions": { "code": error.code() } }],
    });
    let mut response = (status, axum::Json(body)).into_response();
    if let ApiError::RateLimited {
        retry_after_secs,
        info,
    } = &error
    {
        let headers = response.headers_mut();
        headers.insert("retry-after", (*retry_after_secs).into());
        info.write_headers(headers);
    }
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

/// A caller refused for its credentials: the refusal spends its client address's budget, and past it the request
/// is rate limited instead (see [`crate::address_limit`]).
async fn refused_caller(
    state: &AppState,
    client: ClientIp,
    refused: ApiError,
    rate: &mut Option<crate::rate_limit::RateInfo>,
) -> Caller {
    match state.unauthenticated.spend(client.0).await {
        Err(ApiError::RateLimited {
            retry_after_secs,
            info,
        }) => {
            *rate = Some(info);
            Caller::Limited {
                retry_after_secs,
                info,
            }
        }
        _ => Caller::Refused(refused.to_string()),
    }
}

async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .map(|value| value.to_str().unwrap_or_default());
    match bearer_token(header)? {
        Some(key) => authenticate_key(state, key).await,
        None => Err(ApiError::Unauthenticated(
            "send an API key as `Authorization: Bearer <key>`".to_owned(),
        )),
    }
}

/// `GET /graphql/schema.graphql`: the schema as SDL, for code generators.
pub async fn schema_sdl(State(schema): State<LatheSchema>) -> String {
    schema.sdl()
}

/// `GET /graphql`: the GraphiQL explorer.
pub async fn graphiql() -> impl IntoResponse {
    Html(GraphiQLSource::build().endpoint("/graphql").finish())
}

/// What a resolver needs: shared state, and the caller once it has shown the required scope.
pub(crate) struct Resolver<'a> {
    pub state: &'a AppState,
    pub principal: &'a Principal,
    request_id: Option<String>,
}

impl<'a> Resolver<'a> {
    /// Authenticates the caller and checks it holds `scope`.
    pub fn new(ctx: &'a Context<'_>, scope: domain::api_key::Scope) -> Result<Self, ApiError> {
        let state = ctx.data_unchecked::<AppState>();
        let principal = match ctx.data_opt::<Caller>() {
            Some(Caller::Authenticated(principal)) => principal,
            Some(Caller::Refused(reason)) => return Err(ApiError::Unauthenticated(reason.clone())),
            Some(Caller::Limited {
                retry_after_secs,
                info,
            }) => {
                return Err(ApiError::RateLimited {
                    retry_after_secs: *retry_after_secs,
                    info: *info,
                })
            }
            None => return Err(ApiError::Unauthenticated("no credentials".to_owned())),
        };
        principal.require(scope)?;
        let request_id = ctx.data_opt::<RequestId>().and_then(|id| id.0.clone());
        Ok(Self {
            state,
            principal,
            request_id,
        })
    }

    /// The caller's organization: every read and write is confined to it.
    pub fn organization_id(&self) -> Uuid {
        self.principal.organization_id
    }

    /// The context recorded with the events of a command this request issues.
    pub fn command_context(&self) -> CommandContext {
        CommandContext {
            actor: self.principal.actor(),
            organization_id: Some(self.principal.organization_id),
            request_id: self.request_id.clone(),
            at: chrono::Utc::now(),
            extra: Vec::new(),
        }
    }
}

/// Parses a GraphQL `ID` that must be a UUID.
pub(crate) fn parse_id(id: &async_graphql::ID, what: &str) -> Result<Uuid, ApiError> {
    id.parse()
        .map_err(|_| ApiError::BadUserInput(format!("{what} is not a valid id: {}", id.as_str())))
}
