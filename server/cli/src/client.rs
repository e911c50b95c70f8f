//! The operator CLI's HTTP client: where the server is (`-address`, `COFFER_ADDR`,
//! `VAULT_ADDR`), which token to send (`COFFER_TOKEN`, `VAULT_TOKEN`, then the token
//! helper file `~/.coffer-token`), how to trust its certificate (`-ca-cert`,
//! `VAULT_CACERT`, `-tls-skip-verify`), and Vault's error wording for failed calls.
//!
//! The CLI talks to a server only through this module, over HTTP(S), like `vault`
//! does: it never links the server's internals.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

/// Where the server is when nothing says otherwise (Vault's default).
pub const DEFAULT_ADDRESS: &str = "https://127.0.0.1:8200";

/// The token helper file, relative to `$HOME`.
pub const TOKEN_HELPER_FILE: &str = ".coffer-token";

/// Read `COFFER_<name>`, falling back to `VAULT_<name>`; empty (or blank) counts as
/// unset.
pub fn env_var(name: &str) -> Option<String> {
    env_var_from(&|k| std::env::var(k).ok(), name)
}

/// [`env_var`] with the environment read through `get`.
pub fn env_var_from(get: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    [format!("COFFER_{name}"), format!("VAULT_{name}")]
        .iter()
        .find_map(|k| get(k).filter(|v| !v.trim().is_empty()))
}

/// Vault's boolean spellings (`strconv.ParseBool`).
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// The token helper file: `$HOME/.coffer-token`.
pub fn token_helper_path() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(TOKEN_HELPER_FILE))
}

/// The token stored by `coffer login`, if any.
pub fn read_token_helper() -> Option<String> {
    let path = token_helper_path()?;
    let token = std::fs::read_to_string(path).ok()?;
    let token = token.trim();
    (!token.is_empty()).then(|| token.to_string())
}

/// Store a token in the helper file, readable by the owner only.
pub fn store_token_helper(token: &str) -> std::io::Result<PathBuf> {
    let path = token_helper_path()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "HOME is not set"))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    std::io::Write::write_all(&mut file, token.as_bytes())?;
    Ok(path)
}

/// Everything needed to build a [`Client`], resolved from flags and environment.
#[derive(Debug, Clone, Default)]
pub struct ClientConfig {
    /// Base address, e.g. `https://127.0.0.1:8200`.
    pub address: String,
    /// Token to send as `X-Vault-Token`.
    pub token: Option<String>,
    /// PEM file with the CA certificate(s) to trust instead of the system roots.
    pub ca_cert: Option<PathBuf>,
    /// Directory of PEM CA certificates to trust instead of the system roots.
    pub ca_path: Option<PathBuf>,
    /// Accept any server certificate (insecure).
    pub skip_verify: bool,
    /// Sent as `X-Vault-Namespace`.
    pub namespace: Option<String>,
    /// Per-request timeout (none for streaming calls).
    pub timeout: Duration,
}

/// A failed call, worded like Vault's `api.ResponseError` so scripts and people
/// who know Vault's messages recognise it.
#[derive(Debug, Clone)]
pub enum ApiError {
    /// The server answered with a status >= 400.
    Status(Box<StatusError>),
    /// No answer: connection, TLS, timeout, or an unreadable body.
    Transport {
        method: String,
        url: String,
        message: String,
    },
}

/// The details of an answer with a status >= 400.
#[derive(Debug, Clone)]
pub struct StatusError {
    pub method: String,
    pub url: String,
    pub namespace: Option<String>,
    pub code: u16,
    /// The `errors` list, or the raw body when it was not Vault's JSON.
    pub errors: Vec<String>,
    pub raw: bool,
    /// The decoded body (a 404 read may still carry data or warnings).
    pub body: Value,
}

impl ApiError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status(s) => Some(s.code),
            ApiError::Transport { .. } => None,
        }
    }

    /// Whether any error message contains `needle`.
    pub fn mentions(&self, needle: &str) -> bool {
        match self {
            ApiError::Status(s) => s.errors.iter().any(|e| e.contains(needle)),
            ApiError::Transport { message, .. } => message.contains(needle),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Status(s) => {
                let StatusError {
                    method,
                    url,
                    namespace,
                    code,
                    errors,
                    raw,
                    ..
                } = s.as_ref();
                write!(f, "Error making API request.\n\n")?;
                if let Some(ns) = namespace {
                    writeln!(f, "Namespace: {ns}")?;
                }
                writeln!(f, "URL: {method} {url}")?;
                if *raw {
                    write!(f, "Code: {code}. Raw Message:\n\n")?;
                    write!(f, "{}", errors.join("\n"))
                } else {
                    write!(f, "Code: {code}. Errors:\n\n")?;
                    let lines: Vec<String> = errors.iter().map(|e| format!("* {e}")).collect();
                    write!(f, "{}", lines.join("\n"))
                }
            }
            ApiError::Transport {
                method,
                url,
                message,
            } => {
                let verb = {
                    let lower = method.to_ascii_lowercase();
                    let mut chars = lower.chars();
                    match chars.next() {
                        Some(c) => c.to_ascii_uppercase().to_string() + chars.as_str(),
                        None => String::new(),
                    }
                };
                write!(f, "{verb} \"{url}\": {message}")
            }
        }
    }
}

impl std::error::Error for ApiError {}

/// A decoded answer: its status and JSON body (`Null` when empty).
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    pub body: Value,
}

/// An error building the client (bad CA file, bad address).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("Error loading CA certificates from {path}: {message}")]
    CaCert { path: String, message: String },
    #[error("Error building the HTTP client: {0}")]
    Build(String),
}

/// The HTTP client every command uses.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    address: String,
    token: Option<String>,
    namespace: Option<String>,
    timeout: Duration,
}

fn load_pem_file(path: &Path) -> Result<Vec<reqwest::Certificate>, ClientError> {
    let err = |message: String| ClientError::CaCert {
        path: path.display().to_string(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificates found".into()));
    }
    Ok(certs)
}

impl Client {
    /// Build a client. Installs the ring crypto provider for rustls (reqwest is built
    /// without one) the first time.
    pub fn new(config: &ClientConfig) -> Result<Client, ClientError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .user_agent(concat!("coffer-cli/", env!("CARGO_PKG_VERSION")));
        let mut certs = Vec::new();
        if let Some(file) = &config.ca_cert {
            certs.extend(load_pem_file(file)?);
        }
        if let Some(dir) = &config.ca_path {
            let entries = std::fs::read_dir(dir).map_err(|e| ClientError::CaCert {
                path: dir.display().to_string(),
                message: e.to_string(),
            })?;
            let mut files: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            for file in files {
                certs.extend(load_pem_file(&file)?);
            }
        }
        if !certs.is_empty() {
            builder = builder.tls_certs_only(certs);
        }
        if config.skip_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Build(error_chain(&e)))?;
        Ok(Client {
            http,
            address: config.address.trim_end_matches('/').to_string(),
            token: config.token.clone(),
            namespace: config.namespace.clone(),
            timeout: config.timeout,
        })
    }

    /// The server's base address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The token this client sends, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// A copy that sends `token` instead (or no token).
    pub fn with_token(&self, token: Option<String>) -> Client {
        Client {
            token,
            ..self.clone()
        }
    }

    /// The full URL of an API path (`sys/seal-status` -> `<addr>/v1/sys/seal-status`).
    pub fn url(&self, path: &str) -> String {
        format!("{}/v1/{}", self.address, path.trim_start_matches('/'))
    }

    /// A request with Vault's headers set; `streaming` drops the overall timeout.
    pub fn request(&self, method: Method, path: &str, streaming: bool) -> RequestBuilder {
        self.request_url(method, &self.url(path), streaming)
    }

    /// A request to a full URL with Vault's headers set.
    fn request_url(&self, method: Method, url: &str, streaming: bool) -> RequestBuilder {
        let mut req = self
            .http
            .request(method, url)
            .header("X-Vault-Request", "true");
        if !streaming {
            req = req.timeout(self.timeout);
        }
        if let Some(token) = &self.token {
            req = req.header("X-Vault-Token", token);
        }
        if let Some(ns) = &self.namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        req
    }

    fn url_with_query(&self, path: &str, query: &[(String, String)]) -> String {
        let url = self.url(path);
        match reqwest::Url::parse_with_params(&url, query) {
            Ok(u) if !query.is_empty() => u.to_string(),
            _ => url,
        }
    }

    /// Send a prepared request and decode the answer; statuses >= 400 are errors.
    pub async fn execute(
        &self,
        method: &Method,
        url: &str,
        req: RequestBuilder,
    ) -> Result<ApiResponse, ApiError> {
        let transport = |e: reqwest::Error| ApiError::Transport {
            method: method.to_string(),
            url: url.to_string(),
            message: error_chain(&e.without_url()),
        };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let text = resp.text().await.map_err(transport)?;
        let parsed = if text.trim().is_empty() {
            Some(Value::Null)
        } else {
            serde_json::from_str::<Value>(&text).ok()
        };
        if status.as_u16() >= 400 {
            return Err(self.status_error(method, url, status.as_u16(), &text));
        }
        match parsed {
            Some(body) => Ok(ApiResponse {
                status: status.as_u16(),
                body,
            }),
            None if status == StatusCode::OK => Err(ApiError::Transport {
                method: method.to_string(),
                url: url.to_string(),
                message: format!("the server sent a body that is not JSON: {text}"),
            }),
            None => Ok(ApiResponse {
                status: status.as_u16(),
                body: Value::Null,
            }),
        }
    }

    /// The error for a status >= 400 and its body text.
    fn status_error(&self, method: &Method, url: &str, code: u16, text: &str) -> ApiError {
        let parsed = serde_json::from_str::<Value>(text).ok();
        let (errors, raw) = match parsed.as_ref().and_then(|b| b.get("errors")) {
            Some(Value::Array(list)) => (
                list.iter()
                    .map(|e| match e {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect(),
                false,
            ),
            _ if text.trim().is_empty() => (Vec::new(), false),
            _ => (vec![text.to_string()], true),
        };
        ApiError::Status(Box::new(StatusError {
            method: method.to_string(),
            url: url.to_string(),
            namespace: self.namespace.clone(),
            code,
            errors,
            raw,
            body: parsed.unwrap_or(Value::Null),
        }))
    }

    /// Send a request whose body or answer is streamed (no overall timeout). A
    /// successful response is returned unread; an error status is decoded.
    pub async fn send_streaming(
        &self,
        method: Method,
        path: &str,
        body: Option<reqwest::Body>,
    ) -> Result<reqwest::Response, ApiError> {
        let url = self.url(path);
        let mut req = self.request(method.clone(), path, true);
        if let Some(b) = body {
            req = req.body(b);
        }
        let transport = |e: reqwest::Error| ApiError::Transport {
            method: method.to_string(),
            url: url.clone(),
            message: error_chain(&e.without_url()),
        };
        let resp = req.send().await.map_err(transport)?;
        if resp.status().as_u16() >= 400 {
            let code = resp.status().as_u16();
            let text = resp.text().await.map_err(transport)?;
            return Err(self.status_error(&method, &url, code, &text));
        }
        Ok(resp)
    }

    /// GET a path and return the body text exactly as received (`-format=raw`).
    pub async fn get_text(
        &self,
        path: &str,
        query: &[(String, String)],
    ) -> Result<String, ApiError> {
        let url = self.url_with_query(path, query);
        let req = self.request_url(Method::GET, &url, false);
        let transport = |e: reqwest::Error| ApiError::Transport {
            method: "GET".into(),
            url: url.clone(),
            message: error_chain(&e.without_url()),
        };
        let resp = req.send().await.map_err(transport)?;
        let code = resp.status().as_u16();
        let text = resp.text().await.map_err(transport)?;
        if code >= 400 {
            return Err(self.status_error(&Method::GET, &url, code, &text));
        }
        Ok(text)
    }

    /// Send `method` to `path` with optional query parameters and JSON body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> Result<ApiResponse, ApiError> {
        let url = self.url_with_query(path, query);
        let mut req = self.request_url(method.clone(), &url, false);
        if let Some(b) = body {
            if method == Method::PATCH {
                req = req
                    .header("Content-Type", "application/merge-patch+json")
                    .body(b.to_string());
            } else {
                req = req.json(b);
            }
        }
        self.execute(&method, &url, req).await
    }

    /// Vault's `ReadWithData`: a 404 is "nothing there" (`None`) unless its body
    /// still carries data or warnings (a deleted KV v2 version keeps its metadata).
    pub async fn read(
        &self,
        path: &str,
        query: &[(String, String)],
    ) -> Result<Option<Value>, ApiError> {
        match self.send(Method::GET, path, query, None).await {
            Ok(resp) => Ok(non_null(resp.body)),
            Err(e) => not_found_as_none(e),
        }
    }

    /// PUT a JSON body; `None` for an empty (204) answer.
    pub async fn write(&self, path: &str, body: &Value) -> Result<Option<Value>, ApiError> {
        let resp = self.send(Method::PUT, path, &[], Some(body)).await?;
        Ok(non_null(resp.body))
    }

    /// PATCH a JSON merge-patch body; `None` for an empty answer.
    pub async fn patch(&self, path: &str, body: &Value) -> Result<Option<Value>, ApiError> {
        let resp = self.send(Method::PATCH, path, &[], Some(body)).await?;
        Ok(non_null(resp.body))
    }

    /// LIST a path (trailing slash added); a 404 means an empty list (`None`).
    pub async fn list(&self, path: &str) -> Result<Option<Value>, ApiError> {
        let path = format!("{}/", path.trim_end_matches('/'));
        let method = Method::from_bytes(b"LIST").expect("LIST is a valid method token");
        match self.send(method, &path, &[], None).await {
            Ok(resp) => Ok(non_null(resp.body)),
            Err(e) => not_found_as_none(e),
        }
    }

    /// DELETE a path; a 404 is success (`None`), as in Vault's client.
    pub async fn delete(
        &self,
        path: &str,
        query: &[(String, String)],
    ) -> Result<Option<Value>, ApiError> {
        match self.send(Method::DELETE, path, query, None).await {
            Ok(resp) => Ok(non_null(resp.body)),
            Err(e) => not_found_as_none(e),
        }
    }
}

fn non_null(v: Value) -> Option<Value> {
    (!v.is_null()).then_some(v)
}

fn not_found_as_none(e: ApiError) -> Result<Option<Value>, ApiError> {
    match &e {
        ApiError::Status(s) if s.code == 404 => {
            let body = &s.body;
            let has_data = body.get("data").is_some_and(|d| match d {
                Value::Object(m) => !m.is_empty(),
                Value::Null => false,
                _ => true,
            });
            let has_warnings = body
                .get("warnings")
                .and_then(Value::as_array)
                .is_some_and(|w| !w.is_empty());
            if has_data || has_warnings {
                Ok(Some(body.clone()))
            } else {
                Ok(None)
            }
        }
        _ => Err(e),
    }
}

/// An error and its causes on one line (reqwest hides the interesting part in
/// `source()`: "connection refused", "invalid peer certificate").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_error_reads_like_vaults() {
        let e = ApiError::Status(Box::new(StatusError {
            method: "GET".into(),
            url: "https://127.0.0.1:8200/v1/secret/data/foo".into(),
            namespace: None,
            code: 403,
            errors: vec!["permission denied".into()],
            raw: false,
            body: Value::Null,
        }));
        assert_eq!(
            e.to_string(),
            "Error making API request.\n\nURL: GET https://127.0.0.1:8200/v1/secret/data/foo\n\
             Code: 403. Errors:\n\n* permission denied"
        );
        let t = ApiError::Transport {
            method: "PUT".into(),
            url: "https://x/v1/sys/init".into(),
            message: "connection refused".into(),
        };
        assert_eq!(
            t.to_string(),
            "Put \"https://x/v1/sys/init\": connection refused"
        );
    }

    #[test]
    fn bools_parse_like_go() {
        assert_eq!(parse_bool("1"), Some(true));
        assert_eq!(parse_bool("false"), Some(false));
        assert_eq!(parse_bool("yes"), None);
    }

    #[test]
    fn not_found_keeps_a_body_with_data() {
        let e = |body: Value| {
            ApiError::Status(Box::new(StatusError {
                method: "GET".into(),
                url: String::new(),
                namespace: None,
                code: 404,
                errors: vec![],
                raw: false,
                body,
            }))
        };
        assert!(not_found_as_none(e(serde_json::json!({"errors": []})))
            .unwrap()
            .is_none());
        let kept = not_found_as_none(e(serde_json::json!({"data": {"metadata": {}}})))
            .unwrap()
            .unwrap();
        assert!(kept["data"]["metadata"].is_object());
    }
}
