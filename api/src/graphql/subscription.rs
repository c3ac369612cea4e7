//! Subscriptions: the organization's committed changes as they happen (served over WebSocket, see
//! [`crate::live::socket`]). Each message carries the changed object as the queries return it.

use async_graphql::{Context, ErrorExtensions, Subscription, ID};
use futures::{Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;

use domain::api_key::Scope;

use super::types::{Delivery, QueueStatus, QueuedBuild, Release};
use super::{parse_id, Resolver};
use crate::live::Change;

/// The live changes of the caller's organization.
#[derive(Default)]
pub struct Subscription;

#[Subscription]
impl Subscription {
    /// A build of the queue changed: it arrived, got a project, was assigned or rejected (or any later change).
    /// With `status`, only entries that had or now have that status; the message carries the entry's status now,
    /// so an entry that left the status can be removed from a list of it.
    async fn build_queue_changed(
        &self,
        ctx: &Context<'_>,
        status: Option<QueueStatus>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<QueuedBuild>>> {
        let wanted = status.map(QueueStatus::as_str);
        changes(ctx, move |change| match change {
            Change::Queue {
                build,
                previous_status,
            } if build.queue_status.is_some() => {
                let matches = match wanted {
                    None => true,
                    Some(wanted) => {
                        build.queue_status.as_deref() == Some(wanted)
                            || previous_status
                                .as_ref()
                                .is_none_or(|before| before.as_deref() == Some(wanted))
                    }
                };
                matches.then(|| QueuedBuild(build.clone()))
            }
            _ => None,
        })
    }

    /// A release changed: a build joined it, it was completed or archived (or any later change). With
    /// `projectId`, only that project's releases.
    async fn release_changed(
        &self,
        ctx: &Context<'_>,
        project_id: Option<ID>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Release>>> {
        let project_id = project_id
            .as_ref()
            .map(|id| parse_id(id, "projectId"))
            .transpose()?;
        changes(ctx, move |change| match change {
            Change::Release(row) if project_id.is_none_or(|id| id == row.project_id) => {
                Some(Release::from(row.clone()))
            }
            _ => None,
        })
    }

    /// The delivery log as a live tail: every call to the webhook and ingest endpoints that could be attributed
    /// to the organization, as `webhookDeliveries` lists it.
    async fn delivery_recorded(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Delivery>>> {
        changes(ctx, |change| match change {
            Change::Delivery(row) => Some(Delivery(row.clone())),
            _ => None,
        })
    }
}

/// The organization's changes that `select` turns into messages. A subscriber that fell more than the buffer
/// behind gets an error `MISSED_CHANGES` (with `missed`, how many) in place of what it missed, and the stream goes
/// on: it should refetch what it shows.
fn changes<T, F>(
    ctx: &Context<'_>,
    select: F,
) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<T>>>
where
    T: Send + 'static,
    F: Fn(&Change) -> Option<T> + Send + 'static,
{
    let r = Resolver::new(ctx, Scope::BuildsRead)?;
    let live = &ctx.data_unchecked::<crate::state::AppState>().live;
    // The subscription's place under the caps is held by its subscribers (`graphql::shared`).
    let receiver = live.subscribe(r.organization_id());
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        let item = receiver.recv().await;
        Some((item, receiver))
    })
    .take_while(|item| std::future::ready(!matches!(item, Err(RecvError::Closed))))
    .filter_map(move |item| {
        let message = match item {
            Ok(change) => match change.as_ref() {
                Change::Missed => Some(Err(missed(None))),
                change => select(change).map(Ok),
            },
            Err(RecvError::Lagged(count)) => Some(Err(missed(Some(count)))),
            Err(RecvError::Closed) => None,
        };
        std::future::ready(message)
    });
    Ok(stream)
}

pub(super) fn missed(count: Option<u64>) -> async_graphql::Error {
    let message = match count {
        Some(count) => format!(
            "{count} changes were missed (this subscriber read too slowly); refetch what you show"
        ),
        None => "changes may have been missed (the server lost its database connection); refetch what you show"
            .to_owned(),
    };
    async_graphql::Error::new(message).extend_with(|_, extensions| {
        extensions.set("code", "MISSED_CHANGES");
        if let Some(count) = count {
            extensions.set("missed", count);
        }
    })
}
