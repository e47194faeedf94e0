//! What the `roadsynth` binary and its `roadsynth-video` helper share: the ingest command and
//! the orchestrator file that drives it.

pub mod ingest_cmd;
pub mod orchestrator;

/// Logs to stderr at `level` (tracing's filter syntax); `RUST_LOG` overrides it.
pub fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
