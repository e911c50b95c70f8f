//! Barrier tests over a plain in-memory `Backend` (a test double: the real one is Raft).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use coffer_storage::{children_of, ApplyListener, Backend, Op, StorageError};

use crate::barrier::{Barrier, BarrierError, LogicalOp};
use crate::unseal::ShareCollector;

#[derive(Default)]
struct MemBackend {
    data: Mutex<BTreeMap<String, Vec<u8>>>,
    listeners: Mutex<Vec<ApplyListener>>,
    index: Mutex<u64>,
}

#[async_trait::async_trait]
impl Backend for MemBackend {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.data.lock().unwrap().get(key).cloned())
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let data = self.data.lock().unwrap();
        Ok(children_of(prefix, data.keys().map(String::as_str)))
    }
    async fn commit(&self, ops: Vec<Op>) -> Result<u64, StorageError> {
        let keys: Vec<String> = ops.iter().map(|o| o.key().to_string()).collect();
        {
            let mut data = self.data.lock().unwrap();
            for op in ops {
                match op {
                    Op::Put { key, value } => {
                        data.insert(key, value);
                    }
                    Op::Delete { key } => {
                        data.remove(&key);
                    }
                }
            }
        }
        let index = {
            let mut i = self.index.lock().unwrap();
            *i += 1;
            *i
        };
        for l in self.listeners.lock().unwrap().iter() {
            l(index, &keys);
        }
        Ok(index)
    }
    fn add_apply_listener(&self, listener: ApplyListener) {
        self.listeners.lock().unwrap().push(listener);
    }
    fn applied_index(&self) -> u64 {
        *self.index.lock().unwrap()
    }
}

fn put(key: &str, value: &[u8]) -> LogicalOp {
    LogicalOp::Put {
        key: key.into(),
        value: value.to_vec(),
    }
}

fn unseal_with(
    barrier: &Barrier,
    shares: &[zeroize::Zeroizing<Vec<u8>>],
    n: u8,
    t: u8,
) -> Result<(), BarrierError> {
    let mut c = ShareCollector::new(n, t, "x".into());
    let mut key = None;
    for s in shares {
        if let Some(k) = c.add(s.clone())? {
            key = Some(k);
        }
    }
    barrier.unseal(&key.expect("threshold reached"))
}

#[tokio::test]
async fn init_unseal_write_read_and_no_plaintext_below() {
    let backend = Arc::new(MemBackend::default());
    let barrier = Barrier::new(backend.clone());
    assert!(!barrier.is_initialized().unwrap());
    let (_key, shares) = barrier.initialize(5, 3).await.unwrap();
    assert_eq!(shares.len(), 5);
    assert!(barrier.is_sealed());
    assert!(matches!(barrier.get("a"), Err(BarrierError::Sealed)));
    unseal_with(&barrier, &shares[1..4], 5, 3).unwrap();
    barrier
        .commit(vec![put("secret/a", b"CANARY-123")])
        .await
        .unwrap();
    assert_eq!(barrier.get("secret/a").unwrap().unwrap(), b"CANARY-123");
    for value in backend.data.lock().unwrap().values() {
        assert!(!value.windows(10).any(|w| w == b"CANARY-123"));
    }
    // A value moved to another path does not decrypt.
    let blob = backend
        .data
        .lock()
        .unwrap()
        .get("secret/a")
        .cloned()
        .unwrap();
    backend.data.lock().unwrap().insert("secret/b".into(), blob);
    assert!(barrier.get("secret/b").is_err());
    barrier.seal();
    assert!(matches!(barrier.get("secret/a"), Err(BarrierError::Sealed)));
    assert!(matches!(
        barrier.initialize(1, 1).await,
        Err(BarrierError::AlreadyInitialized)
    ));
}

#[tokio::test]
async fn wrong_shares_do_not_unseal() {
    let backend = Arc::new(MemBackend::default());
    let barrier = Barrier::new(backend.clone());
    let (_key, _shares) = barrier.initialize(3, 2).await.unwrap();
    let other = Barrier::new(Arc::new(MemBackend::default()));
    let (_k2, foreign) = other.initialize(3, 2).await.unwrap();
    assert!(matches!(
        unseal_with(&barrier, &foreign[..2], 3, 2),
        Err(BarrierError::WrongKey)
    ));
    assert!(barrier.is_sealed());
}

#[tokio::test]
async fn rotate_keeps_old_data_and_listeners_reload() {
    let backend = Arc::new(MemBackend::default());
    let barrier = Barrier::new(backend.clone());
    let (key, _shares) = barrier.initialize(1, 1).await.unwrap();
    barrier.unseal(&key).unwrap();
    barrier.commit(vec![put("k/old", b"old")]).await.unwrap();
    // A second barrier on the same backend (another node) picks up the rotation.
    let peer = Barrier::new(backend.clone());
    peer.unseal(&key).unwrap();
    assert_eq!(barrier.key_status().unwrap().term, 1);
    assert_eq!(barrier.rotate().await.unwrap(), 2);
    barrier.commit(vec![put("k/new", b"new")]).await.unwrap();
    assert_eq!(peer.key_status().unwrap().term, 2);
    assert_eq!(peer.get("k/old").unwrap().unwrap(), b"old");
    assert_eq!(peer.get("k/new").unwrap().unwrap(), b"new");
}

#[tokio::test]
async fn rekey_replaces_shares() {
    let backend = Arc::new(MemBackend::default());
    let barrier = Barrier::new(backend.clone());
    let (key, old) = barrier.initialize(3, 2).await.unwrap();
    barrier.unseal(&key).unwrap();
    barrier.commit(vec![put("x", b"1")]).await.unwrap();
    let new = barrier.rekey(&key, 5, 3).await.unwrap();
    assert_eq!(barrier.seal_config().unwrap().unwrap().secret_shares, 5);
    barrier.seal();
    assert!(matches!(
        unseal_with(&barrier, &old[..2], 3, 2),
        Err(BarrierError::WrongKey)
    ));
    unseal_with(&barrier, &new[2..5], 5, 3).unwrap();
    assert_eq!(barrier.get("x").unwrap().unwrap(), b"1");
}

#[test]
fn split_rules() {
    use crate::barrier::validate_split;
    assert!(validate_split(5, 3).is_ok());
    assert!(validate_split(1, 1).is_ok());
    assert!(validate_split(3, 5).is_err());
    assert!(validate_split(3, 1).is_err());
    assert!(validate_split(0, 0).is_err());
}
