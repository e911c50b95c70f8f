//! `sys/storage/raft/snapshot`: save (GET) and restore (POST, `snapshot-force` for a
//! snapshot of another cluster).
//!
//! A snapshot file holds only what is below the barrier (ciphertext, plus the plaintext
//! seal configuration) and a manifest that names the cluster and checksums the data:
//!
//! ```text
//! "COFFER-SNAPSHOT" 0x01                 16-byte magic with the format version
//! u64 BE length | payload                the state machine's pairs (ciphertext only)
//! u32 BE length | manifest               JSON {version, barrier_id, index, term,
//!                                          created, sha256 (hex of the payload)}
//! u32 BE length | sealed manifest        the same JSON encrypted under the keyring
//! ```
//!
//! Restoring checks the payload against the manifest's SHA-256 (always: a corrupt or
//! truncated file is refused), then opens the sealed manifest with this cluster's keyring
//! and compares it with the plain one. Only a snapshot sealed by this cluster's keys (same
//! barrier) passes; anything else is refused unless forced. The payload is then written
//! as one Raft log entry that replaces the whole store on every node (see `coffer_raft`'s
//! restore op), so the restore is ordered with all other writes and reaches every member.
//!
//! After a restore every node re-reads what changed through the usual apply listeners.
//! A forced restore from another cluster replaces the root key and keyring too: each node
//! then seals itself (its root key no longer opens the keyring) and is unsealed with the
//! unseal keys of the cluster the snapshot came from, as with Vault.

use serde::{Deserialize, Serialize};

use crate::handling::LogicalResponse;
use crate::{Core, CoreError};

/// The 16-byte magic (the last byte is the format version).
pub const SNAPSHOT_MAGIC: &[u8; 16] = b"COFFER-SNAPSHOT\x01";
/// The AAD path the manifest is sealed under.
const MANIFEST_PATH: &str = "core/raft/snapshot-manifest";
/// How long a restore waits for every voter to understand the restore entry format.
pub const RESTORE_HOLD_BACK: std::time::Duration = std::time::Duration::from_secs(5);

/// What a snapshot says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest version.
    pub version: u32,
    /// The barrier (cluster) it was taken from.
    pub barrier_id: String,
    /// The last applied index it reflects.
    pub index: u64,
    /// That entry's term.
    pub term: u64,
    /// When it was taken (RFC 3339).
    pub created: String,
    /// SHA-256 of the payload, hex.
    pub sha256: String,
}

/// The parts of a snapshot file.
pub struct SnapshotFile<'a> {
    /// The state machine payload.
    pub payload: &'a [u8],
    /// The plain manifest bytes.
    pub manifest: &'a [u8],
    /// The sealed manifest bytes.
    pub sealed: &'a [u8],
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

fn bad(msg: &str) -> CoreError {
    CoreError::BadRequest(format!("invalid snapshot: {msg}"))
}

/// Assemble a snapshot file.
pub fn encode(payload: &[u8], manifest: &[u8], sealed: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + manifest.len() + sealed.len() + 32);
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&(manifest.len() as u32).to_be_bytes());
    out.extend_from_slice(manifest);
    out.extend_from_slice(&(sealed.len() as u32).to_be_bytes());
    out.extend_from_slice(sealed);
    out
}

/// Split a snapshot file into its parts (no checks beyond the framing).
pub fn decode(data: &[u8]) -> Result<SnapshotFile<'_>, CoreError> {
    let rest = data
        .strip_prefix(SNAPSHOT_MAGIC.as_slice())
        .ok_or_else(|| bad("not a coffer snapshot (bad magic or version)"))?;
    fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], CoreError> {
        if rest.len() < n {
            return Err(bad("truncated"));
        }
        let (head, tail) = rest.split_at(n);
        *rest = tail;
        Ok(head)
    }
    let mut rest = rest;
    let len = u64::from_be_bytes(take(&mut rest, 8)?.try_into().map_err(|_| bad("length"))?);
    let len = usize::try_from(len).map_err(|_| bad("length"))?;
    let payload = take(&mut rest, len)?;
    let len = u32::from_be_bytes(take(&mut rest, 4)?.try_into().map_err(|_| bad("length"))?);
    let manifest = take(&mut rest, len as usize)?;
    let len = u32::from_be_bytes(take(&mut rest, 4)?.try_into().map_err(|_| bad("length"))?);
    let sealed = take(&mut rest, len as usize)?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Ok(SnapshotFile {
        payload,
        manifest,
        sealed,
    })
}

impl Core {
    /// `GET sys/storage/raft/snapshot`: the snapshot file of this node's state machine.
    pub(crate) fn snapshot_save(&self) -> Result<LogicalResponse, CoreError> {
        let config = self
            .barrier
            .seal_config()?
            .ok_or(CoreError::NotInitialized)?;
        let state = self.cluster.export_state()?;
        let manifest = Manifest {
            version: 1,
            barrier_id: config.barrier_id,
            index: state.index,
            term: state.term,
            created: chrono::Utc::now().to_rfc3339(),
            sha256: sha256_hex(&state.payload),
        };
        let manifest =
            serde_json::to_vec(&manifest).map_err(|e| CoreError::Internal(e.to_string()))?;
        let sealed = self.barrier.encrypt_value(MANIFEST_PATH, &manifest)?;
        let body = encode(&state.payload, &manifest, &sealed);
        tracing::info!(
            index = state.index,
            bytes = body.len(),
            "saved a raft snapshot"
        );
        Ok(LogicalResponse {
            status: 200,
            raw: Some(coffer_sdk::RawBody {
                status: 200,
                content_type: "application/octet-stream".into(),
                body,
            }),
            index: state.index,
            ..Default::default()
        })
    }

    /// `POST sys/storage/raft/snapshot[-force]` with the snapshot file as the body. The
    /// caller needs `sudo` on the path (checked here: the body is not JSON, so this does
    /// not go through the enveloped pipeline). Returns the index of the restore entry.
    pub async fn snapshot_restore(
        &self,
        token: Option<&str>,
        data: &[u8],
        force: bool,
    ) -> Result<u64, CoreError> {
        let state = self.unsealed()?;
        let path = if force {
            "sys/storage/raft/snapshot-force"
        } else {
            "sys/storage/raft/snapshot"
        };
        let entry = state
            .tokens
            .lookup(token.unwrap_or_default())?
            .ok_or(CoreError::PermissionDenied)?;
        let req = crate::LogicalRequest {
            operation: coffer_sdk::Operation::Update,
            path: path.into(),
            token: token.map(str::to_string),
            data: Default::default(),
            query: Default::default(),
            wrap_ttl: None,
            remote_addr: None,
        };
        self.authorize(
            &state,
            &entry,
            &req,
            coffer_policies::Operation::Update,
            true,
        )?;
        if !self.cluster.is_leader() {
            return Err(CoreError::Standby {
                leader: self.cluster.leader_api_addr(),
            });
        }
        let file = decode(data)?;
        let manifest: Manifest = serde_json::from_slice(file.manifest)
            .map_err(|e| bad(&format!("manifest does not decode: {e}")))?;
        if sha256_hex(file.payload) != manifest.sha256 {
            return Err(bad("the data does not match the manifest's checksum"));
        }
        let ours = self
            .barrier
            .seal_config()?
            .ok_or(CoreError::NotInitialized)?;
        let same_cluster = manifest.barrier_id == ours.barrier_id
            && self
                .barrier
                .decrypt_value(MANIFEST_PATH, file.sealed)
                .is_ok_and(|opened| opened == file.manifest);
        if !same_cluster && !force {
            return Err(CoreError::BadRequest(
                "the snapshot was taken by a different cluster (its sealed manifest does not \
                 open with this cluster's keys); use sys/storage/raft/snapshot-force to \
                 restore it anyway"
                    .into(),
            ));
        }
        tracing::warn!(
            index = manifest.index,
            from = %manifest.barrier_id,
            force,
            same_cluster,
            "restoring a raft snapshot"
        );
        let index = self.cluster.restore_state(file.payload.to_vec()).await?;
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_round_trips_and_rejects_damage() {
        let file = encode(b"payload", b"{\"m\":1}", b"sealed");
        let parts = decode(&file).expect("decode");
        assert_eq!(parts.payload, b"payload");
        assert_eq!(parts.manifest, b"{\"m\":1}");
        assert_eq!(parts.sealed, b"sealed");
        assert!(decode(&file[..file.len() - 1]).is_err());
        let mut extra = file.clone();
        extra.push(0);
        assert!(decode(&extra).is_err());
        let mut wrong = file;
        wrong[15] = 2;
        assert!(decode(&wrong).is_err());
        assert!(decode(b"").is_err());
    }
}
