//! Cluster RPCs over HTTP: the client side (`RaftNetworkFactory` / `RaftNetwork`) and the
//! server side ([`configure`], for actix-web).
//!
//! Requests and responses are rmp-serde (`application/msgpack`): JSON would write every
//! byte of a snapshot chunk as a number. A response body is the encoded
//! `Result<response, RaftError>` of the call on the target node. Snapshots travel in
//! openraft's chunks (one `POST` per chunk). The client never builds TLS itself: the
//! composition root installs a `reqwest::Client` configured for the cluster's mutual TLS
//! in the shared [`Transport`] (possibly later than start-up: a joining node gets its
//! certificate only once it is admitted), and the `tls` flag picks the `https://` scheme.
//!
//! Endpoints (all `POST`): [`APPEND_PATH`], [`VOTE_PATH`], [`SNAPSHOT_PATH`].
//!
//! **Advertisement.** Every request and every response carries the sender's Raft id, the
//! highest log-entry format it understands and whether it is sealed
//! ([`NODE_HEADER`], [`FORMAT_HEADER`], [`SEALED_HEADER`]). Each side records what it hears
//! in the [`Transport`]'s peer table with the time of contact, so the leader always knows
//! (from its heartbeats) which formats its voters understand, which of them are sealed
//! and when it last heard from each.
//!
//! **Test-only partitions.** When the environment variable [`DROP_FILE_ENV`] names a file,
//! every outgoing RPC (and every request forwarded through [`Transport::dropped`]) to a
//! cluster address listed in that file (one `host:port` per line) fails as unreachable,
//! like TiKV's `transport_simulate` filters. The file is re-read at most every 50 ms, so a
//! test partitions and heals a running node by rewriting it. Production never sets it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use std::time::Instant;

use actix_web::http::header::ContentType;
use actix_web::{web, HttpRequest, HttpResponse};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::RPCTypes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::types::{Node, Raft, TypeConfig};

/// Append-entries (and heartbeat) endpoint.
pub const APPEND_PATH: &str = "/raft/v1/append";
/// Request-vote endpoint.
pub const VOTE_PATH: &str = "/raft/v1/vote";
/// Install-snapshot (one chunk per request) endpoint.
pub const SNAPSHOT_PATH: &str = "/raft/v1/snapshot";
/// Largest request body the endpoints accept (snapshot chunks are 3 MiB by default).
pub const MAX_RPC_BODY: usize = 64 * 1024 * 1024;
/// The media type of every request and response body.
pub const MSGPACK: &str = "application/msgpack";
/// Header: the sender's Raft id.
pub const NODE_HEADER: &str = "x-coffer-node";
/// Header: the highest log-entry format the sender understands.
pub const FORMAT_HEADER: &str = "x-coffer-max-format";
/// Header: `true` when the sender is sealed.
pub const SEALED_HEADER: &str = "x-coffer-sealed";
/// Test-only: the environment variable naming the drop-list file (see the module docs).
pub const DROP_FILE_ENV: &str = "COFFER_TEST_DROP_FILE";

/// What a peer last told us about itself.
#[derive(Clone, Copy, Debug)]
pub struct PeerInfo {
    /// The highest log-entry format it understands.
    pub max_format: u32,
    /// Whether it is sealed.
    pub sealed: bool,
    /// When we last heard from it (a request from it or its answer to ours).
    pub last_contact: Instant,
}

/// Test-only network filter: cluster addresses listed in a file are unreachable.
struct DropFilter {
    path: PathBuf,
    cache: Mutex<(Option<Instant>, Vec<String>)>,
}

impl DropFilter {
    fn dropped(&self, cluster_addr: &str) -> bool {
        let target = host_port(cluster_addr);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let stale = cache
            .0
            .is_none_or(|at| at.elapsed() > std::time::Duration::from_millis(50));
        if stale {
            let text = std::fs::read_to_string(&self.path).unwrap_or_default();
            cache.1 = text
                .lines()
                .map(|l| host_port(l.trim()).to_string())
                .filter(|l| !l.is_empty())
                .collect();
            cache.0 = Some(Instant::now());
        }
        cache.1.iter().any(|d| d == target)
    }
}

fn host_port(addr: &str) -> &str {
    addr.strip_prefix("https://")
        .or_else(|| addr.strip_prefix("http://"))
        .unwrap_or(addr)
        .trim_end_matches('/')
}

/// The cluster transport shared by the RPC client, the RPC server and the node: the
/// (mutual-TLS) HTTP client, this node's advertisement and what peers advertised.
pub struct Transport {
    node_id: u64,
    tls: bool,
    max_format: u32,
    client: RwLock<Option<reqwest::Client>>,
    sealed: AtomicBool,
    peers: Mutex<HashMap<u64, PeerInfo>>,
    filter: Option<DropFilter>,
}

impl Transport {
    /// A transport for node `node_id`; `client` may come later ([`Transport::set_client`]).
    /// Reads [`DROP_FILE_ENV`] once.
    pub fn new(
        node_id: u64,
        tls: bool,
        client: Option<reqwest::Client>,
        max_format: u32,
    ) -> Arc<Transport> {
        let filter = std::env::var_os(DROP_FILE_ENV).map(|p| {
            tracing::warn!(
                file = %PathBuf::from(&p).display(),
                "TEST ONLY: cluster RPCs consult a drop list (network partition simulation)"
            );
            DropFilter {
                path: PathBuf::from(p),
                cache: Mutex::new((None, Vec::new())),
            }
        });
        Arc::new(Transport {
            node_id,
            tls,
            max_format,
            client: RwLock::new(client),
            sealed: AtomicBool::new(false),
            peers: Mutex::new(HashMap::new()),
            filter,
        })
    }

    /// Install (or replace) the client used for cluster RPCs.
    pub fn set_client(&self, client: reqwest::Client) {
        *self.client.write().unwrap_or_else(|e| e.into_inner()) = Some(client);
    }

    /// The client for cluster RPCs, once credentials exist.
    pub fn client(&self) -> Option<reqwest::Client> {
        self.client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether peers are reached over `https://`.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// The highest log-entry format this node understands (and advertises).
    pub fn max_format(&self) -> u32 {
        self.max_format
    }

    /// Advertise whether this node is sealed.
    pub fn set_sealed(&self, sealed: bool) {
        self.sealed.store(sealed, Ordering::SeqCst);
    }

    /// Whether this node advertises itself as sealed.
    pub fn sealed(&self) -> bool {
        self.sealed.load(Ordering::SeqCst)
    }

    /// What `id` last advertised.
    pub fn peer(&self, id: u64) -> Option<PeerInfo> {
        self.peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .copied()
    }

    /// Test-only partitions: whether traffic to `cluster_addr` is dropped.
    pub fn dropped(&self, cluster_addr: &str) -> bool {
        self.filter
            .as_ref()
            .is_some_and(|f| f.dropped(cluster_addr))
    }

    /// The advertisement headers of this node.
    pub fn headers(&self) -> [(&'static str, String); 3] {
        [
            (NODE_HEADER, self.node_id.to_string()),
            (FORMAT_HEADER, self.max_format.to_string()),
            (SEALED_HEADER, self.sealed().to_string()),
        ]
    }

    /// Record a peer's advertisement from header values.
    pub fn record(&self, node: Option<&str>, format: Option<&str>, sealed: Option<&str>) {
        let (Some(id), Some(max_format)) = (
            node.and_then(|v| v.parse::<u64>().ok()),
            format.and_then(|v| v.parse::<u32>().ok()),
        ) else {
            return;
        };
        if id == self.node_id {
            return;
        }
        let info = PeerInfo {
            max_format,
            sealed: sealed == Some("true"),
            last_contact: Instant::now(),
        };
        self.peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, info);
    }
}

/// A failure described by text (a status code, an undecodable body).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct RpcFailure(String);

/// Builds one [`Network`] per target node.
#[derive(Clone)]
pub struct NetworkFactory {
    transport: Arc<Transport>,
}

impl NetworkFactory {
    /// RPC clients over `transport`.
    pub fn new(transport: Arc<Transport>) -> NetworkFactory {
        NetworkFactory { transport }
    }
}

/// `scheme://host:port` for a cluster address that may or may not carry a scheme.
pub fn base_url(cluster_addr: &str, tls: bool) -> String {
    let host = cluster_addr
        .strip_prefix("https://")
        .or_else(|| cluster_addr.strip_prefix("http://"))
        .unwrap_or(cluster_addr)
        .trim_end_matches('/');
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{host}")
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: u64, node: &Node) -> Network {
        Network {
            target,
            cluster_addr: node.cluster_addr.clone(),
            base: base_url(&node.cluster_addr, self.transport.tls),
            transport: self.transport.clone(),
        }
    }
}

/// The RPC client for one target node.
pub struct Network {
    target: u64,
    cluster_addr: String,
    base: String,
    transport: Arc<Transport>,
}

impl Network {
    fn timeout<E: std::error::Error>(
        &self,
        action: RPCTypes,
        timeout: Duration,
    ) -> RPCError<u64, Node, E> {
        RPCError::Timeout(Timeout {
            action,
            id: self.transport.node_id,
            target: self.target,
            timeout,
        })
    }

    async fn call<Req, Resp, E>(
        &self,
        action: RPCTypes,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, RPCError<u64, Node, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let Some(client) = self.transport.client() else {
            return Err(RPCError::Unreachable(Unreachable::new(&RpcFailure(
                "this node has no cluster credentials yet".into(),
            ))));
        };
        if self.transport.dropped(&self.cluster_addr) {
            return Err(RPCError::Unreachable(Unreachable::new(&RpcFailure(
                format!(
                    "{} is dropped by the test network filter",
                    self.cluster_addr
                ),
            ))));
        }
        let body =
            rmp_serde::to_vec_named(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let url = format!("{}{path}", self.base);
        let mut request = client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, MSGPACK)
            .timeout(timeout);
        for (name, value) in self.transport.headers() {
            request = request.header(name, value);
        }
        let res = match request.body(body).send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Err(self.timeout(action, timeout)),
            Err(e) if e.is_connect() => return Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e) => return Err(RPCError::Network(NetworkError::new(&e))),
        };
        let status = res.status();
        let header = |name: &str| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (node, format, sealed) = (
            header(NODE_HEADER),
            header(FORMAT_HEADER),
            header(SEALED_HEADER),
        );
        let bytes = match res.bytes().await {
            Ok(b) => b,
            Err(e) if e.is_timeout() => return Err(self.timeout(action, timeout)),
            Err(e) => return Err(RPCError::Network(NetworkError::new(&e))),
        };
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
            return Err(RPCError::Network(NetworkError::new(&RpcFailure(format!(
                "{url} answered {status}: {text}"
            )))));
        }
        self.transport
            .record(node.as_deref(), format.as_deref(), sealed.as_deref());
        let out: Result<Resp, E> = rmp_serde::from_slice(&bytes).map_err(|e| {
            RPCError::Network(NetworkError::new(&RpcFailure(format!(
                "undecodable response from {url}: {e}"
            ))))
        })?;
        out.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Network {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, Node, RaftError<u64>>> {
        self.call(
            RPCTypes::AppendEntries,
            APPEND_PATH,
            &rpc,
            option.hard_ttl(),
        )
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, Node, RaftError<u64, InstallSnapshotError>>,
    > {
        self.call(
            RPCTypes::InstallSnapshot,
            SNAPSHOT_PATH,
            &rpc,
            option.hard_ttl(),
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, Node, RaftError<u64>>> {
        self.call(RPCTypes::Vote, VOTE_PATH, &rpc, option.hard_ttl())
            .await
    }
}

/// Serve the three Raft RPC endpoints for `raft` (use with `App::configure`):
///
/// ```no_run
/// # fn serve(node: std::sync::Arc<coffer_raft::RaftNode>) -> std::io::Result<()> {
/// let raft = node.raft().clone();
/// let transport = node.transport().clone();
/// let server = actix_web::HttpServer::new(move || {
///     let (raft, transport) = (raft.clone(), transport.clone());
///     actix_web::App::new().configure(move |cfg| coffer_raft::configure(cfg, raft, transport))
/// })
/// .bind("127.0.0.1:8201")?
/// .run();
/// tokio::spawn(server);
/// # Ok(())
/// # }
/// ```
///
/// The handles and the raised body limit are scoped to these endpoints only.
pub fn configure(cfg: &mut web::ServiceConfig, raft: Raft, transport: Arc<Transport>) {
    cfg.service(
        web::scope(SCOPE)
            .app_data(web::Data::new(raft))
            .app_data(web::Data::from(transport))
            .app_data(web::PayloadConfig::new(MAX_RPC_BODY))
            .route(tail(APPEND_PATH), web::post().to(append))
            .route(tail(VOTE_PATH), web::post().to(vote))
            .route(tail(SNAPSHOT_PATH), web::post().to(snapshot)),
    );
}

const SCOPE: &str = "/raft/v1";

fn tail(path: &'static str) -> &'static str {
    path.strip_prefix(SCOPE).unwrap_or(path)
}

fn decode_request<T: DeserializeOwned>(body: &[u8]) -> Result<T, HttpResponse> {
    rmp_serde::from_slice(body)
        .map_err(|e| HttpResponse::BadRequest().body(format!("undecodable raft request: {e}")))
}

/// Record the caller's advertisement.
fn heard(req: &HttpRequest, transport: &Transport) {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    transport.record(
        header(NODE_HEADER),
        header(FORMAT_HEADER),
        header(SEALED_HEADER),
    );
}

fn encode_response<T: Serialize>(v: &T, transport: &Transport) -> HttpResponse {
    match rmp_serde::to_vec_named(v) {
        Ok(buf) => {
            let mut resp = HttpResponse::Ok();
            resp.content_type(MSGPACK);
            for (name, value) in transport.headers() {
                resp.insert_header((name, value));
            }
            resp.body(buf)
        }
        Err(e) => HttpResponse::InternalServerError()
            .insert_header(ContentType::plaintext())
            .body(format!("cannot encode raft response: {e}")),
    }
}

async fn append(
    req: HttpRequest,
    raft: web::Data<Raft>,
    transport: web::Data<Transport>,
    body: web::Bytes,
) -> HttpResponse {
    heard(&req, &transport);
    let rpc: AppendEntriesRequest<TypeConfig> = match decode_request(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    encode_response(&raft.append_entries(rpc).await, &transport)
}

async fn vote(
    req: HttpRequest,
    raft: web::Data<Raft>,
    transport: web::Data<Transport>,
    body: web::Bytes,
) -> HttpResponse {
    heard(&req, &transport);
    let rpc: VoteRequest<u64> = match decode_request(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    encode_response(&raft.vote(rpc).await, &transport)
}

async fn snapshot(
    req: HttpRequest,
    raft: web::Data<Raft>,
    transport: web::Data<Transport>,
    body: web::Bytes,
) -> HttpResponse {
    heard(&req, &transport);
    let rpc: InstallSnapshotRequest<TypeConfig> = match decode_request(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    encode_response(&raft.install_snapshot(rpc).await, &transport)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_uses_the_flag_scheme() {
        assert_eq!(base_url("10.0.0.1:8201", true), "https://10.0.0.1:8201");
        assert_eq!(base_url("10.0.0.1:8201", false), "http://10.0.0.1:8201");
        assert_eq!(
            base_url("https://node-1:8201/", false),
            "http://node-1:8201"
        );
        assert_eq!(base_url("http://node-1:8201", true), "https://node-1:8201");
    }

    #[test]
    fn peers_are_recorded_from_their_headers_but_not_ourselves() {
        let t = Transport::new(1, true, None, 2);
        t.record(Some("2"), Some("1"), Some("true"));
        t.record(Some("1"), Some("9"), Some("false"));
        t.record(Some("x"), Some("1"), None);
        let p = t.peer(2).expect("peer 2");
        assert_eq!((p.max_format, p.sealed), (1, true));
        assert!(t.peer(1).is_none());
        t.set_sealed(true);
        assert_eq!(
            t.headers().map(|(_, v)| v),
            ["1".to_string(), "2".to_string(), "true".to_string()]
        );
    }

    #[test]
    fn the_drop_filter_reads_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("drop");
        std::fs::write(&path, "127.0.0.1:9\n\nhttps://10.0.0.2:8201/\n").expect("write");
        let f = DropFilter {
            path,
            cache: Mutex::new((None, Vec::new())),
        };
        assert!(f.dropped("127.0.0.1:9"));
        assert!(f.dropped("https://127.0.0.1:9"));
        assert!(f.dropped("10.0.0.2:8201"));
        assert!(!f.dropped("127.0.0.1:10"));
    }
}
