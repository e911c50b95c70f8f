//! Login and renew: the auth block, uniform failures, CIDR binding, password changes,
//! and the cost of a login with the real parameters.

use std::time::Duration;

use coffer_sdk::Operation::{Create, Delete, Update};
use coffer_sdk::SdkError;
use serde_json::{json, Value};

use super::Mount;
use crate::password::DEFAULT_PARAMS;

fn invalid() -> SdkError {
    SdkError::bad("invalid username or password")
}

#[tokio::test]
async fn login_success_fills_the_auth_block() {
    let m = Mount::new();
    m.ok(
        Create,
        "users/Ann",
        json!({"password": "s3cret", "token_policies": ["Dev", "ops"], "token_ttl": "10m",
               "token_max_ttl": "1h", "token_period": 0, "token_num_uses": 5,
               "token_no_default_policy": true, "token_bound_cidrs": ["127.0.0.0/8"]}),
    )
    .await;
    let resp = m
        .ok(Update, "login/ANN", json!({"password": "s3cret"}))
        .await;
    assert!(resp.data.is_none());
    let auth = resp.auth.expect("auth block");
    assert_eq!(auth.policies, vec!["dev".to_string(), "ops".to_string()]);
    assert_eq!(
        auth.metadata.get("username").map(String::as_str),
        Some("ann")
    );
    assert_eq!(auth.metadata.len(), 1);
    assert_eq!(auth.display_name, "ann");
    assert_eq!(auth.ttl, Duration::from_secs(600));
    assert_eq!(auth.max_ttl, Duration::from_secs(3600));
    assert_eq!(auth.period, Duration::ZERO);
    assert_eq!(auth.num_uses, 5);
    assert!(auth.renewable);
    assert!(auth.no_default_policy);
    assert_eq!(auth.token_type, "service");
    assert_eq!(auth.bound_cidrs, vec!["127.0.0.0/8".to_string()]);
    assert_eq!(auth.internal.get("username"), Some(&json!("ann")));
    assert_eq!(auth.internal.get("policies"), Some(&json!(["dev", "ops"])));
}

#[tokio::test]
async fn wrong_password_and_unknown_user_fail_alike() {
    let m = Mount::new();
    m.ok(Create, "users/bo", json!({"password": "right"})).await;
    let wrong = m
        .err(Update, "login/bo", json!({"password": "wrong"}))
        .await;
    let unknown = m
        .err(Update, "login/nobody", json!({"password": "right"}))
        .await;
    assert_eq!(wrong, invalid());
    assert_eq!(unknown, invalid());
    assert_eq!(wrong.status(), 400);
    assert_eq!(
        m.err(Update, "login/bo", json!({})).await,
        SdkError::bad("missing password")
    );
}

#[tokio::test]
async fn cidr_bound_login() {
    let m = Mount::new();
    m.ok(
        Create,
        "users/cy",
        json!({"password": "pw", "token_bound_cidrs": "10.1.0.0/16, 192.168.0.9"}),
    )
    .await;
    for inside in ["10.1.2.3", "10.1.255.1:5050", "192.168.0.9"] {
        let resp = m
            .call_from(Update, "login/cy", json!({"password": "pw"}), Some(inside))
            .await;
        assert!(resp.is_ok_and(|r| r.auth.is_some()), "{inside}");
    }
    for outside in [
        Some("10.2.0.1"),
        Some("192.168.0.10"),
        Some("garbage"),
        None,
    ] {
        let err = m
            .call_from(Update, "login/cy", json!({"password": "pw"}), outside)
            .await
            .expect_err("outside the CIDRs");
        assert_eq!(err, SdkError::PermissionDenied, "{outside:?}");
    }
    // A wrong password from outside still reads as a bad password.
    let err = m
        .call_from(
            Update,
            "login/cy",
            json!({"password": "no"}),
            Some("10.2.0.1"),
        )
        .await
        .expect_err("bad password");
    assert_eq!(err, invalid());
}

#[tokio::test]
async fn password_change_invalidates_the_old_one() {
    let m = Mount::new();
    m.ok(Create, "users/dee", json!({"password": "old-pw"}))
        .await;
    m.ok(Update, "login/dee", json!({"password": "old-pw"}))
        .await;
    m.ok(Update, "users/dee/password", json!({"password": "new-pw"}))
        .await;
    assert_eq!(
        m.err(Update, "login/dee", json!({"password": "old-pw"}))
            .await,
        invalid()
    );
    m.ok(Update, "login/dee", json!({"password": "new-pw"}))
        .await;
    // Also through a plain user update.
    m.ok(Update, "users/dee", json!({"password": "newer-pw"}))
        .await;
    assert_eq!(
        m.err(Update, "login/dee", json!({"password": "new-pw"}))
            .await,
        invalid()
    );
    m.ok(Update, "login/dee", json!({"password": "newer-pw"}))
        .await;
}

#[tokio::test]
async fn renew_rereads_the_user() {
    let m = Mount::new();
    m.ok(
        Create,
        "users/eli",
        json!({"password": "pw", "token_policies": "a", "token_ttl": 60}),
    )
    .await;
    let auth = m
        .ok(Update, "login/eli", json!({"password": "pw"}))
        .await
        .auth
        .expect("auth");
    let internal = Value::Object(auth.internal.clone());

    // TTL changes are picked up.
    m.ok(
        Update,
        "users/eli",
        json!({"token_ttl": 120, "token_period": 30}),
    )
    .await;
    let renewed = m.renew(&internal).await.expect("renew").auth.expect("auth");
    assert_eq!(renewed.ttl, Duration::from_secs(120));
    assert_eq!(renewed.period, Duration::from_secs(30));
    assert_eq!(renewed.policies, vec!["a".to_string()]);

    // Adding only `default` is no change; anything else is.
    m.ok(Update, "users/eli", json!({"token_policies": "a,default"}))
        .await;
    assert!(m.renew(&internal).await.is_ok());
    m.ok(Update, "users/eli", json!({"token_policies": "a,b"}))
        .await;
    assert_eq!(
        m.renew(&internal).await.expect_err("policies changed"),
        SdkError::bad("policies have changed, not renewing")
    );

    m.ok(Delete, "users/eli", json!({})).await;
    let err = m.renew(&internal).await.expect_err("user gone");
    assert_eq!(err.status(), 400);
    assert!(m.renew(&json!({})).await.is_err());
}

#[tokio::test]
async fn login_with_the_real_parameters() {
    let m = Mount::with_params(DEFAULT_PARAMS);
    m.ok(Create, "users/real", json!({"password": "pw"})).await;
    let stored = m.stored_values().await;
    let text = String::from_utf8_lossy(&stored[0].1).to_string();
    assert!(text.contains("$argon2id$v=19$m=19456,t=2,p=1$"), "{text}");
    m.ok(Update, "login/real", json!({"password": "pw"})).await;
    assert_eq!(
        m.err(Update, "login/real", json!({"password": "nope"}))
            .await,
        invalid()
    );
}
