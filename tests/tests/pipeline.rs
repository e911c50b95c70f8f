//! The request pipeline over HTTP: tokens, ACL policies (200 vs 403), capabilities,
//! mounts, path sanitising and the error envelope. Uses the `vaultrs` client where it
//! covers the call, raw HTTP otherwise.

use reqwest::StatusCode;
use serde_json::json;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};

use crate::harness::Server;

pub fn vaultrs_client(server: &Server, token: &str) -> VaultClient {
    let settings = VaultClientSettingsBuilder::default()
        .address(&server.addr)
        .token(token)
        .verify(false)
        .build()
        .expect("settings");
    VaultClient::new(settings).expect("client")
}

async fn dev() -> anyhow::Result<Server> {
    Server::start_dev("root").await
}

#[tokio::test]
async fn policy_grants_one_path_and_not_another() -> anyhow::Result<()> {
    let server = dev().await?;
    let client = vaultrs_client(&server, "root");
    vaultrs::sys::policy::set(
        &client,
        "cubby-read",
        r#"path "sys/mounts" { capabilities = ["read"] }
           path "sys/policies/acl/*" { capabilities = ["deny"] }"#,
    )
    .await?;
    let read = vaultrs::sys::policy::read(&client, "cubby-read").await?;
    assert!(read.rules.contains("sys/mounts"));
    let listed = vaultrs::sys::policy::list(&client).await?;
    assert!(listed.policies.contains(&"cubby-read".to_string()));
    assert!(listed.policies.contains(&"default".to_string()));

    let created = vaultrs::token::new(
        &client,
        Some(
            &mut vaultrs::api::token::requests::CreateTokenRequest::builder()
                .policies(vec!["cubby-read".to_string()]),
        ),
    )
    .await?;
    let token = created.client_token.clone();
    assert!(created.policies.contains(&"cubby-read".to_string()));

    // Allowed: sys/mounts (the policy) and cubbyhole (the default policy). Denied:
    // the policy endpoints (explicit deny) and sys/auth (no rule).
    let (status, _) = server.call("GET", "sys/mounts", Some(&token), None).await?;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server
        .call("PUT", "cubbyhole/x", Some(&token), Some(json!({"a": "b"})))
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = server
        .call("GET", "cubbyhole/x", Some(&token), None)
        .await?;
    assert_eq!(
        (status, body["data"]["a"].clone()),
        (StatusCode::OK, json!("b"))
    );
    let (status, body) = server
        .call("GET", "sys/policies/acl/cubby-read", Some(&token), None)
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, json!({"errors": ["permission denied"]}));
    let (status, _) = server.call("GET", "sys/auth", Some(&token), None).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Cubbyholes are per token: root does not see the child's secret.
    let (status, _) = server
        .call("GET", "cubbyhole/x", Some("root"), None)
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // capabilities-self as the child.
    let (status, body) = server
        .call(
            "POST",
            "sys/capabilities-self",
            Some(&token),
            Some(json!({"paths": ["sys/mounts", "cubbyhole/x", "sys/policies/acl/x", "secret/y"]})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["sys/mounts"], json!(["read"]));
    assert_eq!(
        body["data"]["cubbyhole/x"],
        json!(["create", "delete", "list", "read", "update"])
    );
    assert_eq!(body["data"]["sys/policies/acl/x"], json!(["deny"]));
    assert_eq!(body["data"]["secret/y"], json!(["deny"]));
    assert_eq!(body["sys/mounts"], json!(["read"]), "copied to top level");

    // Deleting the policy takes effect at once (cache invalidated).
    vaultrs::sys::policy::delete(&client, "cubby-read").await?;
    let (status, _) = server.call("GET", "sys/mounts", Some(&token), None).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    Ok(())
}

#[tokio::test]
async fn token_tree_lookup_renew_revoke() -> anyhow::Result<()> {
    let server = dev().await?;
    let client = vaultrs_client(&server, "root");
    let me = vaultrs::token::lookup_self(&client).await?;
    assert_eq!(me.policies, vec!["root".to_string()]);

    vaultrs::sys::policy::set(
        &client,
        "token-creator",
        r#"path "auth/token/create" { capabilities = ["update"] }"#,
    )
    .await?;
    let parent = vaultrs::token::new(
        &client,
        Some(
            &mut vaultrs::api::token::requests::CreateTokenRequest::builder()
                .ttl("1h")
                .policies(vec!["token-creator".to_string()]),
        ),
    )
    .await?;
    let parent_client = vaultrs_client(&server, &parent.client_token);
    let child = vaultrs::token::new(&parent_client, None).await?;
    let info = vaultrs::token::lookup(&client, &child.client_token).await?;
    assert!(
        info.ttl > 3000 && info.ttl <= 3600,
        "child never outlives the parent: {}",
        info.ttl
    );
    let by_accessor = vaultrs::token::lookup_accessor(&client, &child.accessor).await?;
    assert_eq!(by_accessor.accessor, child.accessor);

    let renewed = vaultrs::token::renew(&client, &parent.client_token, Some("30m")).await?;
    assert_eq!(renewed.lease_duration, 1800);

    // A child cannot escalate beyond its parent's policies.
    let (status, _) = server
        .call(
            "POST",
            "auth/token/create",
            Some(&parent.client_token),
            Some(json!({"policies": ["root"]})),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Revoking the parent revokes the child.
    vaultrs::token::revoke(&client, &parent.client_token).await?;
    let (status, _) = server
        .call(
            "GET",
            "auth/token/lookup-self",
            Some(&child.client_token),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // num_uses: a 2-use token works twice.
    let (_, body) = server
        .call(
            "POST",
            "auth/token/create",
            Some("root"),
            Some(json!({"num_uses": 2})),
        )
        .await?;
    let limited = body["auth"]["client_token"].as_str().unwrap().to_string();
    for _ in 0..2 {
        let (status, _) = server
            .call("GET", "auth/token/lookup-self", Some(&limited), None)
            .await?;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _) = server
        .call("GET", "auth/token/lookup-self", Some(&limited), None)
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_vault_errors() -> anyhow::Result<()> {
    let server = dev().await?;
    // Traversal, unknown paths, malformed JSON, wrong types, huge bodies, bad verbs.
    let (status, body) = server
        .call("GET", "cubbyhole/../sys/seal", Some("root"), None)
        .await?;
    assert!(
        status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
        "{status} {body}"
    );
    let (status, body) = server.call("GET", "nope/x", Some("root"), None).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["errors"][0]
        .as_str()
        .unwrap()
        .contains("no handler for route"));
    let (status, _) = server
        .call_raw("PUT", "sys/policies/acl/x", b"{\"policy\": ")
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = server
        .call_raw("PUT", "sys/policies/acl/x", b"[1,2,3]")
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = server
        .call(
            "PUT",
            "sys/policies/acl/x",
            Some("root"),
            Some(json!({"policy": 42})),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = server
        .call(
            "PUT",
            "sys/policies/acl/x",
            Some("root"),
            Some(json!({"policy": "path \"a\" { capabilities = [\"fly\"] }"})),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = server
        .call(
            "PUT",
            "sys/policies/acl/root",
            Some("root"),
            Some(json!({"policy": "path \"a\" {}"})),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = server
        .call("DELETE", "sys/policies/acl/default", Some("root"), None)
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let huge = vec![b'a'; 33 * 1024 * 1024];
    let resp = server
        .client
        .put(server.url("cubbyhole/big"))
        .header("X-Vault-Token", "root")
        .body(huge)
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let resp = server
        .client
        .patch(server.url("cubbyhole/x"))
        .header("X-Vault-Token", "root")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let resp = server
        .client
        .request(
            reqwest::Method::from_bytes(b"BREW")?,
            server.url("cubbyhole/x"),
        )
        .header("X-Vault-Token", "root")
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers().get("cache-control").unwrap(), "no-store");
    // Nothing changed, and the server is alive.
    let (status, _) = server
        .call("GET", "sys/policies/acl/x", Some("root"), None)
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server.call("GET", "sys/health", None, None).await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn mount_table_and_ui_mounts() -> anyhow::Result<()> {
    let server = dev().await?;
    let (status, body) = server.call("GET", "sys/mounts", Some("root"), None).await?;
    assert_eq!(status, StatusCode::OK);
    for m in ["cubbyhole/", "sys/", "identity/"] {
        assert!(body["data"][m]["accessor"].is_string(), "{m} in {body}");
        assert!(body[m].is_object(), "{m} copied to the top level");
    }
    let (status, body) = server.call("GET", "sys/auth", Some("root"), None).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["token/"]["type"], "token");
    let (status, body) = server
        .call("GET", "sys/internal/ui/mounts/cubbyhole/foo", None, None)
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["path"], "cubbyhole/");
    assert_eq!(body["data"]["type"], "cubbyhole");
    let (status, _) = server
        .call(
            "POST",
            "sys/mounts/cubbyhole2",
            Some("root"),
            Some(json!({"type": "no-such-engine"})),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = server
        .call(
            "POST",
            "sys/mounts/sys/x",
            Some("root"),
            Some(json!({"type": "cubbyhole"})),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = server
        .call("DELETE", "sys/mounts/sys", Some("root"), None)
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    Ok(())
}

#[tokio::test]
async fn token_roles_and_batch_tokens() -> anyhow::Result<()> {
    let server = dev().await?;
    let (status, _) = server
        .call("POST", "auth/token/roles/ci", Some("root"), Some(json!({"allowed_policies": ["ci", "default"], "orphan": true, "token_period": "1h"})))
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = server
        .call("GET", "auth/token/roles/ci", Some("root"), None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["token_period"], 3600);
    let (_, body) = server
        .call("LIST", "auth/token/roles", Some("root"), None)
        .await?;
    assert_eq!(body["data"]["keys"], json!(["ci"]));

    let (status, body) = server
        .call(
            "POST",
            "auth/token/create/ci",
            Some("root"),
            Some(json!({})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["auth"]["policies"], json!(["ci", "default"]));
    assert_eq!(body["auth"]["orphan"], true);
    assert_eq!(body["auth"]["lease_duration"], 3600);
    let (status, _) = server
        .call(
            "POST",
            "auth/token/create/ci",
            Some("root"),
            Some(json!({"policies": ["admin"]})),
        )
        .await?;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "outside the role's allowed policies"
    );
    let (status, _) = server
        .call(
            "POST",
            "auth/token/create/nope",
            Some("root"),
            Some(json!({})),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Batch tokens: never stored, usable, not renewable, no accessor.
    let (status, body) = server
        .call(
            "POST",
            "auth/token/create",
            Some("root"),
            Some(json!({"type": "batch", "policies": ["default"], "ttl": "10m"})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let batch = body["auth"]["client_token"].as_str().unwrap().to_string();
    assert!(batch.starts_with("hvb."), "{batch}");
    assert_eq!(body["auth"]["accessor"], "");
    let (status, body) = server
        .call("GET", "auth/token/lookup-self", Some(&batch), None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["type"], "batch");
    let (status, _) = server
        .call(
            "POST",
            "auth/token/renew-self",
            Some(&batch),
            Some(json!({})),
        )
        .await?;
    assert!(status == StatusCode::BAD_REQUEST || status == StatusCode::FORBIDDEN);
    let mut tampered = batch.clone();
    tampered.push('A');
    let (status, _) = server
        .call("GET", "auth/token/lookup-self", Some(&tampered), None)
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = server
        .call(
            "POST",
            "auth/token/create",
            Some("root"),
            Some(json!({"type": "batch", "policies": ["root"]})),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // tidy answers 202 with a warning.
    let (status, body) = server
        .call("POST", "auth/token/tidy", Some("root"), None)
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    Ok(())
}
