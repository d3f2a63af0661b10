//! etcd's key-range conventions: a prefix as `[prefix, prefix_range_end)`, and continuing a
//! scan after a key.

/// etcd's `range_end` meaning "to the end of the key space" (with key `\0`: every key).
const END_OF_KEYSPACE: &[u8] = &[0];

/// The first key after every key that starts with `prefix`: `prefix` with its last byte that is
/// not `0xff` incremented and the rest dropped. `[0]` (etcd's "to the end") when there is none.
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    END_OF_KEYSPACE.to_vec()
}

/// `(key, range_end)` of a scan of `prefix` starting after `after` (exclusive).
pub fn scan_bounds(prefix: &[u8], after: Option<&[u8]>) -> (Vec<u8>, Vec<u8>) {
    let range_end = prefix_range_end(prefix);
    let from_prefix = if prefix.is_empty() {
        END_OF_KEYSPACE.to_vec()
    } else {
        prefix.to_vec()
    };
    let start = match after {
        Some(after) => {
            // The smallest key greater than `after`.
            let mut next = after.to_vec();
            next.push(0);
            next.max(from_prefix)
        }
        None => from_prefix,
    };
    (start, range_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_range_end(b"a"), b"b");
        assert_eq!(prefix_range_end(b"ab"), b"ac");
        assert_eq!(prefix_range_end(b"a\xff"), b"b");
        assert_eq!(prefix_range_end(b"\xff\xff"), [0]);
        assert_eq!(prefix_range_end(b""), [0]);
    }

    #[test]
    fn scan_bounds_start_after_the_cursor() {
        assert_eq!(scan_bounds(b"a/", None), (b"a/".to_vec(), b"a0".to_vec()));
        assert_eq!(
            scan_bounds(b"a/", Some(b"a/x")),
            (b"a/x\0".to_vec(), b"a0".to_vec())
        );
        // A cursor before the prefix does not widen the scan.
        assert_eq!(
            scan_bounds(b"b", Some(b"a")),
            (b"b".to_vec(), b"c".to_vec())
        );
        // Everything: etcd's `\0` .. `\0`.
        assert_eq!(scan_bounds(b"", None), (vec![0], vec![0]));
        assert_eq!(scan_bounds(b"", Some(b"k")), (b"k\0".to_vec(), vec![0]));
    }
}
