//! The v1 -> v2 upgrade: v1 secrets become version 1 of the same path, one atomic commit
//! per secret, then a marker; rerunning is a no-op and a half-done upgrade finishes.

use coffer_sdk::testing::MemStorage;
use coffer_sdk::Operation::*;
use serde_json::json;

use super::Kv;
use crate::layout::UPGRADE_KEY;

#[tokio::test]
async fn v1_data_becomes_version_one() {
    let v1 = Kv::new("1");
    let secrets = [
        ("a", json!({"k": "a"})),
        ("dir/b", json!({"k": "b", "ttl": "1h"})),
        ("dir/sub/c", json!({"n": 3, "nested": {"x": [1, 2]}})),
    ];
    for (path, data) in &secrets {
        v1.ok(Update, path, data.clone()).await;
    }
    let commits_before = v1.storage.commits();

    // The core rebuilds the mount as v2 over the same storage.
    let v2 = Kv::over(v1.storage.clone(), "2");
    for (path, data) in &secrets {
        let read = v2.data(Read, &format!("data/{path}"), json!({})).await;
        assert_eq!(&read["data"], data, "{path}");
        assert_eq!(read["metadata"]["version"], 1, "{path}");
        assert_eq!(read["metadata"]["deletion_time"], "", "{path}");
    }
    // One commit per secret plus the marker.
    assert_eq!(
        v2.storage.commits(),
        commits_before + secrets.len() as u64 + 1
    );
    // Nothing is left outside the v2 subtree.
    assert!(
        v2.storage.keys().iter().all(|k| k.starts_with("_kv2/")),
        "{:?}",
        v2.storage.keys()
    );
    assert_eq!(v2.keys_under(UPGRADE_KEY), [UPGRADE_KEY]);

    assert_eq!(
        v2.data(List, "metadata/", json!({})).await,
        json!({"keys": ["a", "dir/"]})
    );
    assert_eq!(
        v2.data(List, "metadata/dir/", json!({})).await,
        json!({"keys": ["b", "sub/"]})
    );
    let meta = v2.data(Read, "metadata/dir/sub/c", json!({})).await;
    assert_eq!(meta["current_version"], 1);

    // Writes continue from version 1, with CAS.
    let next = json!({"data": {"k": "a2"}, "options": {"cas": 1}});
    assert_eq!(v2.data(Update, "data/a", next).await["version"], 2);
}

#[tokio::test]
async fn upgrade_is_idempotent() {
    let v1 = Kv::new("1");
    v1.ok(Update, "s", json!({"x": 1})).await;
    let first = Kv::over(v1.storage.clone(), "2");
    first.ok(Read, "data/s", json!({})).await;
    let keys = first.storage.keys();
    let commits = first.storage.commits();

    // A second backend over the same storage (a restart) finds the marker.
    let second = Kv::over(first.storage.clone(), "2");
    assert_eq!(
        second.data(Read, "data/s", json!({})).await["data"],
        json!({"x": 1})
    );
    assert_eq!(second.storage.keys(), keys);
    assert_eq!(second.storage.commits(), commits);

    // Running the migration itself again changes nothing either.
    crate::upgrade::run(second.storage.as_ref())
        .await
        .expect("rerun");
    assert_eq!(second.storage.keys(), keys);
    assert_eq!(second.storage.commits(), commits);
}

#[tokio::test]
async fn interrupted_upgrade_finishes() {
    // Simulate a crash after the first secret moved: "a" is migrated, the marker is not
    // written, and "b" is still v1 data.
    let storage = MemStorage::new();
    let v1 = Kv::over(storage.clone(), "1");
    v1.ok(Update, "a", json!({"k": "a"})).await;
    let partial = Kv::over(storage.clone(), "2");
    partial.ok(Read, "config", json!({})).await;
    coffer_sdk::Storage::delete(storage.as_ref(), UPGRADE_KEY)
        .await
        .expect("drop marker");
    coffer_sdk::Storage::put(storage.as_ref(), "b", br#"{"k":"b"}"#.to_vec())
        .await
        .expect("v1 write");

    let resumed = Kv::over(storage.clone(), "2");
    for (path, k) in [("a", "a"), ("b", "b")] {
        let read = resumed.data(Read, &format!("data/{path}"), json!({})).await;
        assert_eq!(read["data"]["k"], k, "{path}");
        assert_eq!(read["metadata"]["version"], 1, "{path}");
    }
    assert_eq!(
        resumed.data(Read, "metadata/a", json!({})).await["current_version"],
        1
    );
    assert!(storage.keys().iter().all(|k| k.starts_with("_kv2/")));
}

#[tokio::test]
async fn foreign_values_are_left_in_place() {
    let storage = MemStorage::new();
    coffer_sdk::Storage::put(storage.as_ref(), "junk", b"not json".to_vec())
        .await
        .expect("put");
    let v2 = Kv::over(storage.clone(), "2");
    assert_eq!(v2.status(Read, "data/junk", json!({})).await, 404);
    assert!(storage.keys().contains(&"junk".to_string()));
    assert_eq!(v2.keys_under(UPGRADE_KEY), [UPGRADE_KEY]);
}

#[tokio::test]
async fn existence_check_upgrades_first() {
    let v1 = Kv::new("1");
    v1.ok(Update, "s", json!({"x": 1})).await;
    let v2 = Kv::over(v1.storage.clone(), "2");
    assert_eq!(v2.exists("data/s").await, Some(true));
}
