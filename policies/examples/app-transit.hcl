# An application that encrypts with the transit key "app" and never sees it.

path "transit/encrypt/app" {
  capabilities = ["update"]
}

path "transit/decrypt/app" {
  capabilities = ["update"]
}

path "transit/rewrap/app" {
  capabilities = ["update"]
}

# Data keys, plaintext or wrapped (transit/datakey/plaintext/app, .../wrapped/app).
path "transit/datakey/+/app" {
  capabilities = ["update"]
}

# Read the key's public configuration (versions, type), but not export or back it up.
path "transit/keys/app" {
  capabilities = ["read"]
}
path "transit/export/*" {
  capabilities = ["deny"]
}
path "transit/backup/*" {
  capabilities = ["deny"]
}

# A second block for the same path merges with the first: encrypt requests must carry
# a plaintext and may not pin the retired key version 1.
path "transit/encrypt/app" {
  capabilities = ["update"]
  required_parameters = ["plaintext"]
  denied_parameters = {
    "key_version" = [1]
  }
}
