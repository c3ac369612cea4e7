//! Relay paging arguments: `first`/`after` read a newest-first list towards older rows, `last`/`before` towards
//! newer ones (what a dashboard needs to page back up a list it shows newest first).

use projections::Keyset;

use super::cursor;
use crate::error::ApiError;

/// A checked page request: where it starts and how many rows it reads.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub keyset: Keyset,
    pub limit: i64,
}

/// Checks the four Relay arguments: one direction at a time, page sizes 1 to 100 (20 by default).
pub fn window(
    first: Option<i32>,
    after: Option<String>,
    last: Option<i32>,
    before: Option<String>,
) -> Result<Window, ApiError> {
    if first.is_some() && last.is_some() {
        return Err(ApiError::BadUserInput(
            "give `first` (with `after`) or `last` (with `before`), not both".to_owned(),
        ));
    }
    if after.is_some() && before.is_some() {
        return Err(ApiError::BadUserInput(
            "give `after` or `before`, not both".to_owned(),
        ));
    }
    if first.is_some() && before.is_some() {
        return Err(ApiError::BadUserInput(
            "`before` pages backwards: use it with `last`".to_owned(),
        ));
    }
    if last.is_some() && after.is_some() {
        return Err(ApiError::BadUserInput(
            "`after` pages forwards: use it with `first`".to_owned(),
        ));
    }
    if last.is_some() || before.is_some() {
        let limit = cursor::page_size(last).map_err(|_| {
            ApiError::BadUserInput(format!(
                "`last` must be between 1 and {}, not {}",
                cursor::MAX_PAGE,
                last.unwrap_or_default()
            ))
        })?;
        return Ok(Window {
            keyset: Keyset {
                cursor: cursor::before(before)?,
                backward: true,
            },
            limit,
        });
    }
    Ok(Window {
        keyset: Keyset::after(cursor::after(after)?),
        limit: cursor::page_size(first)?,
    })
}

/// The page size a list's cost counts: `first` or `last`, whichever was given.
pub fn requested(first: Option<i32>, last: Option<i32>) -> Option<i32> {
    first.or(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_direction_at_a_time() {
        assert!(window(Some(5), None, Some(5), None).is_err());
        assert!(window(None, Some("x".into()), None, Some("y".into())).is_err());
        assert!(window(Some(5), None, None, Some("y".into())).is_err());
        assert!(window(None, None, Some(0), None).is_err());
        let backwards = window(None, None, Some(3), None).unwrap();
        assert!(backwards.keyset.backward);
        assert_eq!(backwards.limit, 3);
        assert!(!window(None, None, None, None).unwrap().keyset.backward);
    }
}
