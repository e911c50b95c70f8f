# A CI pipeline's broker: it hands AppRole secret IDs to jobs, always response-wrapped
# with a short TTL, and reads the secrets CI needs.

# The role ID is not secret on its own.
path "auth/approle/role/ci/role-id" {
  capabilities = ["read"]
}

# Secret IDs only as wrapped responses that live between 30 seconds and 10 minutes.
path "auth/approle/role/ci/secret-id" {
  capabilities = ["update"]
  min_wrapping_ttl = "30s"
  max_wrapping_ttl = "10m"
  allowed_parameters = {
    "metadata" = []
    "cidr_list" = ["10.0.0.0/8"]
  }
}

# CI secrets, read only.
path "secret/data/ci/*" {
  capabilities = ["read"]
}
path "secret/metadata/ci/*" {
  capabilities = ["list"]
}

# Child tokens for jobs: only ci-* policies, never an orphan.
path "auth/token/create" {
  capabilities = ["update"]
  allowed_parameters = {
    "policies" = ["ci-*"]
    "ttl" = []
    "num_uses" = []
  }
  denied_parameters = {
    "no_parent" = []
  }
}
