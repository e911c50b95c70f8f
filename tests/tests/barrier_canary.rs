//! Nothing below the barrier sees plaintext: write recognisable values through the API
//! (a cubbyhole secret, a policy, token metadata, a KV v2 secret, a transit key), then
//! scan every byte of the data directory (Raft log segments, snapshots, sled) for them,
//! for the raw transit key bytes and for the tokens.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{contains, Server};

#[tokio::test]
async fn no_plaintext_below_the_barrier() -> anyhow::Result<()> {
    let mut server = Server::start_tls().await?;
    let (keys, _, root) = server.init(1, 1).await?;
    server.unseal(&keys).await?;
    server.wait_active().await?;

    let canary = "CANARY-7f3e9b1c-secret-value";
    let (status, body) = server
        .call(
            "PUT",
            "cubbyhole/canary",
            Some(&root),
            Some(json!({ "value": canary })),
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, _) = server
        .call(
            "PUT",
            "sys/policies/acl/canary-policy",
            Some(&root),
            Some(json!({ "policy": format!("# {canary}\npath \"secret/*\" {{ capabilities = [\"read\"] }}") })),
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = server
        .call(
            "PUT",
            "auth/token/create",
            Some(&root),
            Some(json!({ "meta": { "note": canary }, "policies": ["canary-policy"] })),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let child = body["auth"]["client_token"].as_str().unwrap().to_string();

    // A KV v2 secret and a transit key.
    let (status, body) = server
        .call(
            "POST",
            "sys/mounts/secret",
            Some(&root),
            Some(json!({"type": "kv", "options": {"version": "2"}})),
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = server
        .call(
            "POST",
            "secret/data/app",
            Some(&root),
            Some(json!({"data": {"password": canary}})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    server
        .call(
            "POST",
            "sys/mounts/transit",
            Some(&root),
            Some(json!({"type": "transit"})),
        )
        .await?;
    let (status, body) = server
        .call(
            "POST",
            "transit/keys/canary",
            Some(&root),
            Some(json!({"exportable": true})),
        )
        .await?;
    assert!(status.is_success(), "{body}");
    let (_, exported) = server
        .call(
            "GET",
            "transit/export/encryption-key/canary/1",
            Some(&root),
            None,
        )
        .await?;
    let transit_key_b64 = exported["data"]["keys"]["1"].as_str().unwrap().to_string();
    let transit_key =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &transit_key_b64)?;

    // Read back through the barrier: it is all there.
    let (_, body) = server
        .call("GET", "cubbyhole/canary", Some(&root), None)
        .await?;
    assert_eq!(body["data"]["value"], canary);

    // Restart so everything is on disk as a fresh process would find it.
    server.restart().await?;
    let files = server.data_files();
    assert!(!files.is_empty(), "no data files?");
    let mut scanned = 0usize;
    for (path, bytes) in &files {
        scanned += bytes.len();
        for needle in [
            canary.as_bytes(),
            root.as_bytes(),
            child.as_bytes(),
            &transit_key[..],
            transit_key_b64.as_bytes(),
        ] {
            assert!(
                !contains(bytes, needle),
                "{} contains plaintext {:?}",
                path.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
    assert!(scanned > 1000, "scanned only {scanned} bytes");

    // And after unsealing it is readable again.
    server.unseal(&keys).await?;
    server.wait_active().await?;
    let (_, body) = server
        .call("GET", "cubbyhole/canary", Some(&root), None)
        .await?;
    assert_eq!(body["data"]["value"], canary);
    Ok(())
}
