//! Collecting key shares: the progress of an unseal, rekey or generate-root attempt.
//!
//! Shares arrive one per request (hex or base64). A malformed share is refused without
//! touching the progress; a repeated share is ignored; when the threshold is reached the
//! shares are combined and the progress is cleared, whatever the outcome.

use base64::Engine;
use zeroize::Zeroizing;

use crate::barrier::{combine_shares, BarrierError};

/// Decode a key share given in hex or standard base64 (Vault accepts both).
pub fn decode_share(text: &str) -> Result<Zeroizing<Vec<u8>>, BarrierError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(BarrierError::Invalid("missing key".into()));
    }
    if let Ok(bytes) = hex::decode(text) {
        return Ok(Zeroizing::new(bytes));
    }
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map(Zeroizing::new)
        .map_err(|_| BarrierError::Invalid("'key' must be a valid hex or base64 string".into()))
}

/// Shares collected so far for one attempt.
pub struct ShareCollector {
    threshold: usize,
    share_len: usize,
    nonce: String,
    shares: Vec<Zeroizing<Vec<u8>>>,
}

impl ShareCollector {
    /// A new attempt needing `threshold` shares out of `shares` (which fixes the length
    /// of a share: the 32-byte key, plus one x-coordinate byte when split).
    pub fn new(shares: u8, threshold: u8, nonce: String) -> ShareCollector {
        ShareCollector {
            threshold: threshold.max(1) as usize,
            share_len: if shares > 1 { 33 } else { 32 },
            nonce,
            shares: Vec::new(),
        }
    }

    /// Shares received so far.
    pub fn progress(&self) -> usize {
        self.shares.len()
    }

    /// Shares needed.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// The attempt's nonce.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// Add a share. `Ok(Some(key))` when the threshold is reached (the progress is then
    /// cleared); `Ok(None)` while more are needed. A malformed share is an error that
    /// leaves the progress as it was.
    pub fn add(
        &mut self,
        share: Zeroizing<Vec<u8>>,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, BarrierError> {
        if share.len() != self.share_len {
            return Err(BarrierError::Invalid(format!(
                "invalid key: a key share is {} bytes, got {}",
                self.share_len,
                share.len()
            )));
        }
        if self.share_len == 33 && share[32] == 0 {
            return Err(BarrierError::Invalid(
                "invalid key: bad share coordinate".into(),
            ));
        }
        if self.shares.iter().any(|s| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                s.as_slice(),
                share.as_slice(),
            ))
        }) {
            return Ok(None);
        }
        if self.share_len == 33 && self.shares.iter().any(|s| s[32] == share[32]) {
            return Err(BarrierError::Invalid(
                "invalid key: two different shares with the same coordinate".into(),
            ));
        }
        self.shares.push(share);
        if self.shares.len() < self.threshold {
            return Ok(None);
        }
        let shares = std::mem::take(&mut self.shares);
        combine_shares(&shares).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_hex_and_base64() {
        let bytes = vec![7u8; 33];
        let hex_form = hex::encode(&bytes);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        assert_eq!(*decode_share(&hex_form).unwrap(), bytes);
        assert_eq!(*decode_share(&b64).unwrap(), bytes);
        assert!(decode_share("not a key!").is_err());
        assert!(decode_share("").is_err());
    }

    #[test]
    fn malformed_share_leaves_progress() {
        let mut c = ShareCollector::new(5, 3, "n".into());
        let mut s1 = vec![1u8; 33];
        s1[32] = 1;
        assert!(c.add(Zeroizing::new(s1.clone())).unwrap().is_none());
        assert!(c.add(Zeroizing::new(vec![1u8; 10])).is_err());
        assert_eq!(c.progress(), 1);
        // duplicate ignored
        assert!(c.add(Zeroizing::new(s1)).unwrap().is_none());
        assert_eq!(c.progress(), 1);
    }

    #[test]
    fn threshold_combines_split_key() {
        let key = vec![42u8; 32];
        let shares = crate::shamir::split(&key, 5, 3).unwrap();
        let mut c = ShareCollector::new(5, 3, "n".into());
        assert!(c.add(shares[4].clone()).unwrap().is_none());
        assert!(c.add(shares[0].clone()).unwrap().is_none());
        let got = c.add(shares[2].clone()).unwrap().unwrap();
        assert_eq!(*got, key);
        assert_eq!(c.progress(), 0);
    }
}
