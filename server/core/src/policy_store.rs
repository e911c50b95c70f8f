//! ACL policies: stored through the barrier at `sys/policy/<name>`, parsed once, and
//! compiled ACLs cached per policy set. Both caches drop entries when a policy changes
//! on any node (the apply listener calls [`PolicyStore::invalidate_key`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use coffer_policies::{default_policy, parse, Acl, Policy, DEFAULT_POLICY_NAME, ROOT_POLICY};
use serde::{Deserialize, Serialize};

use crate::store::LogicalStore;
use crate::CoreError;

/// Storage prefix of ACL policies.
pub const POLICY_PREFIX: &str = "sys/policy/";

#[derive(Serialize, Deserialize)]
struct StoredPolicy {
    name: String,
    policy: String,
}

/// The policy store.
pub struct PolicyStore {
    store: Arc<LogicalStore>,
    policies: RwLock<HashMap<String, Arc<Policy>>>,
    acls: RwLock<HashMap<Vec<String>, Arc<Acl>>>,
}

/// Vault's policy-name rules, lower-cased.
pub fn normalize_name(name: &str) -> Result<String, CoreError> {
    let name = name.trim().to_lowercase();
    if name.is_empty() {
        return Err(CoreError::BadRequest("policy name must be provided".into()));
    }
    if name.contains('/') || name.contains("..") || name.len() > 512 {
        return Err(CoreError::BadRequest(format!(
            "invalid policy name {name:?}"
        )));
    }
    Ok(name)
}

impl PolicyStore {
    /// A store over the logical storage.
    pub fn new(store: Arc<LogicalStore>) -> Arc<PolicyStore> {
        Arc::new(PolicyStore {
            store,
            policies: RwLock::new(HashMap::new()),
            acls: RwLock::new(HashMap::new()),
        })
    }

    /// Drop caches after `key` changed.
    pub fn invalidate_key(&self, key: &str) {
        if let Some(name) = key.strip_prefix(POLICY_PREFIX) {
            if let Ok(mut p) = self.policies.write() {
                p.remove(name);
            }
            if let Ok(mut a) = self.acls.write() {
                a.clear();
            }
        }
    }

    /// A policy by name (`default` falls back to the built-in text).
    pub fn get(&self, name: &str) -> Result<Option<Arc<Policy>>, CoreError> {
        if let Some(p) = self.policies.read().ok().and_then(|m| m.get(name).cloned()) {
            return Ok(Some(p));
        }
        let stored: Option<StoredPolicy> =
            self.store.get_json(&format!("{POLICY_PREFIX}{name}"))?;
        let policy = match stored {
            Some(s) => parse(&s.name, &s.policy).map_err(|e| {
                CoreError::Internal(format!("stored policy {name} does not parse: {e}"))
            })?,
            None if name == DEFAULT_POLICY_NAME => default_policy(),
            None if name == crate::wrapping::WRAPPING_POLICY => {
                parse(name, crate::wrapping::WRAPPING_POLICY_TEXT)
                    .map_err(|e| CoreError::Internal(format!("built-in policy: {e}")))?
            }
            None => return Ok(None),
        };
        let policy = Arc::new(policy);
        if let Ok(mut m) = self.policies.write() {
            m.insert(name.to_string(), policy.clone());
        }
        Ok(Some(policy))
    }

    /// Create or replace a policy (HCL or JSON text). `root` cannot be written.
    pub async fn put(&self, name: &str, text: &str) -> Result<u64, CoreError> {
        let name = normalize_name(name)?;
        if name == ROOT_POLICY {
            return Err(CoreError::BadRequest(
                "cannot update \"root\" policy".into(),
            ));
        }
        let parsed = parse(&name, text)
            .map_err(|e| CoreError::BadRequest(format!("failed to parse policy: {e}")))?;
        let index = self
            .store
            .put_json(
                &format!("{POLICY_PREFIX}{name}"),
                &StoredPolicy {
                    name: name.clone(),
                    policy: text.to_string(),
                },
            )
            .await?;
        self.invalidate_key(&format!("{POLICY_PREFIX}{name}"));
        if let Ok(mut m) = self.policies.write() {
            m.insert(name, Arc::new(parsed));
        }
        Ok(index)
    }

    /// Delete a policy. `root` and `default` cannot be deleted.
    pub async fn delete(&self, name: &str) -> Result<u64, CoreError> {
        let name = normalize_name(name)?;
        if name == ROOT_POLICY || name == DEFAULT_POLICY_NAME {
            return Err(CoreError::BadRequest(format!(
                "cannot delete \"{name}\" policy"
            )));
        }
        let index = self.store.delete(&format!("{POLICY_PREFIX}{name}")).await?;
        self.invalidate_key(&format!("{POLICY_PREFIX}{name}"));
        Ok(index)
    }

    /// Names of all ACL policies (`default` and `root` included, as Vault lists them).
    pub fn list(&self) -> Result<Vec<String>, CoreError> {
        let mut names = self.store.list(POLICY_PREFIX)?;
        names.retain(|n| !n.ends_with('/'));
        for builtin in [DEFAULT_POLICY_NAME, ROOT_POLICY] {
            if !names.iter().any(|n| n == builtin) {
                names.push(builtin.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    /// The raw text of a policy (`root` has none).
    pub fn text(&self, name: &str) -> Result<Option<String>, CoreError> {
        let name = normalize_name(name)?;
        if name == ROOT_POLICY {
            return Ok(Some(String::new()));
        }
        Ok(self.get(&name)?.map(|p| p.raw.clone()))
    }

    /// The compiled ACL of a set of policy names (cached). Unknown names are skipped,
    /// as in Vault; `root` anywhere gives the root ACL.
    pub fn acl(&self, names: &[String]) -> Result<Arc<Acl>, CoreError> {
        let mut key: Vec<String> = names.to_vec();
        key.sort();
        key.dedup();
        if let Some(acl) = self.acls.read().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(acl);
        }
        let acl = if key.iter().any(|n| n == ROOT_POLICY) {
            Acl::root()
        } else {
            let mut policies = Vec::with_capacity(key.len());
            for name in &key {
                if let Some(p) = self.get(name)? {
                    policies.push(p);
                }
            }
            Acl::new(policies.iter().map(|p| p.as_ref()))
        };
        let acl = Arc::new(acl);
        if let Ok(mut m) = self.acls.write() {
            m.insert(key, acl.clone());
        }
        Ok(acl)
    }
}
