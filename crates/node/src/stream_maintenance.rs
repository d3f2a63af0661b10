//! The leaders' upkeep of stream partitions, every [`MAINTENANCE_INTERVAL`]: create partitions
//! the map puts in a range that lacks them (a creator that stopped half-way), propose retention
//! trims and member expiry when due (stamped with this leader's clock), drop partitions of
//! deleted streams, and publish consumer lag.

use crate::node::Node;
use crate::stream_metrics::StreamGroupLabels;
use meridian_state::stream::StreamCommand;
use meridian_types::GroupId;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// How often leaders look after their partitions.
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);
/// How long a partition's stream must be missing from the map before its leader drops it (the
/// map reaches a range's leader a little after a stream is created).
pub const DROP_AFTER: Duration = Duration::from_secs(10);

/// One partition as its leader sees it.
struct Seen {
    stream: String,
    partition: u32,
    uid: u64,
    tick_due: bool,
    lag: Vec<(String, u64)>,
}

impl Node {
    pub(crate) fn spawn_stream_maintenance(&self) {
        let node = self.clone();
        let mut stop = self.inner.shutdown_tx.subscribe();
        tokio::spawn(async move {
            let span = tracing::info_span!("stream_maintenance", node_id = node.id().0);
            let _e = span.enter();
            let mut missing: BTreeMap<(GroupId, String, u32), Instant> = BTreeMap::new();
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(MAINTENANCE_INTERVAL) => {}
                }
                node.maintain_streams(&mut missing).await;
            }
        });
    }

    async fn maintain_streams(&self, missing: &mut BTreeMap<(GroupId, String, u32), Instant>) {
        let Some(map) = self.map_arc().filter(|m| m.is_initialized()) else {
            return;
        };
        let now_ms = self.inner.cfg.clock.now_ms();
        let mut lag: BTreeMap<StreamGroupLabels, u64> = BTreeMap::new();
        let mut still_missing = BTreeMap::new();
        for g in self.hosted_groups() {
            let group = g.group();
            if group.is_meta() || !g.is_leader() {
                continue;
            }
            for spec in map.streams.values() {
                for (p, r) in spec.ranges.iter().enumerate() {
                    if r.group() == group
                        && let Err(e) = self.ensure_partition(&g, group, &spec.name, p as u32).await
                    {
                        tracing::debug!(group_id = group.0, error = %e, "create partition");
                    }
                }
            }
            let seen: Vec<Seen> = g.read(|s| {
                s.streams
                    .partitions
                    .iter()
                    .map(|((stream, partition), p)| Seen {
                        stream: stream.clone(),
                        partition: *partition,
                        uid: p.uid,
                        tick_due: p.tick_due(now_ms),
                        lag: p
                            .commits()
                            .iter()
                            .map(|(grp, c)| {
                                let from = (*c).clamp(p.first_offset(), p.end_offset());
                                (grp.clone(), p.end_offset() - from)
                            })
                            .collect(),
                    })
                    .collect()
            });
            for s in seen {
                let listed = map.streams.get(&s.stream).is_some_and(|spec| {
                    spec.uid == s.uid
                        && spec.ranges.get(s.partition as usize).map(|r| r.group()) == Some(group)
                });
                if !listed {
                    let key = (group, s.stream.clone(), s.partition);
                    let since = missing.get(&key).copied().unwrap_or_else(Instant::now);
                    if since.elapsed() >= DROP_AFTER {
                        let cmd = StreamCommand::DropPartition {
                            stream: s.stream.clone(),
                            partition: s.partition,
                        };
                        match self.propose_stream(&g, cmd, None).await {
                            Ok(_) => {
                                tracing::info!(group_id = group.0, stream = %s.stream, partition = s.partition, "dropped the partition of a deleted stream")
                            }
                            Err(e) => {
                                tracing::debug!(group_id = group.0, error = %e, "drop partition")
                            }
                        }
                    } else {
                        still_missing.insert(key, since);
                    }
                    continue;
                }
                if s.tick_due {
                    let cmd = StreamCommand::Tick {
                        stream: s.stream.clone(),
                        partition: s.partition,
                    };
                    match self.propose_stream(&g, cmd, None).await {
                        Ok(_) => {
                            self.inner.metrics.streams.trims.inc();
                        }
                        Err(e) => tracing::debug!(group_id = group.0, error = %e, "stream tick"),
                    }
                }
                for (grp, l) in s.lag {
                    let key = StreamGroupLabels {
                        stream: s.stream.clone(),
                        group: grp,
                    };
                    *lag.entry(key).or_default() += l;
                }
            }
        }
        *missing = still_missing;
        let family = &self.inner.metrics.streams.consumer_lag;
        family.clear();
        for (k, v) in lag {
            family.get_or_create(&k).set(v as i64);
        }
    }
}
