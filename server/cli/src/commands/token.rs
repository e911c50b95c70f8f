//! `coffer token ...`: create, look up, renew and revoke tokens (`auth/token/*`), and
//! `capabilities`, which asks what a token may do on a path (`sys/capabilities*`).

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::{CliError, CmdResult, GlobalArgs};
use crate::input::parse_pairs;

/// `coffer token` subcommands.
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token (a child of the current one unless -orphan).
    Create(TokenCreateArgs),
    /// Show a token's properties (the current token by default).
    Lookup(TokenLookupArgs),
    /// Extend a token's lease (the current token by default).
    Renew(TokenRenewArgs),
    /// Revoke a token and, unless -mode=orphan, its children.
    Revoke(TokenRevokeArgs),
    /// Show what a token may do on a path.
    Capabilities(CapabilitiesArgs),
}

/// Create a token.
#[derive(Args, Debug)]
#[command(
    long_about = "Create a new token. It is a child of the current token (revoked with it) \
                  unless -orphan is given, and gets the given policies plus \"default\" unless \
                  -no-default-policy. -field=token prints only the new token.",
    after_help = "Examples:\n  coffer token create -policy=app-read -ttl=1h\n  \
                  coffer token create -policy=a -policy=b -use-limit=3\n  \
                  coffer token create -orphan -period=24h -display-name=ci\n  \
                  TOKEN=$(coffer token create -policy=app-read -field=token)"
)]
pub struct TokenCreateArgs {
    /// A policy to attach (repeatable or comma-separated).
    #[arg(long = "policy", value_name = "NAME", value_delimiter = ',')]
    pub policies: Vec<String>,
    /// Initial time to live (e.g. 30m, 1h).
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
    /// A hard limit the token can never be renewed past.
    #[arg(long = "explicit-max-ttl", value_name = "DURATION")]
    pub explicit_max_ttl: Option<String>,
    /// Make a periodic token: every renewal resets its TTL to this period.
    #[arg(long, value_name = "DURATION")]
    pub period: Option<String>,
    /// How many requests the token may make (0: unlimited).
    #[arg(long = "use-limit", value_name = "N")]
    pub use_limit: Option<u64>,
    /// Create the token without a parent.
    #[arg(long)]
    pub orphan: bool,
    /// Do not attach the "default" policy.
    #[arg(long = "no-default-policy")]
    pub no_default_policy: bool,
    /// Whether the token may be renewed.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub renewable: Option<bool>,
    /// A name shown in audit logs and lookups.
    #[arg(long = "display-name", value_name = "NAME")]
    pub display_name: Option<String>,
    /// Metadata as key=value (repeatable).
    #[arg(long, value_name = "K=V")]
    pub metadata: Vec<String>,
    /// Create the token from this token role.
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    /// The token type: service or batch.
    #[arg(long = "type", value_name = "TYPE")]
    pub token_type: Option<String>,
    /// The token's ID (root tokens only; normally generated).
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Look up a token.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  coffer token lookup\n  coffer token lookup hvs.XXXX\n  \
                        coffer token lookup -accessor ACCESSOR"
)]
pub struct TokenLookupArgs {
    /// The token (or accessor with -accessor); the current token when absent.
    pub token: Option<String>,
    /// Treat the argument as an accessor.
    #[arg(long)]
    pub accessor: bool,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Renew a token.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  coffer token renew\n  coffer token renew -increment=1h hvs.XXXX\n  \
                        coffer token renew -accessor ACCESSOR"
)]
pub struct TokenRenewArgs {
    /// The token (or accessor with -accessor); the current token when absent.
    pub token: Option<String>,
    /// Requested extension (e.g. 1h); the server may grant less.
    #[arg(long, value_name = "DURATION")]
    pub increment: Option<String>,
    /// Treat the argument as an accessor.
    #[arg(long)]
    pub accessor: bool,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Revoke a token.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  coffer token revoke hvs.XXXX\n  coffer token revoke -self\n  \
                        coffer token revoke -accessor ACCESSOR\n  \
                        coffer token revoke -mode=orphan hvs.XXXX   # children survive"
)]
pub struct TokenRevokeArgs {
    /// The token (or accessor with -accessor).
    pub token: Option<String>,
    /// Revoke the current token.
    #[arg(long = "self")]
    pub self_: bool,
    /// Treat the argument as an accessor.
    #[arg(long)]
    pub accessor: bool,
    /// "orphan" keeps the token's children (made orphans); default revokes them too.
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Show a token's capabilities on a path.
#[derive(Args, Debug)]
#[command(
    long_about = "Print the capabilities (create, read, update, patch, delete, list, sudo, \
                  deny, or root) that a token has on PATH. With one argument it is the current \
                  token; with two, the first is the token to check.",
    after_help = "Examples:\n  coffer token capabilities secret/data/app\n  \
                  coffer token capabilities hvs.XXXX secret/data/app"
)]
pub struct CapabilitiesArgs {
    /// The path, or with two arguments the token to check.
    #[arg(value_name = "TOKEN|PATH")]
    pub first: String,
    /// The path, when the first argument is a token.
    #[arg(value_name = "PATH")]
    pub second: Option<String>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

pub async fn run(cmd: TokenCommand) -> CmdResult {
    match cmd {
        TokenCommand::Create(a) => create(a).await,
        TokenCommand::Lookup(a) => lookup(a).await,
        TokenCommand::Renew(a) => renew(a).await,
        TokenCommand::Revoke(a) => revoke(a).await,
        TokenCommand::Capabilities(a) => capabilities(a).await,
    }
}

async fn create(a: TokenCreateArgs) -> CmdResult {
    let meta = parse_pairs("metadata", &a.metadata)?;
    let ctx = a.global.ctx()?;
    let mut body = Map::new();
    let policies: Vec<String> = a
        .policies
        .iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    if !policies.is_empty() {
        body.insert("policies".into(), json!(policies));
    }
    let strings = [
        ("ttl", &a.ttl),
        ("explicit_max_ttl", &a.explicit_max_ttl),
        ("period", &a.period),
        ("display_name", &a.display_name),
        ("type", &a.token_type),
        ("id", &a.id),
    ];
    for (key, value) in strings {
        if let Some(v) = value {
            body.insert(key.into(), json!(v));
        }
    }
    if let Some(n) = a.use_limit {
        body.insert("num_uses".into(), json!(n));
    }
    if a.no_default_policy {
        body.insert("no_default_policy".into(), json!(true));
    }
    if let Some(r) = a.renewable {
        body.insert("renewable".into(), json!(r));
    }
    if !meta.is_empty() {
        body.insert("meta".into(), Value::Object(meta));
    }
    let path = match (&a.role, a.orphan) {
        (Some(role), _) => format!("auth/token/create/{role}"),
        (None, true) => "auth/token/create-orphan".to_string(),
        (None, false) => "auth/token/create".to_string(),
    };
    let secret = ctx
        .client
        .write(&path, &Value::Object(body))
        .await
        .map_err(|e| CliError::api("Error creating token", e))?
        .ok_or_else(|| CliError::remote("Error creating token: the server returned nothing"))?;
    ctx.out.secret(&secret)
}

async fn lookup(a: TokenLookupArgs) -> CmdResult {
    let ctx = a.global.ctx()?;
    let secret = match (&a.token, a.accessor) {
        (None, true) => return Err(CliError::usage("Not enough arguments (expected 1, got 0)")),
        (None, false) => ctx.client.read("auth/token/lookup-self", &[]).await,
        (Some(acc), true) => {
            ctx.client
                .write("auth/token/lookup-accessor", &json!({ "accessor": acc }))
                .await
        }
        (Some(t), false) => {
            ctx.client
                .write("auth/token/lookup", &json!({ "token": t }))
                .await
        }
    }
    .map_err(|e| CliError::api("Error looking up token", e))?
    .ok_or_else(|| CliError::remote("Error looking up token: the server returned nothing"))?;
    ctx.out.secret(&secret)
}

async fn renew(a: TokenRenewArgs) -> CmdResult {
    let ctx = a.global.ctx()?;
    let mut body = Map::new();
    if let Some(i) = &a.increment {
        body.insert("increment".into(), json!(i));
    }
    let path = match (&a.token, a.accessor) {
        (None, true) => return Err(CliError::usage("Not enough arguments (expected 1, got 0)")),
        (None, false) => "auth/token/renew-self",
        (Some(acc), true) => {
            body.insert("accessor".into(), json!(acc));
            "auth/token/renew-accessor"
        }
        (Some(t), false) => {
            body.insert("token".into(), json!(t));
            "auth/token/renew"
        }
    };
    let secret = ctx
        .client
        .write(path, &Value::Object(body))
        .await
        .map_err(|e| CliError::api("Error renewing token", e))?
        .ok_or_else(|| CliError::remote("Error renewing token: the server returned nothing"))?;
    ctx.out.secret(&secret)
}

async fn revoke(a: TokenRevokeArgs) -> CmdResult {
    let mode = a.mode.as_deref().unwrap_or("");
    if !matches!(mode, "" | "orphan" | "path") {
        return Err(CliError::usage(format!("Invalid mode: {mode}")));
    }
    if mode == "path" {
        return Err(CliError::usage(
            "-mode=path is not supported; revoke the tokens of an auth path by disabling it",
        ));
    }
    match (&a.token, a.self_) {
        (Some(_), true) => {
            return Err(CliError::usage(
                "Too many arguments (expected 0 with -self, got 1)",
            ))
        }
        (None, false) => return Err(CliError::usage("Not enough arguments (expected 1, got 0)")),
        _ => {}
    }
    let ctx = a.global.ctx()?;
    let (path, body) = match (&a.token, a.self_, a.accessor) {
        (_, true, _) => ("auth/token/revoke-self", json!({})),
        (Some(acc), false, true) => ("auth/token/revoke-accessor", json!({ "accessor": acc })),
        (Some(t), false, false) if mode == "orphan" => {
            ("auth/token/revoke-orphan", json!({ "token": t }))
        }
        (Some(t), false, false) => ("auth/token/revoke", json!({ "token": t })),
        (None, false, _) => unreachable!("checked above"),
    };
    ctx.client
        .write(path, &body)
        .await
        .map_err(|e| CliError::api("Error revoking token", e))?;
    crate::outln!("Success! Revoked token (if it existed)");
    Ok(0)
}

async fn capabilities(a: CapabilitiesArgs) -> CmdResult {
    let ctx = a.global.ctx()?;
    let (token, path) = match a.second {
        None => (None, a.first),
        Some(path) => (Some(a.first), path),
    };
    let path = path.trim_start_matches('/').to_string();
    let resp = match &token {
        None => {
            ctx.client
                .write("sys/capabilities-self", &json!({ "paths": [path] }))
                .await
        }
        Some(t) => {
            ctx.client
                .write("sys/capabilities", &json!({ "token": t, "paths": [path] }))
                .await
        }
    }
    .map_err(|e| CliError::api("Error listing capabilities", e))?
    .unwrap_or(Value::Null);
    let data = super::data_of(&resp);
    let caps = data
        .get(&path)
        .or_else(|| data.get("capabilities"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut names: Vec<String> = caps
        .iter()
        .filter_map(|c| c.as_str().map(String::from))
        .collect();
    names.sort();
    if ctx.out.is_table() {
        crate::outln!("{}", names.join(", "));
    } else {
        ctx.out.structured(&json!(names))?;
    }
    Ok(0)
}
