//! Password hashing: argon2id (RFC 9106) with a fresh 16-byte random salt per hash,
//! stored as a PHC string (`$argon2id$v=19$m=…,t=…,p=…$<salt>$<hash>`, unpadded
//! standard base64) so the parameters travel with every hash and can be raised later
//! without breaking stored users.
//!
//! Verification recomputes the hash with the stored salt and parameters and compares
//! the outputs in constant time ([`subtle`]). Unknown users are checked against a dummy
//! hash with the current parameters, so a login costs the same whether or not the user
//! exists. Both hashing and verifying are CPU- and memory-heavy by design; the async
//! wrappers run them on tokio's blocking pool behind a process-wide semaphore (one
//! permit per core), so a burst of logins queues instead of exhausting memory.
//!
//! Plaintext passwords live in [`Zeroizing`] buffers on their way into the hasher;
//! argon2 zeroizes its own working memory (its `zeroize` feature).

use std::sync::OnceLock;

use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use coffer_sdk::SdkError;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

/// Salt length in bytes (the argon2 recommendation).
pub const SALT_LEN: usize = 16;
/// Hash output length in bytes.
pub const OUTPUT_LEN: usize = 32;

/// argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Passes over the memory.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

/// What new hashes use: 19 MiB, 2 passes, 1 lane (OWASP's first argon2id
/// recommendation, also the argon2 crate's default). About 18.5 ms per login in a release
/// build on this project's 2-core dev machine; see the crate docs.
pub const DEFAULT_PARAMS: HashParams = HashParams {
    m_cost: 19 * 1024,
    t_cost: 2,
    p_cost: 1,
};

/// Largest costs accepted from a stored hash (a corrupted or hostile entry must not make
/// one login allocate gigabytes).
const MAX_M_COST: u32 = 256 * 1024;
const MAX_T_COST: u32 = 64;
const MAX_P_COST: u32 = 16;

/// A parsed argon2id PHC string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordHash {
    params: HashParams,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

fn internal(what: &str) -> SdkError {
    SdkError::Internal(what.to_string())
}

fn argon2_for(params: HashParams, output_len: usize) -> Result<Argon2<'static>, SdkError> {
    let params = Params::new(
        params.m_cost,
        params.t_cost,
        params.p_cost,
        Some(output_len),
    )
    .map_err(|_| internal("invalid argon2 parameters"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn random_salt() -> Result<Vec<u8>, SdkError> {
    let mut salt = vec![0u8; SALT_LEN];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| internal("the system random source failed"))?;
    Ok(salt)
}

impl PasswordHash {
    /// Hash `password` with a fresh random salt (slow: call from a blocking thread).
    pub fn create(password: &[u8], params: HashParams) -> Result<PasswordHash, SdkError> {
        let salt = random_salt()?;
        let mut hash = vec![0u8; OUTPUT_LEN];
        argon2_for(params, OUTPUT_LEN)?
            .hash_password_into(password, &salt, &mut hash)
            .map_err(|_| internal("password hashing failed"))?;
        Ok(PasswordHash { params, salt, hash })
    }

    /// A hash no password matches in practice, with `params` and a random salt: verifying
    /// against it costs exactly what verifying a real hash with `params` costs.
    pub fn dummy(params: HashParams) -> Result<PasswordHash, SdkError> {
        Ok(PasswordHash {
            params,
            salt: random_salt()?,
            hash: vec![0u8; OUTPUT_LEN],
        })
    }

    /// Whether `password` hashes to this (slow: call from a blocking thread). The final
    /// comparison is constant-time.
    pub fn verify(&self, password: &[u8]) -> bool {
        let Ok(argon2) = argon2_for(self.params, self.hash.len()) else {
            return false;
        };
        let mut computed = Zeroizing::new(vec![0u8; self.hash.len()]);
        if argon2
            .hash_password_into(password, &self.salt, &mut computed)
            .is_err()
        {
            return false;
        }
        bool::from(computed.as_slice().ct_eq(&self.hash))
    }

    /// The cost parameters of this hash.
    pub fn params(&self) -> HashParams {
        self.params
    }

    /// The PHC string form.
    pub fn to_phc(&self) -> String {
        format!(
            "$argon2id$v=19$m={},t={},p={}${}${}",
            self.params.m_cost,
            self.params.t_cost,
            self.params.p_cost,
            STANDARD_NO_PAD.encode(&self.salt),
            STANDARD_NO_PAD.encode(&self.hash)
        )
    }

    /// Parse a PHC string written by [`PasswordHash::to_phc`] (argon2id, version 19 only).
    pub fn parse(phc: &str) -> Option<PasswordHash> {
        let mut parts = phc.split('$');
        if !parts.next()?.is_empty() || parts.next()? != "argon2id" || parts.next()? != "v=19" {
            return None;
        }
        let (mut m, mut t, mut p) = (None, None, None);
        for pair in parts.next()?.split(',') {
            let (key, value) = pair.split_once('=')?;
            let value: u32 = value.parse().ok()?;
            match key {
                "m" => m = Some(value),
                "t" => t = Some(value),
                "p" => p = Some(value),
                _ => return None,
            }
        }
        let params = HashParams {
            m_cost: m.filter(|m| *m <= MAX_M_COST)?,
            t_cost: t.filter(|t| (1..=MAX_T_COST).contains(t))?,
            p_cost: p.filter(|p| (1..=MAX_P_COST).contains(p))?,
        };
        let salt = STANDARD_NO_PAD.decode(parts.next()?).ok()?;
        let hash = STANDARD_NO_PAD.decode(parts.next()?).ok()?;
        if parts.next().is_some() || salt.len() < 8 || hash.len() < 4 {
            return None;
        }
        argon2_for(params, hash.len()).ok()?;
        Some(PasswordHash { params, salt, hash })
    }
}

/// Limits concurrent hash computations across all userpass mounts of the process.
fn permits() -> &'static Semaphore {
    static PERMITS: OnceLock<Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Semaphore::new(cores.max(1))
    })
}

/// Run a slow hashing job on the blocking pool, behind the semaphore.
async fn blocking<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, SdkError> {
    let _permit = permits()
        .acquire()
        .await
        .map_err(|_| internal("password hashing is shutting down"))?;
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|_| internal("password hashing task failed"))
}

/// Hash `password` on the blocking pool.
pub async fn hash_async(
    password: Zeroizing<String>,
    params: HashParams,
) -> Result<PasswordHash, SdkError> {
    blocking(move || PasswordHash::create(password.as_bytes(), params)).await?
}

/// Verify `password` against `hash` on the blocking pool.
pub async fn verify_async(
    password: Zeroizing<String>,
    hash: PasswordHash,
) -> Result<bool, SdkError> {
    blocking(move || hash.verify(password.as_bytes())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: HashParams = HashParams {
        m_cost: 64,
        t_cost: 1,
        p_cost: 1,
    };

    #[test]
    fn round_trip_and_mismatch() {
        let hash = PasswordHash::create(b"hunter2", CHEAP).expect("hash");
        let phc = hash.to_phc();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        let parsed = PasswordHash::parse(&phc).expect("parses");
        assert_eq!(parsed, hash);
        assert!(parsed.verify(b"hunter2"));
        assert!(!parsed.verify(b"hunter3"));
        assert!(!parsed.verify(b""));
        // Same password, new salt, different hash.
        let again = PasswordHash::create(b"hunter2", CHEAP).expect("hash");
        assert_ne!(again.to_phc(), phc);
    }

    #[test]
    fn dummy_matches_nothing_and_has_the_given_params() {
        let dummy = PasswordHash::dummy(DEFAULT_PARAMS).expect("dummy");
        assert_eq!(dummy.params(), DEFAULT_PARAMS);
        let cheap = PasswordHash::dummy(CHEAP).expect("dummy");
        assert!(!cheap.verify(b""));
        assert!(!cheap.verify(b"anything"));
    }

    #[test]
    fn parse_rejects_garbage() {
        for bad in [
            "",
            "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
            "$argon2id$v=16$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
            "$argon2id$v=19$m=64,t=0,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
            "$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
            "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g$extra",
            "$argon2id$v=19$m=64,t=1,p=1$!!$aGFzaGhhc2g",
            "$argon2id$v=19$m=64,t=1$c2FsdHNhbHQ$aGFzaGhhc2g",
            "plaintext",
        ] {
            assert!(PasswordHash::parse(bad).is_none(), "{bad}");
        }
        assert!(
            PasswordHash::parse("$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g").is_some()
        );
    }
}
