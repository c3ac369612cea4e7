//! The GraphQL API: schema, the HTTP handler, and what resolvers share.

mod audit;
mod azure;
mod cursor;
mod mutation;
mod query;
mod types;

use async_graphql::http::GraphiQLSource;
use async_graphql::{Context, EmptySubscription, Schema};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse};
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
pub struct Query(QueryRoot, audit::AuditQuery, azure::AzureQuery);

/// Every mutation.
#[derive(async_graphql::MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct Mutation(
    mutation::ProjectMutation,
    mutation::ReleaseMutation,
    mutation::QueueMutation,
    mutation::ApiKeyMutation,
    azure::AzureMutation,
);

/// The schema served at `/graphql`.
pub type LatheSchema = Schema<Query, Mutation, EmptySubscription>;

/// Builds the schema; `state` is available to every resolver.
pub fn build_schema(state: AppState) -> LatheSchema {
    Schema::build(Query::default(), Mutation::default(), EmptySubscription)
        .data(state)
        .limit_depth(12)
        .limit_complexity(5_000)
        .finish()
}

/// The SDL the server serves; `schema.graphql` at the repository root must equal it.
pub fn sdl() -> String {
    Schema::build(Query::default(), Mutation::default(), EmptySubscription)
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

/// `POST /graphql`.
pub async fn graphql_handler(
    State(state): State<AppState>,
    State(schema): State<LatheSchema>,
    client: ClientIp,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> GraphQLResponse {
    let mut rate = None;
    let caller = match authenticate(&state, &headers).await {
        Ok(principal) => {
            let bucket = crate::rate_limit::Bucket::ApiKey(principal.api_key_id);
            let limit = principal.rate_limit_per_minute;
            match crate::rate_limit::spend_and_note(
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
            }
        }
        Err(ApiError::Internal(cause)) => {
            tracing::error!(error = format!("{cause:#}"), "authentication failed");
            Caller::Refused("authentication is unavailable; try again".to_owned())
        }
        Err(refused) => refused_caller(&state, client, refused, &mut rate).await,
    };
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
    let request = request
        .into_inner()
        .data(caller)
        .data(RequestId(request_id));
    let mut response = schema.execute(request).await;
    // Resolver errors are `ApiError`s, kept as the source of the GraphQL error. Errors without a source come from
    // async-graphql itself (parse, validation, input coercion): they are all the caller's to fix. Anything else
    // is unexpected, so its text is not sent.
    for error in &mut response.errors {
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
    if let Some(info) = rate {
        info.write_headers(&mut response.http_headers);
    }
    if let Some(seconds) = retry_after {
        response
            .http_headers
            .insert("retry-after", axum::http::HeaderValue::from(seconds));
    }
    response.into()
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
