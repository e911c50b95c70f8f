//! KV v2 through the whole core pipeline (token check, ACL, router, KV v2 plugin,
//! barrier, single-node in-memory Raft) without HTTP: `Core::handle_request` for a read
//! of one key and a write of a new version. The baseline, in the same run, is the
//! pipeline floor: `auth/token/lookup-self` (token check and ACL, no plugin, no storage).

use std::collections::BTreeMap;

use coffer::config::ServerConfig;
use coffer_core::LogicalRequest;
use coffer_sdk::Operation;
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Map, Value};

fn request(operation: Operation, path: &str, data: Value) -> LogicalRequest {
    LogicalRequest {
        operation,
        path: path.into(),
        token: Some("root".into()),
        data: match data {
            Value::Object(m) => m,
            _ => Map::new(),
        },
        query: BTreeMap::new(),
        wrap_ttl: None,
        remote_addr: Some("127.0.0.1".into()),
    }
}

fn bench_router(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut config = ServerConfig::dev();
    for l in &mut config.listeners {
        l.address = "127.0.0.1:0".into();
    }
    let running = rt.block_on(async {
        let running = coffer::server::start(config).await.expect("start");
        running
            .core
            .init_dev(Some("root".into()))
            .await
            .expect("init");
        let resp = running
            .core
            .handle_request(request(
                Operation::Update,
                "sys/mounts/secret",
                json!({"type": "kv", "options": {"version": "2"}}),
            ))
            .await;
        resp.expect("mount");
        running
            .core
            .handle_request(request(
                Operation::Update,
                "secret/data/app",
                json!({"data": {"password": "x".repeat(100)}}),
            ))
            .await
            .expect("write");
        running
    });
    let core = running.core.clone();
    c.bench_function("baseline_lookup_self", |b| {
        b.iter(|| {
            rt.block_on(core.handle_request(request(
                Operation::Read,
                "auth/token/lookup-self",
                Value::Null,
            )))
            .expect("lookup-self")
        })
    });
    c.bench_function("kv2_read_through_router", |b| {
        b.iter(|| {
            rt.block_on(core.handle_request(request(
                Operation::Read,
                "secret/data/app",
                Value::Null,
            )))
            .expect("read")
        })
    });
    let mut n = 0u64;
    c.bench_function("kv2_write_through_router", |b| {
        b.iter(|| {
            n += 1;
            let path = format!("secret/data/w{}", n % 1000);
            rt.block_on(core.handle_request(request(
                Operation::Update,
                &path,
                json!({"data": {"v": "y".repeat(100)}}),
            )))
            .expect("write")
        })
    });
    rt.block_on(running.stop());
}

criterion_group!(benches, bench_router);
criterion_main!(benches);
