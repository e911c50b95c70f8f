# Operators: run the server, manage auth methods, secret engines and policies, and
# work with every KV secret. Not root: tokens, leases and seal stay separate.

# Auth methods: enable, tune, disable (sudo-protected in Vault).
path "sys/auth" {
  capabilities = ["read"]
}
path "sys/auth/*" {
  capabilities = ["create", "read", "update", "delete", "sudo"]
}

# Secret engines.
path "sys/mounts" {
  capabilities = ["read"]
}
path "sys/mounts/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

# ACL policies.
path "sys/policies/acl" {
  capabilities = ["list"]
}
path "sys/policies/acl/*" {
  capabilities = ["create", "read", "update", "delete", "list", "sudo"]
}

# Every KV v2 secret, including merge-patch.
path "secret/*" {
  capabilities = ["create", "read", "update", "patch", "delete", "list"]
}

# Health and cluster state.
path "sys/health" {
  capabilities = ["read", "sudo"]
}
path "sys/storage/raft/configuration" {
  capabilities = ["read"]
}

# Admins must not change the audit trail that watches them.
path "sys/audit/*" {
  capabilities = ["deny"]
}
