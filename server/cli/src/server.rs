//! `coffer server`: the composition root. Config -> Raft node -> barrier -> core ->
//! HTTP listeners. Nothing else in the workspace wires layers together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use coffer_barrier::barrier::Barrier;
use coffer_core::{Core, CoreConfig};
use coffer_raft::{RaftNode, RaftOptions};

use crate::config::{ServerConfig, StorageConfig, TcpListener};

/// Options of `coffer server` after flag parsing.
#[derive(Debug, Clone, Default)]
pub struct ServerArgs {
    /// `-config` files (merged in order).
    pub config: Vec<PathBuf>,
    /// `-dev`.
    pub dev: bool,
    /// `-dev-root-token-id`.
    pub dev_root_token_id: Option<String>,
    /// `-dev-listen-address`.
    pub dev_listen_address: Option<String>,
    /// `-log-level`.
    pub log_level: Option<String>,
}

/// A stable numeric Raft id from Vault's string `node_id`.
pub(crate) fn numeric_node_id(node_id: &str) -> u64 {
    if let Ok(n) = node_id.parse::<u64>() {
        return n;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, node_id.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest.as_ref()[..8]);
    u64::from_be_bytes(bytes) >> 1
}

/// The node id: configured, or generated once and kept in the data directory.
fn resolve_node_id(
    configured: Option<&str>,
    data_dir: Option<&std::path::Path>,
) -> anyhow::Result<String> {
    if let Some(id) = configured {
        return Ok(id.to_string());
    }
    let Some(dir) = data_dir else {
        return Ok("node1".into());
    };
    let file = dir.join("node-id");
    if let Ok(id) = std::fs::read_to_string(&file) {
        return Ok(id.trim().to_string());
    }
    let id = uuid_like();
    std::fs::write(&file, &id).with_context(|| format!("writing {}", file.display()))?;
    Ok(id)
}

fn uuid_like() -> String {
    coffer_core::new_uuid()
}

/// The running server's pieces, for in-process use and shutdown.
pub struct Running {
    /// The core.
    pub core: Arc<Core>,
    /// The Raft node.
    pub raft: Arc<RaftNode>,
    /// The addresses the API listens on.
    pub api_addrs: Vec<SocketAddr>,
    /// The actix server handle.
    pub http: actix_web::dev::ServerHandle,
    server_task: tokio::task::JoinHandle<std::io::Result<()>>,
    cluster: Arc<crate::cluster::RaftCluster>,
}

impl Running {
    /// Wait until the HTTP server stops (signal or `stop`), then stop Raft.
    pub async fn wait(self) -> anyhow::Result<()> {
        let result = self.server_task.await;
        self.cluster.stop().await;
        let _ = self.raft.shutdown().await;
        result.context("http server task")??;
        Ok(())
    }

    /// Stop serving and shut Raft down.
    pub async fn stop(self) {
        self.http.stop(true).await;
        let _ = self.server_task.await;
        self.cluster.stop().await;
        let _ = self.raft.shutdown().await;
    }
}

/// Load the config for these args (dev defaults when `-dev` has no config).
pub fn load_config(args: &ServerArgs) -> anyhow::Result<(ServerConfig, Vec<String>)> {
    let (mut config, warnings) = if args.config.is_empty() {
        if !args.dev {
            bail!("a configuration file must be specified with -config (or use -dev)");
        }
        let mut config = ServerConfig::dev();
        if let Some(addr) = &args.dev_listen_address {
            for l in &mut config.listeners {
                l.address = addr.clone();
            }
        }
        (config, Vec::new())
    } else {
        let loaded = if args.dev {
            crate::config::load_files_onto(ServerConfig::dev(), &args.config)
        } else {
            crate::config::load_files(&args.config)
        }
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        (loaded.config, loaded.warnings)
    };
    apply_env(&mut config, |k| std::env::var(k).ok());
    Ok((config, warnings))
}

use crate::client::env_var_from as env_var;

/// Vault's server environment variables, which override the config file as in Vault
/// (deployments set them per pod): `VAULT_API_ADDR` (legacy `VAULT_REDIRECT_ADDR`),
/// `VAULT_CLUSTER_ADDR`, and for raft storage `VAULT_RAFT_NODE_ID` and
/// `VAULT_RAFT_PATH`. Each may be spelled `COFFER_*`.
fn apply_env(config: &mut ServerConfig, get: impl Fn(&str) -> Option<String>) {
    if let Some(v) = env_var(&get, "API_ADDR").or_else(|| env_var(&get, "REDIRECT_ADDR")) {
        config.api_addr = Some(v);
    }
    if let Some(v) = env_var(&get, "CLUSTER_ADDR") {
        config.cluster_addr = Some(v);
    }
    if let StorageConfig::Raft(r) = &mut config.storage {
        if let Some(v) = env_var(&get, "RAFT_NODE_ID") {
            r.node_id = Some(v);
        }
        if let Some(v) = env_var(&get, "RAFT_PATH") {
            r.path = PathBuf::from(v);
        }
    }
}

fn listener_tls(l: &TcpListener) -> anyhow::Result<Option<rustls::ServerConfig>> {
    if l.tls_disable {
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (&l.tls_cert_file, &l.tls_key_file) else {
        bail!(
            "listener {}: tls_cert_file and tls_key_file are required unless tls_disable is set",
            l.address
        );
    };
    let client_ca = if l.tls_disable_client_certs {
        None
    } else {
        l.tls_client_ca_file.as_deref()
    };
    Ok(Some(coffer_http::tls::server_config(cert, key, client_ca)?))
}

/// Start a server: everything up to listening. Does not block.
pub async fn start(config: ServerConfig) -> anyhow::Result<Running> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    if let Some(seal) = &config.seal {
        // Starting with Shamir when the operator asked for auto-unseal would hand out
        // shares nobody expects; refuse instead of ignoring the stanza.
        bail!(
            "seal \"{}\" is not supported by coffer yet; remove the seal stanza to use Shamir unseal keys",
            seal.kind
        );
    }
    let first = config
        .listeners
        .first()
        .cloned()
        .context("at least one listener \"tcp\" is required")?;
    let scheme = if first.tls_disable { "http" } else { "https" };
    let api_addr = config
        .api_addr
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{}", first.address));
    let cluster_addr = config
        .cluster_addr
        .clone()
        .unwrap_or_else(|| default_cluster_addr(&first.address));
    let (data_dir, configured_id, storage_type) = match &config.storage {
        StorageConfig::Raft(r) => {
            std::fs::create_dir_all(&r.path)
                .with_context(|| format!("creating {}", r.path.display()))?;
            (Some(r.path.clone()), r.node_id.clone(), "raft")
        }
        StorageConfig::Inmem => (None, None, "inmem"),
    };
    let node_id = resolve_node_id(configured_id.as_deref(), data_dir.as_deref())?;
    // Where the cluster listener binds: the listener's `cluster_address`, else the host
    // and port of `cluster_addr`.
    let cluster_bind = first
        .cluster_address
        .clone()
        .unwrap_or_else(|| crate::cluster::host_port(&cluster_addr).to_string());
    let raft = RaftNode::open(RaftOptions {
        node_id: numeric_node_id(&node_id),
        name: node_id.clone(),
        api_addr: api_addr.clone(),
        cluster_addr: cluster_addr.clone(),
        data_dir: data_dir.clone(),
        client: None,
        tls: true,
        max_format: max_log_format(),
    })
    .await
    .map_err(|e| anyhow::anyhow!("opening raft storage: {e}"))?;
    // Sealed until unsealed: replicate and vote, but do not campaign. `sys/init`
    // bootstraps a new cluster; a joining node is added by the active node.
    raft.set_sealed(true);
    let cluster = crate::cluster::RaftCluster::new(crate::cluster::ClusterSetup {
        node: raft.clone(),
        storage_type,
        credentials_dir: data_dir.as_ref().map(|d| d.join("cluster")),
        bind_addr: cluster_bind,
        member: coffer_core::cluster_api::LocalMember {
            name: node_id.clone(),
            api_addr: api_addr.clone(),
            cluster_addr: cluster_addr.clone(),
            max_format: raft.transport().max_format(),
        },
    })?;
    let backend: Arc<dyn coffer_storage::Backend> = raft.clone();
    let barrier = Barrier::new(backend);
    let core_config = CoreConfig {
        default_lease_ttl: config
            .default_lease_ttl
            .unwrap_or(CoreConfig::default().default_lease_ttl),
        max_lease_ttl: config
            .max_lease_ttl
            .unwrap_or(CoreConfig::default().max_lease_ttl),
        cluster_name: config
            .cluster_name
            .clone()
            .unwrap_or_else(|| "coffer-cluster".into()),
        api_addr: api_addr.clone(),
    };
    let catalog = catalog().plugin_directory(config.plugin_directory.clone());
    let core = Core::new(barrier, cluster.clone(), core_config, catalog);
    cluster.attach(&core);
    if let StorageConfig::Raft(r) = &config.storage {
        let targets = retry_join_targets(&r.retry_join)?;
        core.start_retry_join(targets, false);
    }
    let state = coffer_http::AppState {
        core: core.clone(),
        forwarder: Some(Arc::new(crate::cluster::ClusterForwarder::new(
            raft.clone(),
        ))),
        trusted_forwarding: false,
    };
    let mut server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(actix_web::web::Data::new(state.clone()))
            .configure(coffer_http::configure)
    })
    .workers(
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .min(4),
    )
    .disable_signals();
    for l in &config.listeners {
        server = match listener_tls(l)? {
            Some(tls) => server
                .bind_rustls_0_23(&l.address, tls)
                .with_context(|| format!("binding {}", l.address))?,
            None => server
                .bind(&l.address)
                .with_context(|| format!("binding {}", l.address))?,
        };
    }
    let api_addrs = server.addrs();
    let server = server.run();
    let http = server.handle();
    let server_task = tokio::spawn(server);
    Ok(Running {
        core,
        raft,
        api_addrs,
        http,
        server_task,
        cluster,
    })
}

/// Test-only knob: `COFFER_MAX_LOG_FORMAT` makes this node claim (and apply) only log
/// entry formats up to that number, standing in for an older build in upgrade tests.
fn max_log_format() -> u32 {
    match std::env::var("COFFER_MAX_LOG_FORMAT") {
        Ok(v) => match v.trim().parse::<u32>() {
            Ok(n) => {
                tracing::warn!(
                    max_format = n,
                    "COFFER_MAX_LOG_FORMAT is set: this node claims an older log entry format"
                );
                n
            }
            Err(_) => coffer_raft::CURRENT_FORMAT,
        },
        Err(_) => coffer_raft::CURRENT_FORMAT,
    }
}

/// `retry_join` blocks as join targets (their PEM files read now).
fn retry_join_targets(
    blocks: &[crate::config::RetryJoin],
) -> anyhow::Result<Vec<coffer_core::cluster_api::JoinTarget>> {
    let read = |p: &Option<PathBuf>| -> anyhow::Result<Option<String>> {
        p.as_ref()
            .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())))
            .transpose()
    };
    blocks
        .iter()
        .map(|b| {
            Ok(coffer_core::cluster_api::JoinTarget {
                leader_api_addr: b.leader_api_addr.clone(),
                leader_ca_cert: read(&b.leader_ca_cert_file)?,
                leader_client_cert: read(&b.leader_client_cert_file)?,
                leader_client_key: read(&b.leader_client_key_file)?.map(zeroize::Zeroizing::new),
                leader_tls_servername: b.leader_tls_servername.clone(),
            })
        })
        .collect()
}

/// Every built-in plugin, by type name (Vault's builtin catalog).
pub fn catalog() -> coffer_core::mounts::Catalog {
    coffer_core::mounts::Catalog::new()
        .secret("kv", coffer_plugin_kv::factory)
        .secret("transit", coffer_plugin_transit::factory)
        .auth("userpass", coffer_plugin_userpass::factory)
        .auth("approle", coffer_plugin_approle::factory)
}

/// The cluster address: the API port + 1 on the same host, as Vault does.
fn default_cluster_addr(api: &str) -> String {
    match api.rsplit_once(':') {
        Some((host, port)) => match port.parse::<u16>() {
            Ok(p) => format!("https://{host}:{}", p.saturating_add(1)),
            Err(_) => format!("https://{api}"),
        },
        None => format!("https://{api}:8201"),
    }
}

/// Run `coffer server` to completion (until SIGINT/SIGTERM).
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let (config, warnings) = load_config(&args)?;
    crate::logging::init(args.log_level.as_deref().or(config.log_level.as_deref()));
    for w in &warnings {
        tracing::warn!("{w}");
    }
    if config.disable_mlock && !args.dev {
        tracing::info!("disable_mlock is set; coffer never mlocks, so this has no effect");
    }
    let running = start(config).await?;
    let addr = running
        .api_addrs
        .first()
        .map(|a| a.to_string())
        .unwrap_or_default();
    if args.dev {
        let (unseal_key, root_token) = running
            .core
            .init_dev(args.dev_root_token_id.clone())
            .await
            .map_err(|e| anyhow::anyhow!("dev init: {e}"))?;
        mount_dev_kv(&running.core)
            .await
            .map_err(|e| anyhow::anyhow!("dev mode: mounting secret/: {e}"))?;
        print_dev_banner(&addr, &unseal_key, &root_token);
    } else {
        tracing::info!(address = %addr, "coffer server started; it is sealed until unsealed");
    }
    let http = running.http.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown signal received");
        http.stop(true).await;
    });
    running.wait().await
}

/// Dev mode mounts KV v2 at `secret/`, as Vault's dev server does.
async fn mount_dev_kv(core: &Core) -> Result<(), coffer_core::CoreError> {
    let state = core.unsealed()?;
    let entry = coffer_core::mounts::MountEntry {
        path: "secret/".into(),
        kind: "kv".into(),
        description: "key/value secret storage".into(),
        accessor: String::new(),
        uuid: String::new(),
        config: Default::default(),
        options: [("version".to_string(), "2".to_string())].into(),
        local: false,
        seal_wrap: false,
    };
    core.mount(&state, coffer_core::mounts::Table::Secret, entry)
        .await?;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn print_dev_banner(addr: &str, unseal_key: &str, root_token: &str) {
    println!(
        "WARNING! dev mode is enabled! In this mode, Coffer runs entirely in-memory\n\
         and starts unsealed with a single unseal key.\n\n\
         You may need to set the following environment variables:\n\n    \
         $ export VAULT_ADDR='http://{addr}'\n\n\
         The unseal key and root token are displayed below in case you want to\n\
         seal/unseal the Vault or re-authenticate.\n\n\
         Unseal Key: {unseal_key}\n\
         Root Token: {root_token}\n\n\
         Development mode should NOT be used in production installations!\n"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raft_config() -> ServerConfig {
        crate::config::parse_hcl(
            "storage \"raft\" {\n path = \"/file\"\n node_id = \"file-id\"\n}\n\
             listener \"tcp\" {\n address = \"127.0.0.1:8200\"\n tls_disable = true\n}\n\
             api_addr = \"https://file:8200\"\n",
        )
        .expect("config")
        .config
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn vault_environment_overrides_the_file_like_vault() {
        let mut c = raft_config();
        apply_env(
            &mut c,
            env(&[
                ("VAULT_API_ADDR", "https://10.1.2.3:8200"),
                (
                    "VAULT_CLUSTER_ADDR",
                    "https://coffer-0.coffer-internal:8201",
                ),
                ("VAULT_RAFT_NODE_ID", "coffer-0"),
                ("VAULT_RAFT_PATH", "/coffer/data"),
            ]),
        );
        assert_eq!(c.api_addr.as_deref(), Some("https://10.1.2.3:8200"));
        assert_eq!(
            c.cluster_addr.as_deref(),
            Some("https://coffer-0.coffer-internal:8201")
        );
        let StorageConfig::Raft(r) = &c.storage else {
            panic!("raft")
        };
        assert_eq!(r.node_id.as_deref(), Some("coffer-0"));
        assert_eq!(r.path, PathBuf::from("/coffer/data"));
    }

    #[test]
    fn coffer_spelling_wins_and_empty_or_absent_values_change_nothing() {
        let mut c = raft_config();
        apply_env(
            &mut c,
            env(&[
                ("VAULT_API_ADDR", "https://vault:8200"),
                ("COFFER_API_ADDR", "https://coffer:8200"),
                ("VAULT_RAFT_NODE_ID", "  "),
            ]),
        );
        assert_eq!(c.api_addr.as_deref(), Some("https://coffer:8200"));
        assert_eq!(c.cluster_addr, None);
        let StorageConfig::Raft(r) = &c.storage else {
            panic!("raft")
        };
        assert_eq!(r.node_id.as_deref(), Some("file-id"));
        assert_eq!(r.path, PathBuf::from("/file"));

        let mut legacy = raft_config();
        apply_env(
            &mut legacy,
            env(&[("VAULT_REDIRECT_ADDR", "https://old:8200")]),
        );
        assert_eq!(legacy.api_addr.as_deref(), Some("https://old:8200"));
    }
}
