//! The cluster side of the composition root: [`RaftCluster`] implements the core's
//! `Cluster`/`ClusterOps` over a [`RaftNode`], plus the cluster PKI, the mutual-TLS
//! cluster listener, request forwarding and the join client.
//!
//! **PKI.** The cluster CA is an ECDSA P-256 certificate made with rcgen on `sys/init`
//! and kept (certificate and key) in the barrier. Each node has its own key and a
//! certificate signed by that CA, issued by the active node when the node is admitted.
//! A node keeps its credentials in `<data_dir>/cluster/` (`ca.pem`, `node.pem`,
//! `node-key.pem`, mode 0600), like any TLS key file of a listener: so a restarted node
//! rejoins Raft while still sealed (it replicates and votes, but does not campaign until
//! unsealed). The CA key never leaves the barrier.
//!
//! **Cluster port.** `cluster_addr` (default: the API port + 1) serves, over TLS that
//! requires a client certificate signed by the cluster CA (`WebPkiClientVerifier`):
//! the Raft RPCs (`/raft/v1/...`, msgpack) and the API (`/v1/...`) for requests that
//! standbys forward. The Raft endpoints are never served on the API port. The cluster
//! client presents the node certificate and trusts only the cluster CA; it checks the
//! chain and a fixed name ([`CLUSTER_SERVER_NAME`], in every node certificate) rather
//! than the peer's host, since membership, not the address, is what the CA vouches for.
//!
//! **Forwarding.** [`ClusterForwarder`] replays a standby's request on the leader's
//! cluster port with the node's client certificate.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use coffer_core::cluster_api::{
    AutopilotServer, AutopilotState, BootstrapAnswer, BootstrapChallenge, BootstrapCredentials,
    ClusterCa, ClusterOps, ExportedState, JoinTarget, LocalMember, NodeCredentials,
    RaftConfiguration, RaftServer,
};
use coffer_core::{Cluster, Core, CoreError};
use coffer_http::forward::{ForwardError, ForwardRequest, ForwardResponse, Forwarder};
use coffer_raft::network::base_url;
use coffer_raft::{Node, RaftNode};
use coffer_storage::StorageError;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde_json::Value;
use zeroize::Zeroizing;

/// The DNS name every node certificate carries and every cluster client checks.
pub const CLUSTER_SERVER_NAME: &str = "coffer-cluster.internal";
/// How long a standby waits for the active node to answer a forwarded request.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn internal(e: impl std::fmt::Display) -> CoreError {
    CoreError::Internal(e.to_string())
}

fn storage(e: StorageError) -> CoreError {
    match e {
        StorageError::NotLeader { leader } => CoreError::Standby { leader },
        other => CoreError::Storage(other),
    }
}

/// `host:port` of an address that may carry a scheme.
pub fn host_port(addr: &str) -> &str {
    addr.strip_prefix("https://")
        .or_else(|| addr.strip_prefix("http://"))
        .unwrap_or(addr)
        .trim_end_matches('/')
}

// ---- PKI ------------------------------------------------------------------------

fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "Coffer cluster");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    params
}

/// A new cluster CA.
pub fn new_ca() -> Result<ClusterCa, CoreError> {
    let key = KeyPair::generate().map_err(internal)?;
    let common_name = format!("Coffer cluster CA {}", &coffer_core::new_uuid()[..8]);
    let cert = ca_params(&common_name)
        .self_signed(&key)
        .map_err(internal)?;
    Ok(ClusterCa {
        cert_pem: cert.pem(),
        key_pem: Zeroizing::new(key.serialize_pem()),
        common_name,
    })
}

/// A node certificate for `name` at `cluster_addr`, signed by `ca`.
pub fn issue(ca: &ClusterCa, name: &str, cluster_addr: &str) -> Result<NodeCredentials, CoreError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(internal)?;
    let issuer = Issuer::new(ca_params(&ca.common_name), ca_key);
    let host = host_port(cluster_addr)
        .rsplit_once(':')
        .map_or(host_port(cluster_addr), |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let mut sans = vec![CLUSTER_SERVER_NAME.to_string()];
    if !host.is_empty() && host != CLUSTER_SERVER_NAME {
        sans.push(host);
    }
    let mut params = CertificateParams::new(sans).map_err(internal)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    let key = KeyPair::generate().map_err(internal)?;
    let cert = params.signed_by(&key, &issuer).map_err(internal)?;
    Ok(NodeCredentials {
        ca_cert_pem: ca.cert_pem.clone(),
        cert_pem: cert.pem(),
        key_pem: Zeroizing::new(key.serialize_pem()),
    })
}

// ---- TLS ------------------------------------------------------------------------

fn certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, CoreError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| internal(format!("{what}: {e}")))?;
    if certs.is_empty() {
        return Err(internal(format!("{what}: no certificate")));
    }
    Ok(certs)
}

fn roots(ca_pem: &str) -> Result<Arc<RootCertStore>, CoreError> {
    let mut store = RootCertStore::empty();
    for c in certs(ca_pem, "cluster CA")? {
        store.add(c).map_err(internal)?;
    }
    Ok(Arc::new(store))
}

fn key(pem: &str) -> Result<PrivateKeyDer<'static>, CoreError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| internal(format!("node key: {e}")))
}

/// The cluster listener's TLS: the node certificate, client certificates required and
/// checked against the cluster CA.
pub fn server_tls(creds: &NodeCredentials) -> Result<rustls::ServerConfig, CoreError> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(roots(&creds.ca_cert_pem)?, provider())
            .build()
            .map_err(internal)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(internal)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs(&creds.cert_pem, "node certificate")?,
            key(&creds.key_pem)?,
        )
        .map_err(internal)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Verifies a peer's chain against the cluster CA and the fixed cluster name.
#[derive(Debug)]
struct ClusterVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for ClusterVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The cluster client: presents the node certificate, trusts only the cluster CA.
pub fn client(creds: &NodeCredentials) -> Result<reqwest::Client, CoreError> {
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
        roots(&creds.ca_cert_pem)?,
        provider(),
    )
    .build()
    .map_err(internal)?;
    let verifier = ClusterVerifier {
        inner,
        name: ServerName::try_from(CLUSTER_SERVER_NAME).map_err(internal)?,
    };
    let mut chain = certs(&creds.cert_pem, "node certificate")?;
    chain.extend(certs(&creds.ca_cert_pem, "cluster CA")?);
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(internal)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(chain, key(&creds.key_pem)?)
        .map_err(internal)?;
    // HTTP/1.1 only: Raft RPCs to a peer are one at a time per replication stream, so
    // HTTP/2's multiplexing buys nothing, and its flow-control windows and connection task
    // cost a lot. Measured with kv-write on a 3-node cluster (BENCHMARKS.md, session 13):
    // 5,896-7,052 writes/s over HTTP/2, 8,115-9,257 over HTTP/1.1, and p99 45-59 ms
    // against 23-26 ms. Concurrent calls (heartbeats, forwarded requests) get pooled
    // connections of their own. The cluster listener still accepts both.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .http1_only()
        .tls_backend_preconfigured(config)
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .map_err(internal)
}

/// `bundle` plus the certificates of `extra` it lacks (PEM).
fn bundle_with(bundle: &str, extra: &str) -> String {
    let have: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(bundle.as_bytes())
        .filter_map(Result::ok)
        .map(|c| c.as_ref().to_vec())
        .collect();
    let mut out = bundle.trim_end().to_string();
    for pem in extra.split_inclusive("-----END CERTIFICATE-----") {
        let Some(Ok(cert)) = CertificateDer::pem_slice_iter(pem.as_bytes()).next() else {
            continue;
        };
        if !have.iter().any(|h| h.as_slice() == cert.as_ref()) {
            out.push('\n');
            out.push_str(pem.trim());
        }
    }
    out.push('\n');
    out
}

// ---- credentials on disk --------------------------------------------------------

const CA_FILE: &str = "ca.pem";
const CERT_FILE: &str = "node.pem";
const KEY_FILE: &str = "node-key.pem";

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Load the credentials kept in `dir`, if complete.
pub fn load_credentials(dir: &Path) -> Option<NodeCredentials> {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
    Some(NodeCredentials {
        ca_cert_pem: read(CA_FILE)?,
        cert_pem: read(CERT_FILE)?,
        key_pem: Zeroizing::new(read(KEY_FILE)?),
    })
}

fn save_credentials(dir: &Path, creds: &NodeCredentials) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    write_private(&dir.join(KEY_FILE), creds.key_pem.as_bytes())?;
    write_private(&dir.join(CERT_FILE), creds.cert_pem.as_bytes())?;
    // The CA last: its presence marks a complete set.
    write_private(&dir.join(CA_FILE), creds.ca_cert_pem.as_bytes())?;
    std::fs::File::open(dir)?.sync_all()
}

// ---- the Cluster implementation ---------------------------------------------------

/// How the node was configured, for [`RaftCluster::new`].
pub struct ClusterSetup {
    /// The Raft node.
    pub node: Arc<RaftNode>,
    /// `raft` or `inmem`.
    pub storage_type: &'static str,
    /// `<data_dir>/cluster` for raft storage; `None` (in memory) means no cluster TLS.
    pub credentials_dir: Option<PathBuf>,
    /// Where the cluster listener binds (`host:port`).
    pub bind_addr: String,
    /// This node as it introduces itself.
    pub member: LocalMember,
}

/// The core's view of the Raft cluster.
pub struct RaftCluster {
    me: Weak<RaftCluster>,
    node: Arc<RaftNode>,
    storage_type: &'static str,
    credentials_dir: Option<PathBuf>,
    bind_addr: String,
    member: LocalMember,
    creds: RwLock<Option<NodeCredentials>>,
    core: OnceLock<Weak<Core>>,
    listener: Mutex<Option<actix_web::dev::ServerHandle>>,
}

impl RaftCluster {
    /// Build it; credentials kept on disk are loaded and installed in the transport.
    pub fn new(setup: ClusterSetup) -> anyhow::Result<Arc<RaftCluster>> {
        let creds = setup.credentials_dir.as_deref().and_then(load_credentials);
        if let Some(c) = &creds {
            setup
                .node
                .transport()
                .set_client(client(c).map_err(|e| anyhow::anyhow!("cluster TLS: {e}"))?);
        }
        Ok(Arc::new_cyclic(|me| RaftCluster {
            me: me.clone(),
            node: setup.node,
            storage_type: setup.storage_type,
            credentials_dir: setup.credentials_dir,
            bind_addr: setup.bind_addr,
            member: setup.member,
            creds: RwLock::new(creds),
            core: OnceLock::new(),
            listener: Mutex::new(None),
        }))
    }

    /// Give it the core (for the API half of the cluster listener) and start the
    /// listener if credentials exist.
    pub fn attach(self: &Arc<Self>, core: &Arc<Core>) {
        let _ = self.core.set(Arc::downgrade(core));
        self.start_listener();
    }

    /// Stop the cluster listener (Raft connections are long-lived: no graceful wait).
    pub async fn stop(&self) {
        let handle = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = handle {
            h.stop(false).await;
        }
    }

    fn start_listener(self: &Arc<Self>) {
        let Some(creds) = self.creds.read().unwrap_or_else(|e| e.into_inner()).clone() else {
            return;
        };
        if self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
        {
            return;
        }
        let Some(core) = self.core.get().and_then(Weak::upgrade) else {
            return;
        };
        let tls = match server_tls(&creds) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!("cluster listener TLS: {e}");
                return;
            }
        };
        let raft = self.node.raft().clone();
        let transport = self.node.transport().clone();
        let state = coffer_http::AppState {
            core: core.clone(),
            forwarder: None,
            trusted_forwarding: true,
        };
        let server = actix_web::HttpServer::new(move || {
            let (raft, transport) = (raft.clone(), transport.clone());
            actix_web::App::new()
                .configure(move |cfg| coffer_raft::configure(cfg, raft, transport))
                .app_data(actix_web::web::Data::new(state.clone()))
                .configure(coffer_http::configure)
        })
        .workers(2)
        .shutdown_timeout(1)
        .disable_signals();
        let addr = self.bind_addr.clone();
        match server.bind_rustls_0_23(&addr, tls) {
            Ok(bound) => {
                let running = bound.run();
                *self.listener.lock().unwrap_or_else(|e| e.into_inner()) = Some(running.handle());
                tokio::spawn(running);
                tracing::info!(address = %addr, "cluster listener (mutual TLS) started");
            }
            Err(e) => {
                // The port may be taken for a moment: try again later.
                tracing::warn!(address = %addr, "cannot bind the cluster listener: {e}; retrying");
                let this = self.me.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    if let Some(this) = this.upgrade() {
                        this.start_listener();
                    }
                });
            }
        }
    }

    fn member_by_server_id(&self, server_id: &str) -> Option<u64> {
        let view = self.node.membership();
        view.members
            .iter()
            .find(|m| m.node.name == server_id || m.id.to_string() == server_id)
            .map(|m| m.id)
    }

    fn join_client(
        &self,
        target: &JoinTarget,
        pin: Option<(&str, std::net::SocketAddr)>,
    ) -> Result<reqwest::Client, CoreError> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(3));
        if let Some(ca) = &target.leader_ca_cert {
            let certs = reqwest::Certificate::from_pem_bundle(ca.as_bytes())
                .map_err(|e| CoreError::BadRequest(format!("leader_ca_cert: {e}")))?;
            builder = builder.tls_certs_only(certs);
        }
        if let (Some(cert), Some(key)) = (&target.leader_client_cert, &target.leader_client_key) {
            let mut pem = Zeroizing::new(cert.as_bytes().to_vec());
            pem.extend_from_slice(b"\n");
            pem.extend_from_slice(key.as_bytes());
            let id = reqwest::Identity::from_pem(&pem)
                .map_err(|e| CoreError::BadRequest(format!("leader client certificate: {e}")))?;
            builder = builder.identity(id);
        }
        if let Some((name, addr)) = pin {
            builder = builder.resolve(name, addr);
        }
        builder.build().map_err(internal)
    }

    async fn leader_call<T: serde::de::DeserializeOwned>(
        &self,
        target: &JoinTarget,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, CoreError> {
        let base = target.leader_api_addr.trim_end_matches('/');
        let (client, url) = match &target.leader_tls_servername {
            None => (self.join_client(target, None)?, format!("{base}/v1/{path}")),
            Some(name) => {
                // Connect to the address's host but check the certificate for (and send
                // SNI with) `leader_tls_servername`: the URL names the server name and
                // the client resolves that name to the address's IP.
                let (lookup, url) = servername_url(base, name, path)?;
                let addr = tokio::net::lookup_host(lookup.as_str())
                    .await
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| {
                        CoreError::Storage(StorageError::Unavailable(format!(
                            "{base}: cannot resolve {lookup}"
                        )))
                    })?;
                (self.join_client(target, Some((name, addr)))?, url)
            }
        };
        let resp =
            client.post(&url).json(body).send().await.map_err(|e| {
                CoreError::Storage(StorageError::Unavailable(format!("{url}: {e}")))
            })?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = value["errors"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default();
            let msg = format!("{url} answered {status}: {msg}");
            return Err(if status.is_client_error() {
                CoreError::BadRequest(msg)
            } else {
                CoreError::Storage(StorageError::Unavailable(msg))
            });
        }
        serde_json::from_value(value["data"].clone())
            .map_err(|e| internal(format!("{url}: unexpected answer: {e}")))
    }
}

/// For `retry_join { leader_tls_servername }`: from the leader's API address, the
/// `host:port` to look up (where to connect) and the URL to request, whose host is the
/// server name (what the certificate must name, and the SNI sent).
fn servername_url(base: &str, servername: &str, path: &str) -> Result<(String, String), CoreError> {
    let bad = |why: &str| CoreError::BadRequest(format!("leader_api_addr {base:?}: {why}"));
    let mut url = reqwest::Url::parse(base).map_err(|e| bad(&e.to_string()))?;
    let host = url.host_str().ok_or_else(|| bad("no host"))?.to_string();
    let port = url.port_or_known_default().ok_or_else(|| bad("no port"))?;
    let lookup = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    url.set_host(Some(servername))
        .map_err(|e| CoreError::BadRequest(format!("leader_tls_servername {servername:?}: {e}")))?;
    url.set_port(Some(port))
        .map_err(|()| bad("cannot carry a port"))?;
    let url = format!("{}/v1/{path}", url.as_str().trim_end_matches('/'));
    Ok((lookup, url))
}

impl Cluster for RaftCluster {
    fn is_leader(&self) -> bool {
        self.node.is_active()
    }
    fn leader_api_addr(&self) -> Option<String> {
        self.node.leader().map(|(_, n)| n.api_addr)
    }
    fn leader_cluster_addr(&self) -> Option<String> {
        self.node.leader().map(|(_, n)| n.cluster_addr)
    }
    fn committed_index(&self) -> u64 {
        self.node.committed_index()
    }
    fn applied_index(&self) -> u64 {
        coffer_storage::Backend::applied_index(&*self.node)
    }
    fn storage_type(&self) -> String {
        self.storage_type.to_string()
    }
}

#[async_trait::async_trait]
impl ClusterOps for RaftCluster {
    async fn is_member(&self) -> bool {
        self.node.raft().is_initialized().await.unwrap_or(false)
    }

    async fn bootstrap(&self) -> Result<(), CoreError> {
        self.node.bootstrap_if_fresh().await.map_err(storage)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.node.is_active() {
            if Instant::now() > deadline {
                return Err(CoreError::Storage(StorageError::Unavailable(
                    "this node did not become the leader of its cluster".into(),
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    fn cluster_tls(&self) -> bool {
        self.credentials_dir.is_some()
    }

    fn new_cluster_ca(&self) -> Result<ClusterCa, CoreError> {
        new_ca()
    }

    fn issue_node_credentials(
        &self,
        ca: &ClusterCa,
        name: &str,
        cluster_addr: &str,
    ) -> Result<NodeCredentials, CoreError> {
        let mut creds = issue(ca, name, cluster_addr)?;
        // A new member trusts what this node trusts too (other CAs after a restore).
        if let Some(mine) = self
            .creds
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            creds.ca_cert_pem = bundle_with(&mine.ca_cert_pem, &creds.ca_cert_pem);
        }
        Ok(creds)
    }

    fn has_credentials(&self) -> bool {
        self.creds
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    async fn install_credentials(&self, creds: &NodeCredentials) -> Result<(), CoreError> {
        let client = client(creds)?;
        server_tls(creds)?;
        if let Some(dir) = &self.credentials_dir {
            save_credentials(dir, creds)
                .map_err(|e| internal(format!("saving the cluster credentials: {e}")))?;
        }
        self.node.transport().set_client(client);
        *self.creds.write().unwrap_or_else(|e| e.into_inner()) = Some(creds.clone());
        if let Some(me) = self.me.upgrade() {
            me.start_listener();
        }
        tracing::info!("installed the cluster credentials");
        Ok(())
    }

    async fn trust_ca(&self, ca_cert_pem: &str) -> Result<(), CoreError> {
        let Some(mut creds) = self.creds.read().unwrap_or_else(|e| e.into_inner()).clone() else {
            return Ok(());
        };
        let bundle = bundle_with(&creds.ca_cert_pem, ca_cert_pem);
        if bundle == creds.ca_cert_pem {
            return Ok(());
        }
        tracing::warn!(
            "trusting an additional cluster CA (a snapshot of another cluster was restored)"
        );
        creds.ca_cert_pem = bundle;
        let client = client(&creds)?;
        server_tls(&creds)?;
        if let Some(dir) = &self.credentials_dir {
            save_credentials(dir, &creds)
                .map_err(|e| internal(format!("saving the cluster credentials: {e}")))?;
        }
        self.node.transport().set_client(client);
        *self.creds.write().unwrap_or_else(|e| e.into_inner()) = Some(creds);
        // The listener's TLS is fixed when it binds: bind it again.
        self.stop().await;
        if let Some(me) = self.me.upgrade() {
            me.start_listener();
        }
        Ok(())
    }

    fn local_member(&self) -> LocalMember {
        self.member.clone()
    }

    fn set_sealed(&self, sealed: bool) {
        self.node.set_sealed(sealed);
        if sealed && self.node.is_leader() {
            let voters = self
                .node
                .membership()
                .members
                .iter()
                .filter(|m| m.voter)
                .count();
            if voters > 1 {
                let node = self.node.clone();
                tokio::spawn(async move {
                    if let Err(e) = node.step_down(Duration::from_secs(10)).await {
                        tracing::warn!("a sealed leader could not hand leadership over: {e}");
                    }
                });
            }
        }
    }

    async fn await_leadership(&self, timeout: Duration) {
        let view = self.node.membership();
        let voters = view.members.iter().filter(|m| m.voter).count();
        if voters != 1
            || !view
                .members
                .iter()
                .any(|m| m.voter && m.id == self.node.id())
        {
            return;
        }
        let deadline = Instant::now() + timeout;
        while !self.node.is_active() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn fetch_challenge(
        &self,
        target: &JoinTarget,
        server_id: &str,
    ) -> Result<BootstrapChallenge, CoreError> {
        self.leader_call(
            target,
            "sys/storage/raft/bootstrap/challenge",
            &serde_json::json!({ "server_id": server_id }),
        )
        .await
    }

    async fn answer_challenge(
        &self,
        target: &JoinTarget,
        answer: &BootstrapAnswer,
    ) -> Result<BootstrapCredentials, CoreError> {
        self.leader_call(target, "sys/storage/raft/bootstrap/answer", answer)
            .await
    }

    async fn add_member(&self, answer: &BootstrapAnswer) -> Result<u64, CoreError> {
        let id = crate::server::numeric_node_id(&answer.server_id);
        if id == self.node.id() {
            return Err(CoreError::BadRequest(format!(
                "server id {} is the active node's own",
                answer.server_id
            )));
        }
        let node = Node {
            api_addr: answer.api_addr.clone(),
            cluster_addr: answer.cluster_addr.clone(),
            name: answer.server_id.clone(),
            non_voter: answer.non_voter,
        };
        self.node.add_learner(id, node).await.map_err(storage)
    }

    async fn remove_peer(&self, server_id: &str) -> Result<(), CoreError> {
        let id = self
            .member_by_server_id(server_id)
            .ok_or_else(|| CoreError::BadRequest(format!("unknown server id {server_id}")))?;
        self.node.remove_member(id).await.map_err(|e| match e {
            StorageError::Unavailable(m) => CoreError::BadRequest(m),
            other => storage(other),
        })
    }

    fn configuration(&self) -> RaftConfiguration {
        let view = self.node.membership();
        let mut servers: Vec<RaftServer> = view
            .members
            .iter()
            .map(|m| RaftServer {
                node_id: if m.node.name.is_empty() {
                    m.id.to_string()
                } else {
                    m.node.name.clone()
                },
                address: host_port(&m.node.cluster_addr).to_string(),
                leader: view.leader == Some(m.id),
                voter: m.voter,
                protocol_version: "3".into(),
            })
            .collect();
        servers.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        RaftConfiguration {
            index: view.log_index,
            servers,
        }
    }

    fn autopilot_state(&self) -> Result<AutopilotState, CoreError> {
        let (term, last) = self.node.term_and_last_index();
        let servers = self.node.servers();
        let mut out = Vec::new();
        let mut healthy_voters = 0u64;
        let mut voters = Vec::new();
        let mut leader = String::new();
        for s in &servers {
            let name = if s.node.name.is_empty() {
                s.id.to_string()
            } else {
                s.node.name.clone()
            };
            let contact = s.last_contact.unwrap_or(Duration::MAX);
            let alive = contact <= Duration::from_secs(5);
            let healthy = alive
                && s.sealed == Some(false)
                && s.last_index + coffer_raft::membership::CAUGHT_UP_LAG >= last;
            if s.voter {
                voters.push(name.clone());
                if healthy {
                    healthy_voters += 1;
                }
            }
            if s.leader {
                leader = name.clone();
            }
            out.push(AutopilotServer {
                name,
                address: host_port(&s.node.cluster_addr).to_string(),
                node_status: if alive { "alive" } else { "failed" }.into(),
                healthy,
                last_contact: s.last_contact.unwrap_or(Duration::ZERO),
                last_index: s.last_index,
                last_term: term,
                voter: s.voter,
                status: if s.leader {
                    "leader"
                } else if s.voter {
                    "voter"
                } else {
                    "non-voter"
                }
                .into(),
                sealed: s.sealed.unwrap_or(true),
                max_format: s.max_format.unwrap_or(0),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        voters.sort();
        let quorum = voters.len() as u64 / 2 + 1;
        Ok(AutopilotState {
            healthy: healthy_voters == voters.len() as u64,
            failure_tolerance: healthy_voters.saturating_sub(quorum),
            leader,
            voters,
            servers: out,
        })
    }

    async fn step_down(&self) -> Result<(), CoreError> {
        self.node
            .step_down(Duration::from_secs(10))
            .await
            .map(|_| ())
            .map_err(storage)
    }

    async fn wait_for_index(&self, index: u64, timeout: Duration) -> bool {
        self.node.wait_applied(index, timeout).await.is_ok()
    }

    fn export_state(&self) -> Result<ExportedState, CoreError> {
        let s = self.node.export_snapshot().map_err(storage)?;
        Ok(ExportedState {
            index: s.index,
            term: s.term,
            payload: s.payload,
        })
    }

    async fn restore_state(&self, payload: Vec<u8>) -> Result<u64, CoreError> {
        self.node
            .commit_restore(payload, coffer_core::raft_snapshot::RESTORE_HOLD_BACK)
            .await
            .map_err(|e| match e {
                StorageError::Corrupt(m) => CoreError::BadRequest(format!("invalid snapshot: {m}")),
                other => storage(other),
            })
    }
}

// ---- forwarding -----------------------------------------------------------------

/// Replays standby requests on the leader's cluster port.
pub struct ClusterForwarder {
    node: Arc<RaftNode>,
}

impl ClusterForwarder {
    /// A forwarder over `node`'s transport.
    pub fn new(node: Arc<RaftNode>) -> ClusterForwarder {
        ClusterForwarder { node }
    }
}

#[async_trait::async_trait]
impl Forwarder for ClusterForwarder {
    async fn forward(&self, req: ForwardRequest) -> Result<ForwardResponse, ForwardError> {
        let Some((leader_id, leader)) = self.node.leader() else {
            return Err(ForwardError::NotSent("no leader is known".into()));
        };
        if leader_id == self.node.id() {
            return Err(ForwardError::NotSent(
                "this node leads but has no quorum".into(),
            ));
        }
        let transport = self.node.transport();
        if transport.dropped(&leader.cluster_addr) {
            return Err(ForwardError::NotSent(format!(
                "{} is dropped by the test network filter",
                leader.cluster_addr
            )));
        }
        let Some(client) = transport.client() else {
            return Err(ForwardError::NotSent("no cluster credentials".into()));
        };
        let url = format!(
            "{}{}",
            base_url(&leader.cluster_addr, transport.tls()),
            req.path_and_query
        );
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .map_err(|e| ForwardError::NotSent(e.to_string()))?;
        let mut builder = client.request(method, &url).timeout(FORWARD_TIMEOUT);
        for (name, value) in &req.headers {
            builder = builder.header(name.as_str(), value.as_slice());
        }
        let resp = builder.body(req.body).send().await.map_err(|e| {
            if e.is_connect() {
                ForwardError::NotSent(format!("{url}: {e}"))
            } else {
                ForwardError::Failed(format!("{url}: {e}"))
            }
        })?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
            .collect();
        let body = resp
            .bytes()
            .await
            .map_err(|e| ForwardError::Failed(format!("{url}: {e}")))?
            .to_vec();
        Ok(ForwardResponse {
            status,
            headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_tls_servername_keeps_the_address_and_swaps_the_name() {
        let (lookup, url) =
            servername_url("https://10.0.0.7:8200", "coffer-0.coffer-internal", "sys/x").unwrap();
        assert_eq!(lookup, "10.0.0.7:8200");
        assert_eq!(url, "https://coffer-0.coffer-internal:8200/v1/sys/x");
        // IPv6 hosts stay bracketed; the scheme's default port is looked up.
        let (lookup, url) = servername_url("https://[::1]", "vault.local", "p").unwrap();
        assert_eq!(lookup, "[::1]:443");
        assert_eq!(url, "https://vault.local/v1/p");
        let (lookup, _) = servername_url("https://node-a:8200/", "n", "p").unwrap();
        assert_eq!(lookup, "node-a:8200");
        assert!(servername_url("not a url", "n", "p").is_err());
        assert!(servername_url("https://a:1", "bad name/", "p").is_err());
    }

    #[test]
    fn node_certificates_chain_to_the_cluster_ca_and_carry_the_cluster_name() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = new_ca().expect("ca");
        let creds = issue(&ca, "node-a", "https://127.0.0.1:8201").expect("issue");
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots(&creds.ca_cert_pem).expect("roots"),
            provider(),
        )
        .build()
        .expect("verifier");
        let cert = certs(&creds.cert_pem, "node").expect("cert").remove(0);
        let name = ServerName::try_from(CLUSTER_SERVER_NAME).expect("name");
        verifier
            .verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
            .expect("the node certificate verifies against the cluster CA");
        // A certificate from another CA does not.
        let other = issue(&new_ca().expect("ca"), "x", "127.0.0.1:1").expect("issue");
        let foreign = certs(&other.cert_pem, "other").expect("cert").remove(0);
        assert!(verifier
            .verify_server_cert(&foreign, &[], &name, &[], UnixTime::now())
            .is_err());
        // Both TLS configurations build from the credentials.
        server_tls(&creds).expect("server tls");
        client(&creds).expect("client");
    }

    #[test]
    fn credentials_round_trip_on_disk_with_a_private_key_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = new_ca().expect("ca");
        let creds = issue(&ca, "n", "10.0.0.1:8201").expect("issue");
        save_credentials(dir.path(), &creds).expect("save");
        let back = load_credentials(dir.path()).expect("load");
        assert_eq!(back.cert_pem, creds.cert_pem);
        assert_eq!(*back.key_pem, *creds.key_pem);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(host_port("https://h:1/"), "h:1");
    }

    #[test]
    fn a_trust_bundle_gains_a_second_ca_once() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (a, b) = (new_ca().expect("ca"), new_ca().expect("ca"));
        let both = bundle_with(&a.cert_pem, &b.cert_pem);
        assert_eq!(both.matches("BEGIN CERTIFICATE").count(), 2);
        assert_eq!(bundle_with(&both, &b.cert_pem), both);
        assert_eq!(bundle_with(&both, &a.cert_pem), both);
        // A node certificate from either CA verifies against the bundle.
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots(&both).expect("roots"),
            provider(),
        )
        .build()
        .expect("verifier");
        let name = ServerName::try_from(CLUSTER_SERVER_NAME).expect("name");
        for ca in [&a, &b] {
            let creds = issue(ca, "n", "127.0.0.1:1").expect("issue");
            let cert = certs(&creds.cert_pem, "node").expect("cert").remove(0);
            verifier
                .verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
                .expect("verifies");
        }
    }
}
