//! `executor: {kind: ray}`: an augment stage of `roadsynth run` sharded over a Ray cluster. The
//! repository's driver (`ray/driver.py`) submits one Ray task per shard, each running
//! `roadsynth-worker augment ... --shard i/N`, retries failed ones, streams their progress and then
//! runs `roadsynth dataset commit-shards`. The committed version is the one the local executor
//! writes, byte for byte, so the stage's key does not depend on the executor.

use std::path::Path;
use std::process::Command;

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

/// Runs one augmentation through the Ray driver (its output streams through); returns whether
/// anything was quarantined, as the local executor does.
pub fn augment(spec: &AugmentSpec, config: &Orchestrator, ray: &RayExecutor) -> Result<bool> {
    let me = std::env::current_exe().context("locating the roadsynth binary")?;
    let mut cmd = driver_command(spec, config, ray, &me);
    println!(
        "augment {}: {} shards on the Ray cluster at {}",
        spec.name, ray.shards, ray.address
    );
    let status = cmd
        .status()
        .with_context(|| format!("running {} {}", ray.python, ray.driver.display()))?;
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
