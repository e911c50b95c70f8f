//! The load runner: N tasks, each owning one keep-alive connection, issue requests
//! back to back for a fixed time (after a warm-up) or until a shared request count is
//! used up. Latencies go into per-task HDR histograms merged at the end; any non-2xx
//! answer or transport failure is an error, and the first few are kept verbatim.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;

use crate::conn::{Conn, Target};
use crate::scenario::{Plan, Rng};

/// How long or how much to run.
#[derive(Debug, Clone, Copy)]
pub enum Amount {
    /// Measure for this long, after `warmup`.
    Duration {
        /// Measured time.
        measure: Duration,
        /// Unmeasured time before it.
        warmup: Duration,
    },
    /// Exactly this many requests in total (all measured).
    Requests(u64),
}

/// The result of one run.
pub struct Outcome {
    /// Measured requests (answered or failed).
    pub requests: u64,
    /// Non-2xx answers plus transport failures among them.
    pub errors: u64,
    /// Measured wall time.
    pub seconds: f64,
    /// Latencies of answered requests, in microseconds.
    pub hist: Histogram<u64>,
    /// The first few errors (status and start of the body, or the transport error).
    pub first_errors: Vec<String>,
    /// TCP+TLS connections opened (= connections unless the server closed some).
    pub connects: u64,
    /// CPU seconds the server process used over the measured time (with `server_pid`).
    pub server_cpu_seconds: Option<f64>,
}

impl Outcome {
    /// Server CPU per measured request, microseconds (with `server_pid`).
    pub fn server_cpu_us_per_request(&self) -> Option<f64> {
        let cpu = self.server_cpu_seconds?;
        (self.requests > 0).then(|| cpu * 1e6 / self.requests as f64)
    }

    /// Requests per second.
    pub fn rps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }
}

const KEEP_ERRORS: usize = 5;

struct Shared {
    plan: Arc<Plan>,
    target: Arc<Target>,
    next: AtomicU64,
    done: AtomicU64,
    connects: AtomicU64,
    first_errors: Mutex<Vec<String>>,
}

impl Shared {
    fn note_error(&self, e: String) {
        let mut errs = self.first_errors.lock().unwrap_or_else(|p| p.into_inner());
        if errs.len() < KEEP_ERRORS {
            errs.push(e);
        }
    }
}

struct TaskResult {
    requests: u64,
    errors: u64,
    hist: Histogram<u64>,
}

fn new_hist() -> Histogram<u64> {
    // 1 µs .. 120 s at 3 significant digits.
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

/// Run `plan` against `target` with `connections` connections.
pub async fn run(
    target: Arc<Target>,
    plan: Arc<Plan>,
    connections: usize,
    amount: Amount,
    progress: bool,
    server_pid: Option<u32>,
) -> Result<Outcome> {
    let connections = connections.max(1);
    // Every connection is open (handshake done) before the clock starts.
    let mut conns = Vec::with_capacity(connections);
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let t = target.clone();
        opening.spawn(async move { t.connect().await });
    }
    while let Some(c) = opening.join_next().await {
        conns.push(c.context("connect task")??);
    }
    let shared = Arc::new(Shared {
        plan,
        target,
        next: AtomicU64::new(0),
        done: AtomicU64::new(0),
        connects: AtomicU64::new(connections as u64),
        first_errors: Mutex::new(Vec::new()),
    });
    let start = Instant::now();
    let (measure_from, stop_at, limit) = match amount {
        Amount::Duration { measure, warmup } => {
            (start + warmup, Some(start + warmup + measure), None)
        }
        Amount::Requests(n) => (start, None, Some(n)),
    };
    let monitor = progress.then(|| {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut last = 0;
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            tick.tick().await;
            loop {
                tick.tick().await;
                let done = shared.done.load(Ordering::Relaxed);
                let total = limit.map(|n| format!("/{n}")).unwrap_or_default();
                eprintln!(
                    "  {done}{total} requests ({:.0}/s over the last 5 s)",
                    (done - last) as f64 / 5.0
                );
                last = done;
            }
        })
    });
    // The server's CPU clock when measuring starts (after the warm-up).
    let cpu_start = server_pid.map(|pid| {
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            crate::admin::cpu_seconds(pid)
        })
    });
    let mut tasks = tokio::task::JoinSet::new();
    for (n, conn) in conns.into_iter().enumerate() {
        let shared = shared.clone();
        tasks.spawn(worker(shared, conn, n as u64, measure_from, stop_at, limit));
    }
    let mut hist = new_hist();
    let mut requests = 0;
    let mut errors = 0;
    while let Some(r) = tasks.join_next().await {
        let r = r.context("worker task")?;
        hist.add(&r.hist)?;
        requests += r.requests;
        errors += r.errors;
    }
    let end = Instant::now();
    let server_cpu_seconds = match (cpu_start, server_pid) {
        (Some(start), Some(pid)) => {
            Some(crate::admin::cpu_seconds(pid)? - start.await.context("CPU sampling task")??)
        }
        _ => None,
    };
    if let Some(m) = monitor {
        m.abort();
    }
    let seconds = match stop_at {
        // Requests started before the deadline count; so does the time they took.
        Some(_) => end.duration_since(measure_from).as_secs_f64(),
        None => end.duration_since(start).as_secs_f64(),
    };
    let first_errors = shared
        .first_errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Ok(Outcome {
        requests,
        errors,
        seconds,
        hist,
        first_errors,
        connects: shared.connects.load(Ordering::Relaxed),
        server_cpu_seconds,
    })
}

async fn worker(
    shared: Arc<Shared>,
    mut conn: Conn,
    n: u64,
    measure_from: Instant,
    stop_at: Option<Instant>,
    limit: Option<u64>,
) -> TaskResult {
    let mut rng = Rng::new(n + 1);
    let mut hist = new_hist();
    let mut requests = 0;
    let mut errors = 0;
    let plan = shared.plan.clone();
    loop {
        let now = Instant::now();
        if stop_at.is_some_and(|s| now >= s) {
            break;
        }
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        if limit.is_some_and(|l| i >= l) {
            break;
        }
        if conn.is_closed() {
            match shared.target.connect().await {
                Ok(c) => {
                    conn = c;
                    shared.connects.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    shared.note_error(format!("reconnect: {e:#}"));
                    errors += 1;
                    requests += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let req = plan.request(i, &mut rng);
        let token = if req.auth { plan.token.as_ref() } else { None };
        let sent = Instant::now();
        let result = conn.send(req.method, &req.path, token, req.body).await;
        let took = sent.elapsed();
        let measured = sent >= measure_from;
        if measured {
            requests += 1;
        }
        shared.done.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(reply) => {
                if measured {
                    let _ = hist.record((took.as_micros() as u64).max(1));
                }
                if !reply.ok() {
                    if measured {
                        errors += 1;
                    }
                    shared.note_error(format!("{} {}", req.path, reply.describe()));
                }
            }
            Err(e) => {
                if measured {
                    errors += 1;
                }
                shared.note_error(format!("{} transport: {e:#}", req.path));
            }
        }
    }
    TaskResult {
        requests,
        errors,
        hist,
    }
}

#[cfg(test)]
mod tests {
    //! Against the real baseline server on 127.0.0.1: counts only, no timing.
    use super::*;
    use crate::scenario::{prepare, Prepared, Scenario};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keep_alive_connections_are_reused_and_every_request_is_counted() {
        crate::conn::init_crypto();
        let dir = std::env::temp_dir().join(format!("coffer-bench-runner-{}", std::process::id()));
        crate::admin::gen_cert(&dir).unwrap();
        let (server, addrs) =
            crate::baseline::bind("127.0.0.1:0", &dir.join("tls.crt"), &dir.join("tls.key"))
                .unwrap();
        let handle = server.handle();
        tokio::spawn(server);
        let addr = format!("https://127.0.0.1:{}", addrs[0].port());
        let target = Arc::new(Target::new(&addr, &dir.join("tls.crt")).unwrap());
        let plan = match prepare(&target, Scenario::Baseline, None, 1, 10)
            .await
            .unwrap()
        {
            Prepared::Ready(p) => p,
            Prepared::Unavailable(why) => panic!("baseline unavailable: {why}"),
        };
        // The baseline server runs in this process: its CPU is ours.
        let me = std::process::id();
        let o = run(
            target,
            Arc::new(plan),
            4,
            Amount::Requests(300),
            false,
            Some(me),
        )
        .await
        .unwrap();
        assert_eq!(o.requests, 300);
        let cpu = o.server_cpu_seconds.expect("server CPU measured");
        assert!(
            cpu >= 0.0 && cpu <= crate::admin::cpu_seconds(me).unwrap(),
            "{cpu}"
        );
        assert!(o.server_cpu_us_per_request().is_some());
        assert_eq!(o.errors, 0, "{:?}", o.first_errors);
        assert_eq!(o.hist.len(), 300);
        // One TLS connection per task, reused for all 300 requests.
        assert_eq!(o.connects, 4);
        handle.stop(false).await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_wrong_ca_fails_the_handshake() {
        crate::conn::init_crypto();
        let dir = std::env::temp_dir().join(format!("coffer-bench-ca-{}", std::process::id()));
        crate::admin::gen_cert(&dir.join("a")).unwrap();
        crate::admin::gen_cert(&dir.join("b")).unwrap();
        let (server, addrs) = crate::baseline::bind(
            "127.0.0.1:0",
            &dir.join("a/tls.crt"),
            &dir.join("a/tls.key"),
        )
        .unwrap();
        let handle = server.handle();
        tokio::spawn(server);
        let addr = format!("https://127.0.0.1:{}", addrs[0].port());
        let target = Target::new(&addr, &dir.join("b/tls.crt")).unwrap();
        let err = target.connect().await.err().expect("untrusted certificate");
        assert!(format!("{err:#}").contains("TLS handshake"), "{err:#}");
        handle.stop(false).await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
