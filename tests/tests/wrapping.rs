//! Response wrapping: `X-Vault-Wrap-TTL` on any read or login, single-use unwrap
//! (through `vaultrs`), lookup, rewrap, `sys/wrapping/wrap`, and expiry of use.

use std::collections::HashMap;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::Server;
use crate::pipeline::vaultrs_client;

async fn wrapped_get(server: &Server, path: &str, ttl: &str) -> anyhow::Result<Value> {
    let resp = server
        .client
        .get(server.url(path))
        .header("X-Vault-Token", "root")
        .header("X-Vault-Wrap-TTL", ttl)
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::OK);
    Ok(resp.json().await?)
}

#[tokio::test]
async fn wrap_unwrap_lookup_rewrap() -> anyhow::Result<()> {
    let server = Server::start_dev("root").await?;
    let (status, _) = server
        .call(
            "POST",
            "secret/data/wrapped",
            Some("root"),
            Some(json!({"data": {"api_key": "k-123"}})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);

    let body = wrapped_get(&server, "secret/data/wrapped", "5m").await?;
    assert_eq!(
        body["data"],
        Value::Null,
        "data is hidden behind the wrapping token"
    );
    let info = &body["wrap_info"];
    assert_eq!(info["ttl"], 300);
    assert_eq!(info["creation_path"], "secret/data/wrapped");
    let wrapping_token = info["token"].as_str().unwrap().to_string();

    // Lookup is unauthenticated.
    let root_client = vaultrs_client(&server, "root");
    let looked = vaultrs::sys::wrapping::lookup(&root_client, &wrapping_token).await?;
    assert_eq!(looked.creation_path, "secret/data/wrapped");

    // The wrapping token can do nothing but unwrap.
    let (status, _) = server
        .call("GET", "secret/data/wrapped", Some(&wrapping_token), None)
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Unwrap with the wrapping token itself (vaultrs sends it as X-Vault-Token).
    let client = vaultrs_client(&server, &wrapping_token);
    let unwrapped: HashMap<String, Value> = vaultrs::sys::wrapping::unwrap(&client, None).await?;
    assert_eq!(unwrapped["data"]["api_key"], "k-123");
    // Single use.
    let again = vaultrs::sys::wrapping::unwrap::<Value>(&client, None).await;
    assert!(again.is_err(), "second unwrap must fail");

    // Rewrap gives a new token; the old one stops working.
    let body = wrapped_get(&server, "secret/data/wrapped", "1h").await?;
    let first = body["wrap_info"]["token"].as_str().unwrap().to_string();
    let (status, rewrapped) = server
        .call(
            "POST",
            "sys/wrapping/rewrap",
            Some("root"),
            Some(json!({"token": first})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{rewrapped}");
    let second = rewrapped["wrap_info"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(first, second);
    let (status, _) = server
        .call(
            "POST",
            "sys/wrapping/unwrap",
            Some("root"),
            Some(json!({"token": first})),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = server
        .call(
            "POST",
            "sys/wrapping/unwrap",
            Some("root"),
            Some(json!({"token": second})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["data"]["api_key"], "k-123");

    // sys/wrapping/wrap wraps arbitrary data, and needs a TTL.
    let (status, _) = server
        .call(
            "POST",
            "sys/wrapping/wrap",
            Some("root"),
            Some(json!({"x": "y"})),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let resp = server
        .client
        .post(server.url("sys/wrapping/wrap"))
        .header("X-Vault-Token", "root")
        .header("X-Vault-Wrap-TTL", "60")
        .json(&json!({"x": "y"}))
        .send()
        .await?;
    let body: Value = resp.json().await?;
    let t = body["wrap_info"]["token"].as_str().unwrap().to_string();
    let (_, body) = server
        .call("POST", "sys/wrapping/unwrap", Some(&t), None)
        .await?;
    assert_eq!(body["data"]["x"], "y");

    // Wrapping a token creation hides the new token until unwrapped.
    let resp = server
        .client
        .post(server.url("auth/token/create"))
        .header("X-Vault-Token", "root")
        .header("X-Vault-Wrap-TTL", "2m")
        .json(&json!({"policies": ["default"]}))
        .send()
        .await?;
    let body: Value = resp.json().await?;
    assert_eq!(body["auth"], Value::Null);
    let t = body["wrap_info"]["token"].as_str().unwrap().to_string();
    let (_, body) = server
        .call("POST", "sys/wrapping/unwrap", Some(&t), None)
        .await?;
    let new_token = body["auth"]["client_token"].as_str().unwrap();
    let (status, _) = server
        .call("GET", "auth/token/lookup-self", Some(new_token), None)
        .await?;
    assert_eq!(status, StatusCode::OK);

    // A bad wrap TTL is refused.
    let resp = server
        .client
        .get(server.url("secret/data/wrapped"))
        .header("X-Vault-Token", "root")
        .header("X-Vault-Wrap-TTL", "soon")
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    Ok(())
}
