//! Shamir secret sharing over GF(2^8), compatible in layout with Vault's `shamir` package.
//!
//! A secret of `n` bytes is split byte-wise: for every byte a random polynomial of degree
//! `threshold - 1` is drawn whose constant term is that byte, and each share holds the
//! polynomial values at the share's x coordinate. A share is `n + 1` bytes long: the `n`
//! y values, then one trailing byte holding the x coordinate (Vault's layout).
//!
//! Choices, all as in Vault:
//! - x coordinates are the first `parts` entries of a uniformly random permutation of
//!   `1..=255`, so they are distinct and never zero (an x of zero would be the secret).
//! - every non-constant coefficient, the leading one included, is a uniform random byte
//!   from the OS CSPRNG (`ring::rand::SystemRandom`). The leading coefficient may be zero:
//!   forcing it to be non-zero would bias the polynomial and leak information about the
//!   secret to `threshold - 1` shares (the flaw of RUSTSEC-2024-0398).
//! - the field is GF(2^8) with the AES polynomial x^8 + x^4 + x^3 + x + 1 (0x11b).
//!
//! Field arithmetic is constant-time: multiplication is shift-and-xor driven by masks
//! (no secret-indexed tables, no data-dependent branches), inversion is `a^254` by a
//! fixed square-and-multiply chain. Buffers holding coefficients are zeroized.

use ring::rand::{SecureRandom, SystemRandom};
use thiserror::Error;
use zeroize::Zeroizing;

/// The largest number of shares (x coordinates are the non-zero bytes).
pub const MAX_PARTS: usize = 255;

/// Errors from [`split`] and [`combine`]. They never carry share or secret bytes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ShamirError {
    /// The secret to split is empty.
    #[error("cannot split an empty secret")]
    EmptySecret,
    /// More than 255 shares were requested.
    #[error("parts must be at most {MAX_PARTS}, got {0}")]
    TooManyParts(usize),
    /// The threshold is below 2.
    #[error("threshold must be at least 2, got {0}")]
    ThresholdTooSmall(usize),
    /// The threshold exceeds the number of shares.
    #[error("threshold {threshold} exceeds parts {parts}")]
    ThresholdExceedsParts {
        /// Requested threshold.
        threshold: usize,
        /// Requested number of shares.
        parts: usize,
    },
    /// The system random number generator failed.
    #[error("system random number generator failed")]
    Random,
    /// Fewer than two shares were given to [`combine`].
    #[error("at least 2 shares are required, got {0}")]
    TooFewShares(usize),
    /// A share is shorter than two bytes (one y value and the x coordinate).
    #[error("shares must be at least 2 bytes long")]
    ShareTooShort,
    /// The shares do not all have the same length.
    #[error("all shares must have the same length")]
    ShareLengthMismatch,
    /// Two shares have the same x coordinate.
    #[error("duplicate share (x coordinate {0})")]
    DuplicateShare(u8),
    /// A share has the x coordinate zero, which `split` never produces.
    #[error("invalid share: x coordinate is zero")]
    ZeroXCoordinate,
}

/// Multiplies in GF(2^8) modulo 0x11b, in constant time.
fn gf_mul(a: u8, b: u8) -> u8 {
    let (mut a, mut b, mut r) = (a, b, 0u8);
    for _ in 0..8 {
        // 0xff when the low bit of b is set, else 0x00.
        r ^= a & (b & 1).wrapping_neg();
        // 0xff when the high bit of a is set: reduce by the low byte of 0x11b.
        let carry = (a >> 7).wrapping_neg();
        a = (a << 1) ^ (0x1b & carry);
        b >>= 1;
    }
    r
}

/// Multiplicative inverse in GF(2^8) as `a^254` (maps 0 to 0), in constant time.
fn gf_inv(a: u8) -> u8 {
    // 254 = 2 + 4 + ... + 128: square seven times, multiplying each power in.
    let (mut square, mut result) = (a, 1u8);
    for _ in 0..7 {
        square = gf_mul(square, square);
        result = gf_mul(result, square);
    }
    result
}

/// Returns a uniform value in `0..bound` (`1 <= bound <= 256`) by rejection sampling.
fn random_below(rng: &SystemRandom, bound: u32) -> Result<u32, ShamirError> {
    // Largest multiple of `bound` that fits in u32 arithmetic, to avoid modulo bias.
    let zone = u32::MAX - (u32::MAX % bound);
    loop {
        let mut buf = [0u8; 4];
        rng.fill(&mut buf).map_err(|_| ShamirError::Random)?;
        let value = u32::from_be_bytes(buf);
        if value < zone {
            return Ok(value % bound);
        }
    }
}

/// Splits `secret` into `parts` shares, any `threshold` of which recover it.
///
/// Requires a non-empty secret and `2 <= threshold <= parts <= 255`. Each share is
/// `secret.len() + 1` bytes: the y values followed by the x coordinate.
pub fn split(
    secret: &[u8],
    parts: usize,
    threshold: usize,
) -> Result<Vec<Zeroizing<Vec<u8>>>, ShamirError> {
    if secret.is_empty() {
        return Err(ShamirError::EmptySecret);
    }
    if parts > MAX_PARTS {
        return Err(ShamirError::TooManyParts(parts));
    }
    if threshold < 2 {
        return Err(ShamirError::ThresholdTooSmall(threshold));
    }
    if threshold > parts {
        return Err(ShamirError::ThresholdExceedsParts { threshold, parts });
    }
    let rng = SystemRandom::new();

    // Fisher-Yates shuffle of 1..=255; the first `parts` entries are the x coordinates.
    let mut xs: Vec<u8> = (1..=u8::MAX).collect();
    for i in (1..xs.len() as u32).rev() {
        let j = random_below(&rng, i + 1)?;
        xs.swap(i as usize, j as usize);
    }
    xs.truncate(parts);

    // coefficients[k * degree .. (k + 1) * degree] are the coefficients of x^1..x^degree
    // of the polynomial for secret byte k.
    let degree = threshold - 1;
    let mut coefficients = Zeroizing::new(vec![0u8; secret.len() * degree]);
    rng.fill(&mut coefficients)
        .map_err(|_| ShamirError::Random)?;

    let mut shares = Vec::with_capacity(parts);
    for &x in &xs {
        let mut share = Zeroizing::new(Vec::with_capacity(secret.len() + 1));
        for (k, &byte) in secret.iter().enumerate() {
            let coeffs = &coefficients[k * degree..(k + 1) * degree];
            // Horner's rule from the highest coefficient down to the secret byte.
            let mut y = 0u8;
            for &c in coeffs.iter().rev() {
                y = gf_mul(y, x) ^ c;
            }
            share.push(gf_mul(y, x) ^ byte);
        }
        share.push(x);
        shares.push(share);
    }
    Ok(shares)
}

/// Recovers the secret from at least `threshold` shares produced by [`split`].
///
/// Requires at least two shares of equal length (at least 2 bytes) with distinct,
/// non-zero x coordinates. Fewer than `threshold` shares yield a wrong secret, which
/// cannot be detected here: callers verify the result (e.g. by decrypting with it).
pub fn combine(shares: &[&[u8]]) -> Result<Zeroizing<Vec<u8>>, ShamirError> {
    if shares.len() < 2 {
        return Err(ShamirError::TooFewShares(shares.len()));
    }
    let share_len = shares[0].len();
    if share_len < 2 {
        return Err(ShamirError::ShareTooShort);
    }
    let mut seen = [false; 256];
    let mut xs = Vec::with_capacity(shares.len());
    for share in shares {
        if share.len() != share_len {
            return Err(ShamirError::ShareLengthMismatch);
        }
        let x = share[share_len - 1];
        if x == 0 {
            return Err(ShamirError::ZeroXCoordinate);
        }
        if seen[usize::from(x)] {
            return Err(ShamirError::DuplicateShare(x));
        }
        seen[usize::from(x)] = true;
        xs.push(x);
    }

    // Lagrange basis polynomials evaluated at 0: l_i(0) = prod_{j != i} x_j / (x_j - x_i),
    // where subtraction is xor in GF(2^8).
    let basis: Vec<u8> = xs
        .iter()
        .enumerate()
        .map(|(i, &xi)| {
            let (mut num, mut den) = (1u8, 1u8);
            for (j, &xj) in xs.iter().enumerate() {
                if i != j {
                    num = gf_mul(num, xj);
                    den = gf_mul(den, xj ^ xi);
                }
            }
            gf_mul(num, gf_inv(den))
        })
        .collect();

    let mut secret = Zeroizing::new(vec![0u8; share_len - 1]);
    for (share, &l) in shares.iter().zip(&basis) {
        for (out, &y) in secret.iter_mut().zip(share.iter()) {
            *out ^= gf_mul(l, y);
        }
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference multiplication: schoolbook carry-less product reduced by 0x11b.
    fn slow_mul(a: u8, b: u8) -> u8 {
        let mut product: u16 = 0;
        for bit in 0..8 {
            if b & (1 << bit) != 0 {
                product ^= u16::from(a) << bit;
            }
        }
        for bit in (8..16).rev() {
            if product & (1 << bit) != 0 {
                product ^= 0x11b << (bit - 8);
            }
        }
        u8::try_from(product).unwrap()
    }

    #[test]
    fn field_arithmetic() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                assert_eq!(gf_mul(a, b), slow_mul(a, b), "{a} * {b}");
            }
        }
        assert_eq!(gf_inv(0), 0);
        for a in 1..=255u8 {
            assert_eq!(gf_mul(a, gf_inv(a)), 1, "inverse of {a}");
        }
        // Known AES field facts: {53} * {ca} = {01}, {57} * {83} = {c1}.
        assert_eq!(gf_mul(0x53, 0xca), 0x01);
        assert_eq!(gf_mul(0x57, 0x83), 0xc1);
    }

    #[test]
    fn share_layout() {
        let secret = b"hello shamir";
        let shares = split(secret, 5, 3).unwrap();
        assert_eq!(shares.len(), 5);
        let mut xs: Vec<u8> = shares.iter().map(|s| s[s.len() - 1]).collect();
        for share in &shares {
            assert_eq!(share.len(), secret.len() + 1);
        }
        assert!(xs.iter().all(|&x| x != 0));
        xs.sort_unstable();
        xs.dedup();
        assert_eq!(xs.len(), 5);
    }

    #[test]
    fn all_255_shares() {
        let secret = [0x42u8, 0x00, 0xff];
        let shares = split(&secret, 255, 255).unwrap();
        let refs: Vec<&[u8]> = shares.iter().map(|s| s.as_slice()).collect();
        assert_eq!(combine(&refs).unwrap().as_slice(), &secret);
    }

    /// Vault's `shamir` test vector style: shares with fixed coordinates built by hand.
    #[test]
    fn combine_hand_built_shares() {
        // Polynomial 0x2a + 0x07 x for a one-byte secret 0x2a, at x = 1 and x = 2.
        let s1 = [0x2a ^ gf_mul(0x07, 1), 1];
        let s2 = [0x2a ^ gf_mul(0x07, 2), 2];
        assert_eq!(combine(&[&s1, &s2]).unwrap().as_slice(), &[0x2a]);
    }

    #[test]
    fn split_errors() {
        assert_eq!(split(b"", 3, 2), Err(ShamirError::EmptySecret));
        assert_eq!(split(b"s", 256, 2), Err(ShamirError::TooManyParts(256)));
        assert_eq!(split(b"s", 3, 1), Err(ShamirError::ThresholdTooSmall(1)));
        assert_eq!(split(b"s", 3, 0), Err(ShamirError::ThresholdTooSmall(0)));
        assert_eq!(split(b"s", 1, 1), Err(ShamirError::ThresholdTooSmall(1)));
        assert_eq!(
            split(b"s", 2, 3),
            Err(ShamirError::ThresholdExceedsParts {
                threshold: 3,
                parts: 2
            })
        );
        assert_eq!(split(b"s", 0, 0), Err(ShamirError::ThresholdTooSmall(0)));
        assert_eq!(
            split(b"s", usize::MAX, 2),
            Err(ShamirError::TooManyParts(usize::MAX))
        );
    }

    #[test]
    fn combine_errors() {
        let shares = split(b"secret", 3, 2).unwrap();
        assert_eq!(combine(&[]), Err(ShamirError::TooFewShares(0)));
        assert_eq!(combine(&[&shares[0]]), Err(ShamirError::TooFewShares(1)));
        assert_eq!(combine(&[b"a", b"b"]), Err(ShamirError::ShareTooShort));
        assert_eq!(combine(&[b"", b""]), Err(ShamirError::ShareTooShort));
        assert_eq!(
            combine(&[&shares[0], &shares[1][..3]]),
            Err(ShamirError::ShareLengthMismatch)
        );
        let x = shares[0][shares[0].len() - 1];
        assert_eq!(
            combine(&[&shares[0], &shares[1], &shares[0]]),
            Err(ShamirError::DuplicateShare(x))
        );
        let mut zero_x = shares[1].to_vec();
        *zero_x.last_mut().unwrap() = 0;
        assert_eq!(
            combine(&[&shares[0], &zero_x]),
            Err(ShamirError::ZeroXCoordinate)
        );
    }

    /// (secret, parts, threshold, indices of a `threshold`-subset in random order)
    fn scheme(
        max_secret: usize,
        max_parts: usize,
    ) -> impl Strategy<Value = (Vec<u8>, usize, usize, Vec<usize>)> {
        (
            proptest::collection::vec(any::<u8>(), 1..=max_secret),
            2..=max_parts,
        )
            .prop_flat_map(|(secret, parts)| (Just(secret), Just(parts), 2..=parts))
            .prop_flat_map(|(secret, parts, threshold)| {
                let subset =
                    proptest::sample::subsequence((0..parts).collect::<Vec<_>>(), threshold)
                        .prop_shuffle();
                (Just(secret), Just(parts), Just(threshold), subset)
            })
    }

    proptest! {
        #[test]
        fn any_threshold_subset_recovers((secret, parts, threshold, subset) in scheme(64, 20)) {
            let shares = split(&secret, parts, threshold).unwrap();
            prop_assert_eq!(shares.len(), parts);
            let picked: Vec<&[u8]> = subset.iter().map(|&i| shares[i].as_slice()).collect();
            prop_assert_eq!(&*combine(&picked).unwrap(), &secret);
            // Order does not matter.
            let reversed: Vec<&[u8]> = picked.iter().rev().copied().collect();
            prop_assert_eq!(&*combine(&reversed).unwrap(), &secret);
            // Neither do extra shares beyond the threshold.
            let all: Vec<&[u8]> = shares.iter().rev().map(|s| s.as_slice()).collect();
            prop_assert_eq!(&*combine(&all).unwrap(), &secret);
        }

        /// With `threshold - 1` shares each recovered byte equals the secret byte only if
        /// that byte's leading coefficient is zero (probability 1/256), so for secrets of
        /// at least 16 bytes a wrong-but-valid result is certain up to 2^-128.
        #[test]
        fn below_threshold_gives_something_else(
            (secret, parts, threshold, subset) in scheme(64, 20)
                .prop_filter("long secret", |(s, ..)| s.len() >= 16)
        ) {
            let shares = split(&secret, parts, threshold).unwrap();
            let picked: Vec<&[u8]> =
                subset[..threshold - 1].iter().map(|&i| shares[i].as_slice()).collect();
            match combine(&picked) {
                Ok(recovered) => {
                    prop_assert!(threshold > 2);
                    prop_assert_eq!(recovered.len(), secret.len());
                    prop_assert_ne!(recovered.as_slice(), secret.as_slice());
                }
                Err(err) => {
                    prop_assert_eq!(threshold, 2);
                    prop_assert_eq!(err, ShamirError::TooFewShares(1));
                }
            }
        }

        #[test]
        fn combine_never_panics(shares in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..8), 0..6)) {
            let refs: Vec<&[u8]> = shares.iter().map(Vec::as_slice).collect();
            let _ = combine(&refs);
        }
    }
}
