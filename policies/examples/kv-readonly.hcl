# Read-only access to the KV v2 engine at secret/, except the admin area.

# Read any secret's current or past versions.
path "secret/data/*" {
  capabilities = ["read"]
}

# Browse the tree and read metadata (versions, timestamps).
path "secret/metadata/*" {
  capabilities = ["read", "list"]
}

# The admin area stays hidden, whatever other policies grant on secret/.
path "secret/data/admin/*" {
  capabilities = ["deny"]
}
path "secret/metadata/admin/*" {
  capabilities = ["deny"]
}
