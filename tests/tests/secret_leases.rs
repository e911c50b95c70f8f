//! Secret leases end to end, with the example `dynamic-creds` external plugin (built by
//! this crate from `plugins/examples/dynamic-creds`) as the producer: a credential read
//! gets a Vault-shaped lease; lookup, renew (reaching the plugin, with the increment and
//! the max TTL applied) and revoke (reaching the plugin) work through `sys/leases/*` and
//! the legacy `sys/renew`/`sys/revoke`; expiry, revoking the creating token (and its
//! parent), disabling and moving the mount revoke through the plugin; a failing revoke
//! keeps the lease (lookup shows the error) and blocks a disable until `revoke-force`;
//! leases survive a restart and expire after unseal.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{install_plugin, poll, sha256_hex, Server};
use crate::pipeline::vaultrs_client;

fn plugin_binary() -> &'static str {
    env!("CARGO_BIN_EXE_coffer-example-dynamic-creds")
}

/// On a server from `start_tls_with_plugins`: the plugin installed, the server initialised and unsealed, the
/// plugin registered and mounted at `dyn/`. Returns the unseal keys and root token.
async fn setup(server: &Server) -> Result<(Vec<String>, String)> {
    let bytes = std::fs::read(plugin_binary())?;
    install_plugin(&server.plugin_dir(), "dynamic-creds", &bytes)?;
    let (keys, _, root) = server.init(1, 1).await?;
    server.unseal(&keys).await?;
    server.wait_active().await?;
    let sha = sha256_hex(&bytes);
    let (status, body) = server
        .call(
            "PUT",
            "sys/plugins/catalog/secret/dynamic-creds",
            Some(&root),
            Some(json!({ "sha256": sha, "command": "dynamic-creds" })),
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    vaultrs::sys::mount::enable(&vaultrs_client(server, &root), "dyn", "dynamic-creds", None)
        .await?;
    Ok((keys, root))
}

/// PUT `body` to `path` (a role, the plugin's config) and require 204 No Content.
async fn put_204(server: &Server, token: &str, path: &str, body: Value) -> Result<()> {
    let (status, body) = server.call("PUT", path, Some(token), Some(body)).await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "PUT {path}: {body}");
    Ok(())
}

/// Read a credential: (lease id, username, the whole answer).
async fn creds(
    server: &Server,
    token: &str,
    mount: &str,
    role: &str,
) -> Result<(String, String, Value)> {
    let (status, body) = server
        .call("GET", &format!("{mount}/creds/{role}"), Some(token), None)
        .await?;
    if status != StatusCode::OK {
        bail!("{mount}/creds/{role}: {status} {body}");
    }
    let lease_id = body["lease_id"].as_str().context("lease_id")?.to_string();
    let username = body["data"]["username"]
        .as_str()
        .context("username")?
        .to_string();
    Ok((lease_id, username, body))
}

async fn account(server: &Server, token: &str, mount: &str, username: &str) -> Result<Value> {
    let (status, body) = server
        .call(
            "GET",
            &format!("{mount}/users/{username}"),
            Some(token),
            None,
        )
        .await?;
    if status != StatusCode::OK {
        bail!("{mount}/users/{username}: {status} {body}");
    }
    Ok(body["data"].clone())
}

/// How long the waits below give the expiry timers and revocations.
const WAIT: Duration = Duration::from_secs(30);

/// Wait (bounded) until the plugin reports the account revoked; a failed read ends the
/// wait at once.
async fn wait_revoked(server: &Server, token: &str, mount: &str, username: &str) -> Result<()> {
    let revoked = poll(WAIT, || async {
        let record = account(server, token, mount, username).await;
        record
            .map(|r| (r["status"] == "revoked").then_some(()))
            .transpose()
    })
    .await;
    match revoked {
        Some(done) => done,
        None => bail!(
            "{username} was not revoked: {}",
            account(server, token, mount, username).await?
        ),
    }
}

/// `PUT sys/leases/<op>` with `body` (which names the lease).
async fn lease_op(
    server: &Server,
    token: &str,
    op: &str,
    body: Value,
) -> Result<(StatusCode, Value)> {
    server
        .call("PUT", &format!("sys/leases/{op}"), Some(token), Some(body))
        .await
}

/// `sys/leases/lookup` of one lease.
pub(crate) async fn lookup(
    server: &Server,
    token: &str,
    lease_id: &str,
) -> Result<(StatusCode, Value)> {
    lease_op(server, token, "lookup", json!({ "lease_id": lease_id })).await
}

/// `sys/leases/renew` of one lease (the id in the body), with an optional increment.
pub(crate) async fn renew(
    server: &Server,
    token: &str,
    lease_id: &str,
    increment: Option<&str>,
) -> Result<(StatusCode, Value)> {
    let mut body = json!({ "lease_id": lease_id });
    if let Some(i) = increment {
        body["increment"] = json!(i);
    }
    lease_op(server, token, "renew", body).await
}

/// `sys/leases/revoke` of one lease (the id in the body).
pub(crate) async fn revoke(
    server: &Server,
    token: &str,
    lease_id: &str,
) -> Result<(StatusCode, Value)> {
    lease_op(server, token, "revoke", json!({ "lease_id": lease_id })).await
}

/// Wait (bounded) until the lease is gone from the index; a failed lookup request ends
/// the wait at once.
async fn wait_lease_gone(server: &Server, token: &str, lease_id: &str) -> Result<()> {
    let gone = poll(WAIT, || async {
        let looked = lookup(server, token, lease_id).await;
        looked
            .map(|(status, _)| (status == StatusCode::BAD_REQUEST).then_some(()))
            .transpose()
    })
    .await;
    match gone {
        Some(done) => done,
        None => {
            let (status, body) = lookup(server, token, lease_id).await?;
            bail!("lease {lease_id} still there: {status} {body}")
        }
    }
}

#[tokio::test]
async fn secret_lease_issue_lookup_renew_and_revoke_reach_the_plugin() -> Result<()> {
    let server = Server::start_tls_with_plugins().await?;
    let (_, root) = setup(&server).await?;
    let root = root.as_str();
    put_204(
        &server,
        root,
        "dyn/roles/app",
        json!({ "ttl": "1h", "max_ttl": "2h" }),
    )
    .await?;

    // Issued with a Vault-shaped lease.
    let (lease_id, user, body) = creds(&server, root, "dyn", "app").await?;
    let suffix = lease_id
        .strip_prefix("dyn/creds/app/")
        .context(lease_id.clone())?;
    assert_eq!(suffix.len(), 24, "{lease_id}");
    assert!(
        suffix.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{lease_id}"
    );
    assert_eq!(body["lease_duration"], 3600, "{body}");
    assert_eq!(body["renewable"], true, "{body}");
    assert!(body["data"]["password"]
        .as_str()
        .is_some_and(|p| p.len() == 24));
    assert_eq!(
        account(&server, root, "dyn", &user).await?["status"],
        "active"
    );

    // Lookup and list.
    let (status, body) = lookup(&server, root, &lease_id).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["id"], lease_id.as_str());
    assert_eq!(body["data"]["renewable"], true);
    assert!(body["data"]["ttl"].as_i64().unwrap() > 3500, "{body}");
    assert!(body["data"]["issue_time"].is_string(), "{body}");
    assert!(body["data"]["last_renewal"].is_null(), "{body}");
    let (status, body) = server
        .call("LIST", "sys/leases/lookup/dyn/creds/app/", Some(root), None)
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["keys"], json!([suffix]));

    // Renew reaches the plugin with the increment; the core grants it.
    let (status, body) = renew(&server, root, &lease_id, Some("10m")).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["lease_id"], lease_id.as_str());
    assert_eq!(body["lease_duration"], 600, "{body}");
    let record = account(&server, root, "dyn", &user).await?;
    assert_eq!(record["renewals"], 1, "{record}");
    assert_eq!(record["last_increment"], 600, "{record}");
    let (_, body) = lookup(&server, root, &lease_id).await?;
    assert!(body["data"]["last_renewal"].is_string(), "{body}");
    assert!(body["data"]["ttl"].as_i64().unwrap() <= 600, "{body}");

    // An increment past the role's max_ttl is capped (with a warning); legacy path.
    let (status, body) = server
        .call(
            "PUT",
            &format!("sys/renew/{lease_id}"),
            Some(root),
            Some(json!({ "increment": "5h" })),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let granted = body["lease_duration"].as_u64().unwrap();
    assert!(granted <= 7200 && granted > 7000, "{body}");
    assert!(!body["warnings"].as_array().unwrap().is_empty(), "{body}");
    assert_eq!(account(&server, root, "dyn", &user).await?["renewals"], 2);

    // The plugin may refuse a renewal: the lease is unchanged.
    put_204(&server, root, "dyn/config", json!({ "refuse_renew": true })).await?;
    let (status, body) = renew(&server, root, &lease_id, None).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["errors"].to_string().contains("refused"), "{body}");
    assert_eq!(account(&server, root, "dyn", &user).await?["renewals"], 2);

    // Revoke reaches the plugin and removes the lease.
    let (status, body) = revoke(&server, root, &lease_id).await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        account(&server, root, "dyn", &user).await?["status"],
        "revoked"
    );
    let (status, _) = lookup(&server, root, &lease_id).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Legacy revoke with the id in the URL; revoke-prefix (sudo) for the rest.
    let (second, user2, _) = creds(&server, root, "dyn", "app").await?;
    let (status, _) = server
        .call("PUT", &format!("sys/revoke/{second}"), Some(root), None)
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        account(&server, root, "dyn", &user2).await?["status"],
        "revoked"
    );
    let (_, user3, _) = creds(&server, root, "dyn", "app").await?;
    let (_, user4, _) = creds(&server, root, "dyn", "app").await?;
    let (status, _) = server
        .call(
            "PUT",
            "sys/leases/revoke-prefix/dyn/creds",
            Some(root),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for u in [user3, user4] {
        assert_eq!(
            account(&server, root, "dyn", &u).await?["status"],
            "revoked"
        );
    }
    let (status, _) = server
        .call("LIST", "sys/leases/lookup/dyn/creds/app/", Some(root), None)
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn expiry_and_token_revocation_revoke_secret_leases_through_the_plugin() -> Result<()> {
    let server = Server::start_tls_with_plugins().await?;
    let (_, root) = setup(&server).await?;
    let root = root.as_str();
    put_204(&server, root, "dyn/roles/short", json!({ "ttl": "2s" })).await?;
    put_204(&server, root, "dyn/roles/long", json!({ "ttl": "1h" })).await?;

    // Expiry: the timer revokes through the plugin and drops the lease.
    let (lease_id, user, body) = creds(&server, root, "dyn", "short").await?;
    assert_eq!(body["lease_duration"], 2, "{body}");
    wait_revoked(&server, root, "dyn", &user).await?;
    wait_lease_gone(&server, root, &lease_id).await?;

    // Revoking the token that created a lease revokes the lease.
    let client = vaultrs_client(&server, root);
    let parent = vaultrs::token::new(&client, None).await?.client_token;
    let (lease_a, user_a, _) = creds(&server, &parent, "dyn", "long").await?;
    vaultrs::token::revoke(&client, &parent).await?;
    wait_revoked(&server, root, "dyn", &user_a).await?;
    wait_lease_gone(&server, root, &lease_a).await?;

    // ... and revoking a parent revokes the leases of its children.
    let parent = vaultrs::token::new(&client, None).await?.client_token;
    let child = vaultrs::token::new(&vaultrs_client(&server, &parent), None)
        .await?
        .client_token;
    let (lease_b, user_b, _) = creds(&server, &child, "dyn", "long").await?;
    let (lease_c, user_c, _) = creds(&server, root, "dyn", "long").await?;
    vaultrs::token::revoke(&client, &parent).await?;
    wait_revoked(&server, root, "dyn", &user_b).await?;
    wait_lease_gone(&server, root, &lease_b).await?;
    // A lease of another token is untouched.
    assert_eq!(
        account(&server, root, "dyn", &user_c).await?["status"],
        "active"
    );
    let (status, _) = lookup(&server, root, &lease_c).await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn failed_revocation_keeps_the_lease_blocks_disable_until_forced_and_mounts_revoke_on_move_and_disable(
) -> Result<()> {
    let server = Server::start_tls_with_plugins().await?;
    let (_, root) = setup(&server).await?;
    let root = root.as_str();
    put_204(&server, root, "dyn/roles/app", json!({ "ttl": "1h" })).await?;

    // The plugin refuses revocations: the lease stays, lookup shows why.
    let (stuck, stuck_user, _) = creds(&server, root, "dyn", "app").await?;
    put_204(&server, root, "dyn/config", json!({ "fail_revoke": true })).await?;
    let (status, body) = revoke(&server, root, &stuck).await?;
    assert!(status.is_server_error(), "{status} {body}");
    let (status, body) = lookup(&server, root, &stuck).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["data"]["revoke_attempts"].as_u64().unwrap() >= 1,
        "{body}"
    );
    assert!(
        body["data"]["revoke_error"].to_string().contains("refused"),
        "{body}"
    );
    assert_eq!(body["data"]["irrevocable"], false, "{body}");
    assert_eq!(
        account(&server, root, "dyn", &stuck_user).await?["status"],
        "active"
    );

    // Disabling the mount must revoke its leases first: refused, nothing deleted.
    let (status, body) = server
        .call("DELETE", "sys/mounts/dyn", Some(root), None)
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        account(&server, root, "dyn", &stuck_user).await?["status"],
        "active"
    );

    // revoke-force (sudo) drops the lease although the plugin still refuses.
    let (status, body) = server
        .call(
            "PUT",
            "sys/leases/revoke-force/dyn/creds/app",
            Some(root),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, _) = lookup(&server, root, &stuck).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        account(&server, root, "dyn", &stuck_user).await?["status"],
        "active"
    );

    // Moving the mount revokes its leases (their ids name the old path), as Vault.
    put_204(&server, root, "dyn/config", json!({ "fail_revoke": false })).await?;
    let (moved, moved_user, _) = creds(&server, root, "dyn", "app").await?;
    let (status, body) = server
        .call(
            "PUT",
            "sys/remount",
            Some(root),
            Some(json!({ "from": "dyn", "to": "dyn2" })),
        )
        .await?;
    assert!(status.is_success(), "{status} {body}");
    assert_eq!(
        account(&server, root, "dyn2", &moved_user).await?["status"],
        "revoked"
    );
    let (status, _) = lookup(&server, root, &moved).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Disabling revokes through the plugin before the data goes.
    let (lease, user, _) = creds(&server, root, "dyn2", "app").await?;
    assert!(lease.starts_with("dyn2/creds/app/"), "{lease}");
    vaultrs::sys::mount::disable(&vaultrs_client(&server, root), "dyn2").await?;
    let (status, _) = lookup(&server, root, &lease).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let logged = format!("revoked account {user}");
    poll(Duration::from_secs(10), || async {
        server.log().contains(&logged).then_some(())
    })
    .await
    .with_context(|| format!("the plugin never logged the revocation of {user}"))?;
    let (status, _) = server
        .call(
            "LIST",
            "sys/leases/lookup/dyn2/creds/app/",
            Some(root),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn secret_leases_survive_restart_and_expire_after_unseal() -> Result<()> {
    let mut server = Server::start_tls_with_plugins().await?;
    let (keys, root) = setup(&server).await?;
    let root = root.as_str();
    put_204(&server, root, "dyn/roles/short", json!({ "ttl": "4s" })).await?;
    put_204(&server, root, "dyn/roles/long", json!({ "ttl": "1h" })).await?;
    let (short_lease, short_user, _) = creds(&server, root, "dyn", "short").await?;
    let (long_lease, long_user, _) = creds(&server, root, "dyn", "long").await?;
    server.restart().await?;
    server.unseal(&keys).await?;
    server.wait_active().await?;
    wait_revoked(&server, root, "dyn", &short_user).await?;
    wait_lease_gone(&server, root, &short_lease).await?;
    assert_eq!(
        account(&server, root, "dyn", &long_user).await?["status"],
        "active"
    );
    let (status, body) = lookup(&server, root, &long_lease).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["data"]["ttl"].as_i64().unwrap() > 3500, "{body}");
    // Still renewable and revocable through the restarted plugin.
    let (status, body) = renew(&server, root, &long_lease, None).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = revoke(&server, root, &long_lease).await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        account(&server, root, "dyn", &long_user).await?["status"],
        "revoked"
    );
    Ok(())
}
