//! `sync-cost`: what one `sync_data` costs after a write, when the write grows the file
//! (a plain append) and when it overwrites space zeroed ahead (what the Raft WAL does,
//! 1 MiB at a time in the same sync as the batch that needs the room). Prints the wall
//! time per sync (mean, p50, p99, p99.9) and this process's CPU per sync
//! ([`crate::admin::cpu_seconds`]) for each mode in turn.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use coffer_storage::wal::PREZERO_CHUNK;

use crate::admin::cpu_seconds;

/// `rounds` of both modes, `syncs` writes of `bytes` each, in a file in `dir` (which
/// must be on the disk to measure, not tmpfs).
pub fn run(dir: &Path, bytes: usize, syncs: usize, rounds: usize) -> Result<()> {
    for _ in 0..rounds {
        for prezero in [false, true] {
            one(dir, prezero, bytes, syncs.max(1))?;
        }
    }
    Ok(())
}

fn one(dir: &Path, prezero: bool, bytes: usize, syncs: usize) -> Result<()> {
    let path = dir.join("sync_cost.tmp");
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    let record = vec![7u8; bytes];
    let zeros = vec![0u8; PREZERO_CHUNK as usize];
    let (mut end, mut zeroed) = (0u64, 0u64);
    let mut times = Vec::with_capacity(syncs);
    let me = std::process::id();
    let cpu_before = cpu_seconds(me)?;
    let started = Instant::now();
    for _ in 0..syncs {
        let t = Instant::now();
        file.write_all_at(&record, end)?;
        end += bytes as u64;
        if prezero && end > zeroed {
            file.write_all_at(&zeros, end)?;
            zeroed = end + PREZERO_CHUNK;
        }
        file.sync_data()?;
        times.push(t.elapsed().as_micros() as u64);
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(me)? - cpu_before;
    std::fs::remove_file(&path)?;
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    println!(
        "{:<22} {bytes} B x {syncs}: mean {:.1} us, p50 {} us, p99 {} us, p99.9 {} us; process CPU {:.1} us per sync",
        if prezero { "overwrite pre-zeroed" } else { "append (file grows)" },
        wall * 1e6 / syncs as f64,
        at(0.5),
        at(0.99),
        at(0.999),
        cpu * 1e6 / syncs as f64,
    );
    Ok(())
}
