//! `coffer server -config`: a malformed value is a clear error naming the key and no
//! start; an unsupported key is a warning naming it; `-config FILE` and `-config=FILE`
//! both work.

use std::process::Command;
use std::time::Duration;

use crate::harness::{binary, free_port, Server};

fn run_config(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.hcl");
    std::fs::write(&path, text).expect("write");
    let out = Command::new(binary())
        .args(["server", "-config", path.to_str().expect("utf8")])
        .output()
        .expect("run");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn malformed_values_stop_the_server_with_the_key_named() {
    let cases = [
        ("storage \"inmem\" {}\nlistener \"tcp\" { tls_disable = true }\ndefault_lease_ttl = \"forever\"", "default_lease_ttl"),
        ("storage \"inmem\" {}\nlistener \"tcp\" { tls_disable = \"maybe\" }", "tls_disable"),
        ("storage \"consul\" {}\nlistener \"tcp\" { tls_disable = true }", "consul"),
        ("storage \"inmem\" {}\nlistener \"tcp\" { address = \"127.0.0.1:1\" }", "tls_cert_file"),
        ("storage \"inmem\" {}\nlistener \"tcp\" { tls_disable = true }\nseal \"transit\" { address = \"https://x\" }", "seal \"transit\""),
        ("this is { not hcl", "invalid HCL"),
    ];
    for (text, key) in cases {
        let (ok, stderr) = run_config(text);
        assert!(!ok, "server started with {text:?}");
        assert!(
            stderr.contains(key),
            "error for {text:?} does not name {key:?}: {stderr}"
        );
    }
}

#[tokio::test]
async fn unsupported_keys_are_warnings_naming_them() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port();
    let path = dir.path().join("c.hcl");
    std::fs::write(
        &path,
        format!("storage \"inmem\" {{}}\nlistener \"tcp\" {{\n address = \"127.0.0.1:{port}\"\n tls_disable = 1\n}}\ntelemetry {{ statsite_address = \"x:1\" }}\nui = true\n"),
    )?;
    let log = dir.path().join("log");
    let mut child = Command::new(binary())
        .args(["server", &format!("-config={}", path.display())])
        .stderr(std::fs::File::create(&log)?)
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..100 {
        if client
            .get(format!("http://127.0.0.1:{port}/v1/sys/health"))
            .send()
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log)?;
    assert!(up, "server with an unsupported key did not start: {text}");
    assert!(
        text.contains("telemetry"),
        "no warning naming telemetry: {text}"
    );
    Ok(())
}

#[tokio::test]
async fn tls_is_the_default() -> anyhow::Result<()> {
    // The harness server has TLS; plain HTTP to it fails.
    let server = Server::start_tls().await?;
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/v1/sys/health", server.port))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    Ok(())
}
