//! High availability above the barrier: what the core needs from the cluster
//! ([`ClusterOps`], implemented over Raft by the composition root) and the
//! `sys/storage/raft/*` and `sys/step-down` API built on it.
//!
//! **Cluster PKI.** `sys/init` creates a cluster CA (through [`ClusterOps::new_cluster_ca`])
//! and stores it at [`CLUSTER_CA_PATH`] through the barrier (encrypted like any value);
//! the first node gets a certificate signed by it. Every other node gets its certificate
//! from the active node when it is admitted.
//!
//! **Join (Vault's bootstrap challenge).** A new, uninitialised node is told
//! `sys/storage/raft/join` (or has `retry_join` blocks): it asks the leader's API for a
//! challenge (`sys/storage/raft/bootstrap/challenge`, unauthenticated, as Vault). The
//! active node answers with a random value encrypted under its keyring, the seal
//! configuration, and the stored root-key and keyring blobs (ciphertext: the first opens
//! only with the unseal key). The joining node then reports the leader's seal
//! configuration in `sys/seal-status` and collects unseal shares against it; once the
//! operator has given it the threshold, it opens `unseal key -> root key -> keyring ->
//! challenge` and answers (`.../bootstrap/answer`). Only a correct answer makes the
//! active node add it as a learner and hand it a CA-signed certificate (its private key
//! encrypted under the keyring). A node without the keys gets nothing and never becomes a
//! member. The joining node then waits for replication to bring the barrier's data and
//! unseals with the same key. Autopilot promotes it to voter once it is caught up.
//!
//! **Membership and leadership.** `configuration`, `remove-peer`, `autopilot/state` and
//! `sys/step-down` are thin wrappers over [`ClusterOps`]; on a standby the ones that need
//! the leader fail with [`CoreError::Standby`] and the HTTP layer forwards them.
//!
//! **Replicated key changes.** When an applied entry changes the root key or keyring
//! (a rotation, a rekey, a restored snapshot), every node re-reads its keyring at once;
//! if the keyring no longer opens with the root key this node holds (a snapshot from
//! another cluster was force-restored) the node seals itself and must be unsealed with
//! the keys of the cluster the snapshot came from.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use coffer_barrier::barrier::{SealConfig, KEYRING_PATH, ROOT_KEY_PATH};
use coffer_barrier::bootstrap::{answers_match, open_keyring};
use coffer_sdk::Operation;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

use crate::handling::{LogicalRequest, LogicalResponse};
use crate::{lock, Core, CoreError, Unsealed};

/// Where the cluster CA (certificate and key) is stored, through the barrier.
pub const CLUSTER_CA_PATH: &str = "core/cluster/ca";
/// The AAD path of bootstrap challenges.
const CHALLENGE_PATH: &str = "core/raft/bootstrap-challenge";
/// A challenge must be answered within this time.
const CHALLENGE_TTL: Duration = Duration::from_secs(300);
/// At most this many outstanding challenges are kept (oldest dropped first).
const MAX_CHALLENGES: usize = 64;
/// How long a joining node keeps trying to answer and to receive the data.
const JOIN_DEADLINE: Duration = Duration::from_secs(60);
/// Pause between `retry_join` attempts.
const RETRY_JOIN_INTERVAL: Duration = Duration::from_secs(2);

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn unb64(field: &str, text: &str) -> Result<Vec<u8>, CoreError> {
    b64()
        .decode(text)
        .map_err(|_| CoreError::BadRequest(format!("{field} is not valid base64")))
}

/// The AAD path of the node key handed to `server_id`.
fn node_key_path(server_id: &str) -> String {
    format!("core/raft/node-key/{server_id}")
}

/// The cluster CA as stored through the barrier.
#[derive(Clone, Serialize, Deserialize)]
pub struct ClusterCa {
    /// CA certificate, PEM.
    pub cert_pem: String,
    /// CA private key, PEM.
    #[serde(with = "zeroizing_string")]
    pub key_pem: Zeroizing<String>,
    /// The CA's common name (needed to rebuild the issuer).
    pub common_name: String,
}

/// Serde for a zeroizing string (zeroize is built without its serde feature).
mod zeroizing_string {
    use serde::{Deserialize, Deserializer, Serializer};
    use zeroize::Zeroizing;

    pub fn serialize<S: Serializer>(v: &Zeroizing<String>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Zeroizing<String>, D::Error> {
        String::deserialize(d).map(Zeroizing::new)
    }
}

/// A node's cluster credentials.
#[derive(Clone)]
pub struct NodeCredentials {
    /// The cluster CA certificate (the only one trusted on the cluster port), PEM.
    pub ca_cert_pem: String,
    /// The node certificate, PEM.
    pub cert_pem: String,
    /// The node private key, PEM.
    pub key_pem: Zeroizing<String>,
}

/// Where to ask to join, and how to trust it.
#[derive(Clone, Debug, Default)]
pub struct JoinTarget {
    /// The leader's (or any member's) API address.
    pub leader_api_addr: String,
    /// PEM of the CA that signed its API certificate.
    pub leader_ca_cert: Option<String>,
    /// Client certificate for its API, PEM.
    pub leader_client_cert: Option<String>,
    /// Client key for its API, PEM.
    pub leader_client_key: Option<Zeroizing<String>>,
    /// TLS server name to expect.
    pub leader_tls_servername: Option<String>,
}

/// This node as it introduces itself to the cluster.
#[derive(Clone, Debug)]
pub struct LocalMember {
    /// Vault's `node_id` (server id).
    pub name: String,
    /// API address.
    pub api_addr: String,
    /// Cluster address.
    pub cluster_addr: String,
    /// Highest log-entry format understood.
    pub max_format: u32,
}

/// The active node's answer to a challenge request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BootstrapChallenge {
    /// The random value encrypted under the keyring, base64.
    pub challenge: String,
    /// The seal configuration (the joining node collects shares against it).
    pub seal_config: SealConfig,
    /// The stored root key (encrypted under the unseal key), base64.
    pub root_key: String,
    /// The stored keyring (encrypted under the root key), base64.
    pub keyring: String,
}

/// The joining node's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BootstrapAnswer {
    /// Its `node_id`.
    pub server_id: String,
    /// The decrypted challenge, base64.
    pub answer: String,
    /// Its API address.
    pub api_addr: String,
    /// Its cluster address.
    pub cluster_addr: String,
    /// Join as a permanent non-voter.
    #[serde(default)]
    pub non_voter: bool,
    /// Highest log-entry format it understands.
    #[serde(default)]
    pub max_format: u32,
}

/// What a correct answer earns.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BootstrapCredentials {
    /// The cluster CA certificate, PEM.
    pub ca_cert: String,
    /// Its node certificate, PEM.
    pub node_cert: String,
    /// Its node key PEM, encrypted under the keyring, base64.
    pub node_key: String,
    /// The current keyring blob (it may have rotated since the challenge), base64.
    pub keyring: String,
    /// The log index of its admission: its data is complete once it applied this.
    pub index: u64,
}

/// One row of `sys/storage/raft/configuration`.
#[derive(Clone, Debug, Serialize)]
pub struct RaftServer {
    /// `node_id`.
    pub node_id: String,
    /// Cluster address.
    pub address: String,
    /// Whether it is the leader.
    pub leader: bool,
    /// Voter (otherwise non-voter/learner).
    pub voter: bool,
    /// Vault reports the Raft protocol version, "3".
    pub protocol_version: String,
}

/// `sys/storage/raft/configuration`.
#[derive(Clone, Debug, Serialize)]
pub struct RaftConfiguration {
    /// Index of the membership entry.
    pub index: u64,
    /// Members.
    pub servers: Vec<RaftServer>,
}

/// One server of `sys/storage/raft/autopilot/state`.
#[derive(Clone, Debug)]
pub struct AutopilotServer {
    /// `node_id`.
    pub name: String,
    /// Cluster address.
    pub address: String,
    /// `alive` or `left`... as far as the leader knows (`alive` when heard from recently).
    pub node_status: String,
    /// Healthy: heard from recently, not sealed, caught up.
    pub healthy: bool,
    /// Time since last contact.
    pub last_contact: Duration,
    /// Highest index known replicated on it.
    pub last_index: u64,
    /// The term of the leader.
    pub last_term: u64,
    /// Voter.
    pub voter: bool,
    /// `leader`, `voter` or `non-voter`.
    pub status: String,
    /// Whether it advertised itself sealed.
    pub sealed: bool,
    /// Highest log-entry format it advertised (0 = unknown).
    pub max_format: u32,
}

/// `sys/storage/raft/autopilot/state`.
#[derive(Clone, Debug)]
pub struct AutopilotState {
    /// All voters healthy.
    pub healthy: bool,
    /// Voters that may fail without losing quorum.
    pub failure_tolerance: u64,
    /// Leader `node_id`.
    pub leader: String,
    /// Voter `node_id`s.
    pub voters: Vec<String>,
    /// Every member.
    pub servers: Vec<AutopilotServer>,
}

/// A consistent copy of the replicated store (ciphertext only).
pub struct ExportedState {
    /// Last applied index it reflects.
    pub index: u64,
    /// That entry's term.
    pub term: u64,
    /// Opaque payload (the Raft layer's snapshot encoding).
    pub payload: Vec<u8>,
}

/// What the core needs from the cluster on top of the leadership facts in
/// [`crate::Cluster`]. Implemented over Raft by the composition root; nothing here is an
/// openraft or HTTP type.
#[async_trait::async_trait]
pub trait ClusterOps: Send + Sync {
    /// Whether this node is (or was) part of a Raft cluster.
    async fn is_member(&self) -> bool;
    /// Make this node the single member of a new cluster if it is in none, and wait until
    /// it leads it (`sys/init`).
    async fn bootstrap(&self) -> Result<(), CoreError>;
    /// Whether cluster TLS is in use (false for in-memory dev servers).
    fn cluster_tls(&self) -> bool;
    /// A new cluster CA.
    fn new_cluster_ca(&self) -> Result<ClusterCa, CoreError>;
    /// Credentials for node `name` at `cluster_addr`, signed by `ca`.
    fn issue_node_credentials(
        &self,
        ca: &ClusterCa,
        name: &str,
        cluster_addr: &str,
    ) -> Result<NodeCredentials, CoreError>;
    /// Whether this node has cluster credentials.
    fn has_credentials(&self) -> bool;
    /// Keep these credentials (on disk) and use them on the cluster port and for RPCs.
    async fn install_credentials(&self, creds: &NodeCredentials) -> Result<(), CoreError>;
    /// Also trust certificates signed by `ca_cert_pem` on the cluster port (after a
    /// snapshot from another cluster was restored, the barrier holds that cluster's CA,
    /// which signs the certificates of nodes that join later). No-op if already trusted.
    async fn trust_ca(&self, ca_cert_pem: &str) -> Result<(), CoreError>;
    /// This node as it introduces itself.
    fn local_member(&self) -> LocalMember;
    /// The seal state changed: a sealed node never campaigns for leadership, and a sealed
    /// leader hands leadership over.
    fn set_sealed(&self, sealed: bool);
    /// After an unseal: wait (bounded) for a leader when this node is the only voter.
    async fn await_leadership(&self, timeout: Duration);
    /// Ask `target` for a bootstrap challenge for `server_id`.
    async fn fetch_challenge(
        &self,
        target: &JoinTarget,
        server_id: &str,
    ) -> Result<BootstrapChallenge, CoreError>;
    /// Send the answer to `target`.
    async fn answer_challenge(
        &self,
        target: &JoinTarget,
        answer: &BootstrapAnswer,
    ) -> Result<BootstrapCredentials, CoreError>;
    /// Leader: add the node that answered as a learner; returns the log index.
    async fn add_member(&self, answer: &BootstrapAnswer) -> Result<u64, CoreError>;
    /// Leader: remove `server_id`.
    async fn remove_peer(&self, server_id: &str) -> Result<(), CoreError>;
    /// The membership as this node knows it.
    fn configuration(&self) -> RaftConfiguration;
    /// Leader: replication and health of every member.
    fn autopilot_state(&self) -> Result<AutopilotState, CoreError>;
    /// Leader: hand leadership to another voter.
    async fn step_down(&self) -> Result<(), CoreError>;
    /// Wait until this node has applied `index`; false when `timeout` ran out.
    async fn wait_for_index(&self, index: u64, timeout: Duration) -> bool;
    /// A consistent copy of the replicated store.
    fn export_state(&self) -> Result<ExportedState, CoreError>;
    /// Leader: replace the replicated store with an exported payload, through the log.
    async fn restore_state(&self, payload: Vec<u8>) -> Result<u64, CoreError>;
}

/// A join waiting for the operator's unseal shares.
#[derive(Clone)]
struct PendingJoin {
    target: JoinTarget,
    non_voter: bool,
    challenge: BootstrapChallenge,
}

/// HA state kept by the core.
#[derive(Default)]
pub struct ClusterState {
    pending: Mutex<Option<PendingJoin>>,
    retrying: std::sync::atomic::AtomicBool,
    challenges: Mutex<HashMap<String, Challenge>>,
}

/// An outstanding bootstrap challenge: the expected answer and when it was issued.
type Challenge = (Zeroizing<Vec<u8>>, Instant);

/// `sys/storage/raft/join` body.
#[derive(Debug, Default, Deserialize)]
pub struct JoinRequest {
    /// The leader's API address.
    #[serde(default)]
    pub leader_api_addr: String,
    /// PEM of the leader API's CA.
    #[serde(default)]
    pub leader_ca_cert: Option<String>,
    /// Client certificate PEM.
    #[serde(default)]
    pub leader_client_cert: Option<String>,
    /// Client key PEM.
    #[serde(default)]
    pub leader_client_key: Option<String>,
    /// Keep trying in the background.
    #[serde(default)]
    pub retry: bool,
    /// Join as a permanent non-voter.
    #[serde(default)]
    pub non_voter: bool,
    /// Vault's cloud auto-discovery (unsupported).
    #[serde(default)]
    pub auto_join: Option<String>,
}

fn string_field<'a>(req: &'a LogicalRequest, name: &str) -> Result<&'a str, CoreError> {
    req.data
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| CoreError::BadRequest(format!("missing required field \"{name}\"")))
}

fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms >= 1000 {
        format!("{:.3}s", d.as_secs_f64())
    } else {
        format!("{ms}ms")
    }
}

impl Core {
    // ---- PKI ----------------------------------------------------------------------

    /// `sys/init` on the first node: a cluster CA in the barrier and this node's
    /// certificate. Also run on unseal of an active node that predates cluster PKI.
    pub(crate) async fn ensure_cluster_pki(&self, state: &Unsealed) -> Result<(), CoreError> {
        if !self.cluster.cluster_tls() {
            return Ok(());
        }
        let ca = match state.store.get_json::<ClusterCa>(CLUSTER_CA_PATH)? {
            Some(ca) => ca,
            None => {
                let ca = self.cluster.new_cluster_ca()?;
                state.store.put_json(CLUSTER_CA_PATH, &ca).await?;
                tracing::info!("created the cluster CA");
                ca
            }
        };
        if !self.cluster.has_credentials() {
            let me = self.cluster.local_member();
            let creds = self
                .cluster
                .issue_node_credentials(&ca, &me.name, &me.cluster_addr)?;
            self.cluster.install_credentials(&creds).await?;
        }
        Ok(())
    }

    // ---- joining node -------------------------------------------------------------

    /// `sys/storage/raft/join` on a new node: fetch a challenge from the leader (or keep
    /// trying in the background with `retry`). The join completes when the node is given
    /// its unseal shares.
    pub async fn raft_join(self: &Arc<Self>, req: JoinRequest) -> Result<Value, CoreError> {
        if req.auto_join.as_deref().is_some_and(|a| !a.is_empty()) && req.leader_api_addr.is_empty()
        {
            return Err(CoreError::BadRequest(
                "auto_join (cloud auto-discovery) is not supported by coffer".into(),
            ));
        }
        if req.leader_api_addr.is_empty() {
            return Err(CoreError::BadRequest("leader_api_addr is required".into()));
        }
        self.check_can_join().await?;
        let target = JoinTarget {
            leader_api_addr: req.leader_api_addr,
            leader_ca_cert: req.leader_ca_cert.filter(|c| !c.is_empty()),
            leader_client_cert: req.leader_client_cert.filter(|c| !c.is_empty()),
            leader_client_key: req
                .leader_client_key
                .filter(|c| !c.is_empty())
                .map(Zeroizing::new),
            leader_tls_servername: None,
        };
        if req.retry {
            self.start_retry_join(vec![target], req.non_voter);
        } else {
            self.try_join(&target, req.non_voter).await?;
        }
        Ok(json!({ "joined": true }))
    }

    async fn check_can_join(&self) -> Result<(), CoreError> {
        if self.barrier.is_initialized()? || self.cluster.is_member().await {
            return Err(CoreError::BadRequest(
                "this node is already initialized or a member of a cluster; join needs a new, \
                 uninitialized node"
                    .into(),
            ));
        }
        Ok(())
    }

    async fn try_join(&self, target: &JoinTarget, non_voter: bool) -> Result<(), CoreError> {
        let me = self.cluster.local_member();
        let challenge = self.cluster.fetch_challenge(target, &me.name).await?;
        tracing::info!(
            leader = %target.leader_api_addr,
            "received a bootstrap challenge; waiting for the unseal keys to answer it"
        );
        *lock(&self.cluster_state.pending) = Some(PendingJoin {
            target: target.clone(),
            non_voter,
            challenge,
        });
        Ok(())
    }

    /// `retry_join`: keep asking each target for a challenge until one answers (or the
    /// node becomes initialized some other way).
    pub fn start_retry_join(self: &Arc<Self>, targets: Vec<JoinTarget>, non_voter: bool) {
        if targets.is_empty()
            || self
                .cluster_state
                .retrying
                .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(core) = weak.upgrade() else { return };
                if core.check_can_join().await.is_err() || core.join_pending() {
                    break;
                }
                for target in &targets {
                    match core.try_join(target, non_voter).await {
                        Ok(()) => break,
                        Err(e) => tracing::info!(
                            leader = %target.leader_api_addr,
                            "retry_join: no challenge yet: {e}"
                        ),
                    }
                }
                if core.join_pending() {
                    break;
                }
                drop(core);
                tokio::time::sleep(RETRY_JOIN_INTERVAL).await;
            }
            if let Some(core) = weak.upgrade() {
                core.cluster_state
                    .retrying
                    .store(false, std::sync::atomic::Ordering::SeqCst);
            }
        });
    }

    /// Whether a join waits for unseal shares.
    pub fn join_pending(&self) -> bool {
        lock(&self.cluster_state.pending).is_some()
    }

    /// The seal configuration a pending join collects shares against.
    pub(crate) fn pending_join_seal_config(&self) -> Option<SealConfig> {
        lock(&self.cluster_state.pending)
            .as_ref()
            .map(|p| p.challenge.seal_config.clone())
    }

    /// The threshold of unseal shares was given to a node whose join waits for them:
    /// answer, install the credentials, wait for the data, unseal. Called with the
    /// transition lock held.
    pub(crate) async fn complete_pending_join(&self, unseal_key: &[u8]) -> Result<(), CoreError> {
        let pending = lock(&self.cluster_state.pending)
            .clone()
            .ok_or(CoreError::NotInitialized)?;
        self.complete_join(&pending, unseal_key).await
    }

    /// After an unseal: an active node that predates cluster PKI creates it, and every
    /// node trusts the CA the barrier holds (it differs from the one this node joined
    /// under after a snapshot of another cluster was restored).
    pub(crate) async fn after_unseal(&self) {
        let Ok(state) = self.unsealed() else { return };
        if self.cluster.is_leader() {
            if let Err(e) = self.ensure_cluster_pki(&state).await {
                tracing::warn!("could not set up the cluster PKI: {e}");
            }
        }
        if !self.cluster.cluster_tls() || !self.cluster.has_credentials() {
            return;
        }
        match state.store.get_json::<ClusterCa>(CLUSTER_CA_PATH) {
            Ok(Some(ca)) => {
                if let Err(e) = self.cluster.trust_ca(&ca.cert_pem).await {
                    tracing::warn!("could not trust the cluster CA: {e}");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("could not read the cluster CA: {e}"),
        }
    }

    /// Answer the challenge with the unseal key, install the credentials, wait for the
    /// data, unseal.
    async fn complete_join(
        &self,
        pending: &PendingJoin,
        unseal_key: &[u8],
    ) -> Result<(), CoreError> {
        let me = self.cluster.local_member();
        let deadline = Instant::now() + JOIN_DEADLINE;
        let mut challenge = pending.challenge.clone();
        let (creds, keyring_blob) = loop {
            let keyring = open_keyring(
                unseal_key,
                &unb64("root_key", &challenge.root_key)?,
                &unb64("keyring", &challenge.keyring)?,
            )
            .map_err(|e| match e {
                coffer_barrier::barrier::BarrierError::WrongKey => CoreError::BadRequest(
                    "unable to join: the unseal keys do not open the cluster's root key".into(),
                ),
                other => other.into(),
            })?;
            let answer = Zeroizing::new(
                keyring
                    .decrypt(CHALLENGE_PATH, &unb64("challenge", &challenge.challenge)?)
                    .map_err(|_| CoreError::BadRequest("the challenge does not decrypt".into()))?,
            );
            let answer = BootstrapAnswer {
                server_id: me.name.clone(),
                answer: b64().encode(&answer[..]),
                api_addr: me.api_addr.clone(),
                cluster_addr: me.cluster_addr.clone(),
                non_voter: pending.non_voter,
                max_format: me.max_format,
            };
            match self
                .cluster
                .answer_challenge(&pending.target, &answer)
                .await
            {
                Ok(creds) => {
                    let blob = unb64("keyring", &creds.keyring)?;
                    break (creds, blob);
                }
                Err(e) if Instant::now() < deadline => {
                    tracing::warn!("the bootstrap answer was not accepted ({e}); asking again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    match self
                        .cluster
                        .fetch_challenge(&pending.target, &me.name)
                        .await
                    {
                        Ok(c) => challenge = c,
                        Err(e) => tracing::warn!("no new challenge yet: {e}"),
                    }
                }
                Err(e) => return Err(e),
            }
        };
        let keyring = open_keyring(
            unseal_key,
            &unb64("root_key", &challenge.root_key)?,
            &keyring_blob,
        )?;
        let key_pem = keyring
            .decrypt(
                &node_key_path(&me.name),
                &unb64("node_key", &creds.node_key)?,
            )
            .map_err(|_| CoreError::Internal("the node key does not decrypt".into()))?;
        let key_pem = Zeroizing::new(
            String::from_utf8(key_pem)
                .map_err(|_| CoreError::Internal("the node key is not PEM".into()))?,
        );
        self.cluster
            .install_credentials(&NodeCredentials {
                ca_cert_pem: creds.ca_cert.clone(),
                cert_pem: creds.node_cert.clone(),
                key_pem,
            })
            .await?;
        tracing::info!(
            index = creds.index,
            "admitted to the cluster; waiting for replication"
        );
        let remaining =
            deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(30);
        if !self.cluster.wait_for_index(creds.index, remaining).await
            || !self.barrier.is_initialized()?
        {
            return Err(CoreError::Storage(coffer_storage::StorageError::Timeout));
        }
        *lock(&self.cluster_state.pending) = None;
        self.barrier.unseal(unseal_key)?;
        self.cluster.set_sealed(false);
        if let Err(err) = self.post_unseal().await {
            self.pre_seal();
            return Err(err);
        }
        self.after_unseal().await;
        tracing::info!("joined the cluster and unsealed");
        Ok(())
    }

    // ---- active node ------------------------------------------------------------

    /// A path no mount here serves, or a token this node does not know. On a standby the
    /// mount or token may exist already on the active node and not be applied here yet
    /// (a `secrets enable` or a login answered a moment ago), so a standby hands the
    /// request to the active node (`Standby`: forwarded or 307) instead of answering from
    /// state that may be stale; the active node's answer is the authoritative one.
    pub(crate) fn standby_miss(&self, not_found: CoreError) -> CoreError {
        if self.cluster.is_leader() {
            not_found
        } else {
            CoreError::Standby {
                leader: self.cluster.leader_api_addr(),
            }
        }
    }

    fn require_active(&self) -> Result<(), CoreError> {
        if self.cluster.is_leader() {
            Ok(())
        } else {
            Err(CoreError::Standby {
                leader: self.cluster.leader_api_addr(),
            })
        }
    }

    fn bootstrap_challenge(&self, req: &LogicalRequest) -> Result<LogicalResponse, CoreError> {
        self.require_active()?;
        let server_id = string_field(req, "server_id")?.to_string();
        let config = self
            .barrier
            .seal_config()?
            .ok_or(CoreError::NotInitialized)?;
        let backend = self.barrier.backend();
        let root_key = backend
            .get(ROOT_KEY_PATH)
            .map_err(CoreError::Storage)?
            .ok_or(CoreError::NotInitialized)?;
        let keyring = backend
            .get(KEYRING_PATH)
            .map_err(CoreError::Storage)?
            .ok_or(CoreError::NotInitialized)?;
        let nonce = Zeroizing::new(crate::random_bytes(32));
        let sealed = self.barrier.encrypt_value(CHALLENGE_PATH, &nonce)?;
        {
            let mut challenges = lock(&self.cluster_state.challenges);
            challenges.retain(|_, (_, at)| at.elapsed() < CHALLENGE_TTL);
            while challenges.len() >= MAX_CHALLENGES {
                let oldest = challenges
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| k.clone());
                match oldest {
                    Some(k) => challenges.remove(&k),
                    None => break,
                };
            }
            challenges.insert(server_id.clone(), (nonce, Instant::now()));
        }
        tracing::info!(server_id = %server_id, "issued a raft bootstrap challenge");
        let challenge = BootstrapChallenge {
            challenge: b64().encode(sealed),
            seal_config: config,
            root_key: b64().encode(root_key),
            keyring: b64().encode(keyring),
        };
        Ok(LogicalResponse::ok(
            serde_json::to_value(challenge).map_err(|e| CoreError::Internal(e.to_string()))?,
        ))
    }

    async fn bootstrap_answer(
        &self,
        state: &Unsealed,
        req: &LogicalRequest,
    ) -> Result<LogicalResponse, CoreError> {
        self.require_active()?;
        let answer: BootstrapAnswer = serde_json::from_value(Value::Object(req.data.clone()))
            .map_err(|e| CoreError::BadRequest(format!("bad bootstrap answer: {e}")))?;
        if answer.server_id.is_empty() || answer.cluster_addr.is_empty() {
            return Err(CoreError::BadRequest(
                "server_id and cluster_addr are required".into(),
            ));
        }
        let expected = lock(&self.cluster_state.challenges)
            .remove(&answer.server_id)
            .filter(|(_, at)| at.elapsed() < CHALLENGE_TTL)
            .map(|(nonce, _)| nonce)
            .ok_or_else(|| {
                CoreError::BadRequest(format!(
                    "no outstanding challenge for server {}; ask for a new one",
                    answer.server_id
                ))
            })?;
        let given = Zeroizing::new(unb64("answer", &answer.answer)?);
        if !answers_match(&expected, &given) {
            tracing::warn!(
                server_id = %answer.server_id,
                "refused a raft join: the challenge answer is wrong (the node does not hold the unseal keys)"
            );
            return Err(CoreError::BadRequest(
                "invalid answer given: the node does not hold this cluster's unseal keys".into(),
            ));
        }
        let ca = state
            .store
            .get_json::<ClusterCa>(CLUSTER_CA_PATH)?
            .ok_or_else(|| CoreError::Internal("the cluster CA is missing".into()))?;
        let creds =
            self.cluster
                .issue_node_credentials(&ca, &answer.server_id, &answer.cluster_addr)?;
        let node_key = self
            .barrier
            .encrypt_value(&node_key_path(&answer.server_id), creds.key_pem.as_bytes())?;
        let keyring = self
            .barrier
            .backend()
            .get(KEYRING_PATH)
            .map_err(CoreError::Storage)?
            .ok_or(CoreError::NotInitialized)?;
        let index = self.cluster.add_member(&answer).await?;
        tracing::info!(
            server_id = %answer.server_id,
            cluster_addr = %answer.cluster_addr,
            non_voter = answer.non_voter,
            max_format = answer.max_format,
            index,
            "admitted a new raft member (learner) after a correct challenge answer"
        );
        let out = BootstrapCredentials {
            ca_cert: creds.ca_cert_pem,
            node_cert: creds.cert_pem,
            node_key: b64().encode(node_key),
            keyring: b64().encode(keyring),
            index,
        };
        let mut resp = LogicalResponse::ok(
            serde_json::to_value(out).map_err(|e| CoreError::Internal(e.to_string()))?,
        );
        resp.index = index;
        Ok(resp)
    }

    fn autopilot_json(&self) -> Result<LogicalResponse, CoreError> {
        self.require_active()?;
        let st = self.cluster.autopilot_state()?;
        let mut servers = Map::new();
        for s in &st.servers {
            servers.insert(
                s.name.clone(),
                json!({
                    "id": s.name,
                    "name": s.name,
                    "address": s.address,
                    "node_status": s.node_status,
                    "last_contact": format_duration(s.last_contact),
                    "last_term": s.last_term,
                    "last_index": s.last_index,
                    "healthy": s.healthy,
                    "stable_since": "",
                    "status": s.status,
                    "version": crate::VAULT_VERSION,
                    "node_type": if s.voter { "voter" } else { "non-voter" },
                    "sealed": s.sealed,
                    "max_log_format": s.max_format,
                }),
            );
        }
        Ok(LogicalResponse::ok(json!({
            "healthy": st.healthy,
            "failure_tolerance": st.failure_tolerance,
            "optimistic_failure_tolerance": st.failure_tolerance,
            "leader": st.leader,
            "voters": st.voters,
            "servers": servers,
        })))
    }

    /// `sys/storage/raft/*` (enveloped) and `sys/step-down`; `path` is after `sys/`.
    pub(crate) async fn handle_cluster_sys(
        &self,
        state: &Arc<Unsealed>,
        path: &str,
        req: &LogicalRequest,
    ) -> Result<Option<LogicalResponse>, CoreError> {
        let op = req.operation;
        let write = matches!(op, Operation::Update | Operation::Create);
        let resp = match path {
            "step-down" if write => {
                self.require_active()?;
                self.cluster.step_down().await?;
                LogicalResponse::no_content(0)
            }
            "storage/raft/bootstrap/challenge" if write => self.bootstrap_challenge(req)?,
            "storage/raft/bootstrap/answer" if write => self.bootstrap_answer(state, req).await?,
            "storage/raft/configuration" if op == Operation::Read => {
                let c = self.cluster.configuration();
                LogicalResponse::ok(json!({ "config": { "index": c.index, "servers": c.servers } }))
            }
            "storage/raft/remove-peer" if write => {
                self.require_active()?;
                let id = string_field(req, "server_id")?;
                self.cluster.remove_peer(id).await?;
                tracing::info!(server_id = %id, "removed a raft peer");
                LogicalResponse::no_content(0)
            }
            "storage/raft/autopilot/state" if op == Operation::Read => self.autopilot_json()?,
            "storage/raft/snapshot" if op == Operation::Read => self.snapshot_save()?,
            _ => return Ok(None),
        };
        Ok(Some(resp))
    }

    /// After an applied entry changed the root key or keyring: re-read the keyring now;
    /// if it no longer opens with the root key held here, seal (see the module docs).
    pub(crate) fn keys_replicated(&self, keys: &[String]) {
        if !keys.iter().any(|k| k == KEYRING_PATH || k == ROOT_KEY_PATH) || self.is_sealed() {
            return;
        }
        if let Err(coffer_barrier::barrier::BarrierError::Crypto(why)) = self.barrier.key_status() {
            tracing::error!(
                "the replicated keyring does not open with this node's root key ({why}); a \
                 snapshot from another cluster was restored? Sealing: unseal with that \
                 cluster's keys"
            );
            self.pre_seal();
        }
    }
}
