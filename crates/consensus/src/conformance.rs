//! openraft's own storage conformance suite, run against this crate's log store and state
//! machine on a real fjall store in a temp dir.

use crate::log_growth::LogGrowth;
use crate::log_store::GroupLogStore;
use crate::state_machine::GroupStateMachine;
use crate::typ::TypeConfig;
use meridian_storage::{DiskStore, DiskStoreConfig, LogStore};
use meridian_types::GroupId;
use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use std::sync::Arc;

struct Builder;

impl StoreBuilder<TypeConfig, GroupLogStore, GroupStateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, GroupLogStore, GroupStateMachine), StorageError<TypeConfig>>
    {
        // Setup failures are the test's own: panic with the reason.
        let dir = tempfile::tempdir().expect("make a temp dir");
        let store: Arc<dyn LogStore> =
            Arc::new(DiskStore::open(DiskStoreConfig::new(dir.path())).expect("open the store"));
        let group = GroupId(7);
        // Never past its floor: the suite checks snapshots it asks for itself.
        let growth = Arc::new(LogGrowth::new(u64::MAX, 0));
        let sm = GroupStateMachine::open(group, store.clone(), growth.clone(), true)
            .expect("open the state machine");
        Ok((dir, GroupLogStore::new(group, store, growth), sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite() {
    Suite::test_all(Builder)
        .await
        .expect("openraft storage conformance");
}
