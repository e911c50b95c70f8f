//! JSON transformations the v2 engine applies to secret data: RFC 7386 merge patch (for
//! PATCH on `data/` and `metadata/`) and the value-stripping of `subkeys/`.

use serde_json::{Map, Value};

/// Deepest nesting `subkeys` walks when no `depth` is given (Vault's cap).
pub const MAX_SUBKEYS_DEPTH: u64 = 100;

/// Apply an RFC 7386 JSON merge patch to `target`: objects merge key by key, a `null`
/// removes the key, anything else replaces the target value.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target_map) = target {
        for (key, value) in patch_map {
            if value.is_null() {
                target_map.remove(key);
            } else {
                merge_patch(target_map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// The structure of `data` with every leaf replaced by `null`. Objects nested deeper than
/// `depth` levels (0 = [`MAX_SUBKEYS_DEPTH`]) and empty objects count as leaves, so no
/// value ever leaks.
pub fn subkeys(data: &Map<String, Value>, depth: u64) -> Map<String, Value> {
    let limit = if depth == 0 {
        MAX_SUBKEYS_DEPTH
    } else {
        depth.min(MAX_SUBKEYS_DEPTH)
    };
    strip(data, 1, limit)
}

fn strip(map: &Map<String, Value>, level: u64, limit: u64) -> Map<String, Value> {
    map.iter()
        .map(|(key, value)| {
            let stripped = match value {
                Value::Object(inner) if !inner.is_empty() && level < limit => {
                    Value::Object(strip(inner, level + 1, limit))
                }
                _ => Value::Null,
            };
            (key.clone(), stripped)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386_examples() {
        // The examples of RFC 7386, appendix A.
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (target, patch, want) in cases {
            let mut got = target.clone();
            merge_patch(&mut got, &patch);
            assert_eq!(got, want, "{target} + {patch}");
        }
    }

    #[test]
    fn subkeys_by_depth() {
        let data = json!({"foo": "abc", "bar": {"baz": "def", "deep": {"x": 1}}, "quux": {}});
        let Value::Object(data) = data else {
            unreachable!("literal is an object")
        };
        let cases = [
            (
                0,
                json!({"foo": null, "bar": {"baz": null, "deep": {"x": null}}, "quux": null}),
            ),
            (1, json!({"foo": null, "bar": null, "quux": null})),
            (
                2,
                json!({"foo": null, "bar": {"baz": null, "deep": null}, "quux": null}),
            ),
        ];
        for (depth, want) in cases {
            assert_eq!(Value::Object(subkeys(&data, depth)), want, "depth {depth}");
        }
    }
}
