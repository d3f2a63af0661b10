//! The verdict every real-process fault test asks of a checked history: each key linearizable,
//! no acknowledged write lost, the report valid.

use crate::checker::Report;

/// Panics with the first key that is not linearizable, or the lost acknowledged writes.
pub fn assert_linearizable_and_nothing_lost(report: &Report) {
    for k in &report.keys {
        assert_eq!(
            k.result,
            "linearizable",
            "key {} is {}: {}",
            k.key,
            k.result,
            k.explanation.as_deref().unwrap_or("")
        );
    }
    assert!(
        report.lost_writes.is_empty(),
        "lost acknowledged writes: {:?}",
        report.lost_writes
    );
    assert!(report.valid);
}
