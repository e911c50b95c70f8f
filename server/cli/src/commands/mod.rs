//! The operator CLI: every `coffer` subcommand except `server` and `version`. Each
//! module is one command family shaped like its `vault` counterpart (same names, flags,
//! output and exit codes) so a Vault runbook works with `vault` replaced by `coffer`.
//!
//! Exit codes follow Vault's documented convention: 0 success, 1 a local error (bad
//! flags or arguments, unreadable files), 2 a remote error (the server refused or
//! could not be reached). `status` is the exception Vault makes too: 0 unsealed,
//! 2 sealed, 1 error.

pub mod audit;
pub mod completion;
pub mod generic;
pub mod kv;
pub mod kv_metadata;
pub mod lease;
pub mod login;
pub mod mounts;
pub mod operator;
pub mod policy;
pub mod raft;
pub mod rootgen;
pub mod status;
pub mod token;

use std::fmt::Display;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::client::{self, ApiError, Client, ClientConfig};
use crate::output::{Format, Output};

/// A failed command: what to print on stderr and the exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub message: String,
}

impl CliError {
    /// A local error (bad arguments, unreadable file): exit 1.
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            code: 1,
            message: message.into(),
        }
    }

    /// A remote error (the server said no, or could not be reached): exit 2.
    pub fn remote(message: impl Into<String>) -> CliError {
        CliError {
            code: 2,
            message: message.into(),
        }
    }

    /// A failed API call, prefixed like Vault's (`Error reading secret/foo: ...`).
    pub fn api(context: impl Display, e: ApiError) -> CliError {
        CliError::remote(format!("{context}: {e}"))
    }

    /// Exit with `code` and nothing more to say.
    pub fn exit(code: i32) -> CliError {
        CliError {
            code,
            message: String::new(),
        }
    }
}

/// A command's result: the exit code to use on success paths that are not 0
/// (`status` when sealed), or the error.
pub type CmdResult = Result<i32, CliError>;

/// Flags every client command takes (Vault's "HTTP Options" and "Output Options").
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "HTTP and output options")]
pub struct GlobalArgs {
    /// Address of the server [env: COFFER_ADDR, VAULT_ADDR] [default: https://127.0.0.1:8200].
    #[arg(long, value_name = "ADDR")]
    pub address: Option<String>,
    /// PEM file of CA certificates that verify the server [env: VAULT_CACERT].
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Directory of PEM CA certificates that verify the server [env: VAULT_CAPATH].
    #[arg(long = "ca-path", value_name = "DIR")]
    pub ca_path: Option<PathBuf>,
    /// Do not verify the server's certificate; insecure [env: VAULT_SKIP_VERIFY].
    #[arg(
        long = "tls-skip-verify",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub tls_skip_verify: Option<bool>,
    /// Namespace, sent as X-Vault-Namespace [env: VAULT_NAMESPACE].
    #[arg(long, alias = "ns", value_name = "NS")]
    pub namespace: Option<String>,
    /// Output format: table, json or yaml [env: VAULT_FORMAT] [default: table].
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Print only this field's value, raw (no newline when piped).
    #[arg(long, value_name = "NAME")]
    pub field: Option<String>,
}

/// What one command run needs: the client and the output settings.
pub struct Ctx {
    pub client: Client,
    pub out: Output,
}

fn parse_timeout(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    match unit {
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n * 60)),
        "h" => Some(Duration::from_secs(n * 3600)),
        _ => None,
    }
}

impl GlobalArgs {
    /// Resolve flags and environment into a client configuration.
    pub fn client_config(&self) -> Result<ClientConfig, CliError> {
        let address = self
            .address
            .clone()
            .or_else(|| client::env_var("ADDR"))
            .unwrap_or_else(|| client::DEFAULT_ADDRESS.to_string());
        if !(address.starts_with("http://") || address.starts_with("https://")) {
            return Err(CliError::usage(format!(
                "Error parsing the address {address:?}: it must start with http:// or https://"
            )));
        }
        let skip_verify = match self.tls_skip_verify {
            Some(b) => b,
            None => match client::env_var("SKIP_VERIFY") {
                Some(v) => client::parse_bool(&v).ok_or_else(|| {
                    CliError::usage("could not parse VAULT_SKIP_VERIFY".to_string())
                })?,
                None => false,
            },
        };
        let timeout = client::env_var("CLIENT_TIMEOUT")
            .and_then(|t| parse_timeout(&t))
            .unwrap_or(Duration::from_secs(60));
        Ok(ClientConfig {
            address,
            token: client::env_var("TOKEN").or_else(client::read_token_helper),
            ca_cert: self
                .ca_cert
                .clone()
                .or_else(|| client::env_var("CACERT").map(PathBuf::from)),
            ca_path: self
                .ca_path
                .clone()
                .or_else(|| client::env_var("CAPATH").map(PathBuf::from)),
            skip_verify,
            namespace: self
                .namespace
                .clone()
                .or_else(|| client::env_var("NAMESPACE")),
            timeout,
        })
    }

    /// The output settings.
    pub fn output(&self) -> Result<Output, CliError> {
        let format = self
            .format
            .clone()
            .or_else(|| client::env_var("FORMAT"))
            .unwrap_or_else(|| "table".into());
        Ok(Output {
            format: Format::parse(&format)?,
            field: self.field.clone().filter(|f| !f.is_empty()),
        })
    }

    /// Build the client and output settings for a command.
    pub fn ctx(&self) -> Result<Ctx, CliError> {
        let out = self.output()?;
        let config = self.client_config()?;
        let client = Client::new(&config).map_err(|e| CliError::remote(e.to_string()))?;
        Ok(Ctx { client, out })
    }
}

/// Every operator-CLI command.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Print the seal status of the server (exit 0 unsealed, 2 sealed, 1 error).
    Status(status::StatusArgs),
    /// Authenticate and store the token in the token helper (~/.coffer-token).
    Login(login::LoginArgs),
    /// Read data at any API path.
    Read(generic::ReadArgs),
    /// Write data to any API path.
    Write(generic::WriteArgs),
    /// List the keys under any API path.
    List(generic::ListArgs),
    /// Delete data at any API path.
    Delete(generic::DeleteArgs),
    /// Merge-patch data at any API path.
    Patch(generic::PatchArgs),
    /// Work with the KV (key/value) secrets engine, version 1 or 2.
    #[command(subcommand)]
    Kv(kv::KvCommand),
    /// Operate the server: init, unseal, seal, rotate, rekey, generate-root, raft.
    #[command(subcommand)]
    Operator(operator::OperatorCommand),
    /// Enable, disable, list, tune and move secrets engines.
    #[command(subcommand)]
    Secrets(mounts::SecretsCommand),
    /// Enable, disable, list and tune auth methods.
    #[command(subcommand)]
    Auth(mounts::AuthCommand),
    /// Write, read, list, delete and format ACL policies.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Create, look up, renew and revoke tokens; show their capabilities.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Renew, revoke and look up leases.
    #[command(subcommand)]
    Lease(lease::LeaseCommand),
    /// Enable, disable and list audit devices.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion(completion::CompletionArgs),
}

/// Run one client command and return the process exit code, printing errors to
/// stderr.
pub fn run(cmd: ClientCommand) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error starting the runtime: {e}");
            return 1;
        }
    };
    let result = runtime.block_on(dispatch(cmd));
    match result {
        Ok(code) => code,
        Err(e) => {
            if !e.message.is_empty() {
                eprintln!("{}", e.message);
            }
            e.code
        }
    }
}

async fn dispatch(cmd: ClientCommand) -> CmdResult {
    match cmd {
        ClientCommand::Status(a) => status::run(a).await,
        ClientCommand::Login(a) => login::run(a).await,
        ClientCommand::Read(a) => generic::read(a).await,
        ClientCommand::Write(a) => generic::write(a).await,
        ClientCommand::List(a) => generic::list(a).await,
        ClientCommand::Delete(a) => generic::delete(a).await,
        ClientCommand::Patch(a) => generic::patch(a).await,
        ClientCommand::Kv(c) => kv::run(c).await,
        ClientCommand::Operator(c) => operator::run(c).await,
        ClientCommand::Secrets(c) => mounts::run_secrets(c).await,
        ClientCommand::Auth(c) => mounts::run_auth(c).await,
        ClientCommand::Policy(c) => policy::run(c).await,
        ClientCommand::Token(c) => token::run(c).await,
        ClientCommand::Lease(c) => lease::run(c).await,
        ClientCommand::Audit(c) => audit::run(c).await,
        ClientCommand::Completion(a) => completion::run(a),
    }
}

/// `path` without leading or trailing slashes (Vault's `sanitizePath`).
pub fn sanitize_path(path: &str) -> String {
    path.trim().trim_matches('/').to_string()
}

/// `path` with exactly one trailing slash (mount paths are shown that way).
pub fn with_trailing_slash(path: &str) -> String {
    format!("{}/", path.trim().trim_matches('/'))
}

/// The `data` object of a response, or for responses that copy it to the top level
/// (`sys/mounts`, `sys/auth`), the top level minus the envelope keys.
pub fn data_of(resp: &serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    if let Some(d) = resp.get("data").and_then(|d| d.as_object()) {
        return d.clone();
    }
    resp.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !coffer_http::envelope::ENVELOPE_KEYS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Usage error unless exactly `want` positional arguments were given (Vault's
/// wording).
pub fn expect_args<T>(args: &[T], want: usize) -> Result<(), CliError> {
    if args.len() < want {
        return Err(CliError::usage(format!(
            "Not enough arguments (expected {want}, got {})",
            args.len()
        )));
    }
    if args.len() > want {
        return Err(CliError::usage(format!(
            "Too many arguments (expected {want}, got {})",
            args.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse() {
        assert_eq!(parse_timeout("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_timeout("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_timeout("x"), None);
    }

    #[test]
    fn paths_are_sanitised() {
        assert_eq!(sanitize_path("/secret/foo/"), "secret/foo");
        assert_eq!(with_trailing_slash("kv1"), "kv1/");
        assert_eq!(with_trailing_slash("kv1/"), "kv1/");
    }
}
