//! Audit devices: secrets never appear in clear in the log, `sys/audit-hash` matches the
//! logged HMACs, and a device that cannot write makes requests fail (fail closed).

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{contains, Server};

#[tokio::test]
async fn audit_log_hashes_secrets_and_matches_audit_hash() -> anyhow::Result<()> {
    let server = Server::start_dev("root").await?;
    let log = server.dir.path().join("audit.log");
    let (status, body) = server
        .call(
            "PUT",
            "sys/audit/file",
            Some("root"),
            Some(json!({"type": "file", "options": {"file_path": log.display().to_string()}})),
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (_, listed) = server.call("GET", "sys/audit", Some("root"), None).await?;
    assert_eq!(listed["data"]["file/"]["type"], "file");

    let (_, created) = server
        .call(
            "POST",
            "auth/token/create",
            Some("root"),
            Some(json!({"policies": ["root"]})),
        )
        .await?;
    let token = created["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let canary = "AUDIT-CANARY-d41d8cd98f";
    let (status, _) = server
        .call(
            "POST",
            "secret/data/app",
            Some(&token),
            Some(json!({"data": {"password": canary}})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    let (_, read) = server
        .call("GET", "secret/data/app", Some(&token), None)
        .await?;
    assert_eq!(read["data"]["data"]["password"], canary);

    let (status, hashed) = server
        .call(
            "POST",
            "sys/audit-hash/file",
            Some("root"),
            Some(json!({"input": canary})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{hashed}");
    let hash = hashed["data"]["hash"].as_str().unwrap().to_string();
    assert!(hash.starts_with("hmac-sha256:"));

    let text = std::fs::read(&log)?;
    assert!(
        !contains(&text, canary.as_bytes()),
        "secret in clear in the audit log"
    );
    assert!(
        !contains(&text, token.as_bytes()),
        "token in clear in the audit log"
    );
    assert!(
        contains(&text, hash.as_bytes()),
        "audit-hash does not match the log"
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(text)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert!(lines
        .iter()
        .any(|l| l["type"] == "request" && l["request"]["path"] == "secret/data/app"));
    assert!(lines
        .iter()
        .any(|l| l["type"] == "response"
            && l["response"]["data"]["data"]["password"] == hash.as_str()));
    Ok(())
}

#[tokio::test]
async fn unwritable_audit_device_fails_requests() -> anyhow::Result<()> {
    let server = Server::start_dev("root").await?;
    // /dev/full opens fine and fails every write (ENOSPC).
    let (status, _) = server
        .call(
            "PUT",
            "sys/audit/full",
            Some("root"),
            Some(json!({"type": "file", "options": {"file_path": "/dev/full"}})),
        )
        .await?;
    // The enable itself succeeded, but its own response could not be audited.
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let (status, body) = server
        .call("GET", "secret/data/anything", Some("root"), None)
        .await?;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        body["errors"][0].as_str().unwrap().contains("audit"),
        "{body}"
    );
    let (status, _) = server
        .call(
            "POST",
            "secret/data/x",
            Some("root"),
            Some(json!({"data": {"a": "b"}})),
        )
        .await?;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    // The refused write did not happen; health (not audited) still answers.
    let (status, _) = server.call("GET", "sys/health", None, None).await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}
