//! How a writer takes its next batch.
//!
//! While another writer's batch is being committed, the next writer keeps gathering until that commit ends (or its
//! batch is full, or [`MAX_GATHER`] has passed), instead of committing each arrival on its own: at a moderate rate the
//! writers would otherwise take one append each, and the transactions, not the events, would cost most of the
//! database's time. Under full load batches fill and the writers overlap.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{mpsc, Notify};

use super::{Append, MAX_BATCH};

/// How long a writer keeps gathering while another's commit is in flight, before it commits in parallel: longer
/// than a commit takes normally, short enough that a batch waiting on a lock does not hold up the others for long.
const MAX_GATHER: std::time::Duration = std::time::Duration::from_millis(5);

/// The batches being committed at this moment, and a signal when one ends.
#[derive(Default)]
pub(super) struct InFlight {
    batches: AtomicUsize,
    ended: Notify,
}

/// Counts a batch as being committed until dropped.
pub(super) struct Committing<'a>(&'a InFlight);

impl<'a> Committing<'a> {
    pub(super) fn start(in_flight: &'a InFlight) -> Self {
        in_flight.batches.fetch_add(1, Ordering::AcqRel);
        Self(in_flight)
    }
}

impl Drop for Committing<'_> {
    fn drop(&mut self) {
        self.0.batches.fetch_sub(1, Ordering::AcqRel);
        self.0.ended.notify_waiters();
    }
}

/// Takes the next batch: the first append to arrive, every append waiting, and, while another batch is being
/// committed, the appends that arrive until it ends (see the module's documentation). `None` once the queue closed.
pub(super) async fn gather(
    receiver: &mut mpsc::UnboundedReceiver<Append>,
    in_flight: &InFlight,
) -> Option<Vec<Append>> {
    let mut batch = vec![receiver.recv().await?];
    let deadline = tokio::time::Instant::now() + MAX_GATHER;
    loop {
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        // Registered before the check, so that a commit ending between the two is not missed.
        let ended = in_flight.ended.notified();
        tokio::pin!(ended);
        ended.as_mut().enable();
        if batch.len() >= MAX_BATCH || in_flight.batches.load(Ordering::Acquire) == 0 {
            return Some(batch);
        }
        tokio::select! {
            next = receiver.recv() => match next {
                Some(next) => batch.push(next),
                None => return Some(batch),
            },
            () = &mut ended => {}
            () = tokio::time::sleep_until(deadline) => return Some(batch),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use sqlx::PgConnection;
    use tokio::sync::oneshot;

    use super::super::Projectable;
    use super::*;
    use crate::projector::{ProjectionError, Registry};

    /// An append with no rows and nothing to project: only its place in a batch matters here.
    struct Nothing;

    #[async_trait]
    impl Projectable for Nothing {
        fn aggregate_type(&self) -> &'static str {
            "Nothing"
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
        async fn project_run(
            &self,
            _run: &[&dyn Projectable],
            _conn: &mut PgConnection,
            _registry: &Registry,
        ) -> Result<(), ProjectionError> {
            Ok(())
        }
    }

    fn append() -> Append {
        Append {
            rows: Vec::new(),
            projectable: Box::new(Nothing),
            done: oneshot::channel().0,
        }
    }

    #[tokio::test]
    async fn with_no_commit_in_flight_a_lone_append_goes_at_once() {
        let (queue, mut receiver) = mpsc::unbounded_channel();
        let in_flight = InFlight::default();
        queue.send(append()).unwrap();
        queue.send(append()).unwrap();
        let batch = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            gather(&mut receiver, &in_flight),
        )
        .await
        .expect("gathering does not wait when nothing is being committed")
        .unwrap();
        assert_eq!(batch.len(), 2, "every append already waiting is taken");
    }

    // Paused time: the runtime's clock moves only when every task waits, so the deadline cannot pass by accident.
    #[tokio::test(start_paused = true)]
    async fn while_a_commit_is_in_flight_arrivals_join_the_next_batch_until_it_ends() {
        let (queue, mut receiver) = mpsc::unbounded_channel();
        let in_flight = Arc::new(InFlight::default());
        let committing = Committing::start(&in_flight);
        queue.send(append()).unwrap();
        let gathering = {
            let in_flight = in_flight.clone();
            tokio::spawn(async move { gather(&mut receiver, &in_flight).await.unwrap().len() })
        };
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        queue.send(append()).unwrap();
        queue.send(append()).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        assert!(
            !gathering.is_finished(),
            "the batch waits for the commit in flight"
        );
        drop(committing);
        let gathered = tokio::time::timeout(std::time::Duration::from_millis(100), gathering)
            .await
            .expect("the batch goes as soon as the commit in flight ends")
            .unwrap();
        assert_eq!(gathered, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_commit_in_flight_holds_the_next_batch_for_at_most_max_gather() {
        let (queue, mut receiver) = mpsc::unbounded_channel();
        let in_flight = InFlight::default();
        let _stuck = Committing::start(&in_flight);
        queue.send(append()).unwrap();
        let started = tokio::time::Instant::now();
        let batch = gather(&mut receiver, &in_flight).await.unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(started.elapsed(), MAX_GATHER);
    }

    #[tokio::test]
    async fn a_full_batch_goes_without_waiting() {
        let (queue, mut receiver) = mpsc::unbounded_channel();
        let in_flight = InFlight::default();
        let _committing = Committing::start(&in_flight);
        for _ in 0..MAX_BATCH + 3 {
            queue.send(append()).unwrap();
        }
        let batch = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            gather(&mut receiver, &in_flight),
        )
        .await
        .expect("a full batch does not wait")
        .unwrap();
        assert_eq!(batch.len(), MAX_BATCH);
    }
}
