//! The key-ring cache: no storage reads on the hot path after first use, replication
//! invalidation, and no stale entry when a write races a cache fill.

use std::sync::atomic::{AtomicUsize, Ordering};

use coffer_sdk::Operation;
use serde_json::json;
use tokio::sync::Notify;

use super::*;

#[tokio::test]
async fn hot_path_does_not_read_storage_after_first_use() {
    let writer = Harness::new();
    writer.key("aes", json!({})).await;
    writer.key("ed", json!({"type": "ed25519"})).await;
    writer.key("der", json!({"derived": true})).await;
    let ciphertext = writer.encrypt("aes", b"warm", json!({})).await;

    // A fresh backend (another node, or after a restart) over the same storage.
    let h = writer.sibling();
    let before = h.storage.reads();
    assert_eq!(h.decrypt("aes", &ciphertext, json!({})).await, b"warm");
    assert_eq!(
        h.storage.reads(),
        before + 1,
        "first use loads the key ring once"
    );
    h.write("sign/ed", json!({"input": b64(b"x")})).await;
    h.encrypt("der", b"x", json!({"context": b64(b"c")})).await;
    let warm = h.storage.reads();

    for i in 0..50u8 {
        let c = h.encrypt("aes", &[i; 100], json!({})).await;
        assert_eq!(h.decrypt("aes", &c, json!({})).await, vec![i; 100]);
        let d = h.encrypt("der", &[i], json!({"context": b64(b"c")})).await;
        h.decrypt("der", &d, json!({"context": b64(b"c")})).await;
        h.write("rewrap/aes", json!({"ciphertext": c})).await;
        h.write("datakey/wrapped/aes", json!({})).await;
        let sig = str_of(
            &h.write("sign/ed", json!({"input": b64(&[i])})).await,
            "signature",
        )
        .to_string();
        h.write("verify/ed", json!({"input": b64(&[i]), "signature": sig}))
            .await;
        let mac = str_of(
            &h.write("hmac/aes", json!({"input": b64(&[i])})).await,
            "hmac",
        )
        .to_string();
        h.write("verify/aes", json!({"input": b64(&[i]), "hmac": mac}))
            .await;
    }
    assert_eq!(h.storage.reads(), warm, "no storage reads on the hot path");
    assert_eq!(h.backend.cached_policies(), 3);
}

#[tokio::test]
async fn invalidate_drops_the_cached_key_ring() {
    let leader = Harness::new();
    leader.key("k", json!({})).await;
    let follower = leader.sibling();
    assert_eq!(follower.read("keys/k").await["latest_version"], 1);

    // The leader rotates; the follower's cache is stale until it is told.
    leader.write("keys/k/rotate", json!({})).await;
    assert_eq!(follower.read("keys/k").await["latest_version"], 1);
    follower.backend.invalidate("policy/other");
    assert_eq!(follower.read("keys/k").await["latest_version"], 1);
    follower.backend.invalidate("policy/k");
    assert_eq!(follower.read("keys/k").await["latest_version"], 2);

    // A key given with the mount's storage prefix works too.
    leader.write("keys/k/rotate", json!({})).await;
    follower.backend.invalidate("logical/0b1c/policy/k");
    assert_eq!(follower.read("keys/k").await["latest_version"], 3);

    // Deletion replicated: the follower forgets the key.
    leader
        .write("keys/k/config", json!({"deletion_allowed": true}))
        .await;
    leader
        .call(Operation::Delete, "keys/k", serde_json::Value::Null)
        .await
        .unwrap();
    follower.backend.invalidate("policy/k");
    assert_eq!(
        follower
            .fail(Operation::Read, "keys/k", serde_json::Value::Null)
            .await
            .0,
        404
    );

    // config/keys is cached and invalidated the same way.
    assert_eq!(follower.read("config/keys").await["disable_upsert"], false);
    leader
        .write("config/keys", json!({"disable_upsert": true}))
        .await;
    follower.backend.invalidate("config/keys");
    assert_eq!(follower.read("config/keys").await["disable_upsert"], true);
}

/// Storage whose first `get` after arming reads, then waits until released.
#[derive(Default)]
struct GatedStorage {
    inner: MemStorage,
    armed: std::sync::atomic::AtomicBool,
    gets: AtomicUsize,
    reached: Notify,
    release: Notify,
}

#[async_trait]
impl Storage for GatedStorage {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, SdkError> {
        let value = self.inner.get(key).await;
        if self.armed.load(Ordering::SeqCst) && self.gets.fetch_add(1, Ordering::SeqCst) == 0 {
            self.reached.notify_one();
            self.release.notified().await;
        }
        value
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, SdkError> {
        self.inner.list(prefix).await
    }
    async fn commit(&self, ops: Vec<StorageOp>) -> Result<(), SdkError> {
        self.inner.commit(ops).await
    }
}

#[tokio::test]
async fn a_slow_cache_fill_never_overwrites_a_newer_write() {
    let storage = Arc::new(GatedStorage::default());
    // Create the key through another backend so this one starts cold.
    let setup = TransitBackend::new(storage.clone());
    let mut req = request(storage.clone(), Operation::Update, "keys/k", json!({}));
    setup.handle_request(&mut req).await.unwrap();
    storage.armed.store(true, Ordering::SeqCst);

    let backend = Arc::new(TransitBackend::new(storage.clone()));
    let reader = {
        let backend = backend.clone();
        let storage = storage.clone();
        tokio::spawn(async move { backend.policy(storage.as_ref(), "k").await })
    };
    storage.reached.notified().await;
    // While the reader holds a version-1 record, a write makes version 2.
    let mut rotate = request(
        storage.clone(),
        Operation::Update,
        "keys/k/rotate",
        json!({}),
    );
    backend.handle_request(&mut rotate).await.unwrap();
    storage.release.notify_one();
    let stale = reader.await.unwrap().unwrap().unwrap();
    assert_eq!(
        stale.latest_version, 1,
        "the slow reader saw the old record"
    );
    let cached = backend
        .policy(storage.as_ref(), "k")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cached.latest_version, 2, "but did not put it in the cache");
}

#[tokio::test]
async fn key_material_stays_out_of_debug_and_errors() {
    let h = Harness::new();
    h.key("k", json!({"exportable": true, "type": "ed25519"}))
        .await;
    let exported = h.read("export/signing-key/k/1").await;
    let secret = exported["keys"]["1"].as_str().unwrap().to_string();
    let policy = h
        .backend
        .policy(h.storage.as_ref(), "k")
        .await
        .unwrap()
        .unwrap();
    let shown = format!("{policy:?}");
    assert!(!shown.contains(&secret), "{shown}");
    let raw = unb64(&secret);
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!shown.contains(&hex[..16]));
    // Stored bytes are base64 JSON, and the record loads back.
    let stored = h.storage.inner.get("policy/k").await.unwrap().unwrap();
    assert!(crate::policy::KeyPolicy::from_storage(&stored).is_ok());
}
