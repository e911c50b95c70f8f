# A single coffer node with integrated (Raft) storage and TLS, as for Vault.
ui = true

storage "raft" {
  path    = "/var/lib/coffer/data"
  node_id = "coffer-0"
}

listener "tcp" {
  address       = "0.0.0.0:8200"
  tls_cert_file = "/etc/coffer/tls/server.crt"
  tls_key_file  = "/etc/coffer/tls/server.key"
}

api_addr     = "https://coffer.example.com:8200"
cluster_addr = "https://coffer.example.com:8201"

disable_mlock = true
