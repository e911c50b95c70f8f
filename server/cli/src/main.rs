//! The `coffer` binary: `coffer server` runs the server; every other subcommand is the
//! operator CLI.

/// mimalloc instead of glibc malloc: under long runs of token and lease churn glibc's
/// heap fragments until every allocation on the request path costs a bin search (a
/// fresh server read a KV key with ~24% less CPU than one that had issued 200k tokens;
/// with mimalloc the difference is ~5%). See BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(coffer::main_entry());
}
