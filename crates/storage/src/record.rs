//! The on-disk record format: a CRC-32C-style checksum (crc32fast, IEEE) of the payload, then the
//! payload. Every record read back is checked; a mismatch is an error, never served.

/// Bytes of the record header.
pub const RECORD_HEADER_BYTES: usize = 4;

/// Wraps a payload in a checksummed record.
pub fn encode_record(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER_BYTES + payload.len());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Checks a record and returns its payload; `Err` names what is wrong.
pub fn decode_record(record: &[u8]) -> Result<&[u8], String> {
    if record.len() < RECORD_HEADER_BYTES {
        return Err(format!(
            "record of {} bytes is shorter than its header",
            record.len()
        ));
    }
    let (head, payload) = record.split_at(RECORD_HEADER_BYTES);
    let want = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let got = crc32fast::hash(payload);
    if want != got {
        return Err(format!(
            "checksum mismatch: stored {want:08x}, computed {got:08x}"
        ));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(payload in proptest::collection::vec(any::<u8>(), 0..512)) {
            let rec = encode_record(&payload);
            prop_assert_eq!(decode_record(&rec).unwrap(), &payload[..]);
        }

        #[test]
        fn any_flipped_bit_is_detected(payload in proptest::collection::vec(any::<u8>(), 1..256), bit in 0usize..2048) {
            let mut rec = encode_record(&payload);
            let bit = bit % (rec.len() * 8);
            rec[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode_record(&rec).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_record(&bytes);
        }
    }
}
