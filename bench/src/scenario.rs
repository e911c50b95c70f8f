//! The scenarios: what request the `i`-th call of a run sends, and the one-off
//! preparation each needs (a key to read, a transit ciphertext, AppRole credentials),
//! followed by a probe request so a scenario whose engine is missing is reported as
//! unavailable instead of as a wall of errors.

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::Method;
use serde_json::json;

use crate::conn::{token_header, Target};

/// A workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// KV v2 read of one key.
    KvReadOne,
    /// KV v2 read of a random key out of `keys`.
    KvReadMany,
    /// KV v2 write, a distinct key per request.
    KvWrite,
    /// 90% reads over `keys`, 10% writes of distinct keys.
    KvMixed,
    /// Transit encrypt of 1 KiB with an aes256-gcm96 key.
    TransitEncrypt,
    /// Transit decrypt of a 1 KiB ciphertext.
    TransitDecrypt,
    /// `auth/token/lookup-self`.
    TokenLookupSelf,
    /// `auth/approle/login`.
    ApproleLogin,
    /// `sys/health`: the floor of Coffer's own HTTP stack.
    Health,
    /// The bare actix-web + rustls baseline server's fixed answer.
    Baseline,
    /// Writes keys `0..keys` that `KvReadMany` and `KvMixed` read.
    PrepareMany,
    /// Writes `secret/data/load/<i>` for the memory measurement.
    LoadKv,
}

impl Scenario {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::KvReadOne => "kv-read-one",
            Scenario::KvReadMany => "kv-read-many",
            Scenario::KvWrite => "kv-write",
            Scenario::KvMixed => "kv-mixed",
            Scenario::TransitEncrypt => "transit-encrypt",
            Scenario::TransitDecrypt => "transit-decrypt",
            Scenario::TokenLookupSelf => "token-lookup-self",
            Scenario::ApproleLogin => "approle-login",
            Scenario::Health => "health",
            Scenario::Baseline => "baseline",
            Scenario::PrepareMany => "prepare-many",
            Scenario::LoadKv => "load-kv",
        }
    }
}

/// The mount paths and names the setup step creates and the scenarios use.
pub const KV_MOUNT: &str = "secret";
/// Transit mount.
pub const TRANSIT_MOUNT: &str = "transit";
/// Transit key name (aes256-gcm96).
pub const TRANSIT_KEY: &str = "bench";
/// AppRole role name.
pub const APPROLE_ROLE: &str = "bench";

/// One request of a run.
pub struct Req {
    /// Method.
    pub method: Method,
    /// Origin-form path (`/v1/...`).
    pub path: String,
    /// JSON body.
    pub body: Option<Bytes>,
    /// Whether to send the token.
    pub auth: bool,
}

/// Everything a scenario needs to build its requests, prepared once per run.
pub struct Plan {
    /// The scenario.
    pub scenario: Scenario,
    /// `X-Vault-Token`.
    pub token: Option<HeaderValue>,
    keys: u64,
    run_id: String,
    write_body: Bytes,
    encrypt_body: Bytes,
    decrypt_body: Bytes,
    login_body: Bytes,
}

/// A small, fast per-task random generator (xorshift64*), enough to spread reads.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from `seed` (never zero).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A KV v2 write body with a `value` of exactly `size` bytes.
pub fn kv_body(size: usize) -> Bytes {
    let value: String = (0..size)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    Bytes::from(json!({ "data": { "value": value } }).to_string())
}

/// The 1 KiB transit plaintext, base64.
pub fn transit_plaintext() -> String {
    let raw: Vec<u8> = (0..1024u32).map(|i| (i * 31 % 251) as u8).collect();
    base64::engine::general_purpose::STANDARD.encode(raw)
}

impl Plan {
    /// The request for call number `i` (a run-wide counter, so write keys are distinct).
    pub fn request(&self, i: u64, rng: &mut Rng) -> Req {
        let get = |path: String, auth: bool| Req {
            method: Method::GET,
            path,
            body: None,
            auth,
        };
        let post = |path: String, body: &Bytes, auth: bool| Req {
            method: Method::POST,
            path,
            body: Some(body.clone()),
            auth,
        };
        match self.scenario {
            Scenario::KvReadOne => get(format!("/v1/{KV_MOUNT}/data/bench/one"), true),
            Scenario::KvReadMany => get(self.many_key(rng), true),
            Scenario::KvWrite => post(
                format!("/v1/{KV_MOUNT}/data/bench/w/{}/{i}", self.run_id),
                &self.write_body,
                true,
            ),
            Scenario::KvMixed => {
                if rng.next_u64().is_multiple_of(10) {
                    post(
                        format!("/v1/{KV_MOUNT}/data/bench/mixed/{}/{i}", self.run_id),
                        &self.write_body,
                        true,
                    )
                } else {
                    get(self.many_key(rng), true)
                }
            }
            Scenario::TransitEncrypt => post(
                format!("/v1/{TRANSIT_MOUNT}/encrypt/{TRANSIT_KEY}"),
                &self.encrypt_body,
                true,
            ),
            Scenario::TransitDecrypt => post(
                format!("/v1/{TRANSIT_MOUNT}/decrypt/{TRANSIT_KEY}"),
                &self.decrypt_body,
                true,
            ),
            Scenario::TokenLookupSelf => get("/v1/auth/token/lookup-self".into(), true),
            Scenario::ApproleLogin => {
                post("/v1/auth/approle/login".into(), &self.login_body, false)
            }
            Scenario::Health | Scenario::Baseline => get("/v1/sys/health".into(), false),
            Scenario::PrepareMany => post(
                format!("/v1/{KV_MOUNT}/data/bench/many/{i}"),
                &self.write_body,
                true,
            ),
            Scenario::LoadKv => post(
                format!("/v1/{KV_MOUNT}/data/load/{i}"),
                &self.write_body,
                true,
            ),
        }
    }

    fn many_key(&self, rng: &mut Rng) -> String {
        let k = rng.next_u64() % self.keys.max(1);
        format!("/v1/{KV_MOUNT}/data/bench/many/{k}")
    }
}

/// What `prepare` found.
pub enum Prepared {
    /// Ready to run.
    Ready(Plan),
    /// The server cannot serve this scenario (e.g. its engine is not mounted).
    Unavailable(String),
}

/// Prepare a scenario against `target`: create what it reads, fetch what it needs, and
/// probe one request.
pub async fn prepare(
    target: &Target,
    scenario: Scenario,
    token: Option<&str>,
    keys: u64,
    value_size: usize,
) -> Result<Prepared> {
    let needs_token = !matches!(scenario, Scenario::Health | Scenario::Baseline);
    let token = match token {
        Some(t) => Some(token_header(t)?),
        None if needs_token => bail!("{} needs --token (or VAULT_TOKEN)", scenario.name()),
        None => None,
    };
    let run_id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or_default()
    );
    let mut plan = Plan {
        scenario,
        token,
        keys,
        run_id,
        write_body: kv_body(value_size),
        encrypt_body: Bytes::from(json!({ "plaintext": transit_plaintext() }).to_string()),
        decrypt_body: Bytes::new(),
        login_body: Bytes::new(),
    };
    let mut conn = target.connect().await?;
    let tok = plan.token.clone();
    let tok = tok.as_ref();
    match scenario {
        Scenario::KvReadOne => {
            let r = conn
                .send(
                    Method::POST,
                    &format!("/v1/{KV_MOUNT}/data/bench/one"),
                    tok,
                    Some(plan.write_body.clone()),
                )
                .await?;
            if !r.ok() {
                return Ok(Prepared::Unavailable(format!(
                    "writing the key to read failed: {}",
                    r.describe()
                )));
            }
        }
        Scenario::TransitDecrypt => {
            let r = conn
                .send(
                    Method::POST,
                    &format!("/v1/{TRANSIT_MOUNT}/encrypt/{TRANSIT_KEY}"),
                    tok,
                    Some(plan.encrypt_body.clone()),
                )
                .await?;
            if !r.ok() {
                return Ok(Prepared::Unavailable(format!(
                    "transit encrypt (to get a ciphertext) failed: {}",
                    r.describe()
                )));
            }
            let ct = r.json()["data"]["ciphertext"]
                .as_str()
                .map(String::from)
                .context("transit encrypt answered without data.ciphertext")?;
            plan.decrypt_body = Bytes::from(json!({ "ciphertext": ct }).to_string());
        }
        Scenario::ApproleLogin => {
            let r = conn
                .send(
                    Method::GET,
                    &format!("/v1/auth/approle/role/{APPROLE_ROLE}/role-id"),
                    tok,
                    None,
                )
                .await?;
            if !r.ok() {
                return Ok(Prepared::Unavailable(format!(
                    "reading the AppRole role-id failed: {}",
                    r.describe()
                )));
            }
            let role_id = r.json()["data"]["role_id"]
                .as_str()
                .map(String::from)
                .context("role-id answer without data.role_id")?;
            let r = conn
                .send(
                    Method::POST,
                    &format!("/v1/auth/approle/role/{APPROLE_ROLE}/secret-id"),
                    tok,
                    None,
                )
                .await?;
            if !r.ok() {
                return Ok(Prepared::Unavailable(format!(
                    "creating an AppRole secret-id failed: {}",
                    r.describe()
                )));
            }
            let secret_id = r.json()["data"]["secret_id"]
                .as_str()
                .map(String::from)
                .context("secret-id answer without data.secret_id")?;
            plan.login_body =
                Bytes::from(json!({ "role_id": role_id, "secret_id": secret_id }).to_string());
        }
        _ => {}
    }
    // One probe request (not for the bulk writers: their errors show in the run).
    if !matches!(scenario, Scenario::PrepareMany | Scenario::LoadKv) {
        let mut rng = Rng::new(1);
        let req = plan.request(u64::MAX, &mut rng);
        let token = if req.auth { plan.token.as_ref() } else { None };
        let method = req.method.clone();
        let r = conn.send(req.method, &req.path, token, req.body).await?;
        if !r.ok() {
            let hint = match scenario {
                Scenario::KvReadMany | Scenario::KvMixed => {
                    " (were the keys written? run with --prepare)"
                }
                _ => "",
            };
            return Ok(Prepared::Unavailable(format!(
                "probe {method} {} -> {}{hint}",
                req.path,
                r.describe()
            )));
        }
    }
    Ok(Prepared::Ready(plan))
}

/// A plan for the bulk writers (no probe, no preparation).
pub fn writer_plan(scenario: Scenario, token: &str, value_size: usize, keys: u64) -> Result<Plan> {
    Ok(Plan {
        scenario,
        token: Some(token_header(token)?),
        keys,
        run_id: String::new(),
        write_body: kv_body(value_size),
        encrypt_body: Bytes::new(),
        decrypt_body: Bytes::new(),
        login_body: Bytes::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_body_value_has_the_requested_size() {
        let body: serde_json::Value = serde_json::from_slice(&kv_body(100)).unwrap();
        assert_eq!(body["data"]["value"].as_str().unwrap().len(), 100);
    }

    #[test]
    fn transit_plaintext_is_one_kib() {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(transit_plaintext())
            .unwrap();
        assert_eq!(raw.len(), 1024);
    }

    #[test]
    fn writes_use_distinct_keys_and_reads_stay_in_the_key_space() {
        let plan = writer_plan(Scenario::PrepareMany, "t", 10, 50).unwrap();
        let mut rng = Rng::new(1);
        let a = plan.request(1, &mut rng);
        let b = plan.request(2, &mut rng);
        assert_ne!(a.path, b.path);
        assert_eq!(a.method, Method::POST);
        let read = Plan {
            scenario: Scenario::KvReadMany,
            ..writer_plan(Scenario::KvReadMany, "t", 10, 50).unwrap()
        };
        for i in 0..1000 {
            let r = read.request(i, &mut rng);
            let k: u64 = r.path.rsplit('/').next().unwrap().parse().unwrap();
            assert!(k < 50);
            assert_eq!(r.method, Method::GET);
        }
    }
}
