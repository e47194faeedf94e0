//! The roadsynth command line: ingest, datasets, scenarios, runs on a schedule, augmentation, training, evaluation and reports.
//!
//! What the `roadsynth` binary and its `roadsynth-worker` helper share: the commands, their
//! arguments and the orchestrator file that drives them.
//!
//! Commands that need OpenCV (video decoding, rendering) run in the worker, the only binary that
//! links it: `roadsynth` parses their arguments (so `--help` and errors are the same) and then
//! replaces itself with the worker, passing its arguments through.

pub mod assets_cmd;
pub mod augment;
pub mod dataset_cmd;
pub mod experiment;
pub mod external_trainer;
pub mod ingest_cmd;
pub mod orchestrator;
pub mod ray_executor;
pub mod run_cmd;
pub mod run_recording;
pub mod runs_cmd;
pub mod schedule;
pub mod shard_task;

use std::ffi::OsString;

/// The helper binary that links OpenCV, beside `roadsynth`.
pub const WORKER: &str = "roadsynth-worker";

/// Replaces this process with the worker binary, run with `args`. Returns only on failure.
pub fn exec_worker(args: impl IntoIterator<Item = OsString>) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let worker = match std::env::current_exe() {
        Ok(me) => me.with_file_name(WORKER),
        Err(e) => return anyhow::anyhow!("locating the roadsynth binary: {e}"),
    };
    let error = std::process::Command::new(&worker).args(args).exec();
    anyhow::anyhow!(
        "cannot run {} (build it with `cargo build --bins`): {error}",
        worker.display()
    )
}

/// Names the global rayon pool's threads `rayon-N` (the flow names its own), so that profiles,
/// panics and `top -H` say which pool a thread belongs to.
pub fn name_rayon_threads() {
    // It fails only when the pool already exists, which then keeps working unnamed.
    let _ = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("rayon-{i}"))
        .build_global();
}

/// A closed standard output (`roadsynth dataset quarantine DIR | head`) ends the process quietly
/// with status 0, as `grep` or `rg` would, instead of a panic: Rust ignores `SIGPIPE`, so
/// `println!` panics on `EPIPE` (its message is the only trace of the cause a hook can see).
pub fn exit_quietly_when_stdout_closes() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout")
            && message.to_ascii_lowercase().contains("broken pipe")
        {
            std::process::exit(0);
        }
        default(info);
    }));
}

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
