//! Tests of the log store, the state machine and a single [`RaftNode`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coffer_storage::kv::{KvStore, MemKv, SledKv, DEFAULT_CACHE_CAPACITY};
use coffer_storage::wal::{FileWal, FileWalOptions, MemWal};
use coffer_storage::{Backend, Op, StorageError};
use openraft::storage::RaftStateMachine;
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, EntryPayload, RaftSnapshotBuilder};

use crate::types::{Entry, LogId, RaftStorageError};
use crate::{Envelope, LogStore, RaftNode, RaftOptions, StateMachine, TypeConfig};

const WAIT: Duration = Duration::from_secs(10);

/// What a test listener records: `(index, keys)` per applied batch.
type Seen = Arc<Mutex<Vec<(u64, Vec<String>)>>>;

struct FileBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for FileBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), RaftStorageError> {
        let dir = tempfile::tempdir().map_err(|e| openraft::StorageIOError::write(&e))?;
        let wal = FileWal::open(dir.path().join("log"), FileWalOptions::default())
            .map_err(|e| openraft::StorageIOError::write(&e))?;
        let log = LogStore::open(Box::new(wal))?;
        let kv = SledKv::open(dir.path().join("state"), DEFAULT_CACHE_CAPACITY)
            .map_err(|e| openraft::StorageIOError::write(&e))?;
        let sm = StateMachine::open(Arc::new(kv), Some(dir.path().join("snapshot")))
            .map_err(|e| openraft::StorageIOError::write(&e))?;
        Ok((dir, log, sm))
    }
}

struct MemBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, ()> for MemBuilder {
    async fn build(&self) -> Result<((), LogStore, StateMachine), RaftStorageError> {
        let log = LogStore::open(Box::new(MemWal::new()))?;
        let sm = StateMachine::open(Arc::new(MemKv::new()), None)
            .map_err(|e| openraft::StorageIOError::write(&e))?;
        Ok(((), log, sm))
    }
}

#[test]
fn openraft_suite_file_backed() -> Result<(), RaftStorageError> {
    Suite::test_all(FileBuilder)
}

#[test]
fn openraft_suite_in_memory() -> Result<(), RaftStorageError> {
    Suite::test_all(MemBuilder)
}

/// A sled store at `path` (waiting for the file lock of one a test dropped just now).
fn open_sled(path: impl AsRef<std::path::Path>) -> SledKv {
    SledKv::reopen(path, DEFAULT_CACHE_CAPACITY).expect("opening sled")
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(index: u64, env: Envelope) -> Entry {
    Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Normal(env),
    }
}

fn put(key: &str, value: &[u8]) -> Op {
    Op::Put {
        key: key.into(),
        value: value.to_vec(),
    }
}

fn batch(ops: &[Op]) -> Envelope {
    Envelope::batch(ops).expect("encode batch")
}

#[tokio::test]
async fn apply_stops_at_an_unknown_op_and_never_skips_it() {
    let kv: Arc<dyn KvStore> = Arc::new(MemKv::new());
    let mut sm = StateMachine::open(kv.clone(), None).expect("open");
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    sm.add_listener(Arc::new(move |i, keys| {
        seen2.lock().expect("lock").push((i, keys.to_vec()))
    }));

    let unknown = Envelope {
        format: crate::CURRENT_FORMAT,
        op: 999,
        body: vec![1, 2, 3],
    };
    let entries = vec![
        entry(1, batch(&[put("a", b"1")])),
        entry(2, unknown),
        entry(3, batch(&[put("c", b"3")])),
    ];
    let err = sm
        .apply(entries)
        .await
        .expect_err("an unknown op must stop apply");
    let text = err.to_string();
    assert!(
        text.contains("op 999") && text.contains("log entry 2"),
        "{text}"
    );

    // The entry before it is applied, it and everything after are not.
    let (applied, _) = sm.applied_state().await.expect("state");
    assert_eq!(applied, Some(log_id(1, 1)));
    assert_eq!(kv.get("a").expect("get"), Some(b"1".to_vec()));
    assert_eq!(kv.get("c").expect("get"), None);
    assert_eq!(sm.applied_index(), 1);
    assert_eq!(
        *seen.lock().expect("lock"),
        vec![(1, vec!["a".to_string()])]
    );

    // A newer entry format is refused the same way; so is a batch body that is garbage.
    let newer = Envelope {
        format: crate::CURRENT_FORMAT + 1,
        ..batch(&[put("d", b"4")])
    };
    let err = sm
        .apply(vec![entry(2, newer)])
        .await
        .expect_err("newer format");
    assert!(err.to_string().contains("format 3"), "{err}");
    let garbage = Envelope {
        format: 1,
        op: 1,
        body: vec![0xc1],
    };
    assert!(sm.apply(vec![entry(2, garbage)]).await.is_err());
    assert_eq!(sm.applied_index(), 1);
}

#[tokio::test]
async fn apply_writes_batches_atomically_with_last_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let kv: Arc<dyn KvStore> = Arc::new(open_sled(dir.path().join("state")));
        let mut sm = StateMachine::open(kv.clone(), None).expect("open");
        let replies = sm
            .apply(vec![
                entry(1, batch(&[put("x/1", b"a"), put("x/2", b"b")])),
                Entry {
                    log_id: log_id(1, 2),
                    payload: EntryPayload::Blank,
                },
                entry(
                    3,
                    batch(&[Op::Delete { key: "x/1".into() }, put("x/3", b"c")]),
                ),
            ])
            .await
            .expect("apply");
        assert_eq!(
            replies.iter().map(|r| r.index).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(kv.list("x/").expect("list"), vec!["2", "3"]);
        kv.flush().expect("flush");
    }
    let kv: Arc<dyn KvStore> = Arc::new(open_sled(dir.path().join("state")));
    let mut sm = StateMachine::open(kv, None).expect("reopen");
    let (applied, _) = sm.applied_state().await.expect("state");
    assert_eq!(applied, Some(log_id(1, 3)));
    assert_eq!(sm.applied_index(), 3);
}

#[tokio::test]
async fn a_store_behind_its_snapshot_is_repaired_on_open() {
    // sled does not fsync: after a power loss the store may be older than the snapshot the
    // log was purged behind. Opening over the snapshot directory installs it again.
    let dir = tempfile::tempdir().expect("tempdir");
    let snap_dir = dir.path().join("snapshot");
    {
        let kv: Arc<dyn KvStore> = Arc::new(open_sled(dir.path().join("state")));
        let mut sm = StateMachine::open(kv, Some(snap_dir.clone())).expect("open");
        sm.apply(vec![entry(
            1,
            batch(&[put("k/1", b"one"), put("k/2", b"two")]),
        )])
        .await
        .expect("apply");
        let snap = sm.build_snapshot().await.expect("snapshot");
        assert_eq!(snap.meta.last_log_id, Some(log_id(1, 1)));
        assert!(snap_dir.join("current.snap").exists());
    }
    // An empty store (everything lost) with the same snapshot directory.
    let kv: Arc<dyn KvStore> = Arc::new(open_sled(dir.path().join("state-lost")));
    let mut sm = StateMachine::open(kv.clone(), Some(snap_dir)).expect("reopen");
    assert_eq!(kv.get("k/2").expect("get"), Some(b"two".to_vec()));
    let (applied, _) = sm.applied_state().await.expect("state");
    assert_eq!(applied, Some(log_id(1, 1)));
    let current = sm
        .get_current_snapshot()
        .await
        .expect("current")
        .expect("a snapshot");
    assert_eq!(current.meta.last_log_id, Some(log_id(1, 1)));
}

#[tokio::test]
async fn snapshot_install_replaces_state_and_tells_listeners() {
    let mut leader = StateMachine::open(Arc::new(MemKv::new()), None).expect("open");
    leader
        .apply(vec![entry(1, batch(&[put("s/a", b"1"), put("s/b", b"2")]))])
        .await
        .expect("apply");
    let snap = leader.build_snapshot().await.expect("build");

    let kv: Arc<dyn KvStore> = Arc::new(MemKv::new());
    let mut follower = StateMachine::open(kv.clone(), None).expect("open");
    follower
        .apply(vec![entry(1, batch(&[put("old", b"x")]))])
        .await
        .expect("apply");
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    follower.add_listener(Arc::new(move |i, keys| {
        seen2.lock().expect("lock").push((i, keys.to_vec()))
    }));
    follower
        .install_snapshot(&snap.meta, snap.snapshot)
        .await
        .expect("install");
    assert_eq!(kv.get("old").expect("get"), None);
    assert_eq!(kv.get("s/b").expect("get"), Some(b"2".to_vec()));
    assert_eq!(
        *seen.lock().expect("lock"),
        vec![(
            1,
            vec!["old".to_string(), "s/a".to_string(), "s/b".to_string()]
        )]
    );
}

fn options(dir: Option<&std::path::Path>) -> RaftOptions {
    RaftOptions {
        node_id: 1,
        api_addr: "https://127.0.0.1:8200".into(),
        cluster_addr: "127.0.0.1:8201".into(),
        data_dir: dir.map(|d| d.to_path_buf()),
        client: Some(reqwest::Client::new()),
        tls: true,
        ..RaftOptions::default()
    }
}

fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

async fn start(dir: Option<&std::path::Path>) -> Arc<RaftNode> {
    install_crypto();
    let node = RaftNode::open(options(dir)).await.expect("open node");
    node.bootstrap_if_fresh().await.expect("bootstrap");
    node.wait_for_leader(WAIT).await.expect("leader");
    // Leadership in the metrics can precede the first blank entry being committed.
    for _ in 0..200 {
        if node.is_leader() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(node.is_leader());
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_backed_node_commits_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seen: Seen = Arc::default();
    let last_index;
    {
        let node = start(Some(dir.path())).await;
        let seen2 = seen.clone();
        node.add_apply_listener(Arc::new(move |i, keys| {
            seen2.lock().expect("lock").push((i, keys.to_vec()))
        }));
        assert_eq!(
            node.leader().map(|(id, n)| (id, n.api_addr)),
            Some((1, "https://127.0.0.1:8200".into()))
        );

        let i1 = node
            .commit(vec![put("secret/a", b"ct-a"), put("secret/b/c", b"ct-c")])
            .await
            .expect("commit");
        let i2 = node
            .commit(vec![
                Op::Delete {
                    key: "secret/a".into(),
                },
                put("secret/d", b"ct-d"),
            ])
            .await
            .expect("commit");
        assert!(i2 > i1);
        assert!(node.applied_index() >= i2);
        assert!(node.committed_index() >= i2);
        node.wait_applied(i2, WAIT).await.expect("applied");
        assert_eq!(node.get("secret/a").expect("get"), None);
        assert_eq!(node.get("secret/d").expect("get"), Some(b"ct-d".to_vec()));
        assert_eq!(node.list("secret/").expect("list"), vec!["b/", "d"]);
        assert_eq!(node.list("").expect("list"), vec!["secret/"]);
        assert_eq!(
            *seen.lock().expect("lock"),
            vec![
                (i1, vec!["secret/a".to_string(), "secret/b/c".to_string()]),
                (i2, vec!["secret/a".to_string(), "secret/d".to_string()]),
            ]
        );
        last_index = i2;
        node.shutdown().await.expect("shutdown");
        assert!(matches!(
            node.commit(vec![put("x", b"y")]).await,
            Err(StorageError::Unavailable(_))
        ));
    }

    let node = RaftNode::open(options(Some(dir.path())))
        .await
        .expect("reopen");
    assert!(
        !node.bootstrap_if_fresh().await.expect("bootstrap"),
        "a restarted node must not bootstrap"
    );
    node.wait_for_leader(WAIT).await.expect("leader again");
    assert_eq!(node.get("secret/d").expect("get"), Some(b"ct-d".to_vec()));
    assert_eq!(node.get("secret/b/c").expect("get"), Some(b"ct-c".to_vec()));
    let i3 = node
        .commit(vec![put("secret/e", b"ct-e")])
        .await
        .expect("commit after restart");
    assert!(i3 > last_index);
    assert_eq!(node.get("secret/e").expect("get"), Some(b"ct-e".to_vec()));
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_purge_then_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut expected = BTreeMap::new();
    {
        let node = start(Some(dir.path())).await;
        for i in 0..50u32 {
            let key = format!("kv/{i:03}");
            let value = i.to_be_bytes().to_vec();
            node.commit(vec![put(&key, &value)]).await.expect("commit");
            expected.insert(key, value);
        }
        let applied = node.applied_index();
        node.raft()
            .trigger()
            .snapshot()
            .await
            .expect("trigger snapshot");
        node.raft()
            .wait(Some(WAIT))
            .metrics(
                |m| m.snapshot.is_some_and(|s| s.index >= applied),
                "snapshot built",
            )
            .await
            .expect("snapshot");
        node.raft()
            .trigger()
            .purge_log(applied)
            .await
            .expect("purge");
        node.raft()
            .wait(Some(WAIT))
            .metrics(
                |m| m.purged.is_some_and(|p| p.index >= applied),
                "log purged",
            )
            .await
            .expect("purged");
        node.commit(vec![put("kv/after", b"z")])
            .await
            .expect("commit");
        expected.insert("kv/after".into(), b"z".to_vec());
        node.shutdown().await.expect("shutdown");
    }
    let node = RaftNode::open(options(Some(dir.path())))
        .await
        .expect("reopen");
    node.wait_for_leader(WAIT).await.expect("leader");
    for (k, v) in &expected {
        assert_eq!(node.get(k).expect("get").as_ref(), Some(v), "{k}");
    }
    assert!(node.raft().metrics().borrow().purged.is_some());
    node.commit(vec![put("kv/again", b"1")])
        .await
        .expect("commit");
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_node_works() {
    let node = start(None).await;
    let idx = node
        .commit(vec![put("a/b", b"1"), put("a/c", b"2")])
        .await
        .expect("commit");
    assert_eq!(node.applied_index(), idx);
    assert_eq!(node.list("a/").expect("list"), vec!["b", "c"]);
    assert_eq!(node.get("a/c").expect("get"), Some(b"2".to_vec()));
    // An empty batch is still one entry.
    let idx2 = node.commit(Vec::new()).await.expect("empty commit");
    assert_eq!(idx2, idx + 1);
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_entry_stops_the_node_instead_of_being_skipped() {
    let node = start(None).await;
    node.commit(vec![put("k", b"before")])
        .await
        .expect("commit");
    let applied_before = node.applied_index();
    // A newer node would write this; this build must refuse to apply it.
    let future = Envelope {
        format: crate::CURRENT_FORMAT,
        op: 42,
        body: b"whatever".to_vec(),
    };
    assert!(node.raft().client_write(future).await.is_err());
    assert_eq!(node.applied_index(), applied_before);
    assert!(matches!(
        node.commit(vec![put("k", b"after")]).await,
        Err(StorageError::Unavailable(_))
    ));
    assert_eq!(node.get("k").expect("get"), Some(b"before".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_share_entries_and_all_land() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start(Some(dir.path())).await;
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    node.add_apply_listener(Arc::new(move |i, keys| {
        seen2.lock().expect("lock").push((i, keys.to_vec()))
    }));
    let mut tasks = Vec::new();
    for t in 0..16 {
        let node = node.clone();
        tasks.push(tokio::spawn(async move {
            let mut idx = Vec::new();
            for i in 0..10 {
                let ops = vec![
                    put(&format!("c/{t}/{i}"), b"v"),
                    put(&format!("d/{t}/{i}"), b"w"),
                ];
                idx.push(node.commit(ops).await.expect("commit"));
            }
            idx
        }));
    }
    for t in tasks {
        let idx = t.await.expect("join");
        // One caller's commits are sequential: each lands in a later entry.
        assert!(idx.windows(2).all(|w| w[0] < w[1]), "{idx:?}");
    }
    assert_eq!(node.list("c/").expect("list").len(), 16);
    assert_eq!(
        node.state_machine()
            .kv()
            .keys_with_prefix("")
            .expect("keys")
            .len(),
        320
    );
    // Every key was reported once, together with its batch partner, at one index.
    let seen = seen.lock().expect("lock").clone();
    let mut reported: Vec<&String> = seen.iter().flat_map(|(_, keys)| keys).collect();
    assert_eq!(reported.len(), 320);
    reported.sort();
    reported.dedup();
    assert_eq!(reported.len(), 320);
    for (_, keys) in seen.iter() {
        for pair in keys.chunks(2) {
            assert_eq!(
                pair[0].replacen("c/", "d/", 1),
                pair[1],
                "a batch was split"
            );
        }
    }
    node.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_restore_entry_replaces_the_store_and_reports_every_key() {
    let kv: Arc<dyn KvStore> = Arc::new(MemKv::new());
    let mut sm = StateMachine::open(kv.clone(), None).expect("open");
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    sm.add_listener(Arc::new(move |i, keys| {
        seen2.lock().expect("lock").push((i, keys.to_vec()))
    }));
    sm.apply(vec![entry(
        1,
        batch(&[put("old/a", b"1"), put("keep", b"x")]),
    )])
    .await
    .expect("apply");

    // A payload exported from another store: `keep` and `new/b`.
    let other: Arc<dyn KvStore> = Arc::new(MemKv::new());
    let mut donor = StateMachine::open(other, None).expect("open donor");
    donor
        .apply(vec![entry(
            1,
            batch(&[put("keep", b"y"), put("new/b", b"2")]),
        )])
        .await
        .expect("apply donor");
    let (_, payload) = donor.export_payload().expect("export");

    sm.apply(vec![
        entry(2, batch(&[put("before", b"lost")])),
        entry(3, Envelope::restore(payload)),
        entry(4, batch(&[put("after", b"kept")])),
    ])
    .await
    .expect("apply restore");
    assert_eq!(
        kv.keys_with_prefix("").expect("keys"),
        vec!["after", "keep", "new/b"]
    );
    assert_eq!(kv.get("keep").expect("get"), Some(b"y".to_vec()));
    let (applied, _) = sm.applied_state().await.expect("state");
    assert_eq!(applied, Some(log_id(1, 4)));
    let seen = seen.lock().expect("lock").clone();
    let restore = seen
        .iter()
        .find(|(i, _)| *i == 3)
        .expect("restore reported");
    assert_eq!(
        restore.1,
        vec!["before", "keep", "new/b", "old/a"],
        "every key before or after the restore"
    );
}

#[tokio::test]
async fn a_format_one_node_stops_at_a_restore_entry() {
    let kv: Arc<dyn KvStore> = Arc::new(MemKv::new());
    let mut sm = StateMachine::open_with_format(kv.clone(), None, crate::FORMAT_V1).expect("open");
    let (_, payload) = StateMachine::open(Arc::new(MemKv::new()), None)
        .expect("open")
        .export_payload()
        .expect("export");
    let err = sm
        .apply(vec![
            entry(1, batch(&[put("a", b"1")])),
            entry(2, Envelope::restore(payload)),
        ])
        .await
        .expect_err("an older node must stop");
    assert!(err.to_string().contains("format 2 / op 2"), "{err}");
    assert_eq!(sm.applied_index(), 1);
    assert_eq!(kv.get("a").expect("get"), Some(b"1".to_vec()));
}

#[test]
fn an_interrupted_replace_without_a_snapshot_file_starts_over_from_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kv: Arc<dyn KvStore> = Arc::new(open_sled(dir.path().join("state")));
    kv.apply(&[put("half", b"way")], &[]).expect("apply");
    kv.apply(&[], &[(coffer_storage::kv::REPLACE_MARKER, b"1")])
        .expect("mark");
    let sm = StateMachine::open(kv.clone(), Some(dir.path().join("snapshot"))).expect("open");
    assert_eq!(sm.applied_index(), 0);
    assert!(kv.keys_with_prefix("").expect("keys").is_empty());
    assert!(!kv.replace_interrupted().expect("marker"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_through_the_log_and_the_format_hold_back() {
    let node = start(None).await;
    node.commit(vec![put("a", b"1")]).await.expect("commit");
    let exported = node.export_snapshot().expect("export");
    assert!(exported.index > 0);
    node.commit(vec![put("b", b"2")]).await.expect("commit");
    let idx = node
        .commit_restore(exported.payload.clone(), Duration::from_secs(1))
        .await
        .expect("restore");
    assert_eq!(node.applied_index(), idx);
    assert_eq!(node.get("b").expect("get"), None);
    assert_eq!(node.get("a").expect("get"), Some(b"1".to_vec()));
    assert!(node.format_holdouts(2).is_empty());
    // Garbage is refused before anything is written.
    assert!(node
        .commit_restore(b"not a payload".to_vec(), Duration::from_secs(1))
        .await
        .is_err());
    node.shutdown().await.expect("shutdown");

    // A node standing in for a format-1 build holds format 2 back and says why.
    install_crypto();
    let old = RaftNode::open(RaftOptions {
        max_format: crate::FORMAT_V1,
        ..options(None)
    })
    .await
    .expect("open");
    old.bootstrap_if_fresh().await.expect("bootstrap");
    old.wait_for_leader(WAIT).await.expect("leader");
    for _ in 0..200 {
        if old.is_active() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(old.format_holdouts(2), vec![(1, Some(1))]);
    let err = old
        .commit_restore(exported.payload, Duration::from_millis(300))
        .await
        .expect_err("held back");
    assert!(err.to_string().contains("held back"), "{err}");
    old.commit(vec![put("still", b"works")])
        .await
        .expect("format-1 writes go on");
    old.shutdown().await.expect("shutdown");
}

/// Reads a snapshot stream's pairs into a map.
fn snapshot_pairs(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    crate::snapshot::SnapshotReader::open(bytes)
        .expect("header")
        .collect::<Result<BTreeMap<_, _>, _>>()
        .expect("pairs")
}

async fn read_all(mut data: Box<crate::snapshot::SnapshotData>) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    data.seek(std::io::SeekFrom::Start(0)).await.expect("seek");
    let mut out = Vec::new();
    data.read_to_end(&mut out).await.expect("read");
    out
}

/// A sled-backed state machine (snapshots on disk) with 20,000 keys `<prefix>/NNNNN`
/// applied at index 1; the ops are returned.
async fn sled_machine_with_keys(prefix: &str) -> (tempfile::TempDir, StateMachine, Vec<Op>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let kv: Arc<dyn KvStore> = Arc::new(open_sled(dir.path().join("state")));
    let mut sm = StateMachine::open(kv, Some(dir.path().join("snapshot"))).expect("open");
    let ops: Vec<Op> = (0..20_000u32)
        .map(|i| put(&format!("{prefix}/{i:05}"), &i.to_le_bytes()))
        .collect();
    sm.apply(vec![entry(1, batch(&ops))]).await.expect("apply");
    (dir, sm, ops)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_built_while_applies_run_is_the_state_at_its_index() {
    // Applies keep running while the snapshot is read in chunks: it must still be exactly
    // the store at the log id it names (puts ahead of and behind the builder's cursor,
    // new keys, deletes, keys deleted and written again).
    let (_dir, mut sm, initial) = sled_machine_with_keys("k").await;
    let mut history: Vec<Vec<Op>> = vec![initial];

    let mut builder = sm.clone();
    let build = tokio::spawn(async move { builder.build_snapshot().await });
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut index: u64 = 1;
    while !build.is_finished() && index < 20_000 {
        index += 1;
        let ops: Vec<Op> = (0..8)
            .map(|_| {
                let r = next();
                let key = format!("k/{:05}", r % 25_000);
                if r % 5 == 0 {
                    Op::Delete { key }
                } else {
                    put(&key, &index.to_le_bytes())
                }
            })
            .collect();
        sm.apply(vec![entry(index, batch(&ops))])
            .await
            .expect("apply");
        history.push(ops);
    }
    let snap = build.await.expect("join").expect("build");
    assert!(index > 2, "no apply ran during the build");
    let at = snap.meta.last_log_id.expect("log id").index as usize;

    let mut expected: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for ops in &history[..at] {
        for op in ops {
            match op {
                Op::Put { key, value } => {
                    expected.insert(key.clone(), value.clone());
                }
                Op::Delete { key } => {
                    expected.remove(key);
                }
            }
        }
    }
    let got = snapshot_pairs(&read_all(snap.snapshot).await);
    assert_eq!(got.len(), expected.len());
    assert!(
        got == expected,
        "the snapshot differs from the state at {at}"
    );
}

#[tokio::test]
async fn a_snapshot_file_of_the_earlier_format_is_converted_on_open() {
    #[derive(serde::Serialize)]
    struct OldFile {
        meta: openraft::SnapshotMeta<u64, crate::Node>,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let snap_dir = dir.path().join("snapshot");
    std::fs::create_dir_all(&snap_dir).expect("mkdir");
    let mut donor = StateMachine::open(Arc::new(MemKv::new()), None).expect("donor");
    donor
        .apply(vec![entry(7, batch(&[put("a", b"1"), put("b/c", b"2")]))])
        .await
        .expect("apply");
    let (last, payload) = donor.export_payload().expect("export");
    let body = rmp_serde::to_vec_named(&OldFile {
        meta: openraft::SnapshotMeta {
            last_log_id: last,
            last_membership: Default::default(),
            snapshot_id: "old".into(),
        },
        data: payload,
    })
    .expect("encode");
    let mut file = b"CFSNAP01".to_vec();
    file.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    file.extend_from_slice(&body);
    std::fs::write(snap_dir.join("current.snap"), file).expect("write");

    let kv: Arc<dyn KvStore> = Arc::new(open_sled(dir.path().join("state")));
    let mut sm = StateMachine::open(kv.clone(), Some(snap_dir.clone())).expect("open");
    assert_eq!(sm.applied_index(), 7);
    assert_eq!(kv.get("b/c").expect("get"), Some(b"2".to_vec()));
    let current = sm
        .get_current_snapshot()
        .await
        .expect("current")
        .expect("a snapshot");
    assert_eq!(current.meta.snapshot_id, "old");
    let bytes = read_all(current.snapshot).await;
    assert!(bytes.starts_with(crate::snapshot::MAGIC));
    assert_eq!(snapshot_pairs(&bytes).len(), 2);
}

#[tokio::test]
async fn a_damaged_received_snapshot_is_refused_and_the_store_kept() {
    let mut leader = StateMachine::open(Arc::new(MemKv::new()), None).expect("open");
    leader
        .apply(vec![entry(1, batch(&[put("s/a", b"1")]))])
        .await
        .expect("apply");
    let snap = leader.build_snapshot().await.expect("build");
    let mut bytes = read_all(snap.snapshot).await;
    let n = bytes.len();
    bytes[n - 6] ^= 1;

    let dir = tempfile::tempdir().expect("tempdir");
    let kv: Arc<dyn KvStore> = Arc::new(open_sled(dir.path().join("state")));
    let mut follower = StateMachine::open(kv.clone(), Some(dir.path().join("snap"))).expect("open");
    follower
        .apply(vec![entry(1, batch(&[put("old", b"x")]))])
        .await
        .expect("apply");
    let mut incoming = follower.begin_receiving_snapshot().await.expect("begin");
    {
        use tokio::io::AsyncWriteExt;
        incoming.write_all(&bytes).await.expect("write");
        incoming.shutdown().await.expect("shutdown");
    }
    assert!(follower
        .install_snapshot(&snap.meta, incoming)
        .await
        .is_err());
    assert_eq!(kv.get("old").expect("get"), Some(b"x".to_vec()));
    assert!(!dir.path().join("snap/current.snap").exists());
}

#[test]
fn snapshots_come_less_often_as_the_state_grows() {
    use crate::{snapshot_due, SNAPSHOT_MAX_LOG_BYTES, SNAPSHOT_MIN_LOG_BYTES};
    const MIB: u64 = 1024 * 1024;
    // Few entries: never, however many bytes.
    assert!(!snapshot_due(999, 10 * SNAPSHOT_MAX_LOG_BYTES, 0));
    // A small state: the minimum log size.
    assert!(!snapshot_due(5_000, SNAPSHOT_MIN_LOG_BYTES - 1, MIB));
    assert!(snapshot_due(5_000, SNAPSHOT_MIN_LOG_BYTES, MIB));
    // A 100 MiB state: as much log as state.
    assert!(!snapshot_due(5_000, 99 * MIB, 100 * MIB));
    assert!(snapshot_due(5_000, 100 * MIB, 100 * MIB));
    // A huge state: capped, so the in-memory log stays bounded.
    assert!(snapshot_due(5_000, SNAPSHOT_MAX_LOG_BYTES, 10_000 * MIB));
    // Many tiny entries.
    assert!(snapshot_due(50_000, 1, 10_000 * MIB));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_snapshots_and_purges_a_growing_log_by_itself() {
    let node = start(None).await;
    let value = vec![7u8; 17 * 1024];
    for i in 0..1_100u32 {
        node.commit(vec![put(&format!("big/{i}"), &value)])
            .await
            .expect("commit");
    }
    node.raft()
        .wait(Some(WAIT))
        .metrics(
            |m| m.snapshot.is_some() && m.purged.is_some(),
            "a snapshot and a purge",
        )
        .await
        .expect("the policy snapshots");
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_entries_leave_memory_and_are_read_back_from_the_wal() {
    use openraft::storage::RaftLogReader;
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start(Some(dir.path())).await;
    // 64 KiB values: far more than the in-memory suffix keeps.
    let n = 2 * (crate::log_store::CACHE_BYTES as u64 / 65_536)
        + 2 * crate::log_store::CACHE_MIN_ENTRIES;
    let mut last = 0;
    for i in 0..n {
        last = node
            .commit(vec![put(
                &format!("k/{i:05}"),
                &vec![(i % 251) as u8; 65_536],
            )])
            .await
            .expect("commit");
    }
    let mut log = node.log.clone();
    assert!(
        log.shared_entries_first() > 1,
        "old entries were expected to leave memory"
    );
    let entries = log.try_get_log_entries(1..=last).await.expect("read");
    assert_eq!(entries.len() as u64, last);
    let mut written = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.log_id.index, i as u64 + 1);
        if let EntryPayload::Normal(env) = &e.payload {
            if let Ok(crate::types::Command::Batch(ops)) = env.decode() {
                for op in ops {
                    if let Op::Put { key, value } = op {
                        if let Some(i) = key.strip_prefix("k/") {
                            let i: u64 = i.parse().expect("index");
                            assert_eq!(value, vec![(i % 251) as u8; 65_536]);
                            written.push(i);
                        }
                    }
                }
            }
        }
    }
    assert_eq!(written, (0..n).collect::<Vec<_>>());
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_during_a_snapshot_build_yields_a_consistent_snapshot() {
    // Whether the restore lands before the build starts, during it (the build starts
    // over) or after it, the snapshot must be exactly the state at its index.
    let (_dir, mut sm, _) = sled_machine_with_keys("old").await;
    let mut donor = StateMachine::open(Arc::new(MemKv::new()), None).expect("donor");
    donor
        .apply(vec![entry(
            1,
            batch(&[put("new/a", b"1"), put("new/b", b"2")]),
        )])
        .await
        .expect("apply donor");
    let (_, payload) = donor.export_payload().expect("export");

    let mut builder = sm.clone();
    let build = tokio::spawn(async move { builder.build_snapshot().await });
    sm.apply(vec![entry(2, Envelope::restore(payload))])
        .await
        .expect("restore");
    let snap = build.await.expect("join").expect("build");
    let got = snapshot_pairs(&read_all(snap.snapshot).await);
    match snap.meta.last_log_id.map(|l| l.index) {
        Some(1) => {
            assert_eq!(got.len(), 20_000);
            assert!(got.keys().all(|k| k.starts_with("old/")));
        }
        Some(2) => assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            vec![
                ("new/a".to_string(), b"1".to_vec()),
                ("new/b".to_string(), b"2".to_vec())
            ]
        ),
        other => panic!("unexpected snapshot index {other:?}"),
    }
}
