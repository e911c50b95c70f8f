//! `coffer kv ...`: the KV secrets engine, version 1 or 2, told apart the way the
//! `vault` CLI does: `GET sys/internal/ui/mounts/<path>` and its `options.version`
//! ("2" is v2; a 404 or anything else is v1). Paths are written without the v2 API
//! prefixes (`secret/foo`, not `secret/data/foo`); `-mount=secret foo` names the mount
//! explicitly. The metadata commands and `rollback` live in kv_metadata.rs.

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::kv_metadata::{self, KvMetadataCommand, KvRollbackArgs};
use super::{sanitize_path, CliError, CmdResult, Ctx, GlobalArgs};
use crate::input::parse_data;
use crate::output::{header_for_map, print_path, print_warnings, secret_field};

/// `coffer kv` subcommands.
#[derive(Subcommand, Debug)]
pub enum KvCommand {
    /// Read a secret (a specific version with -version on v2).
    Get(KvGetArgs),
    /// Write a secret, replacing all of its data (a new version on v2).
    Put(KvPutArgs),
    /// Update some keys of an existing v2 secret, keeping the others.
    Patch(KvPatchArgs),
    /// List the secret names under a path.
    List(KvPathArgs),
    /// Delete a secret (v2: soft-delete the latest or -versions; undelete restores).
    Delete(KvDeleteArgs),
    /// Restore soft-deleted versions of a v2 secret.
    Undelete(KvVersionsArgs),
    /// Permanently destroy versions of a v2 secret.
    Destroy(KvVersionsArgs),
    /// Read, write and delete a v2 secret's metadata (all versions).
    #[command(subcommand)]
    Metadata(KvMetadataCommand),
    /// Write an older version's data as the newest version of a v2 secret.
    Rollback(KvRollbackArgs),
}

/// Read a secret.
#[derive(Args, Debug)]
#[command(
    long_about = "Read the secret at PATH. On a KV v2 mount the latest version is read, or \
                  the one given with -version; the table shows the version metadata and the \
                  data. -field=KEY prints one key's value alone, for scripts.",
    after_help = "Examples:\n  coffer kv get secret/app\n  coffer kv get -version=2 secret/app\n  \
                  coffer kv get -field=password secret/app\n  \
                  coffer kv get -mount=secret app\n  coffer kv get -format=json secret/app"
)]
pub struct KvGetArgs {
    /// The secret's path (mount included unless -mount is given).
    pub path: String,
    /// The version to read (v2 only; default the latest).
    #[arg(long, value_name = "N")]
    pub version: Option<u64>,
    /// The mount path; PATH is then relative to it.
    #[arg(long, value_name = "MOUNT")]
    pub mount: Option<String>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Write a secret.
#[derive(Args, Debug)]
#[command(
    long_about = "Write DATA to the secret at PATH, replacing what was there (on v2 this \
                  creates a new version). DATA is key=value pairs; key=@file reads the value \
                  from a file and key=- from standard input; a lone - or @file.json gives the \
                  whole secret as a JSON object. Repeating a key makes a list.",
    after_help = "Examples:\n  coffer kv put secret/app user=admin password=s3cr3t\n  \
                  coffer kv put secret/tls cert=@server.pem\n  \
                  echo '{\"a\":\"b\"}' | coffer kv put secret/app -\n  \
                  coffer kv put -cas=0 secret/app user=admin   # only if absent"
)]
pub struct KvPutArgs {
    /// The secret's path (mount included unless -mount is given).
    pub path: String,
    /// The data: key=value, key=@file, key=-, -, or @file.json.
    pub data: Vec<String>,
    /// Check-and-set: write only if the current version is N (0: only if absent; v2).
    #[arg(long, value_name = "N")]
    pub cas: Option<i64>,
    /// The mount path; PATH is then relative to it.
    #[arg(long, value_name = "MOUNT")]
    pub mount: Option<String>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Update some keys of a v2 secret.
#[derive(Args, Debug)]
#[command(
    long_about = "Merge DATA into the latest version of the v2 secret at PATH, creating a new \
                  version that keeps the keys not given. By default an HTTP PATCH is sent \
                  (it needs the \"patch\" capability); if that is refused, the secret is read \
                  and written back (-method=rw does only that).",
    after_help = "Examples:\n  coffer kv patch secret/app password=n3w\n  \
                  coffer kv patch -method=rw secret/app ttl=1h\n  \
                  coffer kv patch -cas=3 secret/app password=n3w"
)]
pub struct KvPatchArgs {
    /// The secret's path (mount included unless -mount is given).
    pub path: String,
    /// The data to merge: key=value, key=@file, key=-, -, or @file.json.
    pub data: Vec<String>,
    /// Check-and-set: write only if the current version is N.
    #[arg(long, value_name = "N")]
    pub cas: Option<i64>,
    /// How to patch: "patch" (HTTP PATCH) or "rw" (read, merge, write).
    #[arg(long, value_name = "METHOD")]
    pub method: Option<String>,
    /// The mount path; PATH is then relative to it.
    #[arg(long, value_name = "MOUNT")]
    pub mount: Option<String>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// A command that takes only a path.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  coffer kv list secret/\n  \
                        coffer kv metadata get secret/app\n  \
                        coffer kv metadata delete secret/app")]
pub struct KvPathArgs {
    /// The path (mount included unless -mount is given).
    pub path: String,
    /// The mount path; PATH is then relative to it.
    #[arg(long, value_name = "MOUNT")]
    pub mount: Option<String>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Delete a secret.
#[derive(Args, Debug)]
#[command(
    long_about = "Delete the secret at PATH. On v2 this soft-deletes the latest version (or \
                  the -versions given): the data can be brought back with `kv undelete` until \
                  it is destroyed. On v1 the secret is gone.",
    after_help = "Examples:\n  coffer kv delete secret/app\n  \
                  coffer kv delete -versions=1,2 secret/app"
)]
pub struct KvDeleteArgs {
    /// The secret's path (mount included unless -mount is given).
    pub path: String,
    /// Versions to delete, comma-separated or repeated (v2).
    #[arg(long, value_name = "N,...", value_delimiter = ',')]
    pub versions: Vec<String>,
    /// The mount path; PATH is then relative to it.
    #[arg(long, value_name = "MOUNT")]
    pub mount: Option<String>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Undelete or destroy versions.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  coffer kv undelete -versions=3 secret/app\n  \
                        coffer kv destroy -versions=1,2 secret/app"
)]
pub struct KvVersionsArgs {
    /// The secret's path (mount included unless -mount is given).
    pub path: String,
    /// The versions, comma-separated or repeated.
    #[arg(long, value_name = "N,...", value_delimiter = ',')]
    pub versions: Vec<String>,
    /// The mount path; PATH is then relative to it.
    #[arg(long, value_name = "MOUNT")]
    pub mount: Option<String>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

pub async fn run(cmd: KvCommand) -> CmdResult {
    match cmd {
        KvCommand::Get(a) => get(a).await,
        KvCommand::Put(a) => put(a).await,
        KvCommand::Patch(a) => patch(a).await,
        KvCommand::List(a) => list(a).await,
        KvCommand::Delete(a) => delete(a).await,
        KvCommand::Undelete(a) => versions_op(a, "undelete").await,
        KvCommand::Destroy(a) => versions_op(a, "destroy").await,
        KvCommand::Metadata(c) => kv_metadata::run(c).await,
        KvCommand::Rollback(a) => kv_metadata::rollback(a).await,
    }
}

/// `path.Join` of Go: segments joined by one slash, empty segments dropped.
fn join(parts: &[&str]) -> String {
    parts
        .iter()
        .flat_map(|p| p.split('/'))
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

/// Where a KV command points: the mount, its version, and the path within it.
#[derive(Debug, Clone)]
pub struct KvTarget {
    /// Whether the mount is KV version 2.
    pub v2: bool,
    /// The mount path ("secret/"), empty when the server did not say.
    pub mount: String,
    /// The path as given (sanitised).
    pub path: String,
    /// Whether -mount was given (PATH is then relative).
    pub explicit_mount: bool,
}

impl KvTarget {
    /// The API path: on v2 with `prefix` (`data`, `metadata`, `delete`, ...) inserted
    /// after the mount (Vault's `addPrefixToKVPath`); on v1 the path itself.
    pub fn api_path(&self, prefix: &str) -> String {
        if self.explicit_mount {
            return if self.v2 {
                join(&[&self.mount, prefix, &self.path])
            } else {
                join(&[&self.mount, &self.path])
            };
        }
        if !self.v2 {
            return self.path.clone();
        }
        let mount = self.mount.trim_end_matches('/');
        if self.path == mount || self.path == self.mount {
            return join(&[mount, prefix]);
        }
        let rest = self
            .path
            .strip_prefix(&self.mount)
            .or_else(|| self.path.strip_prefix(mount))
            .unwrap_or(&self.path);
        join(&[mount, prefix, rest])
    }
}

/// The mount version of the `options` of a `sys/internal/ui/mounts` answer.
pub fn version_of(options: Option<&Value>) -> u8 {
    match options
        .and_then(|o| o.get("version"))
        .and_then(Value::as_str)
    {
        Some("2") => 2,
        _ => 1,
    }
}

/// Find the mount and KV version for `path` (Vault's `kvPreflightVersionRequest`).
pub async fn resolve(ctx: &Ctx, mount: Option<&str>, path: &str) -> Result<KvTarget, CliError> {
    let path = sanitize_path(path);
    let probe = match mount {
        Some(m) => sanitize_path(m),
        None => path.clone(),
    };
    let resp = ctx
        .client
        .send(
            reqwest::Method::GET,
            &format!("sys/internal/ui/mounts/{probe}"),
            &[],
            None,
        )
        .await;
    let (mount_path, version) = match resp {
        Ok(r) => {
            let data = r.body.get("data").cloned().unwrap_or(Value::Null);
            let mount_path = data
                .get("path")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            (mount_path, version_of(data.get("options")))
        }
        Err(e) if e.status() == Some(404) => (String::new(), 1),
        Err(e) => return Err(CliError::remote(e.to_string())),
    };
    let mount_path = match (mount, mount_path.is_empty()) {
        (Some(m), true) => format!("{}/", sanitize_path(m)),
        _ => mount_path,
    };
    Ok(KvTarget {
        v2: version == 2,
        mount: mount_path,
        path,
        explicit_mount: mount.is_some(),
    })
}

fn parse_versions(versions: &[String]) -> Result<Vec<u64>, CliError> {
    versions
        .iter()
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| CliError::usage(format!("Invalid version {v:?}: must be a number")))
        })
        .collect()
}

pub(super) fn print_map_section(
    ctx: &Ctx,
    title: &str,
    map: &Map<String, Value>,
) -> Result<(), CliError> {
    crate::outln!("{}", header_for_map(title, map));
    ctx.out.data(&Value::Object(map.clone()))?;
    Ok(())
}

/// Output after a write: Vault's "Success!" line for an empty answer, the v2
/// "Secret Path" and "Metadata" sections, or the response.
pub(super) fn output_written(
    ctx: &Ctx,
    t: &KvTarget,
    path: &str,
    secret: Option<Value>,
) -> CmdResult {
    let Some(secret) = secret else {
        if ctx.out.is_table() {
            crate::outln!("Success! Data written to: {path}");
        }
        return Ok(0);
    };
    if let Some(field) = &ctx.out.field {
        return ctx.out.raw_field(secret_field(&secret, field), field);
    }
    if ctx.out.is_table() && t.v2 {
        print_warnings(&secret);
        print_path(path, "Secret Path");
        let metadata = secret
            .get("data")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        print_map_section(ctx, "Metadata", &metadata)?;
        return Ok(0);
    }
    ctx.out.secret(&secret)
}

async fn get(a: KvGetArgs) -> CmdResult {
    let ctx = a.global.ctx()?;
    let t = resolve(&ctx, a.mount.as_deref(), &a.path).await?;
    let mut query = Vec::new();
    let path = if t.v2 {
        if let Some(v) = a.version.filter(|v| *v > 0) {
            query.push(("version".to_string(), v.to_string()));
        }
        t.api_path("data")
    } else {
        t.api_path("")
    };
    let secret = ctx
        .client
        .read(&path, &query)
        .await
        .map_err(|e| CliError::api(format!("Error reading {path}"), e))?
        .ok_or_else(|| CliError::remote(format!("No value found at {path}")))?;
    if let Some(field) = &ctx.out.field {
        if !t.v2 {
            return ctx.out.raw_field(secret_field(&secret, field), field);
        }
        let Some(data) = secret.pointer("/data/data").filter(|d| !d.is_null()) else {
            return Err(CliError::remote(format!("No data found at {path}")));
        };
        if field == "data" && data.get("data").is_none() {
            return ctx.out.raw_field(secret_field(&secret, field), field);
        }
        return ctx
            .out
            .raw_field(data.get(field).filter(|v| !v.is_null()), field);
    }
    if !ctx.out.is_table() {
        ctx.out.structured(&secret)?;
        return Ok(0);
    }
    print_warnings(&secret);
    if t.v2 {
        print_path(&path, "Secret Path");
        if let Some(md) = secret.pointer("/data/metadata").and_then(Value::as_object) {
            print_map_section(&ctx, "Metadata", md)?;
            crate::outln!();
        }
    }
    let data = if t.v2 {
        secret.pointer("/data/data")
    } else {
        secret.get("data")
    };
    if let Some(d) = data.and_then(Value::as_object) {
        print_map_section(&ctx, "Data", d)?;
    }
    Ok(0)
}

async fn put(a: KvPutArgs) -> CmdResult {
    let data = parse_data(&a.data)?;
    if data.is_empty() {
        return Err(CliError::usage("Must supply data"));
    }
    let ctx = a.global.ctx()?;
    let t = resolve(&ctx, a.mount.as_deref(), &a.path).await?;
    let (path, body) = if t.v2 {
        let mut body = json!({ "data": data });
        if let Some(cas) = a.cas.filter(|c| *c >= 0) {
            body["options"] = json!({ "cas": cas });
        }
        (t.api_path("data"), body)
    } else {
        (t.api_path(""), Value::Object(data))
    };
    let secret = ctx
        .client
        .write(&path, &body)
        .await
        .map_err(|e| CliError::api(format!("Error writing data to {path}"), e))?;
    output_written(&ctx, &t, &path, secret)
}

/// Read the latest version, merge `new`, and write it back with CAS on the version
/// read (`kv patch -method=rw`).
async fn read_then_write(
    ctx: &Ctx,
    path: &str,
    new: &Map<String, Value>,
) -> Result<Option<Value>, CliError> {
    let secret = ctx
        .client
        .read(path, &[])
        .await
        .map_err(|e| CliError::api(format!("Error doing pre-read at {path}"), e))?
        .ok_or_else(|| CliError::remote(format!("No value found at {path}")))?;
    let version = secret
        .pointer("/data/metadata/version")
        .cloned()
        .filter(|v| !v.is_null())
        .ok_or_else(|| {
            CliError::remote(format!(
                "No metadata found at {path}; patch only works on existing data"
            ))
        })?;
    let mut data = secret
        .pointer("/data/data")
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| {
            CliError::remote(format!(
                "No data found at {path}; patch only works on existing data"
            ))
        })?;
    for (k, v) in new {
        data.insert(k.clone(), v.clone());
    }
    ctx.client
        .write(
            path,
            &json!({ "data": data, "options": { "cas": version } }),
        )
        .await
        .map_err(|e| CliError::api(format!("Error writing data to {path}"), e))
}

async fn patch(a: KvPatchArgs) -> CmdResult {
    let data = parse_data(&a.data)?;
    if data.is_empty() {
        return Err(CliError::usage("Must supply data"));
    }
    let method = a.method.as_deref().unwrap_or("");
    if !matches!(method, "" | "patch" | "rw") {
        return Err(CliError::usage(format!(
            "Unsupported method provided to -method flag: {method}"
        )));
    }
    let ctx = a.global.ctx()?;
    let t = resolve(&ctx, a.mount.as_deref(), &a.path).await?;
    if !t.v2 {
        return Err(CliError::remote(
            "K/V engine mount must be version 2 for patch support",
        ));
    }
    let path = t.api_path("data");
    let secret = if method == "rw" {
        read_then_write(&ctx, &path, &data).await?
    } else {
        let mut options = Map::new();
        if let Some(cas) = a.cas.filter(|c| *c >= 0) {
            options.insert("cas".into(), json!(cas));
        }
        let body = json!({ "data": data, "options": options });
        match ctx.client.patch(&path, &body).await {
            Ok(s) => s,
            Err(e) if method.is_empty() && matches!(e.status(), Some(403) | Some(405)) => {
                if e.status() == Some(403) {
                    eprintln!(
                        "Data was written to {path} but we recommend that you add the \"patch\" \
                         capability to your ACL policy in order to use HTTP PATCH in the future."
                    );
                }
                read_then_write(&ctx, &path, &data).await?
            }
            Err(e) => return Err(CliError::api(format!("Error writing data to {path}"), e)),
        }
    };
    output_written(&ctx, &t, &path, secret)
}

async fn list(a: KvPathArgs) -> CmdResult {
    let ctx = a.global.ctx()?;
    let t = resolve(&ctx, a.mount.as_deref(), &a.path).await?;
    let path = if t.v2 {
        t.api_path("metadata")
    } else {
        t.api_path("")
    };
    let secret = ctx
        .client
        .list(&path)
        .await
        .map_err(|e| CliError::api(format!("Error listing {path}"), e))?
        .ok_or_else(|| CliError::remote(format!("No value found at {path}/")))?;
    if let Some(field) = &ctx.out.field {
        return ctx.out.raw_field(secret_field(&secret, field), field);
    }
    ctx.out.list(&secret)
}

async fn delete(a: KvDeleteArgs) -> CmdResult {
    let versions = parse_versions(&a.versions)?;
    let ctx = a.global.ctx()?;
    let t = resolve(&ctx, a.mount.as_deref(), &a.path).await?;
    let path = if t.v2 && !versions.is_empty() {
        let path = t.api_path("delete");
        ctx.client
            .write(&path, &json!({ "versions": versions }))
            .await
            .map_err(|e| CliError::api(format!("Error deleting {path}"), e))?;
        path
    } else {
        let path = if t.v2 {
            t.api_path("data")
        } else {
            t.api_path("")
        };
        ctx.client
            .delete(&path, &[])
            .await
            .map_err(|e| CliError::api(format!("Error deleting {path}"), e))?;
        path
    };
    crate::outln!("Success! Data deleted (if it existed) at: {path}");
    Ok(0)
}

async fn versions_op(a: KvVersionsArgs, op: &str) -> CmdResult {
    let versions = parse_versions(&a.versions)?;
    if versions.is_empty() {
        return Err(CliError::usage(format!(
            "No versions provided, use the \"-versions\" flag to specify the version to {op}."
        )));
    }
    let ctx = a.global.ctx()?;
    let t = resolve(&ctx, a.mount.as_deref(), &a.path).await?;
    if !t.v2 {
        let name = if op == "undelete" {
            "Undelete"
        } else {
            "Destroy"
        };
        return Err(CliError::usage(format!(
            "{name} not supported on KV Version 1"
        )));
    }
    let path = t.api_path(op);
    let secret = ctx
        .client
        .write(&path, &json!({ "versions": versions }))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn target(v2: bool, mount: &str, path: &str, explicit: bool) -> KvTarget {
        KvTarget {
            v2,
            mount: mount.into(),
            path: path.into(),
            explicit_mount: explicit,
        }
    }

    #[test]
    fn api_paths_insert_the_v2_prefix() {
        assert_eq!(
            target(true, "secret/", "secret/foo", false).api_path("data"),
            "secret/data/foo"
        );
        assert_eq!(
            target(true, "secret/", "secret", false).api_path("metadata"),
            "secret/metadata"
        );
        assert_eq!(
            target(true, "team/kv/", "team/kv/a/b", false).api_path("metadata"),
            "team/kv/metadata/a/b"
        );
        assert_eq!(
            target(false, "kv1/", "kv1/foo", false).api_path(""),
            "kv1/foo"
        );
        assert_eq!(
            target(true, "secret/", "foo", true).api_path("data"),
            "secret/data/foo"
        );
        assert_eq!(target(false, "kv1/", "foo", true).api_path(""), "kv1/foo");
    }

    #[test]
    fn versions_come_from_options() {
        assert_eq!(version_of(Some(&json!({"version": "2"}))), 2);
        assert_eq!(version_of(Some(&json!({"version": "1"}))), 1);
        assert_eq!(version_of(Some(&Value::Null)), 1);
        assert_eq!(version_of(None), 1);
    }

    #[test]
    fn versions_parse() {
        assert_eq!(
            parse_versions(&["1".into(), " 2".into()]).unwrap(),
            vec![1, 2]
        );
        assert!(parse_versions(&["x".into()]).is_err());
    }
}
