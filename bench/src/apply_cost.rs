//! `apply-cost`: what the Raft state machine's store (`coffer_storage::kv::SledKv`, one
//! sled tree) costs per KV v2 write when applied as the state machine applies it: a
//! version record and a metadata record per write, and `last_applied` once per applied
//! batch. Keys are shaped like a KV v2 mount's (`logical/<uuid>/_kv2/ver/...` and
//! `_kv2/meta/...`), in the order the load tool writes them (sequential) or scattered.
//! Prints the wall time and this process's CPU per write for each order in turn.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use coffer_storage::kv::{KvStore, SledKv, DEFAULT_CACHE_CAPACITY};
use coffer_storage::Op;

use crate::admin::cpu_seconds;

/// Record sizes close to a created secret's ciphertexts (version, metadata).
const VERSION_BYTES: usize = 220;
const META_BYTES: usize = 180;

/// `rounds` of both key orders, `writes` writes applied `batch` at a time, each in a
/// fresh store under `dir`.
pub fn run(dir: &Path, writes: usize, batch: usize, rounds: usize) -> Result<()> {
    for round in 0..rounds {
        for scattered in [false, true] {
            let path = dir.join(format!("apply-cost-{round}-{scattered}"));
            let _ = std::fs::remove_dir_all(&path);
            let result = one(&path, scattered, writes.max(1), batch.max(1));
            let _ = std::fs::remove_dir_all(&path);
            result?;
        }
    }
    Ok(())
}

fn one(path: &Path, scattered: bool, writes: usize, batch: usize) -> Result<()> {
    let kv = SledKv::open(path, DEFAULT_CACHE_CAPACITY)?;
    let version = vec![7u8; VERSION_BYTES];
    let meta = vec![9u8; META_BYTES];
    let prefix = "logical/6f1c2a9e-3b7d-4c1e-9a8f-0d2b4e6a8c10/_kv2";
    let cpu0 = cpu_seconds(std::process::id())?;
    let start = Instant::now();
    let mut done = 0;
    while done < writes {
        let n = batch.min(writes - done);
        let mut ops = Vec::with_capacity(2 * n);
        for i in done..done + n {
            let id = if scattered {
                (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            } else {
                i as u64
            };
            ops.push(Op::Put {
                key: format!("{prefix}/ver/bench/w/run/{id}/1"),
                value: version.clone(),
            });
            ops.push(Op::Put {
                key: format!("{prefix}/meta/bench/w/run/{id}"),
                value: meta.clone(),
            });
        }
        done += n;
        let applied = (done as u64).to_be_bytes();
        kv.apply(&ops, &[("raft.last_applied", &applied)])?;
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(std::process::id())? - cpu0;
    println!(
        "{} keys, {writes} writes in batches of {batch}: {:.2} µs per write, {:.2} µs of process CPU per write",
        if scattered { "scattered" } else { "sequential" },
        wall * 1e6 / writes as f64,
        cpu * 1e6 / writes as f64,
    );
    Ok(())
}
