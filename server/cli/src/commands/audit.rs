//! `coffer audit ...`: enable, disable and list audit devices through `sys/audit`.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::{with_trailing_slash, CliError, CmdResult, GlobalArgs};
use crate::input::parse_pairs;
use crate::output::{go_fmt, table};

/// `coffer audit` subcommands.
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Enable an audit device (e.g. `file file_path=...`).
    Enable(AuditEnableArgs),
    /// Disable an audit device.
    Disable(AuditDisableArgs),
    /// List the enabled audit devices.
    List(AuditListArgs),
}

/// Enable an audit device.
#[derive(Args, Debug)]
#[command(
    long_about = "Enable an audit device of TYPE at -path (default: the type's name), with \
                  its options as key=value arguments. Once a device is enabled, a request \
                  completes only if at least one device logged it.",
    after_help = "Examples:\n  coffer audit enable file file_path=/var/log/coffer/audit.log\n  \
                  coffer audit enable -path=file2 file file_path=/tmp/audit.log"
)]
pub struct AuditEnableArgs {
    /// The device type (file).
    #[arg(value_name = "TYPE")]
    pub kind: String,
    /// Options as key=value (file_path=... for file devices).
    #[arg(value_name = "K=V")]
    pub options: Vec<String>,
    /// Where to enable it (default: the type's name).
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    /// A human-friendly description.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Do not replicate this device to other clusters.
    #[arg(long)]
    pub local: bool,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Disable an audit device.
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  coffer audit disable file/")]
pub struct AuditDisableArgs {
    /// The device's path.
    pub path: String,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// List audit devices.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  coffer audit list\n  coffer audit list -detailed")]
pub struct AuditListArgs {
    /// Show replication and options too.
    #[arg(long)]
    pub detailed: bool,
    #[command(flatten)]
    pub global: GlobalArgs,
}

pub async fn run(cmd: AuditCommand) -> CmdResult {
    match cmd {
        AuditCommand::Enable(a) => enable(a).await,
        AuditCommand::Disable(a) => disable(a).await,
        AuditCommand::List(a) => list(a).await,
    }
}

async fn enable(a: AuditEnableArgs) -> CmdResult {
    let options = parse_pairs("options", &a.options)?;
    let ctx = a.global.ctx()?;
    let path = with_trailing_slash(a.path.as_deref().unwrap_or(&a.kind));
    let body = json!({
        "type": a.kind,
        "description": a.description.clone().unwrap_or_default(),
        "options": options,
        "local": a.local,
    });
    ctx.client
        .write(&format!("sys/audit/{}", path.trim_end_matches('/')), &body)
        .await
        .map_err(|e| CliError::api("Error enabling audit device", e))?;
    crate::outln!("Success! Enabled the {} audit device at: {path}", a.kind);
    Ok(0)
}

async fn disable(a: AuditDisableArgs) -> CmdResult {
    let ctx = a.global.ctx()?;
    let path = with_trailing_slash(&a.path);
    ctx.client
        .delete(&format!("sys/audit/{}", path.trim_end_matches('/')), &[])
        .await
        .map_err(|e| CliError::api("Error disabling audit device", e))?;
    crate::outln!("Success! Disabled audit device (if it was enabled) at: {path}");
    Ok(0)
}

async fn list(a: AuditListArgs) -> CmdResult {
    let ctx = a.global.ctx()?;
    let resp = ctx
        .client
        .read("sys/audit", &[])
        .await
        .map_err(|e| CliError::api("Error listing audits", e))?
        .unwrap_or(Value::Null);
    let devices = super::data_of(&resp);
    if !ctx.out.is_table() || ctx.out.field.is_some() {
        return ctx.out.data(&Value::Object(devices));
    }
    if devices.is_empty() {
        crate::outln!("No audit devices are enabled.");
        return Ok(2);
    }
    let mut paths: Vec<&String> = devices.keys().collect();
    paths.sort();
    let text = |v: &Value, k: &str| match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(o) => go_fmt(o),
    };
    let rows = paths
        .iter()
        .map(|p| {
            let d = &devices[*p];
            let mut row = vec![p.to_string(), text(d, "type"), text(d, "description")];
            if a.detailed {
                row.push(
                    if d.get("local").and_then(Value::as_bool) == Some(true) {
                        "local"
                    } else {
                        "replicated"
                    }
                    .into(),
                );
                row.push(text(d, "options"));
            }
            row
        })
        .collect();
    let header: &[&str] = if a.detailed {
        &["Path", "Type", "Description", "Replication", "Options"]
    } else {
        &["Path", "Type", "Description"]
    };
    crate::outln!("{}", table(header, rows));
    Ok(0)
}
