//! The process's listener: turns PostgreSQL notifications of committed transactions into [`Change`]s.
//!
//! LISTEN/NOTIFY rather than polling the event store's global order: a notification is sent only when its
//! transaction commits and notifications arrive in commit order in every session, which is the promise the
//! subscriptions make, at the latency of one round trip. Polling the global order would wait for every older
//! transaction to end (`pg_snapshot_xmin`), so one long transaction anywhere would hold every subscriber back, and
//! would cost a query per interval per process when nothing happens. The events themselves are still read from
//! the event store (by the notified transaction id), so a payload never has to carry them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgNotification};
use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;

use domain::api_key::ApiKey;
use domain::build_queue::BuildQueue;
use domain::release::Release;
use projections::live;

use super::{Change, Live};
use cqrs_es::Aggregate;

/// Most notifications handled as one batch (one query for their events, one for each kind of row).
const BATCH: usize = 256;
/// How long a batch waits for more notifications after its first: under load, one read of the event store per
/// interval instead of one per commit (the reads competed with the intake for the database: a third of the
/// webhook's throughput with ten dashboards open), for at most this much more latency.
const GATHER: Duration = Duration::from_millis(10);
/// Notifications waiting for the handler at most; past it they are dropped and subscribers told they missed
/// changes. The listener itself never stops reading: PostgreSQL keeps unread notifications in a queue shared by
/// every session, and a full queue would fail every notifying commit.
const WAITING: usize = 65_536;
/// The queue statuses this process remembers, to tell a subscriber what a build left.
const REMEMBERED_STATUSES: u64 = 100_000;

/// Starts the listener; it runs as long as the process, reconnecting after a lost connection (and telling every
/// subscriber it may have missed changes).
pub fn spawn(live: Arc<Live>, pool: PgPool) {
    let (sender, receiver) = mpsc::channel(WAITING);
    tokio::spawn(handle(live.clone(), pool.clone(), receiver));
    tokio::spawn(async move {
        let mut first = true;
        loop {
            match listen(&live, &pool, &sender, &mut first).await {
                Ok(()) => tracing::warn!("the live listener lost its connection; reconnecting"),
                Err(error) => {
                    tracing::warn!(error = %error, "the live listener failed; reconnecting")
                }
            }
            live.publish_missed();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}

type Statuses = moka::future::Cache<Uuid, Option<String>>;

/// Reads notifications as fast as they come and hands them on.
async fn listen(
    live: &Live,
    pool: &PgPool,
    sender: &mpsc::Sender<PgNotification>,
    first: &mut bool,
) -> Result<(), sqlx::Error> {
    // A connection of its own, not one of the pool's: it is held for as long as the process runs.
    let own = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with((*pool.connect_options()).clone());
    let mut listener = PgListener::connect_with(&own).await?;
    listener.eager_reconnect(false);
    listener
        .listen_all([live::EVENTS_CHANNEL, live::DELIVERIES_CHANNEL])
        .await?;
    if !std::mem::take(first) {
        // Changes committed while no connection listened were not heard.
        live.publish_missed();
    }
    while let Some(notification) = listener.try_recv().await? {
        if sender.try_send(notification).is_err() {
            tracing::warn!(
                "live changes arrive faster than they can be read; subscribers are told to refetch"
            );
            live.publish_missed();
        }
    }
    Ok(())
}

/// Handles what the listener received, every waiting notification at once, and what else arrives within
/// [`GATHER`] of the first.
async fn handle(live: Arc<Live>, pool: PgPool, mut receiver: mpsc::Receiver<PgNotification>) {
    let statuses = moka::future::Cache::new(REMEMBERED_STATUSES);
    let mut batch = Vec::with_capacity(BATCH);
    while receiver.recv_many(&mut batch, BATCH).await > 0 {
        // Nobody connected: nothing to read (the common case on a process that serves only the intake).
        if !live.is_idle() {
            let until = tokio::time::Instant::now() + GATHER;
            while batch.len() < BATCH {
                let room = BATCH - batch.len();
                match tokio::time::timeout_at(until, receiver.recv_many(&mut batch, room)).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            if let Err(error) = publish_batch(&live, &pool, &statuses, &batch).await {
                // The changes of this batch cannot be read: subscribers are told to refetch rather than left stale.
                tracing::error!(error = %error, "live changes could not be read");
                live.publish_missed();
            }
        }
        batch.clear();
    }
}

async fn publish_batch(
    live: &Live,
    pool: &PgPool,
    statuses: &Statuses,
    batch: &[PgNotification],
) -> Result<(), sqlx::Error> {
    let organizations = live.organizations();
    let mut transactions = Vec::new();
    let mut delivery_ids = Vec::new();
    for notification in batch {
        if notification.channel() == live::EVENTS_CHANNEL {
            transactions.push(notification.payload().to_owned());
        } else {
            delivery_ids.extend(notification.payload().split(',').filter_map(|pair| {
                let (organization, delivery) = pair.split_once(':')?;
                let organization = organization.parse::<Uuid>().ok()?;
                organizations
                    .contains(&organization)
                    .then(|| delivery.parse::<Uuid>().ok())
                    .flatten()
            }));
        }
    }
    if !transactions.is_empty() {
        publish_events(live, pool, statuses, &transactions, &organizations).await?;
    }
    if !delivery_ids.is_empty() {
        for row in live::deliveries(pool, &delivery_ids).await? {
            if let Some(organization_id) = row.organization_id {
                live.publish(organization_id, Arc::new(Change::Delivery(row)));
            }
        }
    }
    Ok(())
}

/// What a batch of events changed, in the order of each object's first event.
enum Changed {
    Build(Uuid),
    Release(Uuid),
}

async fn publish_events(
    live: &Live,
    pool: &PgPool,
    statuses: &Statuses,
    transactions: &[String],
    organizations: &[Uuid],
) -> Result<(), sqlx::Error> {
    let events = live::events_of(pool, transactions, organizations).await?;
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    let mut received = HashSet::new();
    for event in &events {
        let Ok(id) = event.aggregate_id.parse::<Uuid>() else {
            continue;
        };
        match event.aggregate_type.as_str() {
            BuildQueue::TYPE => {
                // The first event of a build's stream: it was in no queue before.
                if event.event_type == "BuildReceived" {
                    received.insert(id);
                }
                if seen.insert(id) {
                    order.push(Changed::Build(id));
                }
                if let Some(left) = event.left_release_id {
                    if seen.insert(left) {
                        order.push(Changed::Release(left));
                    }
                }
            }
            Release::TYPE if seen.insert(id) => order.push(Changed::Release(id)),
            ApiKey::TYPE => live.key_changed(id),
            _ => {}
        }
    }
    if order.is_empty() {
        return Ok(());
    }
    let build_ids: Vec<Uuid> = order
        .iter()
        .filter_map(|changed| match changed {
            Changed::Build(id) => Some(*id),
            Changed::Release(_) => None,
        })
        .collect();
    let builds: HashMap<Uuid, _> = if build_ids.is_empty() {
        HashMap::new()
    } else {
        live::builds(pool, &build_ids)
            .await?
            .into_iter()
            .map(|row| (row.build_id, row))
            .collect()
    };
    // A build that joined a release changes the release too (its build count, its builds).
    let mut release_ids: Vec<Uuid> = order
        .iter()
        .filter_map(|changed| match changed {
            Changed::Release(id) => Some(*id),
            Changed::Build(_) => None,
        })
        .collect();
    release_ids.extend(builds.values().filter_map(|row| row.release_id));
    release_ids.sort_unstable();
    release_ids.dedup();
    let mut releases: HashMap<Uuid, _> = if release_ids.is_empty() {
        HashMap::new()
    } else {
        live::releases(pool, &release_ids)
            .await?
            .into_iter()
            .map(|row| (row.release_id, row))
            .collect()
    };
    for changed in order {
        match changed {
            Changed::Build(id) => {
                let Some(build) = builds.get(&id) else {
                    continue;
                };
                let previous_status = if received.contains(&id) {
                    Some(None)
                } else {
                    statuses.get(&id).await
                };
                statuses.insert(id, build.queue_status.clone()).await;
                let release = build.release_id.and_then(|id| releases.remove(&id));
                live.publish(
                    build.organization_id,
                    Arc::new(Change::Queue {
                        build: build.clone(),
                        previous_status,
                    }),
                );
                if let Some(release) = release {
                    live.publish(release.organization_id, Arc::new(Change::Release(release)));
                }
            }
            Changed::Release(id) => {
                if let Some(release) = releases.remove(&id) {
                    live.publish(release.organization_id, Arc::new(Change::Release(release)));
                }
            }
        }
    }
    Ok(())
}
