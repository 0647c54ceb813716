//! Pagination: result pages, `maxResults` checks and opaque `nextToken`s.
//!
//! A token records where the previous page stopped (the sort key of its last
//! item), not an offset, so rows inserted or deleted between calls never make
//! a page repeat or skip an item that existed throughout. Tokens are tagged
//! with the list they belong to; a token from another list is refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Result, StoreError};

/// One page of a list and the token for the next, `None` on the last page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_token: Option<String>,
}

/// `maxResults` checked against `1..=max`, `default` when absent.
pub fn max_results(value: Option<u32>, max: u32, default: u32) -> Result<u32> {
    match value {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(StoreError::InvalidArgument {
            what: "maxResults".into(),
            reason: format!("{n} is not between 1 and {max}"),
        }),
    }
}

/// A token resuming list `kind` after the item whose sort key is `key`.
pub(crate) fn encode<K: Serialize>(kind: &str, key: &K) -> String {
    // Sort keys are strings and integers, which always serialise.
    let json = serde_json::to_string(key).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(format!("{kind}\n{json}"))
}

/// The sort key recorded in a token of list `kind`.
pub(crate) fn decode<K: DeserializeOwned>(kind: &str, token: &str) -> Result<K> {
    let invalid = || StoreError::InvalidToken {
        token: token.to_owned(),
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (tag, json) = text.split_once('\n').ok_or_else(invalid)?;
    if tag != kind {
        return Err(invalid());
    }
    serde_json::from_str(json).map_err(|_| invalid())
}

/// Cuts `rows` (fetched with one row more than `limit`) to a page; the token
/// points after the last item kept when more rows exist.
pub(crate) fn paginate<R, T, K: Serialize>(
    mut rows: Vec<R>,
    limit: u32,
    kind: &str,
    key: impl Fn(&R) -> K,
    item: impl FnMut(R) -> Result<T>,
) -> Result<Page<T>> {
    let limit = limit as usize;
    let next_token = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|r| encode(kind, &key(r)))
    } else {
        None
    };
    let items = rows.into_iter().map(item).collect::<Result<Vec<T>>>()?;
    Ok(Page { items, next_token })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_are_bound_to_their_list() {
        let t = encode("clusters", &("web".to_owned(), 3i64));
        let back: (String, i64) = decode("clusters", &t).unwrap();
        assert_eq!(back, ("web".to_owned(), 3));
        assert!(matches!(
            decode::<(String, i64)>("tasks", &t),
            Err(StoreError::InvalidToken { .. })
        ));
        for bad in ["", "!!!", "bm90IGEgdG9rZW4"] {
            assert!(decode::<String>("clusters", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn max_results_bounds() {
        assert_eq!(max_results(None, 100, 100).unwrap(), 100);
        assert_eq!(max_results(Some(1), 100, 100).unwrap(), 1);
        assert_eq!(max_results(Some(100), 100, 100).unwrap(), 100);
        assert!(max_results(Some(0), 100, 100).is_err());
        assert!(max_results(Some(101), 100, 100).is_err());
    }
}
