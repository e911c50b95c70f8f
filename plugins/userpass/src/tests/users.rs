//! User management: create, read, list, delete, password and policy changes, legacy
//! fields, and bad input.

use coffer_sdk::Operation::{Create, Delete, List, Read, Update};
use coffer_sdk::{Backend, Operation, SdkError};
use serde_json::{json, Value};

use super::{status_of, Mount};

#[tokio::test]
async fn create_read_list_delete() {
    let m = Mount::new();
    m.ok(
        Create,
        "users/Alice",
        json!({"password": "pw-a", "token_policies": "dev, ops", "token_ttl": "1h",
               "token_max_ttl": 7200, "token_num_uses": 3, "token_period": "0"}),
    )
    .await;
    m.ok(Create, "users/bob", json!({"password": "pw-b"})).await;

    let alice = m.data(Read, "users/alice", json!({})).await;
    assert_eq!(
        alice,
        json!({
            "token_policies": ["dev", "ops"],
            "token_ttl": 3600,
            "token_max_ttl": 7200,
            "token_explicit_max_ttl": 0,
            "token_period": 0,
            "token_num_uses": 3,
            "token_bound_cidrs": [],
            "token_no_default_policy": false,
            "token_type": "default",
        })
    );
    assert!(alice.get("password").is_none() && alice.get("password_hash").is_none());
    // Names are case-insensitive.
    assert_eq!(m.data(Read, "users/ALICE", json!({})).await, alice);

    assert_eq!(
        m.data(List, "users/", json!({})).await,
        json!({"keys": ["alice", "bob"]})
    );

    // An update keeps what it does not mention.
    m.ok(Update, "users/alice", json!({"token_ttl": 60})).await;
    let alice = m.data(Read, "users/alice", json!({})).await;
    assert_eq!(alice["token_ttl"], json!(60));
    assert_eq!(alice["token_policies"], json!(["dev", "ops"]));

    m.ok(Delete, "users/alice", json!({})).await;
    assert_eq!(
        m.err(Read, "users/alice", json!({})).await,
        SdkError::NotFound
    );
    assert_eq!(
        m.data(List, "users", json!({})).await,
        json!({"keys": ["bob"]})
    );
    m.ok(Delete, "users/bob", json!({})).await;
    // Empty list is a 404, as Vault; deleting a missing user is fine.
    assert_eq!(m.err(List, "users/", json!({})).await, SdkError::NotFound);
    m.ok(Delete, "users/bob", json!({})).await;
}

#[tokio::test]
async fn existence_check_follows_the_user() {
    let m = Mount::new();
    let probe =
        |path: &str| coffer_sdk::testing::request(m.storage.clone(), Update, path, json!({}));
    assert_eq!(
        m.backend.existence_check(&probe("users/carol")).await,
        Ok(Some(false))
    );
    m.ok(Create, "users/carol", json!({"password": "x"})).await;
    assert_eq!(
        m.backend.existence_check(&probe("users/Carol")).await,
        Ok(Some(true))
    );
    assert_eq!(
        m.backend.existence_check(&probe("login/carol")).await,
        Ok(None)
    );
}

#[tokio::test]
async fn legacy_fields_upgrade_like_vault() {
    let m = Mount::new();
    m.ok(
        Create,
        "users/leg",
        json!({"password": "x", "policies": ["A", "b"], "ttl": 30, "bound_cidrs": "10.0.0.0/8"}),
    )
    .await;
    let data = m.data(Read, "users/leg", json!({})).await;
    assert_eq!(data["policies"], json!(["a", "b"]));
    assert_eq!(data["token_policies"], json!(["a", "b"]));
    assert_eq!(data["ttl"], json!(30));
    assert_eq!(data["token_ttl"], json!(30));
    assert_eq!(data["bound_cidrs"], json!(["10.0.0.0/8"]));
    assert!(data.get("max_ttl").is_none());

    // The new name wins and clears the legacy one.
    m.ok(
        Update,
        "users/leg",
        json!({"policies": ["ignored"], "token_policies": ["c"]}),
    )
    .await;
    let data = m.data(Read, "users/leg", json!({})).await;
    assert_eq!(data["token_policies"], json!(["c"]));
    assert!(data.get("policies").is_none());
}

#[tokio::test]
async fn policies_endpoint() {
    let m = Mount::new();
    assert_eq!(
        m.err(
            Update,
            "users/nobody/policies",
            json!({"token_policies": "a"})
        )
        .await,
        SdkError::bad("username does not exist")
    );
    m.ok(Create, "users/dan", json!({"password": "x"})).await;
    assert_eq!(
        m.err(Update, "users/dan/policies", json!({})).await,
        SdkError::bad("policies or token_policies must be set")
    );
    m.ok(
        Update,
        "users/dan/policies",
        json!({"token_policies": "Z, y"}),
    )
    .await;
    let data = m.data(Read, "users/dan", json!({})).await;
    assert_eq!(data["token_policies"], json!(["y", "z"]));
    m.ok(Update, "users/dan/policies", json!({"policies": ["q"]}))
        .await;
    let data = m.data(Read, "users/dan", json!({})).await;
    assert_eq!(data["policies"], json!(["q"]));
}

#[tokio::test]
async fn password_is_never_stored_in_the_clear() {
    let m = Mount::new();
    let first = "canary-Pa55word-first";
    let second = "canary-Pa55word-second";
    m.ok(Create, "users/eve", json!({"password": first})).await;
    m.ok(Update, "users/eve/password", json!({"password": second}))
        .await;
    m.ok(Create, "users/frank", json!({"password": first}))
        .await;
    let values = m.stored_values().await;
    assert_eq!(values.len(), 2);
    for (key, value) in values {
        let text = String::from_utf8_lossy(&value);
        for secret in [first, second] {
            assert!(
                !text.contains(secret),
                "{key} holds a password in the clear"
            );
            assert!(
                !text.contains(&secret[7..]),
                "{key} holds part of a password"
            );
        }
        assert!(text.contains("$argon2id$v=19$"), "{key}: {text}");
    }
    // The same password under two users hashes differently (per-user salt).
    let eve = m.storage.keys();
    assert_eq!(eve, vec!["user/eve".to_string(), "user/frank".to_string()]);
}

#[tokio::test]
async fn unknown_fields_are_ignored_with_a_warning() {
    let m = Mount::new();
    let resp = m
        .ok(
            Create,
            "users/gil",
            json!({"password": "x", "colour": "blue"}),
        )
        .await;
    assert_eq!(
        resp.warnings,
        vec!["Endpoint ignored these unrecognized parameters: [colour]".to_string()]
    );
}

#[tokio::test]
async fn bad_input_is_400_and_changes_nothing() {
    let m = Mount::new();
    m.ok(
        Create,
        "users/hal",
        json!({"password": "x", "token_ttl": 10}),
    )
    .await;
    let before = m.stored_values().await;
    let cases: &[(&str, Value)] = &[
        ("users/new", json!({})),
        ("users/new", json!({"password": ""})),
        ("users/new", json!({"password": 5})),
        ("users/hal", json!({"password": ["x"]})),
        ("users/hal", json!({"token_ttl": "soon"})),
        ("users/hal", json!({"token_ttl": -4})),
        ("users/hal", json!({"token_max_ttl": true})),
        ("users/hal", json!({"token_num_uses": -1})),
        ("users/hal", json!({"token_num_uses": "many"})),
        ("users/hal", json!({"token_policies": {"a": 1}})),
        ("users/hal", json!({"token_policies": [[1]]})),
        ("users/hal", json!({"token_bound_cidrs": "10.0.0.0/33"})),
        ("users/hal", json!({"token_bound_cidrs": ["nope"]})),
        ("users/hal", json!({"token_type": "weird"})),
        ("users/hal", json!({"token_type": 1})),
        (
            "users/hal",
            json!({"token_type": "batch", "token_period": 60}),
        ),
        (
            "users/hal",
            json!({"token_type": "batch", "token_num_uses": 2}),
        ),
        ("users/hal", json!({"token_ttl": 100, "token_max_ttl": 50})),
        ("users/hal", json!({"token_no_default_policy": "perhaps"})),
        ("users/hal/password", json!({})),
        ("users/hal/password", json!({"password": 1})),
        ("users/hal/policies", json!({"token_policies": 7})),
        ("login/hal", json!({})),
        ("login/hal", json!({"password": {"x": 1}})),
    ];
    for (path, body) in cases {
        let status = status_of(&m.call(Operation::Update, path, body.clone()).await);
        assert_eq!(status, 400, "{path} {body}");
    }
    assert_eq!(m.stored_values().await, before);
}

#[tokio::test]
async fn unknown_paths_and_operations() {
    let m = Mount::new();
    let cases: &[(Operation, &str, u16)] = &[
        (Read, "users", 405),
        (Read, "nope", 404),
        (Read, "users/a/b/c", 404),
        (Create, "users/-x", 404),
        (Read, "login/x", 405),
        (List, "users/x", 405),
        (Operation::Patch, "users/x", 405),
        (Delete, "users/x/password", 405),
    ];
    for (op, path, want) in cases {
        let status = status_of(&m.call(*op, path, json!({})).await);
        assert_eq!(status, *want, "{op:?} {path}");
    }
}
