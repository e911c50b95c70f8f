//! The baseline server: bare actix-web answering every request with a fixed 200 JSON
//! body, behind exactly Coffer's TLS setup (`coffer_http::tls::server_config`: rustls
//! with the ring provider, ALPN h2 + http/1.1) and Coffer's worker count, started the
//! same way (a multi-threaded tokio runtime with the actix server spawned on it). It is
//! the HTTP + TLS ceiling every Coffer figure is divided by.

use std::net::SocketAddr;
use std::path::Path;

use actix_web::dev::Server;
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::{Context, Result};

/// The fixed answer: the size and shape of Coffer's `sys/health` body.
pub const BODY: &str = r#"{"initialized":true,"sealed":false,"standby":false,"performance_standby":false,"replication_performance_mode":"disabled","replication_dr_mode":"disabled","server_time_utc":1700000000,"version":"0.1.0","cluster_name":"coffer-cluster","cluster_id":"00000000-0000-0000-0000-000000000000"}"#;

/// Coffer's worker count (`server/cli/src/server.rs`): the cores, at most 4.
pub fn workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(4)
}

async fn fixed() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("cache-control", "no-store"))
        .body(BODY)
}

/// Bind the baseline server (not yet polled) and return it with its addresses.
pub fn bind(listen: &str, cert: &Path, key: &Path) -> Result<(Server, Vec<SocketAddr>)> {
    let tls =
        coffer_http::tls::server_config(cert, key, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let server = HttpServer::new(|| App::new().default_service(web::to(fixed)))
        .workers(workers())
        .bind_rustls_0_23(listen, tls)
        .with_context(|| format!("binding {listen}"))?;
    let addrs = server.addrs();
    Ok((server.run(), addrs))
}

/// Serve until SIGINT/SIGTERM.
pub async fn serve(listen: &str, cert: &Path, key: &Path) -> Result<()> {
    let (server, addrs) = bind(listen, cert, key)?;
    eprintln!(
        "baseline server listening on {addrs:?} ({} workers)",
        workers()
    );
    tokio::spawn(server).await.context("server task")??;
    Ok(())
}
