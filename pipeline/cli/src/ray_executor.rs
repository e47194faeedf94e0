//! `executor: {kind: ray}`: an augment stage of `roadsynth run` sharded over a Ray cluster. The
//! repository's driver (`ray/driver.py`) submits one Ray task per shard, each running
//! `roadsynth-worker augment ... --shard i/N`, retries failed ones, streams their progress and then
//! runs `roadsynth dataset commit-shards`. The committed version is the one the local executor
//! writes, byte for byte, so the stage's key does not depend on the executor.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result};

use crate::augment::AugmentArgs;
use crate::ingest_cmd::EXIT_QUARANTINED;
use crate::orchestrator::{AugmentSpec, Orchestrator, RayExecutor};

/// The driver's command line for one augmentation: binaries beside `this_exe`.
pub fn driver_command(
    spec: &AugmentSpec,
    config: &Orchestrator,
    ray: &RayExecutor,
    this_exe: &Path,
) -> Command {
    let args = AugmentArgs::for_spec(spec, config);
    let mut cmd = Command::new(&ray.python);
    cmd.arg(&ray.driver)
        .arg("--address")
        .arg(&ray.address)
        .arg("--shards")
        .arg(ray.shards.to_string())
        .arg("--num-cpus")
        .arg(ray.num_cpus.to_string())
        .arg("--num-gpus")
        .arg(ray.num_gpus.to_string())
        .arg("--max-retries")
        .arg(ray.max_retries.to_string())
        .arg("--worker")
        .arg(this_exe.with_file_name(crate::WORKER))
        .arg("--roadsynth")
        .arg(this_exe.with_file_name("roadsynth"))
        .arg("--")
        .args(args.command_line());
    cmd
}

/// Process id (and process group) of the Ray driver running now; 0 when none.
static DRIVER: AtomicU32 = AtomicU32::new(0);

/// Stops the running Ray driver, if any, and its process group (an interrupted run must not leave
/// it committing shards behind the next run's back), waiting up to 10 s for it to go.
pub fn stop_driver() {
    let pid = DRIVER.load(Ordering::SeqCst);
    if pid == 0 {
        return;
    }
    let group = format!("-{pid}");
    let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
    for _ in 0..100 {
        if !Path::new("/proc").join(pid.to_string()).exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
}

/// Runs one augmentation through the Ray driver (its output streams through); returns whether
/// anything was quarantined, as the local executor does.
pub fn augment(spec: &AugmentSpec, config: &Orchestrator, ray: &RayExecutor) -> Result<bool> {
    let me = std::env::current_exe().context("locating the roadsynth binary")?;
    let mut cmd = driver_command(spec, config, ray, &me);
    println!(
        "augment {}: {} shards on the Ray cluster at {}",
        spec.name, ray.shards, ray.address
    );
    // Its own process group, so that stopping the run stops the driver and whatever it started.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("running {} {}", ray.python, ray.driver.display()))?;
    DRIVER.store(child.id(), Ordering::SeqCst);
    let status = child.wait();
    DRIVER.store(0, Ordering::SeqCst);
    let status =
        status.with_context(|| format!("running {} {}", ray.python, ray.driver.display()))?;
    match status.code() {
        Some(0) => Ok(false),
        Some(code) if code == i32::from(EXIT_QUARANTINED) => Ok(true),
        _ => anyhow::bail!(
            "augment {}: the Ray driver {} failed ({status}); its output above says why",
            spec.name,
            ray.driver.display()
        ),
    }
}
