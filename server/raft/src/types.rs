//! The openraft type configuration and Coffer's log entry payload.
//!
//! Every application log entry is an [`Envelope`]: an entry format version, an op code
//! and an opaque body. The envelope itself always deserialises, so a node that meets an
//! entry written by a newer version can tell exactly what it does not understand, stop
//! applying and say so (see [`supported`]), instead of failing to decode the log or,
//! worse, skipping the entry.
//!
//! Formats and ops: format 1 has [`OP_BATCH`]; format 2 adds [`OP_RESTORE`] (replace the
//! whole store with a snapshot's pairs). An entry carries the lowest format that has its
//! op, so batches are still written as format 1 and every node that understands format 1
//! can apply them. The leader writes a format-2 entry only when every voter advertises
//! format 2 (see `RaftNode::commit_restore`); a node started with a lower
//! `max_format` (a test knob standing in for an older build) behaves exactly like an
//! older build: it refuses such entries and stops applying.

use std::fmt;

use coffer_storage::Op;
use serde::{Deserialize, Serialize};

/// The highest entry format this build understands.
pub const CURRENT_FORMAT: u32 = 2;

/// The first entry format: atomic batches only.
pub const FORMAT_V1: u32 = 1;

/// Op 1 (format 1): an atomic batch of [`coffer_storage::Op`]s, body encoded with rmp-serde.
pub const OP_BATCH: u16 = 1;

/// Op 2 (format 2): replace the whole store with the pairs of a snapshot payload (a
/// restored `sys/storage/raft/snapshot`), body in the snapshot payload encoding.
pub const OP_RESTORE: u16 = 2;

/// The lowest entry format that has `op`, if this build knows the op at all.
pub fn min_format(op: u16) -> Option<u32> {
    match op {
        OP_BATCH => Some(FORMAT_V1),
        OP_RESTORE => Some(2),
        _ => None,
    }
}

/// A cluster member's addresses and identity, as stored in the Raft membership.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Where clients reach this node's Vault API (e.g. `https://10.0.0.1:8200`).
    pub api_addr: String,
    /// Where other nodes reach its cluster port (`host:port`; a scheme is ignored and
    /// replaced by `https://` or `http://` depending on the cluster's TLS flag).
    pub cluster_addr: String,
    /// Vault's string `node_id` (the Raft id is derived from it).
    #[serde(default)]
    pub name: String,
    /// Joined with `non_voter`: autopilot never promotes it.
    #[serde(default)]
    pub non_voter: bool,
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{name: {}, api: {}, cluster: {}}}",
            self.name, self.api_addr, self.cluster_addr
        )
    }
}

/// The versioned payload of every application log entry.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Entry format version.
    pub format: u32,
    /// What the body is (see [`OP_BATCH`]).
    pub op: u16,
    /// The op's encoded arguments. Opaque here: only ciphertext and paths.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

// Bodies hold ciphertext: never print them.
impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("format", &self.format)
            .field("op", &self.op)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl fmt::Display for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "envelope(format={}, op={}, {} bytes)",
            self.format,
            self.op,
            self.body.len()
        )
    }
}

/// What an applied entry means, once its envelope is understood.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Apply these puts and deletes atomically.
    Batch(Vec<Op>),
    /// Replace the whole store with this snapshot payload (still encoded; the state
    /// machine decodes it).
    Restore(Vec<u8>),
}

/// Why an envelope cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Written by a newer version: this node must stop applying until it is upgraded.
    #[error("unsupported log entry: format {format}, op {op}")]
    Unsupported { format: u32, op: u16 },
    /// The body does not decode.
    #[error("log entry body does not decode: {0}")]
    Body(String),
}

/// Whether this build can apply entries of `format` carrying `op`.
pub fn supported(format: u32, op: u16) -> bool {
    supported_up_to(CURRENT_FORMAT, format, op)
}

/// Whether a node that understands formats up to `max_format` can apply `format`/`op`.
pub fn supported_up_to(max_format: u32, format: u32, op: u16) -> bool {
    (FORMAT_V1..=max_format.min(CURRENT_FORMAT)).contains(&format)
        && min_format(op).is_some_and(|min| min <= format)
}

impl Envelope {
    /// An atomic batch of storage ops (format 1: every version can apply it).
    pub fn batch(ops: &[Op]) -> Result<Envelope, EnvelopeError> {
        let body = rmp_serde::to_vec_named(ops).map_err(|e| EnvelopeError::Body(e.to_string()))?;
        Ok(Envelope {
            format: FORMAT_V1,
            op: OP_BATCH,
            body,
        })
    }

    /// Replace the whole store with an encoded snapshot payload (format 2).
    pub fn restore(payload: Vec<u8>) -> Envelope {
        Envelope {
            format: 2,
            op: OP_RESTORE,
            body: payload,
        }
    }

    /// Decode the envelope into the command to apply, as this build.
    pub fn decode(&self) -> Result<Command, EnvelopeError> {
        self.decode_up_to(CURRENT_FORMAT)
    }

    /// Decode as a node that understands formats up to `max_format`.
    pub fn decode_up_to(&self, max_format: u32) -> Result<Command, EnvelopeError> {
        if !supported_up_to(max_format, self.format, self.op) {
            return Err(EnvelopeError::Unsupported {
                format: self.format,
                op: self.op,
            });
        }
        match self.op {
            OP_RESTORE => Ok(Command::Restore(self.body.clone())),
            _ => {
                let ops: Vec<Op> = rmp_serde::from_slice(&self.body)
                    .map_err(|e| EnvelopeError::Body(e.to_string()))?;
                Ok(Command::Batch(ops))
            }
        }
    }
}

/// What applying an entry returns to the writer: the index it was applied at.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub index: u64,
}

openraft::declare_raft_types!(
    /// Coffer's openraft type configuration.
    pub TypeConfig:
        D = Envelope,
        R = Response,
        NodeId = u64,
        Node = Node,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = crate::snapshot::SnapshotData,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A log entry of this cluster.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id of this cluster.
pub type LogId = openraft::LogId<u64>;
/// The error openraft's storage traits return.
pub type RaftStorageError = openraft::StorageError<u64>;
/// The openraft handle.
pub type Raft = openraft::Raft<TypeConfig>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trips_and_unknown_ops_are_refused() {
        let ops = vec![
            Op::Put {
                key: "a/b".into(),
                value: vec![0, 1, 2, 255],
            },
            Op::Delete { key: "c".into() },
        ];
        let env = Envelope::batch(&ops).expect("encode");
        assert_eq!(env.format, FORMAT_V1);
        assert_eq!(env.decode().expect("decode"), Command::Batch(ops));

        let newer = Envelope {
            format: CURRENT_FORMAT + 1,
            ..env.clone()
        };
        assert!(matches!(
            newer.decode(),
            Err(EnvelopeError::Unsupported { format: 3, op: 1 })
        ));
        let unknown_op = Envelope { op: 77, ..env };
        assert!(matches!(
            unknown_op.decode(),
            Err(EnvelopeError::Unsupported { format: 1, op: 77 })
        ));
        assert!(supported(1, 1));
        assert!(!supported(0, 1));
    }

    #[test]
    fn restore_needs_format_two_and_an_older_node_refuses_it() {
        let env = Envelope::restore(vec![1, 2, 3]);
        assert_eq!((env.format, env.op), (2, OP_RESTORE));
        assert_eq!(
            env.decode().expect("decode"),
            Command::Restore(vec![1, 2, 3])
        );
        // A format-1 node knows neither the format nor the op.
        assert!(matches!(
            env.decode_up_to(FORMAT_V1),
            Err(EnvelopeError::Unsupported { format: 2, op: 2 })
        ));
        // Batches stay format 1, so a format-1 node applies them.
        let batch = Envelope::batch(&[]).expect("encode");
        assert!(batch.decode_up_to(FORMAT_V1).is_ok());
        // An op cannot claim a format older than the one that introduced it.
        assert!(!supported(1, OP_RESTORE));
        assert_eq!(min_format(77), None);
    }

    #[test]
    fn an_envelope_from_the_future_still_deserialises() {
        // A newer writer may put anything in the body; the envelope must still decode so
        // the applier can name the format and op it does not know.
        let env = Envelope {
            format: 9,
            op: 300,
            body: b"\xc1 not msgpack".to_vec(),
        };
        let wire = rmp_serde::to_vec_named(&env).expect("encode");
        let back: Envelope = rmp_serde::from_slice(&wire).expect("decode");
        assert_eq!(back, env);
        assert!(
            !format!("{back:?}").contains("msgpack"),
            "Debug must not print the body"
        );
    }
}
