//! The `coffer` binary: `coffer server` runs the server; every other subcommand is the
//! operator CLI.

/// mimalloc instead of glibc malloc: under long runs of token and lease churn glibc's
/// heap fragments until every allocation on the request path costs a bin search (a
/// fresh server read a KV key with ~24% less CPU than one that had issued 200k tokens;
/// with mimalloc the difference is ~4%). Built without transparent huge pages (with them
/// the idle server held 70 MiB). See BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v3's `mimalloc.h` (the `mi_option_e` enum; the
/// Rust bindings of libmimalloc-sys 0.1.49 do not name it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() {
    // Hand freed pages back to the OS at once instead of after 1 s of further allocation
    // activity: an idle server otherwise kept what a restart's log and snapshot reading
    // had freed (300k secrets: 230 MiB resident after a restart, 80 MiB with this, 51 MiB
    // with glibc + malloc_trim). No measurable cost on the request path.
    // SAFETY: sets a global option of the allocator; takes no pointers.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    std::process::exit(coffer::main_entry());
}
