//! Tests of the Vault-format server configuration parser.

use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/config")
        .join(name)
}

/// A valid config around the given extra HCL, so each case isolates one key.
fn hcl_with(extra: &str) -> String {
    format!(
        r#"
storage "inmem" {{}}
listener "tcp" {{
  address     = "127.0.0.1:8200"
  tls_disable = true
}}
{extra}
"#
    )
}

fn parse_ok(text: &str) -> Loaded {
    match parse_hcl(text) {
        Ok(loaded) => loaded,
        Err(e) => panic!("expected success, got {e}\n--- config:\n{text}"),
    }
}

fn parse_err(text: &str) -> ConfigError {
    match parse_hcl(text) {
        Ok(loaded) => panic!("expected an error, got {loaded:?}\n--- config:\n{text}"),
        Err(e) => e,
    }
}

fn assert_warns(loaded: &Loaded, needle: &str) {
    assert!(
        loaded.warnings.iter().any(|w| w.contains(needle)),
        "no warning contains {needle:?}: {:#?}",
        loaded.warnings
    );
}

fn assert_err_names(err: &ConfigError, needle: &str) {
    let text = err.to_string();
    assert!(
        text.contains(needle),
        "error {text:?} does not name {needle:?}"
    );
}

fn cluster_node1_expected() -> ServerConfig {
    let tls = |f: &str| Some(PathBuf::from(format!("/etc/coffer/tls/{f}")));
    ServerConfig {
        storage: StorageConfig::Raft(RaftStorage {
            path: PathBuf::from("/var/lib/coffer/raft"),
            node_id: Some("node1".into()),
            performance_multiplier: Some(1),
            retry_join: vec![
                RetryJoin {
                    leader_api_addr: "https://node2.coffer.internal:8200".into(),
                    leader_ca_cert_file: tls("ca.pem"),
                    leader_client_cert_file: tls("node1.pem"),
                    leader_client_key_file: tls("node1-key.pem"),
                    leader_tls_servername: Some("node2.coffer.internal".into()),
                },
                RetryJoin {
                    leader_api_addr: "https://node3.coffer.internal:8200".into(),
                    leader_ca_cert_file: tls("ca.pem"),
                    leader_client_cert_file: tls("node1.pem"),
                    leader_client_key_file: tls("node1-key.pem"),
                    leader_tls_servername: None,
                },
            ],
            autopilot_reconcile_interval: None,
            autopilot_update_interval: None,
        }),
        listeners: vec![
            TcpListener {
                address: "0.0.0.0:8200".into(),
                cluster_address: Some("0.0.0.0:8201".into()),
                tls_disable: false,
                tls_cert_file: tls("node1.pem"),
                tls_key_file: tls("node1-key.pem"),
                tls_client_ca_file: tls("ca.pem"),
                tls_require_and_verify_client_cert: false,
                tls_disable_client_certs: false,
                tls_min_version: TlsVersion::Tls13,
            },
            TcpListener {
                address: "127.0.0.1:8210".into(),
                tls_disable: true,
                ..TcpListener::default()
            },
        ],
        seal: Some(SealConfig {
            kind: "transit".into(),
            options: [
                ("address", "https://kms.coffer.internal:8200"),
                ("token", "placeholder-not-a-real-token"),
                ("disable_renewal", "false"),
                ("key_name", "autounseal"),
                ("mount_path", "transit/"),
                ("tls_skip_verify", "false"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        }),
        api_addr: Some("https://node1.coffer.internal:8200".into()),
        cluster_addr: Some("https://node1.coffer.internal:8201".into()),
        cluster_name: Some("coffer-prod".into()),
        default_lease_ttl: Some(Duration::from_secs(768 * 3600)),
        max_lease_ttl: Some(Duration::from_secs(8760 * 3600)),
        disable_mlock: true,
        ui: true,
        disable_cache: false,
        log_level: Some("info".into()),
        log_format: Some("json".into()),
        pid_file: Some(PathBuf::from("/run/coffer/coffer.pid")),
        plugin_directory: None,
    }
}

// ---- whole files

#[test]
fn cluster_hcl_fixture_parses_to_the_expected_struct() {
    let loaded = load_file(&fixture("cluster-node1.hcl")).unwrap();
    assert_eq!(loaded.config, cluster_node1_expected());
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn cluster_json_fixture_equals_the_hcl_one() {
    let hcl = load_file(&fixture("cluster-node1.hcl")).unwrap();
    let json = load_file(&fixture("cluster-node1.json")).unwrap();
    assert_eq!(json.config, hcl.config);
    assert!(json.warnings.is_empty(), "{:?}", json.warnings);
}

#[test]
fn single_node_hcl_and_json_fixtures_agree() {
    let hcl = load_file(&fixture("single-node.hcl")).unwrap();
    let json = load_file(&fixture("single-node.json")).unwrap();
    assert_eq!(hcl.config, json.config);
    assert!(hcl.warnings.is_empty() && json.warnings.is_empty());
    let StorageConfig::Raft(raft) = &hcl.config.storage else {
        panic!("expected raft storage");
    };
    assert_eq!(raft.path, Path::new("/var/lib/coffer/data"));
    assert_eq!(raft.node_id.as_deref(), Some("coffer-0"));
    assert!(raft.retry_join.is_empty());
    assert_eq!(hcl.config.listeners.len(), 1);
    assert!(!hcl.config.listeners[0].tls_disable);
    assert_eq!(hcl.config.listeners[0].tls_min_version, TlsVersion::Tls12);
    assert!(hcl.config.ui && hcl.config.disable_mlock && !hcl.config.disable_cache);
    assert_eq!(hcl.config.seal, None);
    assert_eq!(hcl.config.default_lease_ttl, None);
}

#[test]
fn parse_functions_match_load_file() {
    let text = std::fs::read_to_string(fixture("cluster-node1.hcl")).unwrap();
    assert_eq!(parse_hcl(&text).unwrap().config, cluster_node1_expected());
    let text = std::fs::read_to_string(fixture("cluster-node1.json")).unwrap();
    assert_eq!(parse_json(&text).unwrap().config, cluster_node1_expected());
    // An HCL file whose content is JSON (Vault's HCL parser accepts it).
    assert_eq!(parse_hcl(&text).unwrap().config, cluster_node1_expected());
}

#[test]
fn json_content_in_an_hcl_named_file_is_accepted() {
    let dir = std::env::temp_dir().join(format!("coffer-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("really-json.hcl");
    std::fs::copy(fixture("single-node.json"), &file).unwrap();
    let loaded = load_file(&file);
    std::fs::remove_dir_all(&dir).unwrap();
    let expected = load_file(&fixture("single-node.hcl")).unwrap().config;
    assert_eq!(loaded.unwrap().config, expected);
}

#[test]
fn directory_loads_hcl_and_json_files_in_name_order() {
    let dir = std::env::temp_dir().join(format!("coffer-config-dir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("10-storage.hcl"),
        "storage \"inmem\" {}\nui = true\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("20-listener.json"),
        r#"{"listener": {"tcp": {"address": "127.0.0.1:8300", "tls_disable": true}}, "ui": false}"#,
    )
    .unwrap();
    std::fs::write(dir.join("notes.txt"), "not config").unwrap();
    let loaded = load_file(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    let loaded = loaded.unwrap();
    assert_eq!(loaded.config.storage, StorageConfig::Inmem);
    assert_eq!(loaded.config.listeners.len(), 1);
    assert_eq!(loaded.config.listeners[0].address, "127.0.0.1:8300");
    // The later file switches the flag off again, as in Vault.
    assert!(!loaded.config.ui);
}

#[test]
fn empty_directory_is_warned_about() {
    let dir = std::env::temp_dir().join(format!("coffer-config-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let loaded = load_files_onto(ServerConfig::dev(), &[&dir]);
    std::fs::remove_dir_all(&dir).unwrap();
    let loaded = loaded.unwrap();
    assert_eq!(loaded.config, ServerConfig::dev());
    assert_warns(&loaded, "no .hcl or .json");
}

#[test]
fn missing_file_is_an_io_error_naming_the_path() {
    let err = load_file(Path::new("/nonexistent/coffer.hcl")).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }));
    assert_err_names(&err, "/nonexistent/coffer.hcl");
}

#[test]
fn errors_in_a_file_name_the_file_and_key() {
    let dir = std::env::temp_dir().join(format!("coffer-config-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.hcl");
    std::fs::write(&file, hcl_with("max_lease_ttl = \"forever\"")).unwrap();
    let err = load_file(&file).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_err_names(&err, "bad.hcl");
    assert_err_names(&err, "max_lease_ttl");
    assert_eq!(err.key(), Some("max_lease_ttl"));
}

// ---- storage

#[test]
fn backend_is_an_alias_for_storage() {
    let loaded = parse_ok(
        r#"
backend "raft" {
  path = "/data"
}
listener "tcp" {
  tls_disable = 1
}
"#,
    );
    assert_eq!(
        loaded.config.storage,
        StorageConfig::Raft(RaftStorage {
            path: PathBuf::from("/data"),
            ..RaftStorage::default()
        })
    );
    assert_eq!(loaded.config.listeners[0].address, DEFAULT_LISTENER_ADDRESS);
}

#[test]
fn inmem_storage() {
    let loaded = parse_ok(&hcl_with(""));
    assert_eq!(loaded.config.storage, StorageConfig::Inmem);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let json =
        parse_json(r#"{"storage": {"inmem": {}}, "listener": {"tcp": {"tls_disable": "1"}}}"#)
            .unwrap();
    assert_eq!(json.config.storage, StorageConfig::Inmem);
}

#[test]
fn storage_and_backend_together_is_an_error() {
    let err = parse_err(&format!(
        "{}\nbackend \"raft\" {{ path = \"/data\" }}\n",
        hcl_with("")
    ));
    assert_err_names(&err, "backend");
    assert_err_names(&err, "storage");
}

#[test]
fn two_storage_blocks_is_an_error() {
    let err = parse_err(&hcl_with("storage \"raft\" { path = \"/data\" }"));
    assert_err_names(&err, "storage");
    assert_err_names(&err, "only one");
    // Two blocks of the same type, which hcl-rs turns into an array.
    let err = parse_err(
        r#"
storage "raft" { path = "/a" }
storage "raft" { path = "/b" }
listener "tcp" { tls_disable = true }
"#,
    );
    assert_err_names(&err, "storage");
}

#[test]
fn unsupported_storage_type_is_an_error_listing_supported_types() {
    let err = parse_err(
        r#"
storage "consul" {
  address = "127.0.0.1:8500"
}
listener "tcp" { tls_disable = true }
"#,
    );
    assert_err_names(&err, "storage");
    assert_err_names(&err, "consul");
    assert_err_names(&err, "raft");
    assert_err_names(&err, "inmem");
    let err = parse_err("storage \"rafty\" {}\nlistener \"tcp\" { tls_disable = true }\n");
    assert_err_names(&err, "rafty");
}

#[test]
fn missing_storage_is_an_error_but_dev_has_defaults() {
    let err = parse_err("listener \"tcp\" { tls_disable = true }\n");
    assert_eq!(err.key(), Some("storage"));
    let dev = ServerConfig::dev();
    assert_eq!(dev.storage, StorageConfig::Inmem);
    assert_eq!(dev.listeners.len(), 1);
    assert!(dev.listeners[0].tls_disable);
    assert_eq!(dev.listeners[0].address, "127.0.0.1:8200");
}

#[test]
fn raft_without_path_is_an_error() {
    let err = parse_err(
        "storage \"raft\" { node_id = \"n1\" }\nlistener \"tcp\" { tls_disable = true }\n",
    );
    assert_eq!(err.key(), Some("storage.raft.path"));
}

#[test]
fn raft_bad_values_are_errors_naming_the_key() {
    for (body, key) in [
        (
            "path = \"/d\"\nperformance_multiplier = \"fast\"",
            "storage.raft.performance_multiplier",
        ),
        (
            "path = \"/d\"\nperformance_multiplier = -1",
            "storage.raft.performance_multiplier",
        ),
        ("path = true", "storage.raft.path"),
        (
            "path = \"/d\"\nautopilot_update_interval = \"soon\"",
            "storage.raft.autopilot_update_interval",
        ),
        (
            "path = \"/d\"\nretry_join { leader_api_addr = \"node2:8200\" }",
            "storage.raft.retry_join.leader_api_addr",
        ),
        (
            "path = \"/d\"\nretry_join { leader_ca_cert_file = \"/ca.pem\" }",
            "storage.raft.retry_join.leader_api_addr",
        ),
        (
            "path = \"/d\"\nretry_join = \"https://x:8200\"",
            "storage.raft.retry_join",
        ),
    ] {
        let err = parse_err(&format!(
            "storage \"raft\" {{\n{body}\n}}\nlistener \"tcp\" {{ tls_disable = true }}\n"
        ));
        assert_err_names(&err, key);
    }
}

#[test]
fn raft_autopilot_and_numeric_strings() {
    let loaded = parse_ok(
        r#"
storage "raft" {
  path = "/d"
  performance_multiplier = "5"
  autopilot_reconcile_interval = "10s"
  autopilot_update_interval = 2
}
listener "tcp" { tls_disable = true }
"#,
    );
    let StorageConfig::Raft(raft) = loaded.config.storage else {
        panic!("raft expected");
    };
    assert_eq!(raft.performance_multiplier, Some(5));
    assert_eq!(
        raft.autopilot_reconcile_interval,
        Some(Duration::from_secs(10))
    );
    assert_eq!(raft.autopilot_update_interval, Some(Duration::from_secs(2)));
}

#[test]
fn retry_join_auto_join_is_parsed_but_warned_and_dropped() {
    let loaded = parse_ok(
        r#"
storage "raft" {
  path = "/d"
  retry_join {
    auto_join = "provider=aws tag_key=coffer tag_value=prod"
    auto_join_scheme = "https"
  }
  retry_join {
    leader_api_addr = "https://node2:8200"
    leader_ca_cert = "-----BEGIN CERTIFICATE-----"
  }
}
listener "tcp" { tls_disable = true }
"#,
    );
    assert_warns(&loaded, "storage.raft.retry_join.auto_join");
    assert_warns(&loaded, "storage.raft.retry_join.auto_join_scheme");
    assert_warns(&loaded, "storage.raft.retry_join.leader_ca_cert");
    let StorageConfig::Raft(raft) = loaded.config.storage else {
        panic!("raft expected");
    };
    assert_eq!(raft.retry_join.len(), 1);
    assert_eq!(raft.retry_join[0].leader_api_addr, "https://node2:8200");
    let err = parse_err(
        r#"
storage "raft" {
  path = "/d"
  retry_join {
    leader_api_addr = "https://node2:8200"
    auto_join = "provider=aws"
  }
}
listener "tcp" { tls_disable = true }
"#,
    );
    assert_err_names(&err, "storage.raft.retry_join");
    assert_err_names(&err, "auto_join");
}

// ---- listeners

#[test]
fn listener_json_forms_are_equivalent() {
    let forms = [
        r#"{"listener": {"tcp": {"address": "127.0.0.1:9000", "tls_disable": true}}}"#,
        r#"{"listener": [{"tcp": {"address": "127.0.0.1:9000", "tls_disable": true}}]}"#,
        r#"{"listener": {"tcp": [{"address": "127.0.0.1:9000", "tls_disable": true}]}}"#,
        r#"{"listener": [{"type": "tcp", "address": "127.0.0.1:9000", "tls_disable": true}]}"#,
    ];
    for form in forms {
        let mut value: Value = serde_json::from_str(form).unwrap();
        value["storage"] = serde_json::json!({"inmem": {}});
        let loaded = parse_json(&value.to_string()).unwrap();
        assert_eq!(
            loaded.config.listeners,
            vec![TcpListener {
                address: "127.0.0.1:9000".into(),
                tls_disable: true,
                ..TcpListener::default()
            }],
            "{form}"
        );
        assert!(loaded.warnings.is_empty(), "{form}: {:?}", loaded.warnings);
    }
}

#[test]
fn tls_disable_accepts_vaults_lax_booleans() {
    for (value, expected) in [
        ("true", true),
        ("false", false),
        ("\"true\"", true),
        ("\"false\"", false),
        ("1", true),
        ("0", false),
        ("\"1\"", true),
        ("\"0\"", false),
    ] {
        let text = format!(
            r#"
storage "inmem" {{}}
listener "tcp" {{
  tls_disable   = {value}
  tls_cert_file = "/c.pem"
  tls_key_file  = "/k.pem"
}}
"#
        );
        let loaded = parse_ok(&text);
        assert_eq!(loaded.config.listeners[0].tls_disable, expected, "{value}");
    }
}

#[test]
fn tls_disable_maybe_is_an_error_naming_the_key() {
    let err = parse_err("storage \"inmem\" {}\nlistener \"tcp\" { tls_disable = \"maybe\" }\n");
    assert_err_names(&err, "listener.tcp.tls_disable");
    assert_err_names(&err, "maybe");
    let err = parse_err("storage \"inmem\" {}\nlistener \"tcp\" { tls_disable = 2 }\n");
    assert_err_names(&err, "listener.tcp.tls_disable");
}

#[test]
fn tls_listener_without_cert_or_key_is_an_error() {
    let err = parse_err(
        r#"
storage "inmem" {}
listener "tcp" {
  address = "0.0.0.0:8200"
  tls_key_file = "/k.pem"
}
"#,
    );
    assert_err_names(&err, "listener.tcp.tls_cert_file");
    assert_err_names(&err, "0.0.0.0:8200");
    let err = parse_err(
        r#"
storage "inmem" {}
listener "tcp" {
  address = "127.0.0.1:8210"
  tls_disable = true
}
listener "tcp" {
  address = "0.0.0.0:8200"
  tls_cert_file = "/c.pem"
}
"#,
    );
    assert_err_names(&err, "listener.tcp.tls_key_file");
    assert_err_names(&err, "listener 2 of 2");
}

#[test]
fn bad_listener_type_is_an_error() {
    let err =
        parse_err("storage \"inmem\" {}\nlistener \"unix\" { address = \"/run/coffer.sock\" }\n");
    assert_err_names(&err, "listener.unix");
    assert_err_names(&err, "tcp");
}

#[test]
fn listener_value_errors_name_the_key() {
    for (body, key) in [
        (
            "tls_min_version = \"tls11\"",
            "listener.tcp.tls_min_version",
        ),
        ("tls_min_version = \"ssl3\"", "listener.tcp.tls_min_version"),
        ("address = \"\"", "listener.tcp.address"),
        ("address = true", "listener.tcp.address"),
        (
            "tls_client_ca_file = [\"a\"]",
            "listener.tcp.tls_client_ca_file",
        ),
        (
            "tls_require_and_verify_client_cert = true\ntls_disable_client_certs = true",
            "listener.tcp.tls_disable_client_certs",
        ),
    ] {
        let err = parse_err(&format!(
            "storage \"inmem\" {{}}\nlistener \"tcp\" {{\n tls_cert_file = \"/c\"\n tls_key_file = \"/k\"\n{body}\n}}\n"
        ));
        assert_err_names(&err, key);
    }
}

#[test]
fn no_listener_and_duplicate_addresses_are_errors() {
    let err = parse_err("storage \"inmem\" {}\n");
    assert_eq!(err.key(), Some("listener"));
    let err = parse_err(
        r#"
storage "inmem" {}
listener "tcp" { tls_disable = true }
listener "tcp" { tls_disable = true }
"#,
    );
    assert_err_names(&err, "listener.tcp.address");
    assert_err_names(&err, "127.0.0.1:8200");
}

#[test]
fn tls_settings_on_a_plain_listener_are_warned_about() {
    let loaded = parse_ok(
        "storage \"inmem\" {}\nlistener \"tcp\" {\n tls_disable = true\n tls_cert_file = \"/c\"\n}\n",
    );
    assert_warns(&loaded, "tls_cert_file");
}

// ---- top-level values

#[test]
fn bad_duration_is_an_error_naming_the_key() {
    let err = parse_err(&hcl_with("default_lease_ttl = \"forever\""));
    assert_eq!(err.key(), Some("default_lease_ttl"));
    assert_err_names(&err, "default_lease_ttl");
    assert_err_names(&err, "forever");
    let err = parse_err(&hcl_with("max_lease_ttl = true"));
    assert_err_names(&err, "max_lease_ttl");
    let err = parse_json(
        r#"{"storage": {"inmem": {}}, "listener": {"tcp": {"tls_disable": true}},
            "default_lease_ttl": "12x"}"#,
    )
    .unwrap_err();
    assert_err_names(&err, "default_lease_ttl");
}

#[test]
fn durations_accept_seconds_and_strings() {
    let loaded = parse_ok(&hcl_with(
        "default_lease_ttl = 3600\nmax_lease_ttl = \"7d\"",
    ));
    assert_eq!(
        loaded.config.default_lease_ttl,
        Some(Duration::from_secs(3600))
    );
    assert_eq!(
        loaded.config.max_lease_ttl,
        Some(Duration::from_secs(7 * 86400))
    );
    assert_eq!(
        loaded.config.effective_default_lease_ttl(),
        Duration::from_secs(3600)
    );
    let loaded = parse_ok(&hcl_with("default_lease_ttl = \"0\""));
    assert_eq!(
        loaded.config.effective_default_lease_ttl(),
        VAULT_DEFAULT_LEASE_TTL
    );
}

#[test]
fn default_ttl_above_max_is_an_error_like_vault() {
    let err = parse_err(&hcl_with(
        "default_lease_ttl = \"2h\"\nmax_lease_ttl = \"1h\"",
    ));
    assert_eq!(err.key(), Some("default_lease_ttl"));
    // Unset default is Vault's 768h, which is above a 1h max.
    let err = parse_err(&hcl_with("max_lease_ttl = \"1h\""));
    assert_eq!(err.key(), Some("default_lease_ttl"));
}

#[test]
fn bad_top_level_values_are_errors_naming_the_key() {
    for (line, key) in [
        ("ui = \"sometimes\"", "ui"),
        ("disable_mlock = [true]", "disable_mlock"),
        ("disable_cache = \"yes\"", "disable_cache"),
        ("api_addr = true", "api_addr"),
        ("api_addr = \"node1:8200\"", "api_addr"),
        ("cluster_addr = \"10.0.0.1:8201\"", "cluster_addr"),
        ("log_level = \"loud\"", "log_level"),
        ("log_format = \"xml\"", "log_format"),
        ("cluster_name = { a = 1 }", "cluster_name"),
        ("pid_file = \"\"", "pid_file"),
        ("api_addr = some_variable", "api_addr"),
        (
            "seal \"transit\" { address = { nested = true } }",
            "seal.transit.address",
        ),
    ] {
        let err = parse_err(&hcl_with(line));
        assert_err_names(&err, key);
        assert_eq!(err.key(), Some(key), "{line}");
    }
}

#[test]
fn log_levels_are_normalised() {
    for (written, normal) in [
        ("trace", "trace"),
        ("DEBUG", "debug"),
        ("info", "info"),
        ("warn", "warn"),
        ("err", "error"),
        ("error", "error"),
    ] {
        let loaded = parse_ok(&hcl_with(&format!("log_level = \"{written}\"")));
        assert_eq!(loaded.config.log_level.as_deref(), Some(normal));
    }
}

#[test]
fn syntax_errors_are_reported() {
    assert!(matches!(
        parse_hcl("storage \"raft\" {"),
        Err(ConfigError::Syntax { format: "HCL", .. })
    ));
    assert!(matches!(
        parse_json("{\"storage\": "),
        Err(ConfigError::Syntax { format: "JSON", .. })
    ));
    assert!(parse_json("[1, 2]").is_err());
}

// ---- warnings

#[test]
fn keys_vault_knows_but_coffer_does_not_are_warnings() {
    let loaded = parse_ok(&hcl_with(
        r#"
telemetry {
  prometheus_retention_time = "30s"
}
ha_storage "consul" {
  address = "127.0.0.1:8500"
}
service_registration "kubernetes" {}
entropy "seal" { mode = "augmentation" }
license_path = "/etc/license.hclic"
raw_storage_endpoint = true
introspection_endpoint = true
disable_clustering = false
cache_size = 131072
disable_performance_standby = true
enable_response_header_hostname = true
user_lockout "all" { lockout_threshold = 5 }
replication { resolver_discover_servers = true }
sentinel { additional_enabled_modules = [] }
"#,
    ));
    for key in [
        "telemetry",
        "ha_storage",
        "service_registration",
        "entropy",
        "license_path",
        "raw_storage_endpoint",
        "introspection_endpoint",
        "disable_clustering",
        "cache_size",
        "disable_performance_standby",
        "enable_response_header_hostname",
        "user_lockout",
        "replication",
        "sentinel",
    ] {
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.contains(key) && w.contains("not supported by coffer")),
            "{key}: {:#?}",
            loaded.warnings
        );
    }
    assert_eq!(loaded.warnings.len(), 14, "{:#?}", loaded.warnings);
}

#[test]
fn unknown_keys_are_warnings_naming_the_key() {
    let loaded = parse_ok(
        r#"
storage "raft" {
  path = "/d"
  pathh = "/typo"
  trailing_logs = 10000
  retry_join {
    leader_api_addr = "https://n2:8200"
    leader_api_adr = "https://typo:8200"
  }
}
listener "tcp" {
  tls_disable = true
  adress = "0.0.0.0:8200"
  tls_cipher_suites = "TLS_AES_128_GCM_SHA256"
}
api_adr = "https://typo:8200"
"#,
    );
    assert_warns(&loaded, "unknown or unsupported field \"api_adr\"");
    assert_warns(&loaded, "storage.raft.pathh");
    assert_warns(&loaded, "storage.raft.retry_join.leader_api_adr");
    assert_warns(&loaded, "listener.tcp.adress");
    assert_warns(
        &loaded,
        "\"storage.raft.trailing_logs\" is not supported by coffer",
    );
    assert_warns(
        &loaded,
        "\"listener.tcp.tls_cipher_suites\" is not supported by coffer",
    );
    assert_eq!(loaded.warnings.len(), 6, "{:#?}", loaded.warnings);
    let loaded =
        parse_ok("storage \"inmem\" { foo = 1 }\nlistener \"tcp\" { tls_disable = true }\n");
    assert_warns(&loaded, "storage.inmem.foo");
}

#[test]
fn duplicate_keys_are_warnings() {
    // HCL2 (hcl-rs) rejects a redefined attribute outright, naming it.
    let err = parse_err(&hcl_with("ui = false\nui = true"));
    assert!(matches!(err, ConfigError::Syntax { .. }));
    assert_err_names(&err, "ui");
    // An attribute and a block of the same name: the block wins, with a warning.
    let loaded = parse_ok(&hcl_with("telemetry = 1\ntelemetry {}"));
    assert_warns(
        &loaded,
        "\"telemetry\" is set both as an attribute and as a block",
    );
    let loaded = parse_json(
        r#"{"storage": {"inmem": {}}, "listener": {"tcp": {"tls_disable": true, "tls_disable": false,
            "tls_cert_file": "/c", "tls_key_file": "/k"}}}"#,
    )
    .unwrap();
    assert_warns(&loaded, "listener.tcp.tls_disable");
    assert!(!loaded.config.listeners[0].tls_disable);
}

#[test]
fn load_file_prefixes_warnings_with_the_file() {
    let dir = std::env::temp_dir().join(format!("coffer-config-warn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("w.hcl");
    std::fs::write(&file, hcl_with("telemetry {}")).unwrap();
    let loaded = load_file(&file);
    std::fs::remove_dir_all(&dir).unwrap();
    let loaded = loaded.unwrap();
    assert_eq!(loaded.warnings.len(), 1);
    assert!(loaded.warnings[0].starts_with(&file.display().to_string()));
    assert!(loaded.warnings[0].contains("telemetry"));
}

// ---- seal

#[test]
fn seal_options_are_kept_as_strings_and_redacted_in_debug() {
    let loaded = parse_ok(&hcl_with(
        r#"
seal "awskms" {
  region     = "eu-west-1"
  kms_key_id = "alias/coffer"
  secret_key = "very-secret"
  disabled   = false
  priority   = 1
}
"#,
    ));
    let seal = loaded.config.seal.clone().unwrap();
    assert_eq!(seal.kind, "awskms");
    assert_eq!(seal.options["region"], "eu-west-1");
    assert_eq!(seal.options["disabled"], "false");
    assert_eq!(seal.options["priority"], "1");
    let debug = format!("{:?}", loaded.config);
    assert!(!debug.contains("very-secret"), "{debug}");
    assert!(debug.contains("eu-west-1"));
}

#[test]
fn two_seals_is_an_error() {
    let err = parse_err(&hcl_with(
        "seal \"transit\" { address = \"https://a\" }\nseal \"awskms\" { region = \"x\" }",
    ));
    assert_eq!(err.key(), Some("seal"));
}

// ---- merging

#[test]
fn load_files_merges_later_wins_and_checks_storage_on_the_result() {
    let dir = std::env::temp_dir().join(format!("coffer-config-merge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let a = dir.join("a.hcl");
    let b = dir.join("b.json");
    std::fs::write(
        &a,
        "listener \"tcp\" { tls_disable = true }\napi_addr = \"https://a:8200\"\nui = true\n",
    )
    .unwrap();
    std::fs::write(
        &b,
        r#"{"storage": {"raft": {"path": "/d"}}, "api_addr": "https://b:8200", "ui": false}"#,
    )
    .unwrap();
    let merged = load_files(&[&a, &b]);
    let only_a = load_files(&[&a]);
    let onto_dev = load_files_onto(ServerConfig::dev(), &[&a]);
    std::fs::remove_dir_all(&dir).unwrap();

    let merged = merged.unwrap().config;
    assert_eq!(merged.api_addr.as_deref(), Some("https://b:8200"));
    assert!(!merged.ui);
    assert_eq!(merged.storage.kind(), "raft");
    assert_eq!(only_a.unwrap_err().key(), Some("storage"));

    // Dev defaults plus a file: the file's listener duplicates the dev one's address.
    assert_eq!(onto_dev.unwrap_err().key(), Some("listener.tcp.address"));
}

#[test]
fn server_config_merge() {
    let base = load_file(&fixture("single-node.hcl")).unwrap().config;
    let other = load_file(&fixture("cluster-node1.hcl")).unwrap().config;
    let merged = base.clone().merge(other.clone());
    assert_eq!(merged.storage, other.storage);
    assert_eq!(
        merged.listeners.len(),
        base.listeners.len() + other.listeners.len()
    );
    assert_eq!(merged.api_addr, other.api_addr);
    assert_eq!(merged.seal, other.seal);
    assert_eq!(merged.cluster_name, other.cluster_name);
    assert!(merged.ui && merged.disable_mlock);
    let back = other.clone().merge(base.clone());
    assert_eq!(
        back.seal, other.seal,
        "an unset seal does not erase an earlier one"
    );
    assert_eq!(back.default_lease_ttl, other.default_lease_ttl);
}
