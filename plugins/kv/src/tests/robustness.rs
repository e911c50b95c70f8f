//! Arbitrary requests against both engine versions: no panic, and every answer is one of
//! the statuses a client can expect (never a 500 for bad input).

use coffer_sdk::Operation;
use proptest::prelude::*;
use serde_json::{Map, Value};

use super::{status_of, Kv};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-3i64..20).prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-z0-9 ,.-]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        Just("data"),
        Just("options"),
        Just("versions"),
        Just("version"),
        Just("depth"),
        Just("max_versions"),
        Just("cas_required"),
        Just("delete_version_after"),
        Just("custom_metadata"),
        Just("ttl"),
        Just("x"),
    ];
    prop::collection::vec((field, json_value()), 0..4).prop_map(|fields| {
        let map: Map<String, Value> = fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        Value::Object(map)
    })
}

fn path() -> impl Strategy<Value = String> {
    let head = prop_oneof![
        Just(""),
        Just("config"),
        Just("data/"),
        Just("metadata/"),
        Just("metadata"),
        Just("delete/"),
        Just("undelete/"),
        Just("destroy/"),
        Just("subkeys/"),
        Just("_kv2/"),
        Just("other/"),
    ];
    let tail = prop_oneof![
        Just(String::new()),
        Just("s".to_string()),
        Just("s/".to_string()),
        Just("a//b".to_string()),
        "[a-z./]{1,8}",
    ];
    (head, tail).prop_map(|(h, t)| format!("{h}{t}"))
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
        version in prop_oneof![Just("1"), Just("2")],
        calls in prop::collection::vec((operation(), path(), body()), 1..12),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let kv = Kv::new(version);
            for (op, path, body) in calls {
                let status = status_of(&kv.call(op, &path, body.clone()).await);
                prop_assert!(
                    [200, 204, 400, 404, 405].contains(&status),
                    "{op:?} {path} {body} -> {status}"
                );
            }
            Ok(())
        })?;
    }
}
