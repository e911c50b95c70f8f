//! Cluster RPCs over HTTP: the client side (`RaftNetworkFactory` / `RaftNetwork`) and the
//! server side ([`configure`], for actix-web).
//!
//! Requests and responses are rmp-serde (`application/msgpack`): JSON would write every
//! byte of a snapshot chunk as a number. A response body is the encoded
//! `Result<response, RaftError>` of the call on the target node. The client never builds
//! TLS itself: the composition root passes a `reqwest::Client` configured for the
//! cluster's (mutual) TLS, and the `tls` flag picks the `https://` scheme.
//!
//! Endpoints (all `POST`): [`APPEND_PATH`], [`VOTE_PATH`], [`SNAPSHOT_PATH`].

use std::time::Duration;

use actix_web::http::header::ContentType;
use actix_web::{web, HttpResponse};
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

/// A failure described by text (a status code, an undecodable body).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct RpcFailure(String);

/// Builds one [`Network`] per target node.
#[derive(Clone)]
pub struct NetworkFactory {
    node_id: u64,
    client: reqwest::Client,
    tls: bool,
}

impl NetworkFactory {
    /// `client` carries the cluster TLS configuration; `tls` selects `https://`.
    pub fn new(node_id: u64, client: reqwest::Client, tls: bool) -> NetworkFactory {
        NetworkFactory {
            node_id,
            client,
            tls,
        }
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
            node_id: self.node_id,
            target,
            base: base_url(&node.cluster_addr, self.tls),
            client: self.client.clone(),
        }
    }
}

/// The RPC client for one target node.
pub struct Network {
    node_id: u64,
    target: u64,
    base: String,
    client: reqwest::Client,
}

impl Network {
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
        let body =
            rmp_serde::to_vec_named(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let url = format!("{}{path}", self.base);
        let res = self
            .client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, MSGPACK)
            .timeout(timeout)
            .body(body)
            .send()
            .await;
        let res = match res {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Err(RPCError::Timeout(Timeout {
                    action,
                    id: self.node_id,
                    target: self.target,
                    timeout,
                }))
            }
            Err(e) if e.is_connect() => return Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e) => return Err(RPCError::Network(NetworkError::new(&e))),
        };
        let status = res.status();
        let bytes = match res.bytes().await {
            Ok(b) => b,
            Err(e) if e.is_timeout() => {
                return Err(RPCError::Timeout(Timeout {
                    action,
                    id: self.node_id,
                    target: self.target,
                    timeout,
                }))
            }
            Err(e) => return Err(RPCError::Network(NetworkError::new(&e))),
        };
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
            return Err(RPCError::Network(NetworkError::new(&RpcFailure(format!(
                "{url} answered {status}: {text}"
            )))));
        }
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
/// let server = actix_web::HttpServer::new(move || {
///     let raft = raft.clone();
///     actix_web::App::new().configure(move |cfg| coffer_raft::configure(cfg, raft))
/// })
/// .bind("127.0.0.1:8201")?
/// .run();
/// tokio::spawn(server);
/// # Ok(())
/// # }
/// ```
///
/// The handle and the raised body limit are scoped to these endpoints only.
pub fn configure(cfg: &mut web::ServiceConfig, raft: Raft) {
    cfg.service(
        web::scope(SCOPE)
            .app_data(web::Data::new(raft))
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

fn encode_response<T: Serialize>(v: &T) -> HttpResponse {
    match rmp_serde::to_vec_named(v) {
        Ok(buf) => HttpResponse::Ok().content_type(MSGPACK).body(buf),
        Err(e) => HttpResponse::InternalServerError()
            .insert_header(ContentType::plaintext())
            .body(format!("cannot encode raft response: {e}")),
    }
}

async fn append(raft: web::Data<Raft>, body: web::Bytes) -> HttpResponse {
    let req: AppendEntriesRequest<TypeConfig> = match decode_request(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    encode_response(&raft.append_entries(req).await)
}

async fn vote(raft: web::Data<Raft>, body: web::Bytes) -> HttpResponse {
    let req: VoteRequest<u64> = match decode_request(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    encode_response(&raft.vote(req).await)
}

async fn snapshot(raft: web::Data<Raft>, body: web::Bytes) -> HttpResponse {
    let req: InstallSnapshotRequest<TypeConfig> = match decode_request(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    encode_response(&raft.install_snapshot(req).await)
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
}
