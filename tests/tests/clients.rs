//! Vault compatibility through real client libraries other than vaultrs, each driving a
//! fresh TLS server. The Python client hvac (`tests/clients/hvac_compat.py`) goes
//! through the init/unseal ceremony, health and key status, KV v2 (CAS, patch, list,
//! metadata, old versions, delete/undelete) and KV v1, mount tune and disable, policies,
//! tokens (lookup, renew, capabilities, a 403, revocation with a child), userpass and
//! approle, transit (with key rotation and rewrap), wrapping, an audit device and
//! audit-hash, rotate, and seal and unseal again. The Node.js client node-vault
//! (`tests/clients/node_vault_compat.js`) covers a smaller set through its own
//! request/response schemas: the ceremony and health, KV v2 write/read/list/delete,
//! policies, a token's create/lookup-self/renew/revoke and 403s, userpass and approle
//! logins, a transit round trip, wrap/unwrap, unmount and seal. Both print one line per
//! check. The clients are pinned (hvac here, node-vault in
//! `tests/clients/package-lock.json`) and installed once into the test target dir, so
//! `cargo test` needs only Python with pip, Node.js with npm, and their registries.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

use crate::harness::Server;

/// The hvac release the check is written against.
const HVAC_VERSION: &str = "2.4.0";

static INSTALL: Mutex<()> = Mutex::new(());

fn python() -> &'static str {
    if Command::new("python3").arg("--version").output().is_ok() {
        "python3"
    } else {
        "python"
    }
}

/// Run a package manager's install command; its output in the error if it fails.
fn install(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A directory holding the pinned hvac (and its dependencies), for `PYTHONPATH`.
fn hvac_dir() -> Result<PathBuf> {
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("hvac-{HVAC_VERSION}"));
    let marker = dir.join(".installed");
    if marker.exists() {
        return Ok(dir);
    }
    let requirement = format!("hvac=={HVAC_VERSION}");
    install(
        Command::new(python())
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(["--no-warn-script-location", "--upgrade", "--target"])
            .arg(&dir)
            .arg(&requirement),
        "pip (Python with pip is needed for the hvac check)",
    )?;
    std::fs::write(&marker, &requirement)?;
    Ok(dir)
}

/// A `node_modules` holding node-vault as locked in `tests/clients/package-lock.json`.
fn node_vault_dir() -> Result<PathBuf> {
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients");
    let lock = std::fs::read(src.join("package-lock.json"))?;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("node-clients");
    let marker = dir.join(".installed");
    if std::fs::read(&marker).ok().as_deref() == Some(&lock[..]) {
        return Ok(dir.join("node_modules"));
    }
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(src.join("package.json"), dir.join("package.json"))?;
    std::fs::write(dir.join("package-lock.json"), &lock)?;
    install(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&dir),
        "npm ci (Node.js with npm is needed for the node-vault check)",
    )?;
    std::fs::write(&marker, &lock)?;
    Ok(dir.join("node_modules"))
}

/// Run one client's check script against a fresh TLS server; its stdout on success.
async fn run_check(program: &str, script: &str, env: &[(&str, &Path)]) -> Result<String> {
    let server = Server::start_tls().await?;
    let cert = server
        .cert
        .as_ref()
        .context("TLS server has a certificate")?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("clients")
        .join(script);
    let audit = server.dir.path().join("audit.log");
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg(&script)
        .env("VAULT_ADDR", &server.addr)
        .env("VAULT_CACERT", &cert.cert_path)
        .env("AUDIT_FILE", &audit)
        .env_remove("VAULT_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .await
        .with_context(|| format!("running {program}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || stdout.contains("FAILED") {
        bail!(
            "{} failed\n--- stdout\n{stdout}\n--- stderr\n{}\n--- server log\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stderr),
            server.log()
        );
    }
    Ok(stdout)
}

/// Checks that passed, after the summary line (`<client> <version>: N checks passed`).
fn passed(stdout: &str, summary_prefix: &str) -> usize {
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with(summary_prefix) && summary.ends_with(" checks passed"),
        "unexpected summary: {summary}"
    );
    stdout.lines().filter(|l| l.starts_with("ok: ")).count()
}

#[tokio::test]
async fn node_vault_drives_the_ceremony_and_the_engines() -> Result<()> {
    let modules = node_vault_dir()?;
    let stdout = run_check("node", "node_vault_compat.js", &[("NODE_PATH", &modules)]).await?;
    let n = passed(&stdout, "node-vault: ");
    assert!(n >= 25, "only {n} checks ran:\n{stdout}");
    Ok(())
}

#[tokio::test]
async fn hvac_drives_the_ceremony_and_the_engines_a_vault_user_relies_on() -> Result<()> {
    let site = hvac_dir()?;
    let stdout = run_check(python(), "hvac_compat.py", &[("PYTHONPATH", &site)]).await?;
    let n = passed(&stdout, &format!("hvac {HVAC_VERSION}: "));
    assert!(n >= 55, "only {n} checks ran:\n{stdout}");
    Ok(())
}
