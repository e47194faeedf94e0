//! `roadsynth run orchestrator.yaml`: the stages of an orchestrator file in order: ingest every
//! source, build the asset banks, run the augmentations. A stage whose inputs, settings and code
//! version are unchanged since its last run is skipped: its output folder holds a `STAGE_KEY`
//! file with the content hash of all three, written after the output is committed, so a crash
//! before that point simply reruns the stage (outputs are committed atomically).
//!
//! Every run has an id (UTC start time and the config hash) and a ledger,
//! `<runs>/<id>/ledger.json`: config hash, code version, each stage's inputs, output, key, status
//! and timing, and the error if the run failed. It is rewritten atomically after every stage, so
//! a killed run leaves a ledger saying how far it got. A lock (`<runs>/.lock`) keeps two runs of
//! the same outputs from overlapping; the scheduler takes the same lock.
//!
//! Stages that render are given as a callback: only the worker binary links them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use serde::{Deserialize, Serialize};

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

/// One stage of a run, as the ledger records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRecord {
    pub stage: String,
    pub name: String,
    pub inputs: Vec<String>,
    pub output: String,
    pub key: Option<String>,
    /// `ran`, `skipped` (unchanged key) or `failed`.
    pub status: String,
    pub seconds: f64,
    /// The output dataset's version after the stage, when it is a dataset.
    pub output_version: Option<String>,
}

/// A run's ledger.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ledger {
    pub run_id: String,
    pub config_file: String,
    pub config_hash: String,
    pub tool_version: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// `running`, `succeeded`, `succeeded_with_quarantine` or `failed`.
    pub status: String,
    pub stages: Vec<StageRecord>,
    pub error: Option<String>,
}

impl Ledger {
    fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = dir.join("ledger.json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, dir.join("ledger.json"))
            .with_context(|| format!("writing {}", dir.display()))
    }
}

/// Holds `<runs>/.lock` for the life of a run.
#[derive(Debug)]
pub struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    /// Takes the lock, or says which file holds it.
    pub fn acquire(runs_root: &Path) -> Result<Self> {
        std::fs::create_dir_all(runs_root)
            .with_context(|| format!("creating {}", runs_root.display()))?;
        let path = runs_root.join(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                "another run holds {} (runs never overlap; wait for it or stop it)",
                path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
    }
}

fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Runs every stage of `config` under a new run id; returns the id with the exit code.
pub fn run(config: &Orchestrator, augment: AugmentRunner<'_>) -> Result<ExitCode> {
    let _lock = RunLock::acquire(&config.runs_root)?;
    let started = chrono::Utc::now();
    let run_id = format!(
        "{}-{}",
        started.format("%Y%m%dT%H%M%SZ"),
        &config.config_hash[..8]
    );
    let dir = config.runs_root.join(&run_id);
    let mut ledger = Ledger {
        run_id: run_id.clone(),
        config_file: config.file.display().to_string(),
        config_hash: config.config_hash.clone(),
        tool_version: TOOL_VERSION.to_string(),
        started_at: now(),
        finished_at: None,
        status: "running".into(),
        stages: Vec::new(),
        error: None,
    };
    ledger.write(&dir)?;
    println!("run {run_id}");
    let result = run_stages(config, augment, &mut ledger, &dir);
    ledger.finished_at = Some(now());
    match &result {
        Ok(code) => {
            ledger.status = if *code == ExitCode::SUCCESS {
                "succeeded".into()
            } else {
                "succeeded_with_quarantine".into()
            };
        }
        Err(e) => {
            ledger.status = "failed".into();
            ledger.error = Some(format!("{e:#}"));
        }
    }
    ledger.write(&dir)?;
    result
}

fn run_stages(
    config: &Orchestrator,
    augment: AugmentRunner<'_>,
    ledger: &mut Ledger,
    dir: &Path,
) -> Result<ExitCode> {
    check_models(config)?;
    let clock = Instant::now();
    let mut quarantined =
        crate::orchestrator::run_ingest(config)? == ExitCode::from(EXIT_QUARANTINED);
    let mut names: Vec<&str> = config.sources.iter().map(|s| s.dataset.as_str()).collect();
    names.dedup();
    for name in &names {
        let output = config.datasets_root.join(name);
        crate::dataset_cmd::print_stats(&output)?;
        ledger.stages.push(StageRecord {
            stage: "ingest".into(),
            name: (*name).to_string(),
            inputs: config
                .sources
                .iter()
                .filter(|s| s.dataset == *name)
                .map(|s| s.input.display().to_string())
                .collect(),
            output: output.display().to_string(),
            key: None,
            status: "ran".into(),
            seconds: clock.elapsed().as_secs_f64(),
            output_version: dataset_version(&output).ok(),
        });
    }
    ledger.write(dir)?;
    for bank in &config.assets {
        let clock = Instant::now();
        let output: PathBuf = config.assets_root.join(&bank.name);
        let dataset = config.datasets_root.join(&bank.dataset);
        let key = stage_key(&serde_json::json!({
            "stage": "assets",
            "spec": format!("{bank:?}"),
            "input": dataset_version(&dataset)?,
        }));
        let status = if is_current(&output, &key) {
            println!("assets {}: up to date", bank.name);
            "skipped"
        } else {
            assets_cmd::build(&BuildArgs {
                dataset: dataset.clone(),
                classes: bank.classes.clone(),
                splits: Vec::new(),
                min_area_px: 0,
                output: output.clone(),
            })?;
            mark_current(&output, &key)?;
            "ran"
        };
        ledger.stages.push(StageRecord {
            stage: "assets".into(),
            name: bank.name.clone(),
            inputs: vec![dataset.display().to_string()],
            output: output.display().to_string(),
            key: Some(key),
            status: status.into(),
            seconds: clock.elapsed().as_secs_f64(),
            output_version: None,
        });
        ledger.write(dir)?;
    }
    for spec in &config.augment {
        let clock = Instant::now();
        let output = config.datasets_root.join(&spec.name);
        let key = augment_key(spec, config)?;
        let status = if is_current(&output, &key) {
            println!("augment {}: up to date", spec.name);
            "skipped"
        } else {
            quarantined |= augment(spec, config)?;
            mark_current(&output, &key)?;
            "ran"
        };
        ledger.stages.push(StageRecord {
            stage: "augment".into(),
            name: spec.name.clone(),
            inputs: vec![
                config
                    .datasets_root
                    .join(&spec.dataset)
                    .display()
                    .to_string(),
                spec.scenario.display().to_string(),
            ],
            output: output.display().to_string(),
            key: Some(key),
            status: status.into(),
            seconds: clock.elapsed().as_secs_f64(),
            output_version: dataset_version(&output).ok(),
        });
        ledger.write(dir)?;
    }
    if let Some(spec) = &config.experiment {
        let clock = Instant::now();
        crate::experiment::check_inputs(config, spec)?;
        let mut inputs = Vec::new();
        for (arm, dataset) in &spec.arms {
            inputs.push(format!(
                "{arm}={}",
                dataset_version(&config.datasets_root.join(dataset))?
            ));
        }
        for t in &spec.tests {
            inputs.push(format!(
                "{}={}",
                t.name,
                dataset_version(&config.datasets_root.join(&t.dataset))?
            ));
        }
        let key = stage_key(&serde_json::json!({
            "stage": "experiment",
            "spec": format!("{spec:?}"),
            "inputs": inputs,
            "detector": pinned_json(config.models.detector.as_ref()),
        }));
        let marker = config.reports_root.join("latest");
        let previous = std::fs::read_to_string(marker.join(STAGE_KEY_FILE)).ok();
        let (status, output) = if previous.as_deref().map(str::trim) == Some(key.as_str()) {
            let report = std::fs::read_to_string(marker.join("REPORT")).unwrap_or_default();
            println!("experiment: up to date ({report})");
            ("skipped", report)
        } else {
            let report = crate::experiment::run(config, spec, &ledger.run_id)?;
            println!("experiment report: {}", report.display());
            std::fs::create_dir_all(&marker)
                .with_context(|| format!("creating {}", marker.display()))?;
            std::fs::write(marker.join("REPORT"), report.display().to_string())
                .with_context(|| format!("writing {}", marker.display()))?;
            mark_current(&marker, &key)?;
            ("ran", report.display().to_string())
        };
        ledger.stages.push(StageRecord {
            stage: "experiment".into(),
            name: "experiment".into(),
            inputs,
            output,
            key: Some(key),
            status: status.into(),
            seconds: clock.elapsed().as_secs_f64(),
            output_version: None,
        });
        ledger.write(dir)?;
    }
    Ok(if quarantined {
        ExitCode::from(EXIT_QUARANTINED)
    } else {
        ExitCode::SUCCESS
    })
}

/// Every ledger under `runs_root`, oldest first.
pub fn ledgers(runs_root: &Path) -> Result<Vec<Ledger>> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(runs_root) else {
        return Ok(out);
    };
    for entry in entries {
        let path = entry?.path().join("ledger.json");
        if let Ok(text) = std::fs::read_to_string(&path) {
            out.push(
                serde_json::from_str(&text)
                    .with_context(|| format!("reading ledger {}", path.display()))?,
            );
        }
    }
    out.sort_by(|a: &Ledger, b: &Ledger| a.started_at.cmp(&b.started_at));
    Ok(out)
}
