//! Integration-test crate; the suites live under tests/.
