//! The helper subcommands `scripts/bench.sh` uses so it needs nothing but the release
//! binaries: `gen-cert` (an ECDSA P-256 certificate from rcgen), `setup` (init 1/1,
//! unseal, mounts and the objects the scenarios use), `call` (one API request),
//! `start-time` (spawn a server and time it to unsealed-and-serving) and `rss`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use hyper::Method;
use serde_json::{json, Value};

use crate::conn::{token_header, Conn, Reply, Target};
use crate::record::Record;
use crate::scenario::{APPROLE_ROLE, KV_MOUNT, TRANSIT_KEY, TRANSIT_MOUNT};

/// Write `tls.crt` and `tls.key` (ECDSA P-256, SANs 127.0.0.1 and localhost) into `dir`.
pub fn gen_cert(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])?;
    std::fs::write(dir.join("tls.crt"), ck.cert.pem())?;
    std::fs::write(dir.join("tls.key"), ck.signing_key.serialize_pem())?;
    println!("{}", dir.join("tls.crt").display());
    Ok(())
}

/// Connect, retrying until `deadline` (the server may still be starting).
async fn connect_until(target: &Target, deadline: Instant) -> Result<Conn> {
    loop {
        match target.connect().await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// Send on `conn`, reconnecting once if the server closed it.
async fn call_on(
    target: &Target,
    conn: &mut Conn,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<Reply> {
    let token = token.map(token_header).transpose()?;
    let body = body.map(|b| Bytes::from(b.to_string()));
    if conn.is_closed() {
        *conn = target.connect().await?;
    }
    match conn
        .send(method.clone(), path, token.as_ref(), body.clone())
        .await
    {
        Ok(r) => Ok(r),
        Err(_) if conn.is_closed() => {
            *conn = target.connect().await?;
            conn.send(method, path, token.as_ref(), body).await
        }
        Err(e) => Err(e),
    }
}

/// `must`: fail with the answer unless it is 2xx.
fn must(what: &str, r: Reply) -> Result<Reply> {
    if r.ok() {
        Ok(r)
    } else {
        bail!("{what}: {}", r.describe())
    }
}

/// Wait until `sys/health` answers 200 (unsealed and active).
async fn wait_active(target: &Target, conn: &mut Conn, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let r = call_on(target, conn, Method::GET, "/v1/sys/health", None, None).await?;
        if r.status == 200 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("not active after {within:?}: {}", r.describe());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Init (1 share, threshold 1), unseal, mount KV v2 at `secret/`, transit with an
/// aes256-gcm96 key, AppRole with a role. Writes `root_token` and `unseal_key` into
/// `out`, prints the root token. Engines that are not available are reported and
/// skipped (their scenarios then say so).
pub async fn setup(target: &Target, out: &Path) -> Result<()> {
    let mut conn = connect_until(target, Instant::now() + Duration::from_secs(30)).await?;
    let c = &mut conn;
    let r = must(
        "sys/init",
        call_on(
            target,
            c,
            Method::PUT,
            "/v1/sys/init",
            None,
            Some(&json!({"secret_shares": 1, "secret_threshold": 1})),
        )
        .await?,
    )?;
    let init = r.json();
    let key = init["keys_base64"][0]
        .as_str()
        .or_else(|| init["keys"][0].as_str())
        .context("sys/init answered without keys")?
        .to_string();
    let token = init["root_token"]
        .as_str()
        .context("sys/init answered without root_token")?
        .to_string();
    must(
        "sys/unseal",
        call_on(
            target,
            c,
            Method::PUT,
            "/v1/sys/unseal",
            None,
            Some(&json!({ "key": key })),
        )
        .await?,
    )?;
    wait_active(target, c, Duration::from_secs(30)).await?;
    let t = Some(token.as_str());
    must(
        "mounting kv v2 at secret/",
        call_on(
            target,
            c,
            Method::POST,
            &format!("/v1/sys/mounts/{KV_MOUNT}"),
            t,
            Some(&json!({"type": "kv", "options": {"version": "2"}})),
        )
        .await?,
    )?;
    let mut notes = Vec::new();
    let r = call_on(
        target,
        c,
        Method::POST,
        &format!("/v1/sys/mounts/{TRANSIT_MOUNT}"),
        t,
        Some(&json!({"type": "transit"})),
    )
    .await?;
    if r.ok() {
        let r = call_on(
            target,
            c,
            Method::POST,
            &format!("/v1/{TRANSIT_MOUNT}/keys/{TRANSIT_KEY}"),
            t,
            Some(&json!({"type": "aes256-gcm96"})),
        )
        .await?;
        if !r.ok() {
            notes.push(format!("transit key: {}", r.describe()));
        }
    } else {
        notes.push(format!("transit mount: {}", r.describe()));
    }
    let r = call_on(
        target,
        c,
        Method::POST,
        "/v1/sys/auth/approle",
        t,
        Some(&json!({"type": "approle"})),
    )
    .await?;
    if r.ok() {
        let r = call_on(
            target,
            c,
            Method::POST,
            &format!("/v1/auth/approle/role/{APPROLE_ROLE}"),
            t,
            Some(&json!({
                "token_policies": ["default"],
                "token_ttl": "1h",
                "secret_id_num_uses": 0,
                "secret_id_ttl": "0",
            })),
        )
        .await?;
        if !r.ok() {
            notes.push(format!("approle role: {}", r.describe()));
        }
    } else {
        notes.push(format!("approle auth: {}", r.describe()));
    }
    for n in &notes {
        eprintln!("setup: not available: {n}");
    }
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("root_token"), &token)?;
    std::fs::write(out.join("unseal_key"), &key)?;
    println!("{token}");
    Ok(())
}

/// One request; prints the status and the whole body; fails unless 2xx.
pub async fn call(
    target: &Target,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<()> {
    let mut conn = target.connect().await?;
    let body = body
        .map(serde_json::from_str::<Value>)
        .transpose()
        .context("--body is not JSON")?;
    let path = format!(
        "/v1/{}",
        path.trim_start_matches('/').trim_start_matches("v1/")
    );
    let method = Method::from_bytes(method.to_uppercase().as_bytes())?;
    let r = call_on(target, &mut conn, method, &path, token, body.as_ref()).await?;
    println!("{} {}", r.status, String::from_utf8_lossy(&r.body).trim());
    if !r.ok() {
        bail!("{path} answered {}", r.status);
    }
    Ok(())
}

/// Options of `start-time`.
pub struct StartTime {
    /// The `coffer` binary.
    pub coffer: PathBuf,
    /// Its config file.
    pub config: PathBuf,
    /// Where its stdout/stderr go.
    pub log: PathBuf,
    /// Where to write its pid.
    pub pid_file: PathBuf,
    /// Unseal key (base64 or hex).
    pub unseal_key: String,
    /// Token for the probe read.
    pub token: String,
    /// API path to read until it answers 200 (`secret/data/load/0`).
    pub probe: String,
    /// Secrets stored (for the record).
    pub count: Option<u64>,
}

/// Spawn `coffer server`, and time it from spawn to reachable, to unsealed, and to the
/// first successful read. The server keeps running (its pid is in `pid_file`).
pub async fn start_time(target: &Target, o: &StartTime) -> Result<Record> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&o.log)
        .with_context(|| format!("opening {}", o.log.display()))?;
    let t0 = Instant::now();
    let mut child = Command::new(&o.coffer)
        .arg("server")
        .arg(format!("-config={}", o.config.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .with_context(|| format!("spawning {}", o.coffer.display()))?;
    std::fs::write(&o.pid_file, child.id().to_string())?;
    let deadline = t0 + Duration::from_secs(600);
    // Reachable: seal-status answers.
    let mut conn = loop {
        if let Some(status) = child.try_wait()? {
            bail!("the server exited with {status}; see {}", o.log.display());
        }
        if let Ok(mut c) = target.connect().await {
            if let Ok(r) = c.send(Method::GET, "/v1/sys/seal-status", None, None).await {
                if r.ok() {
                    break c;
                }
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the server did not become reachable; see {}",
                o.log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let reachable = t0.elapsed();
    must(
        "sys/unseal",
        call_on(
            target,
            &mut conn,
            Method::PUT,
            "/v1/sys/unseal",
            None,
            Some(&json!({ "key": o.unseal_key })),
        )
        .await?,
    )?;
    let unsealed = t0.elapsed();
    let path = format!("/v1/{}", o.probe.trim_start_matches('/'));
    let mut last = String::new();
    loop {
        let r = call_on(target, &mut conn, Method::GET, &path, Some(&o.token), None).await?;
        if r.ok() {
            break;
        }
        last = r.describe();
        if Instant::now() > deadline {
            bail!("{path} never answered 200; last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let serving = t0.elapsed();
    let detail = format!(
        "reachable {:.0} ms, unseal answered {:.0} ms, first read {:.0} ms{}",
        reachable.as_secs_f64() * 1000.0,
        unsealed.as_secs_f64() * 1000.0,
        serving.as_secs_f64() * 1000.0,
        if last.is_empty() {
            String::new()
        } else {
            format!("; reads before that answered {last}")
        }
    );
    eprintln!("start-time: {detail}");
    // Leave the server running: dropping `Child` neither kills nor waits.
    drop(child);
    Ok(Record {
        kind: "restart".into(),
        label: "restart".into(),
        ms: Some(serving.as_secs_f64() * 1000.0),
        detail: Some(detail),
        count: o.count,
        ..Record::default()
    })
}

/// CPU time a process has used so far (user + system, all its threads, also exited
/// ones), from fields 14 and 15 of `/proc/<pid>/stat`, in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    /// Linux reports these in USER_HZ, which is 100 on every architecture it exports.
    const USER_HZ: f64 = 100.0;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces: count fields after its `)`.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("no `)` in stat")?;
    let mut fields = rest.split_whitespace().skip(11);
    let mut tick =
        || -> Result<f64> { Ok(fields.next().context("short stat line")?.parse::<f64>()?) };
    Ok((tick()? + tick()?) / USER_HZ)
}

/// The resident set of a process (`VmRSS` in `/proc/<pid>/status`), KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS line")
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_seconds_counts_this_process() {
        let me = std::process::id();
        let before = super::cpu_seconds(me).unwrap();
        // Burn ~0.1 s of CPU (several USER_HZ ticks).
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let after = super::cpu_seconds(me).unwrap();
        assert!(after > before, "{before} -> {after}");
        assert!(super::cpu_seconds(u32::MAX).is_err());
    }
}
