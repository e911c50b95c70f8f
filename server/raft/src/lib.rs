//! The replicated log under the barrier: openraft 0.9 with Coffer's log store, state
//! machine and HTTP cluster network.
//!
//! [`RaftNode`] is the public face. It implements [`coffer_storage::Backend`]: reads come
//! from the local state machine, and every write ([`Backend::commit`]) is one Raft log
//! entry holding an atomic batch, also on a single node. Everything it stores is opaque
//! bytes (ciphertext from the barrier).
//!
//! Layout of a file-backed node's data directory:
//!
//! ```text
//! <data_dir>/raft/log/       the write-ahead log (segments, meta, hint): see coffer_storage::wal
//! <data_dir>/raft/state/     the sled state machine store
//! <data_dir>/raft/snapshot/  the last snapshot (current.snap)
//! ```

// openraft's `StorageError` (what its storage traits return) is over 200 bytes; our
// helpers return it unchanged rather than boxing it only to unbox it at the trait edge.
#![allow(clippy::result_large_err)]

mod batcher;
pub mod log_store;
pub mod membership;
pub mod network;
pub mod snapshot;
pub mod state_machine;
pub mod types;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coffer_storage::kv::{KvStore, MemKv, SledKv, DEFAULT_CACHE_CAPACITY};
use coffer_storage::wal::{FileWal, FileWalOptions, MemWal, Wal};
use coffer_storage::{ApplyListener, Backend, Op, StorageError};
use openraft::error::{InitializeError, RaftError};
use openraft::{Config, ServerState, SnapshotPolicy};

use crate::batcher::Batcher;
pub use crate::log_store::LogStore;
pub use crate::membership::{ExportedState, Member, MembershipView, ServerHealth};
pub use crate::network::{configure, NetworkFactory, PeerInfo, Transport};
pub use crate::state_machine::StateMachine;
pub use crate::types::{
    supported, Envelope, Node, Raft, Response, TypeConfig, CURRENT_FORMAT, FORMAT_V1, OP_BATCH,
    OP_RESTORE,
};

/// How long a caller waits for its write to commit before it gets `Timeout` (a leader cut
/// off from the majority cannot commit; its callers must not wait forever).
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// How a node is opened.
#[derive(Clone, Debug)]
pub struct RaftOptions {
    /// This node's Raft id; stable across restarts.
    pub node_id: u64,
    /// This node's name (Vault's string `node_id`), kept in the membership.
    pub name: String,
    /// This node's API address (given to clients redirected from a standby).
    pub api_addr: String,
    /// This node's cluster address (`host:port`), where peers send Raft RPCs.
    pub cluster_addr: String,
    /// Where the log, state and snapshot live; `None` keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    /// The HTTP client for cluster RPCs, already configured for the cluster's TLS; `None`
    /// until credentials exist ([`Transport::set_client`] installs one later).
    pub client: Option<reqwest::Client>,
    /// Whether peers are reached over `https://` (otherwise `http://`).
    pub tls: bool,
    /// The highest log-entry format this node applies and advertises: [`CURRENT_FORMAT`]
    /// except when a test makes the node stand in for an older build.
    pub max_format: u32,
}

impl Default for RaftOptions {
    fn default() -> Self {
        RaftOptions {
            node_id: 1,
            name: "node1".into(),
            api_addr: String::new(),
            cluster_addr: String::new(),
            data_dir: None,
            client: None,
            tls: true,
            max_format: CURRENT_FORMAT,
        }
    }
}

/// Log compaction: a snapshot is due once at least [`SNAPSHOT_MIN_ENTRIES`] entries were
/// applied since the last one and the log grew by the last snapshot's size, clamped to
/// [`SNAPSHOT_MIN_LOG_BYTES`]..=[`SNAPSHOT_MAX_LOG_BYTES`] (or by
/// [`SNAPSHOT_MAX_ENTRIES`] entries, whatever their size). So a small state is
/// snapshotted often and cheaply, a large one less often, and the log on disk (read
/// whole on start) stays bounded. Building a snapshot reads and writes the whole state,
/// so under a steady stream of writes each written byte costs about one byte of
/// snapshot (half the rate of a threshold of half the snapshot: 12% of the server's
/// CPU at 64 connections of KV writes, BENCHMARKS.md).
pub const SNAPSHOT_MIN_ENTRIES: u64 = 1_000;
/// See [`SNAPSHOT_MIN_ENTRIES`].
pub const SNAPSHOT_MAX_ENTRIES: u64 = 50_000;
/// See [`SNAPSHOT_MIN_ENTRIES`].
pub const SNAPSHOT_MIN_LOG_BYTES: u64 = 16 * 1024 * 1024;
/// See [`SNAPSHOT_MIN_ENTRIES`].
pub const SNAPSHOT_MAX_LOG_BYTES: u64 = 128 * 1024 * 1024;
/// How often the snapshot policy looks at the log.
const SNAPSHOT_POLICY_TICK: Duration = Duration::from_millis(250);

/// Whether a snapshot is due: `entries` applied and `log_bytes` appended since the last
/// one, whose stream was `snapshot_bytes` long.
pub fn snapshot_due(entries: u64, log_bytes: u64, snapshot_bytes: u64) -> bool {
    let threshold = snapshot_bytes.clamp(SNAPSHOT_MIN_LOG_BYTES, SNAPSHOT_MAX_LOG_BYTES);
    entries >= SNAPSHOT_MIN_ENTRIES && (log_bytes >= threshold || entries >= SNAPSHOT_MAX_ENTRIES)
}

/// Timing and log-compaction settings of every node (snapshots are triggered by the
/// node's own policy, see [`snapshot_due`]).
pub fn raft_config() -> Config {
    Config {
        cluster_name: "coffer".into(),
        heartbeat_interval: 150,
        election_timeout_min: 600,
        election_timeout_max: 1200,
        // Snapshots are sent in chunks; each chunk may take a while on a slow link.
        install_snapshot_timeout: 10_000,
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: 500,
        ..Config::default()
    }
}

/// A running Raft member.
pub struct RaftNode {
    id: u64,
    node: Node,
    raft: Raft,
    sm: StateMachine,
    log: LogStore,
    batcher: Batcher,
    committed: Arc<AtomicU64>,
    stopped: AtomicBool,
    transport: Arc<Transport>,
    stepping_down: AtomicBool,
}

fn unavailable(e: impl std::fmt::Display) -> StorageError {
    StorageError::Unavailable(e.to_string())
}

impl RaftNode {
    /// Open the node's storage (file-backed, or in memory when `data_dir` is `None`) and
    /// start Raft on the current tokio runtime (which must be multi-threaded). A restarted
    /// node resumes from its log; a fresh one waits for [`RaftNode::bootstrap_if_fresh`]
    /// or to be added to a cluster.
    pub async fn open(opts: RaftOptions) -> Result<Arc<RaftNode>, StorageError> {
        let (wal, kv, snapshot_dir): (Box<dyn Wal>, Arc<dyn KvStore>, Option<PathBuf>) =
            match &opts.data_dir {
                Some(dir) => {
                    let root = dir.join("raft");
                    let wal = FileWal::open(root.join("log"), FileWalOptions::default())?;
                    let kv = SledKv::open(root.join("state"), DEFAULT_CACHE_CAPACITY)?;
                    (Box::new(wal), Arc::new(kv), Some(root.join("snapshot")))
                }
                None => (Box::new(MemWal::new()), Arc::new(MemKv::new()), None),
            };
        let log = LogStore::open(wal).map_err(|e| StorageError::Io(e.to_string()))?;
        let committed = log.committed_cell();
        let max_format = opts.max_format.clamp(types::FORMAT_V1, CURRENT_FORMAT);
        let sm = StateMachine::open_with_format(kv, snapshot_dir, max_format)?;

        let config = raft_config().validate().map_err(unavailable)?;
        let transport = Transport::new(opts.node_id, opts.tls, opts.client.clone(), max_format);
        let network = NetworkFactory::new(transport.clone());
        let raft = openraft::Raft::new(
            opts.node_id,
            Arc::new(config),
            network,
            log.clone(),
            sm.clone(),
        )
        .await
        .map_err(unavailable)?;
        let batcher = Batcher::start(raft.clone());
        let node = Arc::new(RaftNode {
            id: opts.node_id,
            node: Node {
                api_addr: opts.api_addr,
                cluster_addr: opts.cluster_addr,
                name: opts.name,
                non_voter: false,
            },
            raft,
            sm,
            log,
            batcher,
            committed,
            stopped: AtomicBool::new(false),
            transport,
            stepping_down: AtomicBool::new(false),
        });
        tokio::spawn(membership::autopilot(Arc::downgrade(&node)));
        tokio::spawn(snapshot_policy(Arc::downgrade(&node)));
        Ok(node)
    }

    /// The cluster transport (credentials, peer advertisements, test drop filter).
    pub fn transport(&self) -> &Arc<Transport> {
        &self.transport
    }

    /// If this node has never been part of a cluster (no log, no vote), make it the single
    /// member of a new one; it then elects itself and accepts writes. Returns whether it
    /// bootstrapped. A restarted node (or one that already heard from a cluster) is left
    /// alone.
    pub async fn bootstrap_if_fresh(&self) -> Result<bool, StorageError> {
        if self.raft.is_initialized().await.map_err(unavailable)? {
            return Ok(false);
        }
        let members = BTreeMap::from([(self.id, self.node.clone())]);
        match self.raft.initialize(members).await {
            Ok(()) => {
                tracing::info!(node_id = self.id, "bootstrapped a new single-node cluster");
                Ok(true)
            }
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// This node's addresses.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Whether this node currently believes it is the leader (not a linearizable check).
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.id)
    }

    /// The current leader as this node knows it.
    pub fn leader(&self) -> Option<(u64, Node)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id).cloned()?;
        Some((id, node))
    }

    /// Wait until some node is known as leader.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<(u64, Node), StorageError> {
        let mut rx = self.raft.metrics();
        let outcome = tokio::time::timeout(timeout, async {
            rx.wait_for(|m| m.running_state.is_err() || m.current_leader.is_some())
                .await
                .map(|m| m.running_state.clone())
        })
        .await;
        match outcome {
            Err(_) => Err(StorageError::Timeout),
            Ok(Err(_)) => Err(unavailable("raft has shut down")),
            Ok(Ok(Err(fatal))) => Err(unavailable(fatal)),
            Ok(Ok(Ok(()))) => self
                .leader()
                .ok_or_else(|| unavailable("the leader is not in the membership")),
        }
    }

    /// Wait until the local state machine has applied `index`.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<(), StorageError> {
        let mut rx = self.sm.subscribe_applied();
        let outcome = tokio::time::timeout(timeout, async {
            rx.wait_for(|applied| *applied >= index).await.map(|_| ())
        })
        .await;
        match outcome {
            Err(_) => Err(StorageError::Timeout),
            Ok(Err(_)) => Err(unavailable("the state machine is closed")),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// The highest log index this node knows is committed (0 if none yet).
    pub fn committed_index(&self) -> u64 {
        match self.committed.load(Ordering::Acquire) {
            log_store::NO_INDEX => 0,
            i => i,
        }
    }

    /// The openraft handle (membership changes, metrics, RPC serving).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The local state machine.
    pub fn state_machine(&self) -> &StateMachine {
        &self.sm
    }

    /// Stop Raft, finish and close the log, and flush the state store. The node answers
    /// `Unavailable` afterwards; drop it to release the data directory.
    pub async fn shutdown(&self) -> Result<(), StorageError> {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.raft.shutdown().await.map_err(unavailable)?;
        self.log.close().await?;
        self.sm.flush()
    }

    fn check_running(&self) -> Result<(), StorageError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(unavailable("raft node is shut down"));
        }
        Ok(())
    }
}

/// Trigger a snapshot whenever [`snapshot_due`] says so, until the node is dropped or
/// shut down.
async fn snapshot_policy(node: std::sync::Weak<RaftNode>) {
    let mut tick = tokio::time::interval(SNAPSHOT_POLICY_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Where the log stood when a snapshot was last asked for.
    let mut asked_at_index = 0u64;
    let mut asked_at_bytes = 0u64;
    loop {
        tick.tick().await;
        let Some(node) = node.upgrade() else { return };
        if node.stopped.load(Ordering::Acquire) {
            return;
        }
        let applied = node.sm.applied_index();
        let (snap_index, snap_bytes) = node.sm.snapshot_info().unwrap_or((0, 0));
        let entries = applied.saturating_sub(snap_index.max(asked_at_index));
        let bytes = node.log.appended_bytes().saturating_sub(asked_at_bytes);
        if !snapshot_due(entries, bytes, snap_bytes) {
            continue;
        }
        if node.raft.trigger().snapshot().await.is_err() {
            return;
        }
        tracing::debug!(
            applied,
            entries,
            bytes,
            "snapshot policy: asked for a snapshot"
        );
        asked_at_index = applied;
        asked_at_bytes = node.log.appended_bytes();
    }
}

#[async_trait::async_trait]
impl Backend for RaftNode {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.sm.kv().get(key)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.sm.kv().list(prefix)
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<u64, StorageError> {
        self.check_running()?;
        if self.stepping_down.load(Ordering::Acquire) {
            return Err(StorageError::NotLeader { leader: None });
        }
        match tokio::time::timeout(COMMIT_TIMEOUT, self.batcher.commit(ops)).await {
            Ok(res) => res,
            Err(_) => Err(StorageError::Timeout),
        }
    }

    fn add_apply_listener(&self, listener: ApplyListener) {
        self.sm.add_listener(listener);
    }

    fn applied_index(&self) -> u64 {
        self.sm.applied_index()
    }
}
