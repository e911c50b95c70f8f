//! Write throughput of a single file-backed node: every commit is one Raft log entry
//! (WAL append + fsync, then apply to sled), carrying a 1 KiB value.
//!
//! `cargo bench -p coffer-raft --bench raft_write -- --warm-up-time 1 --measurement-time 5`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_raft::{RaftNode, RaftOptions};
use coffer_storage::{Backend, Op};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const VALUE_LEN: usize = 1024;
const CONCURRENCY: u64 = 64;

fn put(counter: &AtomicU64) -> Vec<Op> {
    let i = counter.fetch_add(1, Ordering::Relaxed);
    vec![Op::Put {
        key: format!("bench/{:06}", i % 100_000),
        value: vec![0xa5; VALUE_LEN],
    }]
}

fn raft_write(c: &mut Criterion) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let node: Arc<RaftNode> = rt.block_on(async {
        let node = RaftNode::open(RaftOptions {
            node_id: 1,
            api_addr: "http://127.0.0.1:8200".into(),
            cluster_addr: "127.0.0.1:8201".into(),
            data_dir: Some(dir.path().to_path_buf()),
            client: Some(reqwest::Client::new()),
            tls: false,
            ..RaftOptions::default()
        })
        .await
        .expect("open node");
        node.bootstrap_if_fresh().await.expect("bootstrap");
        node.wait_for_leader(Duration::from_secs(10))
            .await
            .expect("leader");
        // The first write waits until the leader's blank entry is committed.
        node.commit(put(&AtomicU64::new(0)))
            .await
            .expect("first commit");
        node
    });
    let counter = Arc::new(AtomicU64::new(0));

    let mut group = c.benchmark_group("raft_write");
    group.throughput(Throughput::Elements(1));

    group.bench_function("commit_1KiB_sequential", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    node.commit(put(&counter)).await.expect("commit");
                }
                start.elapsed()
            })
        })
    });

    group.bench_function("commit_1KiB_64_concurrent", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                let mut tasks = Vec::new();
                for t in 0..CONCURRENCY {
                    let n = iters / CONCURRENCY + u64::from(t < iters % CONCURRENCY);
                    let node = node.clone();
                    let counter = counter.clone();
                    tasks.push(tokio::spawn(async move {
                        for _ in 0..n {
                            node.commit(put(&counter)).await.expect("commit");
                        }
                    }));
                }
                for t in tasks {
                    t.await.expect("committer task");
                }
                start.elapsed()
            })
        })
    });
    group.finish();

    rt.block_on(node.shutdown()).expect("shutdown");
}

criterion_group!(benches, raft_write);
criterion_main!(benches);
