//! Transit hot path: encrypt and decrypt of 1 KiB through `Backend::handle_request`
//! (aes256-gcm96, warm cache, in-memory storage), next to a raw `ring` AES-256-GCM seal
//! of 1 KiB as the baseline.
//!
//! Run: `cargo bench -p coffer-plugin-transit --bench transit -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::Arc;

use base64::Engine;
use coffer_sdk::testing::{request, MemStorage};
use coffer_sdk::{BackendConfig, Operation, Storage};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;

const SIZE: usize = 1024;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    let storage: Arc<dyn Storage> = MemStorage::new();
    let backend = coffer_plugin_transit::factory(BackendConfig {
        mount_point: "transit/".into(),
        options: Default::default(),
        storage: storage.clone(),
    })
    .expect("backend");

    let mut create = request(storage.clone(), Operation::Update, "keys/bench", json!({}));
    rt.block_on(backend.handle_request(&mut create))
        .expect("create key");

    let plaintext = base64::engine::general_purpose::STANDARD.encode([0x5au8; SIZE]);
    let encrypt = request(
        storage.clone(),
        Operation::Update,
        "encrypt/bench",
        json!({ "plaintext": plaintext }),
    );
    let ciphertext = {
        let mut req = encrypt.clone();
        let resp = rt
            .block_on(backend.handle_request(&mut req))
            .expect("encrypt");
        resp.data.expect("data")["ciphertext"]
            .as_str()
            .expect("ciphertext")
            .to_string()
    };
    let decrypt = request(
        storage.clone(),
        Operation::Update,
        "decrypt/bench",
        json!({ "ciphertext": ciphertext }),
    );

    let mut group = c.benchmark_group("transit_1KiB");
    group.throughput(Throughput::Bytes(SIZE as u64));
    group.bench_function("encrypt_handle_request", |b| {
        b.iter(|| {
            let mut req = encrypt.clone();
            black_box(
                rt.block_on(backend.handle_request(&mut req))
                    .expect("encrypt"),
            )
        })
    });
    group.bench_function("decrypt_handle_request", |b| {
        b.iter(|| {
            let mut req = decrypt.clone();
            black_box(
                rt.block_on(backend.handle_request(&mut req))
                    .expect("decrypt"),
            )
        })
    });

    let key = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &[7u8; 32]).expect("key"),
    );
    let data = vec![0x5au8; SIZE];
    let mut counter: u64 = 0;
    group.bench_function("ring_aes256gcm_seal_raw", |b| {
        b.iter(|| {
            counter += 1;
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&counter.to_be_bytes());
            let mut buf = data.clone();
            key.seal_in_place_append_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::empty(),
                &mut buf,
            )
            .expect("seal");
            black_box(buf)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
