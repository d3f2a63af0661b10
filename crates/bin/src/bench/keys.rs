//! Benchmark keys and values: key `i` is `i` in zero-padded decimal, exactly `key_size` bytes,
//! so keys sort in index order and a run is easy to read back with `meridian kv scan`.

use anyhow::bail;

/// The key of index `idx`: zero-padded decimal of `key_size` bytes. Callers check with
/// [`check_key_space`] that every index fits; for one that does not, the low digits are kept.
pub fn key_of(idx: u64, key_size: usize) -> Vec<u8> {
    let digits = format!("{idx:0key_size$}");
    digits.as_bytes()[digits.len() - key_size..].to_vec()
}

/// Refuses a key space that `key_size`-byte decimal keys cannot hold without collisions.
pub fn check_key_space(keys: u64, key_size: usize) -> anyhow::Result<()> {
    if key_size == 0 {
        bail!("--key-size must be at least 1");
    }
    // Indexes run from 0 to keys - 1; their decimal must fit in key_size bytes.
    let needed = keys.saturating_sub(1).to_string().len();
    if needed > key_size {
        bail!("--keys {keys} needs keys of at least {needed} bytes, not --key-size {key_size}");
    }
    Ok(())
}

/// A value of `size` printable bytes, random but fixed for the run (as etcd's benchmark does).
pub fn make_value(size: usize, rng: &mut impl rand::Rng) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..size)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn keys_are_padded_decimal_of_the_size() {
        assert_eq!(key_of(0, 8), b"00000000");
        assert_eq!(key_of(42, 8), b"00000042");
        assert_eq!(key_of(12345678, 8), b"12345678");
        assert_eq!(key_of(7, 1), b"7");
        assert_eq!(key_of(123, 2), b"23", "low digits are kept");
        assert_eq!(key_of(u64::MAX, 24).len(), 24);
    }

    #[test]
    fn keys_sort_in_index_order() {
        let keys: Vec<Vec<u8>> = (0..200).map(|i| key_of(i, 4)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn key_space_must_fit_the_key_size() {
        assert!(check_key_space(10, 1).is_ok());
        assert!(check_key_space(100_000_000, 8).is_ok());
        let e = check_key_space(100_000_001, 8).unwrap_err().to_string();
        assert!(e.contains("at least 9 bytes"), "{e}");
        let e = check_key_space(11, 1).unwrap_err().to_string();
        assert!(e.contains("at least 2 bytes"), "{e}");
        assert!(check_key_space(u64::MAX, 20).is_ok());
        assert!(check_key_space(1, 0).is_err());
    }

    #[test]
    fn values_have_the_size_and_are_printable() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let v = make_value(128, &mut rng);
        assert_eq!(v.len(), 128);
        assert!(v.iter().all(u8::is_ascii_alphanumeric));
        assert!(make_value(0, &mut rng).is_empty());
    }
}
