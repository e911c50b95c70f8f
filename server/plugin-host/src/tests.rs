//! Tests of both ends together: the handshake (versions, refusals, timeouts), calls
//! multiplexed over in-memory pipes with the storage proxied to a `MemStorage`,
//! malformed frames on either side (an error, never a panic or a hang), and, with
//! `/bin/sh` scripts as plugins, process start, hang, death and restart.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use coffer_sdk::testing::MemStorage;
use coffer_sdk::{
    Backend, BackendKind, Operation, Request, Response, SdkError, SpecialPaths, Storage, StorageOp,
};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::conn::{CallError, Connection, Hello};
use crate::wire::{HostMessage, WireRequest, WireResponse};
use crate::{run, ExternalBackend, ExternalConfig, Init, PluginCommand, PluginError};
use crate::{PluginSource, Timeouts};

/// A small backend: `put/<k>` writes two keys in one commit, `get/<k>` reads, `slow/<n>`
/// answers after n ms, `panic` panics; records invalidations and periodic calls.
#[derive(Default)]
struct TestBackend {
    invalidated: Mutex<Vec<String>>,
    periodic: AtomicUsize,
    kind_credential: bool,
}

#[async_trait]
impl Backend for TestBackend {
    async fn handle_request(&self, req: &mut Request) -> Result<Response, SdkError> {
        let path = req.path.clone();
        if let Some(k) = path.strip_prefix("put/") {
            let value = serde_json::to_vec(&req.data)?;
            req.storage
                .commit(vec![
                    StorageOp::Put {
                        key: format!("data/{k}"),
                        value: value.clone(),
                    },
                    StorageOp::Put {
                        key: format!("index/{k}"),
                        value: vec![0, 255, 1],
                    },
                ])
                .await?;
            return Ok(Response::empty());
        }
        if let Some(k) = path.strip_prefix("get/") {
            let bytes = req
                .storage
                .get(&format!("data/{k}"))
                .await?
                .ok_or(SdkError::NotFound)?;
            let index = req.storage.get(&format!("index/{k}")).await?;
            let mut data: serde_json::Map<String, Value> = serde_json::from_slice(&bytes)?;
            data.insert("index".into(), json!(index));
            data.insert("listed".into(), json!(req.storage.list("data/").await?));
            return Ok(Response::data(data));
        }
        if let Some(ms) = path.strip_prefix("slow/") {
            let ms: u64 = ms.parse().map_err(|_| SdkError::bad("ms"))?;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            return Ok(Response::json(json!({ "path": path })));
        }
        if path == "panic" {
            panic!("test backend panics on purpose");
        }
        Err(SdkError::UnsupportedPath)
    }

    async fn existence_check(&self, req: &Request) -> Result<Option<bool>, SdkError> {
        Ok(Some(req.path == "exists"))
    }

    fn special_paths(&self) -> SpecialPaths {
        SpecialPaths {
            unauthenticated: vec!["login".into()],
            root: vec!["admin/*".into()],
        }
    }

    fn kind(&self) -> BackendKind {
        if self.kind_credential {
            BackendKind::Credential
        } else {
            BackendKind::Secret
        }
    }

    async fn periodic(&self) -> Result<(), SdkError> {
        self.periodic.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn invalidate(&self, key: &str) {
        if let Ok(mut v) = self.invalidated.lock() {
            v.push(key.to_string());
        }
    }
}

fn hello() -> Hello {
    Hello {
        mount_point: "echo/".into(),
        options: BTreeMap::new(),
    }
}

fn request(op: Operation, path: &str, data: Value) -> WireRequest {
    let storage: Arc<dyn Storage> = MemStorage::new();
    let req = Request {
        id: "r".into(),
        operation: op,
        path: path.into(),
        mount_point: "echo/".into(),
        data: data.as_object().cloned().unwrap_or_default(),
        query: BTreeMap::new(),
        storage,
        caller: None,
        mount_ttl: Default::default(),
        remote_addr: None,
        lease: None,
    };
    WireRequest::from_sdk(&req)
}

async fn call(
    conn: &Connection,
    op: Operation,
    path: &str,
    data: Value,
) -> Result<Value, SdkError> {
    let req = request(op, path, data);
    match conn
        .call(&move |id| HostMessage::Request {
            id,
            request: req.clone(),
        })
        .await
    {
        Ok(v) => Ok(v),
        Err(CallError::Failed(e)) => Err(e),
        Err(CallError::Undelivered) => Err(SdkError::Internal("undelivered".into())),
    }
}

/// A host connection to `backend` served in-process over in-memory pipes.
async fn connected(backend: Arc<TestBackend>, storage: Arc<MemStorage>) -> Arc<Connection> {
    let (host_io, plugin_io) = tokio::io::duplex(1 << 16);
    let (plugin_r, plugin_w) = tokio::io::split(plugin_io);
    tokio::spawn(run(plugin_r, plugin_w, Init::Backend(backend)));
    let (host_r, host_w) = tokio::io::split(host_io);
    let (conn, reader) = Connection::open(
        "test".into(),
        host_r,
        host_w,
        hello(),
        storage,
        Duration::from_secs(5),
    )
    .await
    .expect("handshake");
    let driver = conn.clone();
    tokio::spawn(async move {
        let reason = reader.await;
        driver.close(&reason);
    });
    conn
}

#[tokio::test]
async fn requests_and_storage_travel_over_the_pipes() {
    let backend = Arc::new(TestBackend::default());
    let storage = MemStorage::new();
    let conn = connected(backend.clone(), storage.clone()).await;
    assert_eq!(conn.peer_protocol(), crate::wire::protocol_version());
    assert_eq!(conn.special_paths().root, vec!["admin/*".to_string()]);
    assert_eq!(
        conn.special_paths().unauthenticated,
        vec!["login".to_string()]
    );

    let written = call(&conn, Operation::Update, "put/a", json!({"v": "one"})).await;
    assert_eq!(written, Ok(json!(WireResponse::default())));
    // Two puts from the plugin are one commit on the host's storage, keys as the plugin
    // named them (the host's view adds the mount prefix in the server).
    assert_eq!(storage.commits(), 1);
    assert_eq!(
        storage.keys(),
        vec!["data/a".to_string(), "index/a".to_string()]
    );

    let read = call(&conn, Operation::Read, "get/a", json!({}))
        .await
        .unwrap();
    let resp: WireResponse = serde_json::from_value(read).unwrap();
    let data = resp.into_sdk().unwrap().data.unwrap();
    assert_eq!(data["v"], "one");
    assert_eq!(data["index"], json!([0, 255, 1]), "binary values survive");
    assert_eq!(data["listed"], json!(["a"]));

    // Errors keep their kind and status.
    let missing = call(&conn, Operation::Read, "get/none", json!({})).await;
    assert_eq!(missing, Err(SdkError::NotFound));
    let unsupported = call(&conn, Operation::Read, "nowhere", json!({})).await;
    assert_eq!(unsupported.unwrap_err().status(), 404);

    // Existence check, periodic, invalidate.
    let req = request(Operation::Update, "exists", json!({}));
    let exists = conn
        .call(&move |id| HostMessage::ExistenceCheck {
            id,
            request: req.clone(),
        })
        .await
        .unwrap();
    assert_eq!(exists, json!({"exists": true}));
    conn.call(&|id| HostMessage::Periodic { id }).await.unwrap();
    assert_eq!(backend.periodic.load(Ordering::SeqCst), 1);
    conn.notify(&HostMessage::Invalidate {
        key: "data/a".into(),
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while backend.invalidated.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "invalidation not delivered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        *backend.invalidated.lock().unwrap(),
        vec!["data/a".to_string()]
    );
}

#[tokio::test]
async fn calls_are_multiplexed_and_a_panic_is_a_500() {
    let conn = connected(Arc::new(TestBackend::default()), MemStorage::new()).await;
    // Slow calls finish in reverse order of sending; each gets its own answer.
    let mut calls = Vec::new();
    for i in 0..10u64 {
        let conn = conn.clone();
        calls.push(tokio::spawn(async move {
            let path = format!("slow/{}", 200 - i * 20);
            let v = call(&conn, Operation::Read, &path, json!({}))
                .await
                .unwrap();
            let resp: WireResponse = serde_json::from_value(v).unwrap();
            (path, resp.data.unwrap()["path"].clone())
        }));
    }
    for c in calls {
        let (sent, answered) = c.await.unwrap();
        assert_eq!(answered, json!(sent));
    }
    let panicked = call(&conn, Operation::Read, "panic", json!({})).await;
    let err = panicked.unwrap_err();
    assert_eq!(err.status(), 500);
    assert!(err.to_string().contains("panicked"), "{err}");
    // The plugin is still serving.
    let ok = call(&conn, Operation::Read, "slow/1", json!({})).await;
    assert!(ok.is_ok(), "{ok:?}");
}

/// A fake plugin: reads the host's hello, then writes `lines` (and keeps the pipe open).
async fn fake_plugin(
    lines: Vec<String>,
) -> Result<(Arc<Connection>, crate::conn::BoxFuture<String>), SdkError> {
    let (host_io, plugin_io) = tokio::io::duplex(1 << 16);
    tokio::spawn(async move {
        let (r, mut w) = tokio::io::split(plugin_io);
        let mut r = BufReader::new(r);
        let mut hello = String::new();
        let _ = r.read_line(&mut hello).await;
        for line in lines {
            let _ = w.write_all(line.as_bytes()).await;
            let _ = w.write_all(b"\n").await;
        }
        // Keep both ends open; echo nothing more.
        let mut sink = String::new();
        while r.read_line(&mut sink).await.unwrap_or(0) > 0 {}
    });
    let (r, w) = tokio::io::split(host_io);
    Connection::open(
        "fake".into(),
        r,
        w,
        hello(),
        MemStorage::new(),
        Duration::from_millis(500),
    )
    .await
}

#[tokio::test]
async fn the_host_refuses_another_major_and_malformed_handshakes() {
    let err = fake_plugin(vec![r#"{"type":"hello","protocol":"2.0"}"#.into()])
        .await
        .err()
        .expect("refused");
    assert_eq!(err.status(), 400);
    assert!(err.to_string().contains("major 2"), "{err}");

    let err = fake_plugin(vec!["this is not json".into()])
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("malformed"), "{err}");

    let err = fake_plugin(vec![r#"{"type":"response","id":1}"#.into()])
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("before answering the handshake"),
        "{err}"
    );

    let err = fake_plugin(vec![
        r#"{"type":"refused","protocol":"1.0","message":"no database configured"}"#.into(),
    ])
    .await
    .err()
    .expect("refused");
    assert!(err.to_string().contains("no database configured"), "{err}");

    let err = fake_plugin(vec![
        r#"{"type":"hello","protocol":"1.0","kind":"credential"}"#.into(),
    ])
    .await
    .err()
    .expect("refused");
    assert!(err.to_string().contains("auth method"), "{err}");

    // Silence: the handshake times out instead of hanging.
    let started = Instant::now();
    let err = fake_plugin(vec![]).await.err().expect("timed out");
    assert!(
        err.to_string().contains("did not complete the handshake"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_malformed_frame_after_the_handshake_fails_the_call_in_flight() {
    let (conn, reader) = fake_plugin(vec![
        r#"{"type":"hello","protocol":"1.3","special_paths":{"root":["x"]}}"#.into(),
        "{\"type\":\"response\",\"id\":".into(),
    ])
    .await
    .expect("handshake");
    assert_eq!(conn.peer_protocol(), "1.3", "a newer minor is accepted");
    let driver = conn.clone();
    tokio::spawn(async move {
        let reason = reader.await;
        driver.close(&reason);
    });
    let result = tokio::time::timeout(
        Duration::from_secs(5),
        call(&conn, Operation::Read, "x", json!({})),
    )
    .await
    .expect("no hang");
    // Either the frame broke the connection before the call was sent (undelivered) or
    // while it was pending (plugin exited): both are errors naming a protocol problem.
    let err = result.unwrap_err();
    assert_eq!(err.status(), 500);
    assert!(conn.is_closed());
}

/// Drive the plugin side with raw lines from a fake host; returns its result and output.
async fn fake_host(lines: Vec<&str>, backend: TestBackend) -> (Result<(), PluginError>, String) {
    let (host_io, plugin_io) = tokio::io::duplex(1 << 16);
    let (r, w) = tokio::io::split(plugin_io);
    let plugin = tokio::spawn(run(r, w, Init::Backend(Arc::new(backend))));
    let (hr, mut hw) = tokio::io::split(host_io);
    for line in lines {
        hw.write_all(line.as_bytes()).await.unwrap();
        hw.write_all(b"\n").await.unwrap();
    }
    hw.shutdown().await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), plugin)
        .await
        .expect("the plugin returns")
        .expect("no panic");
    let mut output = String::new();
    let mut hr = BufReader::new(hr);
    while tokio::time::timeout(Duration::from_millis(200), hr.read_line(&mut output))
        .await
        .map(|r| r.unwrap_or(0) > 0)
        .unwrap_or(false)
    {}
    (result, output)
}

#[tokio::test]
async fn the_plugin_refuses_another_major_and_malformed_frames() {
    let (result, output) = fake_host(
        vec![r#"{"type":"hello","protocol":"2.1","mount_point":"x/"}"#],
        TestBackend::default(),
    )
    .await;
    assert!(
        matches!(result, Err(PluginError::Refused(ref m)) if m.contains("major 2")),
        "{result:?}"
    );
    assert!(output.contains(r#""type":"refused""#), "{output}");

    let (result, _) = fake_host(vec!["{{{{"], TestBackend::default()).await;
    assert!(
        matches!(result, Err(PluginError::Protocol(_))),
        "{result:?}"
    );

    let (result, output) = fake_host(
        vec![
            r#"{"type":"hello","protocol":"1.0","mount_point":"x/"}"#,
            r#"{"type":"request","id":1}"#,
        ],
        TestBackend::default(),
    )
    .await;
    assert!(output.contains(r#""type":"hello""#), "{output}");
    assert!(
        matches!(result, Err(PluginError::Protocol(_))),
        "{result:?}"
    );

    let (result, output) = fake_host(
        vec![r#"{"type":"hello","protocol":"1.0","mount_point":"x/"}"#],
        TestBackend {
            kind_credential: true,
            ..Default::default()
        },
    )
    .await;
    assert!(matches!(result, Err(PluginError::Refused(_))), "{result:?}");
    assert!(output.contains("only secret engines"), "{output}");

    // A clean close after the handshake is a clean exit.
    let (result, _) = fake_host(
        vec![r#"{"type":"hello","protocol":"1.0","mount_point":"x/"}"#],
        TestBackend::default(),
    )
    .await;
    assert_eq!(result, Ok(()));
}

/// `/bin/sh -c <script>` as the plugin; counts how often it is resolved (= started).
struct Script {
    script: String,
    resolved: AtomicUsize,
}

impl PluginSource for Script {
    fn resolve(&self) -> Result<PluginCommand, SdkError> {
        self.resolved.fetch_add(1, Ordering::SeqCst);
        Ok(PluginCommand {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), self.script.clone()],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        })
    }
}

const HELLO: &str = r#"read hello; printf '%s\n' '{"type":"hello","protocol":"1.0"}'"#;

fn script_backend(script: &str, request_timeout: Duration) -> (Arc<ExternalBackend>, Arc<Script>) {
    let source = Arc::new(Script {
        script: script.to_string(),
        resolved: AtomicUsize::new(0),
    });
    let backend = ExternalBackend::new(
        ExternalConfig {
            name: "script".into(),
            mount_point: "s/".into(),
            options: BTreeMap::new(),
            storage: MemStorage::new(),
            timeouts: Timeouts {
                handshake: Duration::from_secs(5),
                request: request_timeout,
            },
        },
        source.clone(),
    );
    (backend, source)
}

fn sdk_request(path: &str) -> Request {
    request(Operation::Read, path, json!({})).into_sdk(MemStorage::new())
}

/// Reaped by the supervisor (this test process is the parent): all threads and pipe
/// ends of the plugin are gone.
fn process_gone(pid: u32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

async fn wait_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !process_gone(pid) {
        assert!(Instant::now() < deadline, "process {pid} still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_plugin_that_will_not_start_is_an_error_each_time_it_is_tried() {
    let (backend, source) = script_backend("exit 3", Duration::from_secs(5));
    for _ in 0..2 {
        let err = backend.start().await.unwrap_err();
        assert_eq!(err.status(), 400, "{err}");
    }
    // The command is resolved (verified) before every start.
    assert_eq!(source.resolved.load(Ordering::SeqCst), 2);
    let err = backend
        .handle_request(&mut sdk_request("x"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), 500);
    assert!(err.to_string().contains("starting plugin"), "{err}");

    let (backend, _) = script_backend(
        r#"read hello; printf '%s\n' '{"type":"hello","protocol":"2.0"}'; exec sleep 30"#,
        Duration::from_secs(5),
    );
    let err = backend.start().await.unwrap_err();
    assert!(err.to_string().contains("major 2"), "{err}");
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_hung_plugin_times_out_and_is_killed_when_dropped() {
    let (backend, _) = script_backend(
        &format!("{HELLO}; exec sleep 30"),
        Duration::from_millis(300),
    );
    backend.start().await.unwrap();
    let pid = backend.pid().expect("running");
    let started = Instant::now();
    let err = backend
        .handle_request(&mut sdk_request("x"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), 504, "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Periodic calls are bounded the same way.
    assert_eq!(backend.periodic().await.unwrap_err().status(), 504);
    drop(backend);
    wait_gone(pid).await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_plugin_that_dies_mid_request_fails_it_and_is_restarted_for_the_next() {
    // Answers the handshake, reads one request and dies without answering.
    let (backend, source) = script_backend(
        &format!("{HELLO}; read request; exit 1"),
        Duration::from_secs(10),
    );
    backend.start().await.unwrap();
    let first_pid = backend.pid().expect("running");
    let err = backend
        .handle_request(&mut sdk_request("x"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), 500);
    assert!(err.to_string().contains("plugin exited"), "{err}");
    wait_gone(first_pid).await;
    // The next request starts a new process (resolved and verified again).
    let err = backend
        .handle_request(&mut sdk_request("x"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("plugin exited"), "{err}");
    assert_eq!(source.resolved.load(Ordering::SeqCst), 2);

    // A plugin that died while idle is restarted and the request sent to the new one:
    // it never reached the old process, so it is safe to deliver.
    let (backend, source) = script_backend(
        &format!(
            r#"{HELLO}; read request; printf '%s\n' '{{"type":"response","id":1,"ok":{{"data":{{"n":1}}}}}}'; exec sleep 30"#
        ),
        Duration::from_secs(10),
    );
    backend.start().await.unwrap();
    let pid = backend.pid().unwrap();
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    wait_gone(pid).await;
    let resp = backend.handle_request(&mut sdk_request("x")).await.unwrap();
    assert_eq!(resp.data.unwrap()["n"], 1);
    assert_eq!(source.resolved.load(Ordering::SeqCst), 2);
    assert_ne!(backend.pid(), Some(pid));
}
