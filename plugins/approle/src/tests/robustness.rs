//! Arbitrary requests: no panic, and every answer is one a client can expect (never a
//! 500 for bad input).

use coffer_sdk::Operation;
use proptest::prelude::*;
use serde_json::{Map, Value};

use super::{status_of, Mount};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-3i64..100).prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-z0-9 ,./-]{0,12}".prop_map(Value::String),
        Just(Value::String("10.0.0.0/8".into())),
        Just(Value::String("1h".into())),
    ];
    leaf.prop_recursive(2, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,6}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        Just("role_id"),
        Just("secret_id"),
        Just("secret_id_accessor"),
        Just("bind_secret_id"),
        Just("secret_id_bound_cidrs"),
        Just("bound_cidr_list"),
        Just("secret_id_num_uses"),
        Just("secret_id_ttl"),
        Just("token_policies"),
        Just("token_ttl"),
        Just("token_max_ttl"),
        Just("token_bound_cidrs"),
        Just("token_type"),
        Just("token_num_uses"),
        Just("metadata"),
        Just("cidr_list"),
        Just("num_uses"),
        Just("ttl"),
        Just("local_secret_ids"),
        Just("x"),
    ];
    prop::collection::vec((field, json_value()), 0..5).prop_map(|fields| {
        let map: Map<String, Value> = fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        Value::Object(map)
    })
}

fn path() -> impl Strategy<Value = String> {
    let head = prop_oneof![
        Just("role/"),
        Just("role"),
        Just("login"),
        Just("tidy/secret-id"),
        Just("other/"),
        Just(""),
    ];
    let name = prop_oneof![
        Just(String::new()),
        Just("r".to_string()),
        Just("R".to_string()),
        "[a-z.-]{1,5}",
    ];
    let tail = prop_oneof![
        Just(""),
        Just("/role-id"),
        Just("/secret-id"),
        Just("/secret-id/"),
        Just("/custom-secret-id"),
        Just("/secret-id/lookup"),
        Just("/secret-id/destroy"),
        Just("/secret-id-accessor/lookup"),
        Just("/secret-id-accessor/destroy"),
        Just("/x"),
        Just("/token-ttl"),
        Just("/policies"),
        Just("/bind-secret-id"),
        Just("/local-secret-ids"),
    ];
    (head, name, tail).prop_map(|(h, n, t)| format!("{h}{n}{t}"))
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        Just(Operation::Read),
        Just(Operation::Create),
        Just(Operation::Update),
        Just(Operation::Patch),
        Just(Operation::Delete),
        Just(Operation::List),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_requests_never_panic(
        calls in prop::collection::vec((operation(), path(), body()), 1..12),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let m = Mount::new();
            // A role to aim at, so the deeper handlers are reached too.
            m.ok(Operation::Create, "role/r", serde_json::json!({})).await;
            for (op, path, body) in calls {
                let status = status_of(&m.call(op, &path, body.clone()).await);
                prop_assert!(
                    [200, 202, 204, 400, 404, 405].contains(&status),
                    "{op:?} {path} {body} -> {status}"
                );
            }
            Ok(())
        })?;
    }
}
