//! The unseal ceremony end to end over HTTPS: init, unseal (hex and base64 shares,
//! wrong shares, reset), seal, health codes, restart, rotate, rekey, generate-root,
//! and bad input to the bare `sys/` endpoints.

use base64::Engine;
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::Server;

#[tokio::test]
async fn init_unseal_seal_and_health_codes() -> anyhow::Result<()> {
    let server = Server::start_tls().await?;

    // Uninitialised: 501, and init reports false.
    let (status, body) = server.call("GET", "sys/health", None, None).await?;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    assert_eq!(body["initialized"], false);
    let (status, body) = server.call("GET", "sys/init", None, None).await?;
    assert_eq!(
        (status, body["initialized"].clone()),
        (StatusCode::OK, json!(false))
    );
    // uninitcode override
    let (status, _) = server
        .call("GET", "sys/health?uninitcode=200", None, None)
        .await?;
    assert_eq!(status, StatusCode::OK);

    // Bad init parameters: 400, nothing initialised.
    let (status, body) = server
        .call(
            "PUT",
            "sys/init",
            None,
            Some(json!({"secret_shares": 3, "secret_threshold": 5})),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["errors"][0].as_str().unwrap().contains("threshold"));
    let (status, _) = server.call_raw("PUT", "sys/init", b"{not json").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = server
        .call(
            "PUT",
            "sys/init",
            None,
            Some(json!({"secret_shares": "five", "secret_threshold": 3})),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, body) = server.call("GET", "sys/init", None, None).await?;
    assert_eq!(body["initialized"], false);

    let (keys, keys_b64, root) = server.init(5, 3).await?;
    assert_eq!((keys.len(), keys_b64.len()), (5, 5));
    assert!(root.starts_with("hvs.") && root.len() == 28, "{root}");

    // Init twice: 400.
    let (status, _) = server
        .call(
            "PUT",
            "sys/init",
            None,
            Some(json!({"secret_shares": 1, "secret_threshold": 1})),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Sealed: 503 health (and sealedcode override), 503 for secret paths.
    let (status, body) = server.call("GET", "sys/health", None, None).await?;
    assert_eq!(
        (status, body["sealed"].clone()),
        (StatusCode::SERVICE_UNAVAILABLE, json!(true))
    );
    let (status, _) = server
        .call("GET", "sys/health?sealedcode=299", None, None)
        .await?;
    assert_eq!(status.as_u16(), 299);
    let head = server.client.head(server.url("sys/health")).send().await?;
    assert_eq!(head.status(), StatusCode::SERVICE_UNAVAILABLE);
    let (status, body) = server
        .call("GET", "auth/token/lookup-self", Some(&root), None)
        .await?;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["errors"][0], "Vault is sealed");
    let (_, status_body) = server.call("GET", "sys/seal-status", None, None).await?;
    assert_eq!(status_body["t"], 3);
    assert_eq!(status_body["n"], 5);
    assert_eq!(status_body["type"], "shamir");
    assert!(status_body["version"].as_str().unwrap().starts_with("1.16"));

    // A malformed share: 400, progress untouched.
    let (_, body) = server.unseal(&keys[..1]).await.map(|b| ((), b))?;
    assert_eq!(body["progress"], 1);
    let (status, _) = server
        .call(
            "PUT",
            "sys/unseal",
            None,
            Some(json!({"key": "zz-not-a-key"})),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = server
        .call(
            "PUT",
            "sys/unseal",
            None,
            Some(json!({"key": hex::encode([1u8; 7])})),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, body) = server.call("GET", "sys/seal-status", None, None).await?;
    assert_eq!(body["progress"], 1);

    // reset clears it.
    let (status, body) = server
        .call("PUT", "sys/unseal", None, Some(json!({"reset": true})))
        .await?;
    assert_eq!(
        (status, body["progress"].clone()),
        (StatusCode::OK, json!(0))
    );

    // Two good shares and a wrong one (well-formed, other coordinates): error, still
    // sealed, progress reset, server alive.
    server.unseal(&keys[..2]).await?;
    let mut wrong = hex::decode(&keys[2])?;
    wrong[0] ^= 0xff;
    let (status, body) = server
        .call(
            "PUT",
            "sys/unseal",
            None,
            Some(json!({"key": hex::encode(&wrong)})),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, body) = server.call("GET", "sys/seal-status", None, None).await?;
    assert_eq!(
        (body["sealed"].clone(), body["progress"].clone()),
        (json!(true), json!(0))
    );

    // Mixed hex and base64 shares unseal.
    let body = server
        .unseal(&[keys[4].clone(), keys_b64[1].clone(), keys[3].clone()])
        .await?;
    assert_eq!(body["sealed"], false, "{body}");
    server.wait_active().await?;
    let (status, body) = server.call("GET", "sys/health", None, None).await?;
    assert_eq!(
        (status, body["sealed"].clone()),
        (StatusCode::OK, json!(false))
    );
    let (status, body) = server
        .call("GET", "auth/token/lookup-self", Some(&root), None)
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["policies"], json!(["root"]));
    let (status, body) = server.call("GET", "sys/leader", None, None).await?;
    assert_eq!(
        (status, body["is_self"].clone()),
        (StatusCode::OK, json!(true))
    );

    // Wrong token: 403 in Vault's envelope.
    let (status, body) = server
        .call("GET", "auth/token/lookup-self", Some("hvs.nope"), None)
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["errors"][0], "permission denied");

    // Seal needs a token; with root it seals.
    let (status, _) = server.call("PUT", "sys/seal", None, None).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = server.call("PUT", "sys/seal", Some(&root), None).await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server.call("GET", "sys/health", None, None).await?;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    Ok(())
}

#[tokio::test]
async fn restart_comes_up_sealed_and_keeps_data_and_rotation() -> anyhow::Result<()> {
    let mut server = Server::start_tls().await?;
    let (keys, _, root) = server.init(3, 2).await?;
    server.unseal(&keys[..2]).await?;
    server.wait_active().await?;

    let (status, body) = server
        .call("GET", "sys/key-status", Some(&root), None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["term"], 1);
    assert_eq!(body["term"], 1, "copied to the top level like Vault");
    let (status, _) = server.call("PUT", "sys/rotate", Some(&root), None).await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) = server
        .call("GET", "sys/key-status", Some(&root), None)
        .await?;
    assert_eq!(body["data"]["term"], 2);

    server.restart().await?;
    let (_, body) = server.call("GET", "sys/seal-status", None, None).await?;
    assert_eq!(body["sealed"], true);
    assert_eq!(body["initialized"], true);
    server.unseal(&keys[1..3]).await?;
    server.wait_active().await?;
    // The root token (written before the rotation, term 1) and the keyring (term 2)
    // survived the crash.
    let (status, _) = server
        .call("GET", "auth/token/lookup-self", Some(&root), None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = server
        .call("GET", "sys/key-status", Some(&root), None)
        .await?;
    assert_eq!(body["data"]["term"], 2);

    // Seal and unseal again without a restart.
    server.call("PUT", "sys/seal", Some(&root), None).await?;
    server.unseal(&keys[..2]).await?;
    let (status, _) = server
        .call("GET", "auth/token/lookup-self", Some(&root), None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn rekey_and_generate_root() -> anyhow::Result<()> {
    let server = Server::start_tls().await?;
    let (old_keys, _, root) = server.init(3, 2).await?;
    server.unseal(&old_keys[..2]).await?;
    server.wait_active().await?;

    // Rekey to 5/3.
    let (status, body) = server
        .call(
            "PUT",
            "sys/rekey/init",
            None,
            Some(json!({"secret_shares": 5, "secret_threshold": 3})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let nonce = body["nonce"].as_str().unwrap().to_string();
    let (status, _) = server
        .call(
            "PUT",
            "sys/rekey/update",
            None,
            Some(json!({"key": old_keys[0], "nonce": "wrong"})),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, body) = server
        .call(
            "PUT",
            "sys/rekey/update",
            None,
            Some(json!({"key": old_keys[0], "nonce": nonce})),
        )
        .await?;
    assert_eq!(body["progress"], 1);
    let (status, body) = server
        .call(
            "PUT",
            "sys/rekey/update",
            None,
            Some(json!({"key": old_keys[2], "nonce": nonce})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["complete"], true);
    let new_keys: Vec<String> = body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(new_keys.len(), 5);

    server.call("PUT", "sys/seal", Some(&root), None).await?;
    let (_, body) = server.call("GET", "sys/seal-status", None, None).await?;
    assert_eq!((body["t"].clone(), body["n"].clone()), (json!(3), json!(5)));
    // Old shares no longer unseal: three of them reconstruct the wrong key.
    server.unseal(&old_keys[..2]).await?;
    let (status, _) = server
        .call("PUT", "sys/unseal", None, Some(json!({"key": old_keys[2]})))
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, body) = server.call("GET", "sys/seal-status", None, None).await?;
    assert_eq!(body["sealed"], true);
    let body = server.unseal(&new_keys[1..4]).await?;
    assert_eq!(body["sealed"], false);
    server.wait_active().await?;

    // generate-root: we get an OTP, feed three shares, decode base64(token XOR otp).
    let (status, body) = server
        .call("PUT", "sys/generate-root/attempt", None, Some(json!({})))
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let otp = body["otp"].as_str().unwrap().to_string();
    assert_eq!(otp.len(), 28);
    let nonce = body["nonce"].as_str().unwrap().to_string();
    let mut last = serde_json::Value::Null;
    for k in &new_keys[..3] {
        let (status, body) = server
            .call(
                "PUT",
                "sys/generate-root/update",
                None,
                Some(json!({"key": k, "nonce": nonce})),
            )
            .await?;
        assert_eq!(status, StatusCode::OK, "{body}");
        last = body;
    }
    assert_eq!(last["complete"], true);
    let encoded = last["encoded_token"].as_str().unwrap();
    let xored = base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded)?;
    let token: String = xored
        .iter()
        .zip(otp.bytes())
        .map(|(a, b)| (a ^ b) as char)
        .collect();
    assert!(token.starts_with("hvs."), "{token}");
    assert_ne!(token, root);
    let (status, body) = server
        .call("GET", "auth/token/lookup-self", Some(&token), None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["policies"], json!(["root"]));
    Ok(())
}
