//! External secret-engine plugins end to end, with the example `kv-echo` plugin (built
//! by this crate from `plugins/examples/kv-echo`) in a configured `plugin_directory`:
//! the catalog refuses a wrong SHA-256 and commands outside the directory; a registered
//! plugin is mounted, written and read over HTTPS; `kill -9` of the plugin during a
//! request fails that request cleanly (500, "plugin exited") and the next one restarts
//! it with the data intact (it lives in Coffer's storage); an idle dead plugin is
//! restarted transparently; a replaced executable is refused at restart and at mount;
//! the plugin's values never appear in clear under the data directory; unmounting stops
//! the process; the plugin's stderr reaches the server log (at debug) and its values do
//! not.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{contains, install_plugin, sha256_hex, Server};

fn plugin_binary() -> &'static str {
    env!("CARGO_BIN_EXE_coffer-example-kv-echo")
}

/// Whether the process has exited (gone, or a zombie its parent has not reaped yet).
fn process_gone(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

async fn wait_gone(pid: u64) -> Result<()> {
    wait_until(pid, process_gone).await
}

/// Whether the process has been reaped by its parent (the server). Only then are all its
/// threads gone: a killed multi-threaded process can show its main thread as a zombie
/// while other threads (and its end of the pipes) are still being torn down.
fn process_reaped(pid: u64) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

async fn wait_reaped(pid: u64) -> Result<()> {
    wait_until(pid, process_reaped).await
}

async fn wait_until(pid: u64, done: fn(u64) -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done(pid) {
        if Instant::now() > deadline {
            bail!("plugin process {pid} is still running");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn kill9(pid: u64) -> Result<()> {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()?;
    if !status.success() {
        bail!("kill -9 {pid} failed");
    }
    Ok(())
}

async fn plugin_pid(server: &Server, token: &str) -> Result<u64> {
    let (status, body) = server.call("GET", "echo/pid", Some(token), None).await?;
    if status != StatusCode::OK {
        bail!("echo/pid: {status} {body}");
    }
    body["data"]["pid"].as_u64().context("pid in the answer")
}

fn errors(body: &Value) -> String {
    body["errors"].to_string()
}

#[tokio::test]
async fn external_plugin_catalog_mount_kill_restart_and_canary() -> Result<()> {
    let mut server = Server::start_tls_with_plugins().await?;
    let plugin_dir = server.plugin_dir();
    let original = std::fs::read(plugin_binary())?;
    install_plugin(&plugin_dir, "kv-echo", &original)?;
    let (keys, _, root) = server.init(1, 1).await?;
    server.unseal(&keys).await?;
    server.wait_active().await?;
    let token = root.as_str();
    let sha = sha256_hex(&original);
    let catalog = "sys/plugins/catalog/secret/kv-echo";

    // Refused: a wrong checksum, a command outside the directory, a built-in name, and
    // mounting a type nobody registered.
    let (status, body) = server
        .call(
            "PUT",
            catalog,
            Some(token),
            Some(json!({ "sha256": "00".repeat(32), "command": "kv-echo" })),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(errors(&body).contains("does not match"), "{body}");
    for command in ["../config.hcl", plugin_binary()] {
        let (status, body) = server
            .call(
                "PUT",
                catalog,
                Some(token),
                Some(json!({ "sha256": sha, "command": command })),
            )
            .await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{command}: {body}");
    }
    let (status, _) = server
        .call(
            "PUT",
            "sys/plugins/catalog/secret/kv",
            Some(token),
            Some(json!({ "sha256": sha, "command": "kv-echo" })),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = server
        .call(
            "PUT",
            "sys/mounts/echo",
            Some(token),
            Some(json!({ "type": "kv-echo" })),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Registered with its real checksum; env is stored but never shown.
    let (status, body) = server
        .call(
            "PUT",
            catalog,
            Some(token),
            Some(json!({
                "sha256": sha.to_uppercase(),
                "command": "kv-echo",
                "env": ["KV_ECHO_GREETING=hello"],
            })),
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = server.call("GET", catalog, Some(token), None).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["sha256"], sha);
    assert_eq!(body["data"]["command"], "kv-echo");
    assert_eq!(body["data"]["builtin"], false);
    assert!(body["data"].get("env").is_none(), "{body}");
    let (status, body) = server
        .call("LIST", "sys/plugins/catalog/secret", Some(token), None)
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed = body["data"]["keys"].to_string();
    assert!(
        listed.contains("\"kv-echo\"") && listed.contains("\"kv\""),
        "{body}"
    );
    let (status, body) = server
        .call("GET", "sys/plugins/catalog", Some(token), None)
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["data"]["secret"].to_string().contains("kv-echo"),
        "{body}"
    );
    let detailed = body["data"]["detailed"].as_array().context("detailed")?;
    assert!(detailed
        .iter()
        .any(|d| d["name"] == "kv-echo" && d["builtin"] == false && d["type"] == "secret"));

    // Mounted, written, read and listed through the plugin.
    let (status, body) = server
        .call(
            "PUT",
            "sys/mounts/echo",
            Some(token),
            Some(json!({ "type": "kv-echo", "options": { "flavour": "test" } })),
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (_, body) = server.call("GET", "sys/mounts", Some(token), None).await?;
    assert_eq!(body["data"]["echo/"]["type"], "kv-echo", "{body}");
    let canary = "CANARY-plugin-5d1e0c77-never-in-clear";
    let (status, body) = server
        .call(
            "PUT",
            "echo/kv/app",
            Some(token),
            Some(json!({ "password": canary })),
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = server.call("GET", "echo/kv/app", Some(token), None).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["password"], canary);
    assert!(body["data"]["_size"].as_u64().unwrap_or(0) > 0, "{body}");
    let (status, body) = server.call("LIST", "echo/kv", Some(token), None).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["keys"], json!(["app"]));
    let (_, body) = server.call("GET", "echo/info", Some(token), None).await?;
    assert_eq!(body["data"]["mount_point"], "echo/");
    assert_eq!(body["data"]["options"]["flavour"], "test");
    // The plugin gets the catalog's env and nothing of the server's.
    assert_eq!(
        body["data"]["env_keys"],
        json!(["KV_ECHO_GREETING"]),
        "{body}"
    );

    // kill -9 while a request is in flight: that request fails cleanly...
    let pid1 = plugin_pid(&server, token).await?;
    let started = Instant::now();
    let slow = server.call(
        "PUT",
        "echo/sleep",
        Some(token),
        Some(json!({ "ms": 20000, "marker": "sleeping" })),
    );
    let killer = async {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, body) = server
                .call("GET", "echo/kv/sleeping", Some(token), None)
                .await?;
            if status == StatusCode::OK && body["data"]["pid"].as_u64() == Some(pid1) {
                return kill9(pid1);
            }
            if Instant::now() > deadline {
                bail!("the slow request never reached the plugin: {status} {body}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (slow, killed) = tokio::join!(slow, killer);
    killed?;
    let (status, body) = slow?;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(errors(&body).contains("plugin exited"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "it waited for the sleep"
    );

    // ...and the next one restarts the plugin, with the data intact.
    let (status, body) = server.call("GET", "echo/kv/app", Some(token), None).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["password"], canary);
    let pid2 = plugin_pid(&server, token).await?;
    assert_ne!(pid1, pid2);
    wait_gone(pid1).await?;

    // A plugin that died while idle is restarted for the next request, which succeeds.
    kill9(pid2)?;
    wait_reaped(pid2).await?;
    let (status, body) = server.call("GET", "echo/kv/app", Some(token), None).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let pid3 = plugin_pid(&server, token).await?;
    assert_ne!(pid3, pid2);

    // A replaced executable is refused at the next start and at mount; putting the
    // registered one back heals the mount.
    let mut tampered = original.clone();
    tampered.extend_from_slice(b"\0tampered");
    install_plugin(&plugin_dir, "kv-echo", &tampered)?;
    kill9(pid3)?;
    wait_reaped(pid3).await?;
    let (status, body) = server.call("GET", "echo/kv/app", Some(token), None).await?;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(errors(&body).contains("does not match"), "{body}");
    let (status, body) = server
        .call(
            "PUT",
            "sys/mounts/echo2",
            Some(token),
            Some(json!({ "type": "kv-echo" })),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(errors(&body).contains("does not match"), "{body}");
    install_plugin(&plugin_dir, "kv-echo", &original)?;
    let (status, body) = server.call("GET", "echo/kv/app", Some(token), None).await?;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Still mounted: it cannot be deregistered.
    let (status, body) = server.call("DELETE", catalog, Some(token), None).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(errors(&body).contains("in use"), "{body}");

    // Canary: after a restart (the plugin exits with its server), nothing the plugin
    // stored is in clear under the data directory.
    let pid4 = plugin_pid(&server, token).await?;
    server.restart().await?;
    wait_gone(pid4).await?;
    let files = server.data_files();
    assert!(!files.is_empty());
    for (path, bytes) in &files {
        assert!(
            !contains(bytes, canary.as_bytes()),
            "{} contains the plugin's value in clear",
            path.display()
        );
    }
    server.unseal(&keys).await?;
    server.wait_active().await?;
    let (status, body) = server.call("GET", "echo/kv/app", Some(token), None).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["password"], canary);

    // The plugin's stderr reached the server log (debug); the secret value did not.
    let log = server.log();
    assert!(
        log.contains("kv-echo: serving mount echo/"),
        "no plugin stderr in the log"
    );
    assert!(
        !log.contains(canary),
        "the plugin's value is in the server log"
    );

    // Unmounting stops the process; then the entry can be removed.
    let pid5 = plugin_pid(&server, token).await?;
    let (status, body) = server
        .call("DELETE", "sys/mounts/echo", Some(token), None)
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    wait_reaped(pid5).await?;
    let (status, _) = server.call("DELETE", catalog, Some(token), None).await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server.call("GET", catalog, Some(token), None).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    Ok(())
}
