//! Command-line parsing. Vault's CLI takes single-dash long flags (`-dev`,
//! `-config=FILE`); clap wants double dashes, so `normalize_args` rewrites them first.
//! `server` and `version` are handled here; every other command is the operator CLI
//! in `crate::commands`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::server::ServerArgs;

/// Coffer: a secrets-management server that speaks HashiCorp Vault's HTTP API.
#[derive(Parser, Debug)]
#[command(
    name = "coffer",
    bin_name = "coffer",
    version,
    about,
    long_about = "Coffer: a secrets-management server that speaks HashiCorp Vault's HTTP API.\n\n\
                  `coffer server` runs a server. Every other command is the operator CLI, \
                  which talks to a server over HTTP(S) like the `vault` CLI does, with the \
                  same commands, flags (single or double dash: -format=json or --format=json), \
                  output and exit codes, so a Vault runbook works with `vault` replaced by \
                  `coffer`.",
    after_help = "Environment:\n  \
                  COFFER_ADDR, VAULT_ADDR        server address (default https://127.0.0.1:8200)\n  \
                  COFFER_TOKEN, VAULT_TOKEN      token; else the token helper file ~/.coffer-token\n  \
                  VAULT_CACERT, VAULT_CAPATH     CA certificate(s) that verify the server\n  \
                  VAULT_SKIP_VERIFY              do not verify the server's certificate (insecure)\n  \
                  VAULT_NAMESPACE                sent as X-Vault-Namespace\n  \
                  VAULT_FORMAT                   default output format (table, json, yaml)\n  \
                  VAULT_CLIENT_TIMEOUT           per-request timeout (default 60s)\n\
                  Each VAULT_* variable may also be spelled COFFER_*, which wins.\n\n\
                  Exit codes: 0 success, 1 local error (bad flags or arguments), 2 remote error \
                  (the server refused or could not be reached); `status`: 0 unsealed, 2 sealed.\n\n\
                  Examples:\n  \
                  coffer server -dev -dev-root-token-id=root\n  \
                  export VAULT_ADDR=http://127.0.0.1:8200 VAULT_TOKEN=root\n  \
                  coffer status\n  \
                  coffer kv put secret/app password=s3cr3t\n  \
                  coffer kv get -field=password secret/app"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a Coffer server.
    ///
    /// Runs a server from a Vault-format configuration file (HCL or JSON), or with
    /// -dev an in-memory, already-unsealed development server on 127.0.0.1:8200.
    ///
    /// Example:
    ///   coffer server -config=/etc/coffer/config.hcl
    ///   coffer server -dev -dev-root-token-id=root
    Server {
        /// Path to a configuration file (may be repeated; later files win).
        #[arg(long = "config", value_name = "FILE")]
        config: Vec<PathBuf>,
        /// Start an in-memory, unsealed development server over plain HTTP.
        #[arg(long)]
        dev: bool,
        /// The root token to create in dev mode (default: random).
        #[arg(
            long = "dev-root-token-id",
            value_name = "TOKEN",
            env = "VAULT_DEV_ROOT_TOKEN_ID"
        )]
        dev_root_token_id: Option<String>,
        /// The address the dev server listens on.
        #[arg(
            long = "dev-listen-address",
            value_name = "ADDR",
            env = "VAULT_DEV_LISTEN_ADDRESS"
        )]
        dev_listen_address: Option<String>,
        /// Log level: trace, debug, info, warn, error.
        #[arg(long = "log-level", value_name = "LEVEL")]
        log_level: Option<String>,
    },
    /// Print the version.
    Version,
    #[command(flatten)]
    Client(Box<crate::commands::ClientCommand>),
}

/// Rewrite Vault-style `-flag` / `-flag=value` into `--flag` / `--flag=value`.
/// A lone `-` (stdin) and everything after `--` are left alone.
pub fn normalize_args<I: IntoIterator<Item = String>>(args: I) -> Vec<String> {
    let mut out = Vec::new();
    let mut passthrough = false;
    for (i, arg) in args.into_iter().enumerate() {
        if i == 0 || passthrough {
            out.push(arg);
            continue;
        }
        if arg == "--" {
            passthrough = true;
            out.push(arg);
            continue;
        }
        let bytes = arg.as_bytes();
        if bytes.len() > 2 && bytes[0] == b'-' && bytes[1] != b'-' && bytes[1].is_ascii_alphabetic()
        {
            out.push(format!("-{arg}"));
        } else {
            out.push(arg);
        }
    }
    out
}

/// Run the CLI with the process arguments; returns the exit code.
pub fn main_entry() -> i32 {
    let args = normalize_args(std::env::args());
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 1 } else { 0 };
        }
    };
    match cli.command {
        Command::Client(cmd) => crate::commands::run(*cmd),
        Command::Version => {
            println!(
                "Coffer v{} (Vault API {})",
                env!("CARGO_PKG_VERSION"),
                coffer_core::VAULT_VERSION
            );
            0
        }
        Command::Server {
            config,
            dev,
            dev_root_token_id,
            dev_listen_address,
            log_level,
        } => {
            let args = ServerArgs {
                config,
                dev,
                dev_root_token_id,
                dev_listen_address,
                log_level,
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("Error starting the runtime: {e}");
                    return 1;
                }
            };
            match runtime.block_on(crate::server::run(args)) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("Error: {e:#}");
                    1
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_dash_flags_become_long() {
        let got = normalize_args(
            [
                "coffer",
                "server",
                "-dev",
                "-config=a.hcl",
                "-",
                "--x",
                "-v",
                "--",
                "-keep",
            ]
            .map(String::from),
        );
        assert_eq!(
            got,
            [
                "coffer",
                "server",
                "--dev",
                "--config=a.hcl",
                "-",
                "--x",
                "-v",
                "--",
                "-keep"
            ]
        );
    }
}
