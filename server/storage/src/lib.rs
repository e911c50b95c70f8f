//! The physical layer: what sits below the barrier and only ever holds ciphertext
//! (plus the plaintext seal configuration, which is needed while sealed).
//!
//! This crate defines the contract between the barrier and the replicated store:
//! [`Op`], [`StorageError`] and the [`Backend`] trait, which the Raft crate implements
//! (every write is a Raft log entry). It also holds the concrete local stores the Raft
//! crate builds on (see the modules below).

use std::sync::Arc;

pub mod kv;
pub mod wal;

use serde::{Deserialize, Serialize};

/// One storage mutation. A request's writes commit together as one atomic batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Create or replace `key` with `value` (ciphertext, or the plaintext seal config).
    Put {
        key: String,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Remove `key`; removing a missing key is not an error.
    Delete { key: String },
}

impl Op {
    /// The key this op touches.
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

/// Errors of the physical layer. None of them carries a stored value.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The local disk or database failed.
    #[error("storage I/O error: {0}")]
    Io(String),
    /// Stored bytes do not decode (checksum mismatch, truncated record, bad format).
    #[error("storage corruption: {0}")]
    Corrupt(String),
    /// This node cannot accept writes; `leader` is the leader's API address if known.
    #[error("node is not the active node")]
    NotLeader { leader: Option<String> },
    /// The replicated log stopped (e.g. it met a log entry format it does not know).
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    /// A bounded wait ran out (commit or index catch-up).
    #[error("storage operation timed out")]
    Timeout,
}

/// Called after a batch is applied to the local state machine, with the Raft index it
/// was applied at and the keys it changed. It runs on the apply path: it must be quick
/// and must not block (mark a cache stale, send on a channel).
pub type ApplyListener = Arc<dyn Fn(u64, &[String]) + Send + Sync>;

/// The replicated key/value store as the barrier sees it.
///
/// Reads are served from the local state machine. `commit` appends one log entry holding
/// the whole batch and returns once it is applied locally, with its log index.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The value at `key`, if any.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;

    /// Vault's physical `List`: the direct children of `prefix` (which should end in `/`
    /// or be empty); a child that has children of its own is returned once, with a
    /// trailing `/`. Sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError>;

    /// Commit `ops` atomically through the replicated log; returns the log index.
    async fn commit(&self, ops: Vec<Op>) -> Result<u64, StorageError>;

    /// Register a listener for applied batches (on every node, leader or not).
    fn add_apply_listener(&self, listener: ApplyListener);

    /// The index of the last log entry applied to the local state machine.
    fn applied_index(&self) -> u64;
}

/// Turn a sorted iterator of full keys under `prefix` into Vault `List` output.
pub fn children_of<'a>(prefix: &str, keys: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for key in keys {
        let Some(rest) = key.strip_prefix(prefix) else {
            continue;
        };
        if rest.is_empty() {
            continue;
        }
        let child = match rest.find('/') {
            Some(i) => &rest[..=i],
            None => rest,
        };
        if out.last().map(String::as_str) != Some(child) {
            out.push(child.to_string());
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_collapse_directories() {
        let keys = ["a/b", "a/c/d", "a/c/e", "a/f", "b/x"];
        assert_eq!(
            children_of("a/", keys.iter().copied()),
            vec!["b".to_string(), "c/".to_string(), "f".to_string()]
        );
        assert_eq!(
            children_of("", keys.iter().copied()),
            vec!["a/".to_string(), "b/".to_string()]
        );
        assert!(children_of("zz/", keys.iter().copied()).is_empty());
    }
}
