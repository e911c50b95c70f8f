//! Barrier encryption cost at 1 KiB: `Keyring::encrypt` + `Keyring::decrypt` (aes-gcm,
//! random nonce from `SystemRandom`, path as AAD, header parsing, term lookup) against
//! raw baselines in the same run: ring's AES-256-GCM and plain aes-gcm seal+open with a
//! counter nonce, and the nonce draw alone.

use std::hint::black_box;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use coffer_barrier::keyring::{generate_key, Keyring};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ring::aead::{Aad, LessSafeKey, Nonce as RingNonce, UnboundKey, AES_256_GCM};
use ring::rand::{SecureRandom, SystemRandom};

const SIZE: usize = 1024;
const PATH: &str = "logical/0b3c1f2e-0000-4000-8000-000000000000/secret/data/app";

fn bench(c: &mut Criterion) {
    let plaintext = vec![0x5au8; SIZE];
    let mut group = c.benchmark_group("1KiB");
    group.throughput(Throughput::Bytes(SIZE as u64));

    let keyring = Keyring::new(generate_key().expect("rng")).expect("keyring");
    group.bench_function("keyring encrypt+decrypt", |b| {
        b.iter(|| {
            let ct = keyring
                .encrypt(black_box(PATH), black_box(&plaintext))
                .expect("encrypt");
            keyring.decrypt(PATH, black_box(&ct)).expect("decrypt")
        })
    });

    let key_bytes = [7u8; 32];
    let ring_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key_bytes).expect("key"));
    let mut counter: u64 = 0;
    group.bench_function("ring AES_256_GCM seal+open", |b| {
        b.iter(|| {
            counter += 1;
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&counter.to_be_bytes());
            let mut buf = Vec::with_capacity(SIZE + 16);
            buf.extend_from_slice(black_box(&plaintext));
            ring_key
                .seal_in_place_append_tag(
                    RingNonce::assume_unique_for_key(nonce),
                    Aad::from(PATH.as_bytes()),
                    &mut buf,
                )
                .expect("seal");
            let len = ring_key
                .open_in_place(
                    RingNonce::assume_unique_for_key(nonce),
                    Aad::from(PATH.as_bytes()),
                    black_box(&mut buf),
                )
                .expect("open")
                .len();
            buf.truncate(len);
            buf
        })
    });

    let aes = Aes256Gcm::new_from_slice(&key_bytes).expect("key");
    let mut counter: u64 = 0;
    group.bench_function("aes-gcm seal+open", |b| {
        b.iter(|| {
            counter += 1;
            let mut nonce_bytes = [0u8; 12];
            nonce_bytes[4..].copy_from_slice(&counter.to_be_bytes());
            let nonce = Nonce::try_from(&nonce_bytes[..]).expect("nonce");
            let ct = aes
                .encrypt(
                    &nonce,
                    Payload {
                        msg: black_box(&plaintext),
                        aad: PATH.as_bytes(),
                    },
                )
                .expect("seal");
            aes.decrypt(
                &nonce,
                Payload {
                    msg: black_box(&ct),
                    aad: PATH.as_bytes(),
                },
            )
            .expect("open")
        })
    });
    group.finish();

    let rng = SystemRandom::new();
    c.bench_function("SystemRandom 12-byte nonce", |b| {
        b.iter(|| {
            let mut nonce = [0u8; 12];
            rng.fill(&mut nonce).expect("rng");
            nonce
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
