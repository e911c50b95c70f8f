//! KV v2 version endpoints: write/read, `?version=`, CAS, PATCH, soft delete, undelete,
//! destroy, pruning, subkeys, atomic commits, the v1-style path warning, bad input.

use chrono::{DateTime, Utc};
use coffer_sdk::Operation::*;
use serde_json::{json, Value};

use super::Kv;

/// A fresh v2 mount that has already been used once (so the upgrade check is done).
async fn mount() -> Kv {
    let kv = Kv::new("2");
    kv.ok(Read, "config", json!({})).await;
    kv
}

fn parse_time(value: &Value) -> DateTime<Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"));
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

#[tokio::test]
async fn write_and_read_versions() {
    let kv = mount().await;
    let written = kv.data(Update, "data/app", json!({"data": {"v": 1}})).await;
    assert_eq!(written["version"], 1);
    assert_eq!(written["deletion_time"], "");
    assert_eq!(written["destroyed"], false);
    assert_eq!(written["custom_metadata"], Value::Null);
    let created = parse_time(&written["created_time"]);
    assert!(written["created_time"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert!((Utc::now() - created).num_seconds() < 60);

    kv.ok(Create, "data/app", json!({"data": {"v": 2}})).await;
    let latest = kv.data(Read, "data/app", json!({})).await;
    assert_eq!(latest["data"], json!({"v": 2}));
    assert_eq!(latest["metadata"]["version"], 2);

    let cases = [
        (json!({"version": 1}), Some(json!({"v": 1}))),
        (json!({"version": "2"}), Some(json!({"v": 2}))),
        (json!({"version": 0}), Some(json!({"v": 2}))),
        (json!({"version": 3}), None),
    ];
    for (query, want) in cases {
        let resp = kv.call(Read, "data/app", query.clone()).await;
        match want {
            Some(data) => {
                let body = resp
                    .map(|r| r.data)
                    .unwrap_or_else(|e| panic!("{query}: {e:?}"));
                assert_eq!(body.map(|b| b["data"].clone()), Some(data), "{query}");
            }
            None => assert_eq!(super::status_of(&resp), 404, "{query}"),
        }
    }
    assert_eq!(kv.status(Read, "data/missing", json!({})).await, 404);
}

#[tokio::test]
async fn check_and_set() {
    let kv = mount().await;
    // (cas, expected status) applied in order to one path.
    let steps = [
        (json!({"cas": 1}), 400),
        (json!({"cas": 0}), 200),
        (json!({"cas": 0}), 400),
        (json!({"cas": 1}), 200),
        (json!({"cas": 1}), 400),
        (json!({"cas": "2"}), 200),
        (json!({}), 200),
    ];
    for (i, (options, want)) in steps.into_iter().enumerate() {
        let body = json!({"data": {"step": i}, "options": options});
        assert_eq!(kv.status(Update, "data/c", body).await, want, "step {i}");
    }
    let err = kv
        .err(Update, "data/c", json!({"data": {}, "options": {"cas": 1}}))
        .await;
    assert_eq!(err.status(), 400);
    assert_eq!(
        err.to_string(),
        "check-and-set parameter did not match the current version"
    );
    assert_eq!(
        kv.data(Read, "data/c", json!({})).await["metadata"]["version"],
        4
    );
}

#[tokio::test]
async fn cas_required_by_mount_or_secret() {
    let kv = mount().await;
    kv.ok(Update, "config", json!({"cas_required": true})).await;
    let err = kv.err(Update, "data/a", json!({"data": {"x": 1}})).await;
    assert_eq!(err.status(), 400);
    assert_eq!(
        err.to_string(),
        "check-and-set parameter required for this call"
    );
    kv.ok(
        Update,
        "data/a",
        json!({"data": {"x": 1}, "options": {"cas": 0}}),
    )
    .await;

    let kv = mount().await;
    kv.ok(Update, "metadata/b", json!({"cas_required": true}))
        .await;
    assert_eq!(
        kv.status(Update, "data/b", json!({"data": {"x": 1}})).await,
        400
    );
    assert_eq!(
        kv.status(Update, "data/other", json!({"data": {"x": 1}}))
            .await,
        200
    );
    // The secret has metadata but no version: its current version is 0.
    assert_eq!(
        kv.status(
            Update,
            "data/b",
            json!({"data": {"x": 1}, "options": {"cas": 0}})
        )
        .await,
        200
    );
    assert_eq!(
        kv.status(Patch, "data/b", json!({"data": {"y": 2}})).await,
        400
    );
}

#[tokio::test]
async fn patch_merges_into_a_new_version() {
    let kv = mount().await;
    kv.ok(
        Update,
        "data/p",
        json!({"data": {"a": 1, "gone": true, "nested": {"keep": "k", "drop": "d", "change": 1}}}),
    )
    .await;
    let patched = kv
        .data(
            Patch,
            "data/p",
            json!({"data": {"gone": null, "b": [1, 2], "nested": {"drop": null, "change": 2, "new": {}}}}),
        )
        .await;
    assert_eq!(patched["version"], 2);
    let read = kv.data(Read, "data/p", json!({})).await;
    assert_eq!(
        read["data"],
        json!({"a": 1, "b": [1, 2], "nested": {"keep": "k", "change": 2, "new": {}}})
    );
    // The previous version is untouched.
    let v1 = kv.data(Read, "data/p", json!({"version": 1})).await;
    assert_eq!(v1["data"]["gone"], true);

    // CAS is honoured.
    let stale = json!({"data": {"a": 2}, "options": {"cas": 1}});
    assert_eq!(kv.status(Patch, "data/p", stale).await, 400);
    let fresh = json!({"data": {"a": 2}, "options": {"cas": 2}});
    assert_eq!(kv.status(Patch, "data/p", fresh).await, 200);

    assert_eq!(
        kv.status(Patch, "data/none", json!({"data": {"a": 1}}))
            .await,
        404
    );
    assert_eq!(kv.status(Patch, "data/p", json!({})).await, 400);

    // A deleted latest version cannot be patched: 404 with its metadata.
    kv.ok(Delete, "data/p", json!({})).await;
    let resp = kv.ok(Patch, "data/p", json!({"data": {"a": 3}})).await;
    assert_eq!(resp.status, Some(404));
    let body = Value::Object(resp.data.unwrap_or_default());
    assert_eq!(body["version"], 3);
    assert_ne!(body["deletion_time"], "");
}

#[tokio::test]
async fn soft_delete_undelete_destroy() {
    let kv = mount().await;
    for v in 1..=3 {
        kv.ok(Update, "data/s", json!({"data": {"v": v}})).await;
    }

    // DELETE data/: the latest version reads as 404 with its metadata.
    assert_eq!(kv.status(Delete, "data/s", json!({})).await, 204);
    let resp = kv.ok(Read, "data/s", json!({})).await;
    assert_eq!(resp.status, Some(404));
    let body = Value::Object(resp.data.unwrap_or_default());
    assert_eq!(body["data"], Value::Null);
    assert_eq!(body["metadata"]["version"], 3);
    assert_eq!(body["metadata"]["destroyed"], false);
    let deleted_at = parse_time(&body["metadata"]["deletion_time"]);
    assert!(deleted_at <= Utc::now());
    // Older versions stay readable; the data of the deleted one is still stored.
    assert_eq!(
        kv.data(Read, "data/s", json!({"version": 2})).await["data"]["v"],
        2
    );
    assert_eq!(kv.keys_under("_kv2/ver/s/").len(), 3);

    // delete/ with explicit versions, then undelete.
    assert_eq!(
        kv.status(Update, "delete/s", json!({"versions": [1, 2, 99]}))
            .await,
        204
    );
    for v in 1..=3 {
        let status = kv.status(Read, "data/s", json!({"version": v})).await;
        assert_eq!(status, 404, "version {v}");
    }
    assert_eq!(
        kv.status(Update, "undelete/s", json!({"versions": "1,3"}))
            .await,
        204
    );
    assert_eq!(kv.data(Read, "data/s", json!({})).await["data"]["v"], 3);
    assert_eq!(
        kv.data(Read, "data/s", json!({"version": 1})).await["metadata"]["deletion_time"],
        ""
    );
    assert_eq!(kv.status(Read, "data/s", json!({"version": 2})).await, 404);

    // destroy: data gone for good, metadata says destroyed, undelete cannot revive it.
    assert_eq!(
        kv.status(Update, "destroy/s", json!({"versions": [3]}))
            .await,
        204
    );
    assert_eq!(
        kv.keys_under("_kv2/ver/s/"),
        ["_kv2/ver/s/1", "_kv2/ver/s/2"]
    );
    let resp = kv.ok(Read, "data/s", json!({})).await;
    assert_eq!(resp.status, Some(404));
    let body = Value::Object(resp.data.unwrap_or_default());
    assert_eq!(body["metadata"]["destroyed"], true);
    kv.ok(Update, "undelete/s", json!({"versions": [3]})).await;
    assert_eq!(kv.status(Read, "data/s", json!({})).await, 404);
    let meta = kv.data(Read, "metadata/s", json!({})).await;
    assert_eq!(meta["versions"]["3"]["destroyed"], true);
    assert_eq!(meta["versions"]["1"]["destroyed"], false);

    // On a secret that does not exist these are no-ops.
    for path in ["delete/none", "undelete/none", "destroy/none"] {
        assert_eq!(
            kv.status(Update, path, json!({"versions": [1]})).await,
            204,
            "{path}"
        );
    }
    assert_eq!(kv.status(Delete, "data/none", json!({})).await, 204);
}

#[tokio::test]
async fn versions_field_is_validated() {
    let kv = mount().await;
    kv.ok(Update, "data/s", json!({"data": {"v": 1}})).await;
    let bodies = [
        json!({}),
        json!({"versions": []}),
        json!({"versions": "abc"}),
        json!({"versions": [true]}),
        json!({"versions": [-1]}),
        json!({"versions": {"1": true}}),
    ];
    for endpoint in ["delete/s", "undelete/s", "destroy/s"] {
        for body in &bodies {
            assert_eq!(
                kv.status(Update, endpoint, body.clone()).await,
                400,
                "{endpoint} {body}"
            );
        }
    }
    let err = kv.err(Update, "destroy/s", json!({})).await;
    assert_eq!(err.to_string(), "no version number provided");
    assert_eq!(kv.data(Read, "data/s", json!({})).await["data"]["v"], 1);
}

#[tokio::test]
async fn max_versions_prunes_oldest_in_the_same_commit() {
    let kv = mount().await;
    kv.ok(Update, "metadata/m", json!({"max_versions": 2}))
        .await;
    for v in 1..=4 {
        kv.ok(Update, "data/m", json!({"data": {"v": v}})).await;
    }
    let mut kept = kv.keys_under("_kv2/ver/m/");
    kept.sort();
    assert_eq!(kept, ["_kv2/ver/m/3", "_kv2/ver/m/4"]);
    let meta = kv.data(Read, "metadata/m", json!({})).await;
    assert_eq!(meta["current_version"], 4);
    assert_eq!(meta["oldest_version"], 3);
    let versions: Vec<&String> = meta["versions"]
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    assert_eq!(versions, ["3", "4"]);
    assert_eq!(kv.status(Read, "data/m", json!({"version": 1})).await, 404);

    // The mount default applies when the secret sets none; the default default is 10.
    kv.ok(Update, "config", json!({"max_versions": 3})).await;
    for v in 1..=5 {
        kv.ok(Update, "data/n", json!({"data": {"v": v}})).await;
    }
    assert_eq!(kv.keys_under("_kv2/ver/n/").len(), 3);
    kv.ok(Update, "config", json!({"max_versions": 0})).await;
    for v in 1..=12 {
        kv.ok(Update, "data/d", json!({"data": {"v": v}})).await;
    }
    assert_eq!(kv.keys_under("_kv2/ver/d/").len(), 10);
}

#[tokio::test]
async fn a_write_is_one_commit() {
    let kv = mount().await;
    kv.ok(Update, "metadata/w", json!({"max_versions": 1}))
        .await;
    kv.ok(Update, "data/w", json!({"data": {"v": 1}})).await;
    // This write adds version 2, updates the metadata and prunes version 1.
    let before = kv.storage.commits();
    kv.ok(Update, "data/w", json!({"data": {"v": 2}})).await;
    assert_eq!(kv.storage.commits(), before + 1);
    assert_eq!(kv.keys_under("_kv2/ver/w/"), ["_kv2/ver/w/2"]);

    let before = kv.storage.commits();
    kv.ok(Patch, "data/w", json!({"data": {"p": 1}})).await;
    kv.ok(Update, "destroy/w", json!({"versions": [3]})).await;
    kv.ok(Delete, "metadata/w", json!({})).await;
    assert_eq!(kv.storage.commits(), before + 3);
    assert!(kv.keys_under("_kv2/ver/").is_empty());

    // Reads never write.
    let before = kv.storage.commits();
    kv.call(Read, "data/w", json!({})).await.ok();
    kv.call(Read, "metadata/w", json!({})).await.ok();
    assert_eq!(kv.storage.commits(), before);
}

#[tokio::test]
async fn delete_version_after_schedules_deletion() {
    let kv = mount().await;
    kv.ok(Update, "config", json!({"delete_version_after": "1h"}))
        .await;
    let written = kv.data(Update, "data/t", json!({"data": {"x": 1}})).await;
    let created = parse_time(&written["created_time"]);
    let deletion = parse_time(&written["deletion_time"]);
    assert_eq!((deletion - created).num_seconds(), 3600);
    // Scheduled in the future: still readable.
    assert_eq!(kv.status(Read, "data/t", json!({})).await, 200);

    // The secret's shorter setting wins.
    kv.ok(Update, "metadata/t", json!({"delete_version_after": "10m"}))
        .await;
    let written = kv.data(Update, "data/t", json!({"data": {"x": 2}})).await;
    let gap = parse_time(&written["deletion_time"]) - parse_time(&written["created_time"]);
    assert_eq!(gap.num_seconds(), 600);

    // A negative mount value disables it everywhere.
    kv.ok(Update, "config", json!({"delete_version_after": "-1s"}))
        .await;
    let written = kv.data(Update, "data/t", json!({"data": {"x": 3}})).await;
    assert_eq!(written["deletion_time"], "");
}

#[tokio::test]
async fn subkeys_strip_values() {
    let kv = mount().await;
    kv.ok(
        Update,
        "data/sk",
        json!({"data": {"foo": "abc", "bar": {"baz": "def", "deep": {"x": 1}}, "quux": {}}}),
    )
    .await;
    kv.ok(Update, "data/sk", json!({"data": {"only": 1}})).await;
    let cases = [
        (json!({}), json!({"only": null})),
        (
            json!({"version": 1}),
            json!({"foo": null, "bar": {"baz": null, "deep": {"x": null}}, "quux": null}),
        ),
        (
            json!({"version": 1, "depth": 1}),
            json!({"foo": null, "bar": null, "quux": null}),
        ),
        (
            json!({"version": "1", "depth": "2"}),
            json!({"foo": null, "bar": {"baz": null, "deep": null}, "quux": null}),
        ),
    ];
    for (query, want) in cases {
        let body = kv.data(Read, "subkeys/sk", query.clone()).await;
        assert_eq!(body["subkeys"], want, "{query}");
        assert!(body["metadata"]["version"].is_u64(), "{query}");
    }
    assert_eq!(
        kv.status(Read, "subkeys/sk", json!({"depth": -1})).await,
        400
    );
    assert_eq!(
        kv.status(Read, "subkeys/sk", json!({"depth": "x"})).await,
        400
    );
    assert_eq!(kv.status(Read, "subkeys/none", json!({})).await, 404);
    kv.ok(Delete, "data/sk", json!({})).await;
    let resp = kv.ok(Read, "subkeys/sk", json!({})).await;
    assert_eq!(resp.status, Some(404));
    assert_eq!(resp.data.map(|d| d["subkeys"].clone()), Some(Value::Null));
}

#[tokio::test]
async fn v1_style_paths_get_vaults_warning() {
    let kv = mount().await;
    let cases = [
        (Read, "secret", "vault kv get"),
        (Update, "foo/bar", "vault kv put"),
        (Delete, "foo", "vault kv delete"),
        (List, "foo/", "vault kv list"),
        (Read, "data", "vault kv get"),
    ];
    for (op, path, verb) in cases {
        let resp = kv.ok(op, path, json!({"x": 1})).await;
        assert_eq!(resp.status, Some(404), "{path}");
        assert!(resp.data.is_none(), "{path}");
        let warning = resp.warnings.first().cloned().unwrap_or_default();
        assert!(
            warning.starts_with("Invalid path for a versioned K/V secrets engine"),
            "{warning}"
        );
        assert!(warning.contains(verb), "{warning}");
    }
    assert!(kv.keys_under("_kv2/meta/").is_empty());
}

#[tokio::test]
async fn bad_input_is_400_and_changes_nothing() {
    let kv = mount().await;
    kv.ok(Update, "data/b", json!({"data": {"v": 1}})).await;
    let snapshot = kv.storage.keys();
    let cases = [
        (Update, "data/b", json!({})),
        (Update, "data/b", json!({"data": "x"})),
        (Update, "data/b", json!({"data": [1]})),
        (Update, "data/b", json!({"data": null})),
        (Update, "data/b", json!({"data": {}, "options": "cas"})),
        (
            Update,
            "data/b",
            json!({"data": {}, "options": {"cas": "x"}}),
        ),
        (
            Update,
            "data/b",
            json!({"data": {}, "options": {"cas": -1}}),
        ),
        (Patch, "data/b", json!({"data": 5})),
        (Update, "data/", json!({"data": {}})),
        (Read, "data/", json!({})),
        (Update, "data/a//b", json!({"data": {}})),
        (Read, "data/b", json!({"version": "latest"})),
        (Update, "config", json!({"max_versions": "x"})),
        (Update, "config", json!({"max_versions": -1})),
        (Update, "config", json!({"cas_required": "maybe"})),
        (Update, "config", json!({"delete_version_after": "soon"})),
    ];
    for (op, path, body) in cases {
        assert_eq!(
            kv.status(op, path, body.clone()).await,
            400,
            "{op:?} {path} {body}"
        );
    }
    assert_eq!(kv.storage.keys(), snapshot);
    let err = kv.err(Update, "data/b", json!({"data": "x"})).await;
    assert_eq!(err.to_string(), "no data provided");
    assert_eq!(kv.status(List, "data/", json!({})).await, 405);
    assert_eq!(kv.status(Patch, "config", json!({})).await, 405);
}

#[tokio::test]
async fn config_round_trip() {
    let kv = mount().await;
    assert_eq!(
        kv.data(Read, "config", json!({})).await,
        json!({"cas_required": false, "delete_version_after": "0s", "max_versions": 0})
    );
    assert_eq!(
        kv.status(
            Update,
            "config",
            json!({"max_versions": 7, "delete_version_after": "3h25m19s"})
        )
        .await,
        204
    );
    kv.ok(Update, "config", json!({"cas_required": "true"}))
        .await;
    assert_eq!(
        kv.data(Read, "config", json!({})).await,
        json!({"cas_required": true, "delete_version_after": "3h25m19s", "max_versions": 7})
    );
    kv.ok(Update, "config", json!({"delete_version_after": 0}))
        .await;
    assert_eq!(
        kv.data(Read, "config", json!({})).await["delete_version_after"],
        "0s"
    );
}

#[tokio::test]
async fn existence_check_on_v2_paths() {
    let kv = mount().await;
    assert_eq!(kv.exists("data/e").await, Some(false));
    assert_eq!(kv.exists("metadata/e").await, Some(false));
    kv.ok(Update, "data/e", json!({"data": {"x": 1}})).await;
    assert_eq!(kv.exists("data/e").await, Some(true));
    assert_eq!(kv.exists("metadata/e").await, Some(true));
    assert_eq!(kv.exists("config").await, None);
    assert_eq!(kv.exists("destroy/e").await, None);
}

#[tokio::test]
async fn a_fresh_mount_never_writes_on_reads() {
    let kv = Kv::new("2");
    assert_eq!(kv.status(Read, "data/x", json!({})).await, 404);
    assert_eq!(kv.status(List, "metadata/", json!({})).await, 404);
    assert_eq!(kv.exists("data/x").await, Some(false));
    assert_eq!(kv.storage.commits(), 0);
}

#[tokio::test]
async fn nested_paths_do_not_collide() {
    // Version 1 of "a" and the secret "a/1" share a textual prefix in storage.
    let kv = mount().await;
    kv.ok(Update, "data/a", json!({"data": {"who": "a"}})).await;
    kv.ok(Update, "data/a/1", json!({"data": {"who": "a/1"}}))
        .await;
    kv.ok(Update, "destroy/a", json!({"versions": [1]})).await;
    kv.ok(Delete, "metadata/a", json!({})).await;
    assert_eq!(kv.status(Read, "data/a", json!({})).await, 404);
    assert_eq!(
        kv.data(Read, "data/a/1", json!({})).await["data"]["who"],
        "a/1"
    );
    assert_eq!(
        kv.data(List, "metadata/", json!({})).await,
        json!({"keys": ["a/"]})
    );
}

/// Reads serve decoded metadata from a cache: a change made by this mount shows at once,
/// and a change that arrives through replication (storage changed underneath, then the
/// core's `invalidate`) shows once it is invalidated.
#[tokio::test]
async fn cached_metadata_follows_local_and_replicated_changes() {
    use coffer_sdk::{Storage, StorageOp};

    let kv = mount().await;
    kv.ok(Update, "data/app", json!({"data": {"v": 1}})).await;
    assert_eq!(
        kv.data(Read, "data/app", json!({})).await["metadata"]["version"],
        1
    );
    kv.ok(Update, "data/app", json!({"data": {"v": 2}})).await;
    let read = kv.data(Read, "data/app", json!({})).await;
    assert_eq!(read["metadata"]["version"], 2);
    assert_eq!(read["data"]["v"], 2);
    kv.ok(Delete, "data/app", json!({})).await;
    assert_eq!(kv.status(Read, "data/app", json!({})).await, 404);
    kv.ok(Update, "undelete/app", json!({"versions": [2]}))
        .await;
    assert_eq!(kv.data(Read, "data/app", json!({})).await["data"]["v"], 2);

    // Another node wrote version 3 (what replication applies under this node).
    let meta_key = "_kv2/meta/app";
    let mut meta: Value =
        serde_json::from_slice(&kv.storage.get(meta_key).await.unwrap().unwrap()).unwrap();
    let created = meta["versions"]["2"]["created_time"].clone();
    meta["current_version"] = json!(3);
    meta["versions"]["3"] =
        json!({"created_time": created, "deletion_time": null, "destroyed": false});
    let record = json!({"created_time": created, "data": {"v": 3}});
    kv.storage
        .commit(vec![
            StorageOp::Put {
                key: "_kv2/ver/app/3".into(),
                value: serde_json::to_vec(&record).unwrap(),
            },
            StorageOp::Put {
                key: meta_key.into(),
                value: serde_json::to_vec(&meta).unwrap(),
            },
        ])
        .await
        .unwrap();
    // Not invalidated yet: the cached metadata still says version 2.
    assert_eq!(
        kv.data(Read, "data/app", json!({})).await["metadata"]["version"],
        2
    );
    kv.backend.invalidate(meta_key);
    let read = kv.data(Read, "data/app", json!({})).await;
    assert_eq!(read["metadata"]["version"], 3);
    assert_eq!(read["data"]["v"], 3);

    // Metadata deleted: the secret is gone at once.
    kv.ok(Delete, "metadata/app", json!({})).await;
    assert_eq!(kv.status(Read, "data/app", json!({})).await, 404);
}

/// A write takes the secret's metadata (also "does not exist") and the mount config
/// from the caches: creating a secret after its existence check reads no storage. Local
/// and replicated changes of either are seen by the next write.
#[tokio::test]
async fn writes_use_the_cached_metadata_and_config_and_follow_changes() {
    use coffer_sdk::testing::request;
    use coffer_sdk::{Storage, StorageOp};

    let kv = mount().await;
    kv.ok(Update, "data/warm", json!({"data": {"v": 1}})).await;
    let exists = |path: &str| {
        let req = request(kv.storage.clone(), Update, path, json!({}));
        let backend = kv.backend.clone();
        async move { backend.existence_check(&req).await.unwrap() }
    };

    // Create after the existence check: no storage read at all.
    assert_eq!(exists("data/new").await, Some(false));
    let reads = kv.storage.reads();
    kv.ok(Update, "data/new", json!({"data": {"v": 1}})).await;
    assert_eq!(kv.storage.reads(), reads);
    assert_eq!(exists("data/new").await, Some(true));
    let written = kv.ok(Update, "data/new", json!({"data": {"v": 2}})).await;
    assert_eq!(written.data.unwrap()["version"], 2);

    // Cached as absent, then created by another node: the next write makes version 2.
    assert_eq!(exists("data/elsewhere").await, Some(false));
    let created = "2024-01-01T00:00:00Z";
    let meta = json!({
        "current_version": 1, "oldest_version": 1, "max_versions": 0, "cas_required": false,
        "delete_version_after": 0, "custom_metadata": {}, "created_time": created,
        "updated_time": created,
        "versions": {"1": {"created_time": created, "deletion_time": null, "destroyed": false}},
    });
    kv.storage
        .commit(vec![
            StorageOp::Put {
                key: "_kv2/ver/elsewhere/1".into(),
                value: serde_json::to_vec(&json!({"created_time": created, "data": {"v": 1}}))
                    .unwrap(),
            },
            StorageOp::Put {
                key: "_kv2/meta/elsewhere".into(),
                value: serde_json::to_vec(&meta).unwrap(),
            },
        ])
        .await
        .unwrap();
    kv.backend.invalidate("_kv2/meta/elsewhere");
    let written = kv
        .ok(Update, "data/elsewhere", json!({"data": {"v": 2}}))
        .await;
    assert_eq!(written.data.unwrap()["version"], 2);
    assert_eq!(
        kv.data(Read, "data/elsewhere", json!({"version": 1})).await["data"]["v"],
        1
    );

    // The config: a local change applies to the very next write...
    kv.ok(Update, "config", json!({"cas_required": true})).await;
    assert_eq!(
        kv.status(Update, "data/warm", json!({"data": {"v": 2}}))
            .await,
        400
    );
    kv.ok(
        Update,
        "data/warm",
        json!({"data": {"v": 2}, "options": {"cas": 1}}),
    )
    .await;
    // ...and a replicated one once it is invalidated.
    kv.storage
        .commit(vec![StorageOp::Put {
            key: "_kv2/config".into(),
            value: serde_json::to_vec(&json!({"cas_required": false})).unwrap(),
        }])
        .await
        .unwrap();
    kv.backend.invalidate("_kv2/config");
    kv.ok(Update, "data/warm", json!({"data": {"v": 3}})).await;
}
