//! Event streams on a node: the catalogue (create, delete, list through the meta group),
//! publishing (a key picks the partition), reading and long-polling a partition on its leader,
//! and consumer groups (membership on partition 0, committed offsets on each partition).
//!
//! Every stream command is stamped with the leader's clock when it is proposed; the partition
//! state (`meridian_state::stream`) never reads a clock.

use crate::messages::{GroupOp, GroupReply};
use crate::node::Node;
use meridian_consensus::RaftGroup;
use meridian_state::meta_system::validate_stream_name;
use meridian_state::stream::*;
use meridian_state::stream_group::GroupAssignment;
use meridian_state::{Command, CommandResult, MetaCommand, StreamSpec};
use meridian_types::{ErrorCode, GroupId, MeridianError, RequestId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

mod groups;

/// Most messages one read returns.
pub const READ_COUNT_MAX: u32 = 10_000;
/// Most bytes one read returns (at least one message is always returned).
pub const READ_BYTES_MAX: u64 = 4 << 20;
/// Longest long poll.
pub const WAIT_MAX: Duration = Duration::from_secs(60);

/// What `stream create` asks for.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CreateStreamRequest {
    pub name: String,
    pub partitions: u32,
    pub retention: Retention,
    /// A placement rule's prefix the partitions' ranges follow.
    pub placement: Option<Vec<u8>>,
    /// Put every partition in the key-value range holding this key.
    pub colocate: Option<Vec<u8>>,
}

/// A read of one partition, served by its leader.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PartitionReadRequest {
    pub stream: String,
    pub partition: u32,
    pub from: ReadFrom,
    /// Start at this group's committed offset (at `from` if it has none).
    pub group: Option<String>,
    pub max_count: u32,
    pub max_bytes: u64,
    /// Wait up to this long while there is nothing to read.
    pub wait_ms: u64,
}

/// One partition's summary, from its leader.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PartitionInfo {
    pub partition: u32,
    pub range: u64,
    pub first_offset: u64,
    pub end_offset: u64,
    pub bytes: u64,
    pub commits: BTreeMap<String, u64>,
    /// Consumer groups (partition 0 only): generation and each member's partitions.
    pub groups: BTreeMap<String, GroupInfo>,
}

/// A consumer group as its coordinator holds it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GroupInfo {
    pub generation: u64,
    pub members: BTreeMap<String, Vec<u32>>,
}

/// A stream and its partitions.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StreamView {
    pub spec: StreamSpec,
    pub partitions: Vec<PartitionInfo>,
}

/// The acknowledgement of one published message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub partition: u32,
    pub offset: u64,
    pub duplicate: bool,
}

/// A member's view of its group after a heartbeat.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberAssignment {
    pub generation: u64,
    pub members: u32,
    /// Its partitions with the group's committed offset on each (where to read from).
    pub partitions: Vec<(u32, Option<u64>)>,
}

/// A consumer group's status: members, and per partition the committed offset and the lag.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GroupStatus {
    pub stream: String,
    pub group: String,
    pub generation: u64,
    pub members: BTreeMap<String, Vec<u32>>,
    /// `(partition, committed, end_offset, lag)`.
    pub partitions: Vec<(u32, Option<u64>, u64, u64)>,
    pub lag: u64,
}

/// Parses a retention: comma-separated limits of age (`7d`, `12h`, `30m`, `90s`, `500ms`),
/// bytes (`10GB`, `512MB`, `1KB`, `100B`; powers of 1024) and messages (`1M-msgs`, `500k-msgs`,
/// `42-msgs`). Empty or `forever` keeps everything.
pub fn parse_retention(s: &str) -> Result<Retention, MeridianError> {
    let mut r = Retention::default();
    let bad = |part: &str| {
        MeridianError::invalid(format!(
            "bad retention {part:?}: use an age (7d, 12h, 30m, 90s), a size (10GB, 512MB) or a \
             count (1M-msgs), comma-separated"
        ))
    };
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part == "forever" {
            continue;
        }
        let split = part
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(part.len());
        let (digits, unit) = part.split_at(split);
        let n: u64 = digits.parse().map_err(|_| bad(part))?;
        let mul = |m: u64| n.checked_mul(m).ok_or_else(|| bad(part));
        match unit.to_ascii_lowercase().as_str() {
            "ms" => r.max_age_ms = Some(n),
            "s" => r.max_age_ms = Some(mul(1_000)?),
            "m" => r.max_age_ms = Some(mul(60_000)?),
            "h" => r.max_age_ms = Some(mul(3_600_000)?),
            "d" => r.max_age_ms = Some(mul(86_400_000)?),
            "b" => r.max_bytes = Some(n),
            "kb" | "kib" => r.max_bytes = Some(mul(1 << 10)?),
            "mb" | "mib" => r.max_bytes = Some(mul(1 << 20)?),
            "gb" | "gib" => r.max_bytes = Some(mul(1 << 30)?),
            "tb" | "tib" => r.max_bytes = Some(mul(1 << 40)?),
            "-msgs" => r.max_messages = Some(n),
            "k-msgs" => r.max_messages = Some(mul(1_000)?),
            "m-msgs" => r.max_messages = Some(mul(1_000_000)?),
            "g-msgs" | "b-msgs" => r.max_messages = Some(mul(1_000_000_000)?),
            _ => return Err(bad(part)),
        }
    }
    Ok(r)
}

/// The stream operations of a node, for the client protocols. Cheap to clone.
#[derive(Clone)]
pub struct Streams {
    node: Node,
}

impl Node {
    /// This node's stream operations.
    pub fn streams(&self) -> Streams {
        Streams { node: self.clone() }
    }
}

fn unexpected(r: impl std::fmt::Debug) -> MeridianError {
    MeridianError::internal(format!("unexpected reply {r:?}"))
}

impl Streams {
    /// The stream's spec. A stream this node's replica of the map does not know yet may have
    /// just been created through another node, or this node may have just restarted: wait a
    /// moment for the map to catch up before answering `stream_not_found`.
    pub async fn spec(&self, name: &str) -> Result<StreamSpec, MeridianError> {
        crate::node::catalogue_lookup(ErrorCode::StreamNotFound, || self.spec_now(name)).await
    }

    /// The stream's spec in this node's map as it is (`stream_not_found` if none).
    pub fn spec_now(&self, name: &str) -> Result<StreamSpec, MeridianError> {
        self.node
            .known_map()?
            .streams
            .get(name)
            .cloned()
            .ok_or_else(|| {
                MeridianError::new(
                    ErrorCode::StreamNotFound,
                    format!("no stream named {name:?}"),
                )
            })
    }

    /// Every stream, by name.
    pub fn list(&self) -> Result<Vec<StreamSpec>, MeridianError> {
        Ok(self.node.known_map()?.streams.values().cloned().collect())
    }

    /// Creates a stream: its ranges, its catalogue entry, then each partition in its range.
    pub async fn create(&self, req: CreateStreamRequest) -> Result<StreamSpec, MeridianError> {
        validate_stream_name(&req.name)?;
        if req.partitions == 0 || req.partitions > PARTITIONS_MAX {
            return Err(MeridianError::invalid(format!(
                "a stream has 1 to {PARTITIONS_MAX} partitions"
            )));
        }
        if self.node.known_map()?.streams.contains_key(&req.name) {
            return Err(MeridianError::invalid(format!(
                "stream {} already exists",
                req.name
            )));
        }
        self.node.ensure_meta_holds_map().await?;
        let ranges = self
            .node
            .allocate_object_ranges_placed(
                req.partitions as usize,
                req.colocate.as_deref(),
                req.placement.clone(),
            )
            .await?;
        let spec = StreamSpec {
            name: req.name.clone(),
            uid: meridian_types::rng::next_u128() as u64 | 1,
            partitions: req.partitions,
            ranges,
            retention: req.retention,
            placement: req.placement,
            colocate: req.colocate,
        };
        self.node
            .execute(
                GroupId::META,
                GroupOp::Meta(MetaCommand::CreateStream(spec.clone())),
            )
            .await?;
        // Create the partitions now; the leaders' maintenance would otherwise do it.
        let creates = (0..spec.partitions).map(|p| {
            let cmd = StreamCommand::CreatePartition {
                stream: spec.name.clone(),
                partition: p,
                uid: spec.uid,
                retention: spec.retention.clone(),
            };
            self.command(spec.ranges[p as usize].group(), cmd, None)
        });
        for r in futures::future::join_all(creates).await {
            r?;
        }
        Ok(spec)
    }

    /// Deletes a stream; its system ranges go away with it. `Ok(false)` if there was none.
    pub async fn delete(&self, name: &str) -> Result<bool, MeridianError> {
        let Ok(spec) = self.spec(name).await else {
            return Ok(false);
        };
        self.node
            .execute(
                GroupId::META,
                GroupOp::Meta(MetaCommand::DeleteStream {
                    name: name.to_string(),
                }),
            )
            .await?;
        // Colocated partitions live on in their key-value range: drop them there.
        if spec.colocate.is_some() {
            for (p, range) in spec.ranges.iter().enumerate() {
                let cmd = StreamCommand::DropPartition {
                    stream: spec.name.clone(),
                    partition: p as u32,
                };
                self.command(range.group(), cmd, None).await?;
            }
        }
        Ok(true)
    }

    /// The stream and every partition's offsets and consumers.
    pub async fn view(&self, name: &str) -> Result<StreamView, MeridianError> {
        let spec = self.spec(name).await?;
        let infos = (0..spec.partitions).map(|p| self.partition_info(&spec, p));
        let partitions = futures::future::try_join_all(infos).await?;
        Ok(StreamView { spec, partitions })
    }

    async fn partition_info(
        &self,
        spec: &StreamSpec,
        partition: u32,
    ) -> Result<PartitionInfo, MeridianError> {
        let op = GroupOp::StreamInfo {
            stream: spec.name.clone(),
            partition,
        };
        match self
            .node
            .execute(spec.ranges[partition as usize].group(), op)
            .await?
        {
            GroupReply::StreamInfo(i) => Ok(i),
            other => Err(unexpected(other)),
        }
    }

    async fn command(
        &self,
        group: GroupId,
        cmd: StreamCommand,
        request_id: Option<RequestId>,
    ) -> Result<StreamResult, MeridianError> {
        match self
            .node
            .execute(group, GroupOp::Stream { cmd, request_id })
            .await?
        {
            GroupReply::Stream(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// Publishes messages: to `partition` if given, else each to the partition its key hashes
    /// to, else all to one partition picked at random. Acknowledged once committed on a quorum;
    /// the acks are in the order of `messages`.
    pub async fn publish(
        &self,
        stream: &str,
        partition: Option<u32>,
        messages: Vec<NewMessage>,
        request_id: Option<RequestId>,
    ) -> Result<Vec<Published>, MeridianError> {
        let spec = self.spec(stream).await?;
        self.check_messages(&messages)?;
        if let Some(p) = partition
            && p >= spec.partitions
        {
            return Err(MeridianError::invalid(format!(
                "stream {stream} has partitions 0 to {}",
                spec.partitions - 1
            )));
        }
        let base = request_id
            .map(|r| r.0)
            .unwrap_or_else(meridian_types::rng::next_u128);
        if let Some(p) = partition {
            // One partition (the common case): no grouping, one command.
            return self.publish_to(&spec, p, messages, base).await;
        }
        let random = (meridian_types::rng::next_u128() % u128::from(spec.partitions)) as u32;
        let mut by_partition: BTreeMap<u32, Vec<(usize, NewMessage)>> = BTreeMap::new();
        for (i, m) in messages.into_iter().enumerate() {
            let p = match &m.key {
                Some(k) => partition_for_key(k, spec.partitions),
                None => random,
            };
            by_partition.entry(p).or_default().push((i, m));
        }
        let sends = by_partition.into_iter().map(|(p, batch)| {
            let spec = &spec;
            async move {
                let (idx, msgs): (Vec<usize>, Vec<NewMessage>) = batch.into_iter().unzip();
                let published = self.publish_to(spec, p, msgs, base).await?;
                Ok::<_, MeridianError>(idx.into_iter().zip(published).collect::<Vec<_>>())
            }
        });
        let mut all: Vec<(usize, Published)> = futures::future::try_join_all(sends)
            .await?
            .into_iter()
            .flatten()
            .collect();
        all.sort_by_key(|(i, _)| *i);
        Ok(all.into_iter().map(|(_, p)| p).collect())
    }

    /// Publishes `messages` to partition `p` as one command, with request id `base + p` (as
    /// [`Self::publish`] numbers the commands of a request).
    async fn publish_to(
        &self,
        spec: &StreamSpec,
        p: u32,
        messages: Vec<NewMessage>,
        base: u128,
    ) -> Result<Vec<Published>, MeridianError> {
        let cmd = StreamCommand::Publish {
            stream: spec.name.clone(),
            partition: p,
            messages,
        };
        let rid = RequestId(base.wrapping_add(u128::from(p)));
        match self
            .command(spec.ranges[p as usize].group(), cmd, Some(rid))
            .await?
        {
            StreamResult::Published(acks) => Ok(acks
                .into_iter()
                .map(|a| Published {
                    partition: p,
                    offset: a.offset,
                    duplicate: a.duplicate,
                })
                .collect()),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) fn check_messages(&self, messages: &[NewMessage]) -> Result<(), MeridianError> {
        let limits = &self.node.inner.cfg.limits;
        if messages.is_empty() || messages.len() > PUBLISH_BATCH_MAX {
            return Err(MeridianError::invalid(format!(
                "publish 1 to {PUBLISH_BATCH_MAX} messages at once"
            )));
        }
        let mut total = 0usize;
        for m in messages {
            let size = m.payload.len()
                + m.key.as_ref().map_or(0, Vec::len)
                + m.headers
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>();
            if size > limits.value_bytes_max {
                return Err(MeridianError::new(
                    ErrorCode::ValueTooLarge,
                    format!(
                        "a message of {size} bytes is over the limit of {}",
                        limits.value_bytes_max
                    ),
                ));
            }
            if m.dedup_id
                .as_ref()
                .is_some_and(|d| d.len() > NAME_BYTES_MAX)
            {
                return Err(MeridianError::invalid(format!(
                    "a dedup id is at most {NAME_BYTES_MAX} bytes"
                )));
            }
            total += size;
        }
        if total > limits.request_bytes_max {
            return Err(MeridianError::new(
                ErrorCode::RequestTooLarge,
                format!(
                    "a batch of {total} bytes is over the limit of {}",
                    limits.request_bytes_max
                ),
            ));
        }
        Ok(())
    }

    /// Reads one partition from its leader; with `wait_ms`, waits that long for a message when
    /// there is none (a long poll).
    pub async fn read(&self, mut req: PartitionReadRequest) -> Result<StreamRead, MeridianError> {
        let spec = self.spec(&req.stream).await?;
        if req.partition >= spec.partitions {
            return Err(MeridianError::invalid(format!(
                "stream {} has partitions 0 to {}",
                spec.name,
                spec.partitions - 1
            )));
        }
        req.max_count = req.max_count.clamp(1, READ_COUNT_MAX);
        req.max_bytes = req.max_bytes.clamp(1, READ_BYTES_MAX);
        let total = Duration::from_millis(req.wait_ms).min(WAIT_MAX);
        let deadline = Instant::now() + total;
        // Each call waits at most part of the request timeout; loop for the rest.
        let per_call = self.node.inner.cfg.request_timeout / 2;
        let group = spec.ranges[req.partition as usize].group();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut call = req.clone();
            call.wait_ms = left.min(per_call).as_millis() as u64;
            let r = match self.node.execute(group, GroupOp::StreamRead(call)).await? {
                GroupReply::StreamRead(r) => r,
                other => return Err(unexpected(other)),
            };
            if !r.messages.is_empty() || Instant::now() >= deadline {
                return Ok(r);
            }
            // Nothing yet: go on from where that read ended.
            req.from = ReadFrom::Offset(r.next_offset);
            req.group = None;
        }
    }
}

fn check_name(s: &str, what: &str) -> Result<(), MeridianError> {
    if s.is_empty() || s.len() > NAME_BYTES_MAX {
        return Err(MeridianError::invalid(format!(
            "a {what} name is 1 to {NAME_BYTES_MAX} bytes"
        )));
    }
    Ok(())
}

impl Node {
    /// Serves a stream operation on this node's replica of `group` (the leader).
    pub(crate) async fn execute_stream_local(
        &self,
        g: &RaftGroup,
        group: GroupId,
        op: GroupOp,
    ) -> Result<GroupReply, MeridianError> {
        if !g.is_leader() {
            return Err(MeridianError::not_leader(group, g.leader()));
        }
        match op {
            GroupOp::Stream { cmd, request_id } => {
                if !matches!(
                    cmd,
                    StreamCommand::CreatePartition { .. } | StreamCommand::DropPartition { .. }
                ) {
                    let (stream, partition) = cmd.target();
                    self.ensure_partition(g, group, stream, partition).await?;
                }
                let publish = match &cmd {
                    StreamCommand::Publish { messages, .. } => Some((
                        messages.len() as u64,
                        messages.iter().map(|m| m.payload.len() as u64).sum::<u64>(),
                    )),
                    _ => None,
                };
                let r = if publish.is_some() {
                    self.propose_stream_batched(g, cmd, request_id).await?
                } else {
                    self.propose_stream(g, cmd, request_id).await?
                };
                if let (Some((n, bytes)), StreamResult::Published(acks)) = (publish, &r) {
                    let m = &self.inner.metrics.streams;
                    let dups = acks.iter().filter(|a| a.duplicate).count() as u64;
                    m.published_messages.inc_by(n - dups);
                    m.published_bytes.inc_by(bytes);
                    m.duplicates.inc_by(dups);
                }
                Ok(GroupReply::Stream(r))
            }
            GroupOp::StreamRead(req) => {
                g.read_barrier(true).await?;
                let deadline = Instant::now() + Duration::from_millis(req.wait_ms);
                let mut from = match (&req.group, req.from) {
                    (Some(grp), from) => g
                        .read(|s| {
                            s.streams
                                .partition(&req.stream, req.partition)
                                .and_then(|p| p.commits().get(grp).copied())
                        })
                        .map(ReadFrom::Offset)
                        .unwrap_or(from),
                    (None, from) => from,
                };
                loop {
                    let (r, applied) = g.read_at(|s| {
                        s.streams
                            .partition(&req.stream, req.partition)
                            .map(|p| p.read(from, req.max_count as usize, req.max_bytes))
                            .unwrap_or_default()
                    });
                    let left = deadline.saturating_duration_since(Instant::now());
                    if !r.messages.is_empty() || left.is_zero() {
                        self.inner
                            .metrics
                            .streams
                            .read_messages
                            .inc_by(r.messages.len() as u64);
                        return Ok(GroupReply::StreamRead(r));
                    }
                    // `Latest` and times resolve once: then wait for the next offset.
                    from = ReadFrom::Offset(r.next_offset);
                    g.wait_applied_past(applied, left).await;
                }
            }
            GroupOp::StreamInfo { stream, partition } => {
                g.read_barrier(true).await?;
                Ok(GroupReply::StreamInfo(g.read(|s| {
                    let mut info = PartitionInfo {
                        partition,
                        range: group.0,
                        ..Default::default()
                    };
                    if let Some(p) = s.streams.partition(&stream, partition) {
                        info.first_offset = p.first_offset();
                        info.end_offset = p.end_offset();
                        info.bytes = p.bytes();
                        info.commits = p.commits().clone();
                        info.groups = p
                            .groups()
                            .iter()
                            .map(|(name, cg)| {
                                let gi = GroupInfo {
                                    generation: cg.generation,
                                    members: cg.assignments(),
                                };
                                (name.clone(), gi)
                            })
                            .collect();
                    }
                    info
                })))
            }
            other => Err(unexpected(other)),
        }
    }

    /// Proposes one stream command stamped with this leader's clock.
    pub(crate) async fn propose_stream(
        &self,
        g: &RaftGroup,
        cmd: StreamCommand,
        request_id: Option<RequestId>,
    ) -> Result<StreamResult, MeridianError> {
        let entry = StreamEntry {
            now_ms: self.inner.cfg.clock.now_ms(),
            request_id,
            cmd,
        };
        match g.propose(Command::Stream(entry)).await? {
            CommandResult::Stream(r) => r,
            other => Err(unexpected(other)),
        }
    }

    /// Creates the partition in this range if the map lists it here and the range lacks it (a
    /// creator that stopped half-way, or a stream created again under the same name).
    pub(crate) async fn ensure_partition(
        &self,
        g: &RaftGroup,
        group: GroupId,
        stream: &str,
        partition: u32,
    ) -> Result<(), MeridianError> {
        let spec = self
            .map_arc()
            .and_then(|m| m.streams.get(stream).cloned())
            .filter(|s| s.ranges.get(partition as usize).map(|r| r.group()) == Some(group))
            .ok_or_else(|| {
                MeridianError::new(
                    ErrorCode::RangeMoved,
                    format!("partition {stream}/{partition} is not known in range {group} yet"),
                )
            })?;
        let have = g.read(|s| s.streams.partition(stream, partition).map(|p| p.uid));
        if have == Some(spec.uid) {
            return Ok(());
        }
        let cmd = StreamCommand::CreatePartition {
            stream: stream.to_string(),
            partition,
            uid: spec.uid,
            retention: spec.retention.clone(),
        };
        self.propose_stream(g, cmd, None).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_forms() {
        let r = parse_retention("7d").unwrap();
        assert_eq!(r.max_age_ms, Some(7 * 86_400_000));
        let r = parse_retention("10GB, 1M-msgs").unwrap();
        assert_eq!(r.max_bytes, Some(10 << 30));
        assert_eq!(r.max_messages, Some(1_000_000));
        assert_eq!(parse_retention("").unwrap(), Retention::default());
        assert_eq!(parse_retention("forever").unwrap(), Retention::default());
        assert_eq!(parse_retention("42-msgs").unwrap().max_messages, Some(42));
        for bad in ["7", "d", "7 weeks", "-1d", "99999999999999999999d"] {
            assert!(parse_retention(bad).is_err(), "{bad}");
        }
    }
}
