//! KV v2 metadata endpoints: read, write, patch, delete, list with folders, and the
//! `custom_metadata` limits.

use coffer_sdk::Operation::*;
use serde_json::{json, Value};

use super::Kv;

async fn mount() -> Kv {
    let kv = Kv::new("2");
    kv.ok(Read, "config", json!({})).await;
    kv
}

#[tokio::test]
async fn metadata_read_write_delete() {
    let kv = mount().await;
    assert_eq!(kv.status(Read, "metadata/app", json!({})).await, 404);
    kv.ok(Update, "data/app", json!({"data": {"v": 1}})).await;
    kv.ok(Update, "data/app", json!({"data": {"v": 2}})).await;

    let body = json!({
        "max_versions": 5,
        "cas_required": false,
        "delete_version_after": "1h30m",
        "custom_metadata": {"owner": "ops", "tier": 1}
    });
    assert_eq!(kv.status(Update, "metadata/app", body).await, 204);

    let meta = kv.data(Read, "metadata/app", json!({})).await;
    assert_eq!(meta["current_version"], 2);
    assert_eq!(meta["oldest_version"], 0);
    assert_eq!(meta["max_versions"], 5);
    assert_eq!(meta["cas_required"], false);
    assert_eq!(meta["delete_version_after"], "1h30m0s");
    assert_eq!(
        meta["custom_metadata"],
        json!({"owner": "ops", "tier": "1"})
    );
    assert_eq!(meta["versions"]["1"]["deletion_time"], "");
    assert_eq!(meta["versions"]["2"]["destroyed"], false);
    assert!(meta["created_time"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert!(meta["updated_time"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    let mut fields: Vec<&String> = meta
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    fields.sort();
    assert_eq!(
        fields,
        [
            "cas_required",
            "created_time",
            "current_version",
            "custom_metadata",
            "delete_version_after",
            "max_versions",
            "oldest_version",
            "updated_time",
            "versions"
        ]
    );

    // custom_metadata shows up in version metadata too.
    let read = kv.data(Read, "data/app", json!({})).await;
    assert_eq!(read["metadata"]["custom_metadata"]["owner"], "ops");

    // A write with no fields changes nothing; a write replaces custom_metadata whole.
    kv.ok(Update, "metadata/app", json!({})).await;
    kv.ok(
        Update,
        "metadata/app",
        json!({"custom_metadata": {"team": "a"}}),
    )
    .await;
    let meta = kv.data(Read, "metadata/app", json!({})).await;
    assert_eq!(meta["custom_metadata"], json!({"team": "a"}));
    assert_eq!(meta["max_versions"], 5);

    // DELETE metadata removes every version and the metadata.
    assert_eq!(kv.status(Delete, "metadata/app", json!({})).await, 204);
    assert_eq!(kv.status(Read, "metadata/app", json!({})).await, 404);
    assert_eq!(kv.status(Read, "data/app", json!({})).await, 404);
    assert!(kv.keys_under("_kv2/meta/").is_empty());
    assert!(kv.keys_under("_kv2/ver/").is_empty());
    assert_eq!(kv.status(Delete, "metadata/app", json!({})).await, 204);
}

#[tokio::test]
async fn metadata_write_creates_a_versionless_secret() {
    let kv = mount().await;
    kv.ok(Update, "metadata/new", json!({"max_versions": 3}))
        .await;
    let meta = kv.data(Read, "metadata/new", json!({})).await;
    assert_eq!(meta["current_version"], 0);
    assert_eq!(meta["versions"], json!({}));
    assert_eq!(meta["custom_metadata"], Value::Null);
    assert_eq!(kv.status(Read, "data/new", json!({})).await, 404);
}

#[tokio::test]
async fn metadata_patch_merges() {
    let kv = mount().await;
    assert_eq!(
        kv.status(Patch, "metadata/p", json!({"max_versions": 1}))
            .await,
        404
    );
    kv.ok(
        Update,
        "metadata/p",
        json!({"max_versions": 4, "custom_metadata": {"a": "1", "b": "2"}}),
    )
    .await;
    let patch = json!({"cas_required": true, "custom_metadata": {"a": null, "c": "3"}});
    assert_eq!(kv.status(Patch, "metadata/p", patch).await, 204);
    let meta = kv.data(Read, "metadata/p", json!({})).await;
    assert_eq!(meta["max_versions"], 4);
    assert_eq!(meta["cas_required"], true);
    assert_eq!(meta["custom_metadata"], json!({"b": "2", "c": "3"}));

    kv.ok(Patch, "metadata/p", json!({"custom_metadata": null}))
        .await;
    let meta = kv.data(Read, "metadata/p", json!({})).await;
    assert_eq!(meta["custom_metadata"], Value::Null);
}

#[tokio::test]
async fn cas_required_false_under_a_requiring_mount_warns() {
    let kv = mount().await;
    kv.ok(Update, "config", json!({"cas_required": true})).await;
    let resp = kv
        .ok(Update, "metadata/w", json!({"cas_required": false}))
        .await;
    assert_eq!(resp.warnings.len(), 1, "{resp:?}");
    // The mount's requirement still applies.
    assert_eq!(
        kv.status(Update, "data/w", json!({"data": {"x": 1}})).await,
        400
    );
}

#[tokio::test]
async fn custom_metadata_limits() {
    let kv = mount().await;
    let many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
    let sixty_four: serde_json::Map<String, Value> =
        (0..64).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases = [
        (json!({"custom_metadata": many}), 400),
        (json!({"custom_metadata": {"k".repeat(129): "v"}}), 400),
        (json!({"custom_metadata": {"k": "v".repeat(513)}}), 400),
        (json!({"custom_metadata": {"": "v"}}), 400),
        (json!({"custom_metadata": {"k": ""}}), 400),
        (json!({"custom_metadata": {"k": {"nested": 1}}}), 400),
        (json!({"custom_metadata": "owner=ops"}), 400),
        (json!({"custom_metadata": {"k": "v\u{7}"}}), 400),
        (json!({"max_versions": "x"}), 400),
        (json!({"max_versions": -3}), 400),
        (json!({"cas_required": [true]}), 400),
        (json!({"delete_version_after": "-1s"}), 400),
        (json!({"custom_metadata": sixty_four}), 204),
        (
            json!({"custom_metadata": {"k".repeat(128): "v".repeat(512)}}),
            204,
        ),
    ];
    for (body, want) in cases {
        let status = kv.status(Update, "metadata/cm", body.clone()).await;
        let shown: String = body.to_string().chars().take(80).collect();
        assert_eq!(status, want, "{shown}");
    }
    // A patch may not push the merged map past the limit either.
    let one_more = json!({"custom_metadata": {"extra": "x"}});
    kv.ok(Update, "metadata/full", json!({"custom_metadata": (0..64).map(|i| (format!("k{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()}))
        .await;
    assert_eq!(kv.status(Patch, "metadata/full", one_more).await, 400);
}

#[tokio::test]
async fn list_metadata_with_folders() {
    let kv = mount().await;
    for path in ["a", "b/c", "b/d/e", "b/d/f"] {
        kv.ok(Update, &format!("data/{path}"), json!({"data": {"x": 1}}))
            .await;
    }
    let cases = [
        ("metadata/", json!({"keys": ["a", "b/"]})),
        ("metadata", json!({"keys": ["a", "b/"]})),
        ("metadata/b/", json!({"keys": ["c", "d/"]})),
        ("metadata/b", json!({"keys": ["c", "d/"]})),
        ("metadata/b/d/", json!({"keys": ["e", "f"]})),
    ];
    for (path, want) in cases {
        assert_eq!(kv.data(List, path, json!({})).await, want, "{path}");
    }
    assert_eq!(kv.status(List, "metadata/nothing/", json!({})).await, 404);

    // Soft-deleted and destroyed secrets are still listed (their metadata exists).
    kv.ok(Delete, "data/a", json!({})).await;
    assert_eq!(
        kv.data(List, "metadata/", json!({})).await,
        json!({"keys": ["a", "b/"]})
    );
    kv.ok(Delete, "metadata/a", json!({})).await;
    assert_eq!(
        kv.data(List, "metadata/", json!({})).await,
        json!({"keys": ["b/"]})
    );
}
