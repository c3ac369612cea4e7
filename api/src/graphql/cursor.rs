//! Opaque keyset cursors: a row's sort time and id, so that pages stay stable while rows are added.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::ApiError;

/// Default and largest page sizes.
pub const DEFAULT_PAGE: i32 = 20;
pub const MAX_PAGE: i32 = 100;

/// Encodes the position of one row.
pub fn encode(at: DateTime<Utc>, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}|{id}", at.timestamp_micros()))
}

/// Decodes a cursor made by [`encode`].
pub fn decode(cursor: &str) -> Result<(DateTime<Utc>, Uuid), ApiError> {
    let invalid =
        || ApiError::BadUserInput(format!("`after` is not a cursor from this API: {cursor}"));
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (micros, id) = text.split_once('|').ok_or_else(invalid)?;
    let at = micros
        .parse()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(invalid)?;
    Ok((at, id.parse().map_err(|_| invalid())?))
}

/// Encodes a position in an ordered list (test results).
pub fn encode_ordinal(ordinal: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("o|{ordinal}"))
}

/// Decodes a cursor made by [`encode_ordinal`].
pub fn decode_ordinal(cursor: &str) -> Result<i64, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix("o|").and_then(|n| n.parse().ok()))
        .ok_or_else(|| {
            ApiError::BadUserInput(format!("`after` is not a cursor from this API: {cursor}"))
        })
}

/// Encodes a position in the global event order: `(transaction id, position)`.
pub fn encode_pair(transaction_id: i64, position: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("e|{transaction_id}|{position}"))
}

/// Decodes a cursor made by [`encode_pair`].
pub fn decode_pair(cursor: &str) -> Result<(i64, i64), ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| {
            let rest = text.strip_prefix("e|")?;
            let (transaction_id, position) = rest.split_once('|')?;
            Some((transaction_id.parse().ok()?, position.parse().ok()?))
        })
        .ok_or_else(|| {
            ApiError::BadUserInput(format!("`after` is not a cursor from this API: {cursor}"))
        })
}

/// Checks `first` and applies the default.
pub fn page_size(first: Option<i32>) -> Result<i64, ApiError> {
    match first.unwrap_or(DEFAULT_PAGE) {
        n @ 1..=MAX_PAGE => Ok(i64::from(n)),
        n => Err(ApiError::BadUserInput(format!(
            "`first` must be between 1 and {MAX_PAGE}, not {n}"
        ))),
    }
}

/// Decodes an optional `after`.
pub fn after(after: Option<String>) -> Result<Option<(DateTime<Utc>, Uuid)>, ApiError> {
    after.as_deref().map(decode).transpose()
}

/// Decodes an optional `before`.
pub fn before(before: Option<String>) -> Result<Option<(DateTime<Utc>, Uuid)>, ApiError> {
    before
        .as_deref()
        .map(|cursor| {
            decode(cursor).map_err(|_| {
                ApiError::BadUserInput(format!("`before` is not a cursor from this API: {cursor}"))
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_to_the_microsecond() {
        let at: DateTime<Utc> = "2026-11-26T10:00:00.123456Z".parse().unwrap();
        let id = Uuid::new_v4();
        assert_eq!(decode(&encode(at, id)).unwrap(), (at, id));
    }

    #[test]
    fn foreign_cursors_and_bad_sizes_are_refused() {
        assert!(decode("not-a-cursor").is_err());
        assert!(page_size(Some(0)).is_err());
        assert!(page_size(Some(101)).is_err());
        assert_eq!(page_size(None).unwrap(), 20);
    }
}
