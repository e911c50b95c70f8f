//! Coffer's integration tests: one test binary (like ripgrep's) with a module per
//! suite. Every test starts real `coffer server` processes on 127.0.0.1 ports.

mod audit;
mod auth;
mod barrier_canary;
mod cli;
mod clients;
mod cluster;
mod cluster_harness;
mod config;
mod external_plugin;
mod harness;
mod kv;
mod leases;
mod pipeline;
mod seal;
mod secret_leases;
mod transit;
mod wrapping;
