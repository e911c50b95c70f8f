//! High availability: 3-node clusters of real processes (see `cluster_harness`) formed
//! through `retry_join` and the bootstrap challenge; consistent standby reads, request
//! forwarding and redirects; leader failure under load with a history check; a
//! partitioned leader; snapshots across clusters; the log-format hold-back; crashes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::cluster_harness::{Cluster, THRESHOLD};

/// Write `kv/<key>` through node `i`; the `X-Vault-Index` of the answer.
async fn put(c: &Cluster, i: usize, key: &str, value: &str) -> Result<u64> {
    let r = c
        .request(
            i,
            "PUT",
            &format!("kv/{key}"),
            Some(json!({ "value": value })),
            &[],
        )
        .await?;
    if !r.status.is_success() {
        bail!("put {key} on {i}: {} {}", r.status, r.body);
    }
    r.index().context("a write answers with X-Vault-Index")
}

/// Read `kv/<key>` on node `i`, waiting for `index` if given.
async fn get(c: &Cluster, i: usize, key: &str, index: Option<u64>) -> Result<(StatusCode, Value)> {
    let headers: Vec<(&str, String)> = index
        .map(|n| vec![("X-Vault-Index", n.to_string())])
        .unwrap_or_default();
    let r = c
        .request(i, "GET", &format!("kv/{key}"), None, &headers)
        .await?;
    Ok((r.status, r.body["data"]["value"].clone()))
}

fn standbys(c: &Cluster, leader: usize) -> Vec<usize> {
    (0..c.nodes.len()).filter(|&i| i != leader).collect()
}

/// Shares that are not this cluster's: real ones with their value bytes flipped.
fn wrong_shares(keys: &[String]) -> Vec<String> {
    keys.iter()
        .map(|k| {
            let mut bytes = hex::decode(k).expect("hex share");
            bytes[0] ^= 0x5a;
            bytes[7] ^= 0xa5;
            hex::encode(bytes)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_join_serve_consistent_reads_and_forward() -> Result<()> {
    let mut c = Cluster::new(4)?;
    // Nodes 0-2 form the cluster; node 3 is kept for the "no keys" check.
    let spare = c.nodes.pop().context("spare")?;
    c.boot(&[]).await?;
    let leader = c.leader().await?;
    let servers = c.servers(leader).await?;
    assert_eq!(servers.len(), 3, "{servers:?}");
    assert!(servers.iter().all(|s| s["voter"] == json!(true)));
    assert_eq!(
        servers
            .iter()
            .filter(|s| s["leader"] == json!(true))
            .count(),
        1
    );
    for (i, n) in c.nodes.iter().enumerate() {
        assert!(
            n.data_dir().join("cluster/node-key.pem").exists(),
            "node {i} has cluster credentials"
        );
    }
    c.mount_kv(leader).await?;

    // The Raft endpoints live on the cluster port only, behind mutual TLS.
    let r = c.raw(leader, "POST", "../raft/v1/vote", Vec::new()).await?;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "no raft RPCs on the API port"
    );
    let cluster_ca = std::fs::read(c.nodes[leader].data_dir().join("cluster/ca.pem"))?;
    let no_client_cert = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&cluster_ca)?])
        .build()?;
    let url = format!("https://{}/raft/v1/vote", c.nodes[leader].cluster_addr());
    assert!(
        no_client_cert
            .post(&url)
            .body(Vec::new())
            .send()
            .await
            .is_err(),
        "the cluster port refuses a client without a cluster certificate"
    );

    // Health and leader on a standby.
    let sb = standbys(&c, leader);
    let (status, body) = c.json(sb[0], "GET", "sys/health", Some(""), None).await?;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["standby"], json!(true));
    let (status, _) = c
        .json(sb[0], "GET", "sys/health?standbyok=true", Some(""), None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = c.json(sb[0], "GET", "sys/leader", None, None).await?;
    assert_eq!(body["is_self"], json!(false));
    assert_eq!(body["leader_address"], json!(c.nodes[leader].addr));

    // Write on the leader, read on a standby with the index: never stale.
    for round in 0..20 {
        let value = format!("v{round}");
        let index = put(&c, leader, "consistent", &value).await?;
        let reader = sb[round % sb.len()];
        let (status, got) = get(&c, reader, "consistent", Some(index)).await?;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(got, json!(value), "round {round} read on node {reader}");
    }

    // A write on a standby is forwarded to the leader.
    let index = put(&c, sb[0], "forwarded", "through-standby").await?;
    let (status, got) = get(&c, leader, "forwarded", Some(index)).await?;
    assert_eq!((status, got), (StatusCode::OK, json!("through-standby")));
    let (status, got) = get(&c, sb[1], "forwarded", Some(index)).await?;
    assert_eq!((status, got), (StatusCode::OK, json!("through-standby")));

    // ... or redirected when the client asks for no forwarding.
    let r = c
        .request(
            sb[0],
            "PUT",
            "kv/redirected",
            Some(json!({"value": "x"})),
            &[("X-Vault-No-Request-Forwarding", "true".into())],
        )
        .await?;
    assert_eq!(r.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        r.headers.get("location").and_then(|v| v.to_str().ok()),
        Some(format!("{}/v1/kv/redirected", c.nodes[leader].addr).as_str())
    );
    let (status, _) = get(&c, leader, "redirected", None).await?;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a redirected write did not happen"
    );

    // A path no mount serves on a standby is the active node's to answer (a mount enabled
    // a moment ago may not be applied here yet): forwarded, or 307 when asked not to
    // forward; the active node then says 404 / "no matching mount".
    for path in ["nosuchmount/x", "sys/internal/ui/mounts/nosuchmount/x"] {
        let r = c
            .request(
                sb[0],
                "GET",
                path,
                None,
                &[("X-Vault-No-Request-Forwarding", "true".into())],
            )
            .await?;
        assert_eq!(r.status, StatusCode::TEMPORARY_REDIRECT, "{path}");
    }
    let (status, _) = c.json(sb[0], "GET", "nosuchmount/x", None, None).await?;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "forwarded, the active node's 404"
    );
    let (status, body) = c
        .json(
            sb[0],
            "GET",
            "sys/internal/ui/mounts/nosuchmount/x",
            None,
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Likewise a token the standby does not know (a login a moment ago): the active node
    // decides, and an unknown token is still refused.
    let unknown = "hvs.unknownunknownunknown00";
    let r = c
        .client
        .get(c.url(sb[0], "kv/consistent"))
        .header("X-Vault-Token", unknown)
        .header("X-Vault-No-Request-Forwarding", "true")
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    let (status, body) = c
        .json(sb[0], "GET", "kv/consistent", Some(unknown), None)
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // An index nobody has reached: 412 after the bounded wait.
    let started = Instant::now();
    let (status, _) = get(&c, sb[0], "consistent", Some(index + 1_000_000)).await?;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert!(started.elapsed() >= Duration::from_millis(1500));

    // Autopilot state (the leader's view; a standby forwards the read).
    let (status, body) = c
        .json(sb[1], "GET", "sys/storage/raft/autopilot/state", None, None)
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let st = &body["data"];
    assert_eq!(st["healthy"], json!(true), "{st}");
    assert_eq!(st["failure_tolerance"], json!(1));
    assert_eq!(st["leader"], json!(c.nodes[leader].name));
    assert_eq!(st["voters"].as_array().map(Vec::len), Some(3));
    for n in &c.nodes {
        let s = &st["servers"][&n.name];
        assert_eq!(s["healthy"], json!(true), "{s}");
        assert!(s["last_index"].as_u64().unwrap_or(0) > 0, "{s}");
        assert!(s["last_contact"].is_string(), "{s}");
    }

    // A node without the unseal keys never becomes a member.
    let mut c = c;
    c.nodes.push(spare);
    let newcomer = c.nodes.len() - 1;
    {
        let n = &mut c.nodes[newcomer];
        n.env.clear();
    }
    c.restart_sealed(newcomer).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, st) = c
            .json(newcomer, "GET", "sys/seal-status", Some(""), None)
            .await?;
        if st["initialized"] == json!(true) {
            assert_eq!(st["t"], json!(THRESHOLD), "the leader's seal config: {st}");
            assert_eq!(st["sealed"], json!(true));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no challenge: {}",
            c.nodes[newcomer].log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bad = wrong_shares(&c.keys);
    let (status, body) = c
        .json(
            newcomer,
            "PUT",
            "sys/unseal",
            Some(""),
            Some(json!({"key": bad[0]})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = c
        .json(
            newcomer,
            "PUT",
            "sys/unseal",
            Some(""),
            Some(json!({"key": bad[1]})),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("unseal keys"), "{body}");
    let leader = c.leader().await?;
    let names: Vec<Value> = c
        .servers(leader)
        .await?
        .iter()
        .map(|s| s["node_id"].clone())
        .collect();
    assert!(
        !names.contains(&json!(c.nodes[newcomer].name)),
        "a node with wrong keys must not be a member: {names:?}"
    );
    assert!(
        !c.nodes[newcomer].data_dir().join("cluster").exists(),
        "no cluster credentials for a node without the keys"
    );
    let (status, _) = get(&c, newcomer, "consistent", None).await?;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // With the right keys the same node gets in.
    c.unseal(newcomer).await?;
    c.wait_voters(4, Duration::from_secs(30)).await?;
    let index = put(&c, leader, "fourth", "sees-it").await?;
    let (status, got) = get(&c, newcomer, "fourth", Some(index)).await?;
    assert_eq!((status, got), (StatusCode::OK, json!("sees-it")));

    // remove-peer, then step-down: another node leads.
    let (status, body) = c
        .json(
            leader,
            "POST",
            "sys/storage/raft/remove-peer",
            None,
            Some(json!({"server_id": c.nodes[newcomer].name})),
        )
        .await?;
    assert!(status.is_success(), "{status} {body}");
    c.wait_voters(3, Duration::from_secs(20)).await?;
    c.kill(newcomer);
    let (status, body) = c.json(leader, "PUT", "sys/step-down", None, None).await?;
    assert!(status.is_success(), "{status} {body}");
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let next = c.wait_leader(&others, Duration::from_secs(15)).await?;
    assert_ne!(next, leader);
    let index = put(&c, next, "after-step-down", "ok").await?;
    let (status, got) = get(&c, leader, "after-step-down", Some(index)).await?;
    assert_eq!((status, got), (StatusCode::OK, json!("ok")));
    Ok(())
}

/// What writers saw acknowledged: key -> value.
type History = Arc<Mutex<BTreeMap<String, String>>>;

/// `writers` tasks writing distinct keys through random live nodes until `stop`.
fn write_load(
    c: &Arc<tokio::sync::RwLock<Cluster>>,
    writers: usize,
    prefix: &str,
    stop: &Arc<AtomicBool>,
    acked: &History,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..writers)
        .map(|w| {
            let (c, stop, acked) = (c.clone(), stop.clone(), acked.clone());
            let prefix = prefix.to_string();
            tokio::spawn(async move {
                let mut seq = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    seq += 1;
                    let key = format!("{prefix}/w{w}/{seq}");
                    let value = format!("{w}:{seq}");
                    let guard = c.read().await;
                    let live: Vec<usize> = (0..guard.nodes.len())
                        .filter(|&i| guard.nodes[i].running())
                        .collect();
                    if live.is_empty() {
                        drop(guard);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    let target = live[(seq as usize + w) % live.len()];
                    let res = guard
                        .request(
                            target,
                            "PUT",
                            &format!("kv/{key}"),
                            Some(json!({ "value": value })),
                            &[],
                        )
                        .await;
                    drop(guard);
                    match res {
                        Ok(r) if r.status.is_success() => {
                            acked.lock().expect("lock").insert(key, value);
                        }
                        _ => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            })
        })
        .collect()
}

/// Every acknowledged write is readable with its value through node `i`.
async fn check_history(c: &Cluster, i: usize, acked: &History) -> Result<usize> {
    let acked = acked.lock().expect("lock").clone();
    // A write through the node being checked: its index covers every earlier commit.
    let deadline = Instant::now() + Duration::from_secs(20);
    let index = loop {
        let r = c
            .request(
                i,
                "PUT",
                "kv/history-barrier",
                Some(json!({"value": "x"})),
                &[],
            )
            .await?;
        match r.index() {
            Some(n) if r.status.is_success() => break n,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            _ => bail!(
                "no write succeeds through node {i}: {} {}",
                r.status,
                r.body
            ),
        }
    };
    let index = Some(index);
    for (key, value) in &acked {
        let (status, got) = get(c, i, key, index).await?;
        if status != StatusCode::OK || got != json!(value) {
            bail!("acknowledged write {key}={value} reads back as {status} {got}");
        }
    }
    Ok(acked.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_leader_under_load_loses_no_acknowledged_write() -> Result<()> {
    let c = Cluster::start(3).await?;
    let leader = c.leader().await?;
    c.mount_kv(leader).await?;
    let c = Arc::new(tokio::sync::RwLock::new(c));
    let stop = Arc::new(AtomicBool::new(false));
    let acked: History = Arc::default();
    let tasks = write_load(&c, 8, "load", &stop, &acked);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = acked.lock().expect("lock").len();
    assert!(before > 0, "writes go through before the failure");

    let killed_at = Instant::now();
    c.write().await.kill(leader);
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let new_leader = c
        .read()
        .await
        .wait_leader(&others, Duration::from_secs(15))
        .await?;
    let failover = killed_at.elapsed();
    assert!(
        failover < Duration::from_secs(10),
        "fail-over took {failover:?}"
    );
    let after_failover = acked.lock().expect("lock").len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await?;
    }
    let total = acked.lock().expect("lock").len();
    assert!(
        total > after_failover,
        "writes resume after fail-over ({after_failover} -> {total})"
    );
    let mut c = Arc::try_unwrap(c)
        .map_err(|_| anyhow::anyhow!("cluster still shared"))?
        .into_inner();
    let checked = check_history(&c, new_leader, &acked).await?;
    // The old leader comes back, catches up and agrees.
    c.restart(leader).await?;
    let checked_again = check_history(&c, leader, &acked).await?;
    assert_eq!(checked, checked_again);
    eprintln!("fail-over in {failover:?}; {checked} acknowledged writes all present");

    // Sealing the active node hands leadership to an unsealed one.
    let active = c.leader().await?;
    let (status, body) = c.json(active, "PUT", "sys/seal", None, None).await?;
    assert!(status.is_success(), "{status} {body}");
    let others: Vec<usize> = (0..3).filter(|&i| i != active).collect();
    let next = c.wait_leader(&others, Duration::from_secs(20)).await?;
    let index = put(&c, next, "after-seal", "ok").await?;
    c.unseal(active).await?;
    let (status, got) = get(&c, active, "after-seal", Some(index)).await?;
    assert_eq!((status, got), (StatusCode::OK, json!("ok")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_leader_cannot_commit_and_the_cluster_heals() -> Result<()> {
    let c = Cluster::start(3).await?;
    let old = c.leader().await?;
    c.mount_kv(old).await?;
    put(&c, old, "before", "1").await?;

    c.partition(old)?;
    let majority: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let new_leader = c
        .wait_leader(&majority, Duration::from_secs(15))
        .await
        .with_context(|| c.logs())?;
    // The old leader cannot commit: its write fails (no quorum).
    let r = c
        .request(old, "PUT", "kv/lost", Some(json!({"value": "never"})), &[])
        .await?;
    assert!(
        !r.status.is_success(),
        "a partitioned leader acknowledged a write: {} {}",
        r.status,
        r.body
    );
    let (status, _) = c.json(old, "GET", "sys/health", Some(""), None).await?;
    assert_ne!(status, StatusCode::OK, "a partitioned leader is not active");
    // The majority goes on.
    let index = put(&c, new_leader, "during", "2").await?;

    c.heal()?;
    let (status, got) = get(&c, old, "during", Some(index)).await?;
    assert_eq!(
        (status, got),
        (StatusCode::OK, json!("2")),
        "healing converges"
    );
    let (status, _) = get(&c, old, "lost", None).await?;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the unacknowledged write is gone"
    );
    let (status, _) = get(&c, new_leader, "lost", None).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let leader = c.leader().await?;
    assert_ne!(leader, old, "the cluster keeps its new leader");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_restores_into_a_fresh_cluster_with_the_first_clusters_keys() -> Result<()> {
    let a = Cluster::start(1).await?;
    a.mount_kv(0).await?;
    put(&a, 0, "from-a", "canary-7f3e1d").await?;
    let snap = a
        .request(0, "GET", "sys/storage/raft/snapshot", None, &[])
        .await?;
    assert_eq!(snap.status, StatusCode::OK);
    let bytes = snap.bytes.clone();
    assert!(bytes.starts_with(b"COFFER-SNAPSHOT"));
    assert!(
        !bytes.windows(13).any(|w| w == b"canary-7f3e1d"),
        "a snapshot holds ciphertext only"
    );
    // Same cluster: restoring goes back in time.
    put(&a, 0, "from-a", "changed").await?;
    let r = restore(&a, 0, &bytes, false).await?;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let (_, got) = get(&a, 0, "from-a", r.index()).await?;
    assert_eq!(got, json!("canary-7f3e1d"));
    // A damaged snapshot is refused.
    let mut damaged = bytes.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 1;
    let r = restore(&a, 0, &damaged, true).await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);

    let mut b = Cluster::new(4)?;
    let spare = b.nodes.pop().context("spare")?;
    b.boot(&[]).await?;
    let leader = b.leader().await?;
    let r = restore(&b, leader, &bytes, false).await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        r.body.to_string().contains("different cluster"),
        "{}",
        r.body
    );
    // Forced, through a standby (forwarded to the leader).
    let sb = standbys(&b, leader)[0];
    let r = restore(&b, sb, &bytes, true).await?;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    // Every node now holds A's keys: each seals itself and opens with A's shares.
    b.keys = a.keys.clone();
    b.token = a.token.clone();
    for i in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, st) = b.json(i, "GET", "sys/seal-status", Some(""), None).await?;
            if st["sealed"] == json!(true) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {i} did not seal: {}",
                b.nodes[i].log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for i in 0..3 {
        b.unseal(i).await?;
    }
    let leader = b.leader().await?;
    let index = put(&b, leader, "after-restore", "b").await?;
    for i in 0..3 {
        let (status, got) = get(&b, i, "from-a", Some(index)).await?;
        assert_eq!(
            (status, got),
            (StatusCode::OK, json!("canary-7f3e1d")),
            "node {i}"
        );
    }
    // A node joining now gets a certificate from the restored CA (A's), which the
    // members added to the CA they trust, and it needs A's keys.
    b.nodes.push(spare);
    b.restart_sealed(3).await?;
    b.join(3).await?;
    b.wait_voters(4, Duration::from_secs(30))
        .await
        .with_context(|| b.logs())?;
    let leader = b.leader().await?;
    let index = put(&b, leader, "after-join", "d").await?;
    let (status, got) = get(&b, 3, "from-a", Some(index)).await?;
    assert_eq!((status, got), (StatusCode::OK, json!("canary-7f3e1d")));
    Ok(())
}

async fn restore(
    c: &Cluster,
    i: usize,
    bytes: &[u8],
    force: bool,
) -> Result<crate::cluster_harness::Reply> {
    let path = if force {
        "sys/storage/raft/snapshot-force"
    } else {
        "sys/storage/raft/snapshot"
    };
    c.raw(i, "POST", path, bytes.to_vec()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_claiming_an_older_format_holds_back_the_new_entry_type() -> Result<()> {
    let mut c = Cluster::new(3)?;
    c.boot(&[(2, "COFFER_MAX_LOG_FORMAT", "1")]).await?;
    let leader = c.leader().await?;
    c.mount_kv(leader).await?;
    put(&c, leader, "k", "before").await?;
    let (_, body) = c
        .json(
            leader,
            "GET",
            "sys/storage/raft/autopilot/state",
            None,
            None,
        )
        .await?;
    assert_eq!(
        body["data"]["servers"]["node-2"]["max_log_format"],
        json!(1),
        "{body}"
    );
    let snap = c
        .request(leader, "GET", "sys/storage/raft/snapshot", None, &[])
        .await?;
    assert_eq!(snap.status, StatusCode::OK);
    let index = put(&c, leader, "k", "after").await?;

    // Format-1 batches still flow to the old node; the restore entry is held back.
    let (status, got) = get(&c, 2, "k", Some(index)).await?;
    assert_eq!((status, got), (StatusCode::OK, json!("after")));
    let r = restore(&c, leader, &snap.bytes, false).await?;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(r.body.to_string().contains("held back"), "{}", r.body);
    for i in 0..3 {
        let (_, got) = get(&c, i, "k", Some(index)).await?;
        assert_eq!(got, json!("after"), "nothing was restored on node {i}");
    }

    // "Upgrade" node 2 (restart without the knob); now the entry goes through.
    c.nodes[2].env.clear();
    c.restart(2).await?;
    let leader = c.leader().await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let r = loop {
        let r = restore(&c, leader, &snap.bytes, false).await?;
        if r.status != StatusCode::SERVICE_UNAVAILABLE || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    for i in 0..3 {
        let (status, got) = get(&c, i, "k", r.index()).await?;
        assert_eq!((status, got), (StatusCode::OK, json!("before")), "node {i}");
    }
    Ok(())
}

/// Kill -9 at random moments under write load, restart, unseal, check the history.
/// `COFFER_CRASH_ROUNDS` sets the number of kills (default 3; scripts/crash-test.sh
/// runs 20).
async fn crash_rounds(nodes: usize) -> Result<()> {
    let rounds: usize = std::env::var("COFFER_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let c = Cluster::start(nodes).await?;
    let leader = c.leader().await?;
    c.mount_kv(leader).await?;
    let c = Arc::new(tokio::sync::RwLock::new(c));
    let acked: History = Arc::default();
    let mut rng = seed();
    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let this_round: History = Arc::default();
        let tasks = write_load(&c, 4, &format!("crash{round}"), &stop, &this_round);
        let wait = 300 + next(&mut rng) % 1200;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let victim = (next(&mut rng) % nodes as u64) as usize;
        c.write().await.kill(victim);
        tokio::time::sleep(Duration::from_millis(next(&mut rng) % 500)).await;
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            t.await?;
        }
        let mut guard = c.write().await;
        guard.restart(victim).await?;
        let leader = guard.leader().await?;
        check_history(&guard, leader, &this_round)
            .await
            .with_context(|| format!("round {round}, killed node {victim}"))?;
        let round_acked = this_round.lock().expect("lock").clone();
        acked.lock().expect("lock").extend(round_acked);
    }
    let guard = c.read().await;
    let leader = guard.leader().await?;
    let total = check_history(&guard, leader, &acked).await?;
    eprintln!("{rounds} kills on {nodes} node(s): {total} acknowledged writes all present");
    assert!(total > 0);
    Ok(())
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7)
        | 1
}

fn next(state: &mut u64) -> u64 {
    // xorshift64
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_a_single_node_under_load() -> Result<()> {
    crash_rounds(1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_nodes_of_a_three_node_cluster_under_load() -> Result<()> {
    crash_rounds(3).await
}
