//! Transit through the router, driven by `vaultrs`: a round trip for each key type,
//! rotate + min_decryption_version, rewrap, batch, sign/verify, hmac, datakey, derived
//! keys, and export only when allowed.

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};
use vaultrs::api::transit::requests::{
    CreateKeyRequest, DecryptDataRequest, EncryptDataRequest, UpdateKeyConfigurationRequest,
};
use vaultrs::api::transit::KeyType;

use crate::harness::Server;
use crate::pipeline::vaultrs_client;

fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn transit_engine_end_to_end() -> anyhow::Result<()> {
    let server = Server::start_dev("root").await?;
    let client = vaultrs_client(&server, "root");
    vaultrs::sys::mount::enable(&client, "transit", "transit", None).await?;
    let plaintext = b64(b"attack at dawn");

    // Round trip for every symmetric type.
    for (name, kind) in [
        ("aes128", KeyType::Aes128Gcm96),
        ("aes256", KeyType::Aes256Gcm96),
        ("chacha", KeyType::Chacha20Poly1305),
    ] {
        vaultrs::transit::key::create(
            &client,
            "transit",
            name,
            Some(CreateKeyRequest::builder().key_type(kind)),
        )
        .await?;
        let ct =
            vaultrs::transit::data::encrypt(&client, "transit", name, &plaintext, None).await?;
        assert!(ct.ciphertext.starts_with("vault:v1:"), "{}", ct.ciphertext);
        let pt =
            vaultrs::transit::data::decrypt(&client, "transit", name, &ct.ciphertext, None).await?;
        assert_eq!(pt.plaintext, plaintext, "{name}");
    }

    // Rotate, rewrap, min_decryption_version.
    let old =
        vaultrs::transit::data::encrypt(&client, "transit", "aes256", &plaintext, None).await?;
    vaultrs::transit::key::rotate(&client, "transit", "aes256").await?;
    let new =
        vaultrs::transit::data::encrypt(&client, "transit", "aes256", &plaintext, None).await?;
    assert!(new.ciphertext.starts_with("vault:v2:"));
    let rewrapped =
        vaultrs::transit::data::rewrap(&client, "transit", "aes256", &old.ciphertext, None).await?;
    assert!(rewrapped.ciphertext.starts_with("vault:v2:"));
    vaultrs::transit::key::update(
        &client,
        "transit",
        "aes256",
        Some(UpdateKeyConfigurationRequest::builder().min_decryption_version(2u64)),
    )
    .await?;
    let too_old =
        vaultrs::transit::data::decrypt(&client, "transit", "aes256", &old.ciphertext, None).await;
    assert!(
        matches!(
            too_old,
            Err(vaultrs::error::ClientError::APIError { code: 400, .. })
        ),
        "{too_old:?}"
    );
    let pt =
        vaultrs::transit::data::decrypt(&client, "transit", "aes256", &rewrapped.ciphertext, None)
            .await?;
    assert_eq!(pt.plaintext, plaintext);

    // Batch: one bad item gets a per-item error.
    let (status, body) = server
        .call(
            "POST",
            "transit/decrypt/aes128",
            Some("root"),
            Some(json!({"batch_input": [
                {"ciphertext": vaultrs::transit::data::encrypt(&client, "transit", "aes128", &plaintext, None).await?.ciphertext},
                {"ciphertext": "vault:v1:bm90IGEgY2lwaGVydGV4dA=="}
            ]})),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let results = body["data"]["batch_results"].as_array().unwrap();
    assert_eq!(results[0]["plaintext"], plaintext.as_str());
    assert!(results[1]["error"].as_str().is_some());

    // Sign/verify for each asymmetric type.
    for (name, kind) in [
        ("ed", KeyType::Ed25519),
        ("p256", KeyType::EcdsaP256),
        ("p384", KeyType::EcdsaP384),
    ] {
        vaultrs::transit::key::create(
            &client,
            "transit",
            name,
            Some(CreateKeyRequest::builder().key_type(kind)),
        )
        .await?;
        let sig = vaultrs::transit::data::sign(&client, "transit", name, &plaintext, None).await?;
        let (_, ok) = server
            .call(
                "POST",
                &format!("transit/verify/{name}"),
                Some("root"),
                Some(json!({"input": plaintext, "signature": sig.signature})),
            )
            .await?;
        assert_eq!(ok["data"]["valid"], true, "{name}: {ok}");
        let (_, bad) = server
            .call(
                "POST",
                &format!("transit/verify/{name}"),
                Some("root"),
                Some(json!({"input": b64(b"other"), "signature": sig.signature})),
            )
            .await?;
        assert_eq!(bad["data"]["valid"], false, "{name}");
    }

    // HMAC + verify.
    let (_, hmac) = server
        .call(
            "POST",
            "transit/hmac/aes256",
            Some("root"),
            Some(json!({"input": plaintext})),
        )
        .await?;
    let mac = hmac["data"]["hmac"].as_str().unwrap().to_string();
    assert!(mac.starts_with("vault:v"));
    let (_, ok) = server
        .call(
            "POST",
            "transit/verify/aes256",
            Some("root"),
            Some(json!({"input": plaintext, "hmac": mac})),
        )
        .await?;
    assert_eq!(ok["data"]["valid"], true);

    // Datakey: the wrapped key decrypts to the plaintext key.
    let (_, dk) = server
        .call(
            "POST",
            "transit/datakey/plaintext/aes256",
            Some("root"),
            Some(json!({})),
        )
        .await?;
    let (_, un) = server
        .call(
            "POST",
            "transit/decrypt/aes256",
            Some("root"),
            Some(json!({"ciphertext": dk["data"]["ciphertext"]})),
        )
        .await?;
    assert_eq!(un["data"]["plaintext"], dk["data"]["plaintext"]);

    // Derived keys need the right context.
    vaultrs::transit::key::create(
        &client,
        "transit",
        "derived",
        Some(CreateKeyRequest::builder().derived(true)),
    )
    .await?;
    let ctx = b64(b"tenant-1");
    let ct = vaultrs::transit::data::encrypt(
        &client,
        "transit",
        "derived",
        &plaintext,
        Some(EncryptDataRequest::builder().context(ctx.clone())),
    )
    .await?;
    let pt = vaultrs::transit::data::decrypt(
        &client,
        "transit",
        "derived",
        &ct.ciphertext,
        Some(DecryptDataRequest::builder().context(ctx)),
    )
    .await?;
    assert_eq!(pt.plaintext, plaintext);
    let wrong = vaultrs::transit::data::decrypt(
        &client,
        "transit",
        "derived",
        &ct.ciphertext,
        Some(DecryptDataRequest::builder().context(b64(b"tenant-2"))),
    )
    .await;
    assert!(wrong.is_err());

    // Export only when exportable.
    let (status, _) = server
        .call(
            "GET",
            "transit/export/encryption-key/aes256",
            Some("root"),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    vaultrs::transit::key::create(
        &client,
        "transit",
        "exp",
        Some(CreateKeyRequest::builder().exportable(true)),
    )
    .await?;
    let (status, body) = server
        .call(
            "GET",
            "transit/export/encryption-key/exp",
            Some("root"),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["data"]["keys"]["1"].is_string());

    // Listing and deletion rules.
    let keys: Value = server
        .call("LIST", "transit/keys", Some("root"), None)
        .await?
        .1;
    assert!(keys["data"]["keys"].as_array().unwrap().len() >= 8);
    let (status, _) = server
        .call("DELETE", "transit/keys/exp", Some("root"), None)
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "deletion_allowed is false");
    Ok(())
}
