//! encrypt / decrypt / rewrap / datakey, batches, derivation and convergence.

use coffer_sdk::Operation;
use serde_json::{json, Value};

use super::*;

#[tokio::test]
async fn round_trip_every_encryption_type() {
    let h = Harness::new();
    for key_type in ["aes128-gcm96", "aes256-gcm96", "chacha20-poly1305"] {
        h.key(key_type, json!({"type": key_type})).await;
        for plaintext in [&b""[..], b"hello", &[0u8; 4096][..]] {
            let ciphertext = h.encrypt(key_type, plaintext, json!({})).await;
            assert!(ciphertext.starts_with("vault:v1:"), "{ciphertext}");
            assert_eq!(body_of(&ciphertext).len(), 12 + plaintext.len() + 16);
            assert_eq!(h.decrypt(key_type, &ciphertext, json!({})).await, plaintext);
        }
        let a = h.encrypt(key_type, b"same", json!({})).await;
        let b = h.encrypt(key_type, b"same", json!({})).await;
        assert_ne!(a, b, "random nonces");
    }
    let out = h
        .write("encrypt/aes256-gcm96", json!({"plaintext": b64(b"x")}))
        .await;
    assert_eq!(out["key_version"], 1);
}

#[tokio::test]
async fn signing_keys_do_not_encrypt() {
    let h = Harness::new();
    h.key("ed", json!({"type": "ed25519"})).await;
    h.key("mac", json!({"type": "hmac"})).await;
    assert_eq!(
        h.write_err("encrypt/ed", json!({"plaintext": b64(b"x")}))
            .await
            .1,
        "message encryption not supported for key type ed25519"
    );
    assert_eq!(
        h.write_err("decrypt/mac", json!({"ciphertext": "vault:v1:AAAA"}))
            .await
            .1,
        "message decryption not supported for key type hmac"
    );
    assert_eq!(
        h.write_err("datakey/plaintext/ed", json!({})).await.1,
        "message encryption not supported for key type ed25519"
    );
}

#[tokio::test]
async fn decrypt_errors_match_vault() {
    let h = Harness::new();
    h.key("k", json!({})).await;
    let good = h.encrypt("k", b"data", json!({})).await;
    let mut tampered = body_of(&good);
    tampered[14] ^= 1;
    let tampered = format!("vault:v1:{}", b64(&tampered));
    let cases = [
        ("nope:v1:AAAA".to_string(), "invalid ciphertext: no prefix"),
        (
            "vault:v1".to_string(),
            "invalid ciphertext: wrong number of fields",
        ),
        (
            "vault:vx:AAAA".to_string(),
            "invalid ciphertext: version number could not be decoded",
        ),
        (
            "vault:v2:AAAA".to_string(),
            "invalid ciphertext: version is too new",
        ),
        (
            "vault:v1:%%%".to_string(),
            "invalid ciphertext: could not decode base64",
        ),
        ("vault:v1:AAAA".to_string(), "invalid ciphertext length"),
        (tampered, "cipher: message authentication failed"),
    ];
    for (ciphertext, message) in cases {
        let (status, got) = h
            .write_err("decrypt/k", json!({"ciphertext": ciphertext}))
            .await;
        assert_eq!((status, got.as_str()), (400, message), "{ciphertext}");
    }
    assert_eq!(
        h.write_err("decrypt/k", json!({})).await.1,
        "missing ciphertext to decrypt"
    );
    assert_eq!(
        h.write_err("encrypt/k", json!({})).await.1,
        "missing plaintext to encrypt"
    );
    assert_eq!(
        h.write_err("encrypt/k", json!({"plaintext": "a$b="}))
            .await
            .1,
        "illegal base64 data at input byte 1"
    );
    // Version 0 means version 1 (Vault's compatibility rule).
    let v0 = good.replacen("vault:v1:", "vault:v0:", 1);
    assert_eq!(h.decrypt("k", &v0, json!({})).await, b"data");
}

#[tokio::test]
async fn rotation_and_min_decryption_version() {
    let h = Harness::new();
    h.key("k", json!({})).await;
    let v1 = h.encrypt("k", b"one", json!({})).await;
    h.write("keys/k/rotate", json!({})).await;
    let v2 = h.encrypt("k", b"two", json!({})).await;
    assert!(v2.starts_with("vault:v2:"));
    assert_eq!(h.decrypt("k", &v1, json!({})).await, b"one");

    let pinned = h.encrypt("k", b"pinned", json!({"key_version": 1})).await;
    assert!(pinned.starts_with("vault:v1:"));
    for (version, message) in [
        (
            3,
            "requested version for encryption is higher than the latest key version",
        ),
        (-1, "requested version for encryption is negative"),
    ] {
        assert_eq!(
            h.write_err(
                "encrypt/k",
                json!({"plaintext": b64(b"x"), "key_version": version})
            )
            .await
            .1,
            message
        );
    }

    h.write(
        "keys/k/config",
        json!({"min_decryption_version": 2, "min_encryption_version": 2}),
    )
    .await;
    let (status, message) = h.write_err("decrypt/k", json!({"ciphertext": v1})).await;
    assert_eq!((status, message.as_str()), (400, crate::ERR_TOO_OLD));
    assert_eq!(h.decrypt("k", &v2, json!({})).await, b"two");
    assert_eq!(
        h.write_err(
            "encrypt/k",
            json!({"plaintext": b64(b"x"), "key_version": 1})
        )
        .await
        .1,
        "requested version for encryption is less than the minimum encryption key version"
    );
}

#[tokio::test]
async fn rewrap_to_latest() {
    let h = Harness::new();
    h.key("k", json!({})).await;
    let v1 = h.encrypt("k", b"secret", json!({})).await;
    h.write("keys/k/rotate", json!({})).await;
    h.write("keys/k/rotate", json!({})).await;
    let out = h.write("rewrap/k", json!({"ciphertext": v1})).await;
    let rewrapped = str_of(&out, "ciphertext");
    assert!(rewrapped.starts_with("vault:v3:"), "{rewrapped}");
    assert_eq!(out["key_version"], 3);
    assert_eq!(h.decrypt("k", rewrapped, json!({})).await, b"secret");
    let to_two = h
        .write("rewrap/k", json!({"ciphertext": v1, "key_version": 2}))
        .await;
    assert!(str_of(&to_two, "ciphertext").starts_with("vault:v2:"));

    // Batch rewrap answers 200 with per-item errors.
    let resp = h
        .call(
            Operation::Update,
            "rewrap/k",
            json!({"batch_input": [{"ciphertext": v1, "reference": "a"}, {"ciphertext": "junk", "reference": "b"}]}),
        )
        .await
        .unwrap();
    assert_eq!(resp.status, None);
    let results = resp.data.unwrap()["batch_results"].clone();
    assert!(results[0]["ciphertext"]
        .as_str()
        .unwrap()
        .starts_with("vault:v3:"));
    assert_eq!(results[0]["reference"], "a");
    assert_eq!(results[1]["error"], "invalid ciphertext: no prefix");
    assert_eq!(results[1]["reference"], "b");
    assert_eq!(
        h.write_err("rewrap/none", json!({"ciphertext": v1}))
            .await
            .1,
        "encryption key not found"
    );
}

#[tokio::test]
async fn batch_with_one_bad_item() {
    let h = Harness::new();
    h.key("k", json!({})).await;
    let resp = h
        .call(
            Operation::Update,
            "encrypt/k",
            json!({"batch_input": [
                {"plaintext": b64(b"first"), "reference": "one"},
                {"plaintext": "not base64!", "reference": "two"},
                {"plaintext": b64(b"third")},
            ]}),
        )
        .await
        .unwrap();
    assert_eq!(resp.status, Some(400), "Vault answers 400 with the results");
    let results = resp.data.unwrap()["batch_results"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["reference"], "one");
    assert_eq!(results[0]["key_version"], 1);
    assert!(results[1].get("ciphertext").is_none());
    assert_eq!(results[1]["error"], "illegal base64 data at input byte 3");
    assert_eq!(results[2]["reference"], "");

    // partial_failure_response_code replaces the 400 when something succeeded.
    let resp = h
        .call(
            Operation::Update,
            "encrypt/k",
            json!({"partial_failure_response_code": 207, "batch_input": [
                {"plaintext": b64(b"ok")}, {"plaintext": "%%"}]}),
        )
        .await
        .unwrap();
    assert_eq!(resp.status, Some(207));

    let c0 = results[0]["ciphertext"].as_str().unwrap().to_string();
    let c2 = results[2]["ciphertext"].as_str().unwrap().to_string();
    let resp = h
        .call(
            Operation::Update,
            "decrypt/k",
            json!({"batch_input": [
                {"ciphertext": c0, "reference": "r0"},
                {"ciphertext": "vault:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
                {"ciphertext": c2},
            ]}),
        )
        .await
        .unwrap();
    assert_eq!(resp.status, Some(400));
    let results = resp.data.unwrap()["batch_results"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(unb64(results[0]["plaintext"].as_str().unwrap()), b"first");
    assert_eq!(results[0]["reference"], "r0");
    assert_eq!(results[1]["error"], "cipher: message authentication failed");
    assert_eq!(unb64(results[2]["plaintext"].as_str().unwrap()), b"third");

    // A fully good batch is a plain 200.
    let resp = h
        .call(
            Operation::Update,
            "decrypt/k",
            json!({"batch_input": [{"ciphertext": c0}]}),
        )
        .await
        .unwrap();
    assert_eq!(resp.status, None);

    // Malformed batches fail as a whole.
    for (body, message) in [
        (json!({"batch_input": []}), "missing batch input to process"),
        (
            json!({"batch_input": "x"}),
            "failed to parse batch input: batch_input must be a list of objects",
        ),
        (
            json!({"batch_input": [1]}),
            "failed to parse batch input: [0] expected a map",
        ),
        (
            json!({"batch_input": [{"plaintext": b64(b"a"), "context": b64(b"c")}, {"plaintext": b64(b"b")}]}),
            "context should be set either in all the request blocks or in none",
        ),
        (
            json!({"batch_input": [{"plaintext": {"nested": true}}]}),
            "failed to parse batch input: '[0].plaintext' expected type 'string'",
        ),
    ] {
        assert_eq!(
            h.write_err("encrypt/k", body.clone()).await,
            (400, message.to_string()),
            "{body}"
        );
    }
}

#[tokio::test]
async fn datakeys() {
    let h = Harness::new();
    h.key("k", json!({})).await;
    let plain = h.write("datakey/plaintext/k", json!({})).await;
    let key = unb64(str_of(&plain, "plaintext"));
    assert_eq!(key.len(), 32);
    assert_eq!(plain["key_version"], 1);
    assert_eq!(
        h.decrypt("k", str_of(&plain, "ciphertext"), json!({}))
            .await,
        key
    );

    let wrapped = h.write("datakey/wrapped/k", json!({"bits": 512})).await;
    assert!(!wrapped.contains_key("plaintext"));
    assert_eq!(
        h.decrypt("k", str_of(&wrapped, "ciphertext"), json!({}))
            .await
            .len(),
        64
    );
    let small = h.write("datakey/plaintext/k", json!({"bits": "128"})).await;
    assert_eq!(unb64(str_of(&small, "plaintext")).len(), 16);

    assert_eq!(
        h.write_err("datakey/plaintext/k", json!({"bits": 100}))
            .await
            .1,
        "invalid bits value"
    );
    assert_eq!(
        h.write_err("datakey/other/k", json!({})).await.1,
        "Invalid path, must be 'plaintext' or 'wrapped'"
    );
    assert_eq!(
        h.write_err("datakey/wrapped/none", json!({})).await.1,
        "encryption key not found"
    );
}

#[tokio::test]
async fn derived_keys_need_the_right_context() {
    let h = Harness::new();
    h.key("d", json!({"derived": true})).await;
    let read = h.read("keys/d").await;
    assert_eq!(read["kdf"], "hkdf_sha256");
    assert_eq!(read["convergent_encryption"], false);
    let ctx = b64(b"tenant-1");
    let ciphertext = h.encrypt("d", b"payload", json!({"context": ctx})).await;
    assert_eq!(
        h.decrypt("d", &ciphertext, json!({"context": ctx})).await,
        b"payload"
    );

    let (status, message) = h
        .write_err("encrypt/d", json!({"plaintext": b64(b"x")}))
        .await;
    assert_eq!(status, 400);
    assert!(
        message.starts_with("missing 'context' for key derivation"),
        "{message}"
    );
    assert!(h
        .write_err("decrypt/d", json!({"ciphertext": ciphertext}))
        .await
        .1
        .starts_with("missing 'context'"));
    let (status, message) = h
        .write_err(
            "decrypt/d",
            json!({"ciphertext": ciphertext, "context": b64(b"tenant-2")}),
        )
        .await;
    assert_eq!(
        (status, message.as_str()),
        (400, "cipher: message authentication failed")
    );
    assert_eq!(
        h.write_err(
            "decrypt/d",
            json!({"ciphertext": ciphertext, "context": "%%"})
        )
        .await
        .1,
        "illegal base64 data at input byte 0"
    );

    // Datakeys with a derived key.
    let dk = h
        .write("datakey/plaintext/d", json!({"context": ctx}))
        .await;
    assert_eq!(
        h.decrypt("d", str_of(&dk, "ciphertext"), json!({"context": ctx}))
            .await,
        unb64(str_of(&dk, "plaintext"))
    );
    assert_eq!(
        h.write_err("datakey/plaintext/d", json!({"context": "%%"}))
            .await
            .1,
        "failed to base64-decode context"
    );
}

#[tokio::test]
async fn convergent_encryption_is_deterministic() {
    let h = Harness::new();
    h.key("c", json!({"derived": true, "convergent_encryption": true}))
        .await;
    let read = h.read("keys/c").await;
    assert_eq!(read["convergent_encryption"], true);
    assert_eq!(
        read["convergent_encryption_version"], -1,
        "Vault's value for per-version schemes"
    );
    let ctx = json!({"context": b64(b"ctx")});
    let a = h.encrypt("c", b"same plaintext", ctx.clone()).await;
    let b = h.encrypt("c", b"same plaintext", ctx.clone()).await;
    assert_eq!(a, b);
    let other_ctx = h
        .encrypt("c", b"same plaintext", json!({"context": b64(b"ctx2")}))
        .await;
    assert_ne!(a, other_ctx);
    let other_text = h.encrypt("c", b"other plaintext", ctx.clone()).await;
    assert_ne!(a, other_text);
    assert_eq!(h.decrypt("c", &a, ctx.clone()).await, b"same plaintext");
    // The nonce is still stored in front (scheme 3).
    assert_eq!(body_of(&a).len(), 12 + 14 + 16);
    // After rotation, the same input gives a different (v2) but stable ciphertext.
    h.write("keys/c/rotate", json!({})).await;
    let c = h.encrypt("c", b"same plaintext", ctx.clone()).await;
    assert!(c.starts_with("vault:v2:"));
    assert_eq!(c, h.encrypt("c", b"same plaintext", ctx.clone()).await);
    // A caller nonce is refused for scheme 3.
    let mut with_nonce = obj(ctx.clone());
    with_nonce.insert("plaintext".into(), json!(b64(b"x")));
    with_nonce.insert("nonce".into(), json!(b64(&[0u8; 12])));
    assert_eq!(
        h.write_err("encrypt/c", Value::Object(with_nonce)).await.1,
        "nonce provided when not allowed"
    );
}

#[tokio::test]
async fn associated_data_is_bound() {
    let h = Harness::new();
    h.key("k", json!({})).await;
    let aad = json!({"associated_data": b64(b"header")});
    let ciphertext = h.encrypt("k", b"body", aad.clone()).await;
    assert_eq!(h.decrypt("k", &ciphertext, aad).await, b"body");
    assert_eq!(
        h.write_err("decrypt/k", json!({"ciphertext": ciphertext}))
            .await
            .1,
        "cipher: message authentication failed"
    );
}

#[tokio::test]
async fn encrypt_upserts_on_create_only() {
    let h = Harness::new();
    // An update on a missing key (the token only had `update`) is Vault's 400.
    assert_eq!(
        h.write_err("encrypt/up", json!({"plaintext": b64(b"x")}))
            .await
            .1,
        "encryption key not found"
    );
    assert_eq!(
        h.backend
            .existence_check(&coffer_sdk::testing::request(
                h.storage.clone(),
                Operation::Update,
                "encrypt/up",
                Value::Null
            ))
            .await
            .unwrap(),
        Some(false)
    );
    let out = h
        .create(
            "encrypt/up",
            json!({"plaintext": b64(b"x"), "type": "chacha20-poly1305"}),
        )
        .await;
    assert!(str_of(&out, "ciphertext").starts_with("vault:v1:"));
    assert_eq!(h.read("keys/up").await["type"], "chacha20-poly1305");

    // A context at upsert makes a derived key; convergence needs a context.
    h.create(
        "encrypt/der",
        json!({"plaintext": b64(b"x"), "context": b64(b"c")}),
    )
    .await;
    assert_eq!(h.read("keys/der").await["derived"], true);
    for (body, message) in [
        (
            json!({"plaintext": b64(b"x"), "convergent_encryption": true}),
            "convergent encryption requires derivation to be enabled, so context is required",
        ),
        (
            json!({"plaintext": b64(b"x"), "type": "ecdsa-p256"}),
            "key type ecdsa-p256 not supported for this operation",
        ),
        (
            json!({"plaintext": b64(b"x"), "type": "ed25519"}),
            "unknown key type ed25519",
        ),
    ] {
        assert_eq!(
            h.fail(Operation::Create, "encrypt/bad", body).await.1,
            message
        );
    }
    assert_eq!(
        h.fail(Operation::Read, "keys/bad", Value::Null).await.0,
        404
    );
}
