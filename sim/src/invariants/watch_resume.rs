//! A watch resumed through other nodes misses nothing and repeats nothing: the watcher's pieces
//! (`crate::watching`), joined, are exactly the history a fresh watch from revision 1 replays
//! after the heal, up to the last revision the watcher knew complete; each is in revision order;
//! and every acknowledged write up to there is in it, with its revision and value.

use crate::history::{Event, Op, Ret, operations};
use crate::watching::{Change, WatchRecord};
use meridian_tests::watch_workload::check_resumed;

pub fn check(rec: &WatchRecord, events: &[Event]) -> Vec<String> {
    let mut out: Vec<String> = rec.problems.iter().map(|p| format!("watch: {p}")).collect();
    let joined: Vec<Change> = rec
        .segments
        .iter()
        .flat_map(|s| s.changes.clone())
        .collect();
    let Some(replay) = &rec.replay else {
        out.push("watch: no replay after the heal".into());
        return out;
    };
    out.extend(
        check_resumed(&joined, replay, rec.through)
            .into_iter()
            .map(|v| format!("watch: {v}")),
    );
    let mut want: Vec<Change> = replay
        .iter()
        .filter(|c| c.0 <= rec.through)
        .cloned()
        .collect();
    want.sort();
    // Every acknowledged write up to `through` is in the history, as written.
    for o in operations(events) {
        let (Some(rev), Some(ret)) = (o.revision, &o.ret) else {
            continue;
        };
        let value = match (&o.op, ret) {
            (Op::Put(v), Ret::PutOk) => v,
            (Op::Cas { new, .. }, Ret::CasOk(true)) => new,
            _ => continue,
        };
        if rev > rec.through || !o.key.starts_with('k') {
            continue;
        }
        let c: Change = (rev, o.key.clone(), "put".into(), Some(value.clone()));
        if want.binary_search(&c).is_err() {
            out.push(format!(
                "watch: the acknowledged write of {:?} = {value:?} at revision {rev} is not in \
                 the watch history",
                o.key
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watching::Segment;

    fn put(revision: u64, key: &str, value: &str) -> Change {
        (revision, key.into(), "put".into(), Some(value.into()))
    }

    fn record(pieces: Vec<Vec<Change>>, replay: Vec<Change>, through: u64) -> WatchRecord {
        WatchRecord {
            segments: pieces
                .into_iter()
                .map(|changes| Segment {
                    node: "n".into(),
                    from_revision: 0,
                    changes,
                    ended: "deadline".into(),
                })
                .collect(),
            through,
            replay: Some(replay),
            problems: Vec::new(),
        }
    }

    #[test]
    fn resumed_pieces_equal_to_the_replay_pass_and_losses_repeats_and_reorders_fail() {
        let h = vec![
            put(1, "k1", "a"),
            put(2, "k2", "b"),
            put(2, "k3", "c"),
            put(3, "k1", "d"),
        ];
        // A txn's two changes in another order within their revision are fine.
        let ok = record(
            vec![
                vec![h[0].clone(), h[2].clone(), h[1].clone()],
                vec![h[3].clone()],
            ],
            h.clone(),
            3,
        );
        assert!(check(&ok, &[]).is_empty(), "{:?}", check(&ok, &[]));
        // Beyond `through` the replay may have more.
        let partial = record(vec![vec![h[0].clone()]], h.clone(), 1);
        assert!(check(&partial, &[]).is_empty());
        let lost = record(vec![vec![h[0].clone()], vec![h[3].clone()]], h.clone(), 3);
        assert!(!check(&lost, &[]).is_empty());
        let repeated = record(
            vec![
                vec![h[0].clone(), h[1].clone(), h[2].clone()],
                h[1..].to_vec(),
            ],
            h.clone(),
            3,
        );
        assert!(!check(&repeated, &[]).is_empty());
        let backwards = record(vec![vec![h[3].clone()], h[..3].to_vec()], h.clone(), 3);
        assert!(check(&backwards, &[]).iter().any(|v| v.contains("back to")));
    }
}
