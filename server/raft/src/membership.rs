//! Membership, leadership and whole-store operations of a [`RaftNode`].
//!
//! * **Members** join as learners ([`RaftNode::add_learner`]); the leader's autopilot-lite
//!   loop promotes a learner to voter once it has been caught up (within
//!   [`CAUGHT_UP_LAG`] entries of the leader's log) and in contact for
//!   [`PROMOTE_AFTER`]. Learners that joined as `non_voter` are never promoted.
//! * **Active** ([`RaftNode::is_active`]) means more than openraft's "leader": the leader
//!   must also have heard from a quorum of voters recently (check-quorum), so a leader cut
//!   off from the majority stops calling itself active instead of accepting writes it can
//!   never commit.
//! * **Step-down** ([`RaftNode::step_down`]): openraft 0.9 has no leadership transfer, so
//!   the leader stops sending heartbeats, refuses new writes and does not campaign; the
//!   followers' leader lease runs out and one of them is elected (up-to-date logs only, as
//!   Raft requires). Heartbeats and elections come back on once another leader is seen.
//! * **Sealed nodes do not campaign** ([`RaftNode::set_sealed`]): they replicate and vote,
//!   but only an unsealed node becomes leader, so the Raft leader is always a node that
//!   can serve (Vault: the active node is unsealed).
//! * **Entry formats**: [`RaftNode::commit_restore`] writes a format-2 entry only when
//!   every voter advertises format 2 (through the transport's headers); otherwise it holds
//!   the entry back, waiting a bounded time, and then refuses naming the voters that lag.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::{Duration, Instant};

use coffer_storage::StorageError;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};

use crate::batcher::not_leader;
use crate::types::{min_format, Envelope, Node, CURRENT_FORMAT, OP_RESTORE};
use crate::RaftNode;

/// A learner within this many entries of the leader's last log index is caught up.
pub const CAUGHT_UP_LAG: u64 = 32;
/// How long a learner must stay caught up (and in contact) before it is promoted.
pub const PROMOTE_AFTER: Duration = Duration::from_secs(2);
/// A leader that has not heard from a quorum for this long is not active.
pub const QUORUM_LEASE: Duration = Duration::from_millis(2_500);
/// A peer's advertisement older than this does not count (it may have changed).
pub const ADVERTISEMENT_TTL: Duration = Duration::from_secs(5);

/// One member of the current membership.
#[derive(Clone, Debug)]
pub struct Member {
    /// Raft id.
    pub id: u64,
    /// Its addresses and name.
    pub node: Node,
    /// Voter (otherwise a learner).
    pub voter: bool,
}

/// The membership as this node knows it.
#[derive(Clone, Debug)]
pub struct MembershipView {
    /// The log index of the membership entry in effect.
    pub log_index: u64,
    /// Every member, voters and learners, by id.
    pub members: Vec<Member>,
    /// The leader, if known.
    pub leader: Option<u64>,
}

/// What the leader knows about one member's replication and health.
#[derive(Clone, Debug)]
pub struct ServerHealth {
    /// Raft id.
    pub id: u64,
    /// Its addresses and name.
    pub node: Node,
    /// Voter (otherwise a learner).
    pub voter: bool,
    /// Whether it is this node.
    pub is_self: bool,
    /// Whether it is the leader.
    pub leader: bool,
    /// The highest index known to be replicated on it (the leader's own last index for
    /// itself).
    pub last_index: u64,
    /// Time since it was last heard from (zero for this node).
    pub last_contact: Option<Duration>,
    /// What it advertised: sealed, highest entry format.
    pub sealed: Option<bool>,
    /// Highest entry format it advertised.
    pub max_format: Option<u32>,
}

/// A consistent copy of the state machine (ciphertext only).
pub struct ExportedState {
    /// The last applied log index it reflects.
    pub index: u64,
    /// That entry's term.
    pub term: u64,
    /// The pairs in the snapshot payload encoding.
    pub payload: Vec<u8>,
}

fn change_error(
    raft: &crate::Raft,
    e: RaftError<u64, ClientWriteError<u64, Node>>,
) -> StorageError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            not_leader(raft, f.leader_id, f.leader_node)
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            StorageError::Unavailable(e.to_string())
        }
        RaftError::Fatal(e) => StorageError::Unavailable(e.to_string()),
    }
}

impl RaftNode {
    /// The current membership.
    pub fn membership(&self) -> MembershipView {
        let m = self.raft.metrics();
        let m = m.borrow();
        let stored = &m.membership_config;
        let membership = stored.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                node: node.clone(),
                voter: voters.contains(id),
            })
            .collect();
        MembershipView {
            log_index: stored.log_id().map_or(0, |l| l.index),
            members,
            leader: m.current_leader,
        }
    }

    /// Whether this node is the active node: the Raft leader, in contact with a quorum of
    /// voters within [`QUORUM_LEASE`], and not stepping down.
    pub fn is_active(&self) -> bool {
        if self.stepping_down.load(Ordering::Acquire) {
            return false;
        }
        let m = self.raft.metrics();
        let m = m.borrow();
        if m.state != ServerState::Leader || m.current_leader != Some(self.id) {
            return false;
        }
        // Not before the leader applied an entry of its own term (its first, blank
        // entry): until then its state machine may lack entries committed earlier.
        if m.last_applied
            .is_none_or(|l| l.leader_id.term != m.current_term)
        {
            return false;
        }
        if m.membership_config.membership().voter_ids().count() <= 1 {
            return true;
        }
        m.millis_since_quorum_ack
            .is_some_and(|ms| Duration::from_millis(ms) <= QUORUM_LEASE)
    }

    /// Add `node` as a learner (replication starts at once; the call does not wait for it
    /// to catch up). Returns the membership entry's log index.
    pub async fn add_learner(&self, id: u64, node: Node) -> Result<u64, StorageError> {
        self.check_running()?;
        let resp = self
            .raft
            .add_learner(id, node, false)
            .await
            .map_err(|e| change_error(&self.raft, e))?;
        Ok(resp.log_id.index)
    }

    /// Make the learner `id` a voter.
    pub async fn promote(&self, id: u64) -> Result<(), StorageError> {
        self.check_running()?;
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(|e| change_error(&self.raft, e))?;
        Ok(())
    }

    /// Remove member `id` (voter or learner). The leader cannot remove itself: step down
    /// first.
    pub async fn remove_member(&self, id: u64) -> Result<(), StorageError> {
        self.check_running()?;
        let view = self.membership();
        let Some(member) = view.members.iter().find(|m| m.id == id) else {
            return Err(StorageError::Unavailable(format!(
                "{id} is not a member of the cluster"
            )));
        };
        if id == self.id {
            return Err(StorageError::Unavailable(
                "the active node cannot remove itself; step down first".into(),
            ));
        }
        let change = if member.voter {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(|e| change_error(&self.raft, e))?;
        Ok(())
    }

    /// Tell the cluster (and openraft) whether this node is sealed: a sealed node never
    /// campaigns for leadership.
    pub fn set_sealed(&self, sealed: bool) {
        self.transport.set_sealed(sealed);
        let elect = !sealed && !self.stepping_down.load(Ordering::Acquire);
        self.raft.runtime_config().elect(elect);
    }

    /// Give up leadership (see the module docs). Waits up to `timeout` for another leader.
    pub async fn step_down(&self, timeout: Duration) -> Result<u64, StorageError> {
        self.check_running()?;
        if !self.is_leader() {
            return Err(not_leader(
                &self.raft,
                self.leader().map(|(id, _)| id),
                None,
            ));
        }
        let voters = self.membership().members.iter().filter(|m| m.voter).count();
        if voters <= 1 {
            return Err(StorageError::Unavailable(
                "this is the only voter; there is no other node to take over".into(),
            ));
        }
        if self.stepping_down.swap(true, Ordering::AcqRel) {
            return Err(StorageError::Unavailable("already stepping down".into()));
        }
        tracing::info!(node_id = self.id, "stepping down as leader");
        let rc = self.raft.runtime_config();
        rc.heartbeat(false);
        rc.elect(false);
        let me = self.id;
        let outcome = self
            .raft
            .wait(Some(timeout))
            .metrics(
                |m| m.current_leader.is_some_and(|l| l != me),
                "another leader",
            )
            .await;
        rc.heartbeat(true);
        self.stepping_down.store(false, Ordering::Release);
        rc.elect(!self.transport.sealed());
        match outcome {
            Ok(m) => {
                let leader = m.current_leader.unwrap_or_default();
                tracing::info!(node_id = self.id, new_leader = leader, "stepped down");
                Ok(leader)
            }
            Err(e) => Err(StorageError::Unavailable(format!(
                "no other node took over: {e}"
            ))),
        }
    }

    /// Voters (other than this node) that have not recently advertised support for
    /// `format`.
    pub fn format_holdouts(&self, format: u32) -> Vec<(u64, Option<u32>)> {
        let mut out = Vec::new();
        for m in self.membership().members.iter().filter(|m| m.voter) {
            let advertised = if m.id == self.id {
                Some(self.transport.max_format())
            } else {
                self.transport
                    .peer(m.id)
                    .filter(|p| p.last_contact.elapsed() <= ADVERTISEMENT_TTL)
                    .map(|p| p.max_format)
            };
            if advertised.is_none_or(|f| f < format) {
                out.push((m.id, advertised));
            }
        }
        out
    }

    /// Replace the whole replicated store with a snapshot payload (from
    /// [`RaftNode::export_snapshot`]), as one format-2 log entry. The entry is held back
    /// (up to `hold_back`) until every voter understands format 2; after that it is
    /// refused. Returns the entry's index once applied here.
    pub async fn commit_restore(
        &self,
        payload: Vec<u8>,
        hold_back: Duration,
    ) -> Result<u64, StorageError> {
        self.check_running()?;
        crate::state_machine::validate_payload(&payload)?;
        let format = min_format(OP_RESTORE).unwrap_or(CURRENT_FORMAT);
        let deadline = Instant::now() + hold_back;
        loop {
            if !self.is_active() {
                return Err(not_leader(
                    &self.raft,
                    self.leader().map(|(id, _)| id),
                    None,
                ));
            }
            let holdouts = self.format_holdouts(format);
            if holdouts.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                let who: Vec<String> = holdouts
                    .iter()
                    .map(|(id, f)| match f {
                        Some(f) => format!("{id} (format {f})"),
                        None => format!("{id} (format unknown)"),
                    })
                    .collect();
                tracing::warn!(
                    format,
                    voters = %who.join(", "),
                    "holding back a log entry format that not every voter understands"
                );
                return Err(StorageError::Unavailable(format!(
                    "log entry format {format} is held back: not every voter understands it \
                     yet ({}); upgrade them first",
                    who.join(", ")
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let resp = self
            .raft
            .client_write(Envelope::restore(payload))
            .await
            .map_err(|e| change_error(&self.raft, e))?;
        Ok(resp.log_id.index)
    }

    /// A consistent copy of the local state machine (ciphertext only).
    pub fn export_snapshot(&self) -> Result<ExportedState, StorageError> {
        self.check_running()?;
        let (last, payload) = self.sm.export_payload()?;
        Ok(ExportedState {
            index: last.map_or(0, |l| l.index),
            term: last.map_or(0, |l| l.leader_id.term),
            payload,
        })
    }

    /// The current term and this node's last log index.
    pub fn term_and_last_index(&self) -> (u64, u64) {
        let m = self.raft.metrics();
        let m = m.borrow();
        (m.current_term, m.last_log_index.unwrap_or(0))
    }

    /// Replication and health of every member, as this node knows it (complete on the
    /// leader; followers know no replication progress).
    pub fn servers(&self) -> Vec<ServerHealth> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let own_last = m.last_log_index.unwrap_or(0);
        membership
            .nodes()
            .map(|(id, node)| {
                let is_self = *id == self.id;
                let peer = self.transport.peer(*id);
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id).cloned().flatten())
                    .map(|l| l.index);
                ServerHealth {
                    id: *id,
                    node: node.clone(),
                    voter: voters.contains(id),
                    is_self,
                    leader: m.current_leader == Some(*id),
                    last_index: if is_self {
                        own_last
                    } else {
                        matched.unwrap_or(0)
                    },
                    last_contact: if is_self {
                        Some(Duration::ZERO)
                    } else {
                        peer.map(|p| p.last_contact.elapsed())
                    },
                    sealed: if is_self {
                        Some(self.transport.sealed())
                    } else {
                        peer.map(|p| p.sealed)
                    },
                    max_format: if is_self {
                        Some(self.transport.max_format())
                    } else {
                        peer.map(|p| p.max_format)
                    },
                }
            })
            .collect()
    }
}

/// The leader's autopilot-lite: promote caught-up learners (see the module docs). Runs
/// until the node is dropped or shut down.
pub(crate) async fn autopilot(node: Weak<RaftNode>) {
    let mut caught_up_since: HashMap<u64, Instant> = HashMap::new();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(node) = node.upgrade() else { return };
        if node.stopped.load(Ordering::Acquire) {
            return;
        }
        if !node.is_active() {
            caught_up_since.clear();
            continue;
        }
        let (_, last) = node.term_and_last_index();
        let candidates: Vec<(u64, bool)> = node
            .servers()
            .into_iter()
            .filter(|s| !s.voter && !s.node.non_voter)
            .map(|s| {
                let fresh = s.last_contact.is_some_and(|c| c <= Duration::from_secs(2));
                (s.id, fresh && s.last_index + CAUGHT_UP_LAG >= last)
            })
            .collect();
        caught_up_since.retain(|id, _| candidates.iter().any(|(c, ok)| c == id && *ok));
        for (id, ok) in candidates {
            if !ok {
                continue;
            }
            let since = *caught_up_since.entry(id).or_insert_with(Instant::now);
            if since.elapsed() < PROMOTE_AFTER {
                continue;
            }
            match node.promote(id).await {
                Ok(()) => {
                    tracing::info!(
                        node_id = id,
                        "autopilot: promoted a caught-up learner to voter"
                    );
                    caught_up_since.remove(&id);
                }
                Err(e) => tracing::debug!(node_id = id, "autopilot: promotion deferred: {e}"),
            }
        }
    }
}
