//! `coffer login`: authenticate with a token (checked with `lookup-self`), a
//! username and password (`userpass`), an AppRole (`approle`), or any other method's
//! `auth/<path>/login` endpoint, then store the token in the token helper file
//! (`~/.coffer-token`) so later commands use it.

use clap::Args;
use serde_json::{json, Map, Value};

use super::{CliError, CmdResult, GlobalArgs};
use crate::client::{self, store_token_helper};
use crate::input::{parse_data, prompt_secret};

/// Authenticate and store the token.
#[derive(Args, Debug)]
#[command(
    long_about = "Authenticate to the server and store the resulting token in the token helper \
                  file ~/.coffer-token (mode 0600), which later commands use when COFFER_TOKEN \
                  and VAULT_TOKEN are unset.\n\n\
                  -method=token (the default) takes the token as the argument, or prompts for \
                  it without echo. -method=userpass takes username=NAME and password=PW (the \
                  password is prompted for when absent). -method=approle takes role_id=ID and \
                  secret_id=ID. Any other method sends its key=value arguments to \
                  auth/<path>/login. -path changes the mount path (default: the method's \
                  name). -field=token prints only the token.",
    after_help = "Examples:\n  coffer login                       # prompts for a token\n  \
                  coffer login hvs.XXXX\n  \
                  coffer login -method=userpass username=alice\n  \
                  coffer login -method=approle role_id=ID secret_id=SECRET\n  \
                  coffer login -no-store -field=token -method=userpass username=ci password=-"
)]
pub struct LoginArgs {
    /// TOKEN for -method=token, else the method's key=value credentials.
    #[arg(value_name = "TOKEN | K=V")]
    pub args: Vec<String>,
    /// The auth method: token, userpass, approle, or another method's name.
    #[arg(long, default_value = "token", value_name = "METHOD")]
    pub method: String,
    /// The auth method's mount path (default: the method's name).
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    /// Do not store the token in the token helper.
    #[arg(long = "no-store")]
    pub no_store: bool,
    /// Print nothing on success.
    #[arg(long = "no-print")]
    pub no_print: bool,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Remove a credential from the data, without the line ending a `key=-` read from
/// standard input brings along (`echo pw | coffer login ... password=-`).
fn take_string(data: &mut Map<String, Value>, key: &str) -> Option<String> {
    let value = match data.remove(key) {
        Some(Value::String(s)) => s,
        Some(Value::Array(list)) => list.last().and_then(Value::as_str)?.to_string(),
        _ => return None,
    };
    let value = value.trim_end_matches(['\n', '\r']).to_string();
    (!value.is_empty()).then_some(value)
}

pub async fn run(a: LoginArgs) -> CmdResult {
    let ctx = a.global.ctx()?;
    let anonymous = ctx.client.with_token(None);
    let method = a.method.trim().to_lowercase();
    let mount = a
        .path
        .as_deref()
        .map(|p| p.trim_matches('/').to_string())
        .unwrap_or_else(|| method.clone());

    let secret = if method == "token" {
        let (token, rest): (Option<String>, Vec<String>) = match a.args.first() {
            // `coffer login -`: the token is read from standard input.
            Some(first) if first == "-" => (
                Some(prompt_secret("Token (will be hidden): ")?),
                a.args[1..].to_vec(),
            ),
            Some(first) if !first.contains('=') => (Some(first.clone()), a.args[1..].to_vec()),
            _ => (None, a.args.clone()),
        };
        let mut data = parse_data(&rest)?;
        let token = match token.or_else(|| take_string(&mut data, "token")) {
            Some(t) => t,
            None => prompt_secret("Token (will be hidden): ")?,
        };
        if token.is_empty() {
            return Err(CliError::usage("Error authenticating: no token was given"));
        }
        let lookup = ctx
            .client
            .with_token(Some(token.clone()))
            .read("auth/token/lookup-self", &[])
            .await
            .map_err(|e| CliError::api("Error authenticating", e))?
            .unwrap_or(Value::Null);
        let d = lookup.get("data").cloned().unwrap_or(Value::Null);
        let policies = d.get("policies").cloned().unwrap_or(json!([]));
        json!({
            "request_id": lookup.get("request_id").cloned().unwrap_or(json!("")),
            "lease_id": "",
            "lease_duration": 0,
            "renewable": false,
            "data": null,
            "warnings": lookup.get("warnings").cloned().unwrap_or(Value::Null),
            "auth": {
                "client_token": token,
                "accessor": d.get("accessor").cloned().unwrap_or(json!("")),
                "policies": policies,
                "token_policies": policies,
                "identity_policies": d.get("identity_policies").cloned().unwrap_or(Value::Null),
                "metadata": d.get("meta").cloned().unwrap_or(Value::Null),
                "lease_duration": d.get("ttl").cloned().unwrap_or(json!(0)),
                "renewable": d.get("renewable").cloned().unwrap_or(json!(false)),
                "entity_id": d.get("entity_id").cloned().unwrap_or(json!("")),
                "token_type": d.get("type").cloned().unwrap_or(json!("service")),
                "orphan": d.get("orphan").cloned().unwrap_or(json!(false)),
            },
        })
    } else {
        let mut data = parse_data(&a.args)?;
        let path = match method.as_str() {
            "userpass" | "ldap" | "okta" | "radius" => {
                let username = take_string(&mut data, "username").ok_or_else(|| {
                    CliError::usage(format!(
                        "Missing username: -method={method} needs username=NAME"
                    ))
                })?;
                let password = match take_string(&mut data, "password") {
                    Some(p) => p,
                    None => prompt_secret("Password (will be hidden): ")?,
                };
                data.insert("password".into(), json!(password));
                format!("auth/{mount}/login/{username}")
            }
            "approle" => {
                for key in ["role_id", "secret_id"] {
                    if !data.contains_key(key) {
                        return Err(CliError::usage(format!(
                            "Missing {key}: -method=approle needs role_id=ID and secret_id=ID"
                        )));
                    }
                }
                format!("auth/{mount}/login")
            }
            _ => format!("auth/{mount}/login"),
        };
        anonymous
            .write(&path, &Value::Object(data))
            .await
            .map_err(|e| CliError::api("Error authenticating", e))?
            .unwrap_or(Value::Null)
    };

    let token = secret
        .pointer("/auth/client_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| CliError::remote("Error authenticating: the server returned no token"))?
        .to_string();

    if !a.no_store {
        store_token_helper(&token).map_err(|e| {
            CliError::usage(format!("Error storing token in the token helper: {e}"))
        })?;
    }
    if a.no_print {
        return Ok(0);
    }
    if ctx.out.field.is_none() && client::env_var("TOKEN").is_some() {
        eprintln!(
            "WARNING! The COFFER_TOKEN or VAULT_TOKEN environment variable is set! It takes\n\
             precedence over the token helper; unset it to use the token stored by login.\n"
        );
    }
    if ctx.out.field.is_none() && ctx.out.is_table() {
        if a.no_store {
            crate::outln!(
                "Success! You are now authenticated. The token information displayed below\n\
                 is NOT stored in the token helper. Pass it in COFFER_TOKEN or VAULT_TOKEN on\n\
                 future requests.\n"
            );
        } else {
            crate::outln!(
                "Success! You are now authenticated. The token information displayed below\n\
                 is already stored in the token helper. You do NOT need to run \"coffer login\"\n\
                 again. Future requests will automatically use this token.\n"
            );
        }
    }
    ctx.out.secret(&secret)
}
