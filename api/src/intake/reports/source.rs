//! A report's bytes as the XML reader takes them: decoded (gzip or not), counted against the ingest limit, hashed
//! for `Idempotency-Key`, and their lines counted so that an error can name where it is.

use std::io::{self, BufRead};

use sha2::{Digest, Sha256};

/// A report's bytes as they are decoded: counted against the limit, hashed, and their lines counted.
pub(in crate::intake) struct Tracked<'a> {
    inner: Box<dyn BufRead + 'a>,
    limit: u64,
    read: u64,
    /// Newlines consumed so far, and the offset just after the last one (for columns).
    newlines: u64,
    pub(super) line_start: u64,
    hasher: &'a mut Sha256,
    pub(super) exceeded: bool,
    /// What the decoder said when it failed (a gzip stream that is not one).
    pub(super) failed: Option<String>,
}

impl<'a> Tracked<'a> {
    /// `limit` is how many decoded bytes may still be read (shared by the files of one call).
    pub(in crate::intake) fn new(
        inner: Box<dyn BufRead + 'a>,
        limit: u64,
        hasher: &'a mut Sha256,
    ) -> Self {
        Self {
            inner,
            limit,
            read: 0,
            newlines: 0,
            line_start: 0,
            hasher,
            exceeded: false,
            failed: None,
        }
    }

    /// Bytes decoded so far.
    pub(super) fn read(&self) -> u64 {
        self.read
    }

    /// 1-based line and column of a byte offset at or after the last newline consumed (else its line's start).
    pub(super) fn line_column(&self, offset: u64) -> (u64, u64) {
        (
            self.newlines + 1,
            offset.saturating_sub(self.line_start) + 1,
        )
    }
}

impl io::Read for Tracked<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Tracked<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let buffer = match self.inner.fill_buf() {
            Ok(buffer) => buffer,
            Err(error) => {
                self.failed = Some(error.to_string());
                return Err(error);
            }
        };
        if self.read + buffer.len() as u64 > self.limit {
            // Only decoded bytes that exist past the limit get here: a gzip bomb stops at the limit.
            self.exceeded = true;
            return Err(io::Error::other(
                "the decoded body is over the ingest limit",
            ));
        }
        Ok(buffer)
    }

    fn consume(&mut self, amount: usize) {
        if let Ok(buffer) = self.inner.fill_buf() {
            let consumed = &buffer[..amount.min(buffer.len())];
            self.hasher.update(consumed);
            for (at, _) in consumed.iter().enumerate().filter(|(_, b)| **b == b'\n') {
                self.newlines += 1;
                self.line_start = self.read + at as u64 + 1;
            }
        }
        self.read += amount as u64;
        self.inner.consume(amount);
    }
}
