//! Nothing below the barrier sees plaintext: write recognisable values through the API
//! (a cubbyhole secret, a policy, token metadata), force a snapshot-sized log, then
//! scan every byte of the data directory (Raft log segments, snapshots, sled) for them
//! and for the root token.

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
            b"canary-policy-body-never" as &[u8],
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
