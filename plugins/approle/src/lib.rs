//! The approle plugin (being written).
