//! Seals: what the event history held up to a moment, in a line an auditor keeps outside the database.
//!
//! A stream's chain proves the stream from its first event to its current last one. It cannot show a stream that
//! was deleted whole, events cut from a stream's end, or a stream rewritten with its links recomputed (the chain
//! has no secret). A seal can: it names a moment (the transaction horizon: every transaction below it had ended)
//! and holds the number of events committed before it and a SHA-256 digest over each stream's last link at that
//! moment. Checking it later recomputes both over the events committed before the same horizon; history appended
//! since does not change them, any other change does.

use std::fmt;
use std::str::FromStr;

use futures::TryStreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

/// The event history up to a moment: `<horizon>:<events>:<digest>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Seal {
    /// Every transaction with a lower id had ended when the seal was taken: the sealed events are the ones they
    /// committed.
    pub horizon: i64,
    /// Events committed before the horizon.
    pub events: u64,
    /// SHA-256 (hex) over each sealed stream's head — aggregate type, id, sequence and link of its last event
    /// before the horizon — in stream order, each field length-prefixed.
    pub digest: String,
}

impl fmt::Display for Seal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.horizon, self.events, self.digest)
    }
}

impl FromStr for Seal {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("a seal reads <horizon>:<events>:<64 hex digits>, not {text:?}");
        let mut parts = text.trim().split(':');
        let (Some(horizon), Some(events), Some(digest), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let digest = digest.to_ascii_lowercase();
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid());
        }
        Ok(Self {
            horizon: horizon
                .parse()
                .ok()
                .filter(|horizon: &i64| *horizon >= 0)
                .ok_or_else(invalid)?,
            events: events.parse().map_err(|_| invalid())?,
            digest,
        })
    }
}

/// Computes a seal while the streams are walked in order (`aggregate_type`, `aggregate_id`, `sequence`).
pub(super) struct Sealing {
    horizon: i64,
    hasher: Sha256,
    events: u64,
    /// The current stream's last event before the horizon so far: its sequence and link.
    head: Option<(i64, String)>,
}

impl Sealing {
    pub(super) fn new(horizon: i64) -> Self {
        Self {
            horizon,
            hasher: Sha256::new(),
            events: 0,
            head: None,
        }
    }

    /// One event of the current stream, whose link has been checked.
    pub(super) fn event(&mut self, sequence: i64, link: &str, transaction: i64) {
        if transaction < self.horizon {
            self.events += 1;
            self.head = Some((sequence, link.to_owned()));
        }
    }

    /// The end of a stream: its head, if it had events before the horizon, joins the digest.
    pub(super) fn end_stream(&mut self, aggregate_type: &str, aggregate_id: &str) {
        if let Some((sequence, link)) = self.head.take() {
            self.add_head(aggregate_type, aggregate_id, sequence, &link);
        }
    }

    fn add_head(&mut self, aggregate_type: &str, aggregate_id: &str, sequence: i64, link: &str) {
        for field in [aggregate_type, aggregate_id, &sequence.to_string(), link] {
            self.hasher.update(field.len().to_string().as_bytes());
            self.hasher.update(b":");
            self.hasher.update(field.as_bytes());
        }
    }

    pub(super) fn finish(self) -> Seal {
        Seal {
            horizon: self.horizon,
            events: self.events,
            digest: hex::encode(self.hasher.finalize()),
        }
    }
}

/// Seals one organization's events below `horizon` (the current one when `None`) from the links they store: no
/// chain is recomputed (`lathe verify` does that), so it is cheap enough for a request. Checking a seal is sealing
/// again at its horizon and comparing.
pub async fn organization_seal(
    pool: &PgPool,
    organization_id: Uuid,
    horizon: Option<i64>,
) -> Result<Seal, sqlx::Error> {
    let mut tx = super::snapshot(pool).await?;
    let horizon = match horizon {
        Some(horizon) => horizon,
        None => crate::database::horizon(&mut *tx).await?,
    };
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE organization_id = $1 AND transaction_id < $2::bigint::text::xid8",
    )
    .bind(organization_id)
    .bind(horizon)
    .fetch_one(&mut *tx)
    .await?;
    // Each stream's last event below the horizon, in the order `lathe verify` walks the streams; hashed as they
    // arrive (an organization with 500,000 builds has as many heads).
    let mut sealing = Sealing::new(horizon);
    let mut heads = sqlx::query_as::<_, (String, String, i64, String)>(
        "SELECT DISTINCT ON (aggregate_type, aggregate_id) aggregate_type, aggregate_id, sequence, hash
         FROM events WHERE organization_id = $1 AND transaction_id < $2::bigint::text::xid8
         ORDER BY aggregate_type, aggregate_id, sequence DESC",
    )
    .bind(organization_id)
    .bind(horizon)
    .fetch(&mut *tx);
    while let Some((aggregate_type, aggregate_id, sequence, link)) = heads.try_next().await? {
        sealing.add_head(&aggregate_type, &aggregate_id, sequence, &link);
    }
    sealing.events = events as u64;
    Ok(sealing.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream's id and its events: sequence, link, transaction.
    type Stream<'a> = (&'a str, &'a [(i64, &'a str, i64)]);

    fn sealed(streams: &[Stream<'_>], horizon: i64) -> Seal {
        let mut sealing = Sealing::new(horizon);
        for (id, events) in streams {
            for (sequence, link, transaction) in events.iter() {
                sealing.event(*sequence, link, *transaction);
            }
            sealing.end_stream("BuildQueue", id);
        }
        sealing.finish()
    }

    #[test]
    fn a_seal_reads_back_from_its_text() {
        let seal = sealed(&[("a", &[(1, "x", 5)])], 10);
        assert_eq!(seal.to_string().parse::<Seal>(), Ok(seal.clone()));
        assert!("10:1".parse::<Seal>().is_err());
        assert!("10:1:abc".parse::<Seal>().is_err());
        assert!(format!("-1:1:{}", seal.digest).parse::<Seal>().is_err());
        assert!(format!("x:1:{}", seal.digest).parse::<Seal>().is_err());
        assert!(format!("{seal}:more").parse::<Seal>().is_err());
    }

    #[test]
    fn events_after_the_horizon_leave_the_seal_as_it_was() {
        let before = sealed(&[("a", &[(1, "x", 5)]), ("b", &[(1, "y", 6)])], 10);
        let grown = sealed(
            &[
                ("a", &[(1, "x", 5), (2, "x2", 12)]),
                ("b", &[(1, "y", 6)]),
                ("c", &[(1, "z", 11)]),
            ],
            10,
        );
        assert_eq!(before, grown);
    }

    #[test]
    fn a_deleted_stream_a_cut_tail_or_a_rewritten_link_changes_the_seal() {
        let whole = sealed(
            &[("a", &[(1, "x", 5), (2, "x2", 6)]), ("b", &[(1, "y", 6)])],
            10,
        );
        let without_b = sealed(&[("a", &[(1, "x", 5), (2, "x2", 6)])], 10);
        let cut = sealed(&[("a", &[(1, "x", 5)]), ("b", &[(1, "y", 6)])], 10);
        let rewritten = sealed(
            &[("a", &[(1, "x", 5), (2, "x3", 6)]), ("b", &[(1, "y", 6)])],
            10,
        );
        for changed in [without_b, cut, rewritten] {
            assert_ne!(whole, changed);
        }
    }
}
