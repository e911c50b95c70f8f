"""Vault compatibility check with the real Python client, hvac (pinned in
tests/tests/clients.rs). Run by the `clients::hvac_*` integration test against a fresh,
uninitialised Coffer server over TLS:

    VAULT_ADDR=https://127.0.0.1:PORT VAULT_CACERT=ca.pem AUDIT_FILE=/tmp/a.log \
        PYTHONPATH=<dir with hvac> python3 tests/clients/hvac_compat.py

Every call goes through hvac's own methods, so paths, verbs, JSON shapes, status codes
and the error envelope are the ones hvac (and the Vault users who rely on it) expect.
Exits non-zero with the failing check on the first mismatch; prints one line per check.
"""

import base64
import importlib.metadata
import os
import sys
import time

import hvac
from hvac import exceptions

ADDR = os.environ["VAULT_ADDR"]
CA = os.environ["VAULT_CACERT"]
AUDIT_FILE = os.environ["AUDIT_FILE"]
checks = 0


def check(name, cond):
    global checks
    if not cond:
        print(f"FAILED: {name}", flush=True)
        sys.exit(1)
    checks += 1
    print(f"ok: {name}", flush=True)


def raises(name, exc, fn):
    try:
        fn()
    except exc:
        check(name, True)
        return
    except Exception as e:  # noqa: BLE001 - report what came instead
        print(f"FAILED: {name}: expected {exc.__name__}, got {type(e).__name__}: {e}")
        sys.exit(1)
    print(f"FAILED: {name}: expected {exc.__name__}, got no error")
    sys.exit(1)


def client(token=None):
    return hvac.Client(url=ADDR, verify=CA, token=token)


def b64(s):
    return base64.b64encode(s.encode()).decode()


# --- init and unseal ceremony -------------------------------------------------------
c = client()
check("sys/init says uninitialised", c.sys.is_initialized() is False)
init = c.sys.initialize(secret_shares=5, secret_threshold=3)
keys, root = init["keys"], init["root_token"]
check("init returns 5 shares and an hvs. root token",
      len(keys) == 5 and len(init["keys_base64"]) == 5 and root.startswith("hvs."))
check("sealed after init", c.sys.is_sealed())
status = c.sys.submit_unseal_key(keys[0])
check("one share: still sealed, progress 1/3",
      status["sealed"] and status["progress"] == 1 and status["t"] == 3)
status = c.sys.submit_unseal_keys(keys[1:3])
check("threshold reached: unsealed", status["sealed"] is False and not c.sys.is_sealed())

c.token = root
for _ in range(100):
    try:
        if c.sys.read_leader_status()["is_self"]:
            break
    except exceptions.VaultError:
        pass
    time.sleep(0.1)
check("is_authenticated with the root token", c.is_authenticated())
health = c.sys.read_health_status(method="GET")
check("health: initialized, unsealed, active",
      health["initialized"] and not health["sealed"] and not health["standby"])
check("key status has term 1", c.sys.get_encryption_key_status()["term"] == 1)

# --- KV v2 -------------------------------------------------------------------------
c.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
check("kv v2 mount listed",
      "secret/" in c.sys.list_mounted_secrets_engines()["data"])
kv2 = c.secrets.kv.v2
w = kv2.create_or_update_secret(path="app/db", secret={"password": "s3cr3t"},
                                mount_point="secret")
check("kv v2 write returns version 1", w["data"]["version"] == 1)
r = kv2.read_secret_version(path="app/db", mount_point="secret",
                            raise_on_deleted_version=True)
check("kv v2 read", r["data"]["data"] == {"password": "s3cr3t"}
      and r["data"]["metadata"]["version"] == 1)
raises("kv v2 cas mismatch is refused", exceptions.InvalidRequest,
       lambda: kv2.create_or_update_secret(path="app/db", secret={"x": "y"}, cas=0,
                                           mount_point="secret"))
kv2.patch(path="app/db", secret={"user": "app"}, mount_point="secret")
r = kv2.read_secret_version(path="app/db", mount_point="secret",
                            raise_on_deleted_version=True)
check("kv v2 patch merges", r["data"]["data"] == {"password": "s3cr3t", "user": "app"}
      and r["data"]["metadata"]["version"] == 2)
check("kv v2 list", kv2.list_secrets(path="app", mount_point="secret")["data"]["keys"]
      == ["db"])
meta = kv2.read_secret_metadata(path="app/db", mount_point="secret")["data"]
check("kv v2 metadata", meta["current_version"] == 2 and set(meta["versions"]) == {"1", "2"})
old = kv2.read_secret_version(path="app/db", version=1, mount_point="secret",
                              raise_on_deleted_version=True)
check("kv v2 read of an old version", old["data"]["data"] == {"password": "s3cr3t"})
kv2.delete_latest_version_of_secret(path="app/db", mount_point="secret")
raises("kv v2 read of a deleted version is 404", exceptions.InvalidPath,
       lambda: kv2.read_secret_version(path="app/db", mount_point="secret",
                                       raise_on_deleted_version=True))
kv2.undelete_secret_versions(path="app/db", versions=[2], mount_point="secret")
check("kv v2 undelete",
      kv2.read_secret_version(path="app/db", mount_point="secret",
                              raise_on_deleted_version=True)["data"]["data"]["user"] == "app")
kv2.update_metadata(path="app/db", max_versions=5, mount_point="secret")
check("kv v2 metadata update",
      kv2.read_secret_metadata(path="app/db", mount_point="secret")["data"]["max_versions"]
      == 5)
raises("kv v2 read of a missing secret is 404", exceptions.InvalidPath,
       lambda: kv2.read_secret_version(path="nope", mount_point="secret",
                                       raise_on_deleted_version=True))

# --- KV v1 -------------------------------------------------------------------------
c.sys.enable_secrets_engine("kv", path="kv1", options={"version": "1"})
c.secrets.kv.v1.create_or_update_secret(path="cfg", secret={"a": "1"}, mount_point="kv1")
check("kv v1 read", c.secrets.kv.v1.read_secret(path="cfg", mount_point="kv1")["data"]
      == {"a": "1"})
c.secrets.kv.v1.delete_secret(path="cfg", mount_point="kv1")
raises("kv v1 deleted is 404", exceptions.InvalidPath,
       lambda: c.secrets.kv.v1.read_secret(path="cfg", mount_point="kv1"))
c.sys.tune_mount_configuration(path="kv1", default_lease_ttl="1h", max_lease_ttl="2h")
tuned = c.sys.read_mount_configuration(path="kv1")["data"]
check("mount tune", tuned["default_lease_ttl"] == 3600 and tuned["max_lease_ttl"] == 7200)
c.sys.disable_secrets_engine(path="kv1")
check("mount disabled",
      "kv1/" not in c.sys.list_mounted_secrets_engines()["data"])

# --- policies and tokens -----------------------------------------------------------
c.sys.create_or_update_acl_policy(
    name="app",
    policy='path "secret/data/app/*" { capabilities = ["read"] }\n'
           'path "auth/token/create" { capabilities = ["update"] }')
check("policy read back",
      "secret/data/app/*" in c.sys.read_acl_policy(name="app")["data"]["policy"])
check("policy listed", "app" in c.sys.list_acl_policies()["data"]["keys"])
created = c.auth.token.create(policies=["app"], ttl="1h", meta={"team": "a"})["auth"]
tok = created["client_token"]
check("token create", tok.startswith("hvs.") and created["lease_duration"] == 3600
      and "app" in created["policies"])
app = client(tok)
check("token with the policy reads",
      app.secrets.kv.v2.read_secret_version(path="app/db", mount_point="secret",
                                            raise_on_deleted_version=True)["data"]["data"]
      ["user"] == "app")
raises("token with the policy cannot write (403)", exceptions.Forbidden,
       lambda: app.secrets.kv.v2.create_or_update_secret(path="app/db", secret={"x": "y"},
                                                         mount_point="secret"))
look = c.auth.token.lookup(tok)["data"]
check("token lookup", look["meta"] == {"team": "a"} and "app" in look["policies"]
      and look["accessor"] == created["accessor"])
check("token lookup-self", app.auth.token.lookup_self()["data"]["id"] == tok)
renewed = c.auth.token.renew(tok, increment="2h")["auth"]
check("token renew", renewed["lease_duration"] == 7200)
caps = app.sys.get_capabilities(paths=["secret/data/app/x"])  # capabilities-self
check("capabilities-self", caps["capabilities"] == ["read"])
child = app.auth.token.create(ttl="10m")["auth"]["client_token"]
c.auth.token.revoke(tok)
check("revoked token is unauthenticated", not app.is_authenticated())
check("its child is revoked with it", not client(child).is_authenticated())
raises("unknown token gets 403", exceptions.Forbidden,
       lambda: client("hvs.notarealtoken000000000000").secrets.kv.v2.read_secret_version(
           path="app/db", mount_point="secret", raise_on_deleted_version=True))

# --- auth methods ------------------------------------------------------------------
c.sys.enable_auth_method("userpass")
c.auth.userpass.create_or_update_user(username="alice", password="pw-alice",
                                      policies=["app"])
u = client()
login = u.auth.userpass.login(username="alice", password="pw-alice")
check("userpass login", u.is_authenticated() and "app" in login["auth"]["policies"])
raises("userpass wrong password", exceptions.InvalidRequest,
       lambda: client().auth.userpass.login(username="alice", password="nope"))

c.sys.enable_auth_method("approle")
c.auth.approle.create_or_update_approle(role_name="web", token_policies=["app"],
                                        token_ttl="1h")
role_id = c.auth.approle.read_role_id(role_name="web")["data"]["role_id"]
secret_id = c.auth.approle.generate_secret_id(role_name="web")["data"]["secret_id"]
a = client()
login = a.auth.approle.login(role_id=role_id, secret_id=secret_id)
check("approle login", a.is_authenticated() and login["auth"]["lease_duration"] == 3600)
check("auth methods listed",
      {"userpass/", "approle/", "token/"} <= set(c.sys.list_auth_methods()["data"]))

# --- transit -----------------------------------------------------------------------
c.sys.enable_secrets_engine("transit")
c.secrets.transit.create_key(name="k")
ct = c.secrets.transit.encrypt_data(name="k", plaintext=b64("hello"))["data"]["ciphertext"]
check("transit encrypt", ct.startswith("vault:v1:"))
pt = c.secrets.transit.decrypt_data(name="k", ciphertext=ct)["data"]["plaintext"]
check("transit decrypt", base64.b64decode(pt) == b"hello")
c.secrets.transit.rotate_key(name="k")
ct2 = c.secrets.transit.rewrap_data(name="k", ciphertext=ct)["data"]["ciphertext"]
check("transit rewrap to v2", ct2.startswith("vault:v2:"))
check("transit key read",
      c.secrets.transit.read_key(name="k")["data"]["latest_version"] == 2)

# --- response wrapping -------------------------------------------------------------
wrapped = c.auth.token.create(policies=["app"], wrap_ttl="60s")
wrap_token = wrapped["wrap_info"]["token"]
check("wrapped token create", wrapped["auth"] is None and wrap_token)
unwrapped = c.sys.unwrap(token=wrap_token)
check("unwrap returns the token", unwrapped["auth"]["client_token"].startswith("hvs."))
# Vault answers 400 "wrapping token is not valid or does not exist" to a reused one.
raises("a wrapping token is single use", exceptions.InvalidRequest,
       lambda: c.sys.unwrap(token=wrap_token))

# --- audit -------------------------------------------------------------------------
c.sys.enable_audit_device(device_type="file", path="file",
                          options={"file_path": AUDIT_FILE})
check("audit device listed", "file/" in c.sys.list_enabled_audit_devices()["data"])
h = c.sys.calculate_hash(path="file", input_to_hash="s3cr3t")["data"]["hash"]
check("audit-hash", h.startswith("hmac-sha256:"))
kv2.read_secret_version(path="app/db", mount_point="secret", raise_on_deleted_version=True)
with open(AUDIT_FILE, encoding="utf-8") as f:
    log = f.read()
check("the audit log hashes the secret value", h in log and "s3cr3t" not in log)

# --- keys, seal --------------------------------------------------------------------
c.sys.rotate_encryption_key()
check("rotate adds term 2", c.sys.get_encryption_key_status()["term"] == 2)
check("data written before the rotation still reads",
      kv2.read_secret_version(path="app/db", mount_point="secret",
                              raise_on_deleted_version=True)["data"]["data"]["password"]
      == "s3cr3t")
c.sys.seal()
check("sealed", c.sys.is_sealed())
raises("requests while sealed get 503", exceptions.VaultDown,
       lambda: kv2.read_secret_version(path="app/db", mount_point="secret"))
c.sys.submit_unseal_keys(keys[2:5])
check("unsealed again with other shares", not c.sys.is_sealed())

print(f"hvac {importlib.metadata.version('hvac')}: {checks} checks passed")
