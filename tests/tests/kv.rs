//! KV v1 and v2 through the router, driven by the `vaultrs` client: versions, CAS,
//! delete/undelete/destroy, metadata, pruning, listing, mount tune (v1 -> v2 upgrade),
//! and disabling a mount deletes its data.

use std::collections::HashMap;

use reqwest::StatusCode;
use serde_json::json;
use vaultrs::api::kv2::requests::{SetSecretMetadataRequest, SetSecretRequestOptions};

use crate::harness::Server;
use crate::pipeline::vaultrs_client;

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn kv2_versions_cas_and_metadata() -> anyhow::Result<()> {
    let server = Server::start_dev("root").await?;
    let client = vaultrs_client(&server, "root");

    // Dev mode mounts KV v2 at secret/, like Vault.
    let (_, ui) = server
        .call(
            "GET",
            "sys/internal/ui/mounts/secret/app",
            Some("root"),
            None,
        )
        .await?;
    assert_eq!(ui["data"]["options"]["version"], "2", "{ui}");

    let v1 = vaultrs::kv2::set(&client, "secret", "app/db", &map(&[("password", "one")])).await?;
    assert_eq!(v1.version, 1);
    let v2 = vaultrs::kv2::set(&client, "secret", "app/db", &map(&[("password", "two")])).await?;
    assert_eq!(v2.version, 2);
    let latest: HashMap<String, String> = vaultrs::kv2::read(&client, "secret", "app/db").await?;
    assert_eq!(latest["password"], "two");
    let first: HashMap<String, String> =
        vaultrs::kv2::read_version(&client, "secret", "app/db", 1).await?;
    assert_eq!(first["password"], "one");

    // CAS: a stale version is refused with 400, the right one accepted.
    let stale = vaultrs::kv2::set_with_options(
        &client,
        "secret",
        "app/db",
        &map(&[("password", "x")]),
        SetSecretRequestOptions { cas: 1 },
    )
    .await;
    match stale {
        Err(vaultrs::error::ClientError::APIError { code, .. }) => assert_eq!(code, 400),
        other => panic!("expected a CAS conflict, got {other:?}"),
    }
    vaultrs::kv2::set_with_options(
        &client,
        "secret",
        "app/db",
        &map(&[("password", "three")]),
        SetSecretRequestOptions { cas: 2 },
    )
    .await?;

    // Soft delete: 404 with the metadata in the body; undelete brings it back.
    vaultrs::kv2::delete_latest(&client, "secret", "app/db").await?;
    let (status, body) = server
        .call("GET", "secret/data/app/db", Some("root"), None)
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["data"]["metadata"]["version"], 3, "{body}");
    assert!(
        body["data"]["metadata"]["deletion_time"]
            .as_str()
            .unwrap()
            .len()
            > 10
    );
    vaultrs::kv2::undelete_versions(&client, "secret", "app/db", vec![3]).await?;
    let back: HashMap<String, String> = vaultrs::kv2::read(&client, "secret", "app/db").await?;
    assert_eq!(back["password"], "three");

    // Destroy is permanent.
    vaultrs::kv2::destroy_versions(&client, "secret", "app/db", vec![1]).await?;
    let (status, body) = server
        .call("GET", "secret/data/app/db?version=1", Some("root"), None)
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["data"]["metadata"]["destroyed"], true);

    // Metadata, custom metadata, max_versions pruning.
    vaultrs::kv2::set_metadata(
        &client,
        "secret",
        "app/db",
        Some(
            SetSecretMetadataRequest::builder()
                .max_versions(2u64)
                .custom_metadata(map(&[("owner", "team-a")])),
        ),
    )
    .await?;
    vaultrs::kv2::set(&client, "secret", "app/db", &map(&[("password", "four")])).await?;
    let meta = vaultrs::kv2::read_metadata(&client, "secret", "app/db").await?;
    assert_eq!(meta.current_version, 4);
    assert_eq!(meta.max_versions, 2);
    assert_eq!(
        meta.versions.len(),
        2,
        "pruned to two versions: {:?}",
        meta.versions.keys()
    );
    assert_eq!(meta.custom_metadata.unwrap()["owner"], "team-a");

    // PATCH is a JSON merge patch onto the latest version.
    let resp = server
        .client
        .patch(server.url("secret/data/app/db"))
        .header("X-Vault-Token", "root")
        .header("content-type", "application/merge-patch+json")
        .body(json!({"data": {"user": "admin"}}).to_string())
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let merged: HashMap<String, String> = vaultrs::kv2::read(&client, "secret", "app/db").await?;
    assert_eq!(
        (merged["password"].as_str(), merged["user"].as_str()),
        ("four", "admin")
    );

    // Listing shows folders with a trailing slash.
    vaultrs::kv2::set(&client, "secret", "app/api/key", &map(&[("k", "v")])).await?;
    let mut keys = vaultrs::kv2::list(&client, "secret", "app").await?;
    keys.sort();
    assert_eq!(keys, vec!["api/".to_string(), "db".to_string()]);

    // Metadata delete removes every version.
    vaultrs::kv2::delete_metadata(&client, "secret", "app/db").await?;
    let (status, _) = server
        .call("GET", "secret/data/app/db", Some("root"), None)
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn kv1_crud_upgrade_to_v2_and_disable() -> anyhow::Result<()> {
    let server = Server::start_dev("root").await?;
    let client = vaultrs_client(&server, "root");
    vaultrs::sys::mount::enable(&client, "kv1", "kv", None).await?;
    vaultrs::kv1::set(
        &client,
        "kv1",
        "team/creds",
        &HashMap::from([("user", "bob"), ("ttl", "1h")]),
    )
    .await?;
    let got: HashMap<String, String> = vaultrs::kv1::get(&client, "kv1", "team/creds").await?;
    assert_eq!(got["user"], "bob");
    let (_, raw) = server
        .call("GET", "kv1/team/creds", Some("root"), None)
        .await?;
    assert_eq!(
        raw["lease_duration"], 3600,
        "ttl key sets lease_duration: {raw}"
    );
    // Advisory only, as in Vault: no lease is registered for a KV read.
    assert_eq!(raw["lease_id"], "", "{raw}");
    assert_eq!(raw["renewable"], false, "{raw}");
    let listed = vaultrs::kv1::list(&client, "kv1", "team").await?;
    assert_eq!(listed.data.keys, vec!["creds".to_string()]);

    // `generic` is an alias of kv.
    let (status, _) = server
        .call(
            "POST",
            "sys/mounts/old",
            Some("root"),
            Some(json!({"type": "generic"})),
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Tune to version 2: existing data becomes version 1.
    let (status, body) = server
        .call(
            "POST",
            "sys/mounts/kv1/tune",
            Some("root"),
            Some(json!({"options": {"version": "2"}})),
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let upgraded: HashMap<String, String> =
        vaultrs::kv2::read(&client, "kv1", "team/creds").await?;
    assert_eq!(upgraded["user"], "bob");
    let (_, tune) = server
        .call("GET", "sys/mounts/kv1/tune", Some("root"), None)
        .await?;
    assert_eq!(tune["data"]["options"]["version"], "2");

    // Disable deletes its data: a new mount at the same path is empty.
    vaultrs::sys::mount::disable(&client, "kv1").await?;
    let (status, _) = server
        .call("GET", "kv1/data/team/creds", Some("root"), None)
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    vaultrs::sys::mount::enable(&client, "kv1", "kv", None).await?;
    let (status, _) = server
        .call("GET", "kv1/team/creds", Some("root"), None)
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    Ok(())
}
