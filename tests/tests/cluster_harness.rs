//! Cluster harness: N real `coffer server` processes on 127.0.0.1, each with its own API
//! port (TLS, certificates from one test CA) and cluster port, Raft storage on disk and
//! `retry_join` blocks naming the other nodes. It can kill (SIGKILL), restart, unseal and
//! partition nodes.
//!
//! Partitions use the test-only network filter of the cluster transport: every node is
//! started with `COFFER_TEST_DROP_FILE` pointing at its own drop list, and the harness
//! writes the cluster addresses a node must not reach into that file (both directions),
//! like TiKV's `transport_simulate`. Nothing but tests sets that variable.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{binary, free_port, init_crypto, poll};

/// Shares and threshold every test cluster is initialised with.
pub const SHARES: u32 = 3;
/// See [`SHARES`].
pub const THRESHOLD: u32 = 2;

/// The CA that signs every node's API certificate.
pub struct TestCa {
    cert_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    fn new() -> Result<TestCa> {
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "coffer test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(TestCa {
            cert_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        })
    }

    /// A certificate for 127.0.0.1/localhost: (cert PEM, key PEM).
    fn issue(&self) -> Result<(String, String)> {
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
        let key = rcgen::KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// One node of a test cluster.
pub struct Node {
    pub name: String,
    pub dir: PathBuf,
    pub api_port: u16,
    pub cluster_port: u16,
    pub addr: String,
    config_path: PathBuf,
    drop_file: PathBuf,
    /// Extra environment for the process (e.g. `COFFER_MAX_LOG_FORMAT`).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Node {
    pub fn cluster_addr(&self) -> String {
        format!("127.0.0.1:{}", self.cluster_port)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let mut cmd = Command::new(binary());
        cmd.args(["server", &format!("-config={}", self.config_path.display())])
            .env("COFFER_TEST_DROP_FILE", &self.drop_file)
            .env_remove("COFFER_MAX_LOG_FORMAT")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().context("spawning a cluster node")?);
        Ok(())
    }

    /// SIGKILL (no clean shutdown).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An HTTP answer: status, headers, JSON body (or Null).
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub bytes: Vec<u8>,
}

impl Reply {
    /// Status, headers and body of an answer (the body also as JSON, `Null` if it is not).
    async fn read(resp: reqwest::Response) -> Result<Reply> {
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await?.to_vec();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            headers,
            body,
            bytes,
        })
    }

    /// `X-Vault-Index`, if present.
    pub fn index(&self) -> Option<u64> {
        self.headers
            .get("x-vault-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }
}

/// A running test cluster.
pub struct Cluster {
    /// Keeps every node's directory alive.
    _root: tempfile::TempDir,
    pub nodes: Vec<Node>,
    /// Unseal keys (hex) and the root token, once initialised.
    pub keys: Vec<String>,
    pub token: String,
    /// A client that trusts the test CA, follows no redirects.
    pub client: reqwest::Client,
}

impl Cluster {
    /// Create `n` node directories and configs (nothing started yet). Every node has
    /// `retry_join` blocks for all the others.
    pub fn new(n: usize) -> Result<Cluster> {
        init_crypto();
        let root = tempfile::tempdir()?;
        let ca = TestCa::new()?;
        let ca_path = root.path().join("api-ca.pem");
        std::fs::write(&ca_path, &ca.cert_pem)?;
        let mut ports = Vec::new();
        while ports.len() < 2 * n {
            let p = free_port();
            if !ports.contains(&p) && !ports.contains(&(p + 1)) && p < 65000 {
                ports.push(p);
            }
        }
        let mut nodes = Vec::new();
        for i in 0..n {
            let name = format!("node-{i}");
            let dir = root.path().join(&name);
            std::fs::create_dir_all(&dir)?;
            let (cert, key) = ca.issue()?;
            std::fs::write(dir.join("tls.crt"), cert)?;
            std::fs::write(dir.join("tls.key"), key)?;
            let drop_file = dir.join("drop-list");
            std::fs::write(&drop_file, "")?;
            nodes.push(Node {
                name,
                dir,
                api_port: ports[2 * i],
                cluster_port: ports[2 * i + 1],
                addr: format!("https://127.0.0.1:{}", ports[2 * i]),
                config_path: PathBuf::new(),
                drop_file,
                env: Vec::new(),
                child: None,
            });
        }
        for i in 0..n {
            let mut joins = String::new();
            for (j, other) in nodes.iter().enumerate() {
                if j != i {
                    joins.push_str(&format!(
                        "  retry_join {{\n    leader_api_addr = \"{}\"\n    leader_ca_cert_file = \"{}\"\n    leader_tls_servername = \"localhost\"\n  }}\n",
                        other.addr,
                        ca_path.display()
                    ));
                }
            }
            let node = &nodes[i];
            let config = format!(
                r#"
storage "raft" {{
  path    = "{data}"
  node_id = "{name}"
{joins}}}
listener "tcp" {{
  address         = "127.0.0.1:{api}"
  cluster_address = "127.0.0.1:{cluster}"
  tls_cert_file   = "{dir}/tls.crt"
  tls_key_file    = "{dir}/tls.key"
}}
api_addr      = "https://127.0.0.1:{api}"
cluster_addr  = "https://127.0.0.1:{cluster}"
disable_mlock = true
"#,
                data = node.data_dir().display(),
                name = node.name,
                api = node.api_port,
                cluster = node.cluster_port,
                dir = node.dir.display(),
            );
            let path = node.dir.join("config.hcl");
            std::fs::write(&path, config)?;
            nodes[i].config_path = path;
        }
        let ca_cert = reqwest::Certificate::from_pem(ca.cert_pem.as_bytes())?;
        let client = reqwest::Client::builder()
            .tls_certs_only([ca_cert])
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Cluster {
            _root: root,
            nodes,
            keys: Vec::new(),
            token: String::new(),
            client,
        })
    }

    /// Start `n` nodes, initialise node 0, unseal everyone and wait until all are voters.
    pub async fn start(n: usize) -> Result<Cluster> {
        let mut c = Cluster::new(n)?;
        c.boot(&[]).await?;
        Ok(c)
    }

    /// Start every node, initialise node 0 and let the others join through `retry_join`
    /// and their unseal keys; wait for `n` voters. `env` applies per node index.
    pub async fn boot(&mut self, env: &[(usize, &str, &str)]) -> Result<()> {
        for (i, k, v) in env {
            self.nodes[*i].env.push((k.to_string(), v.to_string()));
        }
        for i in 0..self.nodes.len() {
            self.nodes[i].spawn()?;
        }
        for i in 0..self.nodes.len() {
            self.wait_reachable(i).await?;
        }
        let (status, body) = self
            .json(
                0,
                "PUT",
                "sys/init",
                None,
                Some(json!({"secret_shares": SHARES, "secret_threshold": THRESHOLD})),
            )
            .await?;
        if status != StatusCode::OK {
            bail!("init failed: {status} {body}");
        }
        self.keys = body["keys"]
            .as_array()
            .context("keys")?
            .iter()
            .filter_map(|k| k.as_str().map(String::from))
            .collect();
        self.token = body["root_token"].as_str().context("token")?.to_string();
        self.unseal(0).await?;
        self.wait_active(0, Duration::from_secs(20)).await?;
        for i in 1..self.nodes.len() {
            self.join(i).await?;
        }
        self.wait_voters(self.nodes.len(), Duration::from_secs(30))
            .await?;
        Ok(())
    }

    /// Unseal node `i` once its join challenge arrived (`retry_join`), which completes
    /// its join.
    pub async fn join(&self, i: usize) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, st) = self.json(i, "GET", "sys/seal-status", None, None).await?;
            if st["initialized"] == json!(true) {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "{} never got a join challenge; log:\n{}",
                    self.nodes[i].name,
                    self.nodes[i].log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.unseal(i)
            .await
            .with_context(|| format!("joining {}; logs:\n{}", self.nodes[i].name, self.logs()))?;
        let (_, st) = self.json(i, "GET", "sys/seal-status", None, None).await?;
        if st["sealed"] != json!(false) {
            bail!(
                "{} did not unseal: {st}; log:\n{}",
                self.nodes[i].name,
                self.nodes[i].log()
            );
        }
        Ok(())
    }

    async fn wait_reachable(&self, i: usize) -> Result<()> {
        let reachable = poll(Duration::from_secs(30), || async move {
            let r = self
                .client
                .get(self.url(i, "sys/seal-status"))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            matches!(r, Ok(r) if r.status() == StatusCode::OK).then_some(())
        })
        .await;
        reachable.with_context(|| {
            format!(
                "{} is not reachable; log:\n{}",
                self.nodes[i].name,
                self.nodes[i].log()
            )
        })
    }

    pub fn url(&self, i: usize, path: &str) -> String {
        format!("{}/v1/{}", self.nodes[i].addr, path.trim_start_matches('/'))
    }

    /// A request with optional token, JSON body and extra headers.
    pub async fn request(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, String)],
    ) -> Result<Reply> {
        let mut req = self
            .client
            .request(Method::from_bytes(method.as_bytes())?, self.url(i, path));
        if !self.token.is_empty() {
            req = req.header("X-Vault-Token", &self.token);
        }
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        Reply::read(resp).await
    }

    /// (status, JSON) of a request, with the root token if `token` is None and one exists.
    pub async fn json(
        &self,
        i: usize,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        let mut req = self
            .client
            .request(Method::from_bytes(method.as_bytes())?, self.url(i, path));
        let token = token.unwrap_or(&self.token);
        if !token.is_empty() {
            req = req.header("X-Vault-Token", token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = Reply::read(req.send().await?).await?;
        Ok((r.status, r.body))
    }

    /// Submit the threshold of unseal keys to node `i`.
    pub async fn unseal(&self, i: usize) -> Result<Value> {
        self.unseal_with(i, &self.keys[..THRESHOLD as usize]).await
    }

    /// Submit these keys to node `i`.
    pub async fn unseal_with(&self, i: usize, keys: &[String]) -> Result<Value> {
        let mut last = Value::Null;
        for k in keys {
            let (status, body) = self
                .json(i, "PUT", "sys/unseal", Some(""), Some(json!({ "key": k })))
                .await?;
            if status != StatusCode::OK {
                bail!("unseal of {} failed: {status} {body}", self.nodes[i].name);
            }
            last = body;
        }
        Ok(last)
    }

    /// Mount KV v1 at `kv/` through node `i`.
    pub async fn mount_kv(&self, i: usize) -> Result<()> {
        let (status, body) = self
            .json(
                i,
                "POST",
                "sys/mounts/kv",
                None,
                Some(json!({"type": "kv"})),
            )
            .await?;
        if !status.is_success() {
            bail!("mount kv: {status} {body}");
        }
        Ok(())
    }

    /// Wait until node `i` says it is the active node.
    pub async fn wait_active(&self, i: usize, timeout: Duration) -> Result<()> {
        self.wait_leader(&[i], timeout).await.with_context(|| {
            format!(
                "{} is not active; log:\n{}",
                self.nodes[i].name,
                self.nodes[i].log()
            )
        })?;
        Ok(())
    }

    /// The index of the active node among `candidates`, as the nodes report it.
    pub async fn active_among(&self, candidates: &[usize]) -> Option<usize> {
        for &i in candidates {
            if !self.nodes[i].running() {
                continue;
            }
            if let Ok((StatusCode::OK, _)) = self.json(i, "GET", "sys/health", Some(""), None).await
            {
                return Some(i);
            }
        }
        None
    }

    /// Wait for an active node among `candidates`.
    pub async fn wait_leader(&self, candidates: &[usize], timeout: Duration) -> Result<usize> {
        poll(timeout, || self.active_among(candidates))
            .await
            .with_context(|| format!("no active node among {candidates:?}"))
    }

    /// The current active node (any).
    pub async fn leader(&self) -> Result<usize> {
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        self.wait_leader(&all, Duration::from_secs(20)).await
    }

    /// `sys/storage/raft/configuration` servers, via node `i`.
    pub async fn servers(&self, i: usize) -> Result<Vec<Value>> {
        let (status, body) = self
            .json(i, "GET", "sys/storage/raft/configuration", None, None)
            .await?;
        if status != StatusCode::OK {
            bail!("configuration: {status} {body}");
        }
        Ok(body["data"]["config"]["servers"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Wait until the active node lists `n` voters.
    pub async fn wait_voters(&self, n: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let leader = self.leader().await?;
            if let Ok(servers) = self.servers(leader).await {
                let voters = servers.iter().filter(|s| s["voter"] == json!(true)).count();
                if voters == n {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "never saw {n} voters: {:?}",
                    self.servers(self.leader().await?).await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL node `i`.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Start node `i` again (same data), wait until reachable, unseal it.
    pub async fn restart(&mut self, i: usize) -> Result<()> {
        self.nodes[i].kill();
        self.nodes[i].spawn()?;
        self.wait_reachable(i).await?;
        self.unseal(i).await?;
        Ok(())
    }

    /// Start node `i` (again) without unsealing it.
    pub async fn restart_sealed(&mut self, i: usize) -> Result<()> {
        self.nodes[i].kill();
        self.nodes[i].spawn()?;
        self.wait_reachable(i).await
    }

    /// A request with a raw (binary) body and the root token.
    pub async fn raw(&self, i: usize, method: &str, path: &str, body: Vec<u8>) -> Result<Reply> {
        let resp = self
            .client
            .request(Method::from_bytes(method.as_bytes())?, self.url(i, path))
            .header("X-Vault-Token", &self.token)
            .header("Content-Type", "application/octet-stream")
            .body(body)
            .send()
            .await?;
        Reply::read(resp).await
    }

    /// Cut node `i` off from every other node (both directions) on the cluster port.
    pub fn partition(&self, i: usize) -> Result<()> {
        let others: Vec<String> = (0..self.nodes.len())
            .filter(|&j| j != i)
            .map(|j| self.nodes[j].cluster_addr())
            .collect();
        write_drop(&self.nodes[i].drop_file, &others)?;
        for j in (0..self.nodes.len()).filter(|&j| j != i) {
            write_drop(&self.nodes[j].drop_file, &[self.nodes[i].cluster_addr()])?;
        }
        Ok(())
    }

    /// Remove every partition.
    pub fn heal(&self) -> Result<()> {
        for n in &self.nodes {
            write_drop(&n.drop_file, &[])?;
        }
        Ok(())
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("===== {} =====\n{}", n.name, n.log()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn write_drop(path: &Path, addrs: &[String]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, addrs.join("\n"))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
