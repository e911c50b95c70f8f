//! The generic commands that reach any API path: `read`, `write`, `list`, `delete`
//! and `patch` (Vault's "thin wrapper around the HTTP API" commands).

use clap::Args;
use serde_json::Value;

use super::{sanitize_path, CliError, CmdResult, GlobalArgs};
use crate::input::parse_data;
use crate::output::{print_raw, Format};

/// Read a path.
#[derive(Args, Debug)]
#[command(
    long_about = "Read the data at PATH (GET /v1/PATH). key=value arguments are sent as query \
                  parameters. -format=raw prints the response body exactly as received.",
    after_help = "Examples:\n  coffer read secret/data/app\n  coffer read -field=policy sys/policies/acl/default\n  \
                  coffer read -format=json auth/token/lookup-self"
)]
pub struct ReadArgs {
    /// The API path, without /v1/.
    pub path: String,
    /// Query parameters as key=value.
    pub data: Vec<String>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Write to a path.
#[derive(Args, Debug)]
#[command(
    long_about = "Write DATA to PATH (PUT /v1/PATH). DATA is key=value pairs; key=@file reads \
                  the value from a file and key=- from standard input; a lone - or @file.json \
                  gives the whole body as a JSON object. -force allows an empty body.",
    after_help = "Examples:\n  coffer write sys/policies/acl/ops policy=@ops.hcl\n  \
                  coffer write auth/userpass/users/alice password=- < pw.txt\n  \
                  coffer write -force sys/rotate\n  \
                  echo '{\"type\":\"kv\"}' | coffer write sys/mounts/kv2 -"
)]
pub struct WriteArgs {
    /// The API path, without /v1/.
    pub path: String,
    /// The data: key=value, key=@file, key=-, -, or @file.json.
    pub data: Vec<String>,
    /// Allow writing with no data.
    #[arg(long, short = 'f')]
    pub force: bool,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// List a path.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  coffer list secret/metadata/\n  coffer list -format=json sys/policies/acl"
)]
pub struct ListArgs {
    /// The API path, without /v1/.
    pub path: String,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Delete a path.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  coffer delete secret/data/app\n  coffer delete sys/mounts/kv1"
)]
pub struct DeleteArgs {
    /// The API path, without /v1/.
    pub path: String,
    /// Query parameters as key=value.
    pub data: Vec<String>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Patch a path.
#[derive(Args, Debug)]
#[command(
    long_about = "Merge DATA into PATH with an HTTP PATCH (JSON merge patch). Needs the \
                  \"patch\" capability.",
    after_help = "Example:\n  coffer patch secret/data/app data=@patch.json"
)]
pub struct PatchArgs {
    /// The API path, without /v1/.
    pub path: String,
    /// The data: key=value, key=@file, key=-, -, or @file.json.
    pub data: Vec<String>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

fn query_of(data: &[String]) -> Result<Vec<(String, String)>, CliError> {
    let map = parse_data(data)?;
    let mut out = Vec::new();
    for (k, v) in map {
        match v {
            Value::Array(items) => {
                for i in items {
                    out.push((k.clone(), value_text(&i)));
                }
            }
            other => out.push((k, value_text(&other))),
        }
    }
    Ok(out)
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub async fn read(a: ReadArgs) -> CmdResult {
    let query = query_of(&a.data)?;
    let ctx = a.global.ctx()?;
    let path = sanitize_path(&a.path);
    if ctx.out.format == Format::Raw {
        let text = ctx
            .client
            .get_text(&path, &query)
            .await
            .map_err(|e| CliError::api(format!("Error reading {path}"), e))?;
        print_raw(&text);
        return Ok(0);
    }
    let secret = ctx
        .client
        .read(&path, &query)
        .await
        .map_err(|e| CliError::api(format!("Error reading {path}"), e))?
        .ok_or_else(|| CliError::remote(format!("No value found at {path}")))?;
    ctx.out.secret(&secret)
}

pub async fn write(a: WriteArgs) -> CmdResult {
    let data = parse_data(&a.data)?;
    if data.is_empty() && !a.force {
        return Err(CliError::usage("Must supply data or use -force"));
    }
    let ctx = a.global.ctx()?;
    let path = sanitize_path(&a.path);
    let secret = ctx
        .client
        .write(&path, &Value::Object(data))
        .await
        .map_err(|e| CliError::api(format!("Error writing data to {path}"), e))?;
    match secret {
        None => {
            if ctx.out.is_table() {
                crate::outln!("Success! Data written to: {path}");
            }
            Ok(0)
        }
        Some(s) => ctx.out.secret(&s),
    }
}

pub async fn list(a: ListArgs) -> CmdResult {
    let ctx = a.global.ctx()?;
    let path = sanitize_path(&a.path);
    let secret = ctx
        .client
        .list(&path)
        .await
        .map_err(|e| CliError::api(format!("Error listing {path}/"), e))?
        .ok_or_else(|| CliError::remote(format!("No value found at {path}/")))?;
    if let Some(field) = &ctx.out.field {
        return ctx
            .out
            .raw_field(crate::output::secret_field(&secret, field), field);
    }
    ctx.out.list(&secret)
}

pub async fn delete(a: DeleteArgs) -> CmdResult {
    let query = query_of(&a.data)?;
    let ctx = a.global.ctx()?;
    let path = sanitize_path(&a.path);
    ctx.client
        .delete(&path, &query)
        .await
        .map_err(|e| CliError::api(format!("Error deleting {path}"), e))?;
    crate::outln!("Success! Data deleted (if it existed) at: {path}");
    Ok(0)
}

pub async fn patch(a: PatchArgs) -> CmdResult {
    let data = parse_data(&a.data)?;
    if data.is_empty() {
        return Err(CliError::usage("Must supply data"));
    }
    let ctx = a.global.ctx()?;
    let path = sanitize_path(&a.path);
    let secret = ctx
        .client
        .patch(&path, &Value::Object(data))
        .await
        .map_err(|e| CliError::api(format!("Error writing data to {path}"), e))?;
    match secret {
        None => {
            if ctx.out.is_table() {
                crate::outln!("Success! Data written to: {path}");
            }
            Ok(0)
        }
        Some(s) => ctx.out.secret(&s),
    }
}
