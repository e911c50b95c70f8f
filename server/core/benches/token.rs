//! Token lookup on the hot path: a token seen before is checked from the in-memory
//! cache (HMAC of the token + a map read, no storage read, no decrypt). For contrast,
//! the same lookup with the cache cold (storage read + AES-GCM decrypt + JSON decode).
//! Storage is a real in-memory Raft node under a real barrier.

use std::sync::Arc;

use coffer_barrier::barrier::Barrier;
use coffer_core::leases::Expiration;
use coffer_core::store::LogicalStore;
use coffer_core::token::{new_service_token, TokenEntry, TokenStore};
use criterion::{criterion_group, criterion_main, Criterion};

fn bench_token_lookup(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (tokens, token) = rt.block_on(async {
        let raft = coffer_raft::RaftNode::open(coffer_raft::RaftOptions {
            node_id: 1,
            data_dir: None,
            ..Default::default()
        })
        .await
        .expect("raft");
        raft.bootstrap_if_fresh().await.expect("bootstrap");
        raft.wait_for_leader(std::time::Duration::from_secs(10))
            .await
            .expect("leader");
        let barrier = Barrier::new(raft);
        let (key, _) = barrier.initialize(1, 1).await.expect("init");
        barrier.unseal(&key).expect("unseal");
        let store = LogicalStore::new(barrier);
        let tokens = TokenStore::load(store, Arc::new(Expiration::default()))
            .await
            .expect("tokens");
        let token = new_service_token();
        tokens
            .create(
                &token,
                TokenEntry {
                    policies: vec!["default".into(), "app".into()],
                    path: "auth/token/create".into(),
                    ..Default::default()
                },
            )
            .await
            .expect("create");
        (tokens, token)
    });
    let hash = tokens.hash(&token);
    c.bench_function("token_lookup_cached", |b| {
        b.iter(|| {
            tokens
                .lookup(std::hint::black_box(&token))
                .expect("lookup")
                .expect("found")
        })
    });
    c.bench_function("token_lookup_cold", |b| {
        b.iter(|| {
            tokens.invalidate_key(&format!("sys/token/id/{hash}"));
            tokens
                .lookup(std::hint::black_box(&token))
                .expect("lookup")
                .expect("found")
        })
    });
    c.bench_function("token_lookup_unknown", |b| {
        b.iter(|| {
            tokens
                .lookup(std::hint::black_box("hvs.AAAAAAAAAAAAAAAAAAAAAAAA"))
                .expect("lookup")
        })
    });
}

criterion_group!(benches, bench_token_lookup);
criterion_main!(benches);
