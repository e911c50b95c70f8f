//! `coffer policy ...`: ACL policies through `sys/policies/acl` (write, read, list,
//! delete) and `fmt`, which rewrites an HCL policy file in canonical formatting.

use std::io::Read;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::{CliError, CmdResult, GlobalArgs};

/// `coffer policy` subcommands.
#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Upload a policy from a file (or - for standard input).
    Write(PolicyWriteArgs),
    /// Print a policy's text.
    Read(PolicyNameArgs),
    /// List the policy names.
    List(PolicyListArgs),
    /// Delete a policy (tokens keep its name but lose its rules).
    Delete(PolicyNameArgs),
    /// Rewrite an HCL policy file in canonical formatting.
    Fmt(PolicyFmtArgs),
}

/// Upload a policy.
#[derive(Args, Debug)]
#[command(
    long_about = "Create or replace the ACL policy NAME with the rules in FILE (HCL or JSON), \
                  or read from standard input when FILE is -.",
    after_help = "Examples:\n  coffer policy write app-read app-read.hcl\n  \
                  cat policy.hcl | coffer policy write app-read -"
)]
pub struct PolicyWriteArgs {
    /// The policy's name.
    pub name: String,
    /// The policy file, or - for standard input.
    pub file: String,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// A command taking a policy name.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  coffer policy read app-read\n  \
                        coffer policy delete app-read")]
pub struct PolicyNameArgs {
    /// The policy's name.
    pub name: String,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// List policies.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  coffer policy list\n  coffer policy list -format=json")]
pub struct PolicyListArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Format a policy file.
#[derive(Args, Debug)]
#[command(
    long_about = "Parse the HCL policy in FILE, check that it is made of path blocks, and \
                  write it back in canonical formatting. Nothing is sent to a server.",
    after_help = "Example:\n  coffer policy fmt app-read.hcl"
)]
pub struct PolicyFmtArgs {
    /// The HCL policy file to rewrite in place.
    pub file: PathBuf,
}

pub async fn run(cmd: PolicyCommand) -> CmdResult {
    match cmd {
        PolicyCommand::Write(a) => write(a).await,
        PolicyCommand::Read(a) => read(a).await,
        PolicyCommand::List(a) => list(a).await,
        PolicyCommand::Delete(a) => delete(a).await,
        PolicyCommand::Fmt(a) => fmt(a),
    }
}

fn policy_path(name: &str) -> String {
    format!("sys/policies/acl/{}", name.trim())
}

async fn write(a: PolicyWriteArgs) -> CmdResult {
    let rules = if a.file == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::usage(format!("Error reading policy from stdin: {e}")))?;
        text
    } else {
        std::fs::read_to_string(&a.file)
            .map_err(|e| CliError::usage(format!("Error opening policy file: {e}")))?
    };
    let ctx = a.global.ctx()?;
    let name = a.name.trim().to_lowercase();
    ctx.client
        .write(&policy_path(&name), &json!({ "policy": rules }))
        .await
        .map_err(|e| CliError::api("Error uploading policy", e))?;
    crate::outln!("Success! Uploaded policy: {name}");
    Ok(0)
}

async fn read(a: PolicyNameArgs) -> CmdResult {
    let ctx = a.global.ctx()?;
    let name = a.name.trim().to_lowercase();
    let resp = ctx
        .client
        .read(&policy_path(&name), &[])
        .await
        .map_err(|e| CliError::api("Error reading policy named", e))?
        .ok_or_else(|| CliError::remote(format!("No policy named: {name}")))?;
    let rules = resp
        .pointer("/data/policy")
        .or_else(|| resp.get("policy"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if let Some(field) = &ctx.out.field {
        return ctx.out.raw_field(super::data_of(&resp).get(field), field);
    }
    if ctx.out.is_table() {
        crate::outln!("{}", rules.trim());
    } else {
        ctx.out.structured(&json!({ "policy": rules }))?;
    }
    Ok(0)
}

async fn list(a: PolicyListArgs) -> CmdResult {
    let ctx = a.global.ctx()?;
    let resp = ctx
        .client
        .list("sys/policies/acl")
        .await
        .map_err(|e| CliError::api("Error listing policies", e))?
        .unwrap_or(Value::Null);
    let mut names: Vec<String> = resp
        .pointer("/data/keys")
        .or_else(|| resp.get("keys"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    if ctx.out.is_table() {
        for n in &names {
            crate::outln!("{n}");
        }
    } else {
        ctx.out.structured(&json!(names))?;
    }
    Ok(0)
}

async fn delete(a: PolicyNameArgs) -> CmdResult {
    let ctx = a.global.ctx()?;
    let name = a.name.trim().to_lowercase();
    ctx.client
        .delete(&policy_path(&name), &[])
        .await
        .map_err(|e| CliError::api(format!("Error deleting {name}"), e))?;
    crate::outln!("Success! Deleted policy: {name}");
    Ok(0)
}

/// Parse an HCL policy, check its shape, and return it canonically formatted.
pub fn format_policy(text: &str) -> Result<String, String> {
    let body: hcl::Body = hcl::parse(text).map_err(|e| e.to_string())?;
    for attr in body.attributes() {
        if attr.key() != "name" {
            return Err(format!(
                "unexpected attribute {:?} at the top level",
                attr.key()
            ));
        }
    }
    for block in body.blocks() {
        if block.identifier() != "path" {
            return Err(format!(
                "unexpected block {:?}: a policy is made of path blocks",
                block.identifier()
            ));
        }
        if block.labels().len() != 1 {
            return Err("a path block takes exactly one label: the path".into());
        }
    }
    let mut buf = Vec::new();
    let mut formatter = hcl::format::Formatter::builder()
        .compact_arrays(true)
        .build(&mut buf);
    hcl::format::Format::format(&body, &mut formatter).map_err(|e| e.to_string())?;
    let mut out = String::from_utf8(buf).map_err(|e| e.to_string())?;
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

fn fmt(a: PolicyFmtArgs) -> CmdResult {
    let text = std::fs::read_to_string(&a.file)
        .map_err(|e| CliError::usage(format!("Error opening policy file: {e}")))?;
    let formatted = format_policy(&text)
        .map_err(|e| CliError::usage(format!("Failed to parse policy: {e}")))?;
    std::fs::write(&a.file, formatted)
        .map_err(|e| CliError::usage(format!("Error writing formatted policy: {e}")))?;
    crate::outln!("Success! Formatted policy: {}", a.file.display());
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fmt_normalises_and_checks_shape() {
        let out = format_policy("path \"secret/*\" {capabilities=[\"read\",\"list\"]}").unwrap();
        assert!(out.contains("path \"secret/*\" {"), "{out}");
        assert!(out.contains("capabilities = [\"read\", \"list\"]"), "{out}");
        assert!(format_policy("foo \"x\" {}").is_err());
        assert!(format_policy("path \"x\" {").is_err());
    }
}
