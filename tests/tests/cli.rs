//! The operator CLI end to end: the `coffer` binary run as a process (as an operator
//! would) against real servers. The unseal ceremony over TLS, KV v1 and v2, output
//! formats, policies and tokens (with a 403), login and the token helper file, mounts,
//! leases, audit devices, generate-root, rekey, and shell completion.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::harness::{binary, Server};

/// What a CLI run printed and how it exited.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.stdout).with_context(|| format!("not JSON: {}", self.stdout))
    }

    /// The value column of a `Key  Value` table row.
    fn row(&self, key: &str) -> Option<String> {
        self.stdout.lines().find_map(|line| {
            let rest = line.strip_prefix(key)?;
            rest.starts_with("  ").then(|| rest.trim().to_string())
        })
    }

    /// Whether a line of stdout starts with `prefix` and contains `needle` (a table row
    /// picked by its first column, with something in its other columns).
    fn has_line(&self, prefix: &str, needle: &str) -> bool {
        self.stdout
            .lines()
            .any(|l| l.starts_with(prefix) && l.contains(needle))
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs the CLI with a private HOME (for the token helper) and a clean environment.
struct Cli {
    home: tempfile::TempDir,
    addr: String,
    ca: Option<PathBuf>,
    token: Option<String>,
}

/// Variables a developer's shell might have set that would change what the CLI does.
const SCRUBBED: &[&str] = &[
    "VAULT_ADDR",
    "VAULT_TOKEN",
    "VAULT_CACERT",
    "VAULT_CAPATH",
    "VAULT_SKIP_VERIFY",
    "VAULT_NAMESPACE",
    "VAULT_FORMAT",
    "VAULT_CLIENT_TIMEOUT",
    "COFFER_ADDR",
    "COFFER_TOKEN",
    "COFFER_CACERT",
    "COFFER_CAPATH",
    "COFFER_SKIP_VERIFY",
    "COFFER_NAMESPACE",
    "COFFER_FORMAT",
    "COFFER_CLIENT_TIMEOUT",
];

impl Cli {
    fn new(server: &Server) -> Result<Cli> {
        Ok(Cli {
            home: tempfile::tempdir()?,
            addr: server.addr.clone(),
            ca: server.cert.as_ref().map(|c| c.cert_path.clone()),
            token: None,
        })
    }

    fn with_token(mut self, token: &str) -> Cli {
        self.token = Some(token.to_string());
        self
    }

    fn command(&self, token: Option<&str>) -> Command {
        let mut cmd = Command::new(binary());
        for var in SCRUBBED {
            cmd.env_remove(var);
        }
        cmd.env("VAULT_ADDR", &self.addr)
            .env("HOME", self.home.path());
        if let Some(ca) = &self.ca {
            cmd.env("VAULT_CACERT", ca);
        }
        if let Some(t) = token {
            cmd.env("VAULT_TOKEN", t);
        }
        cmd
    }

    fn exec(&self, mut cmd: Command, args: &[&str], stdin: Option<&str>) -> Result<Run> {
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("spawning the CLI")?;
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .context("stdin")?
                .write_all(input.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        Ok(Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Run with this CLI's token (if any).
    fn run(&self, args: &[&str]) -> Result<Run> {
        self.exec(self.command(self.token.as_deref()), args, None)
    }

    /// Run with `input` on standard input.
    fn run_stdin(&self, args: &[&str], input: &str) -> Result<Run> {
        self.exec(self.command(self.token.as_deref()), args, Some(input))
    }

    /// Run as another token (`None`: no VAULT_TOKEN, so the token helper applies).
    fn run_as(&self, token: Option<&str>, args: &[&str]) -> Result<Run> {
        self.exec(self.command(token), args, None)
    }

    /// Run and require exit 0.
    fn ok(&self, args: &[&str]) -> Result<Run> {
        let run = self.run(args)?;
        if run.code != 0 {
            bail!("coffer {} failed: {run:?}", args.join(" "));
        }
        Ok(run)
    }

    fn helper_file(&self) -> PathBuf {
        self.home.path().join(".coffer-token")
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn cli_unseal_ceremony_over_tls() -> Result<()> {
    let server = Server::start_tls().await?;
    let cli = Cli::new(&server)?;

    // Sealed and uninitialised: exit 2, and the table says so.
    let status = cli.run(&["status"])?;
    assert_eq!(status.code, 2, "{status:?}");
    assert_eq!(
        status.row("Initialized").as_deref(),
        Some("false"),
        "{status:?}"
    );
    assert_eq!(status.row("Sealed").as_deref(), Some("true"));
    assert!(status.stdout.starts_with("Key"), "{status:?}");
    let init_status = cli.run(&["operator", "init", "-status"])?;
    assert_eq!(init_status.code, 2, "{init_status:?}");

    let init = cli.ok(&[
        "operator",
        "init",
        "-key-shares=5",
        "-key-threshold=3",
        "-format=json",
    ])?;
    let init = init.json()?;
    let keys_b64 = strings(&init["unseal_keys_b64"]);
    let keys_hex = strings(&init["unseal_keys_hex"]);
    let root = init["root_token"].as_str().unwrap_or_default().to_string();
    assert_eq!((keys_b64.len(), keys_hex.len()), (5, 5), "{init}");
    assert_eq!(
        (
            init["unseal_shares"].clone(),
            init["unseal_threshold"].clone()
        ),
        (5.into(), 3.into())
    );
    assert!(root.starts_with("hvs."), "{init}");

    let status = cli.run(&["status"])?;
    assert_eq!(status.code, 2, "{status:?}");
    assert_eq!(status.row("Unseal Progress").as_deref(), Some("0/3"));

    // Share 1 as an argument (base64), share 2 typed at the prompt (stdin here),
    // share 3 in hex.
    let first = cli.ok(&["operator", "unseal", &keys_b64[0]])?;
    assert_eq!(
        first.row("Unseal Progress").as_deref(),
        Some("1/3"),
        "{first:?}"
    );
    let second = cli.run_stdin(&["operator", "unseal"], &format!("{}\n", keys_b64[1]))?;
    assert_eq!(second.code, 0, "{second:?}");
    assert_eq!(
        second.row("Unseal Progress").as_deref(),
        Some("2/3"),
        "{second:?}"
    );
    let third = cli.ok(&["operator", "unseal", &keys_hex[2]])?;
    assert_eq!(third.row("Sealed").as_deref(), Some("false"), "{third:?}");

    let status = cli.run(&["status"])?;
    assert_eq!(status.code, 0, "{status:?}");
    let status = cli.ok(&["status", "-format=json"])?.json()?;
    assert_eq!(status["sealed"], false);
    assert_eq!(status["t"], 3);
    server.wait_active().await?;

    // -reset discards a partial unseal (after sealing again).
    let root_cli = Cli::new(&server)?.with_token(&root);
    let sealed = root_cli.ok(&["operator", "seal"])?;
    assert!(sealed.stdout.contains("sealed"), "{sealed:?}");
    assert_eq!(cli.run(&["status"])?.code, 2);
    let partial = cli.ok(&["operator", "unseal", &keys_b64[3]])?;
    assert_eq!(partial.row("Unseal Progress").as_deref(), Some("1/3"));
    let reset = cli.ok(&["operator", "unseal", "-reset"])?;
    assert_eq!(
        reset.row("Unseal Progress").as_deref(),
        Some("0/3"),
        "{reset:?}"
    );
    for k in &keys_b64[2..5] {
        cli.ok(&["operator", "unseal", k])?;
    }
    assert_eq!(cli.run(&["status"])?.code, 0);
    server.wait_active().await?;

    // The server's certificate is checked: no CA means an error (exit 1 for status),
    // unless verification is skipped.
    let mut no_ca = Cli::new(&server)?;
    no_ca.ca = None;
    let refused = no_ca.run(&["status"])?;
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("Error checking seal status"),
        "{refused:?}"
    );
    let skipped = no_ca.run(&["status", "-tls-skip-verify"])?;
    assert_eq!(skipped.code, 0, "{skipped:?}");

    // Keyring: rotate adds a term.
    let rotated = root_cli.ok(&["operator", "rotate"])?;
    assert!(
        rotated.stdout.starts_with("Success! Rotated key"),
        "{rotated:?}"
    );
    let term = root_cli
        .ok(&["operator", "key-status", "-format=json"])?
        .json()?;
    assert_eq!(term["term"], 2, "{term}");
    Ok(())
}

#[tokio::test]
async fn cli_generate_root_and_rekey() -> Result<()> {
    let server = Server::start_tls().await?;
    let (_, keys, _root) = server.init(3, 2).await?;
    server.unseal(&keys[..2]).await?;
    server.wait_active().await?;
    let cli = Cli::new(&server)?;

    // generate-root: -init prints the OTP; each share is submitted (nonce looked up);
    // the last answer is decoded with the OTP into a working root token.
    let started = cli
        .ok(&["operator", "generate-root", "-init", "-format=json"])?
        .json()?;
    let otp = started["otp"].as_str().unwrap_or_default().to_string();
    assert_eq!(otp.len(), 28, "{started}");
    let table = cli.ok(&["operator", "generate-root", "-status"])?;
    assert!(table.stdout.contains("Progress"), "{table:?}");
    cli.ok(&["operator", "generate-root", &keys[0]])?;
    let done = cli
        .ok(&["operator", "generate-root", "-format=json", &keys[1]])?
        .json()?;
    assert_eq!(done["complete"], true, "{done}");
    let encoded = done["encoded_token"].as_str().unwrap_or_default();
    let decoded = cli.ok(&[
        "operator",
        "generate-root",
        &format!("-decode={encoded}"),
        &format!("-otp={otp}"),
    ])?;
    let new_root = decoded.stdout.clone();
    assert!(
        new_root.starts_with("hvs.") && !new_root.ends_with('\n'),
        "{decoded:?}"
    );
    let me = cli
        .run_as(Some(&new_root), &["token", "lookup", "-format=json"])?
        .json()?;
    assert_eq!(me["data"]["policies"], serde_json::json!(["root"]), "{me}");
    let root_cli = Cli::new(&server)?.with_token(&new_root);

    // rekey: new 3-of-2 -> 4-of-3 shares, then unseal with the new ones.
    let init = root_cli.ok(&[
        "operator",
        "rekey",
        "-init",
        "-key-shares=4",
        "-key-threshold=3",
    ])?;
    assert_eq!(init.row("Started").as_deref(), Some("true"), "{init:?}");
    assert_eq!(init.row("New Shares").as_deref(), Some("4"), "{init:?}");
    root_cli.ok(&["operator", "rekey", &keys[0]])?;
    let rekeyed = root_cli.ok(&["operator", "rekey", &keys[2]])?;
    let new_keys: Vec<String> = rekeyed
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("Key ").and_then(|r| r.split_once(": ")))
        .map(|(_, k)| k.to_string())
        .collect();
    assert_eq!(new_keys.len(), 4, "{rekeyed:?}");
    root_cli.ok(&["operator", "seal"])?;
    for k in &new_keys[..3] {
        cli.ok(&["operator", "unseal", k])?;
    }
    assert_eq!(cli.run(&["status"])?.code, 0);
    // A cancelled rekey reports that nothing is in progress.
    server.wait_active().await?;
    root_cli.ok(&[
        "operator",
        "rekey",
        "-init",
        "-key-shares=1",
        "-key-threshold=1",
    ])?;
    root_cli.ok(&["operator", "rekey", "-cancel"])?;
    let status = root_cli.ok(&["operator", "rekey", "-status"])?;
    assert_eq!(
        status.row("Started").as_deref(),
        Some("false"),
        "{status:?}"
    );
    Ok(())
}

#[tokio::test]
async fn cli_kv_v2_and_v1() -> Result<()> {
    let server = Server::start_dev("root").await?;
    let cli = Cli::new(&server)?.with_token("root");

    // v2: put prints the version metadata under "Secret Path".
    let put = cli.ok(&["kv", "put", "secret/app", "user=admin", "password=s3cr3t"])?;
    assert!(put.stdout.contains("Secret Path"), "{put:?}");
    assert!(put.stdout.contains("secret/data/app"), "{put:?}");
    assert_eq!(put.row("version").as_deref(), Some("1"), "{put:?}");

    let get = cli.ok(&["kv", "get", "secret/app"])?;
    assert!(
        get.stdout.contains("== Metadata ==") && get.stdout.contains("== Data =="),
        "{get:?}"
    );
    assert_eq!(get.row("password").as_deref(), Some("s3cr3t"), "{get:?}");
    assert_eq!(get.row("deletion_time").as_deref(), Some("n/a"), "{get:?}");
    assert!(
        get.stdout
            .contains("Key                Value\n---                -----"),
        "{get:?}"
    );

    // -field prints the raw value, no newline when piped.
    let field = cli.ok(&["kv", "get", "-field=password", "secret/app"])?;
    assert_eq!(field.stdout, "s3cr3t");
    let missing = cli.run(&["kv", "get", "-field=nope", "secret/app"])?;
    assert_ne!(missing.code, 0);
    assert!(missing.stderr.contains("not present"), "{missing:?}");

    // -format=json is the API response.
    let json = cli
        .ok(&["kv", "get", "-format=json", "secret/app"])?
        .json()?;
    assert_eq!(json["data"]["data"]["user"], "admin");
    assert_eq!(json["data"]["metadata"]["version"], 1);
    let yaml = cli.ok(&["kv", "get", "-format=yaml", "secret/app"])?;
    assert!(yaml.stdout.contains("user: admin"), "{yaml:?}");

    // patch keeps the other keys; -version reads an old one.
    let patched = cli.ok(&["kv", "patch", "secret/app", "password=n3w"])?;
    assert_eq!(patched.row("version").as_deref(), Some("2"), "{patched:?}");
    assert_eq!(
        cli.ok(&["kv", "get", "-field=user", "secret/app"])?.stdout,
        "admin"
    );
    assert_eq!(
        cli.ok(&["kv", "get", "-field=password", "secret/app"])?
            .stdout,
        "n3w"
    );
    assert_eq!(
        cli.ok(&["kv", "get", "-version=1", "-field=password", "secret/app"])?
            .stdout,
        "s3cr3t"
    );
    let rw = cli.ok(&["kv", "patch", "-method=rw", "secret/app", "extra=1"])?;
    assert_eq!(rw.row("version").as_deref(), Some("3"), "{rw:?}");

    // metadata get lists every version; metadata put changes settings.
    let meta = cli.ok(&["kv", "metadata", "get", "secret/app"])?;
    assert!(meta.stdout.contains("Metadata Path"), "{meta:?}");
    assert_eq!(
        meta.row("current_version").as_deref(),
        Some("3"),
        "{meta:?}"
    );
    assert!(
        meta.stdout.contains("== Version 1 ==") && meta.stdout.contains("== Version 3 =="),
        "{meta:?}"
    );
    cli.ok(&[
        "kv",
        "metadata",
        "put",
        "-max-versions=5",
        "-custom-metadata=owner=ops",
        "secret/app",
    ])?;
    let meta = cli
        .ok(&["kv", "metadata", "get", "-format=json", "secret/app"])?
        .json()?;
    assert_eq!(meta["data"]["max_versions"], 5, "{meta}");
    assert_eq!(meta["data"]["custom_metadata"]["owner"], "ops", "{meta}");

    // list, soft delete, undelete, rollback, destroy.
    let list = cli.ok(&["kv", "list", "secret/"])?;
    assert_eq!(list.stdout, "Keys\n----\napp\n");
    let list = cli.ok(&["kv", "list", "-format=json", "secret"])?.json()?;
    assert_eq!(list, serde_json::json!(["app"]));
    let deleted = cli.ok(&["kv", "delete", "secret/app"])?;
    assert!(
        deleted.stdout.contains("Success! Data deleted"),
        "{deleted:?}"
    );
    let gone = cli.run(&["kv", "get", "-field=user", "secret/app"])?;
    assert_ne!(gone.code, 0, "{gone:?}");
    cli.ok(&["kv", "undelete", "-versions=3", "secret/app"])?;
    assert_eq!(
        cli.ok(&["kv", "get", "-field=extra", "secret/app"])?.stdout,
        "1"
    );
    let rolled = cli.ok(&["kv", "rollback", "-version=1", "secret/app"])?;
    assert_eq!(rolled.row("version").as_deref(), Some("4"), "{rolled:?}");
    assert_eq!(
        cli.ok(&["kv", "get", "-field=password", "secret/app"])?
            .stdout,
        "s3cr3t"
    );
    cli.ok(&["kv", "destroy", "-versions=2", "secret/app"])?;
    let meta = cli
        .ok(&["kv", "metadata", "get", "-format=json", "secret/app"])?
        .json()?;
    assert_eq!(meta["data"]["versions"]["2"]["destroyed"], true, "{meta}");

    // Values from files and standard input; -mount names the mount.
    let file = cli.home.path().join("cert.pem");
    std::fs::write(&file, "-----BEGIN X-----")?;
    cli.ok(&[
        "kv",
        "put",
        "secret/files",
        &format!("cert=@{}", file.display()),
    ])?;
    assert_eq!(
        cli.ok(&["kv", "get", "-field=cert", "secret/files"])?
            .stdout,
        "-----BEGIN X-----"
    );
    let piped = cli.run_stdin(
        &["kv", "put", "secret/json", "-"],
        r#"{"a": "b", "n": "1"}"#,
    )?;
    assert_eq!(piped.code, 0, "{piped:?}");
    assert_eq!(
        cli.ok(&["kv", "get", "-mount=secret", "-field=a", "json"])?
            .stdout,
        "b"
    );
    let piped = cli.run_stdin(&["kv", "put", "secret/stdin", "pw=-"], "from-stdin")?;
    assert_eq!(piped.code, 0, "{piped:?}");
    assert_eq!(
        cli.ok(&["kv", "get", "-field=pw", "secret/stdin"])?.stdout,
        "from-stdin"
    );

    // v1: enabled with the CLI, no versions, no metadata, no patch.
    let enabled = cli.ok(&["secrets", "enable", "-path=kv1", "kv"])?;
    assert_eq!(
        enabled.stdout.trim(),
        "Success! Enabled the kv secrets engine at: kv1/"
    );
    let put = cli.ok(&["kv", "put", "kv1/db", "user=u", "pass=p"])?;
    assert_eq!(put.stdout.trim(), "Success! Data written to: kv1/db");
    let get = cli.ok(&["kv", "get", "kv1/db"])?;
    assert!(
        !get.stdout.contains("Secret Path") && get.stdout.contains("== Data =="),
        "{get:?}"
    );
    assert_eq!(get.row("user").as_deref(), Some("u"), "{get:?}");
    assert_eq!(cli.ok(&["kv", "get", "-field=pass", "kv1/db"])?.stdout, "p");
    assert_eq!(
        cli.ok(&["kv", "get", "-mount=kv1", "-field=pass", "db"])?
            .stdout,
        "p"
    );
    let json = cli.ok(&["kv", "get", "-format=json", "kv1/db"])?.json()?;
    assert_eq!(json["data"]["user"], "u", "{json}");
    let patch = cli.run(&["kv", "patch", "kv1/db", "user=x"])?;
    assert_eq!(patch.code, 2, "{patch:?}");
    assert!(patch.stderr.contains("version 2"), "{patch:?}");
    let meta = cli.run(&["kv", "metadata", "get", "kv1/db"])?;
    assert_eq!(meta.code, 1, "{meta:?}");
    assert_eq!(cli.ok(&["kv", "list", "kv1"])?.stdout, "Keys\n----\ndb\n");
    cli.ok(&["kv", "delete", "kv1/db"])?;
    let gone = cli.run(&["kv", "get", "kv1/db"])?;
    assert_eq!(gone.code, 2, "{gone:?}");
    assert!(gone.stderr.contains("No value found at kv1/db"), "{gone:?}");

    // Mount management: list, tune, a v2 mount by flag, move, disable.
    let list = cli.ok(&["secrets", "list"])?;
    assert!(list.stdout.starts_with("Path"), "{list:?}");
    assert!(list.has_line("kv1/", " kv "), "{list:?}");
    let mounts = cli.ok(&["secrets", "list", "-format=json"])?.json()?;
    assert_eq!(mounts["secret/"]["options"]["version"], "2", "{mounts}");
    cli.ok(&["secrets", "tune", "-max-lease-ttl=1h", "kv1"])?;
    cli.ok(&["secrets", "enable", "-version=2", "-path=apps", "kv"])?;
    let put = cli.ok(&["kv", "put", "-mount=apps", "web", "k=v"])?;
    assert!(put.stdout.contains("apps/data/web"), "{put:?}");
    cli.ok(&["secrets", "move", "apps", "apps2"])?;
    assert_eq!(cli.ok(&["kv", "get", "-field=k", "apps2/web"])?.stdout, "v");
    let disabled = cli.ok(&["secrets", "disable", "apps2"])?;
    assert!(disabled.stdout.contains("apps2/"), "{disabled:?}");

    // The generic commands.
    let written = cli.run_stdin(
        &["write", "secret/data/raw", "-"],
        r#"{"data": {"x": "y"}}"#,
    )?;
    assert_eq!(written.code, 0, "{written:?}");
    assert_eq!(written.row("version").as_deref(), Some("1"), "{written:?}");
    assert_eq!(
        cli.ok(&["read", "-field=data", "secret/data/raw"])?.stdout,
        "map[x:y]"
    );
    let listed = cli.ok(&["list", "secret/metadata"])?;
    assert!(listed.stdout.contains("raw"), "{listed:?}");
    cli.ok(&["delete", "secret/metadata/raw"])?;
    assert_eq!(cli.run(&["read", "secret/data/raw"])?.code, 2);
    Ok(())
}

#[tokio::test]
async fn cli_policies_tokens_and_permission_denied() -> Result<()> {
    let server = Server::start_dev("root").await?;
    let cli = Cli::new(&server)?.with_token("root");
    cli.ok(&["kv", "put", "secret/app", "password=s3cr3t"])?;
    cli.ok(&["kv", "put", "secret/other", "password=hidden"])?;

    let policy = cli.home.path().join("app-read.hcl");
    std::fs::write(
        &policy,
        "path \"secret/data/app\" {capabilities=[\"read\"]}\n",
    )?;
    let formatted = cli.ok(&["policy", "fmt", &policy.display().to_string()])?;
    assert!(
        formatted.stdout.contains("Success! Formatted policy"),
        "{formatted:?}"
    );
    assert!(std::fs::read_to_string(&policy)?.contains("capabilities = [\"read\"]"));
    let written = cli.ok(&["policy", "write", "app-read", &policy.display().to_string()])?;
    assert_eq!(written.stdout.trim(), "Success! Uploaded policy: app-read");
    let read = cli.ok(&["policy", "read", "app-read"])?;
    assert!(read.stdout.contains("path \"secret/data/app\""), "{read:?}");
    let listed = cli.ok(&["policy", "list"])?;
    assert!(listed.stdout.lines().any(|l| l == "app-read"), "{listed:?}");
    let piped = cli.run_stdin(
        &["policy", "write", "lister", "-"],
        "path \"secret/metadata/*\" { capabilities = [\"list\"] }",
    )?;
    assert_eq!(piped.code, 0, "{piped:?}");
    let names = cli.ok(&["policy", "list", "-format=json"])?.json()?;
    assert!(strings(&names).contains(&"lister".to_string()), "{names}");

    // A token limited to that policy.
    let created = cli
        .ok(&[
            "token",
            "create",
            "-policy=app-read",
            "-ttl=1h",
            "-format=json",
        ])?
        .json()?;
    let child = created["auth"]["client_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let accessor = created["auth"]["accessor"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(child.starts_with("hvs."), "{created}");
    let table = cli.ok(&["token", "create", "-policy=app-read"])?;
    assert_eq!(
        table.row("token_policies").as_deref(),
        Some("[\"app-read\" \"default\"]"),
        "{table:?}"
    );
    let raw = cli.ok(&["token", "create", "-policy=app-read", "-field=token"])?;
    assert!(
        raw.stdout.starts_with("hvs.") && !raw.stdout.contains('\n'),
        "{raw:?}"
    );

    assert_eq!(
        cli.run_as(
            Some(&child),
            &["kv", "get", "-field=password", "secret/app"]
        )?
        .stdout,
        "s3cr3t"
    );
    // Reaching past the policy: exit 2 and Vault's error on stderr.
    let denied = cli.run_as(Some(&child), &["kv", "get", "secret/other"])?;
    assert_eq!(denied.code, 2, "{denied:?}");
    assert!(
        denied.stderr.contains("Error reading secret/data/other"),
        "{denied:?}"
    );
    assert!(denied.stderr.contains("Code: 403. Errors:"), "{denied:?}");
    assert!(denied.stderr.contains("* permission denied"), "{denied:?}");
    assert!(denied.stdout.is_empty(), "{denied:?}");
    let denied = cli.run_as(Some(&child), &["kv", "put", "secret/app", "password=x"])?;
    assert_eq!(denied.code, 2, "{denied:?}");
    assert!(denied.stderr.contains("permission denied"), "{denied:?}");

    // lookup, capabilities, renew, revoke.
    let me = cli.run_as(Some(&child), &["token", "lookup"])?;
    assert_eq!(me.code, 0, "{me:?}");
    assert_eq!(
        me.row("policies").as_deref(),
        Some("[app-read default]"),
        "{me:?}"
    );
    let by_accessor = cli
        .ok(&["token", "lookup", "-accessor", &accessor, "-format=json"])?
        .json()?;
    assert_eq!(
        by_accessor["data"]["accessor"],
        accessor.as_str(),
        "{by_accessor}"
    );
    let caps = cli.run_as(Some(&child), &["token", "capabilities", "secret/data/app"])?;
    assert_eq!(caps.stdout.trim(), "read", "{caps:?}");
    let caps = cli.ok(&["token", "capabilities", &child, "secret/data/other"])?;
    assert_eq!(caps.stdout.trim(), "deny", "{caps:?}");
    let renewed = cli.run_as(Some(&child), &["token", "renew", "-format=json"])?;
    assert_eq!(renewed.code, 0, "{renewed:?}");
    assert_eq!(renewed.json()?["auth"]["client_token"], child.as_str());
    let revoked = cli.ok(&["token", "revoke", &child])?;
    assert!(revoked.stdout.contains("Revoked token"), "{revoked:?}");
    let after = cli.run_as(Some(&child), &["token", "lookup"])?;
    assert_eq!(after.code, 2, "{after:?}");
    assert!(after.stderr.contains("403"), "{after:?}");

    let deleted = cli.ok(&["policy", "delete", "lister"])?;
    assert_eq!(deleted.stdout.trim(), "Success! Deleted policy: lister");
    Ok(())
}

#[tokio::test]
async fn cli_login_stores_the_token_helper() -> Result<()> {
    let server = Server::start_dev("root").await?;
    let cli = Cli::new(&server)?;
    let root_cli = Cli::new(&server)?.with_token("root");
    let token = root_cli
        .ok(&["token", "create", "-policy=default", "-field=token"])?
        .stdout;

    // Without a token, commands that need one are refused.
    let anonymous = cli.run(&["token", "lookup"])?;
    assert_eq!(anonymous.code, 2, "{anonymous:?}");

    let login = cli.ok(&["login", "-method=token", &token])?;
    assert!(
        login.stdout.contains("Success! You are now authenticated"),
        "{login:?}"
    );
    assert_eq!(
        login.row("token").as_deref(),
        Some(token.as_str()),
        "{login:?}"
    );
    let stored = std::fs::read_to_string(cli.helper_file())?;
    assert_eq!(stored, token);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cli.helper_file())?.permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The next command uses the stored token.
    let me = cli.ok(&["token", "lookup", "-format=json"])?.json()?;
    assert_eq!(me["data"]["id"], token.as_str(), "{me}");
    // VAULT_TOKEN still wins over the helper.
    let root_me = cli.run_as(Some("root"), &["token", "lookup", "-field=display_name"])?;
    assert_eq!(root_me.stdout, "root", "{root_me:?}");

    // A token typed at the prompt (stdin here), -no-store, -field=token.
    let other = root_cli
        .ok(&["token", "create", "-policy=default", "-field=token"])?
        .stdout;
    let quiet = cli.run_stdin(
        &["login", "-no-store", "-field=token"],
        &format!("{other}\n"),
    )?;
    assert_eq!(quiet.code, 0, "{quiet:?}");
    assert_eq!(quiet.stdout, other);
    assert_eq!(
        std::fs::read_to_string(cli.helper_file())?,
        token,
        "-no-store kept the file"
    );

    let bad = cli.run(&["login", "hvs.not-a-token"])?;
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("Error authenticating"), "{bad:?}");
    assert_eq!(std::fs::read_to_string(cli.helper_file())?, token);
    Ok(())
}

#[tokio::test]
async fn cli_login_with_userpass_and_approle() -> Result<()> {
    let server = Server::start_dev("root").await?;
    let root = Cli::new(&server)?.with_token("root");
    let cli = Cli::new(&server)?;
    root.ok(&["kv", "put", "secret/team/db", "pw=s3cret"])?;
    let policy = root.run_stdin(
        &["policy", "write", "kv-read", "-"],
        r#"path "secret/data/*" { capabilities = ["read"] }"#,
    )?;
    assert_eq!(policy.code, 0, "{policy:?}");

    // userpass: enable, create a user, log in (password prompted, here from stdin).
    let enabled = root.ok(&["auth", "enable", "userpass"])?;
    assert_eq!(
        enabled.stdout.trim(),
        "Success! Enabled userpass auth method at: userpass/"
    );
    let methods = root.ok(&["auth", "list"])?;
    assert!(methods.has_line("userpass/", ""), "{methods:?}");
    root.ok(&[
        "write",
        "auth/userpass/users/alice",
        "password=correct horse",
        "token_policies=kv-read",
        "token_ttl=10m",
    ])?;
    let login = cli.run_stdin(
        &["login", "-method=userpass", "username=alice"],
        "correct horse\n",
    )?;
    assert_eq!(login.code, 0, "{login:?}");
    assert!(
        login.stdout.contains("Success! You are now authenticated"),
        "{login:?}"
    );
    assert_eq!(
        login.row("token_duration").as_deref(),
        Some("10m"),
        "{login:?}"
    );
    assert_eq!(
        login.row("token_meta_username").as_deref(),
        Some("alice"),
        "{login:?}"
    );
    let token = login.row("token").unwrap_or_default();
    assert_eq!(std::fs::read_to_string(cli.helper_file())?, token);
    // The stored token reads what the policy allows and no more.
    assert_eq!(
        cli.ok(&["kv", "get", "-field=pw", "secret/team/db"])?
            .stdout,
        "s3cret"
    );
    let denied = cli.run(&["kv", "put", "secret/team/db", "pw=x"])?;
    assert_eq!(denied.code, 2, "{denied:?}");
    assert!(denied.stderr.contains("permission denied"), "{denied:?}");
    let piped = cli.run_stdin(
        &[
            "login",
            "-no-store",
            "-field=token",
            "-method=userpass",
            "username=alice",
            "password=-",
        ],
        "correct horse\n",
    )?;
    assert_eq!(piped.code, 0, "{piped:?}");
    assert!(piped.stdout.starts_with("hvs."), "{piped:?}");
    let wrong = cli.run(&[
        "login",
        "-method=userpass",
        "username=alice",
        "password=wrong",
    ])?;
    assert_eq!(wrong.code, 2, "{wrong:?}");
    assert!(wrong.stderr.contains("Error authenticating"), "{wrong:?}");

    // approle at a custom path: role, role-id, secret-id, login.
    root.ok(&["auth", "enable", "-path=ci", "approle"])?;
    root.ok(&["write", "auth/ci/role/build", "token_policies=kv-read"])?;
    let role_id = root
        .ok(&["read", "-field=role_id", "auth/ci/role/build/role-id"])?
        .stdout;
    let secret_id = root
        .ok(&[
            "write",
            "-f",
            "-field=secret_id",
            "auth/ci/role/build/secret-id",
        ])?
        .stdout;
    assert!(!role_id.is_empty() && !secret_id.is_empty());
    let login = cli.ok(&[
        "login",
        "-method=approle",
        "-path=ci",
        "-no-store",
        "-format=json",
        &format!("role_id={role_id}"),
        &format!("secret_id={secret_id}"),
    ])?;
    let auth = login.json()?;
    let policies = strings(&auth["auth"]["policies"]);
    assert!(policies.contains(&"kv-read".to_string()), "{auth}");
    let approle_token = auth["auth"]["client_token"].as_str().unwrap_or_default();
    assert_eq!(
        cli.run_as(
            Some(approle_token),
            &["kv", "get", "-field=pw", "secret/team/db"]
        )?
        .stdout,
        "s3cret"
    );
    // -no-store left alice's token in the helper.
    assert_eq!(std::fs::read_to_string(cli.helper_file())?, token);

    let tuned = root.ok(&["auth", "tune", "-default-lease-ttl=30m", "ci"])?;
    assert_eq!(
        tuned.stdout.trim(),
        "Success! Tuned the auth method at: ci/"
    );
    let disabled = root.ok(&["auth", "disable", "ci"])?;
    assert!(disabled.stdout.contains("ci/"), "{disabled:?}");
    Ok(())
}

#[tokio::test]
async fn cli_leases_and_audit_devices() -> Result<()> {
    let server = Server::start_dev("root").await?;
    let cli = Cli::new(&server)?.with_token("root");

    // Audit: enable a file device, list it, disable it.
    let log = server.dir.path().join("audit.log");
    let enabled = cli.ok(&[
        "audit",
        "enable",
        "file",
        &format!("file_path={}", log.display()),
    ])?;
    assert_eq!(
        enabled.stdout.trim(),
        "Success! Enabled the file audit device at: file/"
    );
    let listed = cli.ok(&["audit", "list"])?;
    assert!(listed.has_line("file/", "file"), "{listed:?}");
    cli.ok(&["kv", "put", "secret/audited", "k=v"])?;
    assert!(
        std::fs::metadata(&log)?.len() > 0,
        "the device logged requests"
    );
    let disabled = cli.ok(&["audit", "disable", "file"])?;
    assert!(disabled.stdout.contains("file/"), "{disabled:?}");
    let none = cli.run(&["audit", "list"])?;
    assert_eq!(none.code, 2, "{none:?}");
    assert!(
        none.stdout.contains("No audit devices are enabled."),
        "{none:?}"
    );

    // Leases: a token with a TTL has one; look it up, renew it, revoke it.
    let token = cli
        .ok(&[
            "token",
            "create",
            "-policy=default",
            "-ttl=1h",
            "-field=token",
        ])?
        .stdout;
    let leases = cli
        .ok(&[
            "list",
            "-format=json",
            "sys/leases/lookup/auth/token/create",
        ])?
        .json()?;
    let ids = strings(&leases);
    assert_eq!(ids.len(), 1, "{leases}");
    let lease = format!("auth/token/create/{}", ids[0]);
    let looked = cli.ok(&["lease", "lookup", &lease])?;
    assert!(looked.row("expire_time").is_some(), "{looked:?}");
    let renewed = cli.run(&["lease", "renew", "-increment=2h", &lease])?;
    assert_eq!(renewed.code, 0, "{renewed:?}");
    let revoked = cli.ok(&["lease", "revoke", &lease])?;
    assert_eq!(
        revoked.stdout.trim(),
        format!("Success! Revoked lease: {lease}")
    );
    let after = cli.run_as(Some(&token), &["token", "lookup"])?;
    assert_eq!(after.code, 2, "the lease's token is gone: {after:?}");
    Ok(())
}

#[tokio::test]
async fn cli_raft_snapshot_save_and_restore() -> Result<()> {
    let leader = Server::start_tls().await?;
    let (keys, _, root) = leader.init(1, 1).await?;
    leader.unseal(&keys).await?;
    leader.wait_active().await?;
    let cli = Cli::new(&leader)?.with_token(&root);
    cli.ok(&["secrets", "enable", "-version=2", "-path=secret", "kv"])?;
    cli.ok(&["kv", "put", "secret/app", "pw=before"])?;

    // Save (streamed to a file; no progress bar when stderr is not a terminal).
    let snap = cli.home.path().join("backup.snap");
    let saved = cli.ok(&[
        "operator",
        "raft",
        "snapshot",
        "save",
        &snap.display().to_string(),
    ])?;
    assert!(saved.stderr.is_empty(), "{saved:?}");
    assert!(std::fs::metadata(&snap)?.len() > 0);
    // Restore into the same cluster: the later write is undone.
    cli.ok(&["kv", "put", "secret/app", "pw=after"])?;
    cli.ok(&[
        "operator",
        "raft",
        "snapshot",
        "restore",
        &snap.display().to_string(),
    ])?;
    assert_eq!(
        cli.ok(&["kv", "get", "-field=pw", "secret/app"])?.stdout,
        "before"
    );

    // Restore into a fresh server: refused unless forced; then the fresh server
    // is unsealed with the snapshot's cluster keys and serves its data.
    let fresh = Server::start_tls().await?;
    let (fresh_keys, _, fresh_root) = fresh.init(1, 1).await?;
    fresh.unseal(&fresh_keys).await?;
    fresh.wait_active().await?;
    let fresh_cli = Cli::new(&fresh)?.with_token(&fresh_root);
    let refused = fresh_cli.run(&[
        "operator",
        "raft",
        "snapshot",
        "restore",
        &snap.display().to_string(),
    ])?;
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains("Error installing the snapshot"),
        "{refused:?}"
    );
    fresh_cli.ok(&[
        "operator",
        "raft",
        "snapshot",
        "restore",
        "-force",
        &snap.display().to_string(),
    ])?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while fresh_cli.run(&["status"])?.code != 2 {
        if std::time::Instant::now() > deadline {
            bail!("the restored server did not seal itself");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let unsealed = fresh_cli.ok(&["operator", "unseal", &keys[0]])?;
    assert_eq!(
        unsealed.row("Sealed").as_deref(),
        Some("false"),
        "{unsealed:?}"
    );
    fresh.wait_active().await?;
    let restored = Cli::new(&fresh)?.with_token(&root);
    assert_eq!(
        restored
            .ok(&["kv", "get", "-field=pw", "secret/app"])?
            .stdout,
        "before"
    );

    let peers = cli.ok(&["operator", "raft", "list-peers"])?;
    assert!(peers.stdout.starts_with("Node"), "{peers:?}");
    assert!(peers.has_line("node1", "leader"), "{peers:?}");
    Ok(())
}

/// A Raft server process over plain HTTP (the join test needs no TLS between the
/// API listeners; the cluster port is the API port + 1), killed on drop.
struct PlainNode {
    _dir: tempfile::TempDir,
    addr: String,
    child: std::process::Child,
}

impl PlainNode {
    async fn start(node_id: &str) -> Result<PlainNode> {
        let dir = tempfile::tempdir()?;
        let port = loop {
            let p = crate::harness::free_port();
            if std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
                break p;
            }
        };
        let config = format!(
            "storage \"raft\" {{\n  path = \"{}\"\n  node_id = \"{node_id}\"\n}}\n\
             listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  tls_disable = true\n}}\n\
             api_addr = \"http://127.0.0.1:{port}\"\ndisable_mlock = true\n",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("config.hcl");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let child = Command::new(binary())
            .args(["server", &format!("-config={}", config_path.display())])
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()?;
        let node = PlainNode {
            _dir: dir,
            addr: format!("http://127.0.0.1:{port}"),
            child,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let probe = node.cli()?.run(&["status"])?;
            if probe.code != 1 {
                return Ok(node);
            }
            if std::time::Instant::now() > deadline {
                bail!("{node_id} did not come up: {probe:?}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    fn cli(&self) -> Result<Cli> {
        Ok(Cli {
            home: tempfile::tempdir()?,
            addr: self.addr.clone(),
            ca: None,
            token: None,
        })
    }
}

impl Drop for PlainNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Retry a CLI run until `done` holds (Raft membership changes settle asynchronously).
async fn eventually(what: &str, mut attempt: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !attempt()? {
        if std::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    Ok(())
}

#[tokio::test]
async fn cli_raft_join_step_down_and_remove_peer() -> Result<()> {
    let first = PlainNode::start("node1").await?;
    let second = PlainNode::start("node2").await?;
    let init = first
        .cli()?
        .ok(&[
            "operator",
            "init",
            "-key-shares=1",
            "-key-threshold=1",
            "-format=json",
        ])?
        .json()?;
    let key = strings(&init["unseal_keys_b64"]).remove(0);
    let root = init["root_token"].as_str().unwrap_or_default().to_string();
    first.cli()?.ok(&["operator", "unseal", &key])?;
    let on_first = first.cli()?.with_token(&root);
    eventually("node1 active", || {
        Ok(on_first.run(&["operator", "raft", "list-peers"])?.code == 0)
    })
    .await?;

    let joined = second
        .cli()?
        .ok(&["operator", "raft", "join", &first.addr])?;
    assert_eq!(joined.row("Joined").as_deref(), Some("true"), "{joined:?}");
    second.cli()?.ok(&["operator", "unseal", &key])?;
    eventually("node2 a voting follower", || {
        let peers = on_first.ok(&["operator", "raft", "list-peers"])?;
        // State follower, and Voter (the last column) true.
        Ok(peers
            .stdout
            .lines()
            .any(|l| l.starts_with("node2") && l.contains("follower") && l.ends_with("true")))
    })
    .await?;

    let stepped = on_first.ok(&["operator", "step-down"])?;
    assert_eq!(
        stepped.stdout.trim(),
        format!("Success! Stepped down: {}", first.addr)
    );
    let on_second = second.cli()?.with_token(&root);
    eventually("node2 leads", || {
        let peers = on_second.run(&["operator", "raft", "list-peers"])?;
        Ok(peers.has_line("node2", "leader"))
    })
    .await?;
    let status = second.cli()?.ok(&["status"])?;
    assert_eq!(
        status.row("HA Mode").as_deref(),
        Some("active"),
        "{status:?}"
    );

    let removed = on_second.ok(&["operator", "raft", "remove-peer", "node1"])?;
    assert_eq!(removed.stdout.trim(), "Peer removed successfully!");
    let peers = on_second
        .ok(&["operator", "raft", "list-peers", "-format=json"])?
        .json()?;
    let ids: Vec<&str> = peers["data"]["config"]["servers"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["node_id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["node2"], "{peers}");
    Ok(())
}

#[tokio::test]
async fn cli_help_completion_and_usage_errors() -> Result<()> {
    let server = Server::start_dev("root").await?;
    let cli = Cli::new(&server)?;
    let help = cli.ok(&["--help"])?;
    for word in [
        "kv",
        "operator",
        "secrets",
        "policy",
        "token",
        "login",
        "Examples:",
    ] {
        assert!(help.stdout.contains(word), "{word}: {help:?}");
    }
    let put_help = cli.ok(&["kv", "put", "-help"])?;
    assert!(put_help.stdout.contains("Examples:"), "{put_help:?}");
    assert!(put_help.stdout.contains("--cas"), "{put_help:?}");

    let bash = cli.ok(&["completion", "bash"])?;
    assert!(
        bash.stdout.contains("_coffer()") && bash.stdout.contains("complete -F"),
        "{bash:?}"
    );
    let zsh = cli.ok(&["completion", "zsh"])?;
    assert!(zsh.stdout.starts_with("#compdef coffer"), "{zsh:?}");
    let fish = cli.ok(&["completion", "fish"])?;
    assert!(fish.stdout.contains("complete -c coffer"), "{fish:?}");

    // Local errors exit 1, remote ones 2.
    let missing = cli.run(&["kv", "get"])?;
    assert_eq!(missing.code, 1, "{missing:?}");
    let bad_format = cli.run(&["kv", "get", "-format=xml", "secret/x"])?;
    assert_eq!(bad_format.code, 1, "{bad_format:?}");
    assert!(
        bad_format.stderr.contains("Invalid output format"),
        "{bad_format:?}"
    );
    let no_data = cli.run_as(Some("root"), &["kv", "put", "secret/x"])?;
    assert_eq!(no_data.code, 1, "{no_data:?}");
    let unreachable = Cli {
        addr: format!("http://127.0.0.1:{}", crate::harness::free_port()),
        ..Cli::new(&server)?
    };
    let refused = unreachable.run_as(Some("root"), &["kv", "get", "secret/x"])?;
    assert_eq!(refused.code, 2, "{refused:?}");
    Ok(())
}

#[tokio::test]
async fn cli_token_modes_lease_prefixes_and_generic_formats() -> Result<()> {
    let server = Server::start_dev("root").await?;
    let cli = Cli::new(&server)?.with_token("root");
    let create = |extra: &[&str]| -> Result<Value> {
        let mut args = vec!["token", "create", "-policy=default", "-format=json"];
        args.extend_from_slice(extra);
        Ok(cli.ok(&args)?.json()?["auth"].clone())
    };
    let field = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    let alive = |token: &str| -> Result<bool> {
        Ok(cli.run_as(Some(token), &["token", "lookup"])?.code == 0)
    };
    // A revoked token is refused as Vault refuses it: exit 2 and the server's 403.
    let assert_revoked = |token: &str, what: &str| -> Result<()> {
        let run = cli.run_as(Some(token), &["token", "lookup"])?;
        assert_eq!(run.code, 2, "{what}: {run:?}");
        assert!(
            run.stderr.contains("Error looking up token"),
            "{what}: {run:?}"
        );
        assert!(run.stderr.contains("Code: 403. Errors:"), "{what}: {run:?}");
        assert!(
            run.stderr.contains("* permission denied"),
            "{what}: {run:?}"
        );
        Ok(())
    };

    // token revoke -mode=orphan: the parent goes, its child survives as an orphan.
    // (The default policy cannot create tokens, as in Vault: the parent holds root.)
    let parent = create(&["-ttl=1h", "-policy=root"])?;
    let parent_token = field(&parent, "client_token");
    let child = cli.run_as(
        Some(&parent_token),
        &["token", "create", "-policy=default", "-field=token"],
    )?;
    assert_eq!(child.code, 0, "{child:?}");
    let child_token = child.stdout.trim().to_string();
    let orphaned = cli.ok(&["token", "revoke", "-mode=orphan", &parent_token])?;
    assert!(orphaned.stdout.contains("Success!"), "{orphaned:?}");
    assert_revoked(&parent_token, "the parent is revoked")?;
    assert!(alive(&child_token)?, "the child survives -mode=orphan");
    let looked = cli
        .ok(&["token", "lookup", "-format=json", &child_token])?
        .json()?;
    assert_eq!(looked["data"]["orphan"], true, "{looked}");

    // token renew -accessor and token revoke -accessor.
    let by_accessor = create(&["-ttl=1h"])?;
    let accessor = field(&by_accessor, "accessor");
    let renewed = cli
        .ok(&[
            "token",
            "renew",
            "-accessor",
            "-increment=3h",
            "-format=json",
            &accessor,
        ])?
        .json()?;
    assert_eq!(renewed["auth"]["lease_duration"], 10800, "{renewed}");
    assert_eq!(
        renewed["auth"]["client_token"], "",
        "renewal by accessor does not reveal the token: {renewed}"
    );
    cli.ok(&["token", "revoke", "-accessor", &accessor])?;
    assert_revoked(&field(&by_accessor, "client_token"), "revoked by accessor")?;

    // lease revoke -prefix: every token lease under auth/token/create goes at once.
    let a = field(&create(&["-ttl=1h"])?, "client_token");
    let b = field(&create(&["-ttl=1h"])?, "client_token");
    let bad = cli.run(&["lease", "revoke", "-force", "auth/token/create/x"])?;
    assert_eq!(
        bad.code, 1,
        "-force needs -prefix (a local usage error): {bad:?}"
    );
    let prefixed = cli.ok(&["lease", "revoke", "-prefix", "auth/token/create"])?;
    assert_eq!(
        prefixed.stdout.trim(),
        "Success! Revoked any leases with prefix: auth/token/create"
    );
    assert_revoked(&a, "prefix revocation took the first token")?;
    assert_revoked(&b, "prefix revocation took the second token")?;
    let c = field(&create(&["-ttl=1h"])?, "client_token");
    let forced = cli.ok(&["lease", "revoke", "-force", "-prefix", "auth/token/create"])?;
    assert!(forced.stdout.contains("Revoked any leases"), "{forced:?}");
    assert_revoked(&c, "revoke-force took the token")?;

    // secrets list -detailed: Vault's detailed columns, with the mount's options.
    let detailed = cli.ok(&["secrets", "list", "-detailed"])?;
    let header = detailed
        .stdout
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    for col in [
        "Path",
        "Plugin",
        "Accessor",
        "Default TTL",
        "Max TTL",
        "Options",
        "UUID",
    ] {
        assert!(header.contains(col), "missing {col}: {detailed:?}");
    }
    assert!(
        detailed.has_line("secret/", "map[version:2]"),
        "{detailed:?}"
    );

    // read -format=raw prints the body as the server sent it; generic patch merges.
    cli.ok(&["kv", "put", "secret/app", "a=1", "b=2"])?;
    let raw = cli.ok(&["read", "-format=raw", "secret/data/app"])?;
    let body: Value = serde_json::from_str(&raw.stdout)?;
    assert_eq!(
        body["data"]["data"],
        serde_json::json!({"a": "1", "b": "2"})
    );
    assert!(
        body.get("request_id").is_some(),
        "the whole envelope: {raw:?}"
    );
    let patched = cli.run(&["patch", "secret/data/app", "data={\"b\":\"3\"}"])?;
    assert_eq!(
        patched.code, 2,
        "a string is not an object for kv v2: {patched:?}"
    );
    let patched = cli.run_stdin(&["patch", "secret/data/app", "-"], r#"{"data":{"b":"3"}}"#)?;
    assert_eq!(patched.code, 0, "{patched:?}");
    let got = cli
        .ok(&["kv", "get", "-format=json", "secret/app"])?
        .json()?;
    assert_eq!(got["data"]["data"], serde_json::json!({"a": "1", "b": "3"}));
    Ok(())
}
