//! Every policy shipped in `policies/examples/` parses, and each does what its
//! comments say.

use crate::check::{check_acl, req, run, Expect};
use coffer_policies::{parse, Acl, Operation, Policy};
use serde_json::json;
use std::path::PathBuf;

use Expect::{Allow, AllowSudo, Deny};
use Operation::{Create, Delete, List, Read, Update};

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn example(name: &str) -> Policy {
    let path = examples_dir().join(format!("{name}.hcl"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse(name, &text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_example_parses() {
    let mut names: Vec<String> = std::fs::read_dir(examples_dir())
        .expect("examples directory exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "hcl"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable example");
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("utf-8 name");
            let policy = parse(stem, &text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!policy.paths.is_empty(), "{} has no rules", path.display());
            policy.name
        })
        .collect();
    names.sort();
    assert_eq!(names, ["admin", "app-transit", "ci-approle", "kv-readonly"]);
}

#[test]
#[rustfmt::skip]
fn examples_behave_as_documented() {
    let admin = Acl::new(&[example("admin")]);
    let kv = Acl::new(&[example("kv-readonly")]);
    let transit = Acl::new(&[example("app-transit")]);
    let ci = Acl::new(&[example("ci-approle")]);
    // kv-readonly's deny must also win over a broader grant in another policy.
    let kv_and_admin = Acl::new(&[example("kv-readonly"), example("admin")]);

    let rows = [
        ("admin enables auth methods with sudo", &admin, req("sys/auth/userpass", Create), AllowSudo),
        ("admin writes policies", &admin, req("sys/policies/acl/dev", Update), AllowSudo),
        ("admin lists policies", &admin, req("sys/policies/acl", List), Allow),
        ("admin writes secrets", &admin, req("secret/data/app", Update), Allow),
        ("admin cannot touch audit devices", &admin, req("sys/audit/file", Delete), Deny),
        ("admin cannot mint tokens", &admin, req("auth/token/create", Update), Deny),
        ("kv reads data", &kv, req("secret/data/team/app", Read), Allow),
        ("kv lists metadata", &kv, req("secret/metadata/team/", List), Allow),
        ("kv cannot write", &kv, req("secret/data/team/app", Update), Deny),
        ("kv cannot read admin data", &kv, req("secret/data/admin/root-creds", Read), Deny),
        ("kv admin deny beats admin's secret/*", &kv_and_admin, req("secret/data/admin/x", Read), Deny),
        ("kv's secret/data/* shadows admin's secret/* (no merge)", &kv_and_admin, req("secret/data/team/x", Update), Deny),
        ("admin's secret/* applies outside secret/data/", &kv_and_admin, req("secret/config", Update), Allow),
        ("transit encrypts", &transit, req("transit/encrypt/app", Update).params(json!({"plaintext": "aGk="})), Allow),
        ("transit encrypt needs plaintext", &transit, req("transit/encrypt/app", Update).params(json!({"context": "x"})), Deny),
        ("transit may not pin version 1", &transit, req("transit/encrypt/app", Update).params(json!({"plaintext": "aGk=", "key_version": 1})), Deny),
        ("transit may pin version 2", &transit, req("transit/encrypt/app", Update).params(json!({"plaintext": "aGk=", "key_version": 2})), Allow),
        ("transit data key", &transit, req("transit/datakey/wrapped/app", Update), Allow),
        ("transit other key", &transit, req("transit/encrypt/other", Update), Deny),
        ("transit export denied", &transit, req("transit/export/encryption-key/app", Read), Deny),
        ("ci reads role id", &ci, req("auth/approle/role/ci/role-id", Read), Allow),
        ("ci secret id unwrapped", &ci, req("auth/approle/role/ci/secret-id", Update), Deny),
        ("ci secret id wrapped 5m", &ci, req("auth/approle/role/ci/secret-id", Update).wrap(300), Allow),
        ("ci secret id wrapped 1h", &ci, req("auth/approle/role/ci/secret-id", Update).wrap(3600), Deny),
        ("ci secret id bad cidr", &ci, req("auth/approle/role/ci/secret-id", Update).wrap(60).params(json!({"cidr_list": "0.0.0.0/0"})), Deny),
        ("ci token with ci policies", &ci, req("auth/token/create", Update).params(json!({"policies": ["ci-build", "ci-test"], "ttl": "1h"})), Allow),
        ("ci token with admin policy", &ci, req("auth/token/create", Update).params(json!({"policies": "ci-build,admin"})), Deny),
        ("ci orphan token", &ci, req("auth/token/create", Update).params(json!({"policies": ["ci-x"], "no_parent": true})), Deny),
    ];
    run(rows.into_iter().map(|(name, acl, row, expected)| (name, check_acl(acl, &row, expected))).collect());
}
