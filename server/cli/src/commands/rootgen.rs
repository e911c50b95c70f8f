//! The two quorum ceremonies that take unseal key shares from several operators:
//! `coffer operator generate-root` (a new root token, returned encoded with a one-time
//! password) and `coffer operator rekey` (new unseal key shares).

use base64::Engine;
use clap::Args;
use serde_json::{json, Value};

use super::{CliError, CmdResult, Ctx, GlobalArgs};
use crate::input::prompt_secret;
use crate::output::{columnize, key_value_table, print_raw};

/// Length of the generated OTP: the length of an `hvs.` token (what the server uses).
const OTP_LENGTH: usize = 28;

/// Generate a new root token from a quorum of unseal key shares.
#[derive(Args, Debug)]
#[command(
    long_about = "Generate a new root token from a quorum of unseal key shares.\n\n\
                  1. One operator starts the attempt with -init; the server prints a \
                  one-time password (OTP). Keep it: it decodes the result.\n\
                  2. Each key holder runs the command with their share (prompted for \
                  without echo when not given); the nonce is looked up when -nonce is absent.\n\
                  3. The last share returns an encoded token; -decode=ENCODED -otp=OTP turns \
                  it into the root token.\n\n\
                  -status shows the progress and -cancel abandons the attempt.",
    after_help = "Examples:\n  coffer operator generate-root -init\n  \
                  coffer operator generate-root            # prompts for a share\n  \
                  coffer operator generate-root -decode=ENCODED_TOKEN -otp=OTP\n  \
                  coffer operator generate-root -cancel"
)]
pub struct GenerateRootArgs {
    /// An unseal key share; prompted for when absent.
    pub key: Option<String>,
    /// Start a root token generation (the server generates the OTP).
    #[arg(long)]
    pub init: bool,
    /// Show the progress of the current attempt.
    #[arg(long)]
    pub status: bool,
    /// Cancel the current attempt.
    #[arg(long)]
    pub cancel: bool,
    /// The nonce of the attempt (looked up when absent).
    #[arg(long, value_name = "NONCE")]
    pub nonce: Option<String>,
    /// The one-time password: with -init, use this OTP; with -decode, decode with it.
    #[arg(long, value_name = "OTP")]
    pub otp: Option<String>,
    /// Decode an encoded root token with -otp and print it.
    #[arg(long, value_name = "ENCODED")]
    pub decode: Option<String>,
    /// Generate an OTP locally and print it (for -init -otp=...).
    #[arg(long = "generate-otp")]
    pub generate_otp: bool,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Replace the unseal key shares.
#[derive(Args, Debug)]
#[command(
    long_about = "Replace the unseal key with a new one split into new shares.\n\n\
                  1. One operator starts with -init -key-shares=N -key-threshold=T.\n\
                  2. Holders of the current shares each run the command with their share \
                  (prompted for without echo when not given).\n\
                  3. When the current threshold is reached the new shares are printed once; \
                  the old ones stop working.\n\n\
                  -status shows the progress and -cancel abandons the attempt.",
    after_help = "Examples:\n  coffer operator rekey -init -key-shares=7 -key-threshold=4\n  \
                  coffer operator rekey                      # prompts for a current share\n  \
                  coffer operator rekey -status\n  coffer operator rekey -cancel"
)]
pub struct RekeyArgs {
    /// A current unseal key share; prompted for when absent.
    pub key: Option<String>,
    /// Start a rekey.
    #[arg(long)]
    pub init: bool,
    /// Number of new key shares (with -init).
    #[arg(long = "key-shares", default_value_t = 5, value_name = "N")]
    pub key_shares: u32,
    /// Number of new shares needed to unseal (with -init).
    #[arg(long = "key-threshold", default_value_t = 3, value_name = "N")]
    pub key_threshold: u32,
    /// The nonce of the rekey (looked up when absent).
    #[arg(long, value_name = "NONCE")]
    pub nonce: Option<String>,
    /// Show the progress of the current rekey.
    #[arg(long)]
    pub status: bool,
    /// Cancel the current rekey.
    #[arg(long)]
    pub cancel: bool,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// A random base62 string of `len` characters (uniform: bytes >= 248 are rejected).
pub fn random_base62(len: usize) -> Result<String, CliError> {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let rng = ring::rand::SystemRandom::new();
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let mut buf = [0u8; 64];
        ring::rand::SecureRandom::fill(&rng, &mut buf)
            .map_err(|_| CliError::usage("Error generating OTP: no randomness"))?;
        for b in buf {
            if b < 248 && out.len() < len {
                out.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    Ok(out)
}

/// base64(token XOR otp) back to the token. The server encodes without padding;
/// padded input is accepted too.
pub fn decode_root_token(encoded: &str, otp: &str) -> Result<String, CliError> {
    let trimmed = encoded.trim().trim_end_matches('=');
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(trimmed))
        .map_err(|e| CliError::usage(format!("Error decoding base64'd token: {e}")))?;
    if bytes.len() != otp.len() {
        return Err(CliError::usage(
            "Error xoring token: length of byte slices is not equivalent: \
             the OTP does not belong to this encoded token",
        ));
    }
    let token: Vec<u8> = bytes.iter().zip(otp.bytes()).map(|(a, b)| a ^ b).collect();
    String::from_utf8(token)
        .map_err(|_| CliError::usage("Error xoring token: the result is not text (wrong OTP?)"))
}

fn generate_root_table(status: &Value) -> String {
    let s = |k: &str| match status.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    };
    let mut rows = vec![
        vec!["Nonce".into(), s("nonce")],
        vec!["Started".into(), s("started")],
        vec![
            "Progress".into(),
            format!("{}/{}", s("progress"), s("required")),
        ],
        vec!["Complete".into(), s("complete")],
    ];
    if !s("pgp_fingerprint").is_empty() {
        rows.push(vec!["PGP Fingerprint".into(), s("pgp_fingerprint")]);
    }
    if !s("encoded_token").is_empty() {
        rows.push(vec!["Encoded Token".into(), s("encoded_token")]);
    } else if !s("encoded_root_token").is_empty() {
        rows.push(vec!["Encoded Root Token".into(), s("encoded_root_token")]);
    }
    if !s("otp").is_empty() {
        rows.push(vec!["OTP".into(), s("otp")]);
    }
    if status
        .get("otp_length")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        != 0
    {
        rows.push(vec!["OTP Length".into(), s("otp_length")]);
    }
    columnize(&rows)
}

fn print_generate_root(ctx: &Ctx, status: &Value) -> CmdResult {
    if !ctx.out.is_table() || ctx.out.field.is_some() {
        return ctx.out.data(status);
    }
    if status
        .get("otp")
        .and_then(Value::as_str)
        .is_some_and(|o| !o.is_empty())
    {
        eprintln!(
            "A One-Time-Password has been generated for you and is shown in the OTP field.\n\
             You will need this value to decode the resulting root token, so keep it safe.\n"
        );
    }
    crate::outln!("{}", generate_root_table(status));
    Ok(0)
}

pub async fn generate_root(args: GenerateRootArgs) -> CmdResult {
    if args.generate_otp {
        let otp = random_base62(OTP_LENGTH)?;
        print_raw(&otp);
        return Ok(0);
    }
    let out = args.global.output()?;
    if let Some(encoded) = &args.decode {
        let otp = args
            .otp
            .as_deref()
            .ok_or_else(|| CliError::usage("Error decoding: -otp is required with -decode"))?;
        let token = decode_root_token(encoded, otp)?;
        if out.is_table() {
            print_raw(&token);
        } else {
            out.structured(&json!({ "token": token }))?;
        }
        return Ok(0);
    }
    let ctx = args.global.ctx()?;
    let path = "sys/generate-root/attempt";
    if args.cancel {
        ctx.client
            .delete(path, &[])
            .await
            .map_err(|e| CliError::api("Error canceling root token generation", e))?;
        crate::outln!("Success! Root token generation canceled (if it was started)");
        return Ok(0);
    }
    if args.init {
        let body = match &args.otp {
            Some(otp) => json!({ "otp": otp }),
            None => json!({}),
        };
        let status = ctx
            .client
            .write(path, &body)
            .await
            .map_err(|e| CliError::api("Error initializing root generation", e))?
            .unwrap_or(Value::Null);
        return print_generate_root(&ctx, &status);
    }
    let current = ctx
        .client
        .read(path, &[])
        .await
        .map_err(|e| CliError::api("Error getting root generation status", e))?
        .unwrap_or(Value::Null);
    if args.status {
        return print_generate_root(&ctx, &current);
    }
    let nonce = match &args.nonce {
        Some(n) => n.clone(),
        None => {
            if current.get("started").and_then(Value::as_bool) != Some(true) {
                return Err(CliError::usage(
                    "No root generation is in progress. Start one with \
                     \"coffer operator generate-root -init\".",
                ));
            }
            current
                .get("nonce")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        }
    };
    let key = match args.key.filter(|k| !k.trim().is_empty()) {
        Some(k) => k.trim().to_string(),
        None => prompt_secret("Unseal Key (will be hidden): ")?,
    };
    let status = ctx
        .client
        .write(
            "sys/generate-root/update",
            &json!({ "key": key, "nonce": nonce }),
        )
        .await
        .map_err(|e| CliError::api("Error posting unseal key", e))?
        .unwrap_or(Value::Null);
    print_generate_root(&ctx, &status)
}

fn rekey_table(status: &Value) -> String {
    let s = |k: &str| match status.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    };
    let started = status.get("started").and_then(Value::as_bool) == Some(true);
    let mut rows = vec![
        ("Nonce".to_string(), s("nonce")),
        ("Started".to_string(), started.to_string()),
    ];
    if started {
        rows.push((
            "Rekey Progress".into(),
            format!("{}/{}", s("progress"), s("required")),
        ));
        rows.push(("New Shares".into(), s("n")));
        rows.push(("New Threshold".into(), s("t")));
        rows.push((
            "Verification Required".into(),
            (status.get("verification_required").and_then(Value::as_bool) == Some(true))
                .to_string(),
        ));
    }
    key_value_table(rows)
}

fn print_rekey_status(ctx: &Ctx, status: &Value) -> CmdResult {
    if !ctx.out.is_table() || ctx.out.field.is_some() {
        return ctx.out.data(status);
    }
    crate::outln!("{}", rekey_table(status));
    Ok(0)
}

pub async fn rekey(args: RekeyArgs) -> CmdResult {
    let ctx = args.global.ctx()?;
    let path = "sys/rekey/init";
    if args.cancel {
        ctx.client
            .delete(path, &[])
            .await
            .map_err(|e| CliError::api("Error canceling rekey", e))?;
        crate::outln!("Success! Canceled rekeying (if it was started)");
        return Ok(0);
    }
    if args.init {
        let body = json!({
            "secret_shares": args.key_shares,
            "secret_threshold": args.key_threshold,
        });
        let status = ctx
            .client
            .write(path, &body)
            .await
            .map_err(|e| CliError::api("Error initializing rekey", e))?
            .unwrap_or(Value::Null);
        return print_rekey_status(&ctx, &status);
    }
    let current = ctx
        .client
        .read(path, &[])
        .await
        .map_err(|e| CliError::api("Error reading rekey status", e))?
        .unwrap_or(Value::Null);
    if args.status {
        return print_rekey_status(&ctx, &current);
    }
    let nonce = match &args.nonce {
        Some(n) => n.clone(),
        None => {
            if current.get("started").and_then(Value::as_bool) != Some(true) {
                return Err(CliError::usage(
                    "No rekey is in progress. Start one with \"coffer operator rekey -init\".",
                ));
            }
            current
                .get("nonce")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        }
    };
    let key = match args.key.filter(|k| !k.trim().is_empty()) {
        Some(k) => k.trim().to_string(),
        None => prompt_secret("Unseal Key (will be hidden): ")?,
    };
    let resp = ctx
        .client
        .write("sys/rekey/update", &json!({ "key": key, "nonce": nonce }))
        .await
        .map_err(|e| CliError::api("Error posting unseal key", e))?
        .unwrap_or(Value::Null);
    if resp.get("complete").and_then(Value::as_bool) != Some(true) {
        return print_rekey_status(&ctx, &resp);
    }
    if !ctx.out.is_table() || ctx.out.field.is_some() {
        return ctx.out.data(&resp);
    }
    let keys: Vec<String> = resp
        .get("keys_base64")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|k| k.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    for (i, k) in keys.iter().enumerate() {
        crate::outln!("Key {}: {k}", i + 1);
    }
    crate::outln!();
    crate::outln!("Operation nonce: {nonce}");
    crate::outln!();
    let n = resp
        .get("n")
        .and_then(Value::as_u64)
        .unwrap_or(keys.len() as u64);
    let t = resp.get("t").and_then(Value::as_u64).unwrap_or(0);
    crate::outln!(
        "Coffer rekeyed with {n} key shares and a key threshold of {t}. Please securely\n\
         distribute the key shares printed above. When the server is re-sealed, restarted,\n\
         or stopped, you must supply at least {t} of these keys to unseal it before it\n\
         can start servicing requests."
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_reverses_xor_padded_or_not() {
        let token = "hvs.abcdefghijklmnopqrstuvwx";
        let otp = random_base62(token.len()).unwrap();
        let xored: Vec<u8> = token.bytes().zip(otp.bytes()).map(|(a, b)| a ^ b).collect();
        let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&xored);
        let padded = base64::engine::general_purpose::STANDARD.encode(&xored);
        assert_eq!(decode_root_token(&unpadded, &otp).unwrap(), token);
        assert_eq!(decode_root_token(&padded, &otp).unwrap(), token);
        assert!(decode_root_token(&unpadded, "short").is_err());
    }

    #[test]
    fn otp_is_base62() {
        let otp = random_base62(OTP_LENGTH).unwrap();
        assert_eq!(otp.len(), OTP_LENGTH);
        assert!(otp.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
