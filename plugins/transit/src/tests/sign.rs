//! sign / verify (Ed25519, ECDSA in ASN.1 and JWS form) and hmac / verify.

use coffer_sdk::Operation;
use ring::signature::{self, UnparsedPublicKey};
use serde_json::{json, Value};

use super::*;

async fn sign(h: &Harness, path: &str, body: Value) -> String {
    str_of(&h.write(path, body).await, "signature").to_string()
}

async fn valid(h: &Harness, path: &str, body: Value) -> bool {
    h.write(path, body).await["valid"].as_bool().expect("valid")
}

#[tokio::test]
async fn ed25519_sign_verify() {
    let h = Harness::new();
    h.key("ed", json!({"type": "ed25519"})).await;
    let input = b64(b"message");
    let sig = sign(&h, "sign/ed", json!({"input": input})).await;
    assert!(sig.starts_with("vault:v1:"));
    assert_eq!(body_of(&sig).len(), 64);
    assert!(valid(&h, "verify/ed", json!({"input": input, "signature": sig})).await);
    assert!(
        !valid(
            &h,
            "verify/ed",
            json!({"input": b64(b"other"), "signature": sig})
        )
        .await
    );

    // The signature verifies outside Coffer with the published public key.
    let public = unb64(
        h.read("keys/ed").await["keys"]["1"]["public_key"]
            .as_str()
            .unwrap(),
    );
    UnparsedPublicKey::new(&signature::ED25519, &public)
        .verify(b"message", &body_of(&sig))
        .expect("ring verifies");

    // JWS marshaling: URL-safe base64 without padding.
    let jws = sign(
        &h,
        "sign/ed",
        json!({"input": input, "marshaling_algorithm": "jws"}),
    )
    .await;
    assert!(!jws.contains('=') && !jws.contains('+') && !jws.contains('/'));
    assert!(
        valid(
            &h,
            "verify/ed",
            json!({"input": input, "signature": jws, "marshaling_algorithm": "jws"})
        )
        .await
    );

    // Rotation: old signatures verify until min_decryption_version passes them.
    h.write("keys/ed/rotate", json!({})).await;
    let sig2 = sign(&h, "sign/ed", json!({"input": input})).await;
    assert!(sig2.starts_with("vault:v2:"));
    assert!(valid(&h, "verify/ed", json!({"input": input, "signature": sig})).await);
    h.write("keys/ed/config", json!({"min_decryption_version": 2}))
        .await;
    assert_eq!(
        h.write_err("verify/ed", json!({"input": input, "signature": sig}))
            .await
            .1,
        crate::ERR_TOO_OLD
    );
    assert_eq!(
        h.write_err(
            "verify/ed",
            json!({"input": input, "signature": "vault:v9:AAAA"})
        )
        .await
        .1,
        "invalid signature: version is too new"
    );
}

#[tokio::test]
async fn derived_ed25519_signs_per_context() {
    let h = Harness::new();
    h.key("ded", json!({"type": "ed25519", "derived": true}))
        .await;
    let input = b64(b"m");
    let ctx = b64(b"user-7");
    let out = h
        .write("sign/ded", json!({"input": input, "context": ctx}))
        .await;
    let sig = str_of(&out, "signature").to_string();
    let public = unb64(str_of(&out, "public_key"));
    UnparsedPublicKey::new(&signature::ED25519, &public)
        .verify(b"m", &body_of(&sig))
        .expect("derived public key verifies");
    // Same context, same key (signing analogue of convergence).
    let again = h
        .write("sign/ded", json!({"input": input, "context": ctx}))
        .await;
    assert_eq!(str_of(&again, "public_key"), str_of(&out, "public_key"));
    assert!(
        valid(
            &h,
            "verify/ded",
            json!({"input": input, "signature": sig, "context": ctx})
        )
        .await
    );
    assert!(
        !valid(
            &h,
            "verify/ded",
            json!({"input": input, "signature": sig, "context": b64(b"user-8")})
        )
        .await
    );
    assert!(h
        .write_err("sign/ded", json!({"input": input}))
        .await
        .1
        .starts_with("missing 'context'"));
    // Key read: no public key without a context, the derived one with it.
    assert_eq!(h.read("keys/ded").await["keys"]["1"]["public_key"], "");
    let read = h.read_with("keys/ded", json!({"context": ctx})).await;
    assert_eq!(read["keys"]["1"]["public_key"], json!(b64(&public)));
}

fn ring_verify_asn1(curve: &str, pem_key: &str, message: &[u8], der_sig: &[u8]) -> bool {
    // The point is the last 65/97 bytes of the SubjectPublicKeyInfo.
    let body: String = pem_key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let spki = unb64(&body);
    let (alg, point_len): (&dyn signature::VerificationAlgorithm, usize) = match curve {
        "p256" => (&signature::ECDSA_P256_SHA256_ASN1, 65),
        _ => (&signature::ECDSA_P384_SHA384_ASN1, 97),
    };
    let point = &spki[spki.len() - point_len..];
    UnparsedPublicKey::new(alg, point)
        .verify(message, der_sig)
        .is_ok()
}

#[tokio::test]
async fn ecdsa_sign_verify_asn1_and_jws() {
    let h = Harness::new();
    for (name, fixed_len) in [("p256", 64), ("p384", 96)] {
        let key_type = if name == "p256" {
            "ecdsa-p256"
        } else {
            "ecdsa-p384"
        };
        h.key(name, json!({"type": key_type})).await;
        let input = b64(b"ecdsa message");
        let asn1 = sign(&h, &format!("sign/{name}"), json!({"input": input})).await;
        let der_sig = body_of(&asn1);
        assert_eq!(der_sig[0], 0x30, "DER SEQUENCE");
        assert!(
            valid(
                &h,
                &format!("verify/{name}"),
                json!({"input": input, "signature": asn1})
            )
            .await
        );
        assert!(
            !valid(
                &h,
                &format!("verify/{name}"),
                json!({"input": b64(b"x"), "signature": asn1})
            )
            .await
        );
        let pem_key = h.read(&format!("keys/{name}")).await["keys"]["1"]["public_key"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(ring_verify_asn1(name, &pem_key, b"ecdsa message", &der_sig));

        let jws = sign(
            &h,
            &format!("sign/{name}"),
            json!({"input": input, "marshaling_algorithm": "jws"}),
        )
        .await;
        let body = jws.rsplit(':').next().unwrap();
        let fixed = crate::codec::b64_raw_url_decode(body).unwrap();
        assert_eq!(fixed.len(), fixed_len, "r || s");
        assert!(
            valid(
                &h,
                &format!("verify/{name}"),
                json!({"input": input, "signature": jws, "marshaling_algorithm": "jws"})
            )
            .await
        );
        // The wrong marshaling does not verify (or does not even decode).
        let out = h
            .call(
                Operation::Update,
                &format!("verify/{name}"),
                json!({"input": input, "signature": jws}),
            )
            .await;
        assert!(out
            .map(|r| r.data.unwrap()["valid"] == json!(false))
            .unwrap_or(true));
    }
    // Hash algorithm rules on ring: the curve's hash only for signing.
    let input = b64(b"m");
    let ok = sign(&h, "sign/p256/sha2-256", json!({"input": input})).await;
    assert!(
        valid(
            &h,
            "verify/p256",
            json!({"input": input, "signature": ok, "hash_algorithm": "sha2-256"})
        )
        .await
    );
    let (status, message) = h
        .write_err(
            "sign/p256",
            json!({"input": input, "hash_algorithm": "sha2-512"}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(message.contains("sha2-512 is not supported"), "{message}");
    let p384 = sign(&h, "sign/p384", json!({"input": input})).await;
    assert!(
        valid(
            &h,
            "verify/p384/sha2-384",
            json!({"input": input, "signature": p384})
        )
        .await
    );
    assert!(
        !valid(
            &h,
            "verify/p384/sha2-256",
            json!({"input": input, "signature": p384})
        )
        .await
    );
    assert!(h
        .write_err("sign/p256", json!({"input": input, "prehashed": true}))
        .await
        .1
        .contains("prehashed"));
    assert_eq!(
        h.write_err(
            "sign/p256",
            json!({"input": input, "hash_algorithm": "md5"})
        )
        .await
        .1,
        "invalid hash algorithm \"md5\""
    );
    assert_eq!(
        h.write_err(
            "sign/p256",
            json!({"input": input, "marshaling_algorithm": "der"})
        )
        .await
        .1,
        "invalid marshaling type \"der\""
    );
}

#[tokio::test]
async fn sign_errors_and_batches() {
    let h = Harness::new();
    h.key("aes", json!({})).await;
    h.key("ed", json!({"type": "ed25519"})).await;
    assert_eq!(
        h.write_err("sign/aes", json!({"input": b64(b"x")})).await.1,
        "key type aes256-gcm96 does not support signing"
    );
    assert_eq!(
        h.write_err("sign/none", json!({"input": b64(b"x")}))
            .await
            .1,
        "signing key not found"
    );
    assert_eq!(
        h.write_err(
            "verify/none",
            json!({"input": b64(b"x"), "signature": "vault:v1:AA=="})
        )
        .await
        .1,
        "signature verification key not found"
    );
    assert_eq!(
        h.write_err("verify/ed", json!({"input": b64(b"x")}))
            .await
            .1,
        "neither a 'signature' nor an 'hmac' were given to verify"
    );
    assert_eq!(
        h.write_err("sign/ed", json!({"input": b64(b"x"), "key_version": 5}))
            .await
            .1,
        "requested version for signing is higher than the latest key version"
    );

    let resp = h
        .call(
            Operation::Update,
            "sign/ed",
            json!({"batch_input": [{"input": b64(b"a"), "reference": "x"}, {"input": "!!"}, {"reference": "no-input"}]}),
        )
        .await
        .unwrap();
    assert_eq!(resp.status, None, "sign batches answer 200");
    let results = resp.data.unwrap()["batch_results"].clone();
    assert!(results[0]["signature"]
        .as_str()
        .unwrap()
        .starts_with("vault:v1:"));
    assert_eq!(results[0]["reference"], "x");
    assert!(results[1]["error"]
        .as_str()
        .unwrap()
        .starts_with("unable to decode input as base64"));
    assert_eq!(results[2]["error"], "missing input");

    let sig = results[0]["signature"].as_str().unwrap().to_string();
    let resp = h
        .call(
            Operation::Update,
            "verify/ed",
            json!({"batch_input": [{"input": b64(b"a"), "signature": sig}, {"input": b64(b"b"), "signature": sig}]}),
        )
        .await
        .unwrap();
    let results = resp.data.unwrap()["batch_results"].clone();
    assert_eq!(results[0]["valid"], true);
    assert_eq!(results[1]["valid"], false);
    assert_eq!(
        h.write_err(
            "verify/ed",
            json!({"batch_input": [{"input": b64(b"a"), "signature": sig}, {"input": b64(b"a")}]})
        )
        .await
        .1,
        "some elements of batch_input are missing 'signature'"
    );
}

#[tokio::test]
async fn hmac_and_verify() {
    let h = Harness::new();
    h.key("k", json!({"exportable": true})).await;
    let input = b64(b"The quick brown fox");
    let out = h.write("hmac/k", json!({"input": input})).await;
    let mac = str_of(&out, "hmac").to_string();
    assert!(mac.starts_with("vault:v1:"));
    // It is HMAC-SHA256 under the version's HMAC key (not the encryption key).
    let exported = h.read("export/hmac-key/k/1").await;
    let hmac_key = unb64(exported["keys"]["1"].as_str().unwrap());
    let expected = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &hmac_key),
        b"The quick brown fox",
    );
    assert_eq!(body_of(&mac), expected.as_ref());
    assert!(valid(&h, "verify/k", json!({"input": input, "hmac": mac})).await);
    assert!(!valid(&h, "verify/k", json!({"input": b64(b"x"), "hmac": mac})).await);

    for (alg, len) in [("sha2-224", 28), ("sha2-384", 48), ("sha2-512", 64)] {
        let by_url = h
            .write(&format!("hmac/k/{alg}"), json!({"input": input}))
            .await;
        let by_body = h
            .write("hmac/k", json!({"input": input, "algorithm": alg}))
            .await;
        assert_eq!(by_url["hmac"], by_body["hmac"]);
        let mac = str_of(&by_url, "hmac").to_string();
        assert_eq!(body_of(&mac).len(), len);
        assert!(
            valid(
                &h,
                &format!("verify/k/{alg}"),
                json!({"input": input, "hmac": mac})
            )
            .await
        );
        assert!(!valid(&h, "verify/k", json!({"input": input, "hmac": mac})).await);
    }
    assert_eq!(
        h.write_err("hmac/k/sha3-256", json!({"input": input}))
            .await
            .1,
        "unsupported algorithm sha3-256"
    );
    assert_eq!(
        h.write_err("hmac/k", json!({})).await.1,
        "missing input for HMAC"
    );
    assert_eq!(
        h.write_err("hmac/none", json!({"input": input})).await.1,
        "encryption key not found"
    );

    // Versions.
    h.write("keys/k/rotate", json!({})).await;
    let v2 = str_of(&h.write("hmac/k", json!({"input": input})).await, "hmac").to_string();
    assert!(v2.starts_with("vault:v2:"));
    let v1 = str_of(
        &h.write("hmac/k", json!({"input": input, "key_version": 1}))
            .await,
        "hmac",
    )
    .to_string();
    assert_eq!(v1, mac);
    assert_eq!(
        h.write_err("hmac/k", json!({"input": input, "key_version": 3}))
            .await
            .1,
        "key version does not exist; latest key version is 2"
    );
    h.write(
        "keys/k/config",
        json!({"min_decryption_version": 2, "min_encryption_version": 2}),
    )
    .await;
    assert_eq!(
        h.write_err("verify/k", json!({"input": input, "hmac": mac}))
            .await
            .1,
        "cannot verify HMAC: version is too old (disallowed by policy)"
    );
    assert_eq!(
        h.write_err("hmac/k", json!({"input": input, "key_version": 1}))
            .await
            .1,
        "cannot generate HMAC: version is too old (disallowed by policy)"
    );
    assert_eq!(
        h.write_err("verify/k", json!({"input": input, "hmac": "vault:v7:AA=="}))
            .await
            .1,
        "invalid HMAC: version is too new"
    );

    // Batches.
    let resp = h
        .call(
            Operation::Update,
            "hmac/k",
            json!({"batch_input": [{"input": input, "reference": "a"}, {"input": "%"}]}),
        )
        .await
        .unwrap();
    let results = resp.data.unwrap()["batch_results"].clone();
    assert_eq!(results[0]["hmac"], json!(v2));
    assert_eq!(results[0]["reference"], "a");
    assert!(results[1]["error"]
        .as_str()
        .unwrap()
        .starts_with("unable to decode input as base64"));
    let resp = h
        .call(
            Operation::Update,
            "verify/k",
            json!({"batch_input": [{"input": input, "hmac": v2}, {"input": input, "hmac": "nope"}]}),
        )
        .await
        .unwrap();
    let results = resp.data.unwrap()["batch_results"].clone();
    assert_eq!(results[0]["valid"], true);
    assert_eq!(results[1]["error"], "invalid HMAC to verify: no prefix");
}

#[tokio::test]
async fn hmac_type_keys() {
    let h = Harness::new();
    h.key(
        "mac",
        json!({"type": "hmac", "key_size": 48, "exportable": true}),
    )
    .await;
    let input = b64(b"data");
    let mac = str_of(
        &h.write("hmac/mac/sha2-512", json!({"input": input})).await,
        "hmac",
    )
    .to_string();
    let key = unb64(
        h.read("export/hmac-key/mac/1").await["keys"]["1"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(key.len(), 48);
    let expected = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA512, &key),
        b"data",
    );
    assert_eq!(body_of(&mac), expected.as_ref());
    assert!(h
        .write_err("sign/mac", json!({"input": input}))
        .await
        .1
        .contains("does not support signing"));
    assert_eq!(
        h.fail(Operation::Read, "export/encryption-key/mac", Value::Null)
            .await
            .1,
        "encryption not supported for the key"
    );
}

#[tokio::test]
async fn hash_and_random() {
    let h = Harness::new();
    let out = h.write("hash", json!({"input": b64(b"abc")})).await;
    assert_eq!(
        out["sum"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let out = h
        .write(
            "hash/sha2-224",
            json!({"input": b64(b"abc"), "format": "base64"}),
        )
        .await;
    assert_eq!(unb64(str_of(&out, "sum")).len(), 28);
    let out = h
        .write(
            "hash",
            json!({"input": b64(b"abc"), "algorithm": "sha2-512"}),
        )
        .await;
    assert_eq!(str_of(&out, "sum").len(), 128);
    assert_eq!(
        h.write_err("hash/sha3-256", json!({"input": ""})).await.1,
        "unsupported algorithm sha3-256"
    );
    assert!(h
        .write_err("hash", json!({"input": "", "format": "bin"}))
        .await
        .1
        .starts_with("unsupported encoding format"));

    let out = h.write("random", json!({})).await;
    assert_eq!(unb64(str_of(&out, "random_bytes")).len(), 32);
    let out = h.write("random/16", json!({"format": "hex"})).await;
    assert_eq!(str_of(&out, "random_bytes").len(), 32);
    let out = h.write("random/platform/8", json!({})).await;
    assert_eq!(unb64(str_of(&out, "random_bytes")).len(), 8);
    let out = h.write("random/all", json!({"bytes": 4})).await;
    assert_eq!(unb64(str_of(&out, "random_bytes")).len(), 4);
    assert_eq!(
        h.write_err("random/0", json!({})).await.1,
        "\"bytes\" cannot be less than 1"
    );
    assert!(h
        .write_err("random", json!({"bytes": 1 << 20}))
        .await
        .1
        .starts_with("\"bytes\" should be less than"));
    assert!(h
        .write_err("random/moon/4", json!({}))
        .await
        .1
        .starts_with("unsupported entropy source"));
    assert!(h
        .write_err("random/abc", json!({}))
        .await
        .1
        .starts_with("error parsing url-set byte count"));
}
