//! `coffer operator raft ...`: join a node to a cluster, list and remove peers, and
//! save or restore a snapshot (`sys/storage/raft/snapshot`, streamed to and from a
//! file, with a progress bar when stderr is a terminal and silence when it is not).

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body::{Frame, SizeHint};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::{json, Value};

use super::{CliError, CmdResult, GlobalArgs};
use crate::input::flag_file;
use crate::output::{key_value_table, table};

/// `coffer operator raft` subcommands.
#[derive(Subcommand, Debug)]
pub enum RaftCommand {
    /// Join this node to an existing Raft cluster.
    Join(JoinArgs),
    /// List the cluster's Raft peers and who leads.
    ListPeers(ListPeersArgs),
    /// Remove a peer from the cluster by its node ID.
    RemovePeer(RemovePeerArgs),
    /// Save or restore a snapshot of the cluster's data.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
}

/// `coffer operator raft snapshot` subcommands.
#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Save a snapshot of the cluster's (encrypted) data to a file.
    Save(SnapshotSaveArgs),
    /// Restore the cluster's data from a snapshot file.
    Restore(SnapshotRestoreArgs),
}

/// Join this node to an existing Raft cluster.
#[derive(Args, Debug)]
#[command(
    long_about = "Ask the node at -address to join the Raft cluster led by LEADER_API_ADDR. \
                  The joining node must be uninitialised; once joined, unseal it with the \
                  cluster's unseal key shares.",
    after_help = "Examples:\n  coffer operator raft join https://node1:8200\n  \
                  coffer operator raft join -leader-ca-cert=@ca.pem https://node1:8200\n  \
                  coffer operator raft join -non-voter https://node1:8200"
)]
pub struct JoinArgs {
    /// The API address of a cluster member (the leader or any voter).
    pub leader_api_addr: Option<String>,
    /// CA certificate (PEM, or @file) that verifies the leader.
    #[arg(long = "leader-ca-cert", value_name = "PEM|@FILE")]
    pub leader_ca_cert: Option<String>,
    /// Client certificate (PEM, or @file) for the leader's mutual TLS.
    #[arg(long = "leader-client-cert", value_name = "PEM|@FILE")]
    pub leader_client_cert: Option<String>,
    /// Client key (PEM, or @file) for the leader's mutual TLS.
    #[arg(long = "leader-client-key", value_name = "PEM|@FILE")]
    pub leader_client_key: Option<String>,
    /// Keep retrying the join until it succeeds.
    #[arg(long)]
    pub retry: bool,
    /// Join as a non-voting member.
    #[arg(long = "non-voter")]
    pub non_voter: bool,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// List the cluster's Raft peers.
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  coffer operator raft list-peers\n  \
                        coffer operator raft list-peers -format=json")]
pub struct ListPeersArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Remove a peer from the cluster.
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  coffer operator raft remove-peer node3")]
pub struct RemovePeerArgs {
    /// The node ID of the peer (as shown by list-peers).
    pub server_id: String,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Save a snapshot to a file.
#[derive(Args, Debug)]
#[command(
    long_about = "Stream a snapshot of the cluster's data (still encrypted by the barrier) \
                  into FILE. The file is written next to FILE first and renamed into place \
                  only when complete, so a failed save never leaves a truncated snapshot. \
                  A progress bar is shown when stderr is a terminal.",
    after_help = "Example:\n  coffer operator raft snapshot save backup.snap"
)]
pub struct SnapshotSaveArgs {
    /// Where to write the snapshot.
    pub file: PathBuf,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Restore a snapshot from a file.
#[derive(Args, Debug)]
#[command(
    long_about = "Upload FILE (made by `snapshot save`) and replace the cluster's data with \
                  it. The snapshot must come from a cluster with the same unseal key unless \
                  -force is given. A progress bar is shown when stderr is a terminal.",
    after_help = "Example:\n  coffer operator raft snapshot restore backup.snap"
)]
pub struct SnapshotRestoreArgs {
    /// The snapshot file.
    pub file: PathBuf,
    /// Restore even if the snapshot's keyring does not match this cluster.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub global: GlobalArgs,
}

pub async fn run(cmd: RaftCommand) -> CmdResult {
    match cmd {
        RaftCommand::Join(a) => join(a).await,
        RaftCommand::ListPeers(a) => list_peers(a).await,
        RaftCommand::RemovePeer(a) => remove_peer(a).await,
        RaftCommand::Snapshot(SnapshotCommand::Save(a)) => snapshot_save(a).await,
        RaftCommand::Snapshot(SnapshotCommand::Restore(a)) => snapshot_restore(a).await,
    }
}

async fn join(args: JoinArgs) -> CmdResult {
    let ctx = args.global.ctx()?;
    let mut body = serde_json::Map::new();
    if let Some(a) = &args.leader_api_addr {
        body.insert("leader_api_addr".into(), json!(a));
    }
    for (key, value) in [
        ("leader_ca_cert", &args.leader_ca_cert),
        ("leader_client_cert", &args.leader_client_cert),
        ("leader_client_key", &args.leader_client_key),
    ] {
        if let Some(v) = value {
            body.insert(key.into(), json!(flag_file(v)?));
        }
    }
    body.insert("retry".into(), json!(args.retry));
    body.insert("non_voter".into(), json!(args.non_voter));
    let resp = ctx
        .client
        .write("sys/storage/raft/join", &Value::Object(body))
        .await
        .map_err(|e| CliError::api("Error joining the node to the Raft cluster", e))?
        .unwrap_or(json!({ "joined": true }));
    if !ctx.out.is_table() || ctx.out.field.is_some() {
        return ctx.out.data(&resp);
    }
    let joined = resp.get("joined").and_then(Value::as_bool).unwrap_or(true);
    crate::outln!(
        "{}",
        key_value_table(vec![("Joined".into(), joined.to_string())])
    );
    Ok(0)
}

async fn list_peers(args: ListPeersArgs) -> CmdResult {
    let ctx = args.global.ctx()?;
    let resp = ctx
        .client
        .read("sys/storage/raft/configuration", &[])
        .await
        .map_err(|e| CliError::api("Error reading the raft cluster configuration", e))?
        .ok_or_else(|| CliError::remote("No raft cluster configuration found"))?;
    if !ctx.out.is_table() || ctx.out.field.is_some() {
        return ctx.out.secret(&resp);
    }
    let servers = resp
        .pointer("/data/config/servers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let rows = servers
        .iter()
        .map(|s| {
            let text = |k: &str| match s.get(k) {
                Some(Value::String(v)) => v.clone(),
                Some(Value::Null) | None => String::new(),
                Some(v) => v.to_string(),
            };
            let leader = s.get("leader").and_then(Value::as_bool) == Some(true);
            vec![
                text("node_id"),
                text("address"),
                if leader { "leader" } else { "follower" }.to_string(),
                text("voter"),
            ]
        })
        .collect();
    crate::outln!("{}", table(&["Node", "Address", "State", "Voter"], rows));
    Ok(0)
}

async fn remove_peer(args: RemovePeerArgs) -> CmdResult {
    let ctx = args.global.ctx()?;
    ctx.client
        .write(
            "sys/storage/raft/remove-peer",
            &json!({ "server_id": args.server_id }),
        )
        .await
        .map_err(|e| CliError::api("Error removing the peer from raft cluster", e))?;
    crate::outln!("Peer removed successfully!");
    Ok(0)
}

/// A progress bar on stderr when it is a terminal, otherwise one that draws nothing.
fn progress(len: Option<u64>, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} {bytes} ({bytes_per_sec})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.set_message(what.to_string());
    bar
}

/// The temporary file a snapshot is written to before it is renamed into place.
fn partial_path(file: &Path) -> PathBuf {
    let mut name = file
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".partial");
    file.with_file_name(name)
}

async fn snapshot_save(args: SnapshotSaveArgs) -> CmdResult {
    let ctx = args.global.ctx()?;
    let mut resp = ctx
        .client
        .send_streaming(Method::GET, "sys/storage/raft/snapshot", None)
        .await
        .map_err(|e| CliError::api("Error taking the snapshot", e))?;
    let partial = partial_path(&args.file);
    let mut file = std::fs::File::create(&partial).map_err(|e| {
        CliError::usage(format!(
            "Error creating snapshot file {}: {e}",
            partial.display()
        ))
    })?;
    let bar = progress(resp.content_length(), "Saving snapshot");
    let result: Result<(), CliError> = async {
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| CliError::remote(format!("Error reading the snapshot: {e}")))?
        {
            file.write_all(&chunk)
                .map_err(|e| CliError::usage(format!("Error writing snapshot file: {e}")))?;
            bar.inc(chunk.len() as u64);
        }
        file.sync_all()
            .map_err(|e| CliError::usage(format!("Error writing snapshot file: {e}")))?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        bar.abandon();
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    bar.finish_and_clear();
    std::fs::rename(&partial, &args.file).map_err(|e| {
        CliError::usage(format!(
            "Error moving the snapshot to {}: {e}",
            args.file.display()
        ))
    })?;
    Ok(0)
}

/// A request body read from a file in chunks, advancing a progress bar. Reads are
/// small and local, so they run inline in `poll_frame`.
struct FileBody {
    file: std::fs::File,
    remaining: u64,
    bar: ProgressBar,
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let mut buf = vec![0u8; 256 * 1024];
        match self.file.read(&mut buf) {
            Ok(0) => {
                self.bar.finish_and_clear();
                Poll::Ready(None)
            }
            Ok(n) => {
                buf.truncate(n);
                self.remaining = self.remaining.saturating_sub(n as u64);
                self.bar.inc(n as u64);
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
            }
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

async fn snapshot_restore(args: SnapshotRestoreArgs) -> CmdResult {
    let ctx = args.global.ctx()?;
    let file = std::fs::File::open(&args.file).map_err(|e| {
        CliError::usage(format!(
            "Error opening snapshot file {}: {e}",
            args.file.display()
        ))
    })?;
    let len = file
        .metadata()
        .map_err(|e| CliError::usage(format!("Error reading snapshot file: {e}")))?
        .len();
    let bar = progress(Some(len), "Restoring snapshot");
    let body = reqwest::Body::wrap(FileBody {
        file,
        remaining: len,
        bar: bar.clone(),
    });
    let path = if args.force {
        "sys/storage/raft/snapshot-force"
    } else {
        "sys/storage/raft/snapshot"
    };
    let result = ctx
        .client
        .send_streaming(Method::POST, path, Some(body))
        .await;
    bar.finish_and_clear();
    result.map_err(|e| CliError::api("Error installing the snapshot", e))?;
    Ok(0)
}
