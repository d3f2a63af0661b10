//! The durable [`LogStore`]: one fjall database per node, two keyspaces (`log`, `meta`), every
//! value a checksummed record.

use crate::error::StorageError;
use crate::flusher::{Flusher, FsyncObserver};
use crate::log_store::{DurableCallback, LogStore};
use crate::record::{decode_record, encode_record};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use meridian_types::GroupId;
use std::path::{Path, PathBuf};

/// How a [`DiskStore`] is opened.
#[derive(Clone)]
pub struct DiskStoreConfig {
    pub path: PathBuf,
    /// Whether appends are fsynced before they are acknowledged. Off only for experiments.
    pub fsync: bool,
    /// Block cache of the engine, in bytes.
    pub cache_bytes: u64,
    pub fsync_observer: Option<FsyncObserver>,
}

impl DiskStoreConfig {
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
            fsync: true,
            cache_bytes: 64 << 20,
            fsync_observer: None,
        }
    }
}

pub struct DiskStore {
    db: Database,
    log: Keyspace,
    meta: Keyspace,
    flusher: Flusher,
    path: PathBuf,
}

/// Folder (under the store) of large values such as snapshots, one file each.
const BLOB_DIR: &str = "blobs";

fn blob_file(group: GroupId, name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{:016x}-{safe}", group.0)
}

fn log_key(group: GroupId, index: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&group.0.to_be_bytes());
    k[8..].copy_from_slice(&index.to_be_bytes());
    k
}

fn meta_key(group: GroupId, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + name.len());
    k.extend_from_slice(&group.0.to_be_bytes());
    k.extend_from_slice(name.as_bytes());
    k
}

impl DiskStore {
    pub fn open(cfg: DiskStoreConfig) -> Result<Self, StorageError> {
        std::fs::create_dir_all(&cfg.path).map_err(|e| StorageError::Engine(e.into()))?;
        let db = Database::builder(&cfg.path)
            .cache_size(cfg.cache_bytes)
            .open()?;
        let log = db.keyspace("log", KeyspaceCreateOptions::default)?;
        let meta = db.keyspace("meta", KeyspaceCreateOptions::default)?;
        let flusher = Flusher::start(db.clone(), cfg.fsync, cfg.fsync_observer.clone());
        Ok(Self {
            db,
            log,
            meta,
            flusher,
            path: cfg.path,
        })
    }

    fn corrupt(group: GroupId, what: String, detail: String) -> StorageError {
        tracing::error!(group_id = group.0, %what, %detail, "corrupt record on disk; refusing to serve it");
        StorageError::Corruption {
            group,
            what,
            detail,
        }
    }

    fn decode_log(
        group: GroupId,
        key: &[u8],
        value: &[u8],
    ) -> Result<(u64, Vec<u8>), StorageError> {
        if key.len() != 16 {
            return Err(Self::corrupt(
                group,
                "log key".into(),
                format!("key of {} bytes", key.len()),
            ));
        }
        let mut idx = [0u8; 8];
        idx.copy_from_slice(&key[8..]);
        let index = u64::from_be_bytes(idx);
        let payload = decode_record(value)
            .map_err(|d| Self::corrupt(group, format!("log index {index}"), d))?;
        Ok((index, payload.to_vec()))
    }

    /// Test hook: overwrites the stored bytes of a log record as they are, bypassing the checksum,
    /// to check that corruption is detected.
    pub fn corrupt_log_record_for_test(
        &self,
        group: GroupId,
        index: u64,
        bytes: &[u8],
    ) -> Result<(), StorageError> {
        self.log.insert(log_key(group, index), bytes)?;
        Ok(())
    }
}

impl LogStore for DiskStore {
    fn append(
        &self,
        group: GroupId,
        records: Vec<(u64, Vec<u8>)>,
        on_durable: DurableCallback,
    ) -> Result<(), StorageError> {
        let mut batch = self.db.batch();
        for (index, payload) in &records {
            batch.insert(&self.log, log_key(group, *index), encode_record(payload));
        }
        crate::crash_point!("storage::append::before_write");
        batch.commit()?;
        // Written to the engine (maybe only to its buffers), not yet durable.
        crate::crash_point!("storage::append::after_write");
        self.flusher.enqueue(on_durable).map_err(|cb| {
            cb(Err(std::io::Error::other("storage is shut down")));
            StorageError::Closed
        })
    }

    fn read_log(
        &self,
        group: GroupId,
        start: u64,
        end: u64,
    ) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for item in self.log.range(log_key(group, start)..log_key(group, end)) {
            let (k, v) = item.into_inner()?;
            out.push(Self::decode_log(group, &k, &v)?);
        }
        Ok(out)
    }

    fn last_log(&self, group: GroupId) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        let upper = log_key(group, u64::MAX);
        match self.log.range(log_key(group, 0)..=upper).next_back() {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item.into_inner()?;
                Ok(Some(Self::decode_log(group, &k, &v)?))
            }
        }
    }

    fn truncate_after(&self, group: GroupId, after: Option<u64>) -> Result<(), StorageError> {
        let start = match after {
            Some(i) if i == u64::MAX => return Ok(()),
            Some(i) => i + 1,
            None => 0,
        };
        let mut batch = self.db.batch();
        for item in self
            .log
            .range(log_key(group, start)..=log_key(group, u64::MAX))
        {
            let k = item.key()?;
            batch.remove(&self.log, k);
        }
        batch.commit()?;
        // A truncation must be durable before new entries at those indexes are acknowledged;
        // they go through the same journal, so the next group fsync covers both in order.
        Ok(())
    }

    fn purge_upto(&self, group: GroupId, upto: u64) -> Result<(), StorageError> {
        let mut batch = self.db.batch();
        for item in self.log.range(log_key(group, 0)..=log_key(group, upto)) {
            let k = item.key()?;
            batch.remove(&self.log, k);
        }
        batch.commit()?;
        Ok(())
    }

    fn put_meta(
        &self,
        group: GroupId,
        name: &str,
        value: &[u8],
        sync: bool,
    ) -> Result<(), StorageError> {
        self.meta
            .insert(meta_key(group, name), encode_record(value))?;
        if sync {
            self.db.persist(PersistMode::SyncData)?;
        }
        Ok(())
    }

    fn get_meta(&self, group: GroupId, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        match self.meta.get(meta_key(group, name))? {
            None => Ok(None),
            Some(v) => {
                let payload = decode_record(&v)
                    .map_err(|d| Self::corrupt(group, format!("meta {name}"), d))?;
                Ok(Some(payload.to_vec()))
            }
        }
    }

    fn put_blob(&self, group: GroupId, name: &str, value: &[u8]) -> Result<(), StorageError> {
        let dir = self.path.join(BLOB_DIR);
        let io = |e: std::io::Error| {
            StorageError::Io(format!("write blob {name} of group {group}: {e}"))
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let path = dir.join(blob_file(group, name));
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&encode_record(value)).map_err(io)?;
            f.sync_data().map_err(io)?;
        }
        // The new blob is durable under its temporary name; the old one is still in place.
        crate::crash_point!("storage::blob::after_tmp_write");
        std::fs::rename(&tmp, &path).map_err(io)?;
        crate::crash_point!("storage::blob::after_rename");
        // The rename itself must survive a crash.
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }

    fn get_blob(&self, group: GroupId, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.path.join(BLOB_DIR).join(blob_file(group, name));
        match std::fs::read(&path) {
            Ok(bytes) => {
                let payload = decode_record(&bytes)
                    .map_err(|d| Self::corrupt(group, format!("blob {name}"), d))?;
                Ok(Some(payload.to_vec()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError::Io(format!(
                "read blob {name} of group {group}: {e}"
            ))),
        }
    }

    fn remove_group(&self, group: GroupId) -> Result<(), StorageError> {
        let prefix = format!("{:016x}-", group.0);
        if let Ok(rd) = std::fs::read_dir(self.path.join(BLOB_DIR)) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        self.truncate_after(group, None)?;
        let mut batch = self.db.batch();
        for item in self.meta.prefix(group.0.to_be_bytes()) {
            let k = item.key()?;
            batch.remove(&self.meta, k);
        }
        batch.commit()?;
        self.db.persist(PersistMode::SyncData)?;
        Ok(())
    }

    fn disk_bytes(&self) -> u64 {
        dir_bytes(&self.path)
    }
}

fn dir_bytes(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_bytes(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn append_sync(s: &DiskStore, g: GroupId, recs: Vec<(u64, Vec<u8>)>) {
        let (tx, rx) = mpsc::channel();
        s.append(g, recs, Box::new(move |r| tx.send(r.is_ok()).unwrap()))
            .unwrap();
        assert!(rx.recv().unwrap());
    }

    #[test]
    fn append_read_truncate_purge_across_groups() {
        let dir = tempfile::tempdir().unwrap();
        let s = DiskStore::open(DiskStoreConfig::new(dir.path())).unwrap();
        let (a, b) = (GroupId(1), GroupId(2));
        append_sync(&s, a, (1..=10).map(|i| (i, vec![i as u8])).collect());
        append_sync(&s, b, (1..=3).map(|i| (i, vec![100 + i as u8])).collect());
        assert_eq!(
            s.read_log(a, 3, 6)
                .unwrap()
                .iter()
                .map(|r| r.0)
                .collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert_eq!(s.last_log(a).unwrap().unwrap(), (10, vec![10]));
        assert_eq!(s.last_log(b).unwrap().unwrap(), (3, vec![103]));
        s.truncate_after(a, Some(7)).unwrap();
        assert_eq!(s.last_log(a).unwrap().unwrap().0, 7);
        s.purge_upto(a, 4).unwrap();
        assert_eq!(
            s.read_log(a, 0, 100)
                .unwrap()
                .iter()
                .map(|r| r.0)
                .collect::<Vec<_>>(),
            vec![5, 6, 7]
        );
        assert_eq!(s.read_log(b, 0, 100).unwrap().len(), 3);
        assert!(s.last_log(GroupId(3)).unwrap().is_none());
    }

    /// An append is reported durable only after the fsync that covers it: the observer runs
    /// right after `persist`, so it must be told before any callback of its batch runs.
    #[test]
    fn an_append_is_acknowledged_only_after_its_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let events = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
        let mut cfg = DiskStoreConfig::new(dir.path());
        let seen = events.clone();
        cfg.fsync_observer = Some(std::sync::Arc::new(move |_, n| {
            seen.lock().push(format!("fsync {n}"))
        }));
        let s = DiskStore::open(cfg).unwrap();
        for i in 1..=20u64 {
            let (seen, (tx, rx)) = (events.clone(), mpsc::channel());
            s.append(
                GroupId(1),
                vec![(i, vec![i as u8])],
                Box::new(move |r| {
                    seen.lock().push("ack".into());
                    tx.send(r.is_ok()).unwrap();
                }),
            )
            .unwrap();
            assert!(rx.recv().unwrap());
            let ev = events.lock();
            let ack = ev.iter().rposition(|e| e == "ack").unwrap();
            assert!(
                ev[..ack].iter().any(|e| e.starts_with("fsync")),
                "append {i} acknowledged before any fsync: {ev:?}"
            );
            drop(ev);
            events.lock().clear();
        }
    }

    #[test]
    fn records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = DiskStore::open(DiskStoreConfig::new(dir.path())).unwrap();
            append_sync(
                &s,
                GroupId(0),
                vec![(1, b"one".to_vec()), (2, b"two".to_vec())],
            );
            s.put_meta(GroupId(0), "vote", b"v1", true).unwrap();
        }
        let s = DiskStore::open(DiskStoreConfig::new(dir.path())).unwrap();
        assert_eq!(s.read_log(GroupId(0), 1, 3).unwrap().len(), 2);
        assert_eq!(s.get_meta(GroupId(0), "vote").unwrap().unwrap(), b"v1");
    }

    #[test]
    fn a_corrupt_record_is_reported_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let s = DiskStore::open(DiskStoreConfig::new(dir.path())).unwrap();
        append_sync(&s, GroupId(5), vec![(1, b"good".to_vec())]);
        let mut bad = encode_record(b"good");
        bad[5] ^= 0xff;
        s.corrupt_log_record_for_test(GroupId(5), 1, &bad).unwrap();
        let err = s.read_log(GroupId(5), 1, 2).unwrap_err();
        assert!(matches!(err, StorageError::Corruption { .. }), "{err}");
    }

    #[test]
    fn blobs_are_durable_checked_and_per_group() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = DiskStore::open(DiskStoreConfig::new(dir.path())).unwrap();
            s.put_blob(GroupId(1), "raft.snapshot", b"one").unwrap();
            s.put_blob(GroupId(2), "raft.snapshot", b"two").unwrap();
            s.put_blob(GroupId(1), "raft.snapshot", b"uno").unwrap();
        }
        let s = DiskStore::open(DiskStoreConfig::new(dir.path())).unwrap();
        assert_eq!(
            s.get_blob(GroupId(1), "raft.snapshot").unwrap().unwrap(),
            b"uno"
        );
        assert_eq!(
            s.get_blob(GroupId(2), "raft.snapshot").unwrap().unwrap(),
            b"two"
        );
        assert!(s.get_blob(GroupId(3), "raft.snapshot").unwrap().is_none());
        // A flipped byte is reported, not served.
        let path = dir
            .path()
            .join(BLOB_DIR)
            .join(blob_file(GroupId(2), "raft.snapshot"));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[5] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(
            s.get_blob(GroupId(2), "raft.snapshot"),
            Err(StorageError::Corruption { .. })
        ));
        s.remove_group(GroupId(1)).unwrap();
        assert!(s.get_blob(GroupId(1), "raft.snapshot").unwrap().is_none());
    }

    #[test]
    fn remove_group_leaves_others() {
        let dir = tempfile::tempdir().unwrap();
        let s = DiskStore::open(DiskStoreConfig::new(dir.path())).unwrap();
        append_sync(&s, GroupId(1), vec![(1, b"a".to_vec())]);
        append_sync(&s, GroupId(2), vec![(1, b"b".to_vec())]);
        s.put_meta(GroupId(1), "vote", b"x", false).unwrap();
        s.remove_group(GroupId(1)).unwrap();
        assert!(s.last_log(GroupId(1)).unwrap().is_none());
        assert!(s.get_meta(GroupId(1), "vote").unwrap().is_none());
        assert!(s.last_log(GroupId(2)).unwrap().is_some());
    }
}
