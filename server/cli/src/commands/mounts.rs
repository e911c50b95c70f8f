//! `coffer secrets ...` and `coffer auth ...`: enable, disable, list, tune (and for
//! secrets engines, move) mounts through `sys/mounts` and `sys/auth`.

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::{with_trailing_slash, CliError, CmdResult, Ctx, GlobalArgs};
use crate::input::parse_pairs;
use crate::output::{go_fmt, human_duration_value, table};

/// `coffer secrets` subcommands.
#[derive(Subcommand, Debug)]
pub enum SecretsCommand {
    /// Enable a secrets engine at a path.
    Enable(EnableArgs),
    /// Disable a secrets engine; its data and leases are removed.
    Disable(DisableArgs),
    /// List the enabled secrets engines.
    List(ListArgs),
    /// Change a secrets engine's TTLs, description or options.
    Tune(TuneArgs),
    /// Move a secrets engine to a new path, keeping its data.
    Move(MoveArgs),
}

/// `coffer auth` subcommands.
#[derive(Subcommand, Debug)]
pub enum AuthCommand {
    /// Enable an auth method at a path (auth/<path>).
    Enable(EnableArgs),
    /// Disable an auth method; tokens it issued are revoked.
    Disable(DisableArgs),
    /// List the enabled auth methods.
    List(ListArgs),
    /// Change an auth method's TTLs, description or options.
    Tune(TuneArgs),
}

/// Enable a secrets engine or auth method.
#[derive(Args, Debug)]
#[command(
    long_about = "Enable a secrets engine (or auth method) of TYPE at -path (default: the type's \
                  name). For the KV engine, -version=2 (or the type kv-v2) enables versioning.",
    after_help = "Examples:\n  coffer secrets enable -path=kv1 kv\n  \
                  coffer secrets enable -version=2 -path=apps kv\n  \
                  coffer secrets enable transit\n  \
                  coffer auth enable userpass\n  \
                  coffer auth enable -path=ci approle"
)]
pub struct EnableArgs {
    /// The engine or method type (kv, kv-v2, transit, userpass, approle, ...).
    #[arg(value_name = "TYPE")]
    pub kind: String,
    /// Where to mount it (default: the type's name).
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    /// A human-friendly description.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Default lease TTL (e.g. 1h; default: the system's).
    #[arg(long = "default-lease-ttl", value_name = "DURATION")]
    pub default_lease_ttl: Option<String>,
    /// Maximum lease TTL (default: the system's).
    #[arg(long = "max-lease-ttl", value_name = "DURATION")]
    pub max_lease_ttl: Option<String>,
    /// Engine options as key=value (repeatable).
    #[arg(long, value_name = "K=V")]
    pub options: Vec<String>,
    /// KV version: shorthand for -options=version=N.
    #[arg(long, value_name = "N")]
    pub version: Option<u32>,
    /// Do not replicate this mount to other clusters.
    #[arg(long)]
    pub local: bool,
    /// Enable seal wrapping for this mount.
    #[arg(long = "seal-wrap")]
    pub seal_wrap: bool,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Disable a mount.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  coffer secrets disable kv1/\n  coffer auth disable userpass/")]
pub struct DisableArgs {
    /// The mount path.
    pub path: String,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// List mounts.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  coffer secrets list\n  coffer secrets list -detailed\n  \
                        coffer auth list -format=json"
)]
pub struct ListArgs {
    /// Show TTLs, options, seal wrapping and UUIDs too.
    #[arg(long)]
    pub detailed: bool,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Tune a mount.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  coffer secrets tune -max-lease-ttl=72h transit/\n  \
                        coffer secrets tune -options=version=2 kv1/\n  \
                        coffer auth tune -default-lease-ttl=1h userpass/"
)]
pub struct TuneArgs {
    /// The mount path.
    pub path: String,
    /// A new description.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Default lease TTL (e.g. 1h; "system" resets it).
    #[arg(long = "default-lease-ttl", value_name = "DURATION")]
    pub default_lease_ttl: Option<String>,
    /// Maximum lease TTL ("system" resets it).
    #[arg(long = "max-lease-ttl", value_name = "DURATION")]
    pub max_lease_ttl: Option<String>,
    /// Options as key=value (repeatable).
    #[arg(long, value_name = "K=V")]
    pub options: Vec<String>,
    /// KV version: shorthand for -options=version=N (1 -> 2 upgrades in place).
    #[arg(long, value_name = "N")]
    pub version: Option<u32>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Move a secrets engine.
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  coffer secrets move secret/ generic/")]
pub struct MoveArgs {
    /// The current mount path.
    pub source: String,
    /// The new mount path.
    pub destination: String,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Which mount table a command works on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Table {
    Secrets,
    Auth,
}

impl Table {
    fn sys(self) -> &'static str {
        match self {
            Table::Secrets => "sys/mounts",
            Table::Auth => "sys/auth",
        }
    }
}

pub async fn run_secrets(cmd: SecretsCommand) -> CmdResult {
    match cmd {
        SecretsCommand::Enable(a) => enable(a, Table::Secrets).await,
        SecretsCommand::Disable(a) => disable(a, Table::Secrets).await,
        SecretsCommand::List(a) => list(a, Table::Secrets).await,
        SecretsCommand::Tune(a) => tune(a, Table::Secrets).await,
        SecretsCommand::Move(a) => move_mount(a).await,
    }
}

pub async fn run_auth(cmd: AuthCommand) -> CmdResult {
    match cmd {
        AuthCommand::Enable(a) => enable(a, Table::Auth).await,
        AuthCommand::Disable(a) => disable(a, Table::Auth).await,
        AuthCommand::List(a) => list(a, Table::Auth).await,
        AuthCommand::Tune(a) => tune(a, Table::Auth).await,
    }
}

fn options_of(pairs: &[String], version: Option<u32>) -> Result<Map<String, Value>, CliError> {
    let mut options = parse_pairs("options", pairs)?;
    if let Some(v) = version {
        options.insert("version".into(), json!(v.to_string()));
    }
    Ok(options)
}

async fn enable(a: EnableArgs, table: Table) -> CmdResult {
    let (kind, mut options) = match a.kind.as_str() {
        "kv-v2" => ("kv".to_string(), {
            let mut o = Map::new();
            o.insert("version".into(), json!("2"));
            o
        }),
        other => (other.to_string(), Map::new()),
    };
    options.extend(options_of(&a.options, a.version)?);
    let path = with_trailing_slash(a.path.as_deref().unwrap_or(&a.kind));
    let ctx = a.global.ctx()?;
    let mut config = Map::new();
    if let Some(t) = &a.default_lease_ttl {
        config.insert("default_lease_ttl".into(), json!(t));
    }
    if let Some(t) = &a.max_lease_ttl {
        config.insert("max_lease_ttl".into(), json!(t));
    }
    let mut body = json!({
        "type": kind,
        "description": a.description.clone().unwrap_or_default(),
        "config": config,
        "local": a.local,
        "seal_wrap": a.seal_wrap,
    });
    if !options.is_empty() {
        body["options"] = Value::Object(options);
    }
    let api = format!("{}/{}", table.sys(), path.trim_end_matches('/'));
    ctx.client.write(&api, &body).await.map_err(|e| {
        let what = match table {
            Table::Secrets => "Error enabling",
            Table::Auth => "Error enabling auth method",
        };
        CliError::api(what, e)
    })?;
    match table {
        Table::Secrets => crate::outln!("Success! Enabled the {kind} secrets engine at: {path}"),
        Table::Auth => crate::outln!("Success! Enabled {kind} auth method at: {path}"),
    }
    Ok(0)
}

async fn disable(a: DisableArgs, table: Table) -> CmdResult {
    let ctx = a.global.ctx()?;
    let path = with_trailing_slash(&a.path);
    let api = format!("{}/{}", table.sys(), path.trim_end_matches('/'));
    ctx.client
        .delete(&api, &[])
        .await
        .map_err(|e| CliError::api(format!("Error disabling {} at {path}", noun(table)), e))?;
    crate::outln!(
        "Success! Disabled the {} (if it existed) at: {path}",
        noun(table)
    );
    Ok(0)
}

fn noun(table: Table) -> &'static str {
    match table {
        Table::Secrets => "secrets engine",
        Table::Auth => "auth method",
    }
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => go_fmt(other),
    }
}

fn ttl_cell(v: &Value, key: &str) -> String {
    match v.get("config").and_then(|c| c.get(key)) {
        Some(t) if t.as_i64() == Some(0) || t.is_null() => "system".into(),
        Some(t) => human_duration_value(t),
        None => "system".into(),
    }
}

async fn list(a: ListArgs, table_kind: Table) -> CmdResult {
    let ctx = a.global.ctx()?;
    let resp = ctx
        .client
        .read(table_kind.sys(), &[])
        .await
        .map_err(|e| {
            CliError::api(
                match table_kind {
                    Table::Secrets => "Error listing secrets engines",
                    Table::Auth => "Error listing enabled authentications",
                },
                e,
            )
        })?
        .unwrap_or(Value::Null);
    let mounts = super::data_of(&resp);
    if !ctx.out.is_table() || ctx.out.field.is_some() {
        return ctx.out.data(&Value::Object(mounts));
    }
    let mut paths: Vec<&String> = mounts.keys().collect();
    paths.sort();
    let rows: Vec<Vec<String>> = paths
        .iter()
        .map(|p| {
            let m = &mounts[*p];
            let version = {
                let v = text(m, "plugin_version");
                if v.is_empty() {
                    "n/a".to_string()
                } else {
                    v
                }
            };
            if a.detailed {
                let options = match m.get("options") {
                    Some(Value::Object(o)) if !o.is_empty() => go_fmt(&Value::Object(o.clone())),
                    _ => "map[]".into(),
                };
                vec![
                    p.to_string(),
                    text(m, "type"),
                    text(m, "accessor"),
                    ttl_cell(m, "default_lease_ttl"),
                    ttl_cell(m, "max_lease_ttl"),
                    if m.get("local").and_then(Value::as_bool) == Some(true) {
                        "local".into()
                    } else {
                        "replicated".into()
                    },
                    text(m, "seal_wrap"),
                    options,
                    text(m, "description"),
                    text(m, "uuid"),
                ]
            } else {
                let mut row = vec![
                    p.to_string(),
                    text(m, "type"),
                    text(m, "accessor"),
                    text(m, "description"),
                ];
                if table_kind == Table::Auth {
                    row.push(version);
                }
                row
            }
        })
        .collect();
    let header: &[&str] = match (a.detailed, table_kind) {
        (true, _) => &[
            "Path",
            "Plugin",
            "Accessor",
            "Default TTL",
            "Max TTL",
            "Replication",
            "Seal Wrap",
            "Options",
            "Description",
            "UUID",
        ],
        (false, Table::Secrets) => &["Path", "Type", "Accessor", "Description"],
        (false, Table::Auth) => &["Path", "Type", "Accessor", "Description", "Version"],
    };
    crate::outln!("{}", table(header, rows));
    Ok(0)
}

async fn tune(a: TuneArgs, table: Table) -> CmdResult {
    let options = options_of(&a.options, a.version)?;
    let ctx = a.global.ctx()?;
    let path = with_trailing_slash(&a.path);
    let mut body = Map::new();
    if let Some(d) = &a.description {
        body.insert("description".into(), json!(d));
    }
    if let Some(t) = &a.default_lease_ttl {
        body.insert("default_lease_ttl".into(), json!(t));
    }
    if let Some(t) = &a.max_lease_ttl {
        body.insert("max_lease_ttl".into(), json!(t));
    }
    if !options.is_empty() {
        body.insert("options".into(), Value::Object(options));
    }
    let api = format!("{}/{}/tune", table.sys(), path.trim_end_matches('/'));
    ctx.client
        .write(&api, &Value::Object(body))
        .await
        .map_err(|e| CliError::api(format!("Error tuning {} {path}", noun(table)), e))?;
    crate::outln!("Success! Tuned the {} at: {path}", noun(table));
    Ok(0)
}

async fn move_mount(a: MoveArgs) -> CmdResult {
    let ctx: Ctx = a.global.ctx()?;
    let from = with_trailing_slash(&a.source);
    let to = with_trailing_slash(&a.destination);
    let resp = ctx
        .client
        .write("sys/remount", &json!({ "from": from, "to": to }))
        .await
        .map_err(|e| CliError::api("Error moving secrets engine", e))?;
    let migration = resp.as_ref().and_then(|r| {
        r.get("migration_id")
            .or_else(|| r.pointer("/data/migration_id"))
            .and_then(Value::as_str)
            .map(String::from)
    });
    match migration {
        Some(id) => crate::outln!(
            "Success! Started moving secrets engine {from} to {to}, with migration ID {id}"
        ),
        None => crate::outln!("Success! Finished moving secrets engine {from} to {to}"),
    }
    Ok(0)
}
