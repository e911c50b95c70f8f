//! The plugin's side: [`serve`] runs an sdk `Backend` as an external plugin over
//! stdin/stdout. The backend is written exactly like an in-process one; its `Storage`
//! (in `BackendConfig` for [`serve_factory`], and in every `Request`) is a proxy that
//! sends the calls to the server, which runs them on the mount's own view.
//!
//! A plugin must not write to stdout (that is the protocol); log to stderr, which the
//! server copies to its log at debug level — so never print secret values there either.
//! The plugin exits when the server closes its stdin.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use coffer_sdk::{Backend, BackendConfig, BackendKind, Factory, SdkError, Storage, StorageOp};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::sync::{mpsc, oneshot};

use crate::frame::{decode, encode, read_frame, write_frame, FrameError, MAX_FRAME};
use crate::wire::{
    check_peer_version, decode_b64, from_result, into_result, protocol_version, HostMessage,
    PluginMessage, WireResponse, WireStorageOp,
};

/// Why a plugin stopped serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginError {
    /// The pipes failed, or a runtime could not be built.
    Io(String),
    /// The server sent something that is not protocol 1.x.
    Protocol(String),
    /// The plugin refused the server (version, or its factory failed).
    Refused(String),
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginError::Io(e) => write!(f, "plugin i/o error: {e}"),
            PluginError::Protocol(e) => write!(f, "plugin protocol error: {e}"),
            PluginError::Refused(e) => write!(f, "plugin refused to serve: {e}"),
        }
    }
}

impl std::error::Error for PluginError {}

impl From<FrameError> for PluginError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Io(e) => PluginError::Io(e),
            other => PluginError::Protocol(other.to_string()),
        }
    }
}

/// How the plugin gets its backend.
pub enum Init {
    /// A ready backend (it sees its storage through each request).
    Backend(Arc<dyn Backend>),
    /// A factory, called after the handshake with the mount point, the mount's options
    /// and the proxied storage (like an in-process plugin's factory).
    Factory(Factory),
}

/// Serve `backend` over stdin/stdout until the server closes stdin. Blocks; builds its
/// own tokio runtime. Call it from `main`.
pub fn serve(backend: Arc<dyn Backend>) -> Result<(), PluginError> {
    block_on_stdio(Init::Backend(backend))
}

/// Like [`serve`], with a factory that gets the mount's `BackendConfig`.
pub fn serve_factory(factory: Factory) -> Result<(), PluginError> {
    block_on_stdio(Init::Factory(factory))
}

fn block_on_stdio(init: Init) -> Result<(), PluginError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| PluginError::Io(e.to_string()))?;
    let result = runtime.block_on(run(tokio::io::stdin(), tokio::io::stdout(), init));
    // Handlers still running belong to a server that is gone; do not wait for them.
    runtime.shutdown_background();
    result
}

type Reply = oneshot::Sender<Result<Value, SdkError>>;

/// The plugin's `Storage`: every call is a message to the server.
struct ProxyStorage {
    out: mpsc::Sender<Vec<u8>>,
    pending: Mutex<HashMap<u64, Reply>>,
    next_id: AtomicU64,
}

impl ProxyStorage {
    async fn call(&self, make: impl FnOnce(u64) -> PluginMessage) -> Result<Value, SdkError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .map_err(|_| SdkError::Internal("poisoned".into()))?
            .insert(id, tx);
        let frame = encode(&make(id)).map_err(|e| SdkError::Internal(format!("encoding: {e}")))?;
        if self.out.send(frame).await.is_err() {
            self.forget(id);
            return Err(SdkError::Storage(
                "the connection to coffer is closed".into(),
            ));
        }
        rx.await.unwrap_or_else(|_| {
            Err(SdkError::Storage(
                "the connection to coffer is closed".into(),
            ))
        })
    }

    fn forget(&self, id: u64) {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(&id);
        }
    }

    fn complete(&self, id: u64, result: Result<Value, SdkError>) {
        let reply = self.pending.lock().ok().and_then(|mut p| p.remove(&id));
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
    }

    fn close(&self) {
        if let Ok(mut p) = self.pending.lock() {
            p.clear();
        }
    }
}

fn malformed(e: serde_json::Error) -> SdkError {
    SdkError::Storage(format!("malformed storage answer from coffer: {e}"))
}

#[async_trait]
impl Storage for ProxyStorage {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, SdkError> {
        #[derive(serde::Deserialize)]
        struct Answer {
            value: Option<String>,
        }
        let v = self
            .call(|id| PluginMessage::StorageGet {
                id,
                key: key.to_string(),
            })
            .await?;
        let answer: Answer = serde_json::from_value(v).map_err(malformed)?;
        answer.value.map(|b| decode_b64(&b)).transpose()
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, SdkError> {
        #[derive(serde::Deserialize)]
        struct Answer {
            keys: Vec<String>,
        }
        let v = self
            .call(|id| PluginMessage::StorageList {
                id,
                prefix: prefix.to_string(),
            })
            .await?;
        let answer: Answer = serde_json::from_value(v).map_err(malformed)?;
        Ok(answer.keys)
    }

    async fn commit(&self, ops: Vec<StorageOp>) -> Result<(), SdkError> {
        let ops: Vec<WireStorageOp> = ops.into_iter().map(WireStorageOp::from_sdk).collect();
        self.call(|id| PluginMessage::StorageCommit { id, ops })
            .await
            .map(|_| ())
    }
}

async fn writer_loop<W: AsyncWrite + Unpin>(mut writer: W, mut rx: mpsc::Receiver<Vec<u8>>) {
    while let Some(frame) = rx.recv().await {
        if write_frame(&mut writer, &frame).await.is_err() {
            return;
        }
    }
}

async fn send(out: &mpsc::Sender<Vec<u8>>, message: &PluginMessage) {
    if let Ok(frame) = encode(message) {
        let _ = out.send(frame).await;
    }
}

/// Run one call on a task of its own and answer it; a panic in the backend becomes a
/// 500 instead of a call the server waits on until its timeout.
fn answer<F>(out: &mpsc::Sender<Vec<u8>>, id: u64, work: F)
where
    F: std::future::Future<Output = Result<Value, SdkError>> + Send + 'static,
{
    let out = out.clone();
    tokio::spawn(async move {
        let result = match tokio::spawn(work).await {
            Ok(result) => result,
            Err(_) => Err(SdkError::Internal(
                "the plugin panicked while handling the call".into(),
            )),
        };
        let (ok, error) = from_result(result);
        send(&out, &PluginMessage::Response { id, ok, error }).await;
    });
}

fn response_value(resp: coffer_sdk::Response) -> Result<Value, SdkError> {
    serde_json::to_value(WireResponse::from_sdk(resp)?).map_err(SdkError::from)
}

/// Serve over any pair of pipes (stdin/stdout in [`serve`]; in-memory pipes in tests).
/// Returns when the server closes `reader`.
pub async fn run<R, W>(reader: R, writer: W, init: Init) -> Result<(), PluginError>
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let mut reader = BufReader::new(reader);
    let (out, rx) = mpsc::channel::<Vec<u8>>(256);
    let writer_task = tokio::spawn(writer_loop(writer, rx));
    let result = serve_loop(&mut reader, &out, init).await;
    // Let queued frames (a refusal, last answers) reach the server. The backend may
    // still hold the proxy storage (and so a sender), so do not wait for the channel to
    // close: a short grace period is enough to flush what is queued.
    drop(out);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), writer_task).await;
    result
}

async fn refuse(out: &mpsc::Sender<Vec<u8>>, message: String) -> PluginError {
    send(
        out,
        &PluginMessage::Refused {
            protocol: protocol_version(),
            message: message.clone(),
        },
    )
    .await;
    PluginError::Refused(message)
}

async fn serve_loop<R>(
    reader: &mut BufReader<R>,
    out: &mpsc::Sender<Vec<u8>>,
    init: Init,
) -> Result<(), PluginError>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let first = read_frame(reader, MAX_FRAME).await?.ok_or_else(|| {
        PluginError::Protocol("the server closed the connection before hello".into())
    })?;
    let (protocol, mount_point, options) = match decode::<HostMessage>(&first)? {
        HostMessage::Hello {
            protocol,
            mount_point,
            options,
        } => (protocol, mount_point, options),
        _ => return Err(refuse(out, "expected hello first".into()).await),
    };
    if let Err(e) = check_peer_version(&protocol) {
        return Err(refuse(out, e).await);
    }
    let proxy = Arc::new(ProxyStorage {
        out: out.clone(),
        pending: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
    });
    let storage: Arc<dyn Storage> = proxy.clone();
    let backend = match init {
        Init::Backend(b) => b,
        Init::Factory(factory) => match factory(BackendConfig {
            mount_point,
            options,
            storage: storage.clone(),
        }) {
            Ok(b) => b,
            Err(e) => return Err(refuse(out, e.to_string()).await),
        },
    };
    if backend.kind() != BackendKind::Secret {
        return Err(refuse(out, "only secret engines can be external plugins".into()).await);
    }
    send(
        out,
        &PluginMessage::Hello {
            protocol: protocol_version(),
            kind: backend.kind().into(),
            special_paths: backend.special_paths().into(),
        },
    )
    .await;
    let result = loop {
        let frame = match read_frame(reader, MAX_FRAME).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e.into()),
        };
        let message = match decode::<HostMessage>(&frame) {
            Ok(m) => m,
            Err(e) => break Err(e.into()),
        };
        match message {
            HostMessage::Request { id, request } => {
                let (backend, storage) = (backend.clone(), storage.clone());
                answer(out, id, async move {
                    let mut req = request.into_sdk(storage);
                    response_value(backend.handle_request(&mut req).await?)
                });
            }
            HostMessage::ExistenceCheck { id, request } => {
                let (backend, storage) = (backend.clone(), storage.clone());
                answer(out, id, async move {
                    let req = request.into_sdk(storage);
                    Ok(json!({ "exists": backend.existence_check(&req).await? }))
                });
            }
            HostMessage::Renew {
                id,
                request,
                internal,
            } => {
                let (backend, storage) = (backend.clone(), storage.clone());
                answer(out, id, async move {
                    let mut req = request.into_sdk(storage);
                    response_value(backend.renew(&mut req, &internal).await?)
                });
            }
            HostMessage::Revoke {
                id,
                request,
                internal,
            } => {
                let (backend, storage) = (backend.clone(), storage.clone());
                answer(out, id, async move {
                    let mut req = request.into_sdk(storage);
                    backend.revoke(&mut req, &internal).await?;
                    Ok(json!({}))
                });
            }
            HostMessage::Periodic { id } => {
                let backend = backend.clone();
                answer(out, id, async move {
                    backend.periodic().await?;
                    Ok(json!({}))
                });
            }
            HostMessage::Cleanup { id } => {
                let backend = backend.clone();
                answer(out, id, async move {
                    backend.cleanup().await?;
                    Ok(json!({}))
                });
            }
            HostMessage::Invalidate { key } => backend.invalidate(&key),
            HostMessage::StorageResult { id, ok, error } => {
                proxy.complete(id, into_result(ok, error))
            }
            HostMessage::Hello { .. } => {
                break Err(PluginError::Protocol(
                    "a second hello after the handshake".into(),
                ))
            }
        }
    };
    proxy.close();
    result
}
