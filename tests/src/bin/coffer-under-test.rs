//! The `coffer` entry point, built inside the test crate so integration tests can
//! start real server processes (kill, restart) from `CARGO_BIN_EXE_coffer-under-test`.

fn main() {
    std::process::exit(coffer::main_entry());
}
