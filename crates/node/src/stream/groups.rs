//! Consumer groups of a stream: join/heartbeat and leave at the coordinator (partition 0),
//! fenced commits in each partition's range, and a group's status.

use super::*;

impl Streams {
    /// Joins or heartbeats `member` of `group`; answers its partitions and where to read them
    /// from (the group's committed offsets).
    pub async fn heartbeat(
        &self,
        stream: &str,
        group: &str,
        member: &str,
        session_timeout_ms: u64,
    ) -> Result<MemberAssignment, MeridianError> {
        let spec = self.spec(stream).await?;
        check_name(group, "group")?;
        check_name(member, "member")?;
        let cmd = StreamCommand::Heartbeat {
            stream: stream.to_string(),
            group: group.to_string(),
            member: member.to_string(),
            partitions: spec.partitions,
            session_timeout_ms,
        };
        let a: GroupAssignment = match self.command(spec.ranges[0].group(), cmd, None).await? {
            StreamResult::Assignment(a) => a,
            other => return Err(unexpected(other)),
        };
        let infos = a.partitions.iter().map(|p| self.partition_info(&spec, *p));
        let infos = futures::future::try_join_all(infos).await?;
        Ok(MemberAssignment {
            generation: a.generation,
            members: a.members,
            partitions: infos
                .into_iter()
                .map(|i| (i.partition, i.commits.get(group).copied()))
                .collect(),
        })
    }

    /// Removes `member` from `group`; the others take its partitions on their next heartbeat.
    pub async fn leave(
        &self,
        stream: &str,
        group: &str,
        member: &str,
    ) -> Result<(), MeridianError> {
        let spec = self.spec(stream).await?;
        let cmd = StreamCommand::Leave {
            stream: stream.to_string(),
            group: group.to_string(),
            member: member.to_string(),
        };
        self.command(spec.ranges[0].group(), cmd, None).await?;
        Ok(())
    }

    /// Stores `group`'s committed offset on `partition`: the next offset it will read.
    ///
    /// With `fence = (member, generation)` (what a member's heartbeat answered) the commit is
    /// fenced: refused with `stale_generation` unless the coordinator's group is still at that
    /// generation with the partition assigned to the member, and refused by the partition once
    /// a commit of a later generation has landed there (a check at the coordinator and the
    /// commit in the partition's range are two steps; the partition's fence closes the gap, so
    /// a member rebalanced away never moves the offset back under the new owner). Without a
    /// fence the commit is stored as asked (a tool resetting a group's offset).
    pub async fn commit(
        &self,
        stream: &str,
        group: &str,
        partition: u32,
        offset: u64,
        fence: Option<(&str, u64)>,
    ) -> Result<(), MeridianError> {
        let spec = self.spec(stream).await?;
        check_name(group, "group")?;
        if partition >= spec.partitions {
            return Err(MeridianError::invalid(format!(
                "stream {stream} has partitions 0 to {}",
                spec.partitions - 1
            )));
        }
        let generation = match fence {
            None => None,
            Some((member, generation)) => {
                check_name(member, "member")?;
                let coordinator = self.partition_info(&spec, 0).await?;
                check_fence(
                    coordinator.groups.get(group),
                    group,
                    member,
                    generation,
                    partition,
                )?;
                Some(generation)
            }
        };
        let cmd = StreamCommand::Commit {
            stream: stream.to_string(),
            partition,
            group: group.to_string(),
            offset,
            generation,
        };
        self.command(spec.ranges[partition as usize].group(), cmd, None)
            .await?;
        Ok(())
    }

    /// A group's members, assignment, committed offsets and lag.
    pub async fn group_status(
        &self,
        stream: &str,
        group: &str,
    ) -> Result<GroupStatus, MeridianError> {
        let v = self.view(stream).await?;
        let g = v
            .partitions
            .first()
            .and_then(|p| p.groups.get(group))
            .cloned()
            .unwrap_or_default();
        let partitions: Vec<(u32, Option<u64>, u64, u64)> = v
            .partitions
            .iter()
            .map(|p| {
                let c = p.commits.get(group).copied();
                let lag = p.end_offset
                    - c.unwrap_or(p.first_offset)
                        .clamp(p.first_offset, p.end_offset);
                (p.partition, c, p.end_offset, lag)
            })
            .collect();
        Ok(GroupStatus {
            stream: stream.to_string(),
            group: group.to_string(),
            generation: g.generation,
            members: g.members,
            lag: partitions.iter().map(|p| p.3).sum(),
            partitions,
        })
    }
}

/// Whether `member` may commit `partition` in `generation`, by the coordinator's `group`.
fn check_fence(
    group: Option<&GroupInfo>,
    name: &str,
    member: &str,
    generation: u64,
    partition: u32,
) -> Result<(), MeridianError> {
    let stale = |why: String| MeridianError::new(ErrorCode::StaleGeneration, why);
    let Some(g) = group else {
        return Err(stale(format!(
            "group {name} has no members: heartbeat to join it before committing"
        )));
    };
    if g.generation != generation {
        return Err(stale(format!(
            "group {name} is at generation {}, not {generation}: heartbeat to learn the \
             partitions you hold",
            g.generation
        )));
    }
    if !g
        .members
        .get(member)
        .is_some_and(|ps| ps.contains(&partition))
    {
        return Err(stale(format!(
            "partition {partition} is not assigned to member {member} of group {name} in \
             generation {generation}"
        )));
    }
    Ok(())
}
