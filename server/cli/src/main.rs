//! The `coffer` binary: `coffer server` runs the server; every other subcommand is the
//! operator CLI.

fn main() {
    std::process::exit(coffer::main_entry());
}
