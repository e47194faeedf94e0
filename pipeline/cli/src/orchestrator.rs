//! `orchestrator.yaml`: what the main job runs: sources (ingest), asset banks, augmentations
//! (scenarios over datasets) and the model files they use, pinned by sha256. Checked with every
//! error at once (`file:line:col`), then resolved into typed settings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use roadsynth_config::{Checker, ConfigError, ConfigErrors};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::ingest_cmd::{self, EXIT_QUARANTINED, IngestArgs, InputFormat};

/// An orchestrator file: what `roadsynth run` runs (sources, asset banks, augmentations, the
/// experiment), with which models, where, how and when.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Orchestrator")]
#[schemars(rename = "Orchestrator")]
struct OrchestratorWire {
    #[serde(default)]
    sources: Vec<SourceWire>,
    #[serde(default)]
    assets: Vec<AssetsWire>,
    #[serde(default)]
    augment: Vec<AugmentWire>,
    #[serde(default)]
    models: ModelsWire,
    #[serde(default)]
    schedule: Option<ScheduleWire>,
    #[serde(default)]
    experiment: Option<ExperimentWire>,
    #[serde(default)]
    outputs: OutputsWire,
    #[serde(default)]
    executor: Option<ExecutorWire>,
    #[serde(default)]
    concurrency: Option<ConcurrencyWire>,
    /// How many times a failed stage is tried again before the run fails (default 0). Stages
    /// are deterministic and commit atomically, so a retry redoes the stage from its inputs.
    #[serde(default)]
    #[schemars(range(max = 10))]
    retries: Option<u32>,
}

/// How much runs at once on this machine.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Concurrency")]
struct ConcurrencyWire {
    /// Render threads of an augment stage (default: one per core).
    #[schemars(range(min = 1))]
    workers: Option<usize>,
    /// Frames one channel between an augment stage's reader, workers and writer holds at most
    /// (default: 4 per worker).
    #[schemars(range(min = 1))]
    channel_frames: Option<usize>,
    /// Mebibytes one such channel holds at most (default 64).
    #[schemars(range(min = 1))]
    channel_mib: Option<usize>,
}

/// Where the augment stages run: `local` (this process, the default) or `ray` (one Ray task per
/// shard through `ray/driver.py`, then a commit; same output bytes).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Executor")]
struct ExecutorWire {
    kind: Option<String>,
    /// `auto` (the cluster this machine belongs to), `host:port` or `ray://host:port`.
    address: Option<String>,
    shards: Option<u32>,
    /// Resources each shard's task asks for.
    num_cpus: Option<f64>,
    num_gpus: Option<f64>,
    /// Retries of a failed or lost shard task.
    max_retries: Option<u32>,
    /// Python with `ray` installed (default `python3`).
    python: Option<String>,
    /// The driver script (default: `ray/driver.py` of the repository).
    driver: Option<String>,
}

/// Detector retraining: arms trained alike, scored on real held-out test sets.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Experiment")]
struct ExperimentWire {
    /// Arm name → training dataset (`real`, `naive_paste`, `roadsynth`).
    #[serde(default)]
    arms: BTreeMap<String, String>,
    #[serde(default)]
    train_split: Option<String>,
    epochs: Option<u32>,
    #[serde(default)]
    seeds: Vec<u64>,
    #[serde(default)]
    tests: Vec<TestWire>,
    #[serde(default)]
    bootstrap: Option<usize>,
    /// A user's trainer run for every arm instead of the built-in detector.
    #[serde(default)]
    external_trainer: Option<crate::external_trainer::ExternalTrainerWire>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Test")]
struct TestWire {
    name: Option<String>,
    dataset: Option<String>,
    split: Option<String>,
    /// Annotation attributes to slice by (e.g. `weather`, `origin`).
    #[serde(default)]
    slices: Vec<String>,
}

/// When `roadsynth schedule` runs the file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Schedule")]
struct ScheduleWire {
    /// Cron expression: five fields (minute hour day-of-month month day-of-week), or six with
    /// seconds first.
    cron: Option<String>,
    /// IANA time zone the expression is read in (default UTC).
    #[serde(default)]
    time_zone: Option<String>,
    /// What happens to runs missed while no scheduler was running or a run was still going.
    #[serde(default)]
    missed: Option<MissedRuns>,
}

/// An asset bank built from one of the datasets.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Assets")]
struct AssetsWire {
    name: Option<String>,
    dataset: Option<String>,
    #[serde(default)]
    classes: Vec<String>,
}

/// A scenario run over a dataset into a new dataset.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Augment")]
struct AugmentWire {
    /// Output dataset name.
    name: Option<String>,
    dataset: Option<String>,
    scenario: Option<String>,
    assets: Option<String>,
    #[serde(default)]
    renderer: Option<String>,
    /// How the `exemplar` renderer blends cut-outs: `auto` (the default: Poisson where a
    /// measurement says it lowers the seam without washing the object's colours out, feathered
    /// alpha elsewhere), `feather` (about 6% faster a frame: no Poisson solve to measure) or
    /// `poisson`.
    #[serde(default)]
    blend: Option<String>,
    /// Filter insertions with the detector of `models.detector`: a rejected one is rendered again
    /// from another cut-out (up to three renders), then dropped.
    #[serde(default)]
    filter: Option<bool>,
    #[serde(default)]
    max_frames: Option<usize>,
    /// Write only the generated frames, not the real ones beside them (a test set that must be
    /// all fog, rain, ...), nor the splits the scenario does not augment.
    #[serde(default)]
    generated_only: Option<bool>,
}

/// A model file and the sha256 it must have.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Model")]
struct ModelWire {
    path: Option<String>,
    sha256: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Models")]
struct ModelsWire {
    detector: Option<ModelWire>,
    vehicle_segmenter: Option<ModelWire>,
    drivable_area: Option<ModelWire>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Source")]
struct SourceWire {
    /// Dataset the source is ingested into (`<outputs.datasets>/<dataset>`); sources naming the
    /// same dataset add their splits to it in order.
    #[serde(default)]
    dataset: Option<String>,
    #[serde(default)]
    format: Option<InputFormat>,
    /// Path; relative paths resolve against the file's folder; a leading `$ROADSYNTH_SHARED`
    /// is the shared data root (the environment variable, else `../shared` beside the file).
    #[serde(default)]
    input: Option<String>,
    #[serde(default)]
    split: Option<String>,
    #[serde(default)]
    images_root: Option<String>,
    #[serde(default)]
    every: Option<u32>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Outputs")]
struct OutputsWire {
    #[serde(default)]
    datasets: Option<String>,
    #[serde(default)]
    assets: Option<String>,
    #[serde(default)]
    runs: Option<String>,
    #[serde(default)]
    reports: Option<String>,
}

/// One resolved source.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub dataset: String,
    pub format: InputFormat,
    pub input: PathBuf,
    pub split: String,
    pub images_root: Option<PathBuf>,
    pub every: u32,
}

/// An asset bank to build: `<assets_root>/<name>` from `<datasets_root>/<dataset>`.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetBankSpec {
    pub name: String,
    pub dataset: String,
    pub classes: Vec<String>,
}

/// A scenario to run: `<datasets_root>/<dataset>` into `<datasets_root>/<name>`.
#[derive(Debug, Clone, PartialEq)]
pub struct AugmentSpec {
    pub name: String,
    pub dataset: String,
    pub scenario: PathBuf,
    pub assets: Option<String>,
    pub renderer: String,
    pub blend: String,
    pub filter: bool,
    pub max_frames: Option<usize>,
    pub generated_only: bool,
}

/// A model file, checked against its pinned sha256 before use.
#[derive(Debug, Clone, PartialEq)]
pub struct PinnedModel {
    pub path: PathBuf,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Models {
    pub detector: Option<PinnedModel>,
    pub vehicle_segmenter: Option<PinnedModel>,
    pub drivable_area: Option<PinnedModel>,
}

/// A held-out test set of the experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct TestSpec {
    pub name: String,
    pub dataset: String,
    pub split: String,
    pub slices: Vec<String>,
}

/// The resolved experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentSpec {
    pub arms: Vec<(String, String)>,
    pub train_split: String,
    pub epochs: u32,
    pub seeds: Vec<u64>,
    pub tests: Vec<TestSpec>,
    pub bootstrap: usize,
    /// Train and predict with this command instead of the built-in detector.
    pub external_trainer: Option<crate::external_trainer::ExternalTrainer>,
}

/// What the scheduler does about runs it missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MissedRuns {
    /// One catch-up run at start-up if any scheduled time passed since the last run (the
    /// default: data is fresh again, without a burst of identical runs).
    RunOnce,
    /// Wait for the next scheduled time.
    Skip,
}

/// The resolved schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub cron: croner::Cron,
    pub time_zone: chrono_tz::Tz,
    pub missed: MissedRuns,
}

/// Parses five- or six-field (seconds first) cron expressions.
pub fn parse_cron(expression: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(expression)
        .map_err(|e| e.to_string())
}

/// Where augment stages run.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Executor {
    /// In this process (the default).
    #[default]
    Local,
    /// Sharded over a Ray cluster.
    Ray(RayExecutor),
}

/// A Ray cluster to shard augment stages over (see `docs/ray.md`).
#[derive(Debug, Clone, PartialEq)]
pub struct RayExecutor {
    pub address: String,
    pub shards: u32,
    pub num_cpus: f64,
    pub num_gpus: f64,
    pub max_retries: u32,
    pub python: String,
    pub driver: PathBuf,
}

/// The resolved orchestrator settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Orchestrator {
    pub sources: Vec<Source>,
    pub assets: Vec<AssetBankSpec>,
    pub augment: Vec<AugmentSpec>,
    pub models: Models,
    pub schedule: Option<Schedule>,
    pub experiment: Option<ExperimentSpec>,
    pub datasets_root: PathBuf,
    pub reports_root: PathBuf,
    pub assets_root: PathBuf,
    /// Run ledgers and recordings: `<runs_root>/<run id>/`.
    pub runs_root: PathBuf,
    /// The file's own bytes hash: recorded in every run's ledger.
    pub config_hash: String,
    pub file: PathBuf,
    pub executor: Executor,
    pub concurrency: Concurrency,
    /// Attempts after the first for a failed stage.
    pub retries: u32,
}

/// How much runs at once; `None`: the augment flow's default (one worker per core, 4 frames per
/// worker a channel, 64 MiB a channel).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Concurrency {
    pub workers: Option<usize>,
    pub channel_frames: Option<usize>,
    pub channel_mib: Option<usize>,
}

// The worker's names, as constants only: nothing of the stages' code (or OpenCV) is linked.
const RENDERERS: [&str; 3] = roadsynth_stages::RendererKind::NAMES;
const BLENDS: [&str; 3] = roadsynth_stages::BlendMode::NAMES;

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn resolve_path(base: &Path, raw: &str) -> PathBuf {
    if let Some(rest) = raw.strip_prefix("$ROADSYNTH_SHARED") {
        let shared = std::env::var_os("ROADSYNTH_SHARED")
            .map_or_else(|| base.join("../shared"), PathBuf::from);
        return shared.join(rest.trim_start_matches('/'));
    }
    base.join(raw)
}

/// Reads, checks (every error at once, `file:line:col`) and resolves an orchestrator file.
pub fn load(path: &Path) -> Result<Orchestrator, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            message: format!("cannot read: {e}"),
        }])
    })?;
    let partial = roadsynth_config::parse_partial::<OrchestratorWire>(path, &text);
    let mut errors = partial.errors;
    // Semantic checks run on whatever parsed, so every error is reported in one pass.
    let (Some(wire), Some(source)) = (partial.value, partial.source) else {
        return Err(ConfigErrors(errors));
    };
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut check = Checker::for_partial(&source, &partial.removed);
    check.check(!wire.sources.is_empty(), "sources", || {
        "at least one source is needed".into()
    });
    let mut sources = Vec::new();
    for (i, s) in wire.sources.iter().enumerate() {
        let at = |field: &str| format!("sources[{i}].{field}");
        check.check(s.dataset.is_some(), &at("dataset"), || {
            "missing `dataset`".into()
        });
        check.check(s.format.is_some(), &at("format"), || {
            "missing `format`".into()
        });
        check.check(s.input.is_some(), &at("input"), || "missing `input`".into());
        if let Some(d) = &s.dataset {
            check.check(
                !d.is_empty()
                    && d.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
                &at("dataset"),
                || format!("dataset name {d:?} must be letters, digits, `-`, `_` or `.`"),
            );
        }
        let input = s.input.as_deref().map(|raw| resolve_path(base, raw));
        if let Some(p) = &input {
            check.check(p.exists(), &at("input"), || {
                format!("{} does not exist", p.display())
            });
        }
        check.check(s.every != Some(0), &at("every"), || {
            "`every` must be at least 1".into()
        });
        if let (Some(dataset), Some(format), Some(input)) = (&s.dataset, s.format, input) {
            sources.push(Source {
                dataset: dataset.clone(),
                format,
                input,
                split: s.split.clone().unwrap_or_else(|| "train".into()),
                images_root: s.images_root.as_deref().map(|r| resolve_path(base, r)),
                every: s.every.unwrap_or(1),
            });
        }
    }
    // Each name once, in order (several sources may fill one dataset).
    let mut datasets: Vec<String> = Vec::new();
    for s in &sources {
        if !datasets.contains(&s.dataset) {
            datasets.push(s.dataset.clone());
        }
    }
    let mut assets = Vec::new();
    for (i, a) in wire.assets.iter().enumerate() {
        let at = |field: &str| format!("assets[{i}].{field}");
        check.check(
            a.name.as_deref().is_some_and(valid_name),
            &at("name"),
            || "`name` is needed: letters, digits, `-`, `_` or `.`".into(),
        );
        check.check(
            a.dataset.as_ref().is_some_and(|d| datasets.contains(d)),
            &at("dataset"),
            || format!("`dataset` must name a source's dataset (one of {datasets:?})"),
        );
        if let (Some(name), Some(dataset)) = (&a.name, &a.dataset) {
            assets.push(AssetBankSpec {
                name: name.clone(),
                dataset: dataset.clone(),
                classes: a.classes.clone(),
            });
        }
    }
    let mut augment = Vec::new();
    let (mut scenarios_checked, mut scenario_errors) = (Vec::new(), Vec::new());
    for (i, a) in wire.augment.iter().enumerate() {
        let at = |field: &str| format!("augment[{i}].{field}");
        check.check(
            a.name.as_deref().is_some_and(valid_name),
            &at("name"),
            || "`name` (the output dataset) is needed: letters, digits, `-`, `_` or `.`".into(),
        );
        check.check(
            a.dataset.as_ref().is_some_and(|d| datasets.contains(d)),
            &at("dataset"),
            || format!("`dataset` must name a source's or an earlier augment's dataset (one of {datasets:?})"),
        );
        let scenario = a.scenario.as_deref().map(|raw| resolve_path(base, raw));
        check.check(
            scenario.as_ref().is_some_and(|p| p.is_file()),
            &at("scenario"),
            || match &scenario {
                Some(p) => format!("scenario {} does not exist", p.display()),
                None => "`scenario` is needed".into(),
            },
        );
        // The scenario's own errors too, at their place in its file: a run would stop on them
        // after its earlier stages had run.
        if let Some(file) = scenario.as_ref().filter(|p| p.is_file())
            && !scenarios_checked.contains(file)
        {
            scenarios_checked.push(file.clone());
            if let Err(e) = roadsynth_scenario::load(file) {
                scenario_errors.extend(e.0);
            }
        }
        if let Some(bank) = &a.assets {
            check.check(
                assets.iter().any(|b| &b.name == bank),
                &at("assets"),
                || format!("no asset bank named {bank:?} in `assets`"),
            );
        }
        let renderer = a.renderer.clone().unwrap_or_else(|| "exemplar".into());
        check.check(
            RENDERERS.contains(&renderer.as_str()),
            &at("renderer"),
            || format!("renderer {renderer:?} is not one of {RENDERERS:?}"),
        );
        let blend = a.blend.clone().unwrap_or_else(|| "auto".into());
        check.check(BLENDS.contains(&blend.as_str()), &at("blend"), || {
            format!("blend {blend:?} is not one of {BLENDS:?}")
        });
        check.check(
            a.blend.is_none() || renderer == "exemplar",
            &at("blend"),
            || format!("`blend` applies to the exemplar renderer only (this is {renderer:?})"),
        );
        let filter = a.filter.unwrap_or(false);
        check.check(
            !filter || wire.models.detector.is_some(),
            &at("filter"),
            || "`filter: true` needs `models.detector`".into(),
        );
        if let (Some(name), Some(dataset), Some(scenario)) = (&a.name, &a.dataset, scenario) {
            augment.push(AugmentSpec {
                name: name.clone(),
                dataset: dataset.clone(),
                scenario,
                assets: a.assets.clone(),
                renderer,
                blend,
                filter,
                max_frames: a.max_frames,
                generated_only: a.generated_only.unwrap_or(false),
            });
            datasets.push(name.clone());
        }
    }
    let mut pinned = |field: &str, m: &Option<ModelWire>| -> Option<PinnedModel> {
        let m = m.as_ref()?;
        let at = format!("models.{field}");
        let path = m.path.as_deref().map(|raw| resolve_path(base, raw));
        check.check(
            path.as_ref().is_some_and(|p| p.is_file()),
            &format!("{at}.path"),
            || match &path {
                Some(p) => format!("model file {} does not exist", p.display()),
                None => "`path` is needed".into(),
            },
        );
        let sha = m.sha256.clone().unwrap_or_default();
        check.check(
            sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()),
            &format!("{at}.sha256"),
            || "`sha256` must be the file's 64-hex-digit SHA-256 (`sha256sum FILE`)".into(),
        );
        Some(PinnedModel {
            path: path?,
            sha256: sha.to_ascii_lowercase(),
        })
    };
    let models = Models {
        detector: pinned("detector", &wire.models.detector),
        vehicle_segmenter: pinned("vehicle_segmenter", &wire.models.vehicle_segmenter),
        drivable_area: pinned("drivable_area", &wire.models.drivable_area),
    };
    let schedule = wire.schedule.as_ref().and_then(|w| {
        let cron = match w.cron.as_deref().map(parse_cron) {
            Some(Ok(c)) => Some(c),
            Some(Err(e)) => {
                check.error(
                    "schedule.cron",
                    format!(
                        "not a cron expression: {e} (fields: [second] minute hour day-of-month \
                         month day-of-week, e.g. \"0 3 * * *\": 03:00 daily)"
                    ),
                );
                None
            }
            None => {
                check.error(
                    "schedule",
                    "`cron` is needed, e.g. \"0 3 * * *\"".to_string(),
                );
                None
            }
        };
        let zone = w.time_zone.as_deref().unwrap_or("UTC");
        let time_zone = zone.parse::<chrono_tz::Tz>().ok();
        check.check(time_zone.is_some(), "schedule.time_zone", || {
            format!("{zone:?} is not an IANA time zone (e.g. Europe/Berlin, UTC)")
        });
        Some(Schedule {
            cron: cron?,
            time_zone: time_zone?,
            missed: w.missed.unwrap_or(MissedRuns::RunOnce),
        })
    });
    let experiment = wire.experiment.as_ref().map(|x| {
        const ARMS: [&str; 3] = ["real", "naive_paste", "roadsynth"];
        check.check(!x.arms.is_empty(), "experiment.arms", || {
            format!("at least one arm is needed ({ARMS:?})")
        });
        for (arm, dataset) in &x.arms {
            check.check(ARMS.contains(&arm.as_str()), &format!("experiment.arms.{arm}"), || {
                format!("arm {arm:?} is not one of {ARMS:?}")
            });
            check.check(datasets.contains(dataset), &format!("experiment.arms.{arm}"), || {
                format!("dataset {dataset:?} is not a source's or an augment's (one of {datasets:?})")
            });
        }
        check.check(x.epochs.is_some_and(|e| e > 0), "experiment.epochs", || {
            "`epochs` (at least 1) is needed: every arm trains for the same number".into()
        });
        check.check(!x.seeds.is_empty(), "experiment.seeds", || {
            "at least one seed is needed (several show the noise)".into()
        });
        let mut tests = Vec::new();
        for (i, t) in x.tests.iter().enumerate() {
            let at = |f: &str| format!("experiment.tests[{i}].{f}");
            check.check(t.name.as_deref().is_some_and(valid_name), &at("name"), || {
                "`name` is needed".into()
            });
            check.check(
                t.dataset.as_ref().is_some_and(|d| datasets.contains(d)),
                &at("dataset"),
                || format!("`dataset` must be one of {datasets:?}"),
            );
            if let (Some(name), Some(dataset)) = (&t.name, &t.dataset) {
                tests.push(TestSpec {
                    name: name.clone(),
                    dataset: dataset.clone(),
                    split: t.split.clone().unwrap_or_else(|| "test".into()),
                    slices: t.slices.clone(),
                });
            }
        }
        check.check(!tests.is_empty(), "experiment.tests", || {
            "at least one held-out test set is needed".into()
        });
        ExperimentSpec {
            arms: x.arms.iter().map(|(a, d)| (a.clone(), d.clone())).collect(),
            train_split: x.train_split.clone().unwrap_or_else(|| "train".into()),
            epochs: x.epochs.unwrap_or(1),
            seeds: x.seeds.clone(),
            tests,
            bootstrap: x.bootstrap.unwrap_or(1000),
            external_trainer: x
                .external_trainer
                .as_ref()
                .and_then(|t| t.resolve(base, &mut check)),
        }
    });
    let executor = wire.executor.as_ref().map_or(Some(Executor::Local), |w| {
        resolve_executor(w, base, &mut check)
    });
    let concurrency = wire
        .concurrency
        .as_ref()
        .map_or_else(Concurrency::default, |c| {
            for (field, value) in [
                ("workers", c.workers),
                ("channel_frames", c.channel_frames),
                ("channel_mib", c.channel_mib),
            ] {
                check.check(value != Some(0), &format!("concurrency.{field}"), || {
                    format!("`{field}` must be at least 1")
                });
            }
            Concurrency {
                workers: c.workers,
                channel_frames: c.channel_frames,
                channel_mib: c.channel_mib,
            }
        });
    let retries = wire.retries.unwrap_or(0);
    check.check(retries <= 10, "retries", || {
        format!("{retries} retries: at most 10 (a stage that fails that often has a cause to fix)")
    });
    if let Err(semantic) = check.finish() {
        errors.extend(semantic.0);
    }
    errors.extend(scenario_errors);
    if !errors.is_empty() {
        // This file's errors first, then each scenario's, each in file order.
        errors.sort_by(|a, b| {
            (a.file != path, &a.file, a.line, a.column).cmp(&(
                b.file != path,
                &b.file,
                b.line,
                b.column,
            ))
        });
        return Err(ConfigErrors(errors));
    }
    let datasets_root = base.join(wire.outputs.datasets.as_deref().unwrap_or("datasets"));
    let assets_root = base.join(wire.outputs.assets.as_deref().unwrap_or("assets"));
    let runs_root = base.join(wire.outputs.runs.as_deref().unwrap_or("runs"));
    let reports_root = base.join(wire.outputs.reports.as_deref().unwrap_or("reports"));
    Ok(Orchestrator {
        sources,
        assets,
        augment,
        models,
        schedule,
        experiment,
        datasets_root,
        reports_root,
        assets_root,
        runs_root,
        config_hash: blake3::hash(text.as_bytes()).to_hex()[..16].to_string(),
        file: path.to_path_buf(),
        executor: executor.unwrap_or_default(),
        concurrency,
        retries,
    })
}

/// The JSON Schema (draft 07, which YAML editors read) of orchestrator files.
pub fn json_schema() -> serde_json::Value {
    schemars::generate::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<OrchestratorWire>()
        .to_value()
}

/// [`json_schema`] as the text of `orchestrator.schema.json` (pretty, newline at the end).
pub fn json_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&json_schema()).unwrap_or_default();
    text.push('\n');
    text
}

/// Checks and resolves `executor`; `None` after recording an error.
fn resolve_executor(w: &ExecutorWire, base: &Path, check: &mut Checker<'_>) -> Option<Executor> {
    let kind = w.kind.as_deref().unwrap_or("local");
    check.check(["local", "ray"].contains(&kind), "executor.kind", || {
        format!("executor kind {kind:?} is not `local` or `ray`")
    });
    if kind != "ray" {
        let ray_only = [
            ("address", w.address.is_some()),
            ("shards", w.shards.is_some()),
            ("num_cpus", w.num_cpus.is_some()),
            ("num_gpus", w.num_gpus.is_some()),
            ("max_retries", w.max_retries.is_some()),
            ("python", w.python.is_some()),
            ("driver", w.driver.is_some()),
        ];
        for (field, set) in ray_only {
            check.check(!set, &format!("executor.{field}"), || {
                format!("`{field}` is a setting of `kind: ray`")
            });
        }
        return (kind == "local").then_some(Executor::Local);
    }
    let shards = w.shards.unwrap_or(1);
    check.check(shards >= 1, "executor.shards", || {
        "`shards` must be at least 1".into()
    });
    let num_cpus = w.num_cpus.unwrap_or(1.0);
    check.check(num_cpus > 0.0, "executor.num_cpus", || {
        "`num_cpus` must be more than 0".into()
    });
    let num_gpus = w.num_gpus.unwrap_or(0.0);
    check.check(num_gpus >= 0.0, "executor.num_gpus", || {
        "`num_gpus` must be 0 or more".into()
    });
    let driver = match &w.driver {
        Some(raw) => resolve_path(base, raw),
        None => Some(base.join("ray/driver.py"))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ray/driver.py")),
    };
    check.check(driver.is_file(), "executor.driver", || {
        format!("the Ray driver {} does not exist", driver.display())
    });
    Some(Executor::Ray(RayExecutor {
        address: w.address.clone().unwrap_or_else(|| "auto".into()),
        shards,
        num_cpus,
        num_gpus,
        max_retries: w.max_retries.unwrap_or(3),
        python: w.python.clone().unwrap_or_else(|| "python3".into()),
        driver,
    }))
}

/// Runs the ingest stage of every source, then prints each dataset's stats. The first source of a
/// dataset starts a fresh version; later ones add their splits to it.
pub fn run_ingest(config: &Orchestrator) -> Result<ExitCode> {
    let mut quarantined = false;
    let mut seen: Vec<&str> = Vec::new();
    for s in &config.sources {
        let first = !seen.contains(&s.dataset.as_str());
        seen.push(&s.dataset);
        let args = IngestArgs {
            format: s.format,
            input: s.input.clone(),
            output: config.datasets_root.join(&s.dataset),
            split: s.split.clone(),
            images_root: s.images_root.clone(),
            every: s.every,
            verify_decode: false,
            replace: first,
        };
        let code = ingest_cmd::run(&args, None)?;
        if code == ExitCode::from(EXIT_QUARANTINED) {
            quarantined = true;
        } else if code != ExitCode::SUCCESS {
            anyhow::bail!("ingest of {} failed", s.input.display());
        }
    }
    Ok(if quarantined {
        ExitCode::from(EXIT_QUARANTINED)
    } else {
        ExitCode::SUCCESS
    })
}
