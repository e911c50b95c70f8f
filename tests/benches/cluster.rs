//! Cluster benchmarks with real server processes (the integration tests' cluster
//! harness): write throughput with 64 concurrent writers on a 3-node cluster (through the
//! leader, and through standbys that forward), and fail-over time after `kill -9` of the
//! leader. Baselines come from the same run: a single-node server under the same load,
//! and a single node's recovery (kill -9, restart, unseal) for fail-over.
//!
//! `cargo bench -p coffer-tests --bench cluster` (release build). `COFFER_BENCH_SECS`
//! sets the measuring window per throughput case (default 10), `COFFER_BENCH_FAILOVERS`
//! the number of fail-overs (default 5).

#[path = "../tests/cluster_harness.rs"]
#[allow(dead_code)]
mod cluster_harness;
#[path = "../tests/harness.rs"]
mod harness;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use cluster_harness::Cluster;
use serde_json::json;

const WRITERS: usize = 64;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Throughput {
    ops_per_sec: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
}

/// 64 writers, each writing its own keys through `targets` (round robin), for `secs`.
async fn throughput(c: &Arc<Cluster>, targets: &[usize], secs: u64) -> Result<Throughput> {
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    // Warm up connections first.
    for &t in targets {
        c.request(t, "PUT", "kv/warmup", Some(json!({"value": "w"})), &[])
            .await?;
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (c, stop, ok, errors, latencies) = (
            c.clone(),
            stop.clone(),
            ok.clone(),
            errors.clone(),
            latencies.clone(),
        );
        let targets = targets.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut seq = 0usize;
            let mut mine = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                let target = targets[(w + seq) % targets.len()];
                let t0 = Instant::now();
                let r = c
                    .request(
                        target,
                        "PUT",
                        &format!("kv/bench/{w}/{}", seq % 1000),
                        Some(json!({"value": "0123456789abcdef0123456789abcdef"})),
                        &[],
                    )
                    .await;
                match r {
                    Ok(r) if r.status.is_success() => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        mine.push(t0.elapsed());
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies.lock().expect("lock").extend(mine);
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    for t in tasks {
        t.await?;
    }
    let mut lat = latencies.lock().expect("lock").clone();
    lat.sort();
    let pick = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Ok(Throughput {
        ops_per_sec: ok.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64(),
        p50: pick(0.50),
        p99: pick(0.99),
        errors: errors.load(Ordering::Relaxed),
    })
}

/// Keep writing through `targets` until one write succeeds; the time it took.
async fn first_write(c: &Cluster, targets: &[usize], from: Instant) -> Result<Duration> {
    let deadline = from + Duration::from_secs(60);
    let mut n = 0usize;
    loop {
        n += 1;
        let t = targets[n % targets.len()];
        if let Ok(r) = c
            .request(
                t,
                "PUT",
                "kv/failover",
                Some(json!({"value": n.to_string()})),
                &[],
            )
            .await
        {
            if r.status.is_success() {
                return Ok(from.elapsed());
            }
        }
        if Instant::now() > deadline {
            bail!("no write succeeded within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn mean(d: &[Duration]) -> Duration {
    d.iter().sum::<Duration>() / d.len().max(1) as u32
}

fn show(name: &str, t: &Throughput, base: f64) {
    println!(
        "| {name} | {:.0} | {:.2}x | {:.1} ms | {:.1} ms | {} |",
        t.ops_per_sec,
        t.ops_per_sec / base,
        t.p50.as_secs_f64() * 1e3,
        t.p99.as_secs_f64() * 1e3,
        t.errors
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let secs = env_u64("COFFER_BENCH_SECS", 10);
    let failovers = env_u64("COFFER_BENCH_FAILOVERS", 5) as usize;

    // Baseline: one node, same load.
    let mut single = Cluster::start(1).await?;
    single.mount_kv(0).await?;
    let single_arc = Arc::new(single);
    let base = throughput(&single_arc, &[0], secs).await?;
    single = Arc::try_unwrap(single_arc).map_err(|_| anyhow::anyhow!("shared"))?;

    let three = Arc::new(Cluster::start(3).await?);
    let leader = three.leader().await?;
    three.mount_kv(leader).await?;
    let via_leader = throughput(&three, &[leader], secs).await?;
    let standbys: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let via_standbys = throughput(&three, &standbys, secs).await?;

    println!("\nWrite throughput, {WRITERS} concurrent writers, {secs} s each (KV v1 PUT, 32-byte values, HTTPS):\n");
    println!("| setup | writes/s | vs single node | p50 | p99 | errors |");
    println!("|---|---|---|---|---|---|");
    show("single node (baseline)", &base, base.ops_per_sec);
    show(
        "3 nodes, writes to the leader",
        &via_leader,
        base.ops_per_sec,
    );
    show(
        "3 nodes, writes to standbys (forwarded)",
        &via_standbys,
        base.ops_per_sec,
    );

    // Fail-over: kill -9 the leader; time until another node is active and until a write
    // through a survivor succeeds. Baseline: a single node's kill -9, restart, unseal.
    let mut three = Arc::try_unwrap(three).map_err(|_| anyhow::anyhow!("shared"))?;
    let mut active = Vec::new();
    let mut writable = Vec::new();
    for _ in 0..failovers {
        let leader = three.leader().await?;
        let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
        let t0 = Instant::now();
        three.kill(leader);
        three
            .wait_leader(&survivors, Duration::from_secs(30))
            .await?;
        active.push(t0.elapsed());
        writable.push(first_write(&three, &survivors, t0).await?);
        three.restart(leader).await?;
        three.wait_voters(3, Duration::from_secs(30)).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut recover = Vec::new();
    for _ in 0..failovers {
        let t0 = Instant::now();
        single.kill(0);
        single.restart(0).await?;
        recover.push(first_write(&single, &[0], t0).await?);
    }
    let base_recover = mean(&recover);
    println!("\nFail-over after kill -9 of the leader ({failovers} runs, mean; min-max):\n");
    println!("| measure | time | vs single-node restart |");
    println!("|---|---|---|");
    let row = |name: &str, d: &[Duration]| {
        let (min, max) = (
            d.iter().min().copied().unwrap_or_default(),
            d.iter().max().copied().unwrap_or_default(),
        );
        println!(
            "| {name} | {:.2} s ({:.2}-{:.2}) | {:.2}x |",
            mean(d).as_secs_f64(),
            min.as_secs_f64(),
            max.as_secs_f64(),
            mean(d).as_secs_f64() / base_recover.as_secs_f64()
        );
    };
    row(
        "single node: kill -9, restart, unseal, first write (baseline)",
        &recover,
    );
    row("3 nodes: kill -9 leader -> new active node", &active);
    row(
        "3 nodes: kill -9 leader -> first acknowledged write",
        &writable,
    );
    Ok(())
}
