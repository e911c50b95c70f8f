//! Known-answer tests against Vault's formats, checked with independent code paths:
//! ciphertexts opened with a plain `aes-gcm` / `ring` call, hand-built blobs opened by
//! `decrypt`, HKDF and convergent nonces computed from first principles, Vault-format
//! backups written by hand, and exported keys loaded by `ring`.

use aes_gcm::aead::{Aead, KeyInit, Nonce, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use coffer_sdk::Operation;
use ring::signature::{self, EcdsaKeyPair, KeyPair, UnparsedPublicKey};
use serde_json::{json, Value};

use super::*;

/// A hand-written Vault backup (`keysutil.KeyData`) of one symmetric key version.
fn vault_backup(policy_fields: Value, entries: Value, archive: Value) -> String {
    let mut policy = json!({
        "name": "from-vault",
        "keys": entries,
        "derived": false,
        "kdf": 1,
        "convergent_encryption": false,
        "exportable": true,
        "min_decryption_version": 1,
        "min_encryption_version": 0,
        "latest_version": 1,
        "archive_version": 1,
        "archive_min_version": 0,
        "min_available_version": 0,
        "deletion_allowed": false,
        "convergent_version": -1,
        "type": 0,
        "backup_info": {"time": "2024-05-01T10:20:30.123456789+02:00", "version": 1},
        "restore_info": null,
        "allow_plaintext_backup": true,
        "version_template": "",
        "storage_prefix": "",
        "auto_rotate_period": 0,
        "Imported": false,
        "AllowImportedKeyRotation": false,
    });
    for (k, v) in obj(policy_fields) {
        policy[k] = v;
    }
    let doc = json!({"policy": policy, "archived_keys": {"keys": archive}});
    b64(doc.to_string().as_bytes())
}

fn entry(key: &[u8], hmac_key: &[u8]) -> Value {
    json!({
        "key": b64(key), "hmac_key": b64(hmac_key),
        "time": "2024-05-01T10:00:00.5Z", "ec_x": null, "ec_y": null, "ec_d": null,
        "rsa_key": null, "rsa_public_key": null, "public_key": "",
        "convergent_version": 0, "creation_time": 1714557600
    })
}

fn empty_entry() -> Value {
    json!({"key": null, "hmac_key": null, "time": "0001-01-01T00:00:00Z", "ec_x": null,
           "ec_y": null, "ec_d": null, "rsa_key": null, "rsa_public_key": null,
           "public_key": "", "convergent_version": 0, "creation_time": 0})
}

fn hmac256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut ctx = ring::hmac::Context::with_key(&key);
    for part in parts {
        ctx.update(part);
    }
    ctx.sign().as_ref().to_vec()
}

/// HKDF-SHA256 (RFC 5869) by hand: salt = 32 zero bytes (Go's nil salt), info = context.
fn hkdf_by_hand(ikm: &[u8], info: &[u8], blocks: usize) -> Vec<u8> {
    let prk = hmac256(&[0u8; 32], &[ikm]);
    let mut out = Vec::new();
    let mut previous: Vec<u8> = Vec::new();
    for counter in 1..=blocks {
        previous = hmac256(&prk, &[&previous, info, &[counter as u8]]);
        out.extend_from_slice(&previous);
    }
    out
}

#[tokio::test]
async fn our_ciphertext_opens_with_plain_aes_gcm() {
    let h = Harness::new();
    for (name, key_type) in [
        ("a256", "aes256-gcm96"),
        ("a128", "aes128-gcm96"),
        ("cc", "chacha20-poly1305"),
    ] {
        h.key(name, json!({"type": key_type, "exportable": true}))
            .await;
        let ciphertext = h
            .encrypt(
                name,
                b"known answer",
                json!({"associated_data": b64(b"aad")}),
            )
            .await;
        let key = unb64(
            h.read(&format!("export/encryption-key/{name}/1")).await["keys"]["1"]
                .as_str()
                .unwrap(),
        );
        let blob = body_of(&ciphertext);
        let (nonce, sealed) = blob.split_at(12);
        let payload = Payload {
            msg: sealed,
            aad: b"aad",
        };
        let opened = match key_type {
            "aes256-gcm96" => Aes256Gcm::new_from_slice(&key)
                .unwrap()
                .decrypt(&Nonce::<Aes256Gcm>::try_from(nonce).unwrap(), payload)
                .unwrap(),
            "aes128-gcm96" => Aes128Gcm::new_from_slice(&key)
                .unwrap()
                .decrypt(&Nonce::<Aes128Gcm>::try_from(nonce).unwrap(), payload)
                .unwrap(),
            _ => {
                let k = ring::aead::LessSafeKey::new(
                    ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, &key).unwrap(),
                );
                let mut buf = sealed.to_vec();
                let n = ring::aead::Nonce::try_assume_unique_for_key(nonce).unwrap();
                k.open_in_place(n, ring::aead::Aad::from(b"aad"), &mut buf)
                    .unwrap()
                    .to_vec()
            }
        };
        assert_eq!(opened, b"known answer", "{key_type}");
    }
}

#[tokio::test]
async fn hand_built_blob_decrypts_after_restoring_vault_backup() {
    let h = Harness::new();
    let key = [0x42u8; 32];
    let backup = vault_backup(
        json!({}),
        json!({"1": entry(&key, &[7u8; 32])}),
        json!([empty_entry(), entry(&key, &[7u8; 32])]),
    );
    let resp = h
        .call(Operation::Update, "restore", json!({"backup": backup}))
        .await
        .unwrap();
    assert!(resp.data.is_none());
    let read = h.read("keys/from-vault").await;
    assert_eq!(read["type"], "aes256-gcm96");
    assert_eq!(read["keys"]["1"], 1714557600);
    assert_eq!(read["restore_info"]["version"], 1);
    assert_eq!(
        read["backup_info"]["time"],
        "2024-05-01T08:20:30.123456789Z"
    );

    // Encrypt by hand: random nonce, Vault's layout.
    let mut nonce = [0u8; 12];
    crate::crypto::fill_random(&mut nonce).unwrap();
    let sealed = Aes256Gcm::new_from_slice(&key)
        .unwrap()
        .encrypt(
            &Nonce::<Aes256Gcm>::try_from(&nonce[..]).unwrap(),
            &b"made by hand"[..],
        )
        .unwrap();
    let blob = [&nonce[..], &sealed].concat();
    let ciphertext = format!("vault:v1:{}", b64(&blob));
    assert_eq!(
        h.decrypt("from-vault", &ciphertext, json!({})).await,
        b"made by hand"
    );
    // And the HMAC key came across too.
    let mac = h
        .write("hmac/from-vault", json!({"input": b64(b"x")}))
        .await;
    assert_eq!(body_of(str_of(&mac, "hmac")), hmac256(&[7u8; 32], &[b"x"]));
    // Restoring over an existing key needs force.
    assert_eq!(
        h.write_err("restore", json!({"backup": backup})).await.1,
        "key \"from-vault\" already exists"
    );
    h.write(
        "restore/from-vault",
        json!({"backup": backup, "force": true}),
    )
    .await;
    h.write("restore/second-name", json!({"backup": backup}))
        .await;
    assert_eq!(
        h.decrypt("second-name", &ciphertext, json!({})).await,
        b"made by hand"
    );
}

#[tokio::test]
async fn derived_and_convergent_v3_match_first_principles() {
    let h = Harness::new();
    let key = [0x11u8; 32];
    let mut convergent_entry = entry(&key, &[9u8; 32]);
    convergent_entry["convergent_version"] = json!(3);
    let backup = vault_backup(
        json!({"name": "conv", "derived": true, "convergent_encryption": true}),
        json!({"1": convergent_entry}),
        json!([]),
    );
    h.write("restore", json!({"backup": backup})).await;
    let context = b"the context";
    let plaintext = b"deterministic please";

    let okm = hkdf_by_hand(&key, context, 2);
    let (enc_key, nonce_key) = okm.split_at(32);
    let nonce = &hmac256(nonce_key, &[plaintext])[..12];
    let sealed = Aes256Gcm::new_from_slice(enc_key)
        .unwrap()
        .encrypt(
            &Nonce::<Aes256Gcm>::try_from(nonce).unwrap(),
            &plaintext[..],
        )
        .unwrap();
    let expected = format!("vault:v1:{}", b64(&[nonce, &sealed[..]].concat()));

    let got = h
        .encrypt("conv", plaintext, json!({"context": b64(context)}))
        .await;
    assert_eq!(got, expected, "byte-identical to Vault's convergent v3");
    assert_eq!(
        h.read("keys/conv").await["convergent_encryption_version"],
        -1
    );

    // Plain derived key (not convergent): the HKDF-derived key opens our ciphertext.
    let backup = vault_backup(
        json!({"name": "der", "derived": true}),
        json!({"1": entry(&key, &[9u8; 32])}),
        json!([]),
    );
    h.write("restore", json!({"backup": backup})).await;
    let ciphertext = h
        .encrypt("der", b"derived", json!({"context": b64(context)}))
        .await;
    let blob = body_of(&ciphertext);
    let opened = Aes256Gcm::new_from_slice(enc_key)
        .unwrap()
        .decrypt(
            &Nonce::<Aes256Gcm>::try_from(&blob[..12]).unwrap(),
            &blob[12..],
        )
        .unwrap();
    assert_eq!(opened, b"derived");
}

#[tokio::test]
async fn older_convergent_schemes_from_vault_backups() {
    let h = Harness::new();
    let key = [0x33u8; 32];
    // Scheme 2: nonce = HMAC-SHA256(context, plaintext)[..12], stored in front.
    let mut v2 = entry(&key, &[1u8; 32]);
    v2["convergent_version"] = json!(2);
    let backup = vault_backup(
        json!({"name": "cv2", "derived": true, "convergent_encryption": true}),
        json!({"1": v2}),
        json!([]),
    );
    h.write("restore", json!({"backup": backup})).await;
    let okm = hkdf_by_hand(&key, b"ctx", 1);
    let nonce = &hmac256(b"ctx", &[b"pt"])[..12];
    let sealed = Aes256Gcm::new_from_slice(&okm[..32])
        .unwrap()
        .encrypt(&Nonce::<Aes256Gcm>::try_from(nonce).unwrap(), &b"pt"[..])
        .unwrap();
    let expected = format!("vault:v1:{}", b64(&[nonce, &sealed[..]].concat()));
    assert_eq!(
        h.encrypt("cv2", b"pt", json!({"context": b64(b"ctx")}))
            .await,
        expected
    );

    // Scheme 1 (policy-level convergent_version 1): the caller's nonce, not stored.
    let backup = vault_backup(
        json!({"name": "cv1", "derived": true, "convergent_encryption": true, "convergent_version": 1}),
        json!({"1": entry(&key, &[1u8; 32])}),
        json!([]),
    );
    h.write("restore", json!({"backup": backup})).await;
    let nonce = [5u8; 12];
    let args = json!({"context": b64(b"ctx"), "nonce": b64(&nonce)});
    let ciphertext = h.encrypt("cv1", b"pt", args.clone()).await;
    assert_eq!(
        body_of(&ciphertext).len(),
        2 + 16,
        "nonce not stored in scheme 1"
    );
    assert_eq!(h.decrypt("cv1", &ciphertext, args).await, b"pt");
    assert_eq!(
        h.write_err(
            "decrypt/cv1",
            json!({"ciphertext": ciphertext, "context": b64(b"ctx")})
        )
        .await
        .1,
        "invalid convergent nonce supplied"
    );
}

#[tokio::test]
async fn ecdsa_and_ed25519_from_vault_backups() {
    let h = Harness::new();
    // An ECDSA P-256 key made by ring, written the way Go writes it (big integers).
    let rng = ring::rand::SystemRandom::new();
    let doc =
        EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        doc.as_ref(),
        &rng,
    )
    .unwrap();
    let scalar = crate::der::ec_scalar_from_pkcs8(doc.as_ref())
        .unwrap()
        .to_vec();
    let point = pair.public_key().as_ref().to_vec();
    let dec = |bytes: &[u8]| -> String {
        // Decimal by repeated division, independent of the code under test.
        let mut n: Vec<u32> = bytes.iter().map(|b| u32::from(*b)).collect();
        let mut digits = String::new();
        while n.iter().any(|d| *d != 0) {
            let mut rem = 0u32;
            for d in n.iter_mut() {
                let v = rem * 256 + *d;
                *d = v / 10;
                rem = v % 10;
            }
            digits.insert(0, char::from(b'0' + rem as u8));
        }
        digits
    };
    let ec_entry = format!(
        r#"{{"key":null,"hmac_key":"{}","time":"2024-01-01T00:00:00Z","ec_x":{},"ec_y":{},"ec_d":{},"rsa_key":null,"rsa_public_key":null,"public_key":"","convergent_version":0,"creation_time":1704067200}}"#,
        b64(&[3u8; 32]),
        dec(&point[1..33]),
        dec(&point[33..]),
        dec(&scalar),
    );
    let text = format!(
        r#"{{"policy":{{"name":"ec","keys":{{"1":{ec_entry}}},"derived":false,"kdf":1,"exportable":true,"min_decryption_version":1,"min_encryption_version":0,"latest_version":1,"archive_version":1,"archive_min_version":0,"min_available_version":0,"deletion_allowed":false,"convergent_version":-1,"type":1,"allow_plaintext_backup":true,"version_template":"","auto_rotate_period":0}},"archived_keys":{{"keys":[]}}}}"#
    );
    h.write("restore", json!({"backup": b64(text.as_bytes())}))
        .await;
    let sig = str_of(
        &h.write("sign/ec", json!({"input": b64(b"hi")})).await,
        "signature",
    )
    .to_string();
    UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, &point)
        .verify(b"hi", &body_of(&sig))
        .expect("ring verifies Coffer's signature");
    let theirs = pair.sign(&rng, b"from ring").unwrap();
    let theirs = format!("vault:v1:{}", b64(theirs.as_ref()));
    let out = h
        .write(
            "verify/ec",
            json!({"input": b64(b"from ring"), "signature": theirs}),
        )
        .await;
    assert_eq!(out["valid"], true);

    // Backing it up again writes the same big integers back.
    let backup = str_of(&h.read("backup/ec").await, "backup").to_string();
    let written = String::from_utf8(unb64(&backup)).unwrap();
    assert!(
        written.contains(&format!("\"ec_d\":{}", dec(&scalar))),
        "{written}"
    );

    // Ed25519: Go's 64-byte private key.
    let seed = [8u8; 32];
    let ed = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    let private = [&seed[..], ed.public_key().as_ref()].concat();
    let mut ed_entry = entry(&private, &[4u8; 32]);
    ed_entry["public_key"] = json!(b64(ed.public_key().as_ref()));
    let backup = vault_backup(
        json!({"name": "ed", "type": 2}),
        json!({"1": ed_entry}),
        json!([]),
    );
    h.write("restore", json!({"backup": backup})).await;
    let sig = str_of(
        &h.write("sign/ed", json!({"input": b64(b"m")})).await,
        "signature",
    )
    .to_string();
    assert_eq!(
        body_of(&sig),
        ed.sign(b"m").as_ref(),
        "Ed25519 is deterministic"
    );

    // A corrupted public half is refused.
    let mut bad = private.clone();
    bad[63] ^= 1;
    let backup = vault_backup(
        json!({"name": "bad", "type": 2}),
        json!({"1": entry(&bad, &[4u8; 32])}),
        json!([]),
    );
    let (status, message) = h.write_err("restore", json!({"backup": backup})).await;
    assert_eq!(status, 400);
    assert!(message.contains("inconsistent ed25519 key"), "{message}");
}

#[tokio::test]
async fn vault_backups_with_archived_versions() {
    let h = Harness::new();
    let k1 = [1u8; 32];
    let k2 = [2u8; 32];
    let k3 = [3u8; 32];
    // Versions 1..3, min_decryption_version 2: Vault keeps v1 only in the archive.
    let backup = vault_backup(
        json!({"name": "arch", "latest_version": 3, "archive_version": 3, "min_decryption_version": 2}),
        json!({"2": entry(&k2, &[0u8; 32]), "3": entry(&k3, &[0u8; 32])}),
        json!([
            empty_entry(),
            entry(&k1, &[0u8; 32]),
            entry(&k2, &[0u8; 32]),
            entry(&k3, &[0u8; 32])
        ]),
    );
    h.write("restore", json!({"backup": backup})).await;
    let read = h.read("keys/arch").await;
    assert_eq!(read["latest_version"], 3);
    assert_eq!(read["keys"].as_object().unwrap().len(), 3);
    h.write("keys/arch/config", json!({"min_decryption_version": 1}))
        .await;
    let sealed = Aes256Gcm::new_from_slice(&k1)
        .unwrap()
        .encrypt(
            &Nonce::<Aes256Gcm>::try_from(&[0u8; 12][..]).unwrap(),
            &b"old"[..],
        )
        .unwrap();
    let ciphertext = format!("vault:v1:{}", b64(&[&[0u8; 12][..], &sealed].concat()));
    assert_eq!(h.decrypt("arch", &ciphertext, json!({})).await, b"old");

    // Unsupported things in backups are refused clearly.
    for (fields, message) in [
        (json!({"type": 3}), "RSA keys are not supported by Coffer"),
        (
            json!({"type": 7}),
            "ecdsa-p521 keys are not supported by Coffer",
        ),
        (
            json!({"derived": true, "kdf": 0}),
            "legacy hmac-sha256-counter",
        ),
        (
            json!({"version_template": "x:{{version}}:"}),
            "custom version templates",
        ),
        (json!({"latest_version": 2}), "are not all present"),
    ] {
        let backup = vault_backup(
            fields.clone(),
            json!({"1": entry(&k1, &[0u8; 32])}),
            json!([]),
        );
        let (status, got) = h.write_err("restore/x", json!({"backup": backup})).await;
        assert_eq!(status, 400, "{fields}");
        assert!(got.contains(message), "{fields}: {got}");
    }
    assert_eq!(
        h.write_err("restore", json!({})).await.1,
        "'backup' must be supplied"
    );
    assert!(h
        .write_err("restore", json!({"backup": "%%%"}))
        .await
        .1
        .starts_with("invalid backup"));
    assert!(h
        .write_err("restore", json!({"backup": b64(b"[1,2]")}))
        .await
        .1
        .starts_with("invalid backup"));
}

#[tokio::test]
async fn backup_restore_round_trip_every_type() {
    let h = Harness::new();
    let other = Harness::new();
    for key_type in [
        "aes128-gcm96",
        "aes256-gcm96",
        "chacha20-poly1305",
        "ed25519",
        "ecdsa-p256",
        "ecdsa-p384",
        "hmac",
    ] {
        let name = key_type.replace('-', "_");
        h.key(&name, json!({"type": key_type})).await;
        h.write(&format!("keys/{name}/rotate"), json!({})).await;
        assert_eq!(
            h.fail(Operation::Read, &format!("backup/{name}"), Value::Null)
                .await
                .1,
            "exporting is disallowed on the policy"
        );
        h.write(&format!("keys/{name}/config"), json!({"exportable": true}))
            .await;
        assert_eq!(
            h.fail(Operation::Read, &format!("backup/{name}"), Value::Null)
                .await
                .1,
            "plaintext backup is disallowed on the policy"
        );
        h.write(
            &format!("keys/{name}/config"),
            json!({"allow_plaintext_backup": true}),
        )
        .await;
        let backup = str_of(&h.read(&format!("backup/{name}")).await, "backup").to_string();
        assert_eq!(
            h.read(&format!("keys/{name}")).await["backup_info"]["version"],
            2
        );
        other.write("restore", json!({"backup": backup})).await;

        let input = json!({"input": b64(b"round trip")});
        match key_type {
            "ed25519" | "ecdsa-p256" | "ecdsa-p384" => {
                let sig = str_of(
                    &h.write(&format!("sign/{name}"), input.clone()).await,
                    "signature",
                )
                .to_string();
                let mut body = obj(input.clone());
                body.insert("signature".into(), json!(sig));
                assert_eq!(
                    other
                        .write(&format!("verify/{name}"), Value::Object(body))
                        .await["valid"],
                    true
                );
            }
            "hmac" => {
                let mine = h.write(&format!("hmac/{name}"), input.clone()).await;
                let theirs = other.write(&format!("hmac/{name}"), input.clone()).await;
                assert_eq!(mine["hmac"], theirs["hmac"]);
            }
            _ => {
                let ciphertext = h
                    .encrypt(&name, b"round trip", json!({"key_version": 1}))
                    .await;
                assert_eq!(
                    other.decrypt(&name, &ciphertext, json!({})).await,
                    b"round trip"
                );
            }
        }
        let restored = other.read(&format!("keys/{name}")).await;
        assert_eq!(restored["type"], key_type);
        assert_eq!(restored["latest_version"], 2);
        assert_eq!(restored["restore_info"]["version"], 2);
    }
}

#[tokio::test]
async fn export_only_when_exportable_and_in_vaults_formats() {
    let h = Harness::new();
    h.key("aes", json!({})).await;
    assert_eq!(
        h.fail(Operation::Read, "export/encryption-key/aes", Value::Null)
            .await
            .1,
        "private key material is not exportable"
    );
    assert_eq!(
        h.fail(Operation::Read, "export/encryption-key/none", Value::Null)
            .await
            .0,
        404
    );
    assert_eq!(
        h.fail(Operation::Read, "export/secret-key/aes", Value::Null)
            .await
            .1,
        "invalid export type: secret-key"
    );
    h.write("keys/aes/config", json!({"exportable": true}))
        .await;
    h.write("keys/aes/rotate", json!({})).await;
    let all = h.read("export/encryption-key/aes").await;
    assert_eq!(all["name"], "aes");
    assert_eq!(all["type"], "aes256-gcm96");
    assert_eq!(all["keys"].as_object().unwrap().len(), 2);
    let latest = h.read("export/encryption-key/aes/latest").await;
    assert_eq!(latest["keys"]["2"], all["keys"]["2"]);
    let v1 = h.read("export/encryption-key/aes/v1").await;
    assert_eq!(unb64(v1["keys"]["1"].as_str().unwrap()).len(), 32);
    assert_eq!(
        h.fail(Operation::Read, "export/encryption-key/aes/9", Value::Null)
            .await
            .1,
        "version does not exist or cannot be found"
    );
    assert_eq!(
        h.fail(Operation::Read, "export/signing-key/aes", Value::Null)
            .await
            .1,
        "signing not supported for the key"
    );

    h.key("ec", json!({"type": "ecdsa-p256", "exportable": true}))
        .await;
    let sec1 = h.read("export/signing-key/ec/1").await["keys"]["1"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        sec1.starts_with("-----BEGIN EC PRIVATE KEY-----")
            && sec1.ends_with("-----END EC PRIVATE KEY-----")
    );
    let pkcs8 = unb64(
        h.read_with("export/signing-key/ec/1", json!({"format": "der"}))
            .await["keys"]["1"]
            .as_str()
            .unwrap(),
    );
    let rng = ring::rand::SystemRandom::new();
    let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8, &rng)
        .expect("ring loads the exported PKCS#8");
    let spki = unb64(
        h.read_with("export/public-key/ec/1", json!({"format": "der"}))
            .await["keys"]["1"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(
        crate::der::ec_spki(crate::der::OID_P256, pair.public_key().as_ref()),
        spki
    );
    assert!(hex_of(&spki).starts_with("3059301306072a8648ce3d020106082a8648ce3d030107034200"));

    h.key("ed", json!({"type": "ed25519", "exportable": true}))
        .await;
    let raw = unb64(
        h.read("export/signing-key/ed/1").await["keys"]["1"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(raw.len(), 64, "Go's ed25519.PrivateKey");
    let pkcs8 = unb64(
        h.read_with("export/signing-key/ed/1", json!({"format": "der"}))
            .await["keys"]["1"]
            .as_str()
            .unwrap(),
    );
    let loaded =
        ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8).expect("ring loads it");
    assert_eq!(loaded.public_key().as_ref(), &raw[32..]);
    // Public keys export without `exportable`.
    h.key("ed2", json!({"type": "ed25519"})).await;
    let public = h.read("export/public-key/ed2").await;
    assert_eq!(unb64(public["keys"]["1"].as_str().unwrap()).len(), 32);
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
