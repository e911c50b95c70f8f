//! The kv plugin (being written).
