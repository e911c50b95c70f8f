//! `coffer lease ...`: renew, revoke (one lease or every lease under a prefix) and
//! look up leases through `sys/leases/*`.

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::{CliError, CmdResult, GlobalArgs};

/// `coffer lease` subcommands.
#[derive(Subcommand, Debug)]
pub enum LeaseCommand {
    /// Extend a lease.
    Renew(LeaseRenewArgs),
    /// Revoke a lease, or every lease under a prefix with -prefix.
    Revoke(LeaseRevokeArgs),
    /// Show a lease's issue and expiry times.
    Lookup(LeaseLookupArgs),
}

/// Renew a lease.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  coffer lease renew database/creds/app/2f6a...\n  \
                        coffer lease renew -increment=1h database/creds/app/2f6a..."
)]
pub struct LeaseRenewArgs {
    /// The lease ID.
    pub lease_id: String,
    /// Requested extension (e.g. 1h); the server may grant less.
    #[arg(long, value_name = "DURATION")]
    pub increment: Option<String>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Revoke leases.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  coffer lease revoke database/creds/app/2f6a...\n  \
                        coffer lease revoke -prefix database/creds/app\n  \
                        coffer lease revoke -force -prefix database/creds/app"
)]
pub struct LeaseRevokeArgs {
    /// The lease ID, or with -prefix a lease ID prefix.
    pub lease_id: String,
    /// Revoke every lease whose ID starts with the argument.
    #[arg(long)]
    pub prefix: bool,
    /// With -prefix: remove the leases even if the backend cannot revoke them.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Look up a lease.
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  coffer lease lookup database/creds/app/2f6a...")]
pub struct LeaseLookupArgs {
    /// The lease ID.
    pub lease_id: String,
    #[command(flatten)]
    pub global: GlobalArgs,
}

pub async fn run(cmd: LeaseCommand) -> CmdResult {
    match cmd {
        LeaseCommand::Renew(a) => renew(a).await,
        LeaseCommand::Revoke(a) => revoke(a).await,
        LeaseCommand::Lookup(a) => lookup(a).await,
    }
}

async fn renew(a: LeaseRenewArgs) -> CmdResult {
    let ctx = a.global.ctx()?;
    let mut body = Map::new();
    body.insert("lease_id".into(), json!(a.lease_id.trim()));
    if let Some(i) = &a.increment {
        body.insert("increment".into(), json!(i));
    }
    let secret = ctx
        .client
        .write("sys/leases/renew", &Value::Object(body))
        .await
        .map_err(|e| CliError::api("Error renewing lease", e))?
        .ok_or_else(|| CliError::remote("Error renewing lease: the server returned nothing"))?;
    ctx.out.secret(&secret)
}

async fn revoke(a: LeaseRevokeArgs) -> CmdResult {
    if a.force && !a.prefix {
        return Err(CliError::usage(
            "Specifying -force requires also specifying -prefix",
        ));
    }
    let ctx = a.global.ctx()?;
    let id = a.lease_id.trim();
    if a.prefix {
        let kind = if a.force {
            "revoke-force"
        } else {
            "revoke-prefix"
        };
        ctx.client
            .write(&format!("sys/leases/{kind}/{id}"), &json!({}))
            .await
            .map_err(|e| CliError::api(format!("Error revoking leases with prefix {id}"), e))?;
        crate::outln!("Success! Revoked any leases with prefix: {id}");
    } else {
        ctx.client
            .write("sys/leases/revoke", &json!({ "lease_id": id }))
            .await
            .map_err(|e| CliError::api(format!("Error revoking lease {id}"), e))?;
        crate::outln!("Success! Revoked lease: {id}");
    }
    Ok(0)
}

async fn lookup(a: LeaseLookupArgs) -> CmdResult {
    let ctx = a.global.ctx()?;
    let secret = ctx
        .client
        .write(
            "sys/leases/lookup",
            &json!({ "lease_id": a.lease_id.trim() }),
        )
        .await
        .map_err(|e| CliError::api("Error looking up lease", e))?
        .ok_or_else(|| CliError::remote("Error looking up lease: the server returned nothing"))?;
    ctx.out.secret(&secret)
}
