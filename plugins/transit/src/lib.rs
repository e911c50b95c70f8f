//! The transit plugin (being written).
