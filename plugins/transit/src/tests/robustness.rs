//! Arbitrary input never panics and is answered with a 4xx: ciphertexts, signatures,
//! backups, batch items, paths.

use coffer_sdk::Operation;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A harness with one key of every type.
async fn populated() -> Harness {
    let h = Harness::new();
    for (name, key_type, extra) in [
        ("aes", "aes256-gcm96", json!({})),
        ("der", "aes128-gcm96", json!({"derived": true})),
        (
            "conv",
            "chacha20-poly1305",
            json!({"derived": true, "convergent_encryption": true}),
        ),
        ("ed", "ed25519", json!({})),
        ("ec", "ecdsa-p384", json!({})),
        ("mac", "hmac", json!({})),
    ] {
        let mut body = obj(extra);
        body.insert("type".into(), json!(key_type));
        body.insert("exportable".into(), json!(true));
        body.insert("allow_plaintext_backup".into(), json!(true));
        h.key(name, Value::Object(body)).await;
    }
    h
}

fn client_error(result: Result<coffer_sdk::Response, SdkError>) -> Result<(), TestCaseError> {
    match result {
        Ok(resp) => prop_assert!(resp.status.is_none_or(|s| (200..500).contains(&s))),
        Err(e) => prop_assert!((400..500).contains(&e.status()), "{} {e}", e.status()),
    }
    Ok(())
}

const KEYS: &[&str] = &["aes", "der", "conv", "ed", "ec", "mac", "missing"];

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_ciphertexts_and_signatures(
        key in 0..KEYS.len(),
        version in -2i64..4,
        body in proptest::collection::vec(any::<u8>(), 0..80),
        junk in "\\PC{0,40}",
        context in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
    ) {
        let rt = runtime();
        let h = rt.block_on(populated());
        let name = KEYS[key];
        let forged = format!("vault:v{version}:{}", b64(&body));
        for value in [forged.as_str(), junk.as_str()] {
            let mut fields = json!({"ciphertext": value, "signature": value, "input": b64(&body)});
            if let Some(c) = &context {
                fields["context"] = json!(b64(c));
            }
            for path in ["decrypt", "rewrap", "verify"] {
                let result = rt.block_on(h.call(Operation::Update, &format!("{path}/{name}"), fields.clone()));
                client_error(result)?;
            }
            let hmac = json!({"input": b64(&body), "hmac": value});
            client_error(rt.block_on(h.call(Operation::Update, &format!("verify/{name}"), hmac)))?;
        }
    }

    #[test]
    fn arbitrary_backups(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        text in "\\PC{0,200}",
        cut in 0usize..2000,
    ) {
        let rt = runtime();
        let h = rt.block_on(populated());
        let real = rt.block_on(h.read("backup/ec"));
        let real = String::from_utf8(unb64(str_of(&real, "backup"))).unwrap_or_default();
        let truncated: String = real.chars().take(cut).collect();
        for blob in [b64(&bytes), b64(text.as_bytes()), text.clone(), b64(truncated.as_bytes())] {
            client_error(rt.block_on(h.call(Operation::Update, "restore/fuzz", json!({"backup": blob, "force": true}))))?;
        }
    }

    #[test]
    fn arbitrary_requests(
        segments in proptest::collection::vec("[a-z0-9@._-]{0,12}|keys|encrypt|sign|hmac|export|random|backup", 0..5),
        op in 0..6usize,
        field in "[a-z_]{1,20}",
        value in prop_oneof![
            Just(Value::Null), any::<bool>().prop_map(Value::from), any::<i64>().prop_map(Value::from),
            "\\PC{0,20}".prop_map(Value::from), Just(json!([{"input": 5}, "x", null])), Just(json!({"a": [1]}))
        ],
    ) {
        let rt = runtime();
        let h = rt.block_on(populated());
        let ops = [Operation::Read, Operation::Create, Operation::Update, Operation::Delete, Operation::List, Operation::Patch];
        let path = segments.join("/");
        let mut body = serde_json::Map::new();
        body.insert(field, value.clone());
        body.insert("batch_input".into(), json!([{"plaintext": value.clone(), "ciphertext": value.clone(), "input": value}]));
        let result = rt.block_on(h.call(ops[op], &path, Value::Object(body)));
        if let Err(e) = &result {
            prop_assert!(e.status() < 500, "{path}: {} {e}", e.status());
        }
    }
}
