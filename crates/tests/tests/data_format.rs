//! A node refuses a data dir written in another format (`unsupported_format`) instead of
//! misreading it, and starts again once the format is its own.

use meridian_node::DATA_FORMAT;
use meridian_storage::{DiskStore, DiskStoreConfig, LogStore};
use meridian_tests::TestCluster;
use meridian_types::{GroupId, NodeId};
use std::time::{Duration, Instant};

/// Writes the recorded format of `dir`'s store (the store may still be held for a moment by the
/// crashed node's last requests).
fn set_format(dir: &std::path::Path, format: u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let store = loop {
        match DiskStore::open(DiskStoreConfig::new(dir)) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("open {}: {e}", dir.display()),
        }
    };
    store
        .put_meta(
            GroupId(u64::MAX),
            "data.format",
            &format.to_le_bytes(),
            true,
        )
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_another_format_is_refused_at_start() {
    let c = TestCluster::start(1, 1).await.unwrap();
    c.wait_all_leaders(Duration::from_secs(30)).await.unwrap();
    c.put(NodeId(1), "k", "v").await.unwrap();
    c.crash(NodeId(1)).await;
    let dir = c.data_dir(NodeId(1)).join("store");
    set_format(&dir, DATA_FORMAT + 1);
    let e = c.restart(NodeId(1)).await.unwrap_err();
    let text = format!("{e:#}");
    assert!(text.contains("unsupported_format"), "{text}");
    assert!(
        text.contains(&format!("reads format {DATA_FORMAT}")),
        "{text}"
    );
    set_format(&dir, DATA_FORMAT);
    c.restart(NodeId(1)).await.unwrap();
    c.wait_all_leaders(Duration::from_secs(30)).await.unwrap();
    c.shutdown().await;
}
