//! The host's side of one plugin connection, over any pair of pipes: the handshake,
//! calls multiplexed by id, the plugin's storage calls served from the mount's own
//! `Storage` view, and what happens to in-flight calls when the plugin goes away.
//!
//! Frames are written by one writer task fed through a channel, so a call that is
//! cancelled (timeout) never leaves half a frame on the pipe. The reader loop is
//! returned as a future for the caller to drive (the process supervisor in
//! [`crate::host`]); when it ends, the caller closes the connection, which fails every
//! pending call with "plugin exited".

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coffer_sdk::{SdkError, SpecialPaths, Storage};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::sync::{mpsc, oneshot};

use crate::frame::{decode, encode, read_frame, write_frame, MAX_FRAME};
use crate::wire::{
    check_peer_version, encode_b64, from_result, into_result, protocol_version, HostMessage,
    PluginMessage, WireKind, WireStorageOp,
};

/// A boxed, sendable future.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Why a call did not produce the plugin's answer.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The frame never reached the plugin (it was already gone): safe to restart it and
    /// send the call again.
    Undelivered,
    /// The call reached the plugin and failed (its own error, or it exited meanwhile).
    Failed(SdkError),
}

struct Outgoing {
    frame: Vec<u8>,
    /// Told whether the frame was written to the pipe.
    written: Option<oneshot::Sender<bool>>,
}

type Reply = oneshot::Sender<Result<Value, SdkError>>;

#[derive(Default)]
struct State {
    pending: HashMap<u64, Reply>,
    closed: Option<String>,
}

/// One live (or dead) connection to a plugin.
pub(crate) struct Connection {
    label: String,
    out: mpsc::Sender<Outgoing>,
    state: Mutex<State>,
    next_id: AtomicU64,
    special_paths: SpecialPaths,
    peer_protocol: String,
}

/// What the host tells the plugin in `hello`.
pub(crate) struct Hello {
    pub mount_point: String,
    pub options: BTreeMap<String, String>,
}

async fn writer_loop<W: AsyncWrite + Unpin>(mut writer: W, mut rx: mpsc::Receiver<Outgoing>) {
    while let Some(out) = rx.recv().await {
        let ok = write_frame(&mut writer, &out.frame).await.is_ok();
        if let Some(written) = out.written {
            let _ = written.send(ok);
        }
        if !ok {
            // Dropping the receiver fails every queued and later send: undelivered.
            return;
        }
    }
}

async fn send_acked(out: &mpsc::Sender<Outgoing>, frame: Vec<u8>) -> bool {
    let (tx, rx) = oneshot::channel();
    if out
        .send(Outgoing {
            frame,
            written: Some(tx),
        })
        .await
        .is_err()
    {
        return false;
    }
    rx.await.unwrap_or(false)
}

impl Connection {
    /// Say hello over fresh pipes and check the answer (version, kind). Returns the
    /// connection and its reader loop, which the caller must drive and, when it returns
    /// (with the reason), follow with [`Connection::close`].
    pub(crate) async fn open<R, W>(
        label: String,
        reader: R,
        writer: W,
        hello: Hello,
        storage: Arc<dyn Storage>,
        timeout: Duration,
    ) -> Result<(Arc<Connection>, BoxFuture<String>), SdkError>
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let (out, rx) = mpsc::channel(256);
        tokio::spawn(writer_loop(writer, rx));
        let mut reader = BufReader::new(reader);
        let handshake = async {
            let frame = encode(&HostMessage::Hello {
                protocol: protocol_version(),
                mount_point: hello.mount_point,
                options: hello.options,
            })
            .map_err(|e| e.to_string())?;
            if !send_acked(&out, frame).await {
                return Err("the plugin exited before the handshake".to_string());
            }
            let frame = read_frame(&mut reader, MAX_FRAME)
                .await
                .map_err(|e| format!("handshake: {e}"))?
                .ok_or_else(|| "the plugin exited before answering the handshake".to_string())?;
            match decode::<PluginMessage>(&frame).map_err(|e| format!("handshake: {e}"))? {
                PluginMessage::Hello {
                    protocol,
                    kind,
                    special_paths,
                } => {
                    check_peer_version(&protocol)?;
                    if kind != WireKind::Secret {
                        return Err(
                            "the plugin is an auth method; only secret engines can be external"
                                .to_string(),
                        );
                    }
                    Ok((protocol, special_paths))
                }
                PluginMessage::Refused { protocol, message } => Err(format!(
                    "the plugin refused to start (it speaks protocol {protocol}): {message}"
                )),
                _ => Err("the plugin sent a message before answering the handshake".to_string()),
            }
        };
        let (peer_protocol, special_paths) = match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok(v)) => v,
            Ok(Err(msg)) => return Err(SdkError::bad(format!("plugin {label}: {msg}"))),
            Err(_) => {
                return Err(SdkError::bad(format!(
                    "plugin {label} did not complete the handshake within {timeout:?}"
                )))
            }
        };
        let conn = Arc::new(Connection {
            label,
            out,
            state: Mutex::new(State::default()),
            next_id: AtomicU64::new(1),
            special_paths: special_paths.into(),
            peer_protocol,
        });
        let reader_loop = Box::pin(read_loop(conn.clone(), reader, storage));
        Ok((conn, reader_loop))
    }

    /// The plugin's special paths (from its `hello`).
    pub(crate) fn special_paths(&self) -> SpecialPaths {
        self.special_paths.clone()
    }

    /// The protocol version the plugin announced.
    pub(crate) fn peer_protocol(&self) -> &str {
        &self.peer_protocol
    }

    /// Whether the connection is closed (the plugin is gone or broke the protocol).
    pub(crate) fn is_closed(&self) -> bool {
        self.state
            .lock()
            .map(|s| s.closed.is_some())
            .unwrap_or(true)
    }

    fn exited(&self, reason: &str) -> SdkError {
        SdkError::Internal(format!(
            "plugin exited while handling the request ({}: {reason})",
            self.label
        ))
    }

    /// Mark the connection closed and fail every pending call. The first reason wins.
    pub(crate) fn close(&self, reason: &str) {
        let pending = match self.state.lock() {
            Ok(mut s) => {
                if s.closed.is_none() {
                    s.closed = Some(reason.to_string());
                }
                std::mem::take(&mut s.pending)
            }
            Err(_) => return,
        };
        let reason = self.close_reason().unwrap_or_else(|| reason.to_string());
        for (_, reply) in pending {
            let _ = reply.send(Err(self.exited(&reason)));
        }
    }

    fn close_reason(&self) -> Option<String> {
        self.state.lock().ok().and_then(|s| s.closed.clone())
    }

    fn complete(&self, id: u64, result: Result<Value, SdkError>) {
        let reply = self
            .state
            .lock()
            .ok()
            .and_then(|mut s| s.pending.remove(&id));
        // No entry: the call timed out and nobody waits any more.
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
    }

    fn forget(&self, id: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.pending.remove(&id);
        }
    }

    /// Send a call built from its id and wait for the answer (no timeout here: the
    /// caller bounds the whole call).
    pub(crate) async fn call(
        &self,
        make: &(dyn Fn(u64) -> HostMessage + Send + Sync),
    ) -> Result<Value, CallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut s = self
                .state
                .lock()
                .map_err(|_| CallError::Failed(SdkError::Internal("poisoned".into())))?;
            if s.closed.is_some() {
                return Err(CallError::Undelivered);
            }
            s.pending.insert(id, tx);
        }
        let _guard = Forget { conn: self, id };
        let frame = encode(&make(id))
            .map_err(|e| CallError::Failed(SdkError::Internal(format!("encoding: {e}"))))?;
        if !send_acked(&self.out, frame).await {
            self.close("writing to the plugin failed");
            return Err(CallError::Undelivered);
        }
        match rx.await {
            Ok(result) => result.map_err(CallError::Failed),
            Err(_) => Err(CallError::Failed(
                self.exited(
                    &self
                        .close_reason()
                        .unwrap_or_else(|| "connection dropped".into()),
                ),
            )),
        }
    }

    /// Send a message that has no answer without waiting (invalidations). Dropped when
    /// the queue is full or the plugin is gone: a fresh plugin has no stale cache.
    pub(crate) fn notify(&self, message: &HostMessage) {
        if self.is_closed() {
            return;
        }
        if let Ok(frame) = encode(message) {
            let _ = self.out.try_send(Outgoing {
                frame,
                written: None,
            });
        }
    }

    async fn send(&self, message: &HostMessage) {
        if let Ok(frame) = encode(message) {
            let _ = self
                .out
                .send(Outgoing {
                    frame,
                    written: None,
                })
                .await;
        }
    }
}

/// Removes a pending entry when its call is dropped (timeout) or done.
struct Forget<'a> {
    conn: &'a Connection,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.conn.forget(self.id);
    }
}

/// Serve one storage call of the plugin from the mount's view and answer it.
fn storage_call<F>(conn: &Arc<Connection>, id: u64, work: F)
where
    F: Future<Output = Result<Value, SdkError>> + Send + 'static,
{
    let conn = conn.clone();
    tokio::spawn(async move {
        let (ok, error) = from_result(work.await);
        conn.send(&HostMessage::StorageResult { id, ok, error })
            .await;
    });
}

/// Read the plugin's frames until it goes away; returns why.
async fn read_loop<R>(
    conn: Arc<Connection>,
    mut reader: BufReader<R>,
    storage: Arc<dyn Storage>,
) -> String
where
    R: AsyncRead + Send + Unpin + 'static,
{
    loop {
        let frame = match read_frame(&mut reader, MAX_FRAME).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return "the plugin closed its output".into(),
            Err(e) => return format!("protocol error: {e}"),
        };
        let message = match decode::<PluginMessage>(&frame) {
            Ok(m) => m,
            Err(e) => return format!("protocol error: {e}"),
        };
        match message {
            PluginMessage::Response { id, ok, error } => conn.complete(id, into_result(ok, error)),
            PluginMessage::StorageGet { id, key } => {
                let storage = storage.clone();
                storage_call(&conn, id, async move {
                    let value = storage.get(&key).await?;
                    Ok(json!({ "value": value.map(|v| encode_b64(&v)) }))
                });
            }
            PluginMessage::StorageList { id, prefix } => {
                let storage = storage.clone();
                storage_call(&conn, id, async move {
                    Ok(json!({ "keys": storage.list(&prefix).await? }))
                });
            }
            PluginMessage::StorageCommit { id, ops } => {
                let storage = storage.clone();
                storage_call(&conn, id, async move {
                    let ops = ops
                        .into_iter()
                        .map(WireStorageOp::into_sdk)
                        .collect::<Result<Vec<_>, _>>()?;
                    storage.commit(ops).await?;
                    Ok(json!({}))
                });
            }
            PluginMessage::Hello { .. } | PluginMessage::Refused { .. } => {
                return "protocol error: a second hello after the handshake".into()
            }
        }
    }
}
