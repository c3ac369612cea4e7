//! Identical subscriptions share one execution. A change is resolved once per distinct operation (one API key's
//! query text, operation name and variables), not once per subscriber: ten dashboards of a team watching the same
//! queue cost one resolution per change and ten copies of its answer.
//!
//! The key is part of what is shared on purpose: what an answer may contain depends on the key's organization and
//! scopes, and a key's subscriptions close together when it is revoked. Each subscriber still holds its own place
//! under the caps ([`Ticket`]) and its own bounded buffer: one that reads too slowly is told it missed changes,
//! as an unshared subscriber would be, and the others are not held back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use async_graphql::Response;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::{broadcast, Notify};
use uuid::Uuid;

use crate::live::Ticket;

/// What makes two subscribe messages the same operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Operation {
    pub api_key_id: Uuid,
    pub query: String,
    pub operation_name: Option<String>,
    /// The variables as JSON.
    pub variables: String,
}

/// The executions this process runs for subscribers, by operation.
#[derive(Default)]
pub struct SharedStreams {
    running: Mutex<HashMap<Operation, Weak<Upstream>>>,
}

/// One execution and its subscribers.
struct Upstream {
    /// `None` once the execution ended or lost its last subscriber: nobody may join it any more.
    sender: Mutex<Option<broadcast::Sender<Arc<Response>>>>,
    /// A subscriber left: the execution checks whether anybody is left.
    left: Notify,
}

impl Upstream {
    fn join(&self) -> Option<broadcast::Receiver<Arc<Response>>> {
        self.sender
            .lock()
            .expect("upstream")
            .as_ref()
            .map(broadcast::Sender::subscribe)
    }

    fn send(&self, response: Response) {
        if let Some(sender) = self.sender.lock().expect("upstream").as_ref() {
            let _ = sender.send(Arc::new(response));
        }
    }

    /// Ends the execution if nobody is subscribed, atomically with [`Upstream::join`]; whether it ended.
    fn close_if_unused(&self) -> bool {
        let mut sender = self.sender.lock().expect("upstream");
        if sender.as_ref().is_none_or(|s| s.receiver_count() == 0) {
            *sender = None;
            true
        } else {
            false
        }
    }

    fn close(&self) {
        *self.sender.lock().expect("upstream") = None;
    }
}

impl SharedStreams {
    /// A subscriber's stream of `operation`'s answers: it joins the running execution of the same operation, or
    /// starts one with `start` (called at most once, only when none runs). `buffer` answers wait for a slow
    /// subscriber before it is told it missed some, with the answer `missed` makes.
    pub fn subscribe(
        self: &Arc<Self>,
        operation: Operation,
        ticket: Ticket,
        buffer: usize,
        start: impl FnOnce() -> BoxStream<'static, Response>,
        missed: fn(u64) -> Response,
    ) -> BoxStream<'static, Response> {
        let (upstream, receiver) = {
            let mut running = self.running.lock().expect("shared streams");
            let joined = running
                .get(&operation)
                .and_then(Weak::upgrade)
                .and_then(|upstream| upstream.join().map(|receiver| (upstream, receiver)));
            match joined {
                Some(joined) => joined,
                None => {
                    let (sender, receiver) = broadcast::channel(buffer.max(1));
                    let upstream = Arc::new(Upstream {
                        sender: Mutex::new(Some(sender)),
                        left: Notify::new(),
                    });
                    running.insert(operation.clone(), Arc::downgrade(&upstream));
                    tokio::spawn(self.clone().run(operation, upstream.clone(), start()));
                    (upstream, receiver)
                }
            }
        };
        let subscriber = Subscriber {
            receiver: Some(receiver),
            upstream,
            _ticket: ticket,
        };
        futures::stream::unfold(subscriber, move |mut subscriber| async move {
            let receiver = subscriber.receiver.as_mut()?;
            let response = match receiver.recv().await {
                Ok(response) => copy(&response),
                Err(broadcast::error::RecvError::Lagged(count)) => missed(count),
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((response, subscriber))
        })
        .boxed()
    }

    /// Drives one execution until it ends or its last subscriber leaves.
    async fn run(
        self: Arc<Self>,
        operation: Operation,
        upstream: Arc<Upstream>,
        mut execution: BoxStream<'static, Response>,
    ) {
        loop {
            tokio::select! {
                response = execution.next() => match response {
                    Some(response) => upstream.send(response),
                    None => {
                        upstream.close();
                        break;
                    }
                },
                () = upstream.left.notified() => {
                    if upstream.close_if_unused() {
                        break;
                    }
                }
            }
        }
        let mut running = self.running.lock().expect("shared streams");
        if running
            .get(&operation)
            .is_some_and(|entry| entry.upgrade().is_none_or(|u| Arc::ptr_eq(&u, &upstream)))
        {
            running.remove(&operation);
        }
    }

    /// Distinct executions running (for tests and metrics).
    pub fn executions(&self) -> usize {
        self.running.lock().expect("shared streams").len()
    }
}

/// A subscriber's hold on its execution and its place under the caps.
struct Subscriber {
    receiver: Option<broadcast::Receiver<Arc<Response>>>,
    upstream: Arc<Upstream>,
    _ticket: Ticket,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        // Gone from the receiver count before the execution looks at it.
        drop(self.receiver.take());
        self.upstream.left.notify_one();
    }
}

/// A subscriber's own copy of a shared answer (the protocol layer takes answers by value).
fn copy(response: &Response) -> Response {
    let mut copy = Response::new(response.data.clone());
    copy.errors = response.errors.clone();
    copy.extensions = response.extensions.clone();
    copy
}
