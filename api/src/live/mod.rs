//! Live changes for GraphQL subscriptions: what committed, in commit order, fanned out to the subscribers of its
//! organization in this process, with bounded buffers and caps on what subscribers may hold open.
//!
//! A change travels: the append's transaction commits → PostgreSQL delivers its `NOTIFY` (sent by a trigger, only
//! on commit, in commit order) to every process's listener ([`feed`]) → the listener reads that transaction's
//! events and the current rows of what they changed → one [`Change`] per changed object goes into the
//! organization's broadcast channel → each subscription's stream filters and resolves it → the socket
//! (`graphql::ws`).

mod feed;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;
use uuid::Uuid;

use projections::builds::BuildRow;
use projections::deliveries::DeliveryRow;
use projections::releases::ReleaseRow;

use crate::error::ApiError;

pub use feed::spawn as spawn_feed;

/// One committed change, as subscribers receive it: the object's row as read right after its commit.
#[derive(Debug)]
pub enum Change {
    /// A build of the queue changed (received, project selected, assigned, rejected, or any later event on its
    /// stream). `previous_status` is its queue status before, when this process knows it (`None` inside means it
    /// was not in the queue); unknown (`None`) makes it match every status filter.
    Queue {
        build: BuildRow,
        previous_status: Option<Option<String>>,
    },
    /// A release changed, or a build joined or left it.
    Release(ReleaseRow),
    /// A delivery was logged.
    Delivery(DeliveryRow),
    /// This process may have missed changes (its listener lost its connection): every subscriber must refetch.
    Missed,
}

/// Subscription caps and buffers (from `Limits`).
#[derive(Debug, Clone, Copy)]
pub struct LiveLimits {
    /// Changes an organization's channel holds for its slowest subscriber before that one is told it missed some.
    pub buffer: usize,
    /// Open subscriptions one API key may hold in one process.
    pub per_key: usize,
    /// Open subscriptions in one process.
    pub per_process: usize,
    /// Open WebSocket connections in one process.
    pub connections: usize,
}

/// The process's live state: one broadcast channel per organization with subscribers, key revocations, and the
/// counts behind the caps.
pub struct Live {
    limits: LiveLimits,
    channels: Mutex<HashMap<Uuid, broadcast::Sender<Arc<Change>>>>,
    /// Ids of API keys that were revoked (or otherwise changed): open connections check their key again.
    keys: broadcast::Sender<Uuid>,
    counts: Mutex<Counts>,
    connections: Arc<tokio::sync::Semaphore>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_key: HashMap<Uuid, usize>,
}

impl Live {
    /// Live state with the given caps.
    pub fn new(limits: LiveLimits) -> Self {
        Self {
            limits: LiveLimits {
                buffer: limits.buffer.max(1),
                ..limits
            },
            channels: Mutex::default(),
            keys: broadcast::channel(1024).0,
            counts: Mutex::default(),
            connections: Arc::new(tokio::sync::Semaphore::new(limits.connections)),
        }
    }

    /// A place for one more WebSocket connection, held until it closes; `None` at the cap.
    pub fn connection_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.connections.clone().try_acquire_owned().ok()
    }

    /// Holds a place for one more subscription of a key under the caps, until the ticket is dropped. Past a cap,
    /// refused (`RATE_LIMITED`).
    pub fn reserve(self: &Arc<Self>, api_key_id: Uuid) -> Result<Ticket, ApiError> {
        let mut counts = self.counts.lock().expect("live counts");
        if counts.total >= self.limits.per_process {
            return Err(ApiError::TooMany(format!(
                "this server holds {} open subscriptions, the most it allows; retry later or on another",
                self.limits.per_process
            )));
        }
        let of_key = counts.per_key.entry(api_key_id).or_default();
        if *of_key >= self.limits.per_key {
            return Err(ApiError::TooMany(format!(
                "this API key holds {} open subscriptions, the most one key may; complete one first",
                self.limits.per_key
            )));
        }
        *of_key += 1;
        counts.total += 1;
        Ok(Ticket {
            live: self.clone(),
            api_key_id,
        })
    }

    /// A receiver of an organization's changes (from now on).
    pub fn subscribe(&self, organization_id: Uuid) -> broadcast::Receiver<Arc<Change>> {
        let mut channels = self.channels.lock().expect("live channels");
        channels
            .entry(organization_id)
            .or_insert_with(|| broadcast::channel(self.limits.buffer).0)
            .subscribe()
    }

    /// Changes an organization's channel holds for its slowest subscriber.
    pub fn buffer(&self) -> usize {
        self.limits.buffer
    }

    /// The organizations this process has subscribers for: the only ones whose changes are read.
    fn organizations(&self) -> Vec<Uuid> {
        self.channels
            .lock()
            .expect("live channels")
            .keys()
            .copied()
            .collect()
    }

    /// Whether no WebSocket connection is open in this process: then there is nobody to tell anything.
    fn is_idle(&self) -> bool {
        self.connections.available_permits() == self.limits.connections
    }

    /// Key changes, for the connections to check their key.
    pub fn key_changes(&self) -> broadcast::Receiver<Uuid> {
        self.keys.subscribe()
    }

    /// Sends a change to the organization's subscribers; never waits (a full buffer drops its oldest change for
    /// the subscribers that had not read it, who are told).
    fn publish(&self, organization_id: Uuid, change: Arc<Change>) {
        let mut channels = self.channels.lock().expect("live channels");
        if let Some(sender) = channels.get(&organization_id) {
            if sender.send(change).is_err() {
                // Nobody listens any more.
                channels.remove(&organization_id);
            }
        }
    }

    /// Tells every subscriber it may have missed changes.
    fn publish_missed(&self) {
        let channels = self.channels.lock().expect("live channels");
        for sender in channels.values() {
            let _ = sender.send(Arc::new(Change::Missed));
        }
    }

    fn key_changed(&self, api_key_id: Uuid) {
        let _ = self.keys.send(api_key_id);
    }

    /// Open subscriptions in this process.
    pub fn open_subscriptions(&self) -> usize {
        self.counts.lock().expect("live counts").total
    }
}

/// A subscription's place under the caps, given back when the subscription ends.
pub struct Ticket {
    live: Arc<Live>,
    api_key_id: Uuid,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut counts = self.live.counts.lock().expect("live counts");
        counts.total = counts.total.saturating_sub(1);
        if let Some(of_key) = counts.per_key.get_mut(&self.api_key_id) {
            *of_key -= 1;
            if *of_key == 0 {
                counts.per_key.remove(&self.api_key_id);
            }
        }
    }
}
