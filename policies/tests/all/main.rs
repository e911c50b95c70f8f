//! Integration tests for coffer-policies, in one test binary: the ACL case table, the
//! shipped example policies, and a property test against a naive reference evaluator.

mod check;
mod examples;
mod reference;
mod table;
