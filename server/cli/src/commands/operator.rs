//! `coffer operator ...`: the seal ceremony (`init`, `unseal`, `seal`), the keyring
//! (`rotate`, `key-status`), `step-down`, and the families in their own modules:
//! `generate-root` and `rekey` (rootgen.rs) and `raft` (raft.rs).

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::raft::{self, RaftCommand};
use super::rootgen::{self, GenerateRootArgs, RekeyArgs};
use super::status::print_seal_status;
use super::{CliError, CmdResult, GlobalArgs};
use crate::input::prompt_secret;
use crate::output::columnize;

/// `coffer operator` subcommands.
#[derive(Subcommand, Debug)]
pub enum OperatorCommand {
    /// Initialise a new server: create the unseal key shares and the root token.
    Init(InitArgs),
    /// Submit one unseal key share (prompted for without echo if not given).
    Unseal(UnsealArgs),
    /// Seal the server: it forgets its keys until unsealed again.
    Seal(SealArgs),
    /// Add a new encryption key term to the keyring.
    Rotate(SimpleArgs),
    /// Show the current encryption key term.
    KeyStatus(SimpleArgs),
    /// Make the active node step down so another node becomes active.
    StepDown(SimpleArgs),
    /// Generate a new root token from a quorum of unseal key shares.
    GenerateRoot(GenerateRootArgs),
    /// Replace the unseal key shares (new shares and threshold).
    Rekey(RekeyArgs),
    /// Manage the Raft cluster: join, list-peers, remove-peer, snapshots.
    #[command(subcommand)]
    Raft(RaftCommand),
}

/// Initialise a new server.
#[derive(Args, Debug)]
#[command(
    long_about = "Initialise a new server: split a fresh unseal key into -key-shares shares \
                  of which -key-threshold are needed to unseal, and create the initial root \
                  token. The server is sealed afterwards. The shares and the root token are \
                  shown once and never stored by the server: distribute them now.",
    after_help = "Examples:\n  coffer operator init\n  \
                  coffer operator init -key-shares=5 -key-threshold=3 -format=json > init.json\n  \
                  coffer operator init -status   # exit 0 initialised, 2 not"
)]
pub struct InitArgs {
    /// Number of unseal key shares to create.
    #[arg(long = "key-shares", default_value_t = 5, value_name = "N")]
    pub key_shares: u32,
    /// Number of shares needed to unseal.
    #[arg(long = "key-threshold", default_value_t = 3, value_name = "N")]
    pub key_threshold: u32,
    /// Only report whether the server is initialised (exit 0 yes, 2 no, 1 error).
    #[arg(long)]
    pub status: bool,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Submit one unseal key share.
#[derive(Args, Debug)]
#[command(
    long_about = "Submit one unseal key share (hex or base64). Run it once per share until \
                  the threshold is reached; the seal status is printed after each. Without \
                  KEY the share is read without echo from the terminal (or one line of \
                  standard input when it is not a terminal), so it stays out of shell history.",
    after_help = "Examples:\n  coffer operator unseal\n  coffer operator unseal 'aGVsbG8...'\n  \
                  coffer operator unseal -reset"
)]
pub struct UnsealArgs {
    /// The unseal key share; prompted for when absent.
    pub key: Option<String>,
    /// Discard the shares submitted so far.
    #[arg(long)]
    pub reset: bool,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Seal the server.
#[derive(Args, Debug)]
#[command(
    long_about = "Seal the server. It drops its key material and answers 503 to every secret \
                  path until a quorum of unseal key shares is submitted again. Needs a token \
                  with sudo on sys/seal.",
    after_help = "Example:\n  coffer operator seal"
)]
pub struct SealArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Commands that take only the common flags.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  coffer operator rotate\n  coffer operator key-status\n  \
                        coffer operator step-down"
)]
pub struct SimpleArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
}

pub async fn run(cmd: OperatorCommand) -> CmdResult {
    match cmd {
        OperatorCommand::Init(a) => init(a).await,
        OperatorCommand::Unseal(a) => unseal(a).await,
        OperatorCommand::Seal(a) => seal(a).await,
        OperatorCommand::Rotate(a) => rotate(a).await,
        OperatorCommand::KeyStatus(a) => key_status(a).await,
        OperatorCommand::StepDown(a) => step_down(a).await,
        OperatorCommand::GenerateRoot(a) => rootgen::generate_root(a).await,
        OperatorCommand::Rekey(a) => rootgen::rekey(a).await,
        OperatorCommand::Raft(c) => raft::run(c).await,
    }
}

fn strings(v: &Value, key: &str) -> Vec<Value> {
    v.get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

async fn init(args: InitArgs) -> CmdResult {
    let ctx = args.global.ctx()?;
    if args.status {
        let resp = ctx
            .client
            .read("sys/init", &[])
            .await
            .map_err(|e| CliError::usage(format!("Error checking init status: {e}")))?
            .unwrap_or(Value::Null);
        return if resp.get("initialized").and_then(Value::as_bool) == Some(true) {
            crate::outln!("Coffer is initialized");
            Ok(0)
        } else {
            crate::outln!("Coffer is not initialized");
            Ok(2)
        };
    }
    let body = json!({
        "secret_shares": args.key_shares,
        "secret_threshold": args.key_threshold,
    });
    let resp = ctx
        .client
        .write("sys/init", &body)
        .await
        .map_err(|e| CliError::api("Error initializing", e))?
        .unwrap_or(Value::Null);
    let keys_b64 = strings(&resp, "keys_base64");
    let keys_hex = strings(&resp, "keys");
    let root = resp
        .get("root_token")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    // Vault's `operator init -format=json` shape (machineInit).
    let machine = json!({
        "unseal_keys_b64": keys_b64,
        "unseal_keys_hex": keys_hex,
        "unseal_shares": if keys_b64.is_empty() { 1 } else { args.key_shares },
        "unseal_threshold": if keys_b64.is_empty() { 1 } else { args.key_threshold },
        "recovery_keys_b64": strings(&resp, "recovery_keys_base64"),
        "recovery_keys_hex": strings(&resp, "recovery_keys"),
        "recovery_keys_shares": 0,
        "recovery_keys_threshold": 0,
        "root_token": root,
    });
    if let Some(field) = &ctx.out.field {
        return ctx.out.raw_field(machine.get(field), field);
    }
    if !ctx.out.is_table() {
        ctx.out.structured(&machine)?;
        return Ok(0);
    }
    for (i, k) in keys_b64.iter().enumerate() {
        crate::outln!("Unseal Key {}: {}", i + 1, k.as_str().unwrap_or_default());
    }
    crate::outln!();
    crate::outln!("Initial Root Token: {root}");
    crate::outln!();
    let t = args.key_threshold;
    crate::outln!(
        "Coffer initialized with {} key shares and a key threshold of {t}. Please\n\
         securely distribute the key shares printed above. When the server is re-sealed,\n\
         restarted, or stopped, you must supply at least {t} of these keys to unseal it\n\
         before it can start servicing requests.\n\n\
         Coffer does not store the generated root key. Without at least {t} keys to\n\
         reconstruct the root key, Coffer will remain permanently sealed!\n\n\
         It is possible to generate new unseal keys, provided you have a quorum of\n\
         existing unseal keys shares. See \"coffer operator rekey\" for more information.",
        args.key_shares
    );
    Ok(0)
}

async fn unseal(args: UnsealArgs) -> CmdResult {
    let ctx = args.global.ctx()?;
    let body = if args.reset {
        json!({ "reset": true })
    } else {
        let key = match args.key.filter(|k| !k.trim().is_empty()) {
            Some(k) => k.trim().to_string(),
            None => {
                let k = prompt_secret("Unseal Key (will be hidden): ")?;
                if k.is_empty() {
                    return Err(CliError::usage(
                        "Error unsealing: missing unseal key (it was empty)",
                    ));
                }
                k
            }
        };
        json!({ "key": key })
    };
    let status = ctx
        .client
        .write("sys/unseal", &body)
        .await
        .map_err(|e| CliError::api("Error unsealing", e))?
        .unwrap_or(Value::Null);
    print_seal_status(&ctx, &status).await?;
    Ok(0)
}

async fn seal(args: SealArgs) -> CmdResult {
    let ctx = args.global.ctx()?;
    ctx.client
        .write("sys/seal", &json!({}))
        .await
        .map_err(|e| CliError::api("Error sealing", e))?;
    crate::outln!("Success! Coffer is sealed.");
    Ok(0)
}

/// Vault's `printKeyStatus` rows; the install time in Go's RFC822 layout.
fn key_status_table(data: &Value) -> String {
    let install = data
        .get("install_time")
        .and_then(Value::as_str)
        .map(|t| match chrono::DateTime::parse_from_rfc3339(t) {
            Ok(dt) => dt
                .with_timezone(&chrono::Utc)
                .format("%d %b %y %H:%M UTC")
                .to_string(),
            Err(_) => t.to_string(),
        })
        .unwrap_or_default();
    let s = |k: &str| data.get(k).map(|v| v.to_string()).unwrap_or_default();
    columnize(&[
        vec!["Key Term".into(), s("term")],
        vec!["Install Time".into(), install],
        vec!["Encryption Count".into(), s("encryptions")],
    ])
}

async fn read_key_status(ctx: &super::Ctx) -> Result<Value, CliError> {
    let resp = ctx
        .client
        .read("sys/key-status", &[])
        .await
        .map_err(|e| CliError::api("Error reading key status", e))?
        .unwrap_or(Value::Null);
    Ok(Value::Object(super::data_of(&resp)))
}

async fn rotate(args: SimpleArgs) -> CmdResult {
    let ctx = args.global.ctx()?;
    ctx.client
        .write("sys/rotate", &json!({}))
        .await
        .map_err(|e| CliError::api("Error rotating key", e))?;
    let status = read_key_status(&ctx).await?;
    if !ctx.out.is_table() || ctx.out.field.is_some() {
        return ctx.out.data(&status);
    }
    crate::outln!("Success! Rotated key");
    crate::outln!();
    crate::outln!("{}", key_status_table(&status));
    Ok(0)
}

async fn key_status(args: SimpleArgs) -> CmdResult {
    let ctx = args.global.ctx()?;
    let status = read_key_status(&ctx).await?;
    if !ctx.out.is_table() || ctx.out.field.is_some() {
        return ctx.out.data(&status);
    }
    crate::outln!("{}", key_status_table(&status));
    Ok(0)
}

async fn step_down(args: SimpleArgs) -> CmdResult {
    let ctx = args.global.ctx()?;
    ctx.client
        .write("sys/step-down", &json!({}))
        .await
        .map_err(|e| CliError::api("Error stepping down", e))?;
    crate::outln!("Success! Stepped down: {}", ctx.client.address());
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_status_uses_rfc822() {
        let t = key_status_table(&json!({
            "term": 2, "install_time": "2024-03-05T10:20:30.123Z", "encryptions": 7
        }));
        assert_eq!(
            t,
            "Key Term            2\nInstall Time        05 Mar 24 10:20 UTC\nEncryption Count    7"
        );
    }
}
