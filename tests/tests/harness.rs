//! Test harness: real `coffer server` processes on 127.0.0.1 with TLS certificates made
//! by rcgen, a reqwest client that trusts them, and helpers for the unseal ceremony.
//! Each suite uses a subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Install the ring provider once per test process (reqwest is built without one).
pub fn init_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A self-signed certificate for 127.0.0.1/localhost, written as PEM files.
pub struct TestCert {
    pub cert_pem: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl TestCert {
    pub fn create(dir: &Path) -> Result<TestCert> {
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])?;
        let cert_pem = ck.cert.pem();
        let cert_path = dir.join("tls.crt");
        let key_path = dir.join("tls.key");
        std::fs::write(&cert_path, &cert_pem)?;
        std::fs::write(&key_path, ck.signing_key.serialize_pem())?;
        Ok(TestCert {
            cert_pem,
            cert_path,
            key_path,
        })
    }
}

/// One server process with its data directory, config and log file.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub addr: String,
    pub cert: Option<TestCert>,
    pub config_path: PathBuf,
    child: Option<Child>,
    pub client: reqwest::Client,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_coffer-under-test")
}

impl Server {
    /// A single-node server with Raft storage on disk and TLS, started and reachable
    /// (sealed, uninitialised).
    pub async fn start_tls() -> Result<Server> {
        Self::start_tls_with(|_| Ok(String::new())).await
    }

    /// As [`Server::start_tls`], with `plugin_directory` at [`Server::plugin_dir`]
    /// (created, empty) and debug logging: for external plugin tests.
    pub async fn start_tls_with_plugins() -> Result<Server> {
        Self::start_tls_with(|dir| {
            let plugins = dir.join("plugins");
            std::fs::create_dir_all(&plugins)?;
            Ok(format!(
                "plugin_directory = \"{}\"\nlog_level = \"debug\"\n",
                plugins.display()
            ))
        })
        .await
    }

    /// Where [`Server::start_tls_with_plugins`] looks for plugin executables.
    pub fn plugin_dir(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    /// A TLS server whose config ends with `extra(dir)` (dir: the server's temp dir).
    async fn start_tls_with(extra: impl FnOnce(&Path) -> Result<String>) -> Result<Server> {
        init_crypto();
        let dir = tempfile::tempdir()?;
        let cert = TestCert::create(dir.path())?;
        let port = free_port();
        let data = dir.path().join("data");
        let config = format!(
            r#"
storage "raft" {{
  path    = "{}"
  node_id = "node1"
}}
listener "tcp" {{
  address       = "127.0.0.1:{port}"
  tls_cert_file = "{}"
  tls_key_file  = "{}"
}}
api_addr = "https://127.0.0.1:{port}"
disable_mlock = true
{}"#,
            data.display(),
            cert.cert_path.display(),
            cert.key_path.display(),
            extra(dir.path())?
        );
        let config_path = dir.path().join("config.hcl");
        std::fs::write(&config_path, config)?;
        let ca = reqwest::Certificate::from_pem(cert.cert_pem.as_bytes())?;
        let client = reqwest::Client::builder()
            .tls_certs_only([ca])
            .timeout(Duration::from_secs(30))
            .build()?;
        let mut server = Server {
            dir,
            port,
            addr: format!("https://127.0.0.1:{port}"),
            cert: Some(cert),
            config_path,
            child: None,
            client,
        };
        server.spawn()?;
        server.wait_reachable().await?;
        Ok(server)
    }

    /// A dev server (`-dev`, plain HTTP, unsealed) with the given root token.
    pub async fn start_dev(root_token: &str) -> Result<Server> {
        init_crypto();
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let mut server = Server {
            config_path: PathBuf::new(),
            dir,
            port,
            addr: format!("http://127.0.0.1:{port}"),
            cert: None,
            child: None,
            client,
        };
        let log = std::fs::File::create(server.log_path())?;
        let child = Command::new(binary())
            .args([
                "server",
                "-dev",
                &format!("-dev-root-token-id={root_token}"),
                &format!("-dev-listen-address=127.0.0.1:{port}"),
            ])
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("spawning the dev server")?;
        server.child = Some(child);
        server.wait_reachable().await?;
        Ok(server)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = Command::new(binary())
            .args(["server", &format!("-config={}", self.config_path.display())])
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("spawning the server")?;
        self.child = Some(child);
        Ok(())
    }

    async fn wait_reachable(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("server exited with {status}; log:\n{}", self.log());
                }
            }
            if let Ok(resp) = self.client.get(self.url("sys/seal-status")).send().await {
                if resp.status() == StatusCode::OK {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("server did not become reachable; log:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL the process (no clean shutdown).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kill and start again on the same port and data directory.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()?;
        self.wait_reachable().await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/v1/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Send a request; returns (status, JSON body or Null).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        let method = Method::from_bytes(method.as_bytes())?;
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.header("X-Vault-Token", t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).with_context(|| format!("non-JSON body: {text}"))?
        };
        Ok((status, value))
    }

    /// Send raw bytes as the body.
    pub async fn call_raw(
        &self,
        method: &str,
        path: &str,
        body: &'static [u8],
    ) -> Result<(StatusCode, Value)> {
        let resp = self
            .client
            .request(Method::from_bytes(method.as_bytes())?, self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = resp.status();
        let text = resp.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// `sys/init` with shares/threshold; returns (hex keys, base64 keys, root token).
    pub async fn init(
        &self,
        shares: u32,
        threshold: u32,
    ) -> Result<(Vec<String>, Vec<String>, String)> {
        let (status, body) = self
            .call(
                "PUT",
                "sys/init",
                None,
                Some(json!({"secret_shares": shares, "secret_threshold": threshold})),
            )
            .await?;
        if status != StatusCode::OK {
            bail!("init failed: {status} {body}");
        }
        let strings = |k: &str| -> Vec<String> {
            body[k]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok((
            strings("keys"),
            strings("keys_base64"),
            body["root_token"].as_str().unwrap_or_default().to_string(),
        ))
    }

    /// Submit shares until unsealed; returns the last seal-status.
    pub async fn unseal(&self, keys: &[String]) -> Result<Value> {
        let mut last = Value::Null;
        for k in keys {
            let (status, body) = self
                .call("PUT", "sys/unseal", None, Some(json!({ "key": k })))
                .await?;
            if status != StatusCode::OK {
                bail!("unseal failed: {status} {body}");
            }
            last = body;
        }
        Ok(last)
    }

    /// Wait until `sys/health` says active (a restarted node needs an election).
    pub async fn wait_active(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, _) = self.call("GET", "sys/health", None, None).await?;
            if status == StatusCode::OK {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("not active: {status}; log:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every file under the data directory, read whole.
    pub fn data_files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if let Ok(bytes) = std::fs::read(&p) {
                    out.push((p, bytes));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.dir.path().join("data"), &mut out);
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Try `attempt` every 50 ms until it gives a value or `timeout` has passed.
pub async fn poll<T, F: std::future::Future<Output = Option<T>>>(
    timeout: Duration,
    mut attempt: impl FnMut() -> F,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = attempt().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Put a plugin executable in place atomically (never a half-written file that runs).
pub fn install_plugin(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, dir.join(name))?;
    Ok(())
}

/// The hex SHA-256 of `bytes` (a plugin's catalog checksum).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// Whether `needle` occurs anywhere in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
