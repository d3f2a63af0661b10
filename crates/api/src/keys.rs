//! Key-range helpers shared by the protocols, following etcd's conventions for `range_end`.

/// The `range_end` that selects every key starting with `prefix`, as etcd's
/// `GetPrefixRangeEnd`: the prefix with its last byte below 0xff incremented and the trailing
/// 0xff bytes dropped. A prefix of only 0xff bytes (or empty) gives `[0]`: every key from
/// `prefix` on.
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// `(key, range_end)` selecting every key that starts with `prefix`. The empty prefix selects
/// every key: etcd's `key = [0], range_end = [0]`.
pub(crate) fn prefix_range(prefix: &[u8]) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() {
        (vec![0], vec![0])
    } else {
        (prefix.to_vec(), prefix_range_end(prefix))
    }
}

/// The first key after `key` in byte order: `key` + `"\0"`.
pub(crate) fn key_after(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_range_end_follows_etcd() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"a", b"b"),
            (b"foo/", b"foo0"),
            (b"a\xff", b"b"),
            (b"a\xfe\xff\xff", b"a\xff"),
            (b"\xff", b"\0"),
            (b"\xff\xff", b"\0"),
            (b"", b"\0"),
        ];
        for (prefix, want) in cases {
            assert_eq!(prefix_range_end(prefix), want.to_vec(), "prefix {prefix:?}");
        }
    }

    #[test]
    fn empty_prefix_is_every_key() {
        assert_eq!(prefix_range(b""), (vec![0], vec![0]));
        assert_eq!(prefix_range(b"k/"), (b"k/".to_vec(), b"k0".to_vec()));
    }

    #[test]
    fn key_after_appends_nul() {
        assert_eq!(key_after(b"abc"), b"abc\0".to_vec());
        assert_eq!(key_after(b""), b"\0".to_vec());
    }
}
