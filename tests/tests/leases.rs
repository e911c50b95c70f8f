//! Leases: tokens with a TTL have leases that `sys/leases/*` can look up, renew and
//! revoke; expiry revokes on time (timers); leases survive a restart and are reloaded
//! after unseal, and after a fail-over on the new active node.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::Server;
use crate::secret_leases::{lookup, renew, revoke};

async fn token_with_ttl(
    server: &Server,
    root: &str,
    ttl: &str,
) -> anyhow::Result<(String, String)> {
    let (status, body) = server
        .call(
            "POST",
            "auth/token/create",
            Some(root),
            Some(json!({"ttl": ttl, "policies": ["default"]})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    Ok((
        body["auth"]["client_token"].as_str().unwrap().to_string(),
        body["auth"]["accessor"].as_str().unwrap().to_string(),
    ))
}

async fn lease_ids(server: &Server, root: &str) -> anyhow::Result<Vec<String>> {
    let (status, body) = server
        .call(
            "LIST",
            "sys/leases/lookup/auth/token/create",
            Some(root),
            None,
        )
        .await?;
    if status == StatusCode::NOT_FOUND {
        return Ok(Vec::new());
    }
    assert_eq!(status, StatusCode::OK, "{body}");
    Ok(body["data"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| format!("auth/token/create/{}", k.as_str().unwrap()))
        .collect())
}

#[tokio::test]
async fn lease_lookup_renew_revoke_and_expiry() -> anyhow::Result<()> {
    let server = Server::start_dev("root").await?;
    let (token, _) = token_with_ttl(&server, "root", "1h").await?;
    let ids = lease_ids(&server, "root").await?;
    assert_eq!(ids.len(), 1, "{ids:?}");
    let lease_id = ids[0].clone();

    let (status, body) = lookup(&server, "root", &lease_id).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["data"]["ttl"].as_i64().unwrap() > 3500);
    assert_eq!(body["data"]["renewable"], true);

    let (status, body) = renew(&server, "root", &lease_id, Some("2h")).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["lease_duration"], 7200);
    assert_eq!(body["lease_id"], lease_id.as_str());

    let (status, _) = lookup(&server, "root", "nope/h1").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, _) = revoke(&server, "root", &lease_id).await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server
        .call("GET", "auth/token/lookup-self", Some(&token), None)
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(lease_ids(&server, "root").await?.is_empty());

    // revoke-prefix (sudo) revokes every token lease under it.
    let (a, _) = token_with_ttl(&server, "root", "1h").await?;
    let (b, _) = token_with_ttl(&server, "root", "1h").await?;
    let (status, _) = server
        .call(
            "PUT",
            "sys/leases/revoke-prefix/auth/token/create",
            Some("root"),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for t in [a, b] {
        let (status, _) = server
            .call("GET", "auth/token/lookup-self", Some(&t), None)
            .await?;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    // Expiry: a 2-second token is revoked by the timer (its accessor disappears too).
    let (short, accessor) = token_with_ttl(&server, "root", "2s").await?;
    let (status, _) = server
        .call("GET", "auth/token/lookup-self", Some(&short), None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (status, _) = server
        .call(
            "POST",
            "auth/token/lookup-accessor",
            Some("root"),
            Some(json!({"accessor": accessor})),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        lease_ids(&server, "root").await?.is_empty(),
        "expired lease index removed"
    );
    Ok(())
}

#[tokio::test]
async fn leases_survive_restart_and_expire_after_unseal() -> anyhow::Result<()> {
    let mut server = Server::start_tls().await?;
    let (keys, _, root) = server.init(1, 1).await?;
    server.unseal(&keys).await?;
    server.wait_active().await?;
    let (long, _) = token_with_ttl(&server, &root, "1h").await?;
    let (short, _) = token_with_ttl(&server, &root, "3s").await?;
    server.restart().await?;
    server.unseal(&keys).await?;
    server.wait_active().await?;
    let (status, _) = server
        .call("GET", "auth/token/lookup-self", Some(&long), None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let (status, _) = server
        .call("GET", "auth/token/lookup-self", Some(&short), None)
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let ids: Vec<Value> = lease_ids(&server, &root)
        .await?
        .into_iter()
        .map(Value::String)
        .collect();
    assert_eq!(ids.len(), 1, "only the long-lived lease remains: {ids:?}");
    Ok(())
}

/// A fail-over: the new active node loads the lease index when it becomes active, so a
/// lease the old active node created after the standbys unsealed still expires on time
/// (its index entry is removed by the new active node's timer).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_active_node_expires_the_leases_of_the_old_one() -> anyhow::Result<()> {
    use crate::cluster_harness::Cluster;
    let mut c = Cluster::start(3).await?;
    let leader = c.leader().await?;
    let (status, body) = c
        .json(
            leader,
            "POST",
            "auth/token/create",
            None,
            Some(json!({"ttl": "5s", "policies": ["default"]})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    c.kill(leader);
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let new_leader = c.wait_leader(&others, Duration::from_secs(20)).await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let (status, body) = c
            .json(
                new_leader,
                "LIST",
                "sys/leases/lookup/auth/token/create",
                None,
                None,
            )
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lease was never expired by the new active node: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
