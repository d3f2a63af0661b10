//! Client request ids for idempotent retries, from the `Idempotency-Key` header or the
//! `request_id` query parameter. A UUID is used as its 128-bit value; any other string is hashed
//! with 128-bit FNV-1a, which is fixed forever so that a retry reaching another node (or a newer
//! version) maps to the same id.

use axum::http::HeaderMap;
use meridian_types::{MeridianError, RequestId};

/// Header carrying a client's request id.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Longest request id string accepted.
pub const REQUEST_ID_BYTES_MAX: usize = 256;

/// The request id of a write, if the client sent one. Both sources may be given only if equal.
pub fn request_id(
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Option<RequestId>, MeridianError> {
    let header =
        match headers.get(IDEMPOTENCY_KEY) {
            Some(v) => Some(v.to_str().map_err(|_| {
                MeridianError::invalid("Idempotency-Key header must be visible ASCII")
            })?),
            None => None,
        };
    let s = match (header, query) {
        (Some(h), Some(q)) if h != q => {
            return Err(MeridianError::invalid(
                "Idempotency-Key header and request_id parameter differ",
            ));
        }
        (Some(s), _) | (None, Some(s)) => s,
        (None, None) => return Ok(None),
    };
    parse_request_id(s).map(Some)
}

/// Maps a client's request id string to a [`RequestId`].
pub fn parse_request_id(s: &str) -> Result<RequestId, MeridianError> {
    if s.is_empty() {
        return Err(MeridianError::invalid("request id is empty"));
    }
    if s.len() > REQUEST_ID_BYTES_MAX {
        return Err(MeridianError::invalid(format!(
            "request id is longer than {REQUEST_ID_BYTES_MAX} bytes"
        )));
    }
    Ok(RequestId(
        parse_uuid(s).unwrap_or_else(|| fnv1a_128(s.as_bytes())),
    ))
}

/// A UUID in its hyphenated form (`8-4-4-4-12` hex digits), any case.
fn parse_uuid(s: &str) -> Option<u128> {
    let b = s.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let hex: String = s.chars().filter(|&c| c != '-').collect();
    if hex.len() != 32 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(&hex, 16).ok()
}

/// 128-bit FNV-1a.
fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u128::from(b)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn uuids_keep_their_value() {
        let id = parse_request_id("67E55044-10b1-426f-9247-bb680e5fe0c8").unwrap();
        assert_eq!(id.0, 0x67e5504410b1426f9247bb680e5fe0c8);
    }

    #[test]
    fn other_strings_hash_deterministically() {
        // Known 128-bit FNV-1a values.
        assert_eq!(fnv1a_128(b""), 0x6c62272e07bb014262b821756295c58d);
        assert_eq!(fnv1a_128(b"a"), 0xd228cb696f1a8caf78912b704e4a8964);
        let a = parse_request_id("retry-42").unwrap();
        assert_eq!(a, parse_request_id("retry-42").unwrap());
        assert_ne!(a, parse_request_id("retry-43").unwrap());
    }

    #[test]
    fn bad_ids_are_rejected() {
        assert!(parse_request_id("").is_err());
        assert!(parse_request_id(&"x".repeat(REQUEST_ID_BYTES_MAX + 1)).is_err());
    }

    #[test]
    fn header_and_query_must_agree() {
        let mut h = HeaderMap::new();
        assert_eq!(request_id(&h, None).unwrap(), None);
        h.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("abc"));
        assert!(request_id(&h, Some("abc")).unwrap().is_some());
        assert!(request_id(&h, Some("abd")).is_err());
        assert_eq!(
            request_id(&h, None).unwrap(),
            request_id(&HeaderMap::new(), Some("abc")).unwrap()
        );
    }
}
