//! Table-driven ACL cases: one row per case, all run through `check`. The row tables
//! are kept one line per case (`rustfmt::skip`) so they read as tables.

use crate::check::{check, check_acl, compile, req, run, Expect};
use coffer_policies::{default_policy, Acl, Capabilities, Operation};
use serde_json::json;

use Expect::{Allow, AllowSudo, Deny, DenySudo};
use Operation::{Create, Delete, List, Patch, Read, Update};

/// One `path` block granting `caps` (a HCL list).
fn block(path: &str, caps: &str) -> String {
    format!("path \"{path}\" {{\n  capabilities = {caps}\n}}\n")
}

fn blocks(rules: &[(&str, &str)]) -> String {
    rules.iter().map(|(path, caps)| block(path, caps)).collect()
}

#[test]
#[rustfmt::skip]
fn precedence() {
    let exact_vs_glob = blocks(&[("secret/foo", r#"["read"]"#), ("secret/*", r#"["update"]"#)]);
    let p1_a = blocks(&[("foo/+", r#"["read"]"#), ("foo/a*", r#"["update"]"#)]);
    let p1_b = blocks(&[("foo/+/bar/baz", r#"["read"]"#), ("foo/bar/+/baz", r#"["update"]"#)]);
    let p2_a = blocks(&[("foo/+/bar", r#"["read"]"#), ("foo/+/ba*", r#"["update"]"#)]);
    let p2_b = blocks(&[("foo/+", r#"["read"]"#), ("foo/*", r#"["update"]"#)]);
    let p3 = blocks(&[("foo/+/+/baz", r#"["update"]"#), ("foo/+/bar/baz", r#"["read"]"#)]);
    let p4 = blocks(&[("foo/+/bar/b*", r#"["update"]"#), ("foo/+/bar/ba*", r#"["read"]"#)]);
    let p5 = blocks(&[("+/+/a", r#"["update"]"#), ("+/a/+", r#"["read"]"#)]);
    let longest_prefix = blocks(&[("secret/*", r#"["read"]"#), ("secret/data/*", r#"["update"]"#)]);
    let everything = block("*", r#"["read"]"#);
    let one_segment = block("+", r#"["read"]"#);
    let plus_inside = block("a/+/c", r#"["read"]"#);
    let segment_prefix = block("a/+/c*", r#"["read"]"#);
    let slash_star = block("a/+/*", r#"["read"]"#);
    let leading_slash = block("/secret/foo", r#"["read"]"#);
    let literal_plus = block("secret/a+b", r#"["read"]"#);

    run(vec![
        ("exact beats a glob that also matches", check(&[&exact_vs_glob], req("secret/foo", Read), Allow)),
        ("exact rule does not inherit the glob's caps", check(&[&exact_vs_glob], req("secret/foo", Update), Deny)),
        ("glob still covers its other paths", check(&[&exact_vs_glob], req("secret/bar", Update), Allow)),
        ("(1) later first wildcard wins: foo/a* over foo/+", check(&[&p1_a], req("foo/ab", Update), Allow)),
        ("(1) the loser grants nothing here", check(&[&p1_a], req("foo/ab", Read), Deny)),
        ("(1) foo/+ still applies where foo/a* does not match", check(&[&p1_a], req("foo/b", Read), Allow)),
        ("(1) foo/bar/+/baz over foo/+/bar/baz", check(&[&p1_b], req("foo/bar/bar/baz", Update), Allow)),
        ("(1) ...and not the lower one", check(&[&p1_b], req("foo/bar/bar/baz", Read), Deny)),
        ("(2) non-glob beats glob at same position", check(&[&p2_a], req("foo/x/bar", Read), Allow)),
        ("(2) ...glob loses", check(&[&p2_a], req("foo/x/bar", Update), Deny)),
        ("(2) glob applies where the other does not match", check(&[&p2_a], req("foo/x/bat", Update), Allow)),
        ("(2) foo/+ over foo/*", check(&[&p2_b], req("foo/x", Read), Allow)),
        ("(2) foo/* loses on one segment", check(&[&p2_b], req("foo/x", Update), Deny)),
        ("(2) foo/* alone matches deeper", check(&[&p2_b], req("foo/x/y", Update), Allow)),
        ("(3) fewer + segments wins", check(&[&p3], req("foo/a/bar/baz", Read), Allow)),
        ("(3) more + segments loses", check(&[&p3], req("foo/a/bar/baz", Update), Deny)),
        ("(3) more + applies alone", check(&[&p3], req("foo/a/qux/baz", Update), Allow)),
        ("(4) longer glob wins", check(&[&p4], req("foo/x/bar/baz", Read), Allow)),
        ("(4) shorter glob loses", check(&[&p4], req("foo/x/bar/baz", Update), Deny)),
        ("(4) shorter glob applies alone", check(&[&p4], req("foo/x/bar/bz", Update), Allow)),
        ("(5) lexicographically greater wins", check(&[&p5], req("x/a/a", Read), Allow)),
        ("(5) lexicographically smaller loses", check(&[&p5], req("x/a/a", Update), Deny)),
        ("longest * prefix wins", check(&[&longest_prefix], req("secret/data/x", Update), Allow)),
        ("shorter * prefix loses", check(&[&longest_prefix], req("secret/data/x", Read), Deny)),
        ("shorter * prefix elsewhere", check(&[&longest_prefix], req("secret/other", Read), Allow)),
        ("* matches everything", check(&[&everything], req("any/path/at/all", Read), Allow)),
        ("* matches the empty path", check(&[&everything], req("", Read), Allow)),
        ("+ matches one segment", check(&[&one_segment], req("sys", Read), Allow)),
        ("+ never matches a /", check(&[&one_segment], req("sys/mounts", Read), Deny)),
        ("+ in the middle", check(&[&plus_inside], req("a/b/c", Read), Allow)),
        ("+ does not span segments", check(&[&plus_inside], req("a/b/x/c", Read), Deny)),
        ("+ rule needs the exact segment count", check(&[&plus_inside], req("a/b/c/d", Read), Deny)),
        ("+ matches an empty segment", check(&[&plus_inside], req("a//c", Read), Allow)),
        ("+ with trailing *: prefix of last segment", check(&[&segment_prefix], req("a/b/cd/e", Read), Allow)),
        ("+ with trailing *: last segment must start right", check(&[&segment_prefix], req("a/b/dc", Read), Deny)),
        ("a/+/* needs a third segment", check(&[&slash_star], req("a/b", Read), Deny)),
        ("a/+/* matches a/b/", check(&[&slash_star], req("a/b/", Read), Allow)),
        ("leading / in the policy is stripped", check(&[&leading_slash], req("secret/foo", Read), Allow)),
        ("leading / in the request is ignored", check(&[&leading_slash], req("//secret/foo", Read), Allow)),
        ("paths are case-sensitive", check(&[&leading_slash], req("Secret/foo", Read), Deny)),
        ("+ inside a segment is literal", check(&[&literal_plus], req("secret/a+b", Read), Allow)),
        ("+ inside a segment is not a wildcard", check(&[&literal_plus], req("secret/axb", Read), Deny)),
        ("no rule: default deny", check(&[&exact_vs_glob], req("sys/mounts", Read), Deny)),
        ("no policies: default deny", check(&[], req("secret/foo", Read), Deny)),
    ]);
}

#[test]
#[rustfmt::skip]
fn operations_and_deny() {
    let rw = block("secret/*", r#"["create", "read", "update"]"#);
    let patch_only = block("secret/*", r#"["patch"]"#);
    let legacy_write = "path \"secret/*\" {\n  policy = \"write\"\n}\n";
    let legacy_sudo = "path \"secret/*\" {\n  policy = \"sudo\"\n}\n";
    let legacy_deny = "path \"secret/*\" {\n  policy = \"deny\"\n}\n";
    let sudo_read = block("sys/raw/*", r#"["read", "sudo"]"#);
    let sudo_only = block("sys/raw/*", r#"["sudo"]"#);
    let deny_same = block("sys/raw/*", r#"["deny"]"#);
    let deny_in_block = block("secret/*", r#"["read", "deny", "sudo"]"#);
    let deny_exact = blocks(&[("secret/*", r#"["read", "list"]"#), ("secret/private", r#"["deny"]"#)]);
    let deny_glob = blocks(&[("secret/*", r#"["read"]"#), ("secret/private/*", r#"["deny"]"#)]);
    let union_a = block("secret/*", r#"["read"]"#);
    let union_b = block("secret/*", r#"["list"]"#);
    let other_pattern = block("secret/+", r#"["update"]"#);
    let exact_list = block("secret/foo", r#"["list"]"#);
    let plus_list = block("secret/+", r#"["list"]"#);
    let empty_caps = blocks(&[("secret/*", r#"["read"]"#), ("secret/x", "[]")]);

    run(vec![
        ("create needs create", check(&[&rw], req("secret/a", Create), Allow)),
        ("update needs update", check(&[&rw], req("secret/a", Update), Allow)),
        ("update does not imply patch", check(&[&rw], req("secret/a", Patch), Deny)),
        ("delete not granted", check(&[&rw], req("secret/a", Delete), Deny)),
        ("list not granted", check(&[&rw], req("secret/a", List), Deny)),
        ("patch alone allows patch", check(&[&patch_only], req("secret/a", Patch), Allow)),
        ("patch alone does not allow update", check(&[&patch_only], req("secret/a", Update), Deny)),
        ("legacy write allows create", check(&[legacy_write], req("secret/a", Create), Allow)),
        ("legacy write allows delete", check(&[legacy_write], req("secret/a", Delete), Allow)),
        ("legacy write allows list", check(&[legacy_write], req("secret/a", List), Allow)),
        ("legacy write does not allow patch", check(&[legacy_write], req("secret/a", Patch), Deny)),
        ("legacy sudo grants sudo", check(&[legacy_sudo], req("secret/a", Read), AllowSudo)),
        ("legacy deny denies", check(&[legacy_deny, &rw], req("secret/a", Read), Deny)),
        ("sudo is reported with the grant", check(&[&sudo_read], req("sys/raw/x", Read), AllowSudo)),
        ("sudo is reported even when the op is denied", check(&[&sudo_only], req("sys/raw/x", Update), DenySudo)),
        ("deny in another policy beats sudo", check(&[&sudo_read, &deny_same], req("sys/raw/x", Read), Deny)),
        ("deny beats sudo whatever the policy order", check(&[&deny_same, &sudo_read], req("sys/raw/x", Read), Deny)),
        ("deny in the same block beats everything", check(&[&deny_in_block], req("secret/a", Read), Deny)),
        ("exact deny beats the glob grant", check(&[&deny_exact], req("secret/private", Read), Deny)),
        ("exact deny leaves siblings alone", check(&[&deny_exact], req("secret/public", Read), Allow)),
        ("exact deny is exact", check(&[&deny_exact], req("secret/private/x", Read), Allow)),
        ("longer glob deny wins", check(&[&deny_glob], req("secret/private/x", Read), Deny)),
        ("same pattern merges: first policy's cap", check(&[&union_a, &union_b], req("secret/a", Read), Allow)),
        ("same pattern merges: second policy's cap", check(&[&union_a, &union_b], req("secret/a", List), Allow)),
        ("different patterns do not merge", check(&[&union_a, &other_pattern], req("secret/a", Read), Deny)),
        ("...the higher one applies alone", check(&[&union_a, &other_pattern], req("secret/a", Update), Allow)),
        ("...and the lower where it alone matches", check(&[&union_a, &other_pattern], req("secret/a/b", Read), Allow)),
        ("LIST foo/ finds exact rule foo", check(&[&exact_list], req("secret/foo/", List), Allow)),
        ("READ foo/ does not", check(&[&exact_list], req("secret/foo/", Read), Deny)),
        ("LIST foo/ tries globs without the slash", check(&[&plus_list], req("secret/foo/", List), Allow)),
        ("READ foo/ does not match secret/+", check(&[&plus_list], req("secret/foo/", Read), Deny)),
        ("a rule with no capabilities shadows the glob", check(&[&empty_caps], req("secret/x", Read), Deny)),
    ]);
}

/// `path "p"` granting `caps` with extra HCL lines (parameters, TTLs).
fn rule_with(caps: &str, extra: &str) -> String {
    format!("path \"p\" {{\n  capabilities = {caps}\n{extra}\n}}\n")
}

#[test]
#[rustfmt::skip]
fn parameters() {
    let allowed_key = rule_with(r#"["create", "update", "read", "patch", "delete", "list"]"#, r#"allowed_parameters = { "a" = [] }"#);
    let allowed_values = rule_with(r#"["update"]"#, r#"allowed_parameters = { "a" = ["x", "y"] }"#);
    let allow_all = rule_with(r#"["update"]"#, r#"allowed_parameters = { "*" = [] }"#);
    let allow_all_but_a = rule_with(r#"["update"]"#, "allowed_parameters = {\n \"*\" = []\n \"a\" = [\"x\"]\n}");
    let glob_values = rule_with(r#"["update"]"#, r#"allowed_parameters = { "name" = ["dev-*", "*-test", "*mid*"] }"#);
    let typed_values = rule_with(r#"["update"]"#, "allowed_parameters = {\n \"n\" = [1, 2.5]\n \"flag\" = [true]\n}");
    let denied_key = rule_with(r#"["update", "delete"]"#, r#"denied_parameters = { "a" = [] }"#);
    let denied_values = rule_with(r#"["update"]"#, r#"denied_parameters = { "a" = ["x"] }"#);
    let denied_all = rule_with(r#"["update"]"#, r#"denied_parameters = { "*" = [] }"#);
    let denied_and_allowed = rule_with(r#"["update"]"#, "allowed_parameters = { \"a\" = [] }\ndenied_parameters = { \"a\" = [\"bad\"] }");
    let required = rule_with(r#"["update"]"#, r#"required_parameters = ["a"]"#);
    let required_and_allowed = rule_with(r#"["update"]"#, "required_parameters = [\"a\"]\nallowed_parameters = {\n \"a\" = []\n \"b\" = [\"1\"]\n}");
    let mixed_case = rule_with(r#"["update"]"#, r#"allowed_parameters = { "Key" = ["v"] }"#);
    let policies_csv = "path \"auth/token/create\" {\n  capabilities = [\"update\"]\n  denied_parameters = { \"policies\" = [\"root\"] }\n}";

    run(vec![
        ("allowed key: listed key passes", check(&[&allowed_key], req("p", Update).params(json!({"a": 1})), Allow)),
        ("allowed key: other key fails", check(&[&allowed_key], req("p", Update).params(json!({"a": 1, "b": 2})), Deny)),
        ("allowed key: no params passes", check(&[&allowed_key], req("p", Update), Allow)),
        ("allowed key: empty params pass", check(&[&allowed_key], req("p", Update).params(json!({})), Allow)),
        ("checked on create", check(&[&allowed_key], req("p", Create).params(json!({"b": 1})), Deny)),
        ("checked on read", check(&[&allowed_key], req("p", Read).params(json!({"b": 1})), Deny)),
        ("checked on patch", check(&[&allowed_key], req("p", Patch).params(json!({"b": 1})), Deny)),
        ("not checked on delete", check(&[&allowed_key], req("p", Delete).params(json!({"b": 1})), Allow)),
        ("not checked on list", check(&[&allowed_key], req("p", List).params(json!({"b": 1})), Allow)),
        ("allowed value", check(&[&allowed_values], req("p", Update).params(json!({"a": "y"})), Allow)),
        ("value not in list", check(&[&allowed_values], req("p", Update).params(json!({"a": "z"})), Deny)),
        ("list value: every element allowed", check(&[&allowed_values], req("p", Update).params(json!({"a": ["x", "y"]})), Allow)),
        ("list value: one element not allowed", check(&[&allowed_values], req("p", Update).params(json!({"a": ["x", "z"]})), Deny)),
        ("comma string: every piece allowed", check(&[&allowed_values], req("p", Update).params(json!({"a": "x, y"})), Allow)),
        ("comma string: one piece not allowed", check(&[&allowed_values], req("p", Update).params(json!({"a": "x,z"})), Deny)),
        ("empty string is not relaxed", check(&[&allowed_values], req("p", Update).params(json!({"a": ""})), Deny)),
        ("* alone allows anything", check(&[&allow_all], req("p", Update).params(json!({"q": 1, "r": [2]})), Allow)),
        ("* plus a: others free", check(&[&allow_all_but_a], req("p", Update).params(json!({"b": "anything"})), Allow)),
        ("* plus a: a still restricted", check(&[&allow_all_but_a], req("p", Update).params(json!({"a": "z"})), Deny)),
        ("* plus a: a's value passes", check(&[&allow_all_but_a], req("p", Update).params(json!({"a": "x", "b": 1})), Allow)),
        ("glob value prefix", check(&[&glob_values], req("p", Update).params(json!({"name": "dev-1"})), Allow)),
        ("glob value suffix", check(&[&glob_values], req("p", Update).params(json!({"name": "unit-test"})), Allow)),
        ("glob value infix", check(&[&glob_values], req("p", Update).params(json!({"name": "a-mid-b"})), Allow)),
        ("glob value miss", check(&[&glob_values], req("p", Update).params(json!({"name": "prod-1"})), Deny)),
        ("glob_value_does_not_match_across_commas", check(&[&glob_values], req("p", Update).params(json!({"name": "dev-1,prod-1"})), Deny)),
        ("number allowed", check(&[&typed_values], req("p", Update).params(json!({"n": 1})), Allow)),
        ("float allowed", check(&[&typed_values], req("p", Update).params(json!({"n": 2.5})), Allow)),
        ("number not allowed", check(&[&typed_values], req("p", Update).params(json!({"n": 3})), Deny)),
        ("string is not a number", check(&[&typed_values], req("p", Update).params(json!({"n": "1"})), Deny)),
        ("bool allowed", check(&[&typed_values], req("p", Update).params(json!({"flag": true})), Allow)),
        ("bool not allowed", check(&[&typed_values], req("p", Update).params(json!({"flag": false})), Deny)),
        ("denied key with any value", check(&[&denied_key], req("p", Update).params(json!({"a": "anything"})), Deny)),
        ("denied key: others pass", check(&[&denied_key], req("p", Update).params(json!({"b": 1})), Allow)),
        ("denied key: not checked on delete", check(&[&denied_key], req("p", Delete).params(json!({"a": 1})), Allow)),
        ("denied value", check(&[&denied_values], req("p", Update).params(json!({"a": "x"})), Deny)),
        ("other value of a denied key", check(&[&denied_values], req("p", Update).params(json!({"a": "y"})), Allow)),
        ("list containing a denied value", check(&[&denied_values], req("p", Update).params(json!({"a": ["y", "x"]})), Deny)),
        ("denied * with params", check(&[&denied_all], req("p", Update).params(json!({"z": 1})), Deny)),
        ("denied * without params", check(&[&denied_all], req("p", Update), Allow)),
        ("denied beats allowed", check(&[&denied_and_allowed], req("p", Update).params(json!({"a": "bad"})), Deny)),
        ("allowed when not denied", check(&[&denied_and_allowed], req("p", Update).params(json!({"a": "good"})), Allow)),
        ("required present", check(&[&required], req("p", Update).params(json!({"a": 1, "b": 2})), Allow)),
        ("required missing", check(&[&required], req("p", Update).params(json!({"b": 2})), Deny)),
        ("required and no params at all", check(&[&required], req("p", Update), Deny)),
        ("required with null value is present", check(&[&required], req("p", Update).params(json!({"a": null})), Allow)),
        ("required + allowed", check(&[&required_and_allowed], req("p", Update).params(json!({"a": 1, "b": "1"})), Allow)),
        ("required + allowed: bad b", check(&[&required_and_allowed], req("p", Update).params(json!({"a": 1, "b": "2"})), Deny)),
        ("param names compare lower-cased", check(&[&mixed_case], req("p", Update).params(json!({"KEY": "v"})), Allow)),
        ("...values do not", check(&[&mixed_case], req("p", Update).params(json!({"key": "V"})), Deny)),
        ("comma list with a denied policy", check(&[policies_csv], req("auth/token/create", Update).params(json!({"policies": "default,root"})), Deny)),
        ("comma list without it", check(&[policies_csv], req("auth/token/create", Update).params(json!({"policies": "default,dev"})), Allow)),
    ]);
}

#[test]
#[rustfmt::skip]
fn parameter_merging() {
    let update = r#"["update"]"#;
    let allow_x = rule_with(update, r#"allowed_parameters = { "a" = ["x"] }"#);
    let allow_y = rule_with(update, r#"allowed_parameters = { "a" = ["y"] }"#);
    let allow_any_a = rule_with(update, r#"allowed_parameters = { "a" = [] }"#);
    let allow_b = rule_with(update, r#"allowed_parameters = { "b" = [] }"#);
    let unrestricted = rule_with(update, "");
    let deny_x = rule_with(update, r#"denied_parameters = { "a" = ["x"] }"#);
    let deny_y = rule_with(update, r#"denied_parameters = { "a" = ["y"] }"#);
    let require_a = rule_with(update, r#"required_parameters = ["a"]"#);
    let require_b = rule_with(r#"["read"]"#, r#"required_parameters = ["b"]"#);
    let deny_rule = rule_with(r#"["deny"]"#, "");

    run(vec![
        ("allowed values union: x", check(&[&allow_x, &allow_y], req("p", Update).params(json!({"a": "x"})), Allow)),
        ("allowed values union: y", check(&[&allow_x, &allow_y], req("p", Update).params(json!({"a": "y"})), Allow)),
        ("allowed values union: z", check(&[&allow_x, &allow_y], req("p", Update).params(json!({"a": "z"})), Deny)),
        ("empty list absorbs values", check(&[&allow_x, &allow_any_a], req("p", Update).params(json!({"a": "z"})), Allow)),
        ("empty list absorbs, either order", check(&[&allow_any_a, &allow_x], req("p", Update).params(json!({"a": "z"})), Allow)),
        ("allowed keys union", check(&[&allow_any_a, &allow_b], req("p", Update).params(json!({"a": 1, "b": 2})), Allow)),
        ("unrestricted + restricted = restricted (Vault)", check(&[&unrestricted, &allow_b], req("p", Update).params(json!({"c": 1})), Deny)),
        ("denied values union: x", check(&[&deny_x, &deny_y], req("p", Update).params(json!({"a": "x"})), Deny)),
        ("denied values union: y", check(&[&deny_x, &deny_y], req("p", Update).params(json!({"a": "y"})), Deny)),
        ("denied values union: z", check(&[&deny_x, &deny_y], req("p", Update).params(json!({"a": "z"})), Allow)),
        ("required union: both needed", check(&[&require_a, &require_b], req("p", Update).params(json!({"a": 1})), Deny)),
        ("required union: both present", check(&[&require_a, &require_b], req("p", Update).params(json!({"a": 1, "b": 1})), Allow)),
        ("capabilities union with required", check(&[&require_a, &require_b], req("p", Read).params(json!({"a": 1, "b": 1})), Allow)),
        ("deny merged in wipes parameters and caps", check(&[&allow_any_a, &deny_rule], req("p", Update).params(json!({"a": 1})), Deny)),
        ("deny merged first also wins", check(&[&deny_rule, &unrestricted], req("p", Update), Deny)),
    ]);
}

#[test]
#[rustfmt::skip]
fn wrapping_ttl() {
    let update = r#"["update"]"#;
    let min = rule_with(update, "min_wrapping_ttl = 60");
    let max = rule_with(update, r#"max_wrapping_ttl = "90s""#);
    let both = rule_with(update, "min_wrapping_ttl = \"1m\"\nmax_wrapping_ttl = \"1h\"");
    let min_30 = rule_with(update, r#"min_wrapping_ttl = "30s""#);
    let max_50 = rule_with(update, r#"max_wrapping_ttl = "50s""#);
    let max_100 = rule_with(update, "max_wrapping_ttl = 100");
    let min_120 = rule_with(update, r#"min_wrapping_ttl = "2m""#);
    let none = rule_with(update, "");

    run(vec![
        ("min: unwrapped request denied", check(&[&min], req("p", Update), Deny)),
        ("min: below", check(&[&min], req("p", Update).wrap(59), Deny)),
        ("min: at", check(&[&min], req("p", Update).wrap(60), Allow)),
        ("min: above", check(&[&min], req("p", Update).wrap(3600), Allow)),
        ("max: unwrapped request denied", check(&[&max], req("p", Update), Deny)),
        ("max: at", check(&[&max], req("p", Update).wrap(90), Allow)),
        ("max: above", check(&[&max], req("p", Update).wrap(91), Deny)),
        ("max: tiny", check(&[&max], req("p", Update).wrap(1), Allow)),
        ("both: below", check(&[&both], req("p", Update).wrap(30), Deny)),
        ("both: low edge", check(&[&both], req("p", Update).wrap(60), Allow)),
        ("both: high edge", check(&[&both], req("p", Update).wrap(3600), Allow)),
        ("both: above", check(&[&both], req("p", Update).wrap(3601), Deny)),
        ("no bounds: wrapping is fine", check(&[&none], req("p", Update).wrap(10), Allow)),
        ("no bounds: unwrapped is fine", check(&[&none], req("p", Update), Allow)),
        ("merged min takes the lesser", check(&[&min, &min_30], req("p", Update).wrap(40), Allow)),
        ("merged max takes the lesser", check(&[&max_100, &max_50], req("p", Update).wrap(60), Deny)),
        ("merged bounds with no bounds keep the bound", check(&[&none, &min], req("p", Update), Deny)),
        ("merged min above merged max denies all", check(&[&min_120, &max_50], req("p", Update).wrap(50), Deny)),
        ("...at the other edge too", check(&[&min_120, &max_50], req("p", Update).wrap(120), Deny)),
        ("wrapping checked before parameters", check(&[&min], req("p", Update).params(json!({"a": 1})), Deny)),
    ]);
}

#[test]
#[rustfmt::skip]
fn default_policy_rows() {
    let acl = Acl::new(&[default_policy()]);
    let rows = [
        ("lookup-self read", req("auth/token/lookup-self", Read), Allow),
        ("lookup-self update is not granted", req("auth/token/lookup-self", Update), Deny),
        ("renew-self", req("auth/token/renew-self", Update), Allow),
        ("revoke-self", req("auth/token/revoke-self", Update), Allow),
        ("capabilities-self", req("sys/capabilities-self", Update), Allow),
        ("lease renew", req("sys/leases/renew", Update), Allow),
        ("lease lookup", req("sys/leases/lookup", Update), Allow),
        ("lease revoke is not granted", req("sys/leases/revoke", Update), Deny),
        ("cubbyhole write", req("cubbyhole/my/secret", Create), Allow),
        ("cubbyhole list root", req("cubbyhole/", List), Allow),
        ("cubbyhole no patch", req("cubbyhole/x", Patch), Deny),
        ("wrap", req("sys/wrapping/wrap", Update), Allow),
        ("unwrap", req("sys/wrapping/unwrap", Update), Allow),
        ("wrapping lookup", req("sys/wrapping/lookup", Update), Allow),
        ("rewrap is not granted", req("sys/wrapping/rewrap", Update), Deny),
        ("hash", req("sys/tools/hash", Update), Allow),
        ("hash with algorithm", req("sys/tools/hash/sha2-512", Update), Allow),
        ("control group request", req("sys/control-group/request", Update), Allow),
        ("oidc authorize", req("identity/oidc/provider/default/authorize", Read), Allow),
        ("oidc authorize is one segment", req("identity/oidc/provider/a/b/authorize", Read), Deny),
        ("resultant acl", req("sys/internal/ui/resultant-acl", Read), Allow),
        ("templated entity path is not rendered", req("identity/entity/id/1234", Read), Deny),
        ("secret/foo is denied", req("secret/foo", Read), Deny),
        ("sys/mounts is denied", req("sys/mounts", Read), Deny),
        ("policies are denied", req("sys/policies/acl/default", Read), Deny),
    ];
    run(rows.into_iter().map(|(name, row, expected)| (name, check_acl(&acl, &row, expected))).collect());
}

#[test]
#[rustfmt::skip]
fn root_acl() {
    let root = Acl::root();
    assert!(root.is_root());
    assert!(!Acl::new(&[default_policy()]).is_root());
    let rows = [
        ("root reads anything", req("secret/foo", Read), AllowSudo),
        ("root patches anything", req("sys/raw/x", Patch), AllowSudo),
        ("root ignores parameter rules", req("p", Update).params(json!({"x": 1})), AllowSudo),
    ];
    run(rows.into_iter().map(|(name, row, expected)| (name, check_acl(&root, &row, expected))).collect());
}

#[test]
#[rustfmt::skip]
fn capabilities_report() {
    let acl = compile(&[&blocks(&[
        ("secret/*", r#"["list", "read", "sudo", "create"]"#),
        ("secret/foo", r#"["read"]"#),
        ("secret/denied", r#"["deny"]"#),
        ("secret/nothing", "[]"),
        ("sys/+/x", r#"["patch", "update", "delete"]"#),
    ])]);
    let cases: [(&str, &[&str]); 9] = [
        ("secret/bar", &["sudo", "read", "list", "create"]),
        ("secret/foo", &["read"]),
        ("secret/foo/", &["read"]),
        ("/secret/foo", &["read"]),
        ("secret/denied", &["deny"]),
        ("secret/nothing", &["deny"]),
        ("sys/a/x", &["update", "delete", "patch"]),
        ("sys/a/x/", &["update", "delete", "patch"]),
        ("elsewhere", &["deny"]),
    ];
    let failures: Vec<String> = cases
        .iter()
        .filter(|(path, expected)| acl.capability_names(path) != *expected)
        .map(|(path, expected)| format!("{path}: expected {expected:?}, got {:?}", acl.capability_names(path)))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(Acl::root().capability_names("anything"), ["root"]);
    assert_eq!(
        acl.capabilities("secret/bar"),
        Capabilities::LIST | Capabilities::READ | Capabilities::SUDO | Capabilities::CREATE
    );
}
