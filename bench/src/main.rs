//! `coffer-bench`: the HTTP load tool for Coffer (issue 7).
//!
//! `coffer-bench <scenario> [--addr URL] [--ca FILE] [--token T] [--connections N]
//! [--duration S | --requests N] [--keys N]` drives a running server over TLS with N
//! keep-alive HTTP/1.1 connections (one task and one connection each) and prints
//! requests/s, p50/p99/p99.9 latency and errors. `baseline-server` is the bare
//! actix-web + rustls server every figure is compared with; `gen-cert`, `setup`,
//! `load-kv`, `call`, `start-time`, `rss` and `report` are what `scripts/bench.sh`
//! uses; `sync-cost` measures the disk under the Raft log.

mod admin;
mod apply_cost;
mod baseline;
mod conn;
mod record;
mod runner;
mod scenario;
mod sync_cost;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::conn::Target;
use crate::record::Record;
use crate::runner::Amount;
use crate::scenario::{Prepared, Scenario};

#[derive(Parser)]
#[command(
    name = "coffer-bench",
    about = "Load tool and baseline server for benchmarking Coffer over TLS"
)]
struct Cli {
    /// Threads of the load tool's runtime (0: one per core). The tool shares the
    /// machine with the server, so fewer threads leave more CPU to the server.
    #[arg(long, global = true, default_value_t = 0)]
    client_threads: usize,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Args, Clone)]
struct Server {
    /// Server address.
    #[arg(long, env = "VAULT_ADDR", default_value = "https://127.0.0.1:8200")]
    addr: String,
    /// CA certificate (PEM) to trust.
    #[arg(long, env = "VAULT_CACERT")]
    ca: PathBuf,
}

#[derive(Args, Clone)]
struct Load {
    #[command(flatten)]
    server: Server,
    /// Token (`X-Vault-Token`).
    #[arg(long, env = "VAULT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Keep-alive connections, one task each.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0, conflicts_with = "requests")]
    duration: f64,
    /// Run exactly this many requests instead of for a duration (no warm-up).
    #[arg(long)]
    requests: Option<u64>,
    /// Unmeasured warm-up seconds before a timed run.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Key space of kv-read-many and kv-mixed.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// First write the `--keys` keys that kv-read-many and kv-mixed read.
    #[arg(long)]
    prepare: bool,
    /// Bytes in each written value.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Qualifier for the report (`audit on`, `3-node`, ...).
    #[arg(long, default_value = "")]
    label: String,
    /// Append the result as a JSON line to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// The server's process id, on this machine: also report the server's CPU time per
    /// measured request (from `/proc/<pid>/stat`).
    #[arg(long)]
    server_pid: Option<u32>,
}

#[derive(Subcommand)]
enum Cmd {
    /// KV v2 read of one key.
    KvReadOne(Load),
    /// KV v2 read of random keys out of --keys (write them with --prepare).
    KvReadMany(Load),
    /// KV v2 write of distinct keys.
    KvWrite(Load),
    /// 90% KV v2 reads over --keys, 10% writes of distinct keys.
    KvMixed(Load),
    /// Transit encrypt of 1 KiB (aes256-gcm96 key `bench`).
    TransitEncrypt(Load),
    /// Transit decrypt of a 1 KiB ciphertext.
    TransitDecrypt(Load),
    /// auth/token/lookup-self.
    TokenLookupSelf(Load),
    /// AppRole login (role `bench`).
    ApproleLogin(Load),
    /// sys/health: the floor of Coffer's HTTP stack.
    Health(Load),
    /// The baseline server's fixed answer (point --addr at `baseline-server`).
    Baseline(Load),
    /// Serve a fixed 200 JSON body over Coffer's TLS setup (the baseline).
    BaselineServer {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8300")]
        listen: String,
        /// Certificate (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// Private key (PEM).
        #[arg(long)]
        key: PathBuf,
    },
    /// Write an ECDSA P-256 certificate for 127.0.0.1/localhost: DIR/tls.crt, DIR/tls.key.
    GenCert {
        /// Output directory.
        dir: PathBuf,
    },
    /// Init (1/1), unseal, mount kv v2 at secret/, transit (key `bench`), approle (role
    /// `bench`); prints the root token and writes OUT/root_token, OUT/unseal_key.
    Setup {
        #[command(flatten)]
        server: Server,
        /// Directory for root_token and unseal_key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write --count KV v2 secrets of --value-size bytes at secret/load/<i>
    /// (concurrently; each request is one write).
    LoadKv {
        #[command(flatten)]
        server: Server,
        /// Token.
        #[arg(long, env = "VAULT_TOKEN", hide_env_values = true)]
        token: String,
        /// Number of secrets.
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
        /// Bytes per value.
        #[arg(long, default_value_t = 100)]
        value_size: usize,
        /// Concurrent connections.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Append the result as a JSON line to this file.
        #[arg(long)]
        json_out: Option<PathBuf>,
    },
    /// Send one request and print the answer (fails unless 2xx).
    Call {
        #[command(flatten)]
        server: Server,
        /// Token.
        #[arg(long, env = "VAULT_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// HTTP method.
        #[arg(long, default_value = "GET")]
        method: String,
        /// JSON body.
        #[arg(long)]
        body: Option<String>,
        /// API path (`sys/audit/file`).
        path: String,
    },
    /// Start `coffer server`, unseal it, and time process start to the first
    /// successful read; leaves it running (pid in --pid-file).
    StartTime {
        #[command(flatten)]
        server: Server,
        /// The coffer binary.
        #[arg(long)]
        coffer: PathBuf,
        /// Its config file.
        #[arg(long)]
        config: PathBuf,
        /// Log file for its output.
        #[arg(long)]
        log: PathBuf,
        /// Where to write its pid.
        #[arg(long)]
        pid_file: PathBuf,
        /// Unseal key.
        #[arg(long)]
        unseal_key: String,
        /// Token for the probe read.
        #[arg(long, env = "VAULT_TOKEN", hide_env_values = true)]
        token: String,
        /// Path to read until it answers 200.
        #[arg(long, default_value = "secret/data/load/0")]
        probe: String,
        /// Secrets stored (recorded with the figure).
        #[arg(long)]
        count: Option<u64>,
        /// Append the result as a JSON line to this file.
        #[arg(long)]
        json_out: Option<PathBuf>,
    },
    /// Record a process's resident set (VmRSS).
    Rss {
        /// Process id.
        #[arg(long)]
        pid: u32,
        /// What the moment is (`idle`, `after loading`, ...).
        #[arg(long)]
        label: String,
        /// Secrets stored at the time.
        #[arg(long)]
        count: Option<u64>,
        /// Append the result as a JSON line to this file.
        #[arg(long)]
        json_out: Option<PathBuf>,
    },
    /// What one `sync_data` costs after an append that grows a file and after an
    /// overwrite of pre-zeroed space (as the Raft log writes).
    SyncCost {
        /// Directory on the disk to measure.
        dir: PathBuf,
        /// Bytes per write.
        #[arg(long, default_value_t = 8192)]
        bytes: usize,
        /// Writes (each followed by a sync) per mode and round.
        #[arg(long, default_value_t = 3000)]
        syncs: usize,
        /// Rounds of both modes.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
    },
    /// What the state machine's sled store costs per KV v2 write (a version and a
    /// metadata record; `last_applied` per batch), with sequential and scattered keys.
    ApplyCost {
        /// Directory on the disk to measure (a fresh store per run, removed after it).
        dir: PathBuf,
        /// Writes per key order and round.
        #[arg(long, default_value_t = 100_000)]
        writes: usize,
        /// Writes per apply (one Raft apply call).
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Rounds of both key orders.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
    },
    /// Print the markdown report of a results file.
    Report {
        /// The JSON-lines results file.
        results: PathBuf,
    },
}

fn main() {
    conn::init_crypto();
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if cli.client_threads > 0 {
        builder.worker_threads(cli.client_threads);
    }
    let runtime = builder.enable_all().build().expect("tokio runtime");
    if let Err(e) = runtime.block_on(dispatch(cli.command)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn dispatch(cmd: Cmd) -> Result<()> {
    let (scenario, load) = match cmd {
        Cmd::KvReadOne(l) => (Scenario::KvReadOne, l),
        Cmd::KvReadMany(l) => (Scenario::KvReadMany, l),
        Cmd::KvWrite(l) => (Scenario::KvWrite, l),
        Cmd::KvMixed(l) => (Scenario::KvMixed, l),
        Cmd::TransitEncrypt(l) => (Scenario::TransitEncrypt, l),
        Cmd::TransitDecrypt(l) => (Scenario::TransitDecrypt, l),
        Cmd::TokenLookupSelf(l) => (Scenario::TokenLookupSelf, l),
        Cmd::ApproleLogin(l) => (Scenario::ApproleLogin, l),
        Cmd::Health(l) => (Scenario::Health, l),
        Cmd::Baseline(l) => (Scenario::Baseline, l),
        Cmd::BaselineServer { listen, cert, key } => {
            return baseline::serve(&listen, &cert, &key).await
        }
        Cmd::GenCert { dir } => return admin::gen_cert(&dir),
        Cmd::SyncCost {
            dir,
            bytes,
            syncs,
            rounds,
        } => return sync_cost::run(&dir, bytes, syncs, rounds),
        Cmd::ApplyCost {
            dir,
            writes,
            batch,
            rounds,
        } => return apply_cost::run(&dir, writes, batch, rounds),
        Cmd::Setup { server, out } => {
            let target = Target::new(&server.addr, &server.ca)?;
            return admin::setup(&target, &out).await;
        }
        Cmd::LoadKv {
            server,
            token,
            count,
            value_size,
            connections,
            json_out,
        } => {
            let target = Arc::new(Target::new(&server.addr, &server.ca)?);
            let plan = scenario::writer_plan(Scenario::LoadKv, &token, value_size, count)?;
            eprintln!("load-kv: writing {count} secrets of {value_size} bytes over {connections} connections");
            let o = runner::run(
                target,
                Arc::new(plan),
                connections,
                Amount::Requests(count),
                true,
                None,
            )
            .await?;
            print_outcome("load-kv", "", connections, &o);
            if let Some(path) = json_out {
                let mut r = Record::from_outcome("load-kv", "", connections, &o);
                r.kind = "bulk".into();
                r.count = Some(count);
                r.append(&path)?;
            }
            return Ok(());
        }
        Cmd::Call {
            server,
            token,
            method,
            body,
            path,
        } => {
            let target = Target::new(&server.addr, &server.ca)?;
            return admin::call(&target, &method, &path, token.as_deref(), body.as_deref()).await;
        }
        Cmd::StartTime {
            server,
            coffer,
            config,
            log,
            pid_file,
            unseal_key,
            token,
            probe,
            count,
            json_out,
        } => {
            let target = Target::new(&server.addr, &server.ca)?;
            let opts = admin::StartTime {
                coffer,
                config,
                log,
                pid_file,
                unseal_key,
                token,
                probe,
                count,
            };
            let r = admin::start_time(&target, &opts).await?;
            println!("{:.0}", r.ms.unwrap_or_default());
            if let Some(path) = json_out {
                r.append(&path)?;
            }
            return Ok(());
        }
        Cmd::Rss {
            pid,
            label,
            count,
            json_out,
        } => {
            let kib = admin::rss_kib(pid)?;
            println!("{kib}");
            if let Some(path) = json_out {
                Record {
                    kind: "rss".into(),
                    label,
                    kib: Some(kib),
                    count,
                    ..Record::default()
                }
                .append(&path)?;
            }
            return Ok(());
        }
        Cmd::Report { results } => {
            let records = record::read_all(&results)?;
            print!("{}", record::report(&records));
            return Ok(());
        }
    };
    run_scenario(scenario, load).await
}

async fn run_scenario(scenario: Scenario, l: Load) -> Result<()> {
    let target = Arc::new(Target::new(&l.server.addr, &l.server.ca)?);
    if l.prepare && matches!(scenario, Scenario::KvReadMany | Scenario::KvMixed) {
        let token = l.token.as_deref().context("--prepare needs --token")?;
        eprintln!("preparing: writing {} keys", l.keys);
        let plan = scenario::writer_plan(Scenario::PrepareMany, token, l.value_size, l.keys)?;
        let o = runner::run(
            target.clone(),
            Arc::new(plan),
            l.connections,
            Amount::Requests(l.keys),
            true,
            None,
        )
        .await?;
        print_outcome("prepare-many", "", l.connections, &o);
        if o.errors > 0 {
            anyhow::bail!("preparing the keys had {} errors", o.errors);
        }
    }
    let prepared =
        scenario::prepare(&target, scenario, l.token.as_deref(), l.keys, l.value_size).await?;
    let plan = match prepared {
        Prepared::Ready(p) => p,
        Prepared::Unavailable(why) => {
            println!("{}: not available: {why}", scenario.name());
            if let Some(path) = &l.json_out {
                Record::unavailable(scenario.name(), &l.label, l.connections, &why).append(path)?;
            }
            return Ok(());
        }
    };
    let amount = match l.requests {
        Some(n) => Amount::Requests(n),
        None => Amount::Duration {
            measure: Duration::from_secs_f64(l.duration),
            warmup: Duration::from_secs_f64(l.warmup),
        },
    };
    let o = runner::run(
        target,
        Arc::new(plan),
        l.connections,
        amount,
        false,
        l.server_pid,
    )
    .await?;
    print_outcome(scenario.name(), &l.label, l.connections, &o);
    if let Some(path) = &l.json_out {
        Record::from_outcome(scenario.name(), &l.label, l.connections, &o).append(path)?;
    }
    Ok(())
}

fn print_outcome(name: &str, label: &str, connections: usize, o: &runner::Outcome) {
    let ms = |q: f64| o.hist.value_at_quantile(q) as f64 / 1000.0;
    let label = if label.is_empty() {
        String::new()
    } else {
        format!(" ({label})")
    };
    println!(
        "{name}{label}: {connections} conns, {} requests in {:.2} s = {:.0} req/s; \
         p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms; errors {}; connections opened {}",
        o.requests,
        o.seconds,
        o.rps(),
        ms(0.5),
        ms(0.99),
        ms(0.999),
        o.hist.max() as f64 / 1000.0,
        o.errors,
        o.connects
    );
    if let Some(us) = o.server_cpu_us_per_request() {
        println!("  server CPU: {us:.2} µs per request");
    }
    for e in &o.first_errors {
        println!("  error: {e}");
    }
}
