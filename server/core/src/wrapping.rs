//! Response wrapping: `X-Vault-Wrap-TTL` turns any answer into a single-use token whose
//! only power is to unwrap it; `sys/wrapping/{wrap,unwrap,lookup,rewrap}`.
//!
//! The wrapped answer is stored through the barrier at `sys/wrap/<token hash>`; the
//! wrapping token has the `response-wrapping` policy, one use and the wrap TTL.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::handling::{LogicalRequest, LogicalResponse};
use crate::token::{new_service_token, TokenEntry};
use crate::{Core, CoreError, Unsealed};

/// Storage prefix of wrapped answers.
pub const WRAP_PREFIX: &str = "sys/wrap/";
/// The policy wrapping tokens carry.
pub const WRAPPING_POLICY: &str = "response-wrapping";
/// Its rules (built in, like Vault's).
pub const WRAPPING_POLICY_TEXT: &str = r#"path "cubbyhole/response" { capabilities = ["create", "read"] }
path "sys/wrapping/unwrap" { capabilities = ["update"] }
path "sys/wrapping/lookup" { capabilities = ["update"] }
"#;
/// Longest wrap TTL accepted (Vault's default max is the system max TTL).
const MAX_WRAP_TTL: Duration = Duration::from_secs(32 * 24 * 3600);

/// What a wrapping token stands for.
#[derive(Serialize, Deserialize)]
struct Wrapped {
    creation_path: String,
    creation_time: i64,
    ttl: i64,
    data: Option<Map<String, Value>>,
    auth: Option<Value>,
    warnings: Vec<String>,
    lease_id: String,
    renewable: bool,
    lease_duration: u64,
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn invalid() -> CoreError {
    CoreError::BadRequest("wrapping token is not valid or does not exist".into())
}

/// Whether a token is a wrapping token.
pub fn is_wrapping_token(entry: &TokenEntry) -> bool {
    entry.policies.len() == 1 && entry.policies[0] == WRAPPING_POLICY
}

impl Core {
    /// Wrap `resp` (the answer to `path`) into a new single-use token.
    pub(crate) async fn wrap_response(
        &self,
        state: &Arc<Unsealed>,
        path: &str,
        ttl: Duration,
        resp: LogicalResponse,
    ) -> Result<LogicalResponse, CoreError> {
        if ttl.is_zero() || ttl > MAX_WRAP_TTL {
            return Err(CoreError::BadRequest(format!(
                "wrap TTL must be between 1s and {}s",
                MAX_WRAP_TTL.as_secs()
            )));
        }
        let now = crate::now_unix();
        let secs = ttl.as_secs() as i64;
        let token = new_service_token();
        let entry = state
            .tokens
            .create(
                &token,
                TokenEntry {
                    policies: vec![WRAPPING_POLICY.into()],
                    path: path.to_string(),
                    display_name: "response-wrapping".into(),
                    num_uses: 1,
                    creation_time: now,
                    ttl: secs,
                    expire_time: now + secs,
                    renewable: false,
                    orphan: true,
                    ..Default::default()
                },
            )
            .await?;
        let wrapped_accessor = resp
            .auth
            .as_ref()
            .and_then(|a| a.get("accessor"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let stored = Wrapped {
            creation_path: path.to_string(),
            creation_time: now,
            ttl: secs,
            data: resp.data,
            auth: resp.auth,
            warnings: resp.warnings,
            lease_id: resp.lease_id,
            renewable: resp.renewable,
            lease_duration: resp.lease_duration,
        };
        let index = state
            .store
            .put_json(&format!("{WRAP_PREFIX}{}", entry.id_hash), &stored)
            .await?;
        Ok(LogicalResponse {
            status: 200,
            wrap_info: Some(json!({
                "token": token,
                "accessor": entry.accessor,
                "ttl": secs,
                "creation_time": rfc3339(now),
                "creation_path": path,
                "wrapped_accessor": wrapped_accessor,
            })),
            index,
            ..Default::default()
        })
    }

    /// `sys/wrapping/*` (authorisation already done by the pipeline).
    pub(crate) async fn handle_wrapping(
        &self,
        state: &Arc<Unsealed>,
        req: &LogicalRequest,
        caller: Option<&TokenEntry>,
    ) -> Result<LogicalResponse, CoreError> {
        let op = req.path.strip_prefix("sys/wrapping/").unwrap_or_default();
        let body_token = req
            .data
            .get("token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty());
        match op {
            "wrap" => {
                if req.wrap_ttl.is_none() {
                    return Err(CoreError::BadRequest(
                        "wrapping requires a wrap TTL (X-Vault-Wrap-TTL)".into(),
                    ));
                }
                // The pipeline wraps this answer on the way out.
                Ok(LogicalResponse {
                    status: 200,
                    data: Some(req.data.clone()),
                    ..Default::default()
                })
            }
            "lookup" => {
                let token =
                    body_token.ok_or_else(|| CoreError::BadRequest("missing \"token\"".into()))?;
                let entry = state
                    .tokens
                    .lookup(token)?
                    .filter(|e| is_wrapping_token(e))
                    .ok_or_else(invalid)?;
                let stored: Wrapped = state
                    .store
                    .get_json(&format!("{WRAP_PREFIX}{}", entry.id_hash))?
                    .ok_or_else(invalid)?;
                Ok(LogicalResponse::ok(json!({
                    "creation_path": stored.creation_path,
                    "creation_time": rfc3339(stored.creation_time),
                    "creation_ttl": stored.ttl,
                })))
            }
            "unwrap" | "rewrap" => {
                // Either the caller *is* the wrapping token (its one use was spent by the
                // pipeline) or it names one in the body.
                let entry: TokenEntry = match body_token {
                    Some(token) => (*state
                        .tokens
                        .lookup(token)?
                        .filter(|e| is_wrapping_token(e))
                        .ok_or_else(invalid)?)
                    .clone(),
                    None => caller
                        .filter(|e| is_wrapping_token(e))
                        .cloned()
                        .ok_or_else(invalid)?,
                };
                let key = format!("{WRAP_PREFIX}{}", entry.id_hash);
                let stored: Wrapped = state.store.get_json(&key)?.ok_or_else(invalid)?;
                // Single use: revoking the token also deletes the wrapped answer.
                state.tokens.revoke_tree(&entry).await?;
                let index = self.cluster.applied_index();
                let resp = LogicalResponse {
                    status: 200,
                    data: stored.data,
                    auth: stored.auth,
                    warnings: stored.warnings,
                    lease_id: stored.lease_id,
                    renewable: stored.renewable,
                    lease_duration: stored.lease_duration,
                    index,
                    ..Default::default()
                };
                if op == "rewrap" {
                    let left = (entry.expire_time - crate::now_unix()).max(1) as u64;
                    let ttl = req.wrap_ttl.unwrap_or(Duration::from_secs(left));
                    return self
                        .wrap_response(state, &stored.creation_path, ttl, resp)
                        .await;
                }
                Ok(resp)
            }
            _ => Err(CoreError::NotFound(format!(
                "no handler for route \"{}\". route entry not found.",
                req.path
            ))),
        }
    }
}
