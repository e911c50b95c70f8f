//! Login cost with the real argon2id parameters, for a known user and for an unknown
//! one (which is checked against a dummy hash so it costs the same: the two figures
//! should be close). The baseline in the same run is a user read (no hashing).

use coffer_sdk::testing::{request, MemStorage};
use coffer_sdk::{BackendConfig, Operation};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};

fn bench_login(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let storage = MemStorage::new();
    let backend = coffer_plugin_userpass::factory(BackendConfig {
        mount_point: "userpass/".into(),
        options: Default::default(),
        storage: storage.clone(),
    })
    .expect("factory");
    rt.block_on(async {
        let mut req = request(
            storage.clone(),
            Operation::Create,
            "users/timed",
            json!({"password": "pw"}),
        );
        backend.handle_request(&mut req).await.expect("create user");
    });
    let call = |path: &'static str, op: Operation, body: Value| {
        let mut req = request(storage.clone(), op, path, body);
        rt.block_on(backend.handle_request(&mut req))
    };
    c.bench_function("baseline_user_read", |b| {
        b.iter(|| call("users/timed", Operation::Read, Value::Null).expect("read"))
    });
    c.bench_function("login_known_user", |b| {
        b.iter(|| call("login/timed", Operation::Update, json!({"password": "pw"})).expect("login"))
    });
    c.bench_function("login_unknown_user", |b| {
        b.iter(|| {
            call("login/ghost", Operation::Update, json!({"password": "pw"})).expect_err("unknown")
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench_login
}
criterion_main!(benches);
