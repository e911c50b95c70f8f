//! Group commit of client writes.
//!
//! openraft 0.9's core handles one client write at a time and waits for each log append
//! to be flushed before it takes the next one, so N concurrent `client_write`s would cost
//! N fsyncs in a row. Instead, [`Batcher`] feeds every [`coffer_storage::Backend::commit`]
//! through one task: while one log entry is being written, the batches that arrive queue
//! up, and the next entry carries all of them, concatenated in arrival order. Applying
//! one entry is atomic for readers (and redone whole after a crash), so each caller's
//! batch is still applied atomically and in order; the callers of one entry share its
//! log index (an index means "applied at or before", so sharing it is sound).

use coffer_storage::{Op, StorageError};
use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot};

use crate::types::{Envelope, Node, Raft};

/// Most callers folded into one log entry.
const MAX_GROUP: usize = 1024;
/// Roughly the most key and value bytes in one log entry (one caller may exceed it).
const MAX_GROUP_BYTES: usize = 16 * 1024 * 1024;

struct Pending {
    ops: Vec<Op>,
    reply: oneshot::Sender<Result<u64, StorageError>>,
}

/// Handle to the group-commit task; dropping it stops the task.
pub(crate) struct Batcher {
    tx: mpsc::UnboundedSender<Pending>,
}

impl Batcher {
    /// Start the task on the current tokio runtime.
    pub(crate) fn start(raft: Raft) -> Batcher {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, rx));
        Batcher { tx }
    }

    /// Commit `ops` in the next log entry; the entry's index once applied locally.
    pub(crate) async fn commit(&self, ops: Vec<Op>) -> Result<u64, StorageError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { ops, reply })
            .map_err(|_| StorageError::Unavailable("the raft write path has stopped".into()))?;
        rx.await
            .map_err(|_| StorageError::Unavailable("the raft write path has stopped".into()))?
    }
}

fn size(ops: &[Op]) -> usize {
    ops.iter()
        .map(|op| match op {
            Op::Put { key, value } => key.len() + value.len(),
            Op::Delete { key } => key.len(),
        })
        .sum()
}

async fn run(raft: Raft, mut rx: mpsc::UnboundedReceiver<Pending>) {
    while let Some(first) = rx.recv().await {
        let mut bytes = size(&first.ops);
        let mut group = vec![first];
        while group.len() < MAX_GROUP && bytes < MAX_GROUP_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += size(&p.ops);
                    group.push(p);
                }
                Err(_) => break,
            }
        }
        let mut ops = Vec::with_capacity(group.iter().map(|p| p.ops.len()).sum());
        let mut replies = Vec::with_capacity(group.len());
        for p in group {
            ops.extend(p.ops);
            replies.push(p.reply);
        }
        let res = write(&raft, &ops).await;
        for reply in replies {
            // A caller that gave up no longer listens; its write happened all the same.
            let _ = reply.send(res.as_ref().copied().map_err(duplicate));
        }
    }
}

/// One copy of the error for each caller of a shared entry.
fn duplicate(e: &StorageError) -> StorageError {
    match e {
        StorageError::Io(m) => StorageError::Io(m.clone()),
        StorageError::Corrupt(m) => StorageError::Corrupt(m.clone()),
        StorageError::NotLeader { leader } => StorageError::NotLeader {
            leader: leader.clone(),
        },
        StorageError::Unavailable(m) => StorageError::Unavailable(m.clone()),
        StorageError::Timeout => StorageError::Timeout,
    }
}

async fn write(raft: &Raft, ops: &[Op]) -> Result<u64, StorageError> {
    let env = Envelope::batch(ops).map_err(|e| StorageError::Io(e.to_string()))?;
    match raft.client_write(env).await {
        Ok(resp) => Ok(resp.log_id.index),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(not_leader(raft, f.leader_id, f.leader_node))
        }
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
            Err(StorageError::Unavailable(e.to_string()))
        }
        Err(RaftError::Fatal(e)) => Err(StorageError::Unavailable(e.to_string())),
    }
}

/// `NotLeader`, naming the leader's API address when it is known.
pub(crate) fn not_leader(
    raft: &Raft,
    leader_id: Option<u64>,
    leader_node: Option<Node>,
) -> StorageError {
    let node = leader_node.or_else(|| {
        let id = leader_id?;
        let m = raft.metrics();
        let m = m.borrow();
        m.membership_config.membership().get_node(&id).cloned()
    });
    StorageError::NotLeader {
        leader: node.map(|n| n.api_addr),
    }
}
