//! Roles: create, read, list, update, delete, the role id, constraints and bad input.

use coffer_sdk::Operation::{Create, Delete, List, Read, Update};
use coffer_sdk::{Backend, Operation, SdkError};
use serde_json::{json, Value};

use super::{invalid, status_of, Mount};

#[tokio::test]
async fn role_crud() {
    let m = Mount::new();
    m.ok(
        Create,
        "role/Web",
        json!({"token_policies": "b,A", "token_ttl": "20m", "token_max_ttl": "1h",
               "secret_id_ttl": "10m", "secret_id_num_uses": 3,
               "secret_id_bound_cidrs": ["10.0.0.0/8"]}),
    )
    .await;
    let data = m.data(Read, "role/web", json!({})).await;
    assert_eq!(
        data,
        json!({
            "bind_secret_id": true,
            "secret_id_bound_cidrs": ["10.0.0.0/8"],
            "secret_id_num_uses": 3,
            "secret_id_ttl": 600,
            "local_secret_ids": false,
            "token_policies": ["a", "b"],
            "token_ttl": 1200,
            "token_max_ttl": 3600,
            "token_explicit_max_ttl": 0,
            "token_period": 0,
            "token_num_uses": 0,
            "token_bound_cidrs": [],
            "token_no_default_policy": false,
            "token_type": "default",
        })
    );
    m.ok(Create, "role/db", json!({})).await;
    assert_eq!(
        m.data(List, "role/", json!({})).await,
        json!({"keys": ["db", "web"]})
    );

    // Update keeps what it does not mention, and the role id.
    let role_id = m.data(Read, "role/web/role-id", json!({})).await;
    m.ok(Update, "role/web", json!({"token_ttl": 60, "period": 30}))
        .await;
    let data = m.data(Read, "role/WEB", json!({})).await;
    assert_eq!(data["token_ttl"], json!(60));
    assert_eq!(data["token_period"], json!(30));
    assert_eq!(data["period"], json!(30));
    assert_eq!(data["secret_id_num_uses"], json!(3));
    assert_eq!(m.data(Read, "role/web/role-id", json!({})).await, role_id);

    m.ok(Delete, "role/web", json!({})).await;
    assert_eq!(m.err(Read, "role/web", json!({})).await, SdkError::NotFound);
    assert_eq!(
        m.err(Read, "role/web/role-id", json!({})).await,
        SdkError::NotFound
    );
    m.ok(Delete, "role/db", json!({})).await;
    assert_eq!(m.err(List, "role", json!({})).await, SdkError::NotFound);
    // Only the salt is left.
    assert_eq!(m.storage.keys(), vec!["salt".to_string()]);
}

#[tokio::test]
async fn existence_check_follows_the_role() {
    let m = Mount::new();
    let probe =
        |path: &str| coffer_sdk::testing::request(m.storage.clone(), Update, path, json!({}));
    assert_eq!(
        m.backend.existence_check(&probe("role/x")).await,
        Ok(Some(false))
    );
    m.ok(Create, "role/x", json!({})).await;
    assert_eq!(
        m.backend.existence_check(&probe("role/X")).await,
        Ok(Some(true))
    );
    assert_eq!(m.backend.existence_check(&probe("login")).await, Ok(None));
}

#[tokio::test]
async fn role_id_is_a_uuid_and_can_be_set() {
    let m = Mount::new();
    let generated = m.role("app", json!({})).await;
    assert_eq!(generated.len(), 36);
    assert!(uuid::Uuid::parse_str(&generated).is_ok());
    let (secret_id, _) = m.secret_id("app", json!({})).await;
    m.login(&generated, Some(&secret_id)).await.expect("login");

    m.ok(
        Update,
        "role/app/role-id",
        json!({"role_id": "my-custom-id"}),
    )
    .await;
    assert_eq!(
        m.data(Read, "role/app/role-id", json!({})).await,
        json!({"role_id": "my-custom-id"})
    );
    assert_eq!(
        m.login(&generated, Some(&secret_id))
            .await
            .expect_err("old id"),
        invalid()
    );
    m.login("my-custom-id", Some(&secret_id))
        .await
        .expect("new id");
    // One index entry, for the new id.
    assert_eq!(m.keys_under("role_id/").len(), 1);

    // A role id belongs to one role.
    assert_eq!(
        m.err(Create, "role/other", json!({"role_id": "my-custom-id"}))
            .await,
        SdkError::bad("role_id already in use")
    );
    let given = m.role("third", json!({"role_id": "third-id"})).await;
    assert_eq!(given, "third-id");
    assert_eq!(
        m.err(
            Update,
            "role/third/role-id",
            json!({"role_id": "my-custom-id"})
        )
        .await,
        SdkError::bad("role_id already in use")
    );
    assert_eq!(
        m.err(Update, "role/third/role-id", json!({})).await,
        SdkError::bad("missing role_id")
    );
    assert_eq!(
        m.err(Update, "role/nope/role-id", json!({"role_id": "x"}))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn delete_role_takes_its_secret_ids_along() {
    let m = Mount::new();
    let role_id = m.role("gone", json!({})).await;
    let (secret_id, _) = m.secret_id("gone", json!({})).await;
    m.secret_id("gone", json!({})).await;
    m.role("kept", json!({})).await;
    let (_, kept_accessor) = m.secret_id("kept", json!({})).await;
    m.ok(Delete, "role/gone", json!({})).await;
    assert!(m.keys_under("secret_id/gone/").is_empty());
    assert_eq!(
        m.keys_under("accessor/"),
        vec![format!("accessor/{kept_accessor}")]
    );
    assert_eq!(m.keys_under("role_id/").len(), 1);
    assert_eq!(
        m.login(&role_id, Some(&secret_id)).await.expect_err("gone"),
        invalid()
    );
    // Recreating the role does not resurrect anything.
    let new_id = m.role("gone", json!({})).await;
    assert_ne!(new_id, role_id);
    assert_eq!(
        m.login(&new_id, Some(&secret_id))
            .await
            .expect_err("old secret"),
        invalid()
    );
}

#[tokio::test]
async fn constraints_and_bad_input() {
    let m = Mount::new();
    assert_eq!(
        m.err(Create, "role/open", json!({"bind_secret_id": false}))
            .await,
        SdkError::bad("at least one constraint should be enabled on the role")
    );
    m.ok(Create, "role/r", json!({})).await;
    let before = m.stored_values().await;
    let cases: &[Value] = &[
        json!({"bind_secret_id": false}),
        json!({"bind_secret_id": "sometimes"}),
        json!({"secret_id_num_uses": -1}),
        json!({"secret_id_num_uses": "x"}),
        json!({"secret_id_ttl": "forever"}),
        json!({"secret_id_bound_cidrs": ["300.0.0.0/8"]}),
        json!({"bound_cidr_list": "nope"}),
        json!({"token_bound_cidrs": {"a": 1}}),
        json!({"token_ttl": 100, "token_max_ttl": 10}),
        json!({"token_num_uses": -3}),
        json!({"token_type": "odd"}),
        json!({"token_policies": 12}),
        json!({"role_id": ""}),
        json!({"role_id": 7}),
        json!({"role_id": "x".repeat(4097)}),
        json!({"local_secret_ids": true}),
    ];
    for body in cases {
        let status = status_of(&m.call(Update, "role/r", body.clone()).await);
        assert_eq!(status, 400, "{body}");
    }
    assert_eq!(m.stored_values().await, before);
    let long = format!("role/{}", "a".repeat(4097));
    assert_eq!(status_of(&m.call(Create, &long, json!({})).await), 400);
}

#[tokio::test]
async fn unknown_fields_and_limits_warn() {
    let m = Mount::new();
    let resp = m
        .ok(
            Create,
            "role/w",
            json!({"colour": "red", "token_max_ttl": 999_999_999}),
        )
        .await;
    assert_eq!(resp.warnings.len(), 2, "{:?}", resp.warnings);
    assert!(resp.warnings[1].contains("[colour]"));
}

#[tokio::test]
async fn unknown_paths_and_operations() {
    let m = Mount::new();
    let cases: &[(Operation, &str, u16)] = &[
        (Read, "role", 405),
        (Read, "nope", 404),
        (Read, "role/a/b", 404),
        (Create, "role/-x", 404),
        (Read, "login", 405),
        (List, "role/x", 405),
        (Operation::Patch, "role/x", 405),
        (Read, "role/x/secret-id", 405),
        (Read, "tidy/secret-id", 405),
        (Delete, "role/x/secret-id/lookup", 405),
    ];
    for (op, path, want) in cases {
        let status = status_of(&m.call(*op, path, json!({})).await);
        assert_eq!(status, *want, "{op:?} {path}");
    }
}

#[tokio::test]
async fn hmac_key_survives_invalidation() {
    let m = Mount::new();
    let role_id = m.role("inv", json!({})).await;
    let (secret_id, _) = m.secret_id("inv", json!({})).await;
    let salt = m.stored_values().await;
    m.backend.invalidate("salt");
    m.backend.invalidate("role/inv");
    m.login(&role_id, Some(&secret_id))
        .await
        .expect("reloaded key");
    // The key is made once and kept.
    let salt_after = m.stored_values().await;
    let pick = |v: &[(String, Vec<u8>)]| v.iter().find(|(k, _)| k == "salt").cloned();
    assert_eq!(pick(&salt), pick(&salt_after));
}

#[tokio::test]
async fn per_field_sub_paths() {
    let m = Mount::new();
    m.role("f", json!({"token_policies": "a", "token_ttl": 60}))
        .await;
    assert_eq!(
        m.data(Read, "role/f/token-ttl", json!({})).await,
        json!({"token_ttl": 60})
    );
    m.ok(
        Update,
        "role/f/token-ttl",
        json!({"token_ttl": "2m", "x": 1}),
    )
    .await;
    assert_eq!(
        m.data(Read, "role/f", json!({})).await["token_ttl"],
        json!(120)
    );
    m.ok(Update, "role/f/policies", json!({"policies": "p,q"}))
        .await;
    assert_eq!(
        m.data(Read, "role/f/policies", json!({})).await,
        json!({"token_policies": ["p", "q"], "policies": ["p", "q"]})
    );
    m.ok(
        Update,
        "role/f/bound-cidr-list",
        json!({"bound_cidr_list": "10.0.0.0/8"}),
    )
    .await;
    let resp = m.ok(Read, "role/f/bound-cidr-list", json!({})).await;
    assert_eq!(resp.warnings.len(), 1);
    assert_eq!(
        m.data(Read, "role/f/secret-id-bound-cidrs", json!({}))
            .await,
        json!({"secret_id_bound_cidrs": ["10.0.0.0/8"]})
    );
    m.ok(
        Update,
        "role/f/bind-secret-id",
        json!({"bind_secret_id": false}),
    )
    .await;
    // Resetting the last constraint is refused, as any update that removes it.
    assert_eq!(
        m.err(Delete, "role/f/secret-id-bound-cidrs", json!({}))
            .await,
        SdkError::bad("at least one constraint should be enabled on the role")
    );
    m.ok(Delete, "role/f/bind-secret-id", json!({})).await;
    assert_eq!(
        m.data(Read, "role/f/bind-secret-id", json!({})).await,
        json!({"bind_secret_id": true})
    );
    m.ok(Delete, "role/f/token-ttl", json!({})).await;
    assert_eq!(
        m.data(Read, "role/f", json!({})).await["token_ttl"],
        json!(0)
    );

    assert_eq!(
        m.err(Update, "role/f/token-ttl", json!({})).await,
        SdkError::bad("missing token_ttl")
    );
    assert_eq!(
        m.err(Update, "role/f/token-ttl", json!({"token_ttl": "x"}))
            .await
            .status(),
        400
    );
    assert_eq!(
        m.err(Update, "role/ghost/token-ttl", json!({"token_ttl": 1}))
            .await
            .status(),
        404
    );
    assert_eq!(
        m.err(Read, "role/ghost/token-ttl", json!({})).await,
        SdkError::NotFound
    );
    assert!(m.keys_under("role/ghost").is_empty());
    assert_eq!(
        m.err(
            Update,
            "role/f/local-secret-ids",
            json!({"local_secret_ids": true})
        )
        .await
        .status(),
        405
    );
    assert_eq!(
        m.data(Read, "role/f/local-secret-ids", json!({})).await,
        json!({"local_secret_ids": false})
    );
}
