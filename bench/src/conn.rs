//! One keep-alive HTTP/1.1 connection over TLS (rustls with the ring provider, hyper's
//! low-level client): the load tool opens exactly one per task and reuses it for every
//! request, so a run measures request handling, not handshakes. [`Target`] holds what is
//! shared by all connections to one server (address, trusted CA, TLS client config).

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Install the ring provider as the process default (nothing else is compiled in).
pub fn init_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A server to connect to: `https://host:port`, trusting one CA file.
pub struct Target {
    host: String,
    port: u16,
    authority: HeaderValue,
    server_name: ServerName<'static>,
    tls: TlsConnector,
}

impl Target {
    /// Parse `addr` (`https://127.0.0.1:8200`) and load the CA certificates from `ca`.
    pub fn new(addr: &str, ca: &Path) -> Result<Target> {
        let uri: Uri = addr
            .parse()
            .with_context(|| format!("bad address {addr:?}"))?;
        if uri.scheme_str() != Some("https") {
            bail!("address {addr:?}: only https:// is supported (the benchmark is over TLS)");
        }
        let host = uri
            .host()
            .ok_or_else(|| anyhow!("address {addr:?} has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(443);
        let mut roots = RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca)
            .with_context(|| format!("reading {}", ca.display()))?
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("parsing {}", ca.display()))?;
        if certs.is_empty() {
            bail!("{}: no certificate found", ca.display());
        }
        for cert in certs {
            roots.add(cert)?;
        }
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
        // HTTP/1.1 only: one request in flight per connection, like most Vault clients.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let server_name =
            ServerName::try_from(host.clone()).map_err(|e| anyhow!("server name {host:?}: {e}"))?;
        Ok(Target {
            authority: HeaderValue::from_str(&format!("{host}:{port}"))?,
            host,
            port,
            server_name,
            tls: TlsConnector::from(Arc::new(config)),
        })
    }

    /// Open one TCP + TLS connection and complete the HTTP/1.1 handshake.
    pub async fn connect(&self) -> Result<Conn> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .with_context(|| format!("connecting to {}:{}", self.host, self.port))?;
        tcp.set_nodelay(true)?;
        let tls = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .context("TLS handshake")?;
        let (sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        Ok(Conn {
            sender,
            driver: Box::pin(driver),
            authority: self.authority.clone(),
            closed: false,
        })
    }
}

type Io = TokioIo<TlsStream<TcpStream>>;

/// One open connection. The connection's I/O is driven inside [`Conn::send`] (no
/// separate task), so a request costs no cross-task wake-up.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    driver: Pin<Box<Connection<Io, Full<Bytes>>>>,
    authority: HeaderValue,
    closed: bool,
}

/// A response: status and the whole body.
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// The body, read to the end (so the connection can be reused).
    pub body: Bytes,
}

impl Reply {
    /// Whether the status is 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON (`Null` when empty or not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// Status and the start of the body, for error reports.
    pub fn describe(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let mut short: String = text.chars().take(300).collect();
        if short.len() < text.len() {
            short.push('…');
        }
        format!("{} {}", self.status, short.trim())
    }
}

impl Conn {
    /// Whether the server closed the connection (a new one is needed).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Send one request (`path` is the origin form, `/v1/...`) and read the whole reply.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&HeaderValue>,
        body: Option<Bytes>,
    ) -> Result<Reply> {
        if self.closed {
            bail!("connection closed");
        }
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.authority);
        if let Some(t) = token {
            builder = builder.header("x-vault-token", t);
        }
        let req = match body {
            Some(b) => builder
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(b))?,
            None => builder.body(Full::new(Bytes::new()))?,
        };
        let sender = &mut self.sender;
        let exchange = async move {
            sender.ready().await?;
            let resp = sender.send_request(req).await?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<Reply, hyper::Error>(Reply { status, body })
        };
        tokio::select! {
            biased;
            reply = exchange => match reply {
                Ok(r) => Ok(r),
                Err(e) => {
                    self.closed = true;
                    Err(e.into())
                }
            },
            end = self.driver.as_mut() => {
                self.closed = true;
                match end {
                    Ok(()) => bail!("connection closed by the server"),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }
}

/// A token as a header value.
pub fn token_header(token: &str) -> Result<HeaderValue> {
    let mut v = HeaderValue::from_str(token).context("token is not a valid header value")?;
    v.set_sensitive(true);
    Ok(v)
}
