# Node 1 of a three-node cluster: Raft storage joining its peers, a public TLS listener
# with mutual-TLS clients allowed, a plain-text listener for a local agent, transit
# auto-unseal, and system lease TTLs.
cluster_name      = "coffer-prod"
api_addr          = "https://node1.coffer.internal:8200"
cluster_addr      = "https://node1.coffer.internal:8201"
ui                = true
disable_mlock     = true
default_lease_ttl = "768h"
max_lease_ttl     = 31536000
log_level         = "info"
log_format        = "json"
pid_file          = "/run/coffer/coffer.pid"

storage "raft" {
  path                   = "/var/lib/coffer/raft"
  node_id                = "node1"
  performance_multiplier = 1

  retry_join {
    leader_api_addr         = "https://node2.coffer.internal:8200"
    leader_ca_cert_file     = "/etc/coffer/tls/ca.pem"
    leader_client_cert_file = "/etc/coffer/tls/node1.pem"
    leader_client_key_file  = "/etc/coffer/tls/node1-key.pem"
    leader_tls_servername   = "node2.coffer.internal"
  }

  retry_join {
    leader_api_addr         = "https://node3.coffer.internal:8200"
    leader_ca_cert_file     = "/etc/coffer/tls/ca.pem"
    leader_client_cert_file = "/etc/coffer/tls/node1.pem"
    leader_client_key_file  = "/etc/coffer/tls/node1-key.pem"
  }
}

listener "tcp" {
  address            = "0.0.0.0:8200"
  cluster_address    = "0.0.0.0:8201"
  tls_cert_file      = "/etc/coffer/tls/node1.pem"
  tls_key_file       = "/etc/coffer/tls/node1-key.pem"
  tls_client_ca_file = "/etc/coffer/tls/ca.pem"
  tls_min_version    = "tls13"
}

listener "tcp" {
  address     = "127.0.0.1:8210"
  tls_disable = "true"
}

seal "transit" {
  address         = "https://kms.coffer.internal:8200"
  token           = "placeholder-not-a-real-token"
  disable_renewal = "false"
  key_name        = "autounseal"
  mount_path      = "transit/"
  tls_skip_verify = false
}
