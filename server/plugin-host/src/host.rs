//! [`ExternalBackend`]: an sdk `Backend` whose implementation is a child process.
//!
//! The backend starts the plugin on first use (or when told to, [`ExternalBackend::start`]),
//! asking its [`PluginSource`] for the command before every start — that is where the
//! server checks the executable's SHA-256. A supervisor task owns the child: it drives
//! the reader loop, logs the child's stderr at debug, and when the child exits (or
//! breaks the protocol, or the backend is dropped) it kills and reaps it and fails the
//! calls in flight with "plugin exited". The next call starts a new process.
//!
//! A call that never reached the plugin (it was already dead) is sent again to the new
//! process; a call that reached it is never replayed, since the plugin may have
//! committed a write before dying. Every call is bounded by [`Timeouts::request`] and
//! every start by [`Timeouts::handshake`], so a hung plugin never hangs a request.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use coffer_sdk::{Backend, BackendKind, Request, Response, SdkError, SpecialPaths, Storage};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use crate::conn::{BoxFuture, CallError, Connection, Hello};
use crate::wire::{HostMessage, WireRequest, WireResponse};

/// How long the host waits.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// From spawning the process to its `hello`.
    pub handshake: Duration,
    /// One call (request, existence check, periodic, ...), including a restart.
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            handshake: Duration::from_secs(10),
            request: Duration::from_secs(60),
        }
    }
}

/// How to run the plugin: the program (already verified), its arguments and its whole
/// environment (the server's own environment is not passed on).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginCommand {
    /// The executable.
    pub program: PathBuf,
    /// Arguments.
    pub args: Vec<String>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
}

/// Where the command comes from. Called (on a blocking thread) before every start, so a
/// catalog change or a replaced executable is noticed at the next (re)start.
pub trait PluginSource: Send + Sync + 'static {
    /// The command to run, after checking the executable (the server verifies its
    /// SHA-256 against the catalog here). An error refuses the start.
    fn resolve(&self) -> Result<PluginCommand, SdkError>;
}

/// What an external backend serves.
#[derive(Clone)]
pub struct ExternalConfig {
    /// The catalog name (for errors and logs).
    pub name: String,
    /// The mount path with trailing `/`.
    pub mount_point: String,
    /// The mount's options (sent in `hello`).
    pub options: BTreeMap<String, String>,
    /// The mount's storage view; the plugin's storage calls are served from it.
    pub storage: Arc<dyn Storage>,
    /// Timeouts.
    pub timeouts: Timeouts,
}

struct Running {
    conn: Arc<Connection>,
    pid: Option<u32>,
    /// Dropping it tells the supervisor to kill the child.
    _stop: oneshot::Sender<()>,
}

/// A secret engine served by a separate executable over the plugin protocol.
pub struct ExternalBackend {
    config: ExternalConfig,
    source: Arc<dyn PluginSource>,
    running: Mutex<Option<Running>>,
    start_lock: tokio::sync::Mutex<()>,
    special_paths: Mutex<SpecialPaths>,
}

impl ExternalBackend {
    /// A backend for one mount; nothing runs until the first call or [`Self::start`].
    pub fn new(config: ExternalConfig, source: Arc<dyn PluginSource>) -> Arc<ExternalBackend> {
        Arc::new(ExternalBackend {
            config,
            source,
            running: Mutex::new(None),
            start_lock: tokio::sync::Mutex::new(()),
            special_paths: Mutex::new(SpecialPaths::default()),
        })
    }

    fn label(&self) -> String {
        format!("{:?} at {}", self.config.name, self.config.mount_point)
    }

    /// The live connection, if the plugin is running.
    fn live(&self) -> Option<Arc<Connection>> {
        let guard = self.running.lock().ok()?;
        let running = guard.as_ref()?;
        (!running.conn.is_closed()).then(|| running.conn.clone())
    }

    /// The plugin's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        let guard = self.running.lock().ok()?;
        let running = guard.as_ref()?;
        (!running.conn.is_closed()).then_some(running.pid).flatten()
    }

    /// The protocol version the running plugin announced.
    pub fn plugin_protocol(&self) -> Option<String> {
        self.live().map(|c| c.peer_protocol().to_string())
    }

    /// Start the plugin now unless it runs: resolve (verify) the command, spawn it and
    /// complete the handshake. The error is the reason as-is (a 400 for a bad catalog
    /// entry, a checksum mismatch, a refused handshake).
    pub async fn start(&self) -> Result<(), SdkError> {
        self.connection().await.map(|_| ())
    }

    /// [`Self::start`] in the background (errors are logged), when a runtime is
    /// available; used when a mount is loaded so special paths are known early.
    pub fn start_in_background(self: &Arc<Self>) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let me = Arc::downgrade(self);
        handle.spawn(async move {
            if let Some(me) = me.upgrade() {
                if let Err(e) = me.start().await {
                    tracing::warn!(plugin = %me.config.name, mount = %me.config.mount_point, error = %e, "external plugin did not start");
                }
            }
        });
    }

    /// Stop the plugin (kill it). The next call starts it again.
    pub fn stop(&self) {
        if let Ok(mut guard) = self.running.lock() {
            guard.take();
        }
    }

    async fn connection(&self) -> Result<Arc<Connection>, SdkError> {
        if let Some(conn) = self.live() {
            return Ok(conn);
        }
        let _starting = self.start_lock.lock().await;
        if let Some(conn) = self.live() {
            return Ok(conn);
        }
        // Kill whatever is left of the previous process before starting the next.
        self.stop();
        let source = self.source.clone();
        let command = tokio::task::spawn_blocking(move || source.resolve())
            .await
            .map_err(|e| SdkError::Internal(format!("resolving the plugin command: {e}")))??;
        let (running, special) = self.spawn(command).await?;
        if let Ok(mut sp) = self.special_paths.lock() {
            *sp = special;
        }
        let conn = running.conn.clone();
        if let Ok(mut guard) = self.running.lock() {
            *guard = Some(running);
        }
        Ok(conn)
    }

    async fn spawn(&self, command: PluginCommand) -> Result<(Running, SpecialPaths), SdkError> {
        let mut cmd = Command::new(&command.program);
        cmd.args(&command.args)
            .env_clear()
            .envs(command.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = command.program.parent().filter(|d| d.is_dir()) {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(|e| {
            SdkError::bad(format!(
                "starting plugin {} ({}): {e}",
                self.label(),
                command.program.display()
            ))
        })?;
        let pid = child.id();
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(SdkError::Internal("plugin pipes missing".into()));
        };
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(log_stderr(
                stderr,
                self.config.name.clone(),
                self.config.mount_point.clone(),
            ));
        }
        let opened = Connection::open(
            self.label(),
            stdout,
            stdin,
            Hello {
                mount_point: self.config.mount_point.clone(),
                options: self.config.options.clone(),
            },
            self.config.storage.clone(),
            self.config.timeouts.handshake,
        )
        .await;
        let (conn, reader) = match opened {
            Ok(v) => v,
            Err(e) => {
                let _ = child.start_kill();
                tokio::spawn(async move {
                    let _ = child.wait().await;
                });
                return Err(e);
            }
        };
        tracing::info!(plugin = %self.config.name, mount = %self.config.mount_point, pid = ?pid, protocol = %conn.peer_protocol(), "external plugin started");
        let special = conn.special_paths();
        let (stop_tx, stop_rx) = oneshot::channel();
        tokio::spawn(supervise(
            child,
            conn.clone(),
            reader,
            stop_rx,
            self.config.name.clone(),
            self.config.mount_point.clone(),
        ));
        Ok((
            Running {
                conn,
                pid,
                _stop: stop_tx,
            },
            special,
        ))
    }

    /// One call with the restart rule and the request timeout.
    async fn call<T: DeserializeOwned>(
        &self,
        make: &(dyn Fn(u64) -> HostMessage + Send + Sync),
    ) -> Result<T, SdkError> {
        let timeout = self.config.timeouts.request;
        let attempt = async {
            for _ in 0..2 {
                let conn = self.connection().await.map_err(|e| {
                    SdkError::Internal(format!("starting plugin {}: {e}", self.label()))
                })?;
                match conn.call(make).await {
                    Ok(value) => return Ok(value),
                    Err(CallError::Failed(e)) => return Err(e),
                    // The plugin was gone before it saw the call: start it and resend.
                    Err(CallError::Undelivered) => continue,
                }
            }
            Err(SdkError::Internal(format!(
                "plugin exited before the request could be delivered ({})",
                self.label()
            )))
        };
        let value = match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(SdkError::Coded {
                    status: 504,
                    message: format!("plugin {} did not answer within {timeout:?}", self.label()),
                })
            }
        };
        serde_json::from_value(value).map_err(|e| {
            SdkError::Internal(format!(
                "plugin {} sent a malformed answer: {e}",
                self.label()
            ))
        })
    }
}

impl Drop for ExternalBackend {
    fn drop(&mut self) {
        // Dropping `Running` tells the supervisor to kill the child.
        self.stop();
    }
}

/// Own the child: wait for it to exit, for its output to end, or for the stop signal;
/// then fail the calls in flight, kill and reap it.
async fn supervise(
    mut child: Child,
    conn: Arc<Connection>,
    mut reader: BoxFuture<String>,
    stop: oneshot::Receiver<()>,
    name: String,
    mount: String,
) {
    let reason = tokio::select! {
        reason = &mut reader => reason,
        status = child.wait() => {
            // Deliver answers the plugin wrote before it exited.
            let drained = tokio::time::timeout(Duration::from_millis(500), &mut reader).await;
            match (status, drained) {
                (Ok(status), _) => format!("the plugin process exited ({status})"),
                (Err(e), Ok(reason)) => format!("{reason} ({e})"),
                (Err(e), Err(_)) => format!("waiting for the plugin failed: {e}"),
            }
        }
        _ = stop => "stopped by the server".to_string(),
    };
    conn.close(&reason);
    let _ = child.start_kill();
    let status = child.wait().await;
    tracing::info!(plugin = %name, mount = %mount, reason = %reason, status = ?status.ok(), "external plugin ended");
}

/// Forward the child's stderr to the log at debug, line by line (lines capped at 4 KiB).
async fn log_stderr(stderr: tokio::process::ChildStderr, name: String, mount: String) {
    let mut lines = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match (&mut lines).take(4096).read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                tracing::debug!(target: "coffer::plugin", plugin = %name, mount = %mount, "{}", line.trim_end());
            }
        }
    }
}

#[async_trait]
impl Backend for ExternalBackend {
    async fn handle_request(&self, req: &mut Request) -> Result<Response, SdkError> {
        let request = WireRequest::from_sdk(req);
        let response: WireResponse = self
            .call(&move |id| HostMessage::Request {
                id,
                request: request.clone(),
            })
            .await?;
        response.into_sdk()
    }

    async fn existence_check(&self, req: &Request) -> Result<Option<bool>, SdkError> {
        #[derive(serde::Deserialize)]
        struct Exists {
            exists: Option<bool>,
        }
        let request = WireRequest::from_sdk(req);
        let answer: Exists = self
            .call(&move |id| HostMessage::ExistenceCheck {
                id,
                request: request.clone(),
            })
            .await?;
        Ok(answer.exists)
    }

    fn special_paths(&self) -> SpecialPaths {
        self.special_paths
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Secret
    }

    async fn periodic(&self) -> Result<(), SdkError> {
        let _: Value = self.call(&|id| HostMessage::Periodic { id }).await?;
        Ok(())
    }

    fn invalidate(&self, key: &str) {
        if let Some(conn) = self.live() {
            conn.notify(&HostMessage::Invalidate {
                key: key.to_string(),
            });
        }
    }

    async fn cleanup(&self) -> Result<(), SdkError> {
        let result: Result<Value, SdkError> = self.call(&|id| HostMessage::Cleanup { id }).await;
        self.stop();
        result.map(|_| ())
    }

    async fn renew(&self, req: &mut Request, internal: &Value) -> Result<Response, SdkError> {
        let request = WireRequest::from_sdk(req);
        let internal = internal.clone();
        let response: WireResponse = self
            .call(&move |id| HostMessage::Renew {
                id,
                request: request.clone(),
                internal: internal.clone(),
            })
            .await?;
        response.into_sdk()
    }

    async fn revoke(&self, req: &mut Request, internal: &Value) -> Result<(), SdkError> {
        let request = WireRequest::from_sdk(req);
        let internal = internal.clone();
        let _: Value = self
            .call(&move |id| HostMessage::Revoke {
                id,
                request: request.clone(),
                internal: internal.clone(),
            })
            .await?;
        Ok(())
    }
}
