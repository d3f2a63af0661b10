//! The on-disk record format (`meridian_storage::{encode_record, decode_record}`) and the
//! `DiskStore` read paths that decode what is on disk: log records (key and value) and snapshot
//! blobs.
//!
//! The first byte picks a mode:
//! - 0: arbitrary bytes as a record. `decode_record` never panics, and whatever it accepts is
//!   exactly what `encode_record` makes of the payload it returns (decode is the inverse of
//!   encode on its whole domain, so a stored record can only be read back as what was written).
//! - 1: round trip plus a corruption CRC-32 is guaranteed to catch: one flipped bit anywhere
//!   (header included), a burst of at most 32 bits inside the payload, or up to three flipped bits
//!   inside a payload under 11,450 bytes (CRC-32's Hamming distance is 4 up to 91,607 data bits,
//!   Koopman 2002). Each must be reported, never served. Corruptions outside these classes (for
//!   instance a forged checksum) are mode 0's business: accepted only if self-consistent.
//! - 2: the bytes as a log record value in a real `DiskStore` (fjall): `read_log` and `last_log`
//!   give the payload back or a `Corruption` error, never a panic or another payload.
//! - 3: the bytes as a snapshot blob file: `get_blob` likewise.

#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_storage::{
    DiskStore, DiskStoreConfig, LogStore, StorageError, decode_record, encode_record,
};
use meridian_types::GroupId;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// A store in a scratch directory, one per fuzzing process. libFuzzer ends the process with
/// `exit`, so the directory outlives it: it is named after the pid, and each new process removes
/// the ones whose process is gone (the smoke script also runs under a temp dir it removes).
struct Scratch {
    store: DiskStore,
    blob: PathBuf,
}

const BLOB_GROUP: GroupId = GroupId(u64::MAX - 1);
const BLOB_NAME: &str = "raft.snapshot";

fn scratch() -> &'static Scratch {
    static S: OnceLock<Scratch> = OnceLock::new();
    S.get_or_init(|| {
        let tmp = std::env::temp_dir();
        if let Ok(rd) = std::fs::read_dir(&tmp) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("meridian-fuzz-record-")
                    && !PathBuf::from(format!("/proc/{pid}")).exists()
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = tmp.join(format!("meridian-fuzz-record-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cfg = DiskStoreConfig::new(&dir);
        cfg.cache_bytes = 1 << 20;
        let store = DiskStore::open(cfg).expect("open the scratch store");
        store
            .put_blob(BLOB_GROUP, BLOB_NAME, b"seed")
            .expect("write the seed blob");
        let blobs: Vec<PathBuf> = std::fs::read_dir(dir.join("blobs"))
            .expect("list blobs")
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(blobs.len(), 1, "one blob file: {blobs:?}");
        Scratch {
            store,
            blob: blobs[0].clone(),
        }
    })
}

/// Mode 0: decode is the exact inverse of encode.
fn arbitrary_record(bytes: &[u8]) {
    if let Ok(payload) = decode_record(bytes) {
        assert_eq!(
            encode_record(payload),
            bytes,
            "a record that decodes must be exactly the encoding of its payload"
        );
    }
}

/// Mode 1: round trip, then a corruption in a class CRC-32 always detects.
fn guaranteed_detection(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let (params, payload) = data.split_at(8);
    let rec = encode_record(payload);
    assert_eq!(decode_record(&rec).expect("own record decodes"), payload);

    let pos = u32::from_le_bytes([params[1], params[2], params[3], params[4]]) as usize;
    let mut bad = rec.clone();
    let header_bits = 32;
    let payload_bits = payload.len() * 8;
    match params[0] % 3 {
        // One flipped bit anywhere in the record.
        0 => {
            let bit = pos % (rec.len() * 8);
            bad[bit / 8] ^= 1 << (bit % 8);
        }
        // A burst of at most 32 bits inside the payload: xor a nonzero 32-bit pattern whose
        // first and last set bits are at most 32 apart, starting at some bit of the payload.
        1 => {
            if payload_bits == 0 {
                return;
            }
            let mask = u32::from_le_bytes([params[5], params[6], params[7], params[1]]) | 1;
            let start = pos % payload_bits;
            for i in 0..32 {
                if mask >> i & 1 == 1 && start + i < payload_bits {
                    let bit = header_bits + start + i;
                    bad[bit / 8] ^= 1 << (bit % 8);
                }
            }
        }
        // Two or three distinct flipped bits inside a payload of fewer than 91,607 bits.
        _ => {
            if !(3..91_607).contains(&payload_bits) {
                return;
            }
            let a = pos % payload_bits;
            let b = (a + 1 + usize::from(params[5]) * 257 % (payload_bits - 1)) % payload_bits;
            let c = usize::from(params[6]) * 131 % payload_bits;
            let mut bits = vec![a, b];
            if params[7] & 1 == 1 && c != a && c != b {
                bits.push(c);
            }
            for bit in bits {
                let bit = header_bits + bit;
                bad[bit / 8] ^= 1 << (bit % 8);
            }
        }
    }
    if bad == rec {
        return;
    }
    assert!(
        decode_record(&bad).is_err(),
        "corruption CRC-32 must detect went undetected: {rec:?} -> {bad:?}"
    );
}

/// Mode 2: hostile bytes in the log keyspace, read back through the store. Each input gets a
/// group of its own, so no earlier input's records (or their tombstones) are in the way.
fn disk_log(data: &[u8]) {
    static NEXT_GROUP: AtomicU64 = AtomicU64::new(1);
    let Some((&index, value)) = data.split_first() else {
        return;
    };
    let s = scratch();
    let group = GroupId(NEXT_GROUP.fetch_add(1, Ordering::Relaxed));
    let index = u64::from(index);
    s.store
        .corrupt_log_record_for_test(group, index, value)
        .expect("write raw log record");
    let want = decode_record(value).ok();
    match s.store.read_log(group, index, index + 1) {
        Ok(recs) => {
            let want = want.expect("a corrupt log record was served by read_log");
            assert_eq!(recs, vec![(index, want.to_vec())]);
        }
        Err(e) => {
            assert!(want.is_none(), "a valid log record was refused: {e}");
            assert!(matches!(e, StorageError::Corruption { .. }), "{e}");
        }
    }
    match s.store.last_log(group) {
        Ok(Some((i, payload))) => {
            assert_eq!(i, index);
            assert_eq!(
                Some(payload.as_slice()),
                want,
                "last_log served a corrupt record"
            );
        }
        Ok(None) => panic!("last_log lost a record"),
        Err(e) => {
            assert!(want.is_none(), "a valid log record was refused: {e}");
            assert!(matches!(e, StorageError::Corruption { .. }), "{e}");
        }
    }
    // Outside the group: nothing.
    assert!(
        s.store
            .read_log(group, index + 1, index + 10)
            .unwrap()
            .is_empty()
    );
}

/// Mode 3: a hostile snapshot blob file.
fn disk_blob(data: &[u8]) {
    let s = scratch();
    // Overwrite in place, then cut to length: ext4 flushes a file truncated to zero and
    // rewritten when it is closed, which would make this mode a thousand times slower.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&s.blob)
            .expect("open the blob file");
        f.write_all(data).expect("overwrite the blob file");
        f.set_len(data.len() as u64).expect("cut the blob file");
    }
    let want = decode_record(data).ok();
    match s.store.get_blob(BLOB_GROUP, BLOB_NAME) {
        Ok(Some(payload)) => {
            assert_eq!(Some(payload.as_slice()), want, "a corrupt blob was served")
        }
        Ok(None) => panic!("the blob file vanished"),
        Err(e) => {
            assert!(want.is_none(), "a valid blob was refused: {e}");
            assert!(matches!(e, StorageError::Corruption { .. }), "{e}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => arbitrary_record(rest),
        1 => guaranteed_detection(rest),
        2 => disk_log(rest),
        _ => disk_blob(rest),
    }
});
