//! `roadsynth run orchestrator.yaml`: the stages of an orchestrator file in order: ingest every
//! source, build the asset banks, run the augmentations. A stage whose inputs, settings and code
//! version are unchanged since its last run is skipped: its output folder holds a `STAGE_KEY`
//! file with the content hash of all three, written after the output is committed, so a crash
//! before that point simply reruns the stage (outputs are committed atomically).
//!
//! Stages that render are given as a callback: only the worker binary links them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use roadsynth_dataset::Dataset;
use roadsynth_types::TOOL_VERSION;

use crate::assets_cmd::{self, BuildArgs};
use crate::ingest_cmd::EXIT_QUARANTINED;
use crate::orchestrator::{AugmentSpec, Orchestrator, PinnedModel};

/// The file recording what a stage's output was made from.
pub const STAGE_KEY_FILE: &str = "STAGE_KEY";

/// Runs one augmentation; returns whether it quarantined anything.
pub type AugmentRunner<'a> = &'a dyn Fn(&AugmentSpec, &Orchestrator) -> Result<bool>;

/// Checks every pinned model's sha256, naming the file on a mismatch.
pub fn check_models(config: &Orchestrator) -> Result<()> {
    let models = &config.models;
    for m in [
        &models.detector,
        &models.vehicle_segmenter,
        &models.drivable_area,
    ]
    .into_iter()
    .flatten()
    {
        let actual = sha256_of(&m.path)?;
        anyhow::ensure!(
            actual == m.sha256,
            "{}: sha256 is {actual}, orchestrator.yaml pins {}",
            m.path.display(),
            m.sha256
        );
    }
    Ok(())
}

fn sha256_of(path: &Path) -> Result<String> {
    use sha2::Digest;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(format!("{:x}", sha2::Sha256::digest(&bytes)))
}

/// The content hash of a stage's inputs, settings and the code version.
pub fn stage_key(parts: &serde_json::Value) -> String {
    let mut h = blake3::Hasher::new();
    h.update(TOOL_VERSION.as_bytes());
    h.update(parts.to_string().as_bytes());
    h.finalize().to_hex()[..32].to_string()
}

fn is_current(output: &Path, key: &str) -> bool {
    std::fs::read_to_string(output.join(STAGE_KEY_FILE)).is_ok_and(|k| k.trim() == key)
}

fn mark_current(output: &Path, key: &str) -> Result<()> {
    let tmp = output.join(format!("{STAGE_KEY_FILE}.tmp"));
    std::fs::write(&tmp, key).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, output.join(STAGE_KEY_FILE))
        .with_context(|| format!("writing {}", output.display()))
}

/// The content of a dataset's current version, part of every downstream stage's key: the hash
/// in its name (`v0003-1a2b3c4d` → `1a2b3c4d`), which covers every file, so re-ingesting the same
/// input gives the same key under a new version number.
pub fn dataset_version(root: &Path) -> Result<String> {
    let version = Dataset::open(root)
        .with_context(|| format!("opening dataset {}", root.display()))?
        .manifest()
        .version
        .clone();
    Ok(version
        .split_once('-')
        .map_or(version.clone(), |(_, hash)| hash.to_string()))
}

fn pinned_json(m: Option<&PinnedModel>) -> serde_json::Value {
    m.map_or(serde_json::Value::Null, |m| serde_json::json!(m.sha256))
}

/// The key of an augmentation: its spec, the scenario's bytes, the input version, the asset
/// bank's key and the models it uses.
pub fn augment_key(spec: &AugmentSpec, config: &Orchestrator) -> Result<String> {
    let scenario = std::fs::read_to_string(&spec.scenario)
        .with_context(|| format!("reading {}", spec.scenario.display()))?;
    let assets_key = spec.assets.as_ref().map(|a| {
        std::fs::read_to_string(config.assets_root.join(a).join(STAGE_KEY_FILE)).unwrap_or_default()
    });
    Ok(stage_key(&serde_json::json!({
        "stage": "augment",
        "spec": format!("{spec:?}"),
        "scenario": scenario,
        "input": dataset_version(&config.datasets_root.join(&spec.dataset))?,
        "assets": assets_key,
        "detector": pinned_json(config.models.detector.as_ref()),
        "vehicle_segmenter": pinned_json(config.models.vehicle_segmenter.as_ref()),
        "drivable_area": pinned_json(config.models.drivable_area.as_ref()),
    })))
}

/// Runs every stage of `config`.
pub fn run(config: &Orchestrator, augment: AugmentRunner<'_>) -> Result<ExitCode> {
    check_models(config)?;
    let mut quarantined =
        crate::orchestrator::run_ingest(config)? == ExitCode::from(EXIT_QUARANTINED);
    let mut names: Vec<&str> = config.sources.iter().map(|s| s.dataset.as_str()).collect();
    names.dedup();
    for name in names {
        crate::dataset_cmd::print_stats(&config.datasets_root.join(name))?;
    }
    for bank in &config.assets {
        let output: PathBuf = config.assets_root.join(&bank.name);
        let dataset = config.datasets_root.join(&bank.dataset);
        let key = stage_key(&serde_json::json!({
            "stage": "assets",
            "spec": format!("{bank:?}"),
            "input": dataset_version(&dataset)?,
        }));
        if is_current(&output, &key) {
            println!("assets {}: up to date", bank.name);
            continue;
        }
        assets_cmd::build(&BuildArgs {
            dataset,
            classes: bank.classes.clone(),
            splits: Vec::new(),
            min_area_px: 0,
            output: output.clone(),
        })?;
        mark_current(&output, &key)?;
    }
    for spec in &config.augment {
        let output = config.datasets_root.join(&spec.name);
        let key = augment_key(spec, config)?;
        if is_current(&output, &key) {
            println!("augment {}: up to date", spec.name);
            continue;
        }
        quarantined |= augment(spec, config)?;
        mark_current(&output, &key)?;
    }
    Ok(if quarantined {
        ExitCode::from(EXIT_QUARANTINED)
    } else {
        ExitCode::SUCCESS
    })
}
