//! What one `sync_data` costs after a write, when the write grows the file (a plain
//! append) and when it overwrites space zeroed ahead (what the WAL does, 1 MiB at a time
//! in the same sync as the batch that needs the room). Prints wall time per sync
//! (mean, p50, p99, p99.9) and this process's CPU per sync, for each mode in turn.
//!
//! ```sh
//! cargo run --release -p coffer-storage --example sync_cost -- DIR [BYTES] [SYNCS] [ROUNDS]
//! ```
//!
//! `DIR` must be on the disk to measure (not tmpfs); defaults: 8192 bytes per write,
//! 3000 syncs, 2 rounds of both modes.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

const ZERO_CHUNK: u64 = 1024 * 1024;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        eprintln!("usage: sync_cost DIR [BYTES] [SYNCS] [ROUNDS]");
        std::process::exit(2);
    };
    let arg =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (bytes, syncs, rounds) = (arg(1, 8192), arg(2, 3000), arg(3, 2));
    for _ in 0..rounds {
        for prezero in [false, true] {
            run(Path::new(dir), prezero, bytes, syncs)?;
        }
    }
    Ok(())
}

fn run(dir: &Path, prezero: bool, bytes: usize, syncs: usize) -> std::io::Result<()> {
    let path = dir.join("sync_cost.tmp");
    let _ = std::fs::remove_file(&path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    let record = vec![7u8; bytes];
    let zeros = vec![0u8; ZERO_CHUNK as usize];
    let (mut end, mut zeroed) = (0u64, 0u64);
    let mut times = Vec::with_capacity(syncs);
    let cpu_before = process_cpu_secs();
    let started = Instant::now();
    for _ in 0..syncs {
        let t = Instant::now();
        file.write_all_at(&record, end)?;
        end += bytes as u64;
        if prezero && end > zeroed {
            file.write_all_at(&zeros, end)?;
            zeroed = end + ZERO_CHUNK;
        }
        file.sync_data()?;
        times.push(t.elapsed().as_micros() as u64);
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = process_cpu_secs() - cpu_before;
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

/// User + system CPU of this process so far, from `/proc/self/stat` (Linux).
fn process_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
