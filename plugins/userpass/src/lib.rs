//! The userpass plugin (being written).
