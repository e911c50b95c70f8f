//! Logging setup: `tracing` to stderr, level from `-log-level`, the config's
//! `log_level`, or `COFFER_LOG`/`RUST_LOG`. Secret values are never logged anywhere.

use tracing_subscriber::EnvFilter;

/// Install the global subscriber once (later calls are no-ops).
pub fn init(level: Option<&str>) {
    let level = match level.map(|l| l.to_ascii_lowercase()) {
        Some(l) if l == "err" => "error".to_string(),
        Some(l) => l,
        None => std::env::var("COFFER_LOG")
            .or_else(|_| std::env::var("RUST_LOG"))
            .unwrap_or_else(|_| "info".into()),
    };
    let filter = EnvFilter::try_new(format!("{level},actix_server=warn,openraft=warn,sled=warn"))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
