//! `coffer status`: the seal status table (`sys/seal-status` plus `sys/leader`), with
//! Vault's exit codes: 0 unsealed, 2 sealed, 1 when the server cannot be asked.

use clap::Args;
use serde_json::{Map, Value};

use super::{CliError, CmdResult, Ctx, GlobalArgs};
use crate::output::key_value_table;

/// Print the seal status of the server.
#[derive(Args, Debug)]
#[command(
    long_about = "Print the seal status of the server: initialised, sealed, shares and \
                  threshold, unseal progress, version, storage and HA mode.\n\n\
                  Exit code 0 means unsealed, 2 sealed, 1 an error (the server could not be \
                  reached), as with `vault status`. No token is needed.",
    after_help = "Examples:\n  coffer status\n  coffer status -format=json\n  \
                  coffer status >/dev/null; echo $?   # 0 unsealed, 2 sealed"
)]
pub struct StatusArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
}

pub async fn run(args: StatusArgs) -> CmdResult {
    let ctx = args.global.ctx()?;
    let status = ctx
        .client
        .read("sys/seal-status", &[])
        .await
        .map_err(|e| CliError::usage(format!("Error checking seal status: {e}")))?
        .ok_or_else(|| CliError::usage("Error checking seal status: empty answer"))?;
    print_seal_status(&ctx, &status)
        .await
        .map_err(|e| CliError::usage(e.message))?;
    let sealed = status
        .get("sealed")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    Ok(if sealed { 2 } else { 0 })
}

/// Vault's `OutputSealStatus`: the seal status merged with `sys/leader` (a sealed
/// server cannot answer that; HA is then shown as enabled, as Vault does).
pub async fn print_seal_status(ctx: &Ctx, status: &Value) -> Result<(), CliError> {
    let leader = match ctx.client.read("sys/leader", &[]).await {
        Ok(l) => l.unwrap_or(Value::Null),
        Err(e) if e.status() == Some(503) || e.mentions("sealed") => {
            serde_json::json!({ "ha_enabled": true })
        }
        Err(e) => {
            return Err(CliError::remote(format!(
                "Error checking leader status: {e}"
            )))
        }
    };
    let mut merged: Map<String, Value> = status.as_object().cloned().unwrap_or_default();
    merged.insert(
        "ha_enabled".into(),
        leader
            .get("ha_enabled")
            .cloned()
            .unwrap_or(Value::Bool(false)),
    );
    for key in [
        "is_self",
        "active_time",
        "leader_address",
        "leader_cluster_address",
        "performance_standby",
        "raft_committed_index",
        "raft_applied_index",
    ] {
        let Some(v) = leader.get(key) else { continue };
        let empty = match v {
            Value::Bool(b) => !b,
            Value::String(s) => s.is_empty(),
            Value::Number(n) => n.as_u64() == Some(0),
            Value::Null => true,
            _ => false,
        };
        if !empty {
            merged.insert(key.into(), v.clone());
        }
    }
    if let Some(field) = &ctx.out.field {
        return ctx
            .out
            .raw_field(merged.get(field).filter(|v| !v.is_null()), field)
            .map(|_| ());
    }
    if !ctx.out.is_table() {
        return ctx.out.structured(&Value::Object(merged));
    }
    crate::outln!("{}", seal_status_table(&merged));
    Ok(())
}

/// The rows of Vault's seal-status table.
pub fn seal_status_table(m: &Map<String, Value>) -> String {
    let s = |k: &str| match m.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    };
    let b = |k: &str| m.get(k).and_then(Value::as_bool).unwrap_or(false);
    let recovery = b("recovery_seal");
    let prefix = if recovery { "Recovery " } else { "" };
    let sealed = b("sealed");
    let mut rows: Vec<(String, String)> = vec![
        (format!("{prefix}Seal Type"), s("type")),
        ("Initialized".into(), b("initialized").to_string()),
        ("Sealed".into(), sealed.to_string()),
        (format!("Total {prefix}Shares"), s("n")),
        ("Threshold".into(), s("t")),
    ];
    if sealed {
        rows.push((
            "Unseal Progress".into(),
            format!("{}/{}", s("progress"), s("t")),
        ));
        rows.push(("Unseal Nonce".into(), s("nonce")));
    }
    if b("migration") {
        rows.push(("Seal Migration in Progress".into(), "true".into()));
    }
    rows.push(("Version".into(), s("version")));
    rows.push(("Build Date".into(), s("build_date")));
    rows.push(("Storage Type".into(), s("storage_type")));
    if !s("cluster_name").is_empty() && !s("cluster_id").is_empty() {
        rows.push(("Cluster Name".into(), s("cluster_name")));
        rows.push(("Cluster ID".into(), s("cluster_id")));
    }
    let ha = b("ha_enabled");
    rows.push(("HA Enabled".into(), ha.to_string()));
    if ha && !sealed {
        rows.push(("HA Cluster".into(), s("leader_cluster_address")));
        let is_self = b("is_self");
        rows.push((
            "HA Mode".into(),
            if is_self { "active" } else { "standby" }.into(),
        ));
        let active = s("active_time");
        if is_self && !active.is_empty() && !active.starts_with("0001-01-01") {
            rows.push(("Active Since".into(), active));
        }
        if !is_self {
            let addr = s("leader_address");
            rows.push((
                "Active Node Address".into(),
                if addr.is_empty() {
                    "<none>".into()
                } else {
                    addr
                },
            ));
        }
    }
    for (key, label) in [
        ("raft_committed_index", "Raft Committed Index"),
        ("raft_applied_index", "Raft Applied Index"),
    ] {
        if m.get(key).and_then(Value::as_u64).unwrap_or(0) > 0 {
            rows.push((label.into(), s(key)));
        }
    }
    key_value_table(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sealed_table_shows_progress() {
        let m = json!({"type": "shamir", "initialized": true, "sealed": true, "t": 3, "n": 5,
                       "progress": 1, "nonce": "", "version": "1.16.3", "build_date": "x",
                       "storage_type": "raft", "ha_enabled": true});
        let t = seal_status_table(m.as_object().unwrap());
        assert!(
            t.starts_with("Key                Value\n---                -----\n"),
            "{t}"
        );
        assert!(t.contains("\nUnseal Progress    1/3\n"), "{t}");
        assert!(t.contains("\nUnseal Nonce       n/a\n"), "{t}");
        assert!(t.ends_with("HA Enabled         true"), "{t}");
    }
}
