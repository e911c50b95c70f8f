//! Three nodes in one process talking Raft over real HTTP on 127.0.0.1: membership
//! changes, replication, a snapshot shipped to a new member, standby reads, the
//! not-leader answer, and fail-over after the leader stops.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer};
use coffer_raft::network::{NetworkFactory, VOTE_PATH};
use coffer_raft::{configure, Node, RaftNode, RaftOptions, Transport, CURRENT_FORMAT};
use coffer_storage::{Backend, Op, StorageError};
use openraft::error::RPCError;
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::VoteRequest;
use openraft::Vote;

const WAIT: Duration = Duration::from_secs(20);

struct Member {
    node: Arc<RaftNode>,
    http: actix_web::dev::ServerHandle,
    _dir: tempfile::TempDir,
}

fn api_addr(id: u64) -> String {
    format!("http://api-{id}.test:8200")
}

async fn spawn_member(id: u64) -> Member {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let cluster_addr = listener.local_addr().expect("addr").to_string();
    let node = RaftNode::open(RaftOptions {
        node_id: id,
        api_addr: api_addr(id),
        cluster_addr,
        data_dir: Some(dir.path().to_path_buf()),
        client: Some(reqwest::Client::new()),
        tls: false,
        name: format!("node{id}"),
        ..RaftOptions::default()
    })
    .await
    .expect("open node");
    let raft = node.raft().clone();
    let transport = node.transport().clone();
    let server = HttpServer::new(move || {
        let (raft, transport) = (raft.clone(), transport.clone());
        App::new().configure(move |cfg| configure(cfg, raft, transport))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .expect("listen")
    .run();
    let http = server.handle();
    tokio::spawn(server);
    Member {
        node,
        http,
        _dir: dir,
    }
}

fn put(key: &str, value: &[u8]) -> Op {
    Op::Put {
        key: key.into(),
        value: value.to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_over_http() {
    let m1 = spawn_member(1).await;
    assert!(m1.node.bootstrap_if_fresh().await.expect("bootstrap"));
    m1.node.wait_for_leader(WAIT).await.expect("leader");
    let n1 = m1.node.clone();

    // A second member joins as a learner and catches up by log replication.
    let m2 = spawn_member(2).await;
    n1.raft()
        .add_learner(2, m2.node.node().clone(), true)
        .await
        .expect("add learner 2");
    let mut last = 0;
    for i in 0..30u32 {
        last = n1
            .commit(vec![put(&format!("data/{i:02}"), &i.to_be_bytes())])
            .await
            .expect("commit");
    }

    // Enough data for the snapshot to travel in several chunks.
    for i in 0..8u8 {
        last = n1
            .commit(vec![put(&format!("blob/{i}"), &vec![i; 1024 * 1024])])
            .await
            .expect("commit");
    }

    // Snapshot and purge the log, so the third member can only catch up by snapshot.
    n1.raft().trigger().snapshot().await.expect("snapshot");
    n1.raft()
        .wait(Some(WAIT))
        .metrics(|m| m.snapshot.is_some_and(|s| s.index >= last), "snapshot")
        .await
        .expect("snapshot built");
    n1.raft().trigger().purge_log(last).await.expect("purge");
    n1.raft()
        .wait(Some(WAIT))
        .metrics(|m| m.purged.is_some_and(|p| p.index >= last), "purged")
        .await
        .expect("purged");

    let m3 = spawn_member(3).await;
    n1.raft()
        .add_learner(3, m3.node.node().clone(), true)
        .await
        .expect("add learner 3");
    n1.raft()
        .change_membership(BTreeSet::from([1, 2, 3]), false)
        .await
        .expect("change membership");

    let idx = n1
        .commit(vec![put("data/final", b"f")])
        .await
        .expect("commit");
    for m in [&m2, &m3] {
        m.node
            .wait_applied(idx, WAIT)
            .await
            .expect("follower applied");
        assert_eq!(
            m.node.get("data/07").expect("get"),
            Some(7u32.to_be_bytes().to_vec())
        );
        assert_eq!(m.node.get("data/final").expect("get"), Some(b"f".to_vec()));
        assert_eq!(
            m.node.get("blob/5").expect("get"),
            Some(vec![5u8; 1024 * 1024])
        );
        assert_eq!(m.node.list("data/").expect("list").len(), 31);
        assert!(!m.node.is_leader());
        assert_eq!(m.node.leader().map(|(id, _)| id), Some(1));
    }
    assert!(
        m3.node.raft().metrics().borrow().snapshot.is_some(),
        "node 3 was expected to catch up from a snapshot"
    );

    // A standby refuses writes and names the leader's API address.
    match m2.node.commit(vec![put("x", b"y")]).await {
        Err(StorageError::NotLeader { leader }) => assert_eq!(leader, Some(api_addr(1))),
        other => panic!("expected NotLeader, got {other:?}"),
    }

    // The leader goes away; the other two elect a new one and keep accepting writes.
    m1.node.shutdown().await.expect("shutdown 1");
    m1.http.stop(false).await;
    let (new_leader, _) = {
        let mut found = None;
        for _ in 0..200 {
            if let Some((id, node)) = m2.node.leader().filter(|(id, _)| *id != 1) {
                found = Some((id, node));
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        found.expect("a new leader")
    };
    let (leader, follower) = if new_leader == 2 {
        (&m2, &m3)
    } else {
        (&m3, &m2)
    };
    let mut idx = None;
    for _ in 0..100 {
        match leader.node.commit(vec![put("after/failover", b"ok")]).await {
            Ok(i) => {
                idx = Some(i);
                break;
            }
            Err(StorageError::NotLeader { .. }) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("commit after fail-over: {e}"),
        }
    }
    let idx = idx.expect("a write after fail-over");
    follower
        .node
        .wait_applied(idx, WAIT)
        .await
        .expect("applied");
    assert_eq!(
        follower.node.get("after/failover").expect("get"),
        Some(b"ok".to_vec())
    );

    for m in [&m2, &m3] {
        m.node.shutdown().await.expect("shutdown");
        m.http.stop(false).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_does_not_listen_is_unreachable() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Bind then drop, so the port is (almost certainly) closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let transport = Transport::new(1, false, Some(reqwest::Client::new()), CURRENT_FORMAT);
    let mut factory = NetworkFactory::new(transport);
    let target = Node {
        cluster_addr: format!("127.0.0.1:{port}"),
        ..Node::default()
    };
    let mut net = factory.new_client(2, &target).await;
    let res = net
        .vote(
            VoteRequest::new(Vote::new(1, 1), None),
            RPCOption::new(Duration::from_secs(2)),
        )
        .await;
    assert!(
        matches!(res, Err(RPCError::Unreachable(_))),
        "{res:?} ({VOTE_PATH})"
    );
}
