//! The seal ceremony: `sys/init`, `sys/unseal`, `sys/seal-status`, `sys/seal`,
//! `sys/health`, `sys/leader`, `sys/rekey/*` and `sys/generate-root/*`.
//!
//! These answer bare JSON (no envelope), so their shapes are plain serde structs that
//! mirror Vault's.

use std::sync::Mutex;

use base64::Engine;
use coffer_barrier::barrier::SealConfig;
use coffer_barrier::unseal::{decode_share, ShareCollector};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::token::{new_service_token, random_base62};
use crate::{Core, CoreError, VAULT_VERSION};

/// Progress of the three share-collecting ceremonies.
#[derive(Default)]
pub struct SealState {
    unseal: Mutex<Option<ShareCollector>>,
    rekey: Mutex<Option<RekeyAttempt>>,
    generate_root: Mutex<Option<GenerateRootAttempt>>,
    active_since: Mutex<Option<chrono::DateTime<chrono::Utc>>>,
}

struct RekeyAttempt {
    shares: u8,
    threshold: u8,
    collector: ShareCollector,
}

struct GenerateRootAttempt {
    otp: Zeroizing<String>,
    collector: ShareCollector,
}

/// `PUT sys/init` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitRequest {
    /// Number of shares.
    #[serde(default)]
    pub secret_shares: u32,
    /// Threshold.
    #[serde(default)]
    pub secret_threshold: u32,
    /// PGP keys to encrypt shares with (not supported: refused if non-empty).
    #[serde(default)]
    pub pgp_keys: Option<Vec<String>>,
    /// PGP key for the root token (not supported: refused if non-empty).
    #[serde(default)]
    pub root_token_pgp_key: Option<String>,
    /// Auto-unseal recovery shares (ignored for shamir seals, as Vault does).
    #[serde(default)]
    pub recovery_shares: Option<u32>,
    /// Auto-unseal recovery threshold (ignored for shamir seals).
    #[serde(default)]
    pub recovery_threshold: Option<u32>,
    /// Auto-unseal recovery PGP keys.
    #[serde(default)]
    pub recovery_pgp_keys: Option<Vec<String>>,
    /// Stored shares (auto-unseal only).
    #[serde(default)]
    pub stored_shares: Option<u32>,
}

/// `PUT sys/init` answer.
#[derive(Debug, Serialize)]
pub struct InitResponse {
    /// Shares, hex.
    pub keys: Vec<String>,
    /// Shares, base64.
    pub keys_base64: Vec<String>,
    /// Recovery keys (empty for shamir).
    pub recovery_keys: Vec<String>,
    /// Recovery keys base64 (empty for shamir).
    pub recovery_keys_base64: Vec<String>,
    /// The initial root token.
    pub root_token: String,
}

/// `sys/seal-status` (also the answer to `sys/unseal`).
#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct SealStatus {
    #[serde(rename = "type")]
    pub kind: String,
    pub initialized: bool,
    pub sealed: bool,
    pub t: u32,
    pub n: u32,
    pub progress: u32,
    pub nonce: String,
    pub version: String,
    pub build_date: String,
    pub migration: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    pub recovery_seal: bool,
    pub storage_type: String,
}

/// `sys/health` body and the status code to answer with.
#[derive(Debug, Serialize)]
pub struct HealthStatus {
    pub initialized: bool,
    pub sealed: bool,
    pub standby: bool,
    pub performance_standby: bool,
    pub replication_performance_mode: String,
    pub replication_dr_mode: String,
    pub server_time_utc: i64,
    pub version: String,
    pub enterprise: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    pub echo_duration_ms: i64,
    pub clock_skew_ms: i64,
}

/// The state `sys/health` chooses its status code from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    /// Active node.
    Active,
    /// Unsealed standby.
    Standby,
    /// Sealed.
    Sealed,
    /// Not initialized.
    Uninitialized,
}

/// `sys/leader`.
#[derive(Debug, Serialize)]
pub struct LeaderStatus {
    pub ha_enabled: bool,
    pub is_self: bool,
    pub active_time: String,
    pub leader_address: String,
    pub leader_cluster_address: String,
    pub performance_standby: bool,
    pub performance_standby_last_remote_wal: u64,
    pub raft_committed_index: u64,
    pub raft_applied_index: u64,
}

/// `sys/rekey/init` status and `sys/rekey/update` progress/result.
#[derive(Debug, Serialize, Default)]
pub struct RekeyStatus {
    pub nonce: String,
    pub started: bool,
    pub t: u32,
    pub n: u32,
    pub progress: u32,
    pub required: u32,
    pub pgp_fingerprints: Option<Vec<String>>,
    pub backup: bool,
    pub verification_required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub complete: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys_base64: Option<Vec<String>>,
}

/// `sys/generate-root/*` status.
#[derive(Debug, Serialize, Default)]
pub struct GenerateRootStatus {
    pub nonce: String,
    pub started: bool,
    pub progress: u32,
    pub required: u32,
    pub complete: bool,
    pub encoded_token: String,
    pub encoded_root_token: String,
    pub pgp_fingerprint: String,
    pub otp: String,
    pub otp_length: u32,
}

/// Length of the generate-root OTP: the length of an `hvs.` token.
pub const OTP_LENGTH: usize = 28;

fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>, CoreError> {
    m.lock()
        .map_err(|_| CoreError::Internal("seal state lock poisoned".into()))
}

fn to_u8(n: u32, what: &str) -> Result<u8, CoreError> {
    u8::try_from(n).map_err(|_| CoreError::BadRequest(format!("{what} must be at most 255")))
}

impl Core {
    fn seal_config(&self) -> Result<Option<SealConfig>, CoreError> {
        Ok(self.barrier.seal_config()?)
    }

    /// `GET sys/init`.
    pub fn is_initialized(&self) -> Result<bool, CoreError> {
        Ok(self.barrier.is_initialized()?)
    }

    /// `PUT sys/init`: create the key hierarchy and the root token. The node stays
    /// sealed afterwards, as with Vault.
    pub async fn init(&self, req: InitRequest) -> Result<InitResponse, CoreError> {
        if req.pgp_keys.as_ref().is_some_and(|k| !k.is_empty())
            || req
                .root_token_pgp_key
                .as_ref()
                .is_some_and(|k| !k.is_empty())
        {
            return Err(CoreError::BadRequest(
                "PGP-encrypted key shares are not supported by coffer".into(),
            ));
        }
        let shares = to_u8(req.secret_shares, "secret_shares")?;
        let threshold = to_u8(req.secret_threshold, "secret_threshold")?;
        let _guard = self.transition.lock().await;
        if self.join_pending() {
            return Err(CoreError::BadRequest(
                "a raft join is in progress on this node; it cannot be initialized".into(),
            ));
        }
        self.cluster.bootstrap().await?;
        let (unseal_key, key_shares) = self.barrier.initialize(shares, threshold).await?;
        self.barrier.unseal(&unseal_key)?;
        let root_token = new_service_token();
        let result = async {
            self.post_unseal().await?;
            self.unsealed()?.tokens.create_root(&root_token).await?;
            self.ensure_cluster_pki(&*self.unsealed()?).await?;
            Ok::<(), CoreError>(())
        }
        .await;
        self.pre_seal();
        result?;
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(InitResponse {
            keys: key_shares.iter().map(hex::encode).collect(),
            keys_base64: key_shares.iter().map(|k| b64.encode(k)).collect(),
            recovery_keys: Vec::new(),
            recovery_keys_base64: Vec::new(),
            root_token,
        })
    }

    /// Dev mode: initialise with one share and unseal at once; `root_token` may be
    /// chosen (`-dev-root-token-id`). Returns the unseal key (base64) and root token.
    pub async fn init_dev(
        &self,
        root_token: Option<String>,
    ) -> Result<(String, String), CoreError> {
        let _guard = self.transition.lock().await;
        self.cluster.bootstrap().await?;
        let (unseal_key, _) = self.barrier.initialize(1, 1).await?;
        self.barrier.unseal(&unseal_key)?;
        self.cluster.set_sealed(false);
        self.post_unseal().await?;
        let token = root_token.unwrap_or_else(new_service_token);
        self.unsealed()?.tokens.create_root(&token).await?;
        self.mark_active();
        Ok((
            base64::engine::general_purpose::STANDARD.encode(&unseal_key[..]),
            token,
        ))
    }

    fn mark_active(&self) {
        if let Ok(mut a) = self.seal.active_since.lock() {
            *a = Some(chrono::Utc::now());
        }
    }

    /// `GET sys/seal-status`.
    pub fn seal_status(&self) -> Result<SealStatus, CoreError> {
        // A node joining a cluster reports (and collects shares for) the leader's config.
        let config = self
            .seal_config()?
            .or_else(|| self.pending_join_seal_config());
        let sealed = self.is_sealed();
        let progress = lock(&self.seal.unseal)?;
        let (t, n) = config
            .as_ref()
            .map(|c| (c.secret_threshold as u32, c.secret_shares as u32))
            .unwrap_or((0, 0));
        Ok(SealStatus {
            kind: "shamir".into(),
            initialized: config.is_some(),
            sealed,
            t,
            n,
            progress: progress.as_ref().map(|p| p.progress() as u32).unwrap_or(0),
            nonce: progress
                .as_ref()
                .map(|p| p.nonce().to_string())
                .unwrap_or_default(),
            version: VAULT_VERSION.into(),
            build_date: "2024-01-01T00:00:00Z".into(),
            migration: false,
            cluster_name: (!sealed).then(|| self.config.cluster_name.clone()),
            cluster_id: if sealed {
                None
            } else {
                config.as_ref().map(|c| cluster_id(&c.barrier_id))
            },
            recovery_seal: false,
            storage_type: self.cluster.storage_type(),
        })
    }

    /// `PUT sys/unseal`: add one share (hex or base64), or `reset` the progress.
    pub async fn unseal(&self, key: Option<&str>, reset: bool) -> Result<SealStatus, CoreError> {
        let (config, joining) = match self.seal_config()? {
            Some(c) => (c, false),
            None => (
                self.pending_join_seal_config()
                    .ok_or(CoreError::NotInitialized)?,
                true,
            ),
        };
        if reset {
            *lock(&self.seal.unseal)? = None;
            return self.seal_status();
        }
        let Some(key) = key else {
            return Err(CoreError::BadRequest(
                "'key' must be specified in request body as JSON, or 'reset' set to true".into(),
            ));
        };
        if !self.is_sealed() {
            return self.seal_status();
        }
        let share = decode_share(key)?;
        let combined = {
            let mut progress = lock(&self.seal.unseal)?;
            let collector = progress.get_or_insert_with(|| {
                ShareCollector::new(
                    config.secret_shares,
                    config.secret_threshold,
                    crate::new_uuid(),
                )
            });
            let result = collector.add(share);
            if collector.progress() == 0 {
                *progress = None;
            }
            result?
        };
        if let Some(unseal_key) = combined {
            let _guard = self.transition.lock().await;
            if joining {
                self.complete_pending_join(&unseal_key).await?;
            } else if self.is_sealed() {
                self.barrier.unseal(&unseal_key)?;
                self.cluster.set_sealed(false);
                self.cluster
                    .await_leadership(std::time::Duration::from_secs(3))
                    .await;
                if let Err(err) = self.post_unseal().await {
                    self.pre_seal();
                    return Err(err);
                }
                self.mark_active();
                self.after_unseal().await;
                tracing::info!("vault is unsealed");
            }
        }
        self.seal_status()
    }

    /// Seal now (authorization is checked by the caller's request pipeline).
    pub async fn seal_now(&self) -> Result<(), CoreError> {
        let _guard = self.transition.lock().await;
        self.pre_seal();
        *lock(&self.seal.unseal)? = None;
        tracing::info!("vault is sealed");
        Ok(())
    }

    /// Which health state this node is in.
    pub fn health_state(&self) -> Result<HealthState, CoreError> {
        Ok(if !self.is_initialized()? {
            HealthState::Uninitialized
        } else if self.is_sealed() {
            HealthState::Sealed
        } else if !self.cluster.is_leader() {
            HealthState::Standby
        } else {
            HealthState::Active
        })
    }

    /// `sys/health` body.
    pub fn health(&self) -> Result<(HealthState, HealthStatus), CoreError> {
        let state = self.health_state()?;
        let config = self.seal_config()?;
        let unsealed = matches!(state, HealthState::Active | HealthState::Standby);
        Ok((
            state,
            HealthStatus {
                initialized: state != HealthState::Uninitialized,
                sealed: !unsealed && state != HealthState::Uninitialized,
                standby: state == HealthState::Standby,
                performance_standby: false,
                replication_performance_mode: "disabled".into(),
                replication_dr_mode: "disabled".into(),
                server_time_utc: crate::now_unix(),
                version: VAULT_VERSION.into(),
                enterprise: false,
                cluster_name: unsealed.then(|| self.config.cluster_name.clone()),
                cluster_id: if unsealed {
                    config.map(|c| cluster_id(&c.barrier_id))
                } else {
                    None
                },
                echo_duration_ms: 0,
                clock_skew_ms: 0,
            },
        ))
    }

    /// `sys/leader`.
    pub fn leader(&self) -> Result<LeaderStatus, CoreError> {
        if self.is_sealed() {
            return Err(CoreError::Sealed);
        }
        let is_self = self.cluster.is_leader();
        let active = lock(&self.seal.active_since)?;
        Ok(LeaderStatus {
            ha_enabled: true,
            is_self,
            active_time: if is_self {
                active
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
                    .unwrap_or_default()
            } else {
                "0001-01-01T00:00:00Z".into()
            },
            leader_address: self.cluster.leader_api_addr().unwrap_or_default(),
            leader_cluster_address: self.cluster.leader_cluster_addr().unwrap_or_default(),
            performance_standby: false,
            performance_standby_last_remote_wal: 0,
            raft_committed_index: self.cluster.committed_index(),
            raft_applied_index: self.cluster.applied_index(),
        })
    }

    fn rekey_status_of(&self, attempt: Option<&RekeyAttempt>) -> Result<RekeyStatus, CoreError> {
        let config = self.seal_config()?.ok_or(CoreError::NotInitialized)?;
        Ok(match attempt {
            Some(a) => RekeyStatus {
                nonce: a.collector.nonce().to_string(),
                started: true,
                t: a.threshold as u32,
                n: a.shares as u32,
                progress: a.collector.progress() as u32,
                required: config.secret_threshold as u32,
                ..Default::default()
            },
            None => RekeyStatus {
                required: config.secret_threshold as u32,
                ..Default::default()
            },
        })
    }

    /// `GET sys/rekey/init`.
    pub fn rekey_status(&self) -> Result<RekeyStatus, CoreError> {
        let attempt = lock(&self.seal.rekey)?;
        self.rekey_status_of(attempt.as_ref())
    }

    /// `PUT sys/rekey/init`: start a rekey to `shares`/`threshold`.
    pub fn rekey_init(
        &self,
        shares: u32,
        threshold: u32,
        require_verification: bool,
    ) -> Result<RekeyStatus, CoreError> {
        if self.is_sealed() {
            return Err(CoreError::Sealed);
        }
        if require_verification {
            return Err(CoreError::BadRequest(
                "rekey verification is not supported by coffer".into(),
            ));
        }
        let shares = to_u8(shares, "secret_shares")?;
        let threshold = to_u8(threshold, "secret_threshold")?;
        coffer_barrier::barrier::validate_split(shares, threshold)?;
        let config = self.seal_config()?.ok_or(CoreError::NotInitialized)?;
        let mut attempt = lock(&self.seal.rekey)?;
        if attempt.is_some() {
            return Err(CoreError::BadRequest("rekey already in progress".into()));
        }
        *attempt = Some(RekeyAttempt {
            shares,
            threshold,
            collector: ShareCollector::new(
                config.secret_shares,
                config.secret_threshold,
                crate::new_uuid(),
            ),
        });
        self.rekey_status_of(attempt.as_ref())
    }

    /// `DELETE sys/rekey/init`.
    pub fn rekey_cancel(&self) -> Result<(), CoreError> {
        *lock(&self.seal.rekey)? = None;
        Ok(())
    }

    /// `PUT sys/rekey/update`: add one current share; at the threshold the unseal key
    /// is replaced and the new shares are returned.
    pub async fn rekey_update(&self, key: &str, nonce: &str) -> Result<RekeyStatus, CoreError> {
        if self.is_sealed() {
            return Err(CoreError::Sealed);
        }
        let share = decode_share(key)?;
        let (combined, shares, threshold) = {
            let mut guard = lock(&self.seal.rekey)?;
            let attempt = guard
                .as_mut()
                .ok_or_else(|| CoreError::BadRequest("no rekey in progress".into()))?;
            if attempt.collector.nonce() != nonce {
                return Err(CoreError::BadRequest(format!(
                    "incorrect nonce supplied; nonce for this rekey operation is {}",
                    attempt.collector.nonce()
                )));
            }
            let result = attempt.collector.add(share)?;
            match result {
                None => return self.rekey_status_of(Some(attempt)),
                Some(key) => {
                    let (s, t) = (attempt.shares, attempt.threshold);
                    *guard = None;
                    (key, s, t)
                }
            }
        };
        let new_shares = self.barrier.rekey(&combined, shares, threshold).await?;
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(RekeyStatus {
            nonce: nonce.to_string(),
            started: true,
            t: threshold as u32,
            n: shares as u32,
            complete: Some(true),
            keys: Some(new_shares.iter().map(hex::encode).collect()),
            keys_base64: Some(new_shares.iter().map(|k| b64.encode(k)).collect()),
            ..Default::default()
        })
    }

    fn generate_root_status_of(
        &self,
        attempt: Option<&GenerateRootAttempt>,
    ) -> Result<GenerateRootStatus, CoreError> {
        let config = self.seal_config()?.ok_or(CoreError::NotInitialized)?;
        Ok(GenerateRootStatus {
            nonce: attempt
                .map(|a| a.collector.nonce().to_string())
                .unwrap_or_default(),
            started: attempt.is_some(),
            progress: attempt.map(|a| a.collector.progress() as u32).unwrap_or(0),
            required: config.secret_threshold as u32,
            otp_length: OTP_LENGTH as u32,
            ..Default::default()
        })
    }

    /// `GET sys/generate-root/attempt`.
    pub fn generate_root_status(&self) -> Result<GenerateRootStatus, CoreError> {
        let attempt = lock(&self.seal.generate_root)?;
        self.generate_root_status_of(attempt.as_ref())
    }

    /// `PUT sys/generate-root/attempt`: start, with a caller-supplied OTP or one we
    /// generate and return (Vault >= 1.10 behaviour).
    pub fn generate_root_init(
        &self,
        otp: Option<&str>,
        pgp_key: Option<&str>,
    ) -> Result<GenerateRootStatus, CoreError> {
        if pgp_key.is_some_and(|k| !k.is_empty()) {
            return Err(CoreError::BadRequest(
                "PGP-encrypted root tokens are not supported by coffer".into(),
            ));
        }
        let config = self.seal_config()?.ok_or(CoreError::NotInitialized)?;
        let mut guard = lock(&self.seal.generate_root)?;
        if guard.is_some() {
            return Err(CoreError::BadRequest(
                "root generation already in progress".into(),
            ));
        }
        let (otp, generated) = match otp.filter(|o| !o.is_empty()) {
            Some(o) if o.len() == OTP_LENGTH => (o.to_string(), false),
            Some(_) => {
                return Err(CoreError::BadRequest(format!(
                    "OTP string must be {OTP_LENGTH} characters long"
                )))
            }
            None => (random_base62(OTP_LENGTH), true),
        };
        *guard = Some(GenerateRootAttempt {
            otp: Zeroizing::new(otp.clone()),
            collector: ShareCollector::new(
                config.secret_shares,
                config.secret_threshold,
                crate::new_uuid(),
            ),
        });
        let mut status = self.generate_root_status_of(guard.as_ref())?;
        if generated {
            status.otp = otp;
        }
        Ok(status)
    }

    /// `DELETE sys/generate-root/attempt`.
    pub fn generate_root_cancel(&self) -> Result<(), CoreError> {
        *lock(&self.seal.generate_root)? = None;
        Ok(())
    }

    /// `PUT sys/generate-root/update`: add a share; at the threshold a new root token is
    /// created and returned as base64(token XOR otp), unpadded.
    pub async fn generate_root_update(
        &self,
        key: &str,
        nonce: &str,
    ) -> Result<GenerateRootStatus, CoreError> {
        let share = decode_share(key)?;
        let (combined, otp) = {
            let mut guard = lock(&self.seal.generate_root)?;
            let attempt = guard
                .as_mut()
                .ok_or_else(|| CoreError::BadRequest("no root generation in progress".into()))?;
            if attempt.collector.nonce() != nonce {
                return Err(CoreError::BadRequest(format!(
                    "incorrect nonce supplied; nonce for this root generation operation is {}",
                    attempt.collector.nonce()
                )));
            }
            match attempt.collector.add(share)? {
                None => return self.generate_root_status_of(Some(attempt)),
                Some(key) => {
                    let otp = attempt.otp.clone();
                    *guard = None;
                    (key, otp)
                }
            }
        };
        self.barrier.verify_unseal_key(&combined)?;
        let state = self.unsealed()?;
        let token = Zeroizing::new(new_service_token());
        state.tokens.create_root(&token).await?;
        let xored: Vec<u8> = token.bytes().zip(otp.bytes()).map(|(a, b)| a ^ b).collect();
        let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(xored);
        let config = self.seal_config()?.ok_or(CoreError::NotInitialized)?;
        Ok(GenerateRootStatus {
            nonce: nonce.to_string(),
            started: true,
            progress: config.secret_threshold as u32,
            required: config.secret_threshold as u32,
            complete: true,
            encoded_token: encoded.clone(),
            encoded_root_token: encoded,
            otp_length: OTP_LENGTH as u32,
            ..Default::default()
        })
    }
}

/// A stable cluster id derived from the barrier id (UUID-shaped, not secret).
fn cluster_id(barrier_id: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, barrier_id.as_bytes());
    let h = hex::encode(&digest.as_ref()[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
