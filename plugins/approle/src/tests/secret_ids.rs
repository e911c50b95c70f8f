//! Secret ids: generation, lookup, destroy, listing by accessor, custom ids, limits,
//! storage hygiene and tidy.

use coffer_sdk::Operation::{Create, Delete, List, Update};
use coffer_sdk::{Backend, SdkError};
use serde_json::{json, Value};

use super::{invalid, status_of, Mount};

#[tokio::test]
async fn generate_lookup_list_destroy() {
    let m = Mount::new();
    m.role("svc", json!({"secret_id_ttl": "1h"})).await;
    let data = m
        .data(
            Update,
            "role/svc/secret-id",
            json!({"metadata": r#"{"team":"blue"}"#, "cidr_list": "127.0.0.0/8", "num_uses": 4}),
        )
        .await;
    let secret_id = data["secret_id"].as_str().unwrap_or_default().to_string();
    let accessor = data["secret_id_accessor"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(secret_id.len(), 36);
    assert_eq!(accessor.len(), 36);
    assert_eq!(data["secret_id_ttl"], json!(3600));
    assert_eq!(data["secret_id_num_uses"], json!(4));

    let looked = m
        .data(
            Update,
            "role/svc/secret-id/lookup",
            json!({"secret_id": secret_id}),
        )
        .await;
    assert_eq!(looked["secret_id_accessor"], json!(accessor));
    assert_eq!(looked["secret_id_num_uses"], json!(4));
    assert_eq!(looked["secret_id_ttl"], json!(3600));
    assert_eq!(looked["metadata"], json!({"team": "blue"}));
    assert_eq!(looked["cidr_list"], json!(["127.0.0.0/8"]));
    assert_eq!(looked["token_bound_cidrs"], json!([]));
    assert_eq!(looked["creation_time"], json!("2024-01-01T00:00:00Z"));
    assert_eq!(looked["last_updated_time"], json!("2024-01-01T00:00:00Z"));
    assert_eq!(looked["expiration_time"], json!("2024-01-01T01:00:00Z"));
    assert!(looked.get("secret_id").is_none());

    let by_accessor = m
        .data(
            Update,
            "role/svc/secret-id-accessor/lookup",
            json!({"secret_id_accessor": accessor}),
        )
        .await;
    assert_eq!(by_accessor, looked);

    let (_, second) = m.secret_id("svc", json!({})).await;
    let mut want = vec![accessor.clone(), second.clone()];
    want.sort();
    assert_eq!(
        m.data(List, "role/svc/secret-id/", json!({})).await,
        json!({ "keys": want })
    );

    // Destroy by secret id, then by accessor.
    m.ok(
        Update,
        "role/svc/secret-id/destroy",
        json!({"secret_id": secret_id}),
    )
    .await;
    let gone = m
        .ok(
            Update,
            "role/svc/secret-id/lookup",
            json!({"secret_id": secret_id}),
        )
        .await;
    assert_eq!(status_of(&Ok(gone)), 204);
    assert_eq!(
        m.err(
            Update,
            "role/svc/secret-id-accessor/lookup",
            json!({"secret_id_accessor": accessor})
        )
        .await
        .status(),
        404
    );
    m.ok(
        Delete,
        "role/svc/secret-id-accessor/destroy",
        json!({"secret_id_accessor": second}),
    )
    .await;
    assert_eq!(
        m.err(List, "role/svc/secret-id/", json!({})).await,
        SdkError::NotFound
    );
    assert!(m.keys_under("accessor/").is_empty());
    assert!(m.keys_under("secret_id/").is_empty());
    // Destroying again is fine; an unknown accessor is a 404.
    m.ok(
        Update,
        "role/svc/secret-id/destroy",
        json!({"secret_id": secret_id}),
    )
    .await;
    assert_eq!(
        m.err(
            Update,
            "role/svc/secret-id-accessor/destroy",
            json!({"secret_id_accessor": second})
        )
        .await
        .status(),
        404
    );
}

#[tokio::test]
async fn accessors_are_scoped_to_their_role() {
    let m = Mount::new();
    m.role("a", json!({})).await;
    m.role("b", json!({})).await;
    let (secret_id, accessor) = m.secret_id("a", json!({})).await;
    for path in [
        "role/b/secret-id-accessor/lookup",
        "role/b/secret-id-accessor/destroy",
    ] {
        let err = m
            .err(Update, path, json!({"secret_id_accessor": accessor}))
            .await;
        assert_eq!(err.status(), 404, "{path}");
    }
    let resp = m
        .ok(
            Update,
            "role/b/secret-id/lookup",
            json!({"secret_id": secret_id}),
        )
        .await;
    assert!(resp.data.is_none());
    m.ok(
        Update,
        "role/b/secret-id/destroy",
        json!({"secret_id": secret_id}),
    )
    .await;
    // Still there for its own role.
    m.ok(
        Update,
        "role/a/secret-id/lookup",
        json!({"secret_id": secret_id}),
    )
    .await
    .data
    .expect("still exists");
}

#[tokio::test]
async fn custom_secret_id() {
    let m = Mount::new();
    let role_id = m.role("c", json!({})).await;
    let data = m
        .data(
            Update,
            "role/c/custom-secret-id",
            json!({"secret_id": "my-own-secret", "metadata": "k=v"}),
        )
        .await;
    assert_eq!(data["secret_id"], json!("my-own-secret"));
    let auth = m
        .login(&role_id, Some("my-own-secret"))
        .await
        .expect("login")
        .auth
        .expect("auth");
    assert_eq!(auth.metadata.get("k").map(String::as_str), Some("v"));
    assert_eq!(
        m.err(
            Update,
            "role/c/custom-secret-id",
            json!({"secret_id": "my-own-secret"})
        )
        .await,
        SdkError::bad("SecretID is already registered")
    );
    for bad in [json!({}), json!({"secret_id": ""}), json!({"secret_id": 3})] {
        let status = status_of(&m.call(Update, "role/c/custom-secret-id", bad.clone()).await);
        assert_eq!(status, 400, "{bad}");
    }
}

#[tokio::test]
async fn secret_ids_are_never_stored_in_the_clear() {
    let m = Mount::new();
    m.role("s", json!({})).await;
    let mut secrets = Vec::new();
    for _ in 0..3 {
        secrets.push(m.secret_id("s", json!({})).await.0);
    }
    m.ok(
        Update,
        "role/s/custom-secret-id",
        json!({"secret_id": "canary-custom-secret-0451"}),
    )
    .await;
    secrets.push("canary-custom-secret-0451".into());
    for (key, value) in m.stored_values().await {
        let text = format!("{key} {}", String::from_utf8_lossy(&value));
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "{key} holds a secret id");
            assert!(
                !text.contains(&secret[..18]),
                "{key} holds part of a secret id"
            );
        }
    }
    assert_eq!(m.keys_under("secret_id/s/").len(), 4);
}

#[tokio::test]
async fn limits_against_the_role() {
    let m = Mount::new();
    m.role(
        "lim",
        json!({"secret_id_num_uses": 3, "secret_id_ttl": 600,
               "secret_id_bound_cidrs": "10.0.0.0/8", "token_bound_cidrs": "10.0.0.0/8"}),
    )
    .await;
    let cases: &[(Value, &str)] = &[
        (
            json!({"num_uses": 4}),
            "num_uses cannot be higher than the role's secret_id_num_uses",
        ),
        (
            json!({"num_uses": 0}),
            "num_uses cannot be higher than the role's secret_id_num_uses",
        ),
        (json!({"num_uses": -1}), "num_uses cannot be negative"),
        (
            json!({"ttl": 601}),
            "ttl cannot be longer than the role's secret_id_ttl",
        ),
        (
            json!({"ttl": 0}),
            "ttl cannot be longer than the role's secret_id_ttl",
        ),
        (json!({"cidr_list": "x"}), "failed to validate CIDR blocks"),
        (
            json!({"token_bound_cidrs": "x"}),
            "failed to validate token CIDR blocks",
        ),
    ];
    for (body, want) in cases {
        assert_eq!(
            m.err(Update, "role/lim/secret-id", body.clone()).await,
            SdkError::bad(*want),
            "{body}"
        );
    }
    for body in [
        json!({"cidr_list": "11.0.0.0/8"}),
        json!({"cidr_list": "10.0.0.0/7"}),
        json!({"token_bound_cidrs": "11.0.0.1"}),
        json!({"metadata": "{\"a\": 1}"}),
        json!({"metadata": ["x"]}),
        json!({"ttl": "later"}),
    ] {
        assert_eq!(
            status_of(&m.call(Update, "role/lim/secret-id", body.clone()).await),
            400,
            "{body}"
        );
    }
    let data = m
        .data(
            Update,
            "role/lim/secret-id",
            json!({"num_uses": 2, "ttl": 60, "cidr_list": "10.1.0.0/16"}),
        )
        .await;
    assert_eq!(data["secret_id_num_uses"], json!(2));
    assert_eq!(data["secret_id_ttl"], json!(60));
    let data = m.data(Update, "role/lim/secret-id", json!({})).await;
    assert_eq!(data["secret_id_num_uses"], json!(3));
    assert_eq!(data["secret_id_ttl"], json!(600));
    // Nothing was written by the failures: two secret ids, two accessors.
    assert_eq!(m.keys_under("secret_id/").len(), 2);
    assert_eq!(m.keys_under("accessor/").len(), 2);
}

#[tokio::test]
async fn mount_max_ttl_caps_the_lifetime() {
    let m = Mount::new();
    m.role("cap", json!({})).await;
    // The test mount's max lease TTL is 32 days.
    let data = m
        .data(Update, "role/cap/secret-id", json!({"ttl": "1000h"}))
        .await;
    assert_eq!(data["secret_id_ttl"], json!(32 * 24 * 3600));
    let data = m.data(Update, "role/cap/secret-id", json!({})).await;
    assert_eq!(data["secret_id_ttl"], json!(0));
    let looked = m
        .data(
            Update,
            "role/cap/secret-id/lookup",
            json!({"secret_id": data["secret_id"]}),
        )
        .await;
    assert_eq!(looked["expiration_time"], json!("0001-01-01T00:00:00Z"));
}

#[tokio::test]
async fn role_without_bind_secret_id_or_missing_role() {
    let m = Mount::new();
    m.role(
        "nobind",
        json!({"bind_secret_id": false, "secret_id_bound_cidrs": "127.0.0.1/32"}),
    )
    .await;
    assert_eq!(
        m.err(Update, "role/nobind/secret-id", json!({})).await,
        SdkError::bad("bind_secret_id is not set on the role")
    );
    assert_eq!(
        m.err(Update, "role/ghost/secret-id", json!({}))
            .await
            .status(),
        404
    );
    for path in [
        "role/ghost/secret-id/lookup",
        "role/ghost/secret-id/destroy",
    ] {
        let err = m.err(Update, path, json!({"secret_id": "x"})).await;
        assert_eq!(
            err,
            SdkError::bad("role \"ghost\" does not exist"),
            "{path}"
        );
    }
    assert_eq!(
        m.err(List, "role/ghost/secret-id", json!({})).await,
        SdkError::bad("role \"ghost\" does not exist")
    );
    assert_eq!(
        m.err(Update, "role/nobind/secret-id/lookup", json!({}))
            .await,
        SdkError::bad("missing secret_id")
    );
    assert_eq!(
        m.err(Update, "role/nobind/secret-id-accessor/lookup", json!({}))
            .await,
        SdkError::bad("missing secret_id_accessor")
    );
}

#[tokio::test]
async fn tidy_removes_expired_and_dangling_entries() {
    let m = Mount::new();
    let role_id = m.role("t", json!({})).await;
    let (short, _) = m.secret_id("t", json!({"ttl": 60})).await;
    let (long, long_accessor) = m.secret_id("t", json!({"ttl": 3600})).await;
    let (forever, _) = m.secret_id("t", json!({})).await;
    // A dangling accessor (its secret id vanished behind our back).
    let (_, dangling) = m.secret_id("t", json!({})).await;
    let hmac_key = m
        .stored_values()
        .await
        .into_iter()
        .find(|(key, value)| {
            key.starts_with("secret_id/")
                && serde_json::from_slice::<Value>(value)
                    .is_ok_and(|v| v["secret_id_accessor"] == json!(dangling))
        })
        .map(|(key, _)| key)
        .expect("entry of the dangling accessor");
    coffer_sdk::Storage::delete(m.storage.as_ref(), &hmac_key)
        .await
        .expect("delete");

    m.advance(61);
    assert_eq!(
        m.login(&role_id, Some(&short)).await.expect_err("expired"),
        invalid()
    );
    let resp = m.ok(Update, "tidy/secret-id", json!({})).await;
    assert_eq!(resp.status, Some(202));
    assert_eq!(m.keys_under("secret_id/t/").len(), 2);
    assert_eq!(m.keys_under("accessor/").len(), 2);
    assert!(!m
        .keys_under("accessor/")
        .contains(&format!("accessor/{dangling}")));
    m.login(&role_id, Some(&long)).await.expect("still valid");
    m.login(&role_id, Some(&forever))
        .await
        .expect("never expires");

    // periodic() tidies too.
    m.advance(3600);
    m.backend.periodic().await.expect("periodic");
    assert_eq!(m.keys_under("secret_id/t/").len(), 1);
    assert!(!m
        .keys_under("accessor/")
        .contains(&format!("accessor/{long_accessor}")));
}

#[tokio::test]
async fn create_op_works_for_secret_id_paths() {
    let m = Mount::new();
    m.role("op", json!({})).await;
    m.ok(Create, "role/op/secret-id", json!({})).await;
}
