//! KV v1: CRUD, list, the advisory `ttl` lease, existence check, bad input.

use std::time::Duration;

use coffer_sdk::{MountTtl, Operation::*};
use serde_json::json;

use super::Kv;

#[tokio::test]
async fn crud_round_trip() {
    let kv = Kv::new("1");
    assert_eq!(
        kv.status(Update, "app/db", json!({"user": "u", "n": 1}))
            .await,
        204
    );
    assert_eq!(
        kv.data(Read, "app/db", json!({})).await,
        json!({"user": "u", "n": 1})
    );

    // A write replaces the secret whole; sub-fields are not merged.
    kv.ok(Create, "app/db", json!({"password": "p"})).await;
    assert_eq!(
        kv.data(Read, "app/db", json!({})).await,
        json!({"password": "p"})
    );

    assert_eq!(kv.status(Delete, "app/db", json!({})).await, 204);
    assert_eq!(kv.status(Read, "app/db", json!({})).await, 404);
    // Deleting what is not there is fine, as Vault.
    assert_eq!(kv.status(Delete, "app/db", json!({})).await, 204);
    assert!(kv.storage.keys().is_empty());
}

#[tokio::test]
async fn read_carries_an_advisory_non_renewable_lease() {
    let default = MountTtl::default().default_lease_ttl;
    let cases = [
        (json!({"k": "v"}), default),
        (json!({"k": "v", "ttl": "1h"}), Duration::from_secs(3600)),
        (json!({"k": "v", "ttl": 90}), Duration::from_secs(90)),
        (json!({"k": "v", "ttl": "30m"}), Duration::from_secs(1800)),
        (json!({"k": "v", "lease": "2h"}), Duration::from_secs(7200)),
        (json!({"k": "v", "ttl": "soon"}), default),
    ];
    for (body, want) in cases {
        let kv = Kv::new("1");
        kv.ok(Update, "s", body.clone()).await;
        let resp = kv.ok(Read, "s", json!({})).await;
        let lease = resp.secret.unwrap_or_else(|| panic!("no lease for {body}"));
        assert_eq!(lease.ttl, want, "{body}");
        assert!(!lease.renewable, "{body}");
        // The ttl field stays part of the data, as Vault returns it.
        assert_eq!(resp.data.map(serde_json::Value::Object), Some(body));
    }
}

#[tokio::test]
async fn list_children_and_folders() {
    let kv = Kv::new("1");
    for path in ["a", "b/c", "b/d/e"] {
        kv.ok(Update, path, json!({"x": 1})).await;
    }
    let cases = [
        ("", json!({"keys": ["a", "b/"]})),
        ("b/", json!({"keys": ["c", "d/"]})),
        ("b", json!({"keys": ["c", "d/"]})),
        ("b/d/", json!({"keys": ["e"]})),
    ];
    for (folder, want) in cases {
        assert_eq!(kv.data(List, folder, json!({})).await, want, "{folder:?}");
    }
    assert_eq!(kv.status(List, "nothing/", json!({})).await, 404);
}

#[tokio::test]
async fn existence_check_tells_create_from_update() {
    let kv = Kv::new("1");
    assert_eq!(kv.exists("s").await, Some(false));
    kv.ok(Update, "s", json!({"x": 1})).await;
    assert_eq!(kv.exists("s").await, Some(true));
}

#[tokio::test]
async fn bad_input_is_400() {
    let kv = Kv::new("1");
    let cases = [
        (Update, "s", json!({})),
        (Read, "", json!({})),
        (Update, "", json!({"x": 1})),
        (Update, "_kv2/meta/x", json!({"x": 1})),
        (Read, "_kv2", json!({})),
        (List, "_kv2/", json!({})),
        (Update, "a//b", json!({"x": 1})),
    ];
    for (op, path, body) in cases {
        assert_eq!(
            kv.status(op, path, body.clone()).await,
            400,
            "{op:?} {path} {body}"
        );
    }
    let missing = kv.err(Update, "s", json!({})).await;
    assert_eq!(missing.to_string(), "missing data fields");
    assert!(kv.storage.keys().is_empty());
    assert_eq!(kv.status(Patch, "s", json!({"x": 1})).await, 405);
}

#[tokio::test]
async fn factory_versions() {
    use coffer_sdk::testing::MemStorage;
    use coffer_sdk::BackendConfig;
    let build = |options: &[(&str, &str)]| {
        crate::factory(BackendConfig {
            mount_point: "kv/".into(),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            storage: MemStorage::new(),
        })
    };
    assert!(build(&[]).is_ok());
    assert!(build(&[("version", "1")]).is_ok());
    assert!(build(&[("version", "2")]).is_ok());
    assert!(build(&[("version", "")]).is_ok());
    assert_eq!(
        build(&[("version", "3")]).err().map(|e| e.status()),
        Some(400)
    );
}
