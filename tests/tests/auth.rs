//! Auth methods through the router, driven by `vaultrs`: userpass and approle login,
//! the tokens they issue (policies, TTLs, renewal through the method), and failures.

use reqwest::StatusCode;
use serde_json::json;
use vaultrs::api::auth::approle::requests::SetAppRoleRequest;
use vaultrs::api::auth::userpass::requests::CreateUserRequest;

use crate::harness::Server;
use crate::pipeline::vaultrs_client;

#[tokio::test]
async fn userpass_login_and_renew() -> anyhow::Result<()> {
    let server = Server::start_dev("root").await?;
    let root = vaultrs_client(&server, "root");
    vaultrs::sys::auth::enable(&root, "userpass", "userpass", None).await?;
    vaultrs::sys::policy::set(
        &root,
        "kv-read",
        r#"path "secret/data/*" { capabilities = ["read"] }"#,
    )
    .await?;
    vaultrs::auth::userpass::user::set(
        &root,
        "userpass",
        "alice",
        "correct horse",
        Some(
            CreateUserRequest::builder()
                .token_policies(vec!["kv-read".to_string()])
                .token_ttl("10m"),
        ),
    )
    .await?;
    vaultrs::kv2::set(
        &root,
        "secret",
        "team/db",
        &std::collections::HashMap::from([("pw", "s3cret")]),
    )
    .await?;

    let anon = vaultrs_client(&server, "");
    let auth = vaultrs::auth::userpass::login(&anon, "userpass", "alice", "correct horse").await?;
    assert!(auth.client_token.starts_with("hvs."));
    assert!(auth.policies.contains(&"kv-read".to_string()));
    assert!(auth.policies.contains(&"default".to_string()));
    assert_eq!(auth.lease_duration, 600);
    assert_eq!(auth.metadata.as_ref().unwrap()["username"], "alice");

    let (status, _) = server
        .call("GET", "secret/data/team/db", Some(&auth.client_token), None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server
        .call(
            "POST",
            "secret/data/team/db",
            Some(&auth.client_token),
            Some(json!({"data": {}})),
        )
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Renewal goes through the auth method: works while alice exists...
    let (status, body) = server
        .call(
            "POST",
            "auth/token/renew-self",
            Some(&auth.client_token),
            Some(json!({})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    // ...and is refused once she is deleted.
    vaultrs::auth::userpass::user::delete(&root, "userpass", "alice").await?;
    let (status, _) = server
        .call(
            "POST",
            "auth/token/renew-self",
            Some(&auth.client_token),
            Some(json!({})),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Wrong password and unknown user: the same 400.
    let bad = vaultrs::auth::userpass::login(&anon, "userpass", "bob", "x").await;
    assert!(
        matches!(
            bad,
            Err(vaultrs::error::ClientError::APIError { code: 400, .. })
        ),
        "{bad:?}"
    );
    Ok(())
}

#[tokio::test]
async fn approle_login_with_secret_id() -> anyhow::Result<()> {
    let server = Server::start_dev("root").await?;
    let root = vaultrs_client(&server, "root");
    vaultrs::sys::auth::enable(&root, "approle", "approle", None).await?;
    vaultrs::auth::approle::role::set(
        &root,
        "approle",
        "ci",
        Some(
            SetAppRoleRequest::builder()
                .token_policies(vec!["default".to_string()])
                .secret_id_num_uses(2u64),
        ),
    )
    .await?;
    let role_id = vaultrs::auth::approle::role::read_id(&root, "approle", "ci")
        .await?
        .role_id;
    let secret =
        vaultrs::auth::approle::role::secret::generate(&root, "approle", "ci", None).await?;

    let anon = vaultrs_client(&server, "");
    for _ in 0..2 {
        let auth =
            vaultrs::auth::approle::login(&anon, "approle", &role_id, &secret.secret_id).await?;
        let (status, body) = server
            .call(
                "GET",
                "auth/token/lookup-self",
                Some(&auth.client_token),
                None,
            )
            .await?;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["data"]["meta"]["role_name"], "ci", "{body}");
    }
    // num_uses = 2: the third login fails.
    let third = vaultrs::auth::approle::login(&anon, "approle", &role_id, &secret.secret_id).await;
    assert!(
        matches!(
            third,
            Err(vaultrs::error::ClientError::APIError { code: 400, .. })
        ),
        "{third:?}"
    );
    let wrong = vaultrs::auth::approle::login(&anon, "approle", &role_id, "not-a-secret").await;
    assert!(wrong.is_err());

    // The auth table lists the methods.
    let (_, body) = server.call("GET", "sys/auth", Some("root"), None).await?;
    assert_eq!(body["data"]["approle/"]["type"], "approle");
    Ok(())
}
