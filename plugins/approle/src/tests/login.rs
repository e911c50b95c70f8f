//! Login and renew: the auth block, wrong credentials, expiry, use counts (also under
//! concurrency), CIDR bindings and roles without secret ids.

use std::sync::Arc;
use std::time::Duration;

use coffer_sdk::Operation::{Delete, Update};
use coffer_sdk::SdkError;
use serde_json::{json, Value};

use super::{invalid, Mount};

#[tokio::test]
async fn login_success_fills_the_auth_block() {
    let m = Mount::new();
    let role_id = m
        .role(
            "Web",
            json!({"token_policies": ["dev", "ops"], "token_ttl": "5m", "token_max_ttl": "30m",
                   "token_num_uses": 7, "token_bound_cidrs": "127.0.0.0/8"}),
        )
        .await;
    let (secret_id, _) = m
        .secret_id(
            "web",
            json!({"metadata": {"env": "prod", "role_name": "spoofed"},
                   "token_bound_cidrs": "127.0.0.1"}),
        )
        .await;
    let resp = m
        .login(&format!("  {role_id} "), Some(&format!("{secret_id}\n")))
        .await
        .expect("login");
    assert!(resp.data.is_none());
    let auth = resp.auth.expect("auth");
    assert_eq!(auth.policies, vec!["dev".to_string(), "ops".to_string()]);
    assert_eq!(auth.ttl, Duration::from_secs(300));
    assert_eq!(auth.max_ttl, Duration::from_secs(1800));
    assert_eq!(auth.num_uses, 7);
    assert!(auth.renewable);
    assert_eq!(auth.token_type, "service");
    // The secret id's token CIDRs override the role's.
    assert_eq!(auth.bound_cidrs, vec!["127.0.0.1".to_string()]);
    // role_name always wins over metadata of the same name.
    assert_eq!(
        auth.metadata,
        [
            ("env".to_string(), "prod".to_string()),
            ("role_name".to_string(), "web".to_string())
        ]
        .into()
    );
    assert_eq!(auth.internal.get("role_name"), Some(&json!("web")));
}

#[tokio::test]
async fn wrong_credentials_fail_alike() {
    let m = Mount::new();
    let role_id = m.role("a", json!({})).await;
    let other_role = m.role("b", json!({})).await;
    let (secret_id, accessor) = m.secret_id("a", json!({})).await;
    let (other_secret, _) = m.secret_id("b", json!({})).await;
    let cases = [
        (role_id.as_str(), "not-the-secret"),
        ("not-a-role-id", secret_id.as_str()),
        (role_id.as_str(), other_secret.as_str()),
        (other_role.as_str(), secret_id.as_str()),
        // The accessor is not a credential.
        (role_id.as_str(), accessor.as_str()),
    ];
    for (r, s) in cases {
        assert_eq!(
            m.login(r, Some(s)).await.expect_err("bad"),
            invalid(),
            "{r} {s}"
        );
    }
    assert_eq!(
        m.login(&role_id, None).await.expect_err("no secret"),
        SdkError::bad("missing secret_id")
    );
    let missing_role = m
        .call(Update, "login", json!({"secret_id": secret_id}))
        .await;
    assert_eq!(
        missing_role.expect_err("no role id"),
        SdkError::bad("missing role_id")
    );
    for body in [
        json!({"role_id": 5, "secret_id": secret_id}),
        json!({"role_id": role_id, "secret_id": ["x"]}),
        json!({"role_id": "  "}),
    ] {
        let status = m
            .call(Update, "login", body.clone())
            .await
            .map_err(|e| e.status());
        assert_eq!(status.err(), Some(400), "{body}");
    }
    // Before any role exists (no salt yet), logins fail the same way.
    let empty = Mount::new();
    assert_eq!(
        empty.login("x", Some("y")).await.expect_err("empty"),
        invalid()
    );
    m.login(&role_id, Some(&secret_id))
        .await
        .expect("still fine");
}

#[tokio::test]
async fn expired_secret_id() {
    let m = Mount::new();
    let role_id = m.role("exp", json!({"secret_id_ttl": 60})).await;
    let (secret_id, _) = m.secret_id("exp", json!({})).await;
    m.advance(59);
    m.login(&role_id, Some(&secret_id)).await.expect("not yet");
    m.advance(1);
    assert_eq!(
        m.login(&role_id, Some(&secret_id))
            .await
            .expect_err("expired"),
        invalid()
    );
}

#[tokio::test]
async fn expired_secret_id_with_real_time() {
    let storage = coffer_sdk::testing::MemStorage::new();
    let backend = crate::factory(coffer_sdk::BackendConfig {
        mount_point: "approle/".into(),
        options: Default::default(),
        storage: storage.clone(),
    })
    .expect("factory");
    let call = |op, path: &str, body: Value| {
        let mut req = coffer_sdk::testing::request(storage.clone(), op, path, body);
        let backend = backend.clone();
        async move { backend.handle_request(&mut req).await }
    };
    call(Update, "role/rt", json!({})).await.expect("role");
    let role_id = call(coffer_sdk::Operation::Read, "role/rt/role-id", json!({}))
        .await
        .expect("role id")
        .data
        .and_then(|d| d.get("role_id").cloned())
        .unwrap_or_default();
    let secret = call(Update, "role/rt/secret-id", json!({"ttl": 1}))
        .await
        .expect("secret")
        .data
        .and_then(|d| d.get("secret_id").cloned())
        .unwrap_or_default();
    let body = json!({"role_id": role_id, "secret_id": secret});
    call(Update, "login", body.clone()).await.expect("fresh");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        call(Update, "login", body).await.expect_err("expired"),
        invalid()
    );
}

#[tokio::test]
async fn num_uses_counts_down_and_the_last_use_deletes() {
    let m = Mount::new();
    let role_id = m.role("n", json!({"secret_id_num_uses": 2})).await;
    let (secret_id, accessor) = m.secret_id("n", json!({})).await;
    m.advance(5);
    m.login(&role_id, Some(&secret_id))
        .await
        .expect("first use");
    let looked = m
        .data(
            Update,
            "role/n/secret-id/lookup",
            json!({"secret_id": secret_id}),
        )
        .await;
    assert_eq!(looked["secret_id_num_uses"], json!(1));
    assert_eq!(looked["last_updated_time"], json!("2024-01-01T00:00:05Z"));
    let auth = m
        .login(&role_id, Some(&secret_id))
        .await
        .expect("second use");
    assert!(auth.auth.is_some());
    assert_eq!(
        m.login(&role_id, Some(&secret_id))
            .await
            .expect_err("spent"),
        invalid()
    );
    assert!(m.keys_under("secret_id/").is_empty());
    assert!(!m
        .keys_under("accessor/")
        .contains(&format!("accessor/{accessor}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_logins_never_overspend() {
    let m = Arc::new(Mount::new());
    let role_id = m.role("race", json!({})).await;
    let (secret_id, _) = m.secret_id("race", json!({"num_uses": 5})).await;
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let (m, role_id, secret_id) = (m.clone(), role_id.clone(), secret_id.clone());
        tasks.push(tokio::spawn(async move {
            m.login(&role_id, Some(&secret_id)).await.is_ok()
        }));
    }
    let mut successes = 0;
    for task in tasks {
        if task.await.unwrap_or(false) {
            successes += 1;
        }
    }
    assert_eq!(successes, 5);
    assert!(m.keys_under("secret_id/").is_empty());
}

#[tokio::test]
async fn cidr_bindings() {
    let m = Mount::new();
    let role_id = m
        .role(
            "c",
            json!({"secret_id_bound_cidrs": ["10.0.0.0/8", "192.168.1.1"]}),
        )
        .await;
    let (wide, _) = m.secret_id("c", json!({})).await;
    let (narrow, _) = m
        .secret_id("c", json!({"cidr_list": "10.1.0.0/16", "num_uses": 5}))
        .await;
    for remote in ["10.9.9.9", "192.168.1.1:4000"] {
        m.login_from(&role_id, Some(&wide), Some(remote))
            .await
            .expect(remote);
    }
    for remote in [Some("11.0.0.1"), Some("192.168.1.2"), None] {
        let err = m
            .login_from(&role_id, Some(&wide), remote)
            .await
            .expect_err("outside the role's blocks");
        assert!(
            err.to_string()
                .contains("unauthorized by CIDR restrictions on the role"),
            "{err}"
        );
        assert_eq!(err.status(), 400);
    }
    m.login_from(&role_id, Some(&narrow), Some("10.1.2.3"))
        .await
        .expect("inside the secret id's block");
    let err = m
        .login_from(&role_id, Some(&narrow), Some("10.2.0.1"))
        .await
        .expect_err("outside the secret id's block");
    assert!(
        err.to_string()
            .contains("unauthorized through CIDR restrictions on the secret ID"),
        "{err}"
    );
    // A refused address does not spend a use.
    let looked = m
        .data(
            Update,
            "role/c/secret-id/lookup",
            json!({"secret_id": narrow}),
        )
        .await;
    assert_eq!(looked["secret_id_num_uses"], json!(4));
    // A wrong secret id from outside is still just invalid.
    assert_eq!(
        m.login_from(&role_id, Some("nope"), Some("11.0.0.1"))
            .await
            .expect_err("bad"),
        invalid()
    );
}

#[tokio::test]
async fn role_without_bind_secret_id_logs_in_with_role_id_only() {
    let m = Mount::new();
    let role_id = m
        .role(
            "nb",
            json!({"bind_secret_id": false, "secret_id_bound_cidrs": "127.0.0.0/8",
                   "token_policies": "p"}),
        )
        .await;
    let auth = m
        .login(&role_id, None)
        .await
        .expect("role id only")
        .auth
        .expect("auth");
    assert_eq!(auth.policies, vec!["p".to_string()]);
    assert_eq!(
        auth.metadata,
        [("role_name".to_string(), "nb".to_string())].into()
    );
    // A secret id is simply not needed (and not checked).
    m.login(&role_id, Some("whatever")).await.expect("ignored");
    m.login_from(&role_id, None, Some("10.0.0.1"))
        .await
        .expect_err("outside the role's blocks");
    assert_eq!(
        m.login("wrong", None).await.expect_err("bad role id"),
        invalid()
    );
}

#[tokio::test]
async fn renew_rereads_the_role() {
    let m = Mount::new();
    let role_id = m
        .role("r", json!({"token_ttl": 60, "token_policies": "a"}))
        .await;
    let (secret_id, _) = m.secret_id("r", json!({})).await;
    let auth = m
        .login(&role_id, Some(&secret_id))
        .await
        .expect("login")
        .auth
        .expect("auth");
    let internal = Value::Object(auth.internal.clone());
    m.ok(
        Update,
        "role/r",
        json!({"token_ttl": 90, "token_period": 45}),
    )
    .await;
    let mut req = coffer_sdk::testing::request(m.storage.clone(), Update, "", Value::Null);
    let renewed = coffer_sdk::Backend::renew(m.backend.as_ref(), &mut req, &internal)
        .await
        .expect("renew")
        .auth
        .expect("auth");
    assert_eq!(renewed.ttl, Duration::from_secs(90));
    assert_eq!(renewed.period, Duration::from_secs(45));
    m.ok(Delete, "role/r", json!({})).await;
    let err = coffer_sdk::Backend::renew(m.backend.as_ref(), &mut req, &internal)
        .await
        .expect_err("role gone");
    assert_eq!(
        err,
        SdkError::bad("role \"r\" does not exist during renewal")
    );
    assert!(
        coffer_sdk::Backend::renew(m.backend.as_ref(), &mut req, &json!({}))
            .await
            .is_err()
    );
}
