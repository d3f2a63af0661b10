//! Event-stream partitions: an append-only log of messages per partition, kept in the state of
//! the range that hosts it, with deduplication ids, retention and consumer groups.
//!
//! Offsets are gap-free and never reused: retention trims the head, the next offset only grows.
//! Time comes from the entry (`StreamEntry::now_ms`, the leader's clock); a partition's clock is
//! the largest time it has seen, so message timestamps never go backwards across a leader change.
//! Consumer-group membership lives in partition 0 (the group's coordinator); committed offsets
//! live in each partition.

use crate::stream_group::{ConsumerGroup, GroupAssignment};
use meridian_types::{ErrorCode, MeridianError, RequestId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// How long a deduplication id is remembered, in leader time.
pub const DEDUP_WINDOW_MS: u64 = 120_000;
/// Most deduplication ids remembered per partition; the oldest is forgotten first.
pub const DEDUP_IDS_MAX: usize = 100_000;
/// Most messages in one publish.
pub const PUBLISH_BATCH_MAX: usize = 1_000;
/// Most partitions a stream may have.
pub const PARTITIONS_MAX: u32 = 256;
/// Longest deduplication id, consumer group or member name.
pub const NAME_BYTES_MAX: usize = 256;

/// How much of a partition is kept. `None` = no limit of that kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub max_age_ms: Option<u64>,
    pub max_bytes: Option<u64>,
    pub max_messages: Option<u64>,
}

/// One stored message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMessage {
    pub offset: u64,
    /// The leader's clock when it was published (never below an earlier message's).
    pub timestamp_ms: u64,
    #[serde(with = "serde_bytes")]
    pub key: Option<Vec<u8>>,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl StreamMessage {
    /// The bytes it counts for under a byte retention.
    pub fn size(&self) -> u64 {
        let h: usize = self.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        (self.payload.len() + self.key.as_ref().map_or(0, Vec::len) + h) as u64
    }
}

/// A message to publish.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMessage {
    #[serde(with = "serde_bytes")]
    pub key: Option<Vec<u8>>,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
    /// A repeat within [`DEDUP_WINDOW_MS`] is not stored again; it answers the first offset.
    pub dedup_id: Option<String>,
}

/// A command to one partition (or, for groups, to the stream's coordinator partition 0).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamCommand {
    /// Creates the partition; again with the same `uid` changes nothing; with another `uid`
    /// (the stream was deleted and created again) starts it afresh.
    CreatePartition {
        stream: String,
        partition: u32,
        uid: u64,
        retention: Retention,
    },
    DropPartition {
        stream: String,
        partition: u32,
    },
    Publish {
        stream: String,
        partition: u32,
        messages: Vec<NewMessage>,
    },
    /// Enforces retention and expires silent group members as of the entry's time.
    Tick {
        stream: String,
        partition: u32,
    },
    /// Joins or heartbeats (an unknown member joins); answers the member's assignment.
    Heartbeat {
        stream: String,
        group: String,
        member: String,
        partitions: u32,
        session_timeout_ms: u64,
    },
    Leave {
        stream: String,
        group: String,
        member: String,
    },
    /// Stores a group's committed offset (the next offset to read) for one partition. With a
    /// `generation` (a member's commit, checked against the coordinator first) it is refused
    /// once a commit of a later generation has been stored here.
    Commit {
        stream: String,
        partition: u32,
        group: String,
        offset: u64,
        generation: Option<u64>,
    },
}

impl StreamCommand {
    /// The partition the command is applied to.
    pub fn target(&self) -> (&str, u32) {
        match self {
            StreamCommand::CreatePartition {
                stream, partition, ..
            }
            | StreamCommand::DropPartition { stream, partition }
            | StreamCommand::Publish {
                stream, partition, ..
            }
            | StreamCommand::Tick { stream, partition }
            | StreamCommand::Commit {
                stream, partition, ..
            } => (stream, *partition),
            StreamCommand::Heartbeat { stream, .. } | StreamCommand::Leave { stream, .. } => {
                (stream, 0)
            }
        }
    }
}

/// A stream command as it sits in the log: the leader's clock and an optional request id (a
/// retried command is applied once).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamEntry {
    pub now_ms: u64,
    pub request_id: Option<RequestId>,
    pub cmd: StreamCommand,
}

/// The acknowledgement of one published message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishAck {
    pub offset: u64,
    /// Whether the dedup id had been seen: nothing was stored, `offset` is the first one's.
    pub duplicate: bool,
}

/// The outcome of a [`StreamCommand`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamResult {
    Done,
    Published(Vec<PublishAck>),
    Assignment(GroupAssignment),
}

/// Where a read starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadFrom {
    /// At this offset (at the first retained one if it was trimmed).
    Offset(u64),
    /// At the first message stamped at or after this time (ms since the epoch).
    Time(u64),
    /// At the oldest retained message.
    Earliest,
    /// At the next offset to be written: only new messages.
    Latest,
}

/// A page of messages.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRead {
    pub messages: Vec<StreamMessage>,
    /// Where to read next.
    pub next_offset: u64,
    /// The oldest retained offset.
    pub first_offset: u64,
    /// The offset the next published message will get.
    pub end_offset: u64,
}

/// One partition's log, dedup ids and committed offsets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// Which incarnation of the stream this belongs to.
    pub uid: u64,
    pub retention: Retention,
    first_offset: u64,
    messages: VecDeque<StreamMessage>,
    bytes: u64,
    /// The largest time seen in an entry.
    clock_ms: u64,
    dedup: BTreeMap<String, u64>,
    /// Dedup ids by the time they were first seen, oldest first.
    dedup_order: VecDeque<(u64, String)>,
    /// Committed offsets by consumer group.
    commits: BTreeMap<String, u64>,
    /// Consumer groups (only in partition 0, the coordinator).
    groups: BTreeMap<String, ConsumerGroup>,
    /// By group: the latest generation a member's commit carried here (the fence).
    fences: BTreeMap<String, u64>,
    /// The largest generation of a group removed here (it lost its last member): a group formed
    /// again under that name starts above it, so its generations never repeat one that a
    /// partition's fence remembers.
    generation_floor: u64,
}

impl PartitionState {
    pub fn new(uid: u64, retention: Retention) -> Self {
        Self {
            uid,
            retention,
            ..Default::default()
        }
    }

    /// The oldest retained offset.
    pub fn first_offset(&self) -> u64 {
        self.first_offset
    }

    /// The offset the next message will get.
    pub fn end_offset(&self) -> u64 {
        self.first_offset + self.messages.len() as u64
    }

    /// Bytes retained.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The partition's clock: the largest time it has seen.
    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    /// Committed offsets by group.
    pub fn commits(&self) -> &BTreeMap<String, u64> {
        &self.commits
    }

    /// Consumer groups coordinated here (partition 0 only).
    pub fn groups(&self) -> &BTreeMap<String, ConsumerGroup> {
        &self.groups
    }

    fn tick_clock(&mut self, now_ms: u64) -> u64 {
        self.clock_ms = self.clock_ms.max(now_ms);
        self.clock_ms
    }

    /// Appends messages; a dedup id seen within the window answers its first offset.
    pub fn publish(&mut self, now_ms: u64, msgs: &[NewMessage]) -> Vec<PublishAck> {
        let now = self.tick_clock(now_ms);
        self.expire_dedup(now);
        let mut acks = Vec::with_capacity(msgs.len());
        for m in msgs {
            if let Some(id) = &m.dedup_id
                && let Some(&offset) = self.dedup.get(id)
            {
                acks.push(PublishAck {
                    offset,
                    duplicate: true,
                });
                continue;
            }
            let offset = self.end_offset();
            let msg = StreamMessage {
                offset,
                timestamp_ms: now,
                key: m.key.clone(),
                payload: m.payload.clone(),
                headers: m.headers.clone(),
            };
            self.bytes += msg.size();
            self.messages.push_back(msg);
            if let Some(id) = &m.dedup_id {
                self.dedup.insert(id.clone(), offset);
                self.dedup_order.push_back((now, id.clone()));
                if self.dedup_order.len() > DEDUP_IDS_MAX
                    && let Some((_, old)) = self.dedup_order.pop_front()
                {
                    self.dedup.remove(&old);
                }
            }
            acks.push(PublishAck {
                offset,
                duplicate: false,
            });
        }
        self.enforce_retention(now);
        acks
    }

    fn expire_dedup(&mut self, now: u64) {
        while let Some((t, _)) = self.dedup_order.front() {
            if t.saturating_add(DEDUP_WINDOW_MS) > now {
                break;
            }
            if let Some((_, id)) = self.dedup_order.pop_front() {
                self.dedup.remove(&id);
            }
        }
    }

    /// Drops the oldest messages the retention no longer keeps as of `now`.
    fn enforce_retention(&mut self, now: u64) {
        let r = &self.retention;
        while let Some(m) = self.messages.front() {
            let too_old = r
                .max_age_ms
                .is_some_and(|a| m.timestamp_ms.saturating_add(a) <= now);
            let too_big = r.max_bytes.is_some_and(|b| self.bytes > b);
            let too_many = r
                .max_messages
                .is_some_and(|c| self.messages.len() as u64 > c);
            if !(too_old || too_big || too_many) {
                break;
            }
            self.bytes -= m.size();
            self.messages.pop_front();
            self.first_offset += 1;
        }
    }

    /// Whether a [`StreamCommand::Tick`] at `now_ms` would change anything (the leader asks
    /// before proposing one, so an idle partition writes nothing).
    pub fn tick_due(&self, now_ms: u64) -> bool {
        let now = self.clock_ms.max(now_ms);
        let r = &self.retention;
        let trim = self.messages.front().is_some_and(|m| {
            r.max_age_ms
                .is_some_and(|a| m.timestamp_ms.saturating_add(a) <= now)
                || r.max_bytes.is_some_and(|b| self.bytes > b)
                || r.max_messages
                    .is_some_and(|c| self.messages.len() as u64 > c)
        });
        let dedup = self
            .dedup_order
            .front()
            .is_some_and(|(t, _)| t.saturating_add(DEDUP_WINDOW_MS) <= now);
        trim || dedup || self.groups.values().any(|g| g.expiry_due(now))
    }

    /// Applies retention and expires silent group members.
    pub fn tick(&mut self, now_ms: u64) {
        let now = self.tick_clock(now_ms);
        self.expire_dedup(now);
        self.enforce_retention(now);
        for g in self.groups.values_mut() {
            g.expire(now);
        }
        self.drop_empty_groups();
    }

    /// Removes the groups left without members, remembering their generations.
    fn drop_empty_groups(&mut self) {
        for g in self.groups.values().filter(|g| g.is_empty()) {
            self.generation_floor = self.generation_floor.max(g.generation);
        }
        self.groups.retain(|_, g| !g.is_empty());
    }

    /// Joins or heartbeats a member of `group`.
    pub fn heartbeat(
        &mut self,
        now_ms: u64,
        group: &str,
        member: &str,
        partitions: u32,
        session_timeout_ms: u64,
    ) -> GroupAssignment {
        let now = self.tick_clock(now_ms);
        for g in self.groups.values_mut() {
            g.expire(now);
        }
        let floor = self.generation_floor;
        let g = self
            .groups
            .entry(group.to_string())
            .or_insert_with(|| ConsumerGroup {
                generation: floor,
                ..Default::default()
            });
        g.heartbeat(now, member, partitions, session_timeout_ms)
    }

    /// Removes a member of `group`; its partitions go to the others.
    pub fn leave(&mut self, now_ms: u64, group: &str, member: &str) {
        self.tick_clock(now_ms);
        if let Some(g) = self.groups.get_mut(group) {
            g.leave(member);
        }
        self.drop_empty_groups();
    }

    /// Stores `group`'s committed offset; refused past the end. A member's commit carries its
    /// `generation` and is refused (`stale_generation`) once a commit of a later generation is
    /// stored: a member rebalanced away cannot move the offset back under the partition's new
    /// owner. A commit without one (a tool resetting the offset) is not fenced.
    pub fn commit(
        &mut self,
        now_ms: u64,
        group: &str,
        offset: u64,
        generation: Option<u64>,
    ) -> Result<(), MeridianError> {
        self.tick_clock(now_ms);
        if offset > self.end_offset() {
            return Err(MeridianError::invalid(format!(
                "cannot commit offset {offset}: the partition ends at {}",
                self.end_offset()
            )));
        }
        if let Some(generation) = generation {
            let fence = self.fences.get(group).copied().unwrap_or(0);
            if generation < fence {
                return Err(MeridianError::new(
                    ErrorCode::StaleGeneration,
                    format!(
                        "group {group} committed in generation {fence} here; generation \
                         {generation} is over (heartbeat to learn the partitions you hold)"
                    ),
                ));
            }
            self.fences.insert(group.to_string(), generation);
        }
        self.commits.insert(group.to_string(), offset);
        Ok(())
    }

    /// By group: the latest generation a member's commit carried here.
    pub fn fences(&self) -> &BTreeMap<String, u64> {
        &self.fences
    }

    /// Reads up to `max_count` messages and about `max_bytes` (at least one message if any).
    pub fn read(&self, from: ReadFrom, max_count: usize, max_bytes: u64) -> StreamRead {
        let start = match from {
            ReadFrom::Offset(o) => o.clamp(self.first_offset, self.end_offset()),
            ReadFrom::Earliest => self.first_offset,
            ReadFrom::Latest => self.end_offset(),
            ReadFrom::Time(t) => {
                self.first_offset + self.messages.partition_point(|m| m.timestamp_ms < t) as u64
            }
        };
        let mut out = Vec::new();
        let mut bytes = 0u64;
        let skip = (start - self.first_offset) as usize;
        for m in self.messages.iter().skip(skip).take(max_count) {
            if !out.is_empty() && bytes + m.size() > max_bytes {
                break;
            }
            bytes += m.size();
            out.push(m.clone());
        }
        StreamRead {
            next_offset: start + out.len() as u64,
            messages: out,
            first_offset: self.first_offset,
            end_offset: self.end_offset(),
        }
    }
}

/// Every stream partition a range hosts, by (stream, partition).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamsState {
    pub partitions: BTreeMap<(String, u32), PartitionState>,
}

impl StreamsState {
    /// The partition, if this range hosts it.
    pub fn partition(&self, stream: &str, partition: u32) -> Option<&PartitionState> {
        self.partitions.get(&(stream.to_string(), partition))
    }

    /// Applies one entry.
    pub fn apply(&mut self, e: &StreamEntry) -> Result<StreamResult, MeridianError> {
        let now = e.now_ms;
        if let StreamCommand::CreatePartition {
            stream,
            partition,
            uid,
            retention,
        } = &e.cmd
        {
            let key = (stream.clone(), *partition);
            match self.partitions.get_mut(&key) {
                Some(p) if p.uid == *uid => p.retention = retention.clone(),
                _ => {
                    let mut p = PartitionState::new(*uid, retention.clone());
                    p.tick_clock(now);
                    self.partitions.insert(key, p);
                }
            }
            return Ok(StreamResult::Done);
        }
        if let StreamCommand::DropPartition { stream, partition } = &e.cmd {
            self.partitions.remove(&(stream.clone(), *partition));
            return Ok(StreamResult::Done);
        }
        let (stream, partition) = e.cmd.target();
        let p = self
            .partitions
            .get_mut(&(stream.to_string(), partition))
            .ok_or_else(|| {
                MeridianError::new(
                    ErrorCode::RangeMoved,
                    format!("partition {stream}/{partition} is not in this range"),
                )
            })?;
        Ok(match &e.cmd {
            StreamCommand::Publish { messages, .. } => {
                StreamResult::Published(p.publish(now, messages))
            }
            StreamCommand::Tick { .. } => {
                p.tick(now);
                StreamResult::Done
            }
            StreamCommand::Heartbeat {
                group,
                member,
                partitions,
                session_timeout_ms,
                ..
            } => StreamResult::Assignment(p.heartbeat(
                now,
                group,
                member,
                *partitions,
                *session_timeout_ms,
            )),
            StreamCommand::Leave { group, member, .. } => {
                p.leave(now, group, member);
                StreamResult::Done
            }
            StreamCommand::Commit {
                group,
                offset,
                generation,
                ..
            } => {
                p.commit(now, group, *offset, *generation)?;
                StreamResult::Done
            }
            StreamCommand::CreatePartition { .. } | StreamCommand::DropPartition { .. } => {
                StreamResult::Done
            }
        })
    }
}

/// The partition a message key goes to: FNV-1a of the key modulo the partition count (stable
/// across versions and machines).
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % u64::from(partitions.max(1))) as u32
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
