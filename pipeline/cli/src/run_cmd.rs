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
//! Every run also writes a Rerun recording, `<runs>/<id>/run.rrd` (see [`crate::run_recording`]),
//! streamed to a live viewer too with `--connect`. `--stage` runs one kind of stage (or one named
//! stage) of the file; the stages before it must have run.
//!
//! Stages that render are given as a callback: only the worker binary links them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use anyhow::{Context, Result};
use roadsynth_dataset::Dataset;
use roadsynth_types::TOOL_VERSION;

use crate::assets_cmd::{self, BuildArgs};
use crate::ingest_cmd::EXIT_QUARANTINED;
use crate::orchestrator::{AugmentSpec, Orchestrator, PinnedModel};
use crate::run_recording::{self, StageRecording, StageSlot};
use roadsynth_inspect::RunRecording;

/// The file recording what a stage's output was made from.
pub const STAGE_KEY_FILE: &str = "STAGE_KEY";

/// Runs one augmentation, logging a sample of the variants it writes to the recording; returns
/// whether it quarantined anything.
pub type AugmentRunner<'a> =
    &'a dyn Fn(&AugmentSpec, &Orchestrator, Option<StageRecording>) -> Result<bool>;

/// The kinds of stage a run has, in order.
pub const STAGES: [&str; 4] = ["ingest", "assets", "augment", "experiment"];

/// `roadsynth run`'s arguments (the worker parses the same).
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The orchestrator file (the repository's `orchestrator.yaml` is the default run).
    #[arg(default_value = "orchestrator.yaml")]
    pub file: PathBuf,
    /// Run only this stage: `ingest`, `assets`, `augment` or `experiment`, or one named stage
    /// such as `augment:camvid-fog` (its inputs must exist).
    #[arg(long)]
    pub stage: Option<String>,
    /// Also stream the run's recording to a Rerun viewer at this address
    /// (`rerun+http://host:port/proxy` or `host:port`; `rerun` listens at 127.0.0.1:9876).
    #[arg(long)]
    pub connect: Option<String>,
}

/// Which stages a run runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageFilter {
    kind: Option<String>,
    name: Option<String>,
}

impl StageFilter {
    /// Every stage.
    pub const ALL: Self = Self {
        kind: None,
        name: None,
    };

    /// Parses `kind` or `kind:name`, naming the valid kinds on an error.
    pub fn parse(text: &str) -> Result<Self> {
        let (kind, name) = match text.split_once(':') {
            Some((k, n)) => (k, Some(n.to_string())),
            None => (text, None),
        };
        anyhow::ensure!(
            STAGES.contains(&kind),
            "--stage {text}: unknown stage `{kind}` (stages: {})",
            STAGES.join(", ")
        );
        Ok(Self {
            kind: Some(kind.to_string()),
            name,
        })
    }

    fn runs(&self, kind: &str, name: &str) -> bool {
        self.kind.as_deref().is_none_or(|k| k == kind)
            && self.name.as_deref().is_none_or(|n| n == name)
    }

    /// Checks that a named stage exists in `config`.
    fn check(&self, config: &Orchestrator) -> Result<()> {
        let (Some(kind), Some(name)) = (&self.kind, &self.name) else {
            return Ok(());
        };
        let names: Vec<&str> = match kind.as_str() {
            "ingest" => config.sources.iter().map(|s| s.dataset.as_str()).collect(),
            "assets" => config.assets.iter().map(|a| a.name.as_str()).collect(),
            "augment" => config.augment.iter().map(|a| a.name.as_str()).collect(),
            _ => vec!["experiment"],
        };
        anyhow::ensure!(
            names.contains(&name.as_str()),
            "--stage {kind}:{name}: {} has no {kind} stage named `{name}` (it has: {})",
            config.file.display(),
            names.join(", ")
        );
        Ok(())
    }
}

/// How a run runs beyond its file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub stages: StageFilter,
    /// A live Rerun viewer to stream the recording to.
    pub connect: Option<String>,
}

impl RunOptions {
    /// From the command line.
    pub fn from_args(args: &RunArgs) -> Result<Self> {
        Ok(Self {
            stages: match &args.stage {
                Some(s) => StageFilter::parse(s)?,
                None => StageFilter::ALL,
            },
            connect: args.connect.clone(),
        })
    }
}

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

/// The code that runs stages: the tool version and a hash of the two executables (`roadsynth`
/// and `roadsynth-worker`, side by side), so that a rebuilt roadsynth never takes a stage output
/// made by other code for current, whatever its version number says. Any rebuild that changes
/// either binary (a moved line changes its line tables) reruns every stage.
pub fn code_version() -> &'static str {
    static CODE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CODE.get_or_init(|| {
        let mut h = blake3::Hasher::new();
        let dir = std::env::current_exe()
            .ok()
            .and_then(|me| me.parent().map(Path::to_path_buf));
        let mut hashed = 0;
        for name in ["roadsynth", crate::WORKER] {
            let exe = dir.as_ref().map(|d| d.join(name));
            // `&File` reads, so the guard can hash through a shared borrow.
            match exe.as_ref().map(std::fs::File::open) {
                Some(Ok(file)) if h.update_reader(&file).is_ok() => hashed += 1,
                _ => tracing::warn!(
                    "cannot read {} to hash it: stage keys fall back to the tool version for it",
                    exe.map_or_else(|| name.to_string(), |e| e.display().to_string())
                ),
            }
        }
        if hashed == 0 {
            return TOOL_VERSION.to_string();
        }
        format!("{TOOL_VERSION}+{}", &h.finalize().to_hex()[..16])
    })
}

/// The content hash of a stage's inputs, settings and the code version.
pub fn stage_key(parts: &serde_json::Value) -> String {
    let mut h = blake3::Hasher::new();
    h.update(code_version().as_bytes());
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

/// What an ingest input is, for its stage key: a file's bytes (the label file, or a video),
/// and, for the folder holding it (or the folder given), every file's path, size and
/// modification time. Hashing every image's bytes would read the whole dataset on every run;
/// images are replaced, not edited in place, so size and time catch their changes as `make`
/// does, while a label file, the usual thing to edit, is compared by content.
fn input_fingerprint(input: &Path) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let mut h = blake3::Hasher::new();
    let folder = if input.is_file() {
        h.update(&std::fs::read(input).with_context(|| format!("reading {}", input.display()))?);
        input.parent().unwrap_or(Path::new(".")).to_path_buf()
    } else {
        input.to_path_buf()
    };
    let mut stack = vec![folder];
    let mut entries = Vec::new();
    // Links are followed (shared data is often linked in); each folder is listed once.
    let mut listed = std::collections::HashSet::new();
    while let Some(dir) = stack.pop() {
        let meta = std::fs::metadata(&dir).with_context(|| format!("reading {}", dir.display()))?;
        if !listed.insert((meta.dev(), meta.ino())) {
            continue;
        }
        let listing =
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in listing {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            let meta = std::fs::metadata(entry.path())
                .with_context(|| format!("reading {}", entry.path().display()))?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                entries.push((entry.path(), meta.len(), modified));
            }
        }
    }
    entries.sort();
    for (path, len, modified) in entries {
        h.update(path.as_os_str().as_encoded_bytes());
        h.update(&len.to_le_bytes());
        h.update(&modified.to_le_bytes());
    }
    Ok(h.finalize().to_hex()[..32].to_string())
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
    /// What the output dataset holds: frames, annotations and quarantined items.
    #[serde(default)]
    pub counts: Option<DatasetCounts>,
}

impl StageRecord {
    /// A stage whose output is a dataset: its version and counts are read from it.
    fn of_dataset(
        stage: &str,
        name: String,
        inputs: Vec<String>,
        output: &Path,
        key: String,
        status: &str,
        started: Instant,
    ) -> Self {
        Self {
            stage: stage.into(),
            name,
            inputs,
            output: output.display().to_string(),
            key: Some(key),
            status: status.into(),
            seconds: started.elapsed().as_secs_f64(),
            output_version: dataset_version(output).ok(),
            counts: DatasetCounts::of(output),
        }
    }
}

/// Counts of a dataset version, from its manifest.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct DatasetCounts {
    pub frames: u64,
    pub annotations: u64,
    pub quarantined: u64,
}

impl DatasetCounts {
    /// The counts of the current version at `root`, if it is a dataset.
    fn of(root: &Path) -> Option<Self> {
        let dataset = Dataset::open(root).ok()?;
        let m = dataset.manifest();
        Some(Self {
            frames: m.splits.values().map(|s| s.frames).sum(),
            annotations: m.splits.values().map(|s| s.annotations).sum(),
            quarantined: m.quarantined,
        })
    }
}

/// A run's ledger.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ledger {
    pub run_id: String,
    pub config_file: String,
    pub config_hash: String,
    pub tool_version: String,
    /// [`code_version`]: the version and a hash of the executables, part of every stage key.
    #[serde(default)]
    pub code_version: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// `running`, `succeeded`, `succeeded_with_quarantine`, `failed` or `interrupted`.
    pub status: String,
    pub stages: Vec<StageRecord>,
    pub error: Option<String>,
    /// The run's Rerun recording (`run.rrd` in the run folder).
    #[serde(default)]
    pub recording: Option<String>,
}

impl Ledger {
    /// Writes the ledger under the lock the interrupt handler takes, so the two never write at
    /// once, and after an interrupt (the handler keeps the lock until the process exits) the
    /// main thread cannot overwrite `interrupted`.
    fn write(&self, dir: &Path) -> Result<()> {
        let mut last = LAST_LEDGER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *last = Some((dir.to_path_buf(), self.clone()));
        self.write_file(dir)
    }

    fn write_file(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = dir.join("ledger.json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, dir.join("ledger.json"))
            .with_context(|| format!("writing {}", dir.display()))
    }
}

/// The ledger of the run in progress, as last written: what an interrupt marks `interrupted`.
static LAST_LEDGER: std::sync::Mutex<Option<(PathBuf, Ledger)>> = std::sync::Mutex::new(None);

/// Exit code of a run stopped by SIGINT or SIGTERM (128 + SIGINT, as shells report Ctrl-C).
pub const EXIT_INTERRUPTED: i32 = 130;

/// While alive, Ctrl-C (SIGINT) or SIGTERM stops the run cleanly: its ledger says `interrupted`,
/// the staging folders this process was writing are removed, and the process exits with
/// [`EXIT_INTERRUPTED`]. A version only becomes visible by a rename once complete, so nothing
/// half-written is ever visible, interrupted or killed; rerunning resumes (finished stages are
/// skipped by their keys, the interrupted one starts again and writes the same bytes).
struct InterruptGuard {
    handle: signal_hook::iterator::Handle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InterruptGuard {
    fn install(datasets_root: PathBuf) -> Result<Self> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        // A scheduler runs many runs in one process: an interrupt belongs to this run only.
        clear_last_ledger();
        let mut signals =
            signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).context("installing Ctrl-C")?;
        let handle = signals.handle();
        let thread = std::thread::Builder::new()
            .name("roadsynth-interrupt".into())
            .spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    let name = if signal == SIGINT {
                        "SIGINT"
                    } else {
                        "SIGTERM"
                    };
                    eprintln!("{name}: stopping the run");
                    // Held until exit: the main thread blocks at its next ledger write.
                    let mut last = LAST_LEDGER
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if let Some((dir, ledger)) = last.as_mut() {
                        ledger.status = "interrupted".into();
                        ledger.finished_at = Some(now());
                        ledger.error = Some(format!("interrupted by {name}"));
                        if let Err(e) = ledger.write_file(dir) {
                            eprintln!("error: {e:#}");
                        }
                    }
                    crate::ray_executor::stop_driver();
                    sweep_staging(&datasets_root, |pid| pid == std::process::id());
                    std::process::exit(EXIT_INTERRUPTED);
                }
            })
            .context("starting the interrupt thread")?;
        Ok(Self {
            handle,
            thread: Some(thread),
        })
    }
}

fn clear_last_ledger() {
    *LAST_LEDGER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
}

impl Drop for InterruptGuard {
    fn drop(&mut self) {
        clear_last_ledger();
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Removes the staging folders that processes `owned` selects left in the datasets under
/// `datasets_root` (see [`roadsynth_dataset::sweep_staging`]).
fn sweep_staging(datasets_root: &Path, owned: impl Fn(u32) -> bool) {
    let Ok(datasets) = std::fs::read_dir(datasets_root) else {
        return;
    };
    for dataset in datasets.flatten() {
        roadsynth_dataset::sweep_staging(&dataset.path(), &owned);
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

/// Runs the stages of `config` that `options` selects under a new run id.
pub fn run(
    config: &Orchestrator,
    augment: AugmentRunner<'_>,
    options: &RunOptions,
) -> Result<ExitCode> {
    options.stages.check(config)?;
    let _lock = RunLock::acquire(&config.runs_root)?;
    // Under the lock no other run writes these outputs: staging folders of dead processes are
    // what a killed run left behind.
    sweep_staging(&config.datasets_root, |pid| {
        !roadsynth_dataset::process_alive(pid)
    });
    let _interrupt = InterruptGuard::install(config.datasets_root.clone())?;
    let started = chrono::Utc::now();
    // Unique even for runs started in the same second (quick `--stage` runs): the folder is
    // created exclusively, with a counter on a collision.
    let base_id = format!(
        "{}-{}",
        started.format("%Y%m%dT%H%M%SZ"),
        &config.config_hash[..8]
    );
    let mut run_id = base_id.clone();
    for n in 2.. {
        match std::fs::create_dir(config.runs_root.join(&run_id)) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => {
                run_id = format!("{base_id}-{n}");
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("creating {}", config.runs_root.join(&run_id).display())
                });
            }
        }
    }
    let dir = config.runs_root.join(&run_id);
    let mut ledger = Ledger {
        run_id: run_id.clone(),
        config_file: config.file.display().to_string(),
        config_hash: config.config_hash.clone(),
        tool_version: TOOL_VERSION.to_string(),
        code_version: code_version().to_string(),
        started_at: now(),
        finished_at: None,
        status: "running".into(),
        stages: Vec::new(),
        error: None,
        recording: None,
    };
    ledger.write(&dir)?;
    println!("run {run_id}");
    let (recording, recording_path) = run_recording::open(&dir, options.connect.as_deref())?;
    ledger.recording = Some(recording_path.display().to_string());
    let mut result = run_stages(
        config,
        augment,
        &options.stages,
        &recording,
        &mut ledger,
        &dir,
    );
    // Every handle is gone once the stages return; close the file (its footer) and flush the
    // viewer. A recording that cannot be finished is a warning: the run's outputs stand.
    match Arc::try_unwrap(recording) {
        Ok(recording) => match recording.finish(run_recording::FLUSH_TIMEOUT) {
            Ok(stats) => println!(
                "recording {}: {} augmented frames, {} evaluated frames",
                recording_path.display(),
                stats.augmented_frames,
                stats.eval_frames
            ),
            Err(e) => tracing::warn!("finishing {}: {e}", recording_path.display()),
        },
        Err(_) => {
            if result.is_ok() {
                result = Err(anyhow::anyhow!(
                    "the run recording is still in use after the stages ended"
                ));
            }
        }
    }
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
    stages: &StageFilter,
    recording: &Arc<RunRecording>,
    ledger: &mut Ledger,
    dir: &Path,
) -> Result<ExitCode> {
    check_models(config)?;
    let mut names: Vec<&str> = config.sources.iter().map(|s| s.dataset.as_str()).collect();
    names.dedup();
    names.retain(|name| stages.runs("ingest", name));
    let mut quarantined = false;
    for name in &names {
        let clock = Instant::now();
        let output = config.datasets_root.join(name);
        let mut ingest = config.clone();
        ingest.sources.retain(|s| s.dataset == *name);
        let mut fingerprints = Vec::new();
        for source in &ingest.sources {
            fingerprints.push(serde_json::json!({
                "source": format!("{source:?}"),
                "input": input_fingerprint(&source.input)?,
                "images": source.images_root.as_deref().map(input_fingerprint).transpose()?,
            }));
        }
        let key = stage_key(&serde_json::json!({"stage": "ingest", "sources": fingerprints}));
        let status = if is_current(&output, &key) {
            println!("ingest {name}: up to date");
            "skipped"
        } else {
            quarantined |= retrying(config.retries, &format!("ingest {name}"), || {
                crate::orchestrator::run_ingest(&ingest)
            })? == ExitCode::from(EXIT_QUARANTINED);
            mark_current(&output, &key)?;
            "ran"
        };
        crate::dataset_cmd::print_stats(&output)?;
        ledger.stages.push(StageRecord::of_dataset(
            "ingest",
            (*name).to_string(),
            ingest
                .sources
                .iter()
                .map(|s| s.input.display().to_string())
                .collect(),
            &output,
            key,
            status,
            clock,
        ));
        ledger.write(dir)?;
    }
    for bank in config
        .assets
        .iter()
        .filter(|b| stages.runs("assets", &b.name))
    {
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
            retrying(config.retries, &format!("assets {}", bank.name), || {
                assets_cmd::build(&BuildArgs {
                    dataset: dataset.clone(),
                    classes: bank.classes.clone(),
                    splits: Vec::new(),
                    min_area_px: 0,
                    output: output.clone(),
                })
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
            counts: None,
        });
        ledger.write(dir)?;
    }
    let mut slot: Option<(StageSlot, u64)> = None;
    for spec in config
        .augment
        .iter()
        .filter(|a| stages.runs("augment", &a.name))
    {
        let clock = Instant::now();
        let output = config.datasets_root.join(&spec.name);
        let key = augment_key(spec, config)?;
        let status = if is_current(&output, &key) {
            println!("augment {}: up to date", spec.name);
            "skipped"
        } else {
            let scenario =
                roadsynth_scenario::load(&spec.scenario).map_err(|e| anyhow::anyhow!("{e}"))?;
            let (frames, augmented) = stage_frames(
                &config.datasets_root.join(&spec.dataset),
                &scenario.splits,
                spec.max_frames,
            )?;
            let this = StageSlot::next(
                slot.as_ref().map(|(s, _)| s),
                slot.map_or(0, |(_, f)| f),
                frames,
                augmented,
                scenario.variants_per_frame,
            );
            slot = Some((this, frames));
            let observer = StageRecording {
                recording: Arc::clone(recording),
                slot: this,
            };
            quarantined |= retrying(config.retries, &format!("augment {}", spec.name), || {
                match &config.executor {
                    // Shards run in other processes: the recording gets no frames from them.
                    crate::orchestrator::Executor::Ray(ray) => {
                        crate::ray_executor::augment(spec, config, ray)
                    }
                    crate::orchestrator::Executor::Local => {
                        augment(spec, config, Some(observer.clone()))
                    }
                }
            })?;
            mark_current(&output, &key)?;
            "ran"
        };
        ledger.stages.push(StageRecord::of_dataset(
            "augment",
            spec.name.clone(),
            vec![
                config
                    .datasets_root
                    .join(&spec.dataset)
                    .display()
                    .to_string(),
                spec.scenario.display().to_string(),
            ],
            &output,
            key,
            status,
            clock,
        ));
        ledger.write(dir)?;
    }
    if let Some(spec) = config
        .experiment
        .as_ref()
        .filter(|_| stages.runs("experiment", "experiment"))
    {
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
            let report = retrying(config.retries, "experiment", || {
                crate::experiment::run(config, spec, &ledger.run_id, Some(recording))
            })?;
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
            counts: None,
        });
        ledger.write(dir)?;
    }
    Ok(if quarantined {
        ExitCode::from(EXIT_QUARANTINED)
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs `stage`, and again up to `retries` times while it fails. Stages write their outputs
/// atomically from their inputs alone, so an attempt after a failure starts clean.
fn retrying<T>(retries: u32, what: &str, mut stage: impl FnMut() -> Result<T>) -> Result<T> {
    let mut attempt = 0;
    loop {
        match stage() {
            Ok(v) => return Ok(v),
            Err(e) if attempt < retries => {
                attempt += 1;
                tracing::warn!(
                    "{what} failed: {e:#}; trying again (attempt {} of {})",
                    attempt + 1,
                    retries + 1
                );
            }
            Err(e) => {
                return Err(if retries > 0 {
                    e.context(format!("{what} failed {} times", retries + 1))
                } else {
                    e
                });
            }
        }
    }
}

/// How many frames an augment stage reads from `root` (every split, the scenario's cut to
/// `max_frames`, as the stage reads them) and how many of those it augments.
fn stage_frames(root: &Path, splits: &[String], max_frames: Option<usize>) -> Result<(u64, u64)> {
    let dataset =
        Dataset::open(root).with_context(|| format!("opening dataset {}", root.display()))?;
    let limit = max_frames.map_or(u64::MAX, |m| u64::try_from(m).unwrap_or(u64::MAX));
    let (mut read, mut augmented) = (0, 0);
    for (split, stats) in &dataset.manifest().splits {
        if splits.contains(split) {
            augmented += stats.frames.min(limit);
            read += stats.frames.min(limit);
        } else {
            read += stats.frames;
        }
    }
    Ok((read, augmented))
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
