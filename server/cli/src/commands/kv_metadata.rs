//! `coffer kv metadata get|put|delete` and `coffer kv rollback`: the KV v2 commands
//! that work on a secret's metadata (all its versions) rather than one version's data.

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::kv::{output_written, print_map_section, resolve, KvPathArgs, KvTarget};
use super::{CliError, CmdResult, Ctx, GlobalArgs};
use crate::input::parse_pairs;
use crate::output::{print_path, print_warnings, secret_field};

/// `coffer kv metadata` subcommands.
#[derive(Subcommand, Debug)]
pub enum KvMetadataCommand {
    /// Show a v2 secret's metadata and the state of every version.
    Get(KvPathArgs),
    /// Set a v2 secret's metadata (max versions, CAS, custom metadata).
    Put(KvMetadataPutArgs),
    /// Delete a v2 secret's metadata and every version, permanently.
    Delete(KvPathArgs),
}

/// Set a v2 secret's metadata.
#[derive(Args, Debug)]
#[command(
    long_about = "Create or update the metadata of the v2 secret at PATH. Only the flags given \
                  are changed.",
    after_help = "Examples:\n  coffer kv metadata put -max-versions=5 secret/app\n  \
                  coffer kv metadata put -cas-required=true secret/app\n  \
                  coffer kv metadata put -custom-metadata=owner=ops secret/app"
)]
pub struct KvMetadataPutArgs {
    /// The secret's path (mount included unless -mount is given).
    pub path: String,
    /// How many versions to keep (0: the mount's setting).
    #[arg(long = "max-versions", value_name = "N")]
    pub max_versions: Option<i64>,
    /// Require -cas on every write of this secret.
    #[arg(
        long = "cas-required",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub cas_required: Option<bool>,
    /// Delete versions this long after they are written (e.g. 768h; 0s: never).
    #[arg(long = "delete-version-after", value_name = "DURATION")]
    pub delete_version_after: Option<String>,
    /// Custom metadata as key=value (repeatable).
    #[arg(long = "custom-metadata", value_name = "K=V")]
    pub custom_metadata: Vec<String>,
    /// The mount path; PATH is then relative to it.
    #[arg(long, value_name = "MOUNT")]
    pub mount: Option<String>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Roll back a v2 secret.
#[derive(Args, Debug)]
#[command(
    long_about = "Write the data of version -version of the v2 secret at PATH as a new, latest \
                  version. Deleted or destroyed versions cannot be rolled back to.",
    after_help = "Example:\n  coffer kv rollback -version=2 secret/app"
)]
pub struct KvRollbackArgs {
    /// The secret's path (mount included unless -mount is given).
    pub path: String,
    /// The version to roll back to.
    #[arg(long, value_name = "N")]
    pub version: u64,
    /// The mount path; PATH is then relative to it.
    #[arg(long, value_name = "MOUNT")]
    pub mount: Option<String>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

pub async fn run(cmd: KvMetadataCommand) -> CmdResult {
    match cmd {
        KvMetadataCommand::Get(a) => metadata_get(a).await,
        KvMetadataCommand::Put(a) => metadata_put(a).await,
        KvMetadataCommand::Delete(a) => metadata_delete(a).await,
    }
}

async fn metadata_target(ctx: &Ctx, mount: Option<&str>, path: &str) -> Result<KvTarget, CliError> {
    let t = resolve(ctx, mount, path).await?;
    if !t.v2 {
        return Err(CliError::usage("Metadata not supported on KV Version 1"));
    }
    Ok(t)
}

async fn metadata_get(a: KvPathArgs) -> CmdResult {
    let ctx = a.global.ctx()?;
    let t = metadata_target(&ctx, a.mount.as_deref(), &a.path).await?;
    let path = t.api_path("metadata");
    let secret = ctx
        .client
        .read(&path, &[])
        .await
        .map_err(|e| CliError::api(format!("Error reading {path}"), e))?
        .ok_or_else(|| CliError::remote(format!("No value found at {path}")))?;
    if let Some(field) = &ctx.out.field {
        return ctx.out.raw_field(secret_field(&secret, field), field);
    }
    if !ctx.out.is_table() {
        ctx.out.structured(&secret)?;
        return Ok(0);
    }
    let mut data = secret
        .get("data")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let Some(Value::Object(versions)) = data.remove("versions") else {
        return Err(CliError::remote(format!("No value found at {path}")));
    };
    print_warnings(&secret);
    print_path(&path, "Metadata Path");
    print_map_section(&ctx, "Metadata", &data)?;
    let mut numbers: Vec<(u64, &String)> = versions
        .keys()
        .filter_map(|k| k.parse::<u64>().ok().map(|n| (n, k)))
        .collect();
    numbers.sort();
    for (n, key) in numbers {
        let version = versions[key].as_object().cloned().unwrap_or_default();
        crate::outln!();
        print_map_section(&ctx, &format!("Version {n}"), &version)?;
    }
    Ok(0)
}

async fn metadata_put(a: KvMetadataPutArgs) -> CmdResult {
    let custom = parse_pairs("custom-metadata", &a.custom_metadata)?;
    let ctx = a.global.ctx()?;
    let t = metadata_target(&ctx, a.mount.as_deref(), &a.path).await?;
    let path = t.api_path("metadata");
    let mut body = Map::new();
    if let Some(m) = a.max_versions.filter(|m| *m >= 0) {
        body.insert("max_versions".into(), json!(m));
    }
    if let Some(c) = a.cas_required {
        body.insert("cas_required".into(), json!(c));
    }
    if let Some(d) = &a.delete_version_after {
        body.insert("delete_version_after".into(), json!(d));
    }
    if !custom.is_empty() {
        body.insert("custom_metadata".into(), Value::Object(custom));
    }
    let secret = ctx
        .client
        .write(&path, &Value::Object(body))
        .await
        .map_err(|e| CliError::api(format!("Error writing data to {path}"), e))?;
    match secret {
        None => {
            crate::outln!("Success! Data written to: {path}");
            Ok(0)
        }
        Some(s) => ctx.out.secret(&s),
    }
}

async fn metadata_delete(a: KvPathArgs) -> CmdResult {
    let ctx = a.global.ctx()?;
    let t = metadata_target(&ctx, a.mount.as_deref(), &a.path).await?;
    let path = t.api_path("metadata");
    ctx.client
        .delete(&path, &[])
        .await
        .map_err(|e| CliError::api(format!("Error deleting {path}"), e))?;
    crate::outln!("Success! Data deleted (if it existed) at: {path}");
    Ok(0)
}

pub async fn rollback(a: KvRollbackArgs) -> CmdResult {
    if a.version == 0 {
        return Err(CliError::usage(
            "Must specify a version to roll back to (-version=N)",
        ));
    }
    let ctx = a.global.ctx()?;
    let t = resolve(&ctx, a.mount.as_deref(), &a.path).await?;
    if !t.v2 {
        return Err(CliError::usage("Rollback not supported on KV Version 1"));
    }
    let meta_path = t.api_path("metadata");
    let meta = ctx
        .client
        .read(&meta_path, &[])
        .await
        .map_err(|e| CliError::api(format!("Error reading {meta_path}"), e))?
        .ok_or_else(|| CliError::remote(format!("No value found at {meta_path}")))?;
    let current = meta
        .pointer("/data/current_version")
        .and_then(Value::as_u64)
        .ok_or_else(|| CliError::remote(format!("No current version found at {meta_path}")))?;
    let version = meta
        .pointer(&format!("/data/versions/{}", a.version))
        .ok_or_else(|| {
            CliError::remote(format!(
                "Version {} not found at {meta_path}; cannot roll back to it",
                a.version
            ))
        })?;
    if version.get("destroyed").and_then(Value::as_bool) == Some(true) {
        return Err(CliError::remote(
            "Cannot roll back to a version that has been destroyed",
        ));
    }
    if version
        .get("deletion_time")
        .and_then(Value::as_str)
        .is_some_and(|d| !d.is_empty())
    {
        return Err(CliError::remote(
            "Cannot roll back to a version that has been deleted",
        ));
    }
    let path = t.api_path("data");
    let old = ctx
        .client
        .read(&path, &[("version".into(), a.version.to_string())])
        .await
        .map_err(|e| CliError::api(format!("Error reading {path}"), e))?
        .and_then(|s| s.pointer("/data/data").cloned())
        .filter(|d| d.is_object())
        .ok_or_else(|| {
            CliError::remote(format!("No data found at {path} version {}", a.version))
        })?;
    let secret = ctx
        .client
        .write(
            &path,
            &json!({ "data": old, "options": { "cas": current } }),
        )
        .await
        .map_err(|e| CliError::api(format!("Error writing data to {path}"), e))?;
    output_written(&ctx, &t, &path, secret)
}
