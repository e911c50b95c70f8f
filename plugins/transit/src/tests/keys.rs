//! Key management: create, read shape, list, delete, config, rotate, trim, upsert
//! switch and automatic rotation.

use chrono::Duration;
use coffer_sdk::Operation;
use serde_json::{json, Value};

use super::*;

#[tokio::test]
async fn create_and_read_in_vaults_shape() {
    let h = Harness::new();
    let created = h.key("k", json!({})).await;
    assert_eq!(created["type"], "aes256-gcm96");
    let read = h.read("keys/k").await;
    for (field, value) in [
        ("name", json!("k")),
        ("type", json!("aes256-gcm96")),
        ("derived", json!(false)),
        ("deletion_allowed", json!(false)),
        ("exportable", json!(false)),
        ("allow_plaintext_backup", json!(false)),
        ("latest_version", json!(1)),
        ("min_available_version", json!(0)),
        ("min_decryption_version", json!(1)),
        ("min_encryption_version", json!(0)),
        ("supports_encryption", json!(true)),
        ("supports_decryption", json!(true)),
        ("supports_derivation", json!(true)),
        ("supports_signing", json!(false)),
        ("auto_rotate_period", json!(0)),
    ] {
        assert_eq!(read[field], value, "{field}");
    }
    let created_at = read["keys"]["1"].as_i64().expect("unix time");
    assert!((chrono::Utc::now().timestamp() - created_at).abs() < 60);
    assert!(!read.contains_key("convergent_encryption_version"));

    // Creating again changes nothing and warns.
    let resp = h
        .call(Operation::Update, "keys/k", json!({"type": "ed25519"}))
        .await
        .unwrap();
    assert_eq!(resp.warnings, vec!["key k already existed".to_string()]);
    assert_eq!(h.read("keys/k").await["type"], "aes256-gcm96");
}

#[tokio::test]
async fn asymmetric_keys_show_public_keys() {
    let h = Harness::new();
    h.key("ed", json!({"type": "ed25519"})).await;
    h.key("p256", json!({"type": "ecdsa-p256"})).await;
    h.key("p384", json!({"type": "ecdsa-p384"})).await;
    let ed = h.read("keys/ed").await;
    assert_eq!(ed["keys"]["1"]["name"], "ed25519");
    assert_eq!(
        unb64(ed["keys"]["1"]["public_key"].as_str().unwrap()).len(),
        32
    );
    assert!(ed["keys"]["1"]["creation_time"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert_eq!(ed["supports_signing"], true);
    assert_eq!(ed["supports_encryption"], false);
    for (name, curve) in [("p256", "P-256"), ("p384", "P-384")] {
        let read = h.read(&format!("keys/{name}")).await;
        assert_eq!(read["keys"]["1"]["name"], curve);
        let pem = read["keys"]["1"]["public_key"].as_str().unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
        assert_eq!(read["supports_derivation"], false);
    }
}

#[tokio::test]
async fn create_validates_like_vault() {
    let h = Harness::new();
    let cases = [
        (
            json!({"type": "rsa-2048"}),
            "key type rsa-2048 is not supported by Coffer",
        ),
        (
            json!({"type": "ecdsa-p521"}),
            "key type ecdsa-p521 is not supported by Coffer",
        ),
        (json!({"type": "des"}), "unknown key type des"),
        (
            json!({"convergent_encryption": true}),
            "convergent encryption requires derivation to be enabled",
        ),
        (
            json!({"type": "ecdsa-p256", "derived": true}),
            "key derivation and convergent encryption not supported for keys of type ecdsa-p256",
        ),
        (
            json!({"type": "ed25519", "derived": true, "convergent_encryption": true}),
            "convergent encryption not supported for keys of type ed25519",
        ),
        (
            json!({"key_size": 64}),
            "key_size is not valid for algorithm aes256-gcm96",
        ),
        (
            json!({"type": "hmac", "key_size": 16}),
            "invalid key_size 16",
        ),
        (
            json!({"auto_rotate_period": "30m"}),
            "auto rotate period must be 0 to disable or at least an hour",
        ),
        (
            json!({"derived": "maybe"}),
            "field \"derived\" must be a boolean",
        ),
    ];
    for (body, message) in cases {
        let (status, got) = h.write_err("keys/x", body.clone()).await;
        assert_eq!((status, got.as_str()), (400, message), "{body}");
    }
    // Nothing was created by the failures.
    assert_eq!(h.fail(Operation::List, "keys/", Value::Null).await.0, 404);
    // Bad names are not routes at all.
    assert_eq!(h.write_err("keys/-x", json!({})).await.0, 404);
    assert_eq!(h.write_err("keys/a/b", json!({})).await.0, 404);
}

#[tokio::test]
async fn hmac_key_size_and_read() {
    let h = Harness::new();
    h.key("mac", json!({"type": "hmac", "key_size": 64})).await;
    let read = h.read("keys/mac").await;
    assert_eq!(read["key_size"], 64);
    assert_eq!(read["supports_signing"], false);
    assert!(read["keys"]["1"].is_i64());
    h.key("mac2", json!({"type": "hmac"})).await;
    assert_eq!(h.read("keys/mac2").await["key_size"], 32);
}

#[tokio::test]
async fn list_and_delete() {
    let h = Harness::new();
    assert_eq!(h.fail(Operation::List, "keys/", Value::Null).await.0, 404);
    h.key("b", json!({})).await;
    h.key("a", json!({})).await;
    let listed = h.call(Operation::List, "keys/", Value::Null).await.unwrap();
    assert_eq!(listed.data.unwrap()["keys"], json!(["a", "b"]));

    let (status, message) = h.fail(Operation::Delete, "keys/a", Value::Null).await;
    assert_eq!(status, 400);
    assert_eq!(
        message,
        "error deleting policy a: deletion is not allowed for this key"
    );
    h.write("keys/a/config", json!({"deletion_allowed": true}))
        .await;
    let deleted = h
        .call(Operation::Delete, "keys/a", Value::Null)
        .await
        .unwrap();
    assert!(deleted.data.is_none());
    assert_eq!(h.fail(Operation::Read, "keys/a", Value::Null).await.0, 404);
    let (status, message) = h.fail(Operation::Delete, "keys/a", Value::Null).await;
    assert_eq!(
        (status, message.as_str()),
        (
            400,
            "error deleting policy a: could not delete key; not found"
        )
    );
    // Decrypting with a deleted key is Vault's 400.
    let (status, message) = h
        .write_err("decrypt/a", json!({"ciphertext": "vault:v1:AAAA"}))
        .await;
    assert_eq!(
        (status, message.as_str()),
        (400, "encryption key not found")
    );
    assert_eq!(
        h.call(Operation::List, "keys", Value::Null)
            .await
            .unwrap()
            .data
            .unwrap()["keys"],
        json!(["b"])
    );
}

#[tokio::test]
async fn config_rules() {
    let h = Harness::new();
    h.key("k", json!({})).await;
    h.write("keys/k/rotate", json!({})).await;
    h.write("keys/k/rotate", json!({})).await;

    let cases = [
        (json!({"min_decryption_version": 4}), "cannot set min decryption version of 4, latest key version is 3"),
        (json!({"min_encryption_version": 9}), "cannot set min encryption version of 9, latest key version is 3"),
        (json!({"min_decryption_version": -1}), "min decryption version cannot be negative"),
        (
            json!({"min_decryption_version": 3, "min_encryption_version": 2}),
            "cannot set min encryption/decryption values; min encryption version of 2 must be greater than or equal to min decryption version of 3",
        ),
        (json!({"auto_rotate_period": 60}), "auto rotate period must be 0 to disable or at least an hour"),
    ];
    for (body, message) in cases {
        let (status, got) = h.write_err("keys/k/config", body.clone()).await;
        assert_eq!((status, got.as_str()), (400, message), "{body}");
    }
    // Failed configs changed nothing.
    assert_eq!(h.read("keys/k").await["min_decryption_version"], 1);

    let out = h
        .write(
            "keys/k/config",
            json!({"min_decryption_version": 2, "min_encryption_version": 3, "exportable": true, "auto_rotate_period": "2h"}),
        )
        .await;
    assert_eq!(out["min_decryption_version"], 2);
    assert_eq!(out["min_encryption_version"], 3);
    assert_eq!(out["exportable"], true);
    assert_eq!(out["auto_rotate_period"], 7200);
    // exportable and allow_plaintext_backup cannot be unset.
    let out = h.write("keys/k/config", json!({"exportable": false})).await;
    assert_eq!(out["exportable"], true);
    // min_decryption_version 0 is forced to 1 with Vault's warning.
    let resp = h
        .call(
            Operation::Update,
            "keys/k/config",
            json!({"min_decryption_version": 0, "min_encryption_version": 0}),
        )
        .await
        .unwrap();
    assert_eq!(resp.data.unwrap()["min_decryption_version"], 1);
    assert_eq!(resp.warnings.len(), 1);
    let (status, message) = h.write_err("keys/none/config", json!({})).await;
    assert_eq!(
        (status, message.as_str()),
        (400, "no existing key named none could be found")
    );
}

#[tokio::test]
async fn rotate_and_trim() {
    let h = Harness::new();
    h.key("k", json!({"exportable": true})).await;
    for _ in 0..3 {
        h.write("keys/k/rotate", json!({})).await;
    }
    assert_eq!(h.read("keys/k").await["latest_version"], 4);
    let old = h.encrypt("k", b"v4 data", json!({"key_version": 2})).await;
    assert!(old.starts_with("vault:v2:"));

    let cases = [
        (json!({}), "missing min_available_version"),
        (
            json!({"min_available_version": 2}),
            "minimum available version cannot be set when minimum encryption version is not set",
        ),
    ];
    for (body, message) in cases {
        assert_eq!(h.write_err("keys/k/trim", body).await.1, message);
    }
    h.write(
        "keys/k/config",
        json!({"min_decryption_version": 3, "min_encryption_version": 4}),
    )
    .await;
    assert_eq!(
        h.write_err("keys/k/trim", json!({"min_available_version": 4}))
            .await
            .1,
        "minimum available version cannot be greater than minimum decryption version"
    );
    assert_eq!(
        h.write_err("keys/k/trim", json!({"min_available_version": 0}))
            .await
            .1,
        "minimum available version should be positive"
    );
    let out = h
        .write("keys/k/trim", json!({"min_available_version": 3}))
        .await;
    assert_eq!(out["min_available_version"], 3);
    let keys = out["keys"].as_object().unwrap();
    assert_eq!(keys.keys().cloned().collect::<Vec<_>>(), vec!["3", "4"]);
    assert_eq!(
        h.write_err("keys/k/trim", json!({"min_available_version": 2}))
            .await
            .1,
        "minimum available version cannot be decremented"
    );
    // Trimmed versions are gone for good, also after a reload from storage.
    let fresh = h.sibling();
    let exported = fresh.read("export/encryption-key/k").await;
    assert_eq!(exported["keys"].as_object().unwrap().len(), 2);
    assert_eq!(
        fresh
            .write_err("decrypt/k", json!({"ciphertext": old}))
            .await
            .1,
        crate::ERR_TOO_OLD
    );
    // Lowering min_decryption_version below the trim point is refused.
    assert_eq!(
        h.write_err("keys/k/config", json!({"min_decryption_version": 2}))
            .await
            .1,
        "min decryption version should not be less then min available version"
    );
    assert_eq!(
        h.write_err("keys/nope/rotate", json!({})).await.1,
        "key not found"
    );
    assert_eq!(
        h.write_err("keys/nope/trim", json!({})).await.1,
        "invalid key name"
    );
}

#[tokio::test]
async fn upsert_can_be_disabled() {
    let h = Harness::new();
    assert_eq!(h.read("config/keys").await["disable_upsert"], false);
    h.write("config/keys", json!({"disable_upsert": true}))
        .await;
    assert_eq!(h.read("config/keys").await["disable_upsert"], true);
    let (status, message) = h
        .fail(
            Operation::Create,
            "encrypt/new",
            json!({"plaintext": b64(b"x")}),
        )
        .await;
    assert_eq!(
        (status, message.as_str()),
        (400, "encryption key not found")
    );
    h.write("config/keys", json!({"disable_upsert": false}))
        .await;
    h.create("encrypt/new", json!({"plaintext": b64(b"x")}))
        .await;
    assert_eq!(h.read("keys/new").await["type"], "aes256-gcm96");
}

#[tokio::test]
async fn automatic_rotation() {
    let h = Harness::new();
    h.key("auto", json!({"auto_rotate_period": "1h"})).await;
    h.key("manual", json!({})).await;
    assert_eq!(
        h.backend.rotate_due_keys(h.storage.as_ref()).await.unwrap(),
        0
    );

    // Age the latest version by rewriting the stored creation time.
    let current = h
        .backend
        .policy(h.storage.as_ref(), "auto")
        .await
        .unwrap()
        .unwrap();
    let mut aged = (*current).clone();
    let latest = aged.latest().unwrap();
    let older = crate::policy::KeyVersion::assemble(
        &aged,
        latest.key.clone(),
        latest.hmac_key.clone(),
        latest.public_key.clone(),
        latest.creation_time - Duration::hours(2),
        0,
    )
    .unwrap();
    aged.versions.insert(1, Arc::new(older));
    h.backend.store(h.storage.as_ref(), aged).await.unwrap();

    h.backend.periodic().await.unwrap();
    assert_eq!(h.read("keys/auto").await["latest_version"], 2);
    assert_eq!(h.read("keys/manual").await["latest_version"], 1);
    // Not due again right away.
    assert_eq!(
        h.backend.rotate_due_keys(h.storage.as_ref()).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn unknown_paths_and_operations() {
    let h = Harness::new();
    h.key("k", json!({})).await;
    assert_eq!(h.fail(Operation::Read, "nothing", Value::Null).await.0, 404);
    assert_eq!(
        h.fail(Operation::Read, "encrypt/k", Value::Null).await.0,
        405
    );
    assert_eq!(
        h.fail(Operation::Delete, "keys/k/rotate", Value::Null)
            .await
            .0,
        405
    );
    assert_eq!(
        h.fail(Operation::Update, "export/encryption-key/k", json!({}))
            .await
            .0,
        405
    );
}
