//! `GET /graphql/ws`: GraphQL subscriptions over WebSocket, speaking `graphql-transport-ws` (and the legacy
//! `graphql-ws` of subscriptions-transport-ws). async-graphql runs the protocol; this module authenticates,
//! enforces the connection's deadlines and closes it when its key is revoked or expires or its reader stalls.
//!
//! Close codes: 4400 a message that is not the protocol's, 4401 a subscribe before the connection was
//! acknowledged, 4403 an init refused (no valid key) or a key revoked or expired while connected, 4408 no
//! `connection_init` within the init timeout, 4429 a second `connection_init`, 3008 nothing received (not even a
//! `pong`) for two ping intervals. A socket that accepts nothing for a ping interval is dropped without a close frame.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::http::{WebSocketProtocols as Protocols, WsMessage, ALL_WEBSOCKET_PROTOCOLS};
use async_graphql::{Data, Executor};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, SinkExt, StreamExt};
use sqlx::PgPool;

use projections::api_keys;

use super::budget::ResponseBytes;
use super::{loaders, shared, Caller, LatheSchema};
use crate::auth::{authenticate_key, bearer_token, Principal};
use crate::error::ApiError;
use crate::state::AppState;
use crate::transport::ClientIp;

/// Deadlines of a connection (from `Limits`).
#[derive(Debug, Clone, Copy)]
pub struct SocketLimits {
    /// Time from the upgrade to an acknowledged `connection_init`.
    pub init_timeout: Duration,
    /// Time between the server's pings; also the longest a send may wait for the client to read.
    pub ping_interval: Duration,
}

/// Upgrades to a WebSocket. A key in the upgrade's `Authorization` header is checked before upgrading (401 if it
/// is not valid); without one, the key is read from the `connection_init` payload.
pub async fn handler(
    State(state): State<AppState>,
    State(schema): State<LatheSchema>,
    client: ClientIp,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(protocol) = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .and_then(|protocols| {
            protocols
                .split(',')
                .find_map(|protocol| protocol.trim().parse::<Protocols>().ok())
        })
    else {
        return ApiError::BadUserInput(
            "ask for the subprotocol graphql-transport-ws (or graphql-ws) in Sec-WebSocket-Protocol"
                .to_owned(),
        )
        .into_response();
    };
    let Some(permit) = state.live.connection_permit() else {
        let mut response = (
            StatusCode::SERVICE_UNAVAILABLE,
            "this server holds as many WebSocket connections as it allows; retry later",
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, axum::http::HeaderValue::from(5u32));
        return response;
    };
    let header_key = headers
        .get(header::AUTHORIZATION)
        .map(|value| value.to_str().unwrap_or_default());
    let principal = match bearer_token(header_key) {
        Ok(None) => Ok(None),
        Ok(Some(key)) => authenticate_key(&state, key).await.map(Some),
        Err(error) => Err(error),
    };
    let from_header = match principal {
        Ok(principal) => principal,
        Err(error @ ApiError::Internal(_)) => return error.into_response(),
        // Refused before upgrading, and charged to the client address as on `POST /graphql`.
        Err(refused) => {
            return match state.unauthenticated.spend(client.0).await {
                Err(limited) => limited.into_response(),
                Ok(()) => refused.into_response(),
            }
        }
    };
    let limits = SocketLimits {
        init_timeout: Duration::from_secs(state.limits.websocket_init_timeout_secs.max(1)),
        ping_interval: Duration::from_secs(state.limits.websocket_ping_interval_secs.max(1)),
    };
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(state.limits.graphql_max_body_bytes)
        // tungstenite's 128 KiB default buffers would be most of an idle connection's memory; the buffers grow
        // for a larger message and messages are flushed one at a time.
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024)
        .on_upgrade(move |socket| async move {
            Connection {
                state,
                schema,
                client,
                protocol,
                limits,
            }
            .run(socket, from_header)
            .await;
            drop(permit);
        })
}

struct Connection {
    state: AppState,
    schema: LatheSchema,
    client: ClientIp,
    protocol: Protocols,
    limits: SocketLimits,
}

/// Why async-graphql's close is replaced: an init the connection refused.
type Refusal = Arc<Mutex<Option<String>>>;

impl Connection {
    async fn run(self, socket: WebSocket, from_header: Option<Principal>) {
        let (mut sink, stream) = socket.split();
        let incoming = stream
            .take_while(|message| std::future::ready(message.is_ok()))
            .filter_map(|message| {
                std::future::ready(match message {
                    Ok(Message::Text(text)) => Some(text.as_bytes().to_vec()),
                    Ok(Message::Binary(bytes)) => Some(bytes.to_vec()),
                    _ => None,
                })
            });
        let principal: Arc<Mutex<Option<Principal>>> = Arc::default();
        let refusal: Refusal = Arc::default();
        let on_init = {
            let (state, client) = (self.state.clone(), self.client);
            let (principal, refusal) = (principal.clone(), refusal.clone());
            move |payload: serde_json::Value| -> BoxFuture<'static, async_graphql::Result<Data>> {
                Box::pin(async move {
                    let found = match from_header {
                        Some(found) => Ok(found),
                        None => init_key(&state, &payload).await,
                    };
                    match found {
                        Ok(found) => {
                            *principal.lock().expect("principal") = Some(found.clone());
                            let mut data = Data::default();
                            data.insert(Caller::Authenticated(found));
                            Ok(data)
                        }
                        Err(error) => {
                            error.log_if_internal();
                            if !matches!(error, ApiError::Internal(_)) {
                                // A wrong key spends its address's budget, as on POST /graphql.
                                let _ = state.unauthenticated.spend(client.0).await;
                            }
                            let message = error.to_string();
                            *refusal.lock().expect("refusal") = Some(message.clone());
                            Err(async_graphql::Error::new(message))
                        }
                    }
                })
            }
        };
        let executor = LiveExecutor {
            schema: self.schema.clone(),
            state: self.state.clone(),
            principal: principal.clone(),
        };
        let mut protocol_stream =
            async_graphql::http::WebSocket::new(executor, incoming, self.protocol)
                .on_connection_init(on_init);
        if self.protocol == Protocols::GraphQLWS {
            protocol_stream = protocol_stream.keepalive_timeout(self.limits.ping_interval * 2);
        }
        let mut protocol_stream = Box::pin(protocol_stream);
        let init_deadline = tokio::time::sleep(self.limits.init_timeout);
        tokio::pin!(init_deadline);
        let mut ping = tokio::time::interval(self.limits.ping_interval);
        // Ticks missed before the acknowledgement (or while a send waited) are not made up in a burst.
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        let mut keys = self.state.live.key_changes();
        let mut acknowledged = false;
        let send_timeout = self.limits.ping_interval;
        loop {
            let expires_in = principal
                .lock()
                .expect("principal")
                .as_ref()
                .and_then(|p| p.expires_at)
                .map(|at| (at - chrono::Utc::now()).to_std().unwrap_or_default());
            let outgoing = tokio::select! {
                message = protocol_stream.next() => to_send(message, &mut acknowledged, &refusal),
                () = &mut init_deadline, if !acknowledged => {
                    Outgoing::Close(4408, "Connection initialisation timeout".to_owned())
                }
                _ = ping.tick(), if acknowledged => Outgoing::Text(match self.protocol {
                    Protocols::GraphQLWS => r#"{"type":"ping"}"#.to_owned(),
                    Protocols::SubscriptionsTransportWS => r#"{"type":"ka"}"#.to_owned(),
                }),
                changed = keys.recv() => {
                    let ours = principal.lock().expect("principal").clone();
                    match (changed, ours) {
                        (Ok(id), Some(ours)) if id != ours.api_key_id => continue,
                        (Err(tokio::sync::broadcast::error::RecvError::Closed), _) | (_, None) => continue,
                        (_, Some(ours)) => match still_valid(&self.state.pool, &ours).await {
                            Some(reason) => Outgoing::Close(4403, reason),
                            None => continue,
                        },
                    }
                }
                () = sleep_or_never(expires_in) => {
                    Outgoing::Close(4403, "the API key has expired".to_owned())
                }
            };
            // Messages that are ready too go out with this one, in one write: under load a change reaches a
            // socket in bursts (one per batch of the live feed), and a write per message would cost a system call
            // each.
            let mut batch = vec![outgoing];
            while batch.len() < WRITE_BATCH && matches!(batch.last(), Some(Outgoing::Text(_))) {
                match protocol_stream.next().now_or_never() {
                    Some(message) => batch.push(to_send(message, &mut acknowledged, &refusal)),
                    None => break,
                }
            }
            let last = matches!(batch.last(), Some(Outgoing::Close(..)));
            let send = async {
                for outgoing in batch {
                    sink.feed(outgoing.into_message()).await?;
                }
                sink.flush().await
            };
            match tokio::time::timeout(send_timeout, send).await {
                Ok(Ok(())) if !last => {}
                // Closed, failed, or a client that reads nothing: the connection is dropped.
                _ => break,
            }
        }
    }
}

/// Most messages written to a socket at once.
const WRITE_BATCH: usize = 64;

enum Outgoing {
    Text(String),
    Close(u16, String),
}

impl Outgoing {
    fn into_message(self) -> Message {
        match self {
            Outgoing::Text(text) => Message::Text(text.into()),
            Outgoing::Close(code, reason) => Message::Close(Some(CloseFrame {
                code,
                reason: reason.chars().take(100).collect::<String>().into(),
            })),
        }
    }
}

/// What to send for what the protocol produced (its end is a normal close).
fn to_send(message: Option<WsMessage>, acknowledged: &mut bool, refusal: &Refusal) -> Outgoing {
    match message {
        None => Outgoing::Close(1000, "bye".to_owned()),
        Some(WsMessage::Text(text)) => {
            *acknowledged |= text == r#"{"type":"connection_ack"}"#;
            Outgoing::Text(text)
        }
        Some(WsMessage::Close(code, reason)) => {
            let (code, reason) = close_code(code, reason, refusal);
            Outgoing::Close(code, reason)
        }
    }
}

/// The protocol's own codes in place of async-graphql's generic ones.
fn close_code(code: u16, reason: String, refusal: &Refusal) -> (u16, String) {
    match code {
        1002 => match refusal.lock().expect("refusal").take() {
            Some(refused) => (4403, refused),
            None => (4400, reason),
        },
        1011 => (4401, "Unauthorized".to_owned()),
        other => (other, reason),
    }
}

async fn sleep_or_never(duration: Option<Duration>) {
    match duration {
        Some(duration) => tokio::time::sleep(duration).await,
        None => std::future::pending().await,
    }
}

/// Reads the key's row again (not through the cache: another process may have revoked it a moment ago); `Some`
/// with the reason when it may no longer be used.
async fn still_valid(pool: &PgPool, principal: &Principal) -> Option<String> {
    match api_keys::find(pool, principal.organization_id, principal.api_key_id).await {
        Ok(Some(row)) if row.revoked_at.is_some() => Some("the API key was revoked".to_owned()),
        Ok(Some(row)) if row.expires_at.is_some_and(|at| at <= chrono::Utc::now()) => {
            Some("the API key has expired".to_owned())
        }
        Ok(Some(_)) => None,
        Ok(None) => Some("the API key no longer exists".to_owned()),
        Err(error) => {
            // Unsure: keep the connection; the next change of the key checks again.
            tracing::warn!(error = %error, "a live connection could not check its key");
            None
        }
    }
}

/// The key of a `connection_init` payload: `{"authorization": "Bearer pt_live_…"}` (also `Authorization`).
async fn init_key(state: &AppState, payload: &serde_json::Value) -> Result<Principal, ApiError> {
    let value = payload
        .get("authorization")
        .or_else(|| payload.get("Authorization"))
        .and_then(serde_json::Value::as_str);
    match bearer_token(value)? {
        Some(key) => authenticate_key(state, key).await,
        None => Err(ApiError::Unauthenticated(
            "send an API key in the upgrade's Authorization header or as \
             {\"authorization\": \"Bearer <key>\"} in the connection_init payload"
                .to_owned(),
        )),
    }
}

/// The schema with what every operation of a connection needs: the key's rate limit spent once per operation (as
/// one request on `POST /graphql`), fresh loaders and the answer's byte budget per operation (per message of a
/// subscription), and errors coded as on `POST /graphql`.
#[derive(Clone)]
struct LiveExecutor {
    schema: LatheSchema,
    state: AppState,
    principal: Arc<Mutex<Option<Principal>>>,
}

impl LiveExecutor {
    /// Spends one request of the connection's key; the refusal as an answer.
    async fn charge(&self) -> Result<(), async_graphql::Response> {
        let Some(principal) = self.principal.lock().expect("principal").clone() else {
            // No key yet: every resolver refuses on its own.
            return Ok(());
        };
        let bucket = crate::rate_limit::Bucket::ApiKey(principal.api_key_id);
        crate::rate_limit::spend_and_note(
            &self.state,
            bucket,
            principal.rate_limit_per_minute,
            Some(principal.api_key_id),
        )
        .await
        .map(drop)
        .map_err(refused_response)
    }

    fn request(
        &self,
        request: async_graphql::Request,
    ) -> (async_graphql::Request, Arc<ResponseBytes>) {
        let bytes = Arc::new(ResponseBytes::new(
            self.state.limits.graphql_max_response_bytes,
        ));
        let request = request
            .data(loaders::for_request(self.state.pool.clone()))
            .data(bytes.clone());
        (request, bytes)
    }
}

/// The response in place of one that grew over the byte budget, coded.
fn finish(mut response: async_graphql::Response, bytes: &ResponseBytes) -> async_graphql::Response {
    if bytes.exceeded() {
        response = async_graphql::Response::from_errors(vec![async_graphql::ServerError::new(
            bytes.message(),
            None,
        )]);
    }
    bytes.reset();
    super::code_errors(&mut response);
    response
}

impl Executor for LiveExecutor {
    async fn execute(&self, request: async_graphql::Request) -> async_graphql::Response {
        if let Err(refused) = self.charge().await {
            return refused;
        }
        let (request, bytes) = self.request(request);
        let response = self.schema.execute(request).await;
        finish(response, &bytes)
    }

    fn execute_stream(
        &self,
        request: async_graphql::Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, async_graphql::Response> {
        let this = self.clone();
        futures::stream::once(async move {
            if let Err(refused) = this.charge().await {
                return futures::stream::iter([refused]).boxed();
            }
            // Subscriptions are shared by identical operations of one key; queries and mutations sent over the
            // socket, and what does not parse, run on their own.
            let operation = this
                .principal
                .lock()
                .expect("principal")
                .as_ref()
                .filter(|_| is_subscription(&request))
                .map(|principal| shared::Operation {
                    api_key_id: principal.api_key_id,
                    query: request.query.clone(),
                    operation_name: request.operation_name.clone(),
                    variables: serde_json::to_string(&request.variables).unwrap_or_default(),
                });
            let start = {
                let this = this.clone();
                move || {
                    let (request, bytes) = this.request(request);
                    this.schema
                        .execute_stream_with_session_data(request, session_data.unwrap_or_default())
                        .map(move |response| finish(response, &bytes))
                        .boxed()
                }
            };
            let Some(operation) = operation else {
                return start();
            };
            let ticket = match this.state.live.reserve(operation.api_key_id) {
                Ok(ticket) => ticket,
                Err(refused) => return futures::stream::iter([refused_response(refused)]).boxed(),
            };
            this.state.shared_streams.subscribe(
                operation,
                ticket,
                this.state.live.buffer(),
                start,
                missed_response,
            )
        })
        .flatten()
        .boxed()
    }
}

/// Whether the request's operation is a subscription.
fn is_subscription(request: &async_graphql::Request) -> bool {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return false;
    };
    let operation = match (&document.operations, request.operation_name.as_deref()) {
        (DocumentOperations::Single(operation), _) => Some(operation),
        (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name),
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            operations.values().next()
        }
        (DocumentOperations::Multiple(_), None) => None,
    };
    operation.is_some_and(|operation| operation.node.ty == OperationType::Subscription)
}

/// An answer refusing the operation, coded as on `POST /graphql`.
fn refused_response(error: ApiError) -> async_graphql::Response {
    let error = async_graphql::Error::new_with_source(error)
        .into_server_error(async_graphql::Pos::default());
    let mut response = async_graphql::Response::from_errors(vec![error]);
    super::code_errors(&mut response);
    response
}

/// The answer telling a subscriber that read too slowly how many answers it missed.
fn missed_response(count: u64) -> async_graphql::Response {
    let error =
        super::subscription::missed(Some(count)).into_server_error(async_graphql::Pos::default());
    let mut response = async_graphql::Response::from_errors(vec![error]);
    super::code_errors(&mut response);
    response
}
