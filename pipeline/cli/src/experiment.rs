//! The experiment stage: every arm (real, naive paste, roadsynth) trained with the same
//! configuration, epochs and seeds, scored on held-out real test sets that are never augmented,
//! compared with paired bootstrap intervals, and reported in `reports/<run id>/` (metrics.json,
//! report.md, report.html, through `roadsynth-report`) with PR curves and example frames.
//!
//! With `external_trainer` set, a user's command trains and predicts instead of the built-in
//! detector (see [`crate::external_trainer`]); everything after the predictions file is the same.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result};
use image::ImageEncoder as _;
use roadsynth_dataset::{Dataset, Projection};
use roadsynth_detector::{TrainConfig, TrainOptions};
use roadsynth_eval::{
    Bootstrap, ClassMap, Comparison, Detections, EvalOptions, EvalReport, GroundTruth, SliceSpec,
};
use roadsynth_inspect::{ImageRef, Prediction, RunRecording};
use roadsynth_report::{
    Arm, ArmComparison, ArmPrCurve, ArmResult, BoxKind, Example, ExampleBox, Experiment, PrCurve,
    SeedResult, TestSetReport,
};
use roadsynth_types::{Annotation, BBox, FrameRecord};
use serde::Serialize;

use crate::external_trainer::{self, ExternalTrainer};
use crate::orchestrator::{ExperimentSpec, Orchestrator, TestSpec};

/// Detections drawn on example frames and logged to the recording: below this a detector's
/// boxes are mostly noise to a reader (the evaluation itself uses every detection).
pub const DISPLAY_MIN_SCORE: f64 = 0.3;
/// Generated training frames in the report's example grid (two rows of its three columns).
const GENERATED_EXAMPLES: usize = 6;
/// Test images in the grid, each shown once per arm (a row per image).
const TEST_EXAMPLES: usize = 3;
/// Example frames wider than this are scaled down and every example is re-encoded as JPEG, so
/// the self-contained report.html stays around a megabyte (a 1280x720 JPEG is ~300 KB, a
/// generated 480x360 PNG ~250 KB; at 640 px and quality 80 each is 30-60 KB).
const EXAMPLE_MAX_WIDTH: u32 = 640;
const EXAMPLE_JPEG_QUALITY: u8 = 80;
/// Evaluated frames logged to the recording per run, shared evenly by every arm and test set
/// (the recording's own cap would otherwise go to the first arm alone).
const RECORDED_EVAL_FRAMES: u64 = 96;

/// One arm and seed on one test set.
#[derive(Debug, Serialize)]
pub struct ArmScore {
    pub arm: String,
    pub seed: u64,
    pub test: String,
    pub model_dir: PathBuf,
    pub predictions: PathBuf,
    /// The built-in detector's frames per epoch and optimiser steps; `None` for an external
    /// trainer, whose training roadsynth does not see.
    pub train_frames_per_epoch: Option<u64>,
    pub train_steps: Option<u64>,
    pub report: EvalReport,
}

/// `b - a` for one pair of arms, one seed, one test set.
#[derive(Debug, Serialize)]
pub struct ArmDelta {
    pub test: String,
    pub seed: u64,
    pub a: String,
    pub b: String,
    pub comparison: Comparison,
}

/// A test set as the stage uses it: its ground truth, read once.
struct TestData<'a> {
    spec: &'a TestSpec,
    root: PathBuf,
    gt: GroundTruth,
    /// The export's image id of the split's first frame (ids run on in stored order).
    first_id: u64,
    /// The class of each category id (from 1) predictions use.
    classes: Vec<String>,
    /// The COCO image-info file an external trainer predicts for.
    images_json: Option<PathBuf>,
}

/// A trained model: where it is and, for the built-in detector, how long it trained.
struct Trained {
    model_dir: PathBuf,
    frames_per_epoch: Option<u64>,
    steps: Option<u64>,
}

/// Trains, predicts, scores and reports every arm of `spec`; returns the report folder. Training
/// losses, APs and a sample of predictions against ground truth go to `recording` when given.
pub fn run(
    config: &Orchestrator,
    spec: &ExperimentSpec,
    run_id: &str,
    recording: Option<&RunRecording>,
) -> Result<PathBuf> {
    let run_dir = config.runs_root.join(run_id);
    let report_dir = config.reports_root.join(run_id);
    std::fs::create_dir_all(&report_dir)
        .with_context(|| format!("creating {}", report_dir.display()))?;
    let bootstrap = Bootstrap {
        resamples: spec.bootstrap,
        ..Bootstrap::default()
    };
    let external = spec.external_trainer.as_ref();
    // A command without `{seed}` would give every seed the same result: it runs once per arm.
    let seeds: Vec<u64> = match external {
        Some(e) if !e.uses_seed() => spec.seeds.iter().copied().take(1).collect(),
        _ => spec.seeds.clone(),
    };
    // Equal epochs *and* equal optimiser steps: every arm's epoch is as many frames as the largest
    // arm's training split (smaller arms pass over theirs again), so the real-only arm is not
    // handicapped by fewer updates (the objection Dream4Drive raised against such comparisons).
    let mut frames_per_epoch = 0u64;
    for (_, dataset) in &spec.arms {
        let root = config.datasets_root.join(dataset);
        let frames = Dataset::open(&root)
            .with_context(|| format!("opening {}", root.display()))?
            .manifest()
            .splits
            .get(&spec.train_split)
            .map_or(0, |s| s.frames);
        frames_per_epoch = frames_per_epoch.max(frames);
    }
    let mut tests = Vec::new();
    for test in &spec.tests {
        tests.push(open_test(config, test, external.map(|_| &run_dir))?);
    }
    let per_stream = RECORDED_EVAL_FRAMES / (spec.arms.len() * tests.len()).max(1) as u64;
    let mut scores = Vec::new();
    let mut pr_curves = Vec::new();
    let mut detections: BTreeMap<(String, u64, String), Detections> = BTreeMap::new();
    for (arm_index, (arm, dataset)) in spec.arms.iter().enumerate() {
        let arm_id = Arm::from_str(arm).map_err(|e| anyhow::anyhow!("{e}"))?;
        let train_root = config.datasets_root.join(dataset);
        for (seed_index, &seed) in seeds.iter().enumerate() {
            let trained = match external {
                None => train_builtin(
                    &run_dir,
                    &train_root,
                    spec,
                    arm,
                    seed,
                    frames_per_epoch,
                    recording,
                )?,
                Some(e) => Trained {
                    model_dir: train_external(e, &run_dir, &train_root, spec, arm, seed)?,
                    frames_per_epoch: None,
                    steps: None,
                },
            };
            for (test_index, test) in tests.iter().enumerate() {
                let name = &test.spec.name;
                let predictions = run_dir
                    .join("predictions")
                    .join(format!("{arm}-seed{seed}-{name}.json"));
                match external {
                    None => {
                        roadsynth_detector::predict_dataset(
                            &trained.model_dir,
                            &test.root,
                            Some(std::slice::from_ref(&test.spec.split)),
                            &predictions,
                        )
                        .with_context(|| format!("predicting {arm} seed {seed} on {name}"))?;
                    }
                    Some(e) => predict_external(
                        e,
                        &trained.model_dir,
                        &train_root,
                        spec,
                        (arm, seed),
                        test,
                        &predictions,
                    )?,
                }
                let dets = Detections::read(&predictions)?;
                let report = roadsynth_eval::evaluate(
                    &test.gt,
                    &dets,
                    &EvalOptions {
                        slices: test.spec.slices.iter().map(SliceSpec::by).collect(),
                        kitti_difficulty: None,
                        bootstrap: Some(bootstrap),
                    },
                )
                .with_context(|| format!("scoring {}", predictions.display()))?;
                if let Some(rec) = recording {
                    for c in &report.overall.per_class {
                        for (figure, value) in [("AP50", c.ap50), ("AP", c.ap)] {
                            if let Some(v) = value {
                                rec.log_scalar(
                                    &format!("eval/{name}/{arm}/seed{seed}/{figure}/{}", c.class),
                                    u64::from(spec.epochs),
                                    v,
                                )?;
                            }
                        }
                    }
                }
                if seed_index == 0 {
                    for curve in roadsynth_eval::pr_curves(&test.gt, &dets, 0.5)? {
                        pr_curves.push(ArmPrCurve {
                            arm: arm_id,
                            seed,
                            test_set: name.clone(),
                            curve: PrCurve {
                                class: curve.class,
                                iou: curve.iou,
                                recall: curve.recall,
                                precision: curve.precision,
                            },
                        });
                    }
                    if let Some(rec) = recording {
                        let base = arm_index as u64 * 1_000_000 + test_index as u64 * 100_000;
                        record_detections(rec, test, &dets, base, per_stream)?;
                    }
                }
                detections.insert((arm.clone(), seed, name.clone()), dets);
                scores.push(ArmScore {
                    arm: arm.clone(),
                    seed,
                    test: name.clone(),
                    model_dir: trained.model_dir.clone(),
                    predictions,
                    train_frames_per_epoch: trained.frames_per_epoch,
                    train_steps: trained.steps,
                    report,
                });
            }
        }
    }
    // Paired differences against the real arm and roadsynth against naive paste.
    let mut deltas = Vec::new();
    let pairs = [
        ("real", "naive_paste"),
        ("real", "roadsynth"),
        ("naive_paste", "roadsynth"),
    ];
    for test in &tests {
        for &seed in &seeds {
            for (a, b) in pairs {
                let (Some(da), Some(db)) = (
                    detections.get(&(a.to_string(), seed, test.spec.name.clone())),
                    detections.get(&(b.to_string(), seed, test.spec.name.clone())),
                ) else {
                    continue;
                };
                deltas.push(ArmDelta {
                    test: test.spec.name.clone(),
                    seed,
                    a: a.into(),
                    b: b.into(),
                    comparison: roadsynth_eval::compare(&test.gt, da, db, &bootstrap)?,
                });
            }
        }
    }
    let mut arms: Vec<ArmResult> = Vec::new();
    for (arm, _) in &spec.arms {
        let arm_id = Arm::from_str(arm).map_err(|e| anyhow::anyhow!("{e}"))?;
        let seed_results = seeds
            .iter()
            .map(|&seed| {
                let mine: Vec<&ArmScore> = scores
                    .iter()
                    .filter(|s| &s.arm == arm && s.seed == seed)
                    .collect();
                SeedResult {
                    seed,
                    model_dir: mine
                        .first()
                        .map(|s| s.model_dir.clone())
                        .unwrap_or_default(),
                    test_sets: mine
                        .iter()
                        .map(|s| TestSetReport {
                            test_set: s.test.clone(),
                            report: s.report.clone(),
                        })
                        .collect(),
                }
            })
            .collect();
        arms.push(ArmResult {
            arm: arm_id,
            seeds: seed_results,
        });
    }
    let comparisons = deltas
        .into_iter()
        .map(|d| -> Result<ArmComparison> {
            Ok(ArmComparison {
                test_set: d.test,
                a: Arm::from_str(&d.a).map_err(|e| anyhow::anyhow!("{e}"))?,
                a_seed: d.seed,
                b: Arm::from_str(&d.b).map_err(|e| anyhow::anyhow!("{e}"))?,
                b_seed: d.seed,
                comparison: d.comparison,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut examples = generated_examples(config, spec)?;
    examples.extend(detection_examples(spec, &tests, &seeds, &detections)?);
    let (mut notes, caveats) = notes(spec, &seeds, frames_per_epoch, &scores, &tests);
    notes.extend(training_data_notes(config, spec)?);
    notes.extend(size_notes(config, spec)?);
    let experiment = Experiment {
        name: format!("Detector retraining, run {run_id}"),
        run_id: run_id.to_string(),
        created_at: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        arms,
        comparisons,
        pr_curves,
        examples,
        notes,
        caveats,
    };
    roadsynth_report::write_report(&report_dir, &experiment)?;
    Ok(report_dir)
}

/// What each arm trained on: its training split's frames and annotations per class (an arm
/// whose generator drops objects trains on fewer of them, which the figures alone would hide).
fn training_data_notes(config: &Orchestrator, spec: &ExperimentSpec) -> Result<Vec<String>> {
    spec.arms
        .iter()
        .map(|(arm, dataset)| {
            let root = config.datasets_root.join(dataset);
            let opened = Dataset::open(&root)
                .with_context(|| format!("opening {}", root.display()))?;
            let stats = opened
                .manifest()
                .splits
                .get(&spec.train_split)
                .cloned()
                .unwrap_or_default();
            let classes = stats
                .classes
                .iter()
                .map(|(class, n)| format!("{class} {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            Ok(format!(
                "Training data of {arm} ({dataset}, split {}): {} frames, {} annotations ({classes}).",
                spec.train_split, stats.frames, stats.annotations
            ))
        })
        .collect()
}

/// Object sizes per class of the test sets, in each arm's training data and in each test set:
/// box height over image height. Generated objects at other scales than a test set's teach a
/// detector little about it, however realistic, so a reader needs this to judge an arm's gain.
fn size_notes(config: &Orchestrator, spec: &ExperimentSpec) -> Result<Vec<String>> {
    let heights = |dataset: &str, split: &str| -> Result<BTreeMap<String, Vec<f64>>> {
        let root = config.datasets_root.join(dataset);
        let opened = Dataset::open(&root).with_context(|| format!("opening {}", root.display()))?;
        let mut by_class: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let frames = opened
            .frames(split, Projection::WithoutImages)
            .with_context(|| format!("reading split {split} of {}", root.display()))?;
        for record in frames {
            let record =
                record.with_context(|| format!("reading split {split} of {}", root.display()))?;
            let image_height = f64::from(record.frame.height.max(1));
            for a in record.annotations.iter().filter(|a| !a.crowd && !a.ignore) {
                by_class
                    .entry(a.class.clone())
                    .or_default()
                    .push(a.bbox.height() / image_height);
            }
        }
        Ok(by_class)
    };
    let mut sources: Vec<(String, BTreeMap<String, Vec<f64>>)> = Vec::new();
    for (arm, dataset) in &spec.arms {
        sources.push((
            format!("{arm} training"),
            heights(dataset, &spec.train_split)?,
        ));
    }
    let first_test = sources.len();
    for test in &spec.tests {
        sources.push((
            format!("{} test", test.name),
            heights(&test.dataset, &test.split)?,
        ));
    }
    let classes: BTreeSet<&String> = sources[first_test..]
        .iter()
        .flat_map(|(_, by_class)| by_class.keys())
        .collect();
    Ok(classes
        .into_iter()
        .map(|class| {
            let parts: Vec<String> = sources
                .iter()
                .map(|(source, by_class)| match by_class.get(class) {
                    Some(h) if !h.is_empty() => {
                        format!("{source} {} (n = {})", percentiles(h), h.len())
                    }
                    _ => format!("{source} none"),
                })
                .collect();
            format!(
                "{class} box heights as a fraction of the image height (10th/25th/50th/75th/90th percentiles): {}.",
                parts.join("; ")
            )
        })
        .collect())
}

/// The 10th, 25th, 50th, 75th and 90th percentiles of `values` (nearest rank below), as
/// `0.09/0.13/0.19/0.24/0.31`.
fn percentiles(values: &[f64]) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let last = sorted.len().saturating_sub(1) as f64;
    [0.1, 0.25, 0.5, 0.75, 0.9]
        .iter()
        // In range: the rank is at most `last`, an index of `sorted`.
        .map(|p| format!("{:.2}", sorted[(p * last).floor() as usize]))
        .collect::<Vec<_>>()
        .join("/")
}

/// What the report says about how the arms were made comparable, and what it cannot vouch for.
fn notes(
    spec: &ExperimentSpec,
    seeds: &[u64],
    frames_per_epoch: u64,
    scores: &[ArmScore],
    tests: &[TestData<'_>],
) -> (Vec<String>, Vec<String>) {
    let mut notes = Vec::new();
    let mut caveats = Vec::new();
    match &spec.external_trainer {
        None => {
            notes.push(format!(
                "Every arm trains the same detector configuration (a head on the frozen COCO-pretrained YOLOX-nano) for {} epochs of {frames_per_epoch} frames each (equal optimiser steps; smaller training sets are passed over again), seeds {seeds:?}. Test sets are real and never augmented.",
                spec.epochs
            ));
            let first_test = tests.first().map(|t| t.spec.name.as_str());
            notes.extend(
                scores
                    .iter()
                    .filter(|s| Some(s.test.as_str()) == first_test)
                    .map(|s| {
                        format!(
                            "{} seed {}: {} frames per epoch, {} optimiser steps",
                            s.arm,
                            s.seed,
                            s.train_frames_per_epoch.unwrap_or(0),
                            s.train_steps.unwrap_or(0)
                        )
                    }),
            );
        }
        Some(e) => {
            notes.push(format!(
                "Detector: the external trainer `{}` instead of the built-in one. For every arm{} it was given the arm's `{}` split exported as {} (`roadsynth dataset export`){} and, per test set, the test images with a COCO image-info file (no labels); its COCO results were scored with the same evaluation, bootstrap and paired comparisons as the built-in detector's. Command: `{}`.",
                e.name,
                if e.uses_seed() { " and seed" } else { "" },
                spec.train_split,
                e.format_name(),
                e.train
                    .as_ref()
                    .map(|t| format!(", trained by `{}`", t.template()))
                    .unwrap_or_default(),
                e.command.template(),
            ));
            notes.push(format!(
                "Test sets are real and never augmented; epochs asked for: {} (passed to the command as {{epochs}}).",
                spec.epochs
            ));
            if !e.uses_seed() {
                notes.push(format!(
                    "The external commands take no {{seed}}, so each arm ran once, reported as seed {}; seeds {:?} were not run.",
                    seeds.first().copied().unwrap_or_default(),
                    spec.seeds.get(1..).unwrap_or_default()
                ));
            }
            caveats.push(
                "The external trainer's training is outside roadsynth: equal epochs and optimiser steps across arms are up to its command."
                    .to_string(),
            );
        }
    }
    (notes, caveats)
}

/// Reads a test set's ground truth and, for an external trainer, writes its images once.
fn open_test<'a>(
    config: &Orchestrator,
    test: &'a TestSpec,
    external_run_dir: Option<&PathBuf>,
) -> Result<TestData<'a>> {
    let root = config.datasets_root.join(&test.dataset);
    let gt = GroundTruth::open(&root, Some(&test.split), &ClassMap::identity())
        .with_context(|| format!("test set {}", test.name))?;
    let dataset = Dataset::open(&root).with_context(|| format!("opening {}", root.display()))?;
    let first_id = external_trainer::first_image_id(&dataset, &test.split)?;
    let images_json = match external_run_dir {
        Some(run_dir) => {
            let dir = run_dir.join("external").join("tests").join(&test.name);
            let file = dir.join("images.json");
            Some(if file.is_file() {
                file
            } else {
                external_trainer::write_test_images(&root, &test.split, &dir)?
            })
        }
        None => None,
    };
    Ok(TestData {
        spec: test,
        root,
        classes: gt.source_classes().to_vec(),
        gt,
        first_id,
        images_json,
    })
}

/// Trains the built-in detector for one arm and seed (resuming a model folder a stopped run
/// left), logging each epoch's loss.
fn train_builtin(
    run_dir: &Path,
    train_root: &Path,
    spec: &ExperimentSpec,
    arm: &str,
    seed: u64,
    frames_per_epoch: u64,
    recording: Option<&RunRecording>,
) -> Result<Trained> {
    let model_dir = run_dir.join("models").join(format!("{arm}-seed{seed}"));
    let train_config = TrainConfig {
        epochs: spec.epochs,
        seed,
        frames_per_epoch: Some(frames_per_epoch),
        ..TrainConfig::default()
    };
    let loss_path = format!("train/{arm}/seed{seed}/loss");
    let mut logged = Vec::new();
    let mut log_error = None;
    let trained = roadsynth_detector::train_with(
        train_root,
        &spec.train_split,
        &train_config,
        &model_dir,
        TrainOptions {
            resume: model_dir.join(roadsynth_detector::CONFIG_FILE).exists(),
            ..TrainOptions::default()
        },
        |e| {
            tracing::info!(arm = %arm, seed, epoch = e.epoch, loss = e.loss, "training");
            if let Some(rec) = recording {
                match rec.log_scalar(&loss_path, u64::from(e.epoch), e.loss) {
                    Ok(()) => logged.push(e.epoch),
                    Err(err) => log_error = Some(err),
                }
            }
        },
    )
    .with_context(|| format!("training arm {arm} seed {seed}"))?;
    if let Some(err) = log_error {
        return Err(err).context("recording the training loss");
    }
    // Epochs a resumed run trained before this one are in the summary, not the callback.
    if let Some(rec) = recording {
        for e in trained.epochs.iter().filter(|e| !logged.contains(&e.epoch)) {
            rec.log_scalar(&loss_path, u64::from(e.epoch), e.loss)?;
        }
    }
    Ok(Trained {
        model_dir,
        frames_per_epoch: Some(trained.frames_per_epoch),
        steps: Some(trained.steps),
    })
}

/// Placeholder values of an external command for one arm and seed.
fn values(
    e: &ExternalTrainer,
    workdir: &Path,
    train_root: &Path,
    spec: &ExperimentSpec,
    arm: &str,
    seed: u64,
) -> Result<BTreeMap<&'static str, String>> {
    let classes = Dataset::open(train_root)
        .with_context(|| format!("opening {}", train_root.display()))?
        .manifest()
        .classes
        .join(",");
    Ok(BTreeMap::from([
        ("arm", arm.to_string()),
        ("seed", seed.to_string()),
        ("epochs", spec.epochs.to_string()),
        ("classes", classes),
        ("train_dir", workdir.join("train").display().to_string()),
        ("train_format", e.format_name().to_ascii_lowercase()),
        ("train_split", spec.train_split.clone()),
        ("workdir", workdir.display().to_string()),
    ]))
}

/// Exports the arm's training split into `<workdir>/train` and runs the `train` command, if any;
/// returns the work folder (the "model folder" of the report).
fn train_external(
    e: &ExternalTrainer,
    run_dir: &Path,
    train_root: &Path,
    spec: &ExperimentSpec,
    arm: &str,
    seed: u64,
) -> Result<PathBuf> {
    let workdir = std::path::absolute(run_dir.join("external").join(format!("{arm}-seed{seed}")))
        .context("resolving the external trainer's work folder")?;
    std::fs::create_dir_all(&workdir).with_context(|| format!("creating {}", workdir.display()))?;
    let train_dir = workdir.join("train");
    // An export a stopped run left may be partial: exporting is cheap next to training.
    if train_dir.exists() {
        std::fs::remove_dir_all(&train_dir)
            .with_context(|| format!("removing {}", train_dir.display()))?;
    }
    crate::dataset_cmd::export_dataset(
        train_root,
        e.format,
        &train_dir,
        Some(std::slice::from_ref(&spec.train_split)),
    )?;
    if let Some(train) = &e.train {
        let values = values(e, &workdir, train_root, spec, arm, seed)?;
        external_trainer::run_logged(
            &format!(
                "external trainer {}: training arm {arm} seed {seed}",
                e.name
            ),
            train,
            &values,
            &e.cwd,
            &workdir.join("train.log"),
        )?;
    }
    Ok(workdir)
}

/// Runs the external `command` for one test set; its results must appear at `predictions`.
fn predict_external(
    e: &ExternalTrainer,
    workdir: &Path,
    train_root: &Path,
    spec: &ExperimentSpec,
    (arm, seed): (&str, u64),
    test: &TestData<'_>,
    predictions: &Path,
) -> Result<()> {
    let images_json = test
        .images_json
        .as_deref()
        .context("test images were not written for the external trainer")?;
    let predictions = std::path::absolute(predictions).context("resolving the predictions path")?;
    if let Some(dir) = predictions.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // A results file an earlier run left must not pass for this run's.
    if predictions.exists() {
        std::fs::remove_file(&predictions)
            .with_context(|| format!("removing {}", predictions.display()))?;
    }
    let mut values = values(e, workdir, train_root, spec, arm, seed)?;
    let test_dir = images_json.parent().unwrap_or(Path::new("."));
    values.insert("test_name", test.spec.name.clone());
    values.insert(
        "test_images",
        std::path::absolute(images_json)?.display().to_string(),
    );
    values.insert(
        "test_dir",
        std::path::absolute(test_dir)?.display().to_string(),
    );
    values.insert("predictions", predictions.display().to_string());
    let log = workdir.join(format!("predict-{}.log", test.spec.name));
    let what = format!(
        "external trainer {}: arm {arm} seed {seed} on {}",
        e.name, test.spec.name
    );
    external_trainer::run_logged(&what, &e.command, &values, &e.cwd, &log)?;
    anyhow::ensure!(
        predictions.is_file(),
        "{what}: the command succeeded but wrote no results to {} (see {})",
        predictions.display(),
        log.display()
    );
    Ok(())
}

/// The class name of a detection's category id, if the numbering has it.
fn class_of(classes: &[String], category_id: u64) -> Option<&str> {
    let index = usize::try_from(category_id).ok()?.checked_sub(1)?;
    classes.get(index).map(String::as_str)
}

/// Logs a spread-out sample of a test set's images with the detections (score at least
/// [`DISPLAY_MIN_SCORE`]) against the ground truth, at `base + image index` on the `eval_frame`
/// timeline.
fn record_detections(
    rec: &RunRecording,
    test: &TestData<'_>,
    dets: &Detections,
    base: u64,
    per_stream: u64,
) -> Result<()> {
    let dataset =
        Dataset::open(&test.root).with_context(|| format!("opening {}", test.root.display()))?;
    let total = dataset
        .manifest()
        .splits
        .get(&test.spec.split)
        .map_or(0, |s| s.frames);
    let every = total.div_ceil(per_stream.max(1)).max(1);
    let mut by_image: BTreeMap<u64, Vec<Prediction<'_>>> = BTreeMap::new();
    for d in dets.items().iter().filter(|d| d.score >= DISPLAY_MIN_SCORE) {
        if let Some(class) = class_of(&test.classes, d.category_id) {
            let [x, y, w, h] = d.bbox;
            by_image.entry(d.image_id).or_default().push(Prediction {
                class,
                score: d.score,
                bbox: BBox::from_xywh(x, y, w, h),
            });
        }
    }
    let reader = dataset
        .frames(&test.spec.split, Projection::Full)
        .with_context(|| format!("reading {}", test.root.display()))?;
    for (index, record) in (0_u64..).zip(reader) {
        if index % every != 0 {
            continue;
        }
        let record = record.with_context(|| format!("reading {}", test.root.display()))?;
        let Some(bytes) = record.image.as_deref() else {
            continue;
        };
        let predictions = by_image
            .get(&(test.first_id + index))
            .map_or(&[][..], Vec::as_slice);
        rec.log_detections(
            base + index,
            ImageRef::Encoded(bytes),
            &record.annotations,
            predictions,
        )?;
    }
    Ok(())
}

/// `count` indices spread evenly over `candidates` (all of them when there are fewer).
fn spread<T: Copy>(candidates: &[T], count: usize) -> Vec<T> {
    if candidates.len() <= count {
        return candidates.to_vec();
    }
    (0..count)
        .map(|i| candidates[i * candidates.len() / count])
        .collect()
}

/// Reads the frames of `split` at `indices` (sorted), with their images.
fn frames_at(root: &Path, split: &str, indices: &[usize]) -> Result<Vec<FrameRecord>> {
    let Some(&last) = indices.last() else {
        return Ok(Vec::new());
    };
    let dataset = Dataset::open(root).with_context(|| format!("opening {}", root.display()))?;
    let mut out = Vec::new();
    for (i, record) in dataset
        .frames(split, Projection::Full)
        .with_context(|| format!("reading {}", root.display()))?
        .enumerate()
        .take(last + 1)
    {
        if indices.contains(&i) {
            out.push(record.with_context(|| format!("reading {}", root.display()))?);
        }
    }
    Ok(out)
}

/// Indices of the frames of `split` whose annotations satisfy `keep`, read without images.
fn frames_where(
    root: &Path,
    split: &str,
    keep: impl Fn(&[Annotation]) -> bool,
) -> Result<Vec<usize>> {
    let dataset = Dataset::open(root).with_context(|| format!("opening {}", root.display()))?;
    let mut out = Vec::new();
    for (i, record) in dataset
        .frames(split, Projection::WithoutImages)
        .with_context(|| format!("reading {}", root.display()))?
        .enumerate()
    {
        let record = record.with_context(|| format!("reading {}", root.display()))?;
        if keep(&record.annotations) {
            out.push(i);
        }
    }
    Ok(out)
}

/// A frame for the report: scaled to at most [`EXAMPLE_MAX_WIDTH`] and JPEG-encoded; returns the
/// bytes and the factors that map frame pixels to example pixels.
fn example_image(bytes: &[u8], what: &str) -> Result<(Vec<u8>, f64, f64)> {
    let image = image::load_from_memory(bytes).with_context(|| format!("decoding {what}"))?;
    let (w, h) = (image.width(), image.height());
    let image = if w > EXAMPLE_MAX_WIDTH {
        let height = (f64::from(h) * f64::from(EXAMPLE_MAX_WIDTH) / f64::from(w))
            .round()
            .max(1.0);
        // The height of a frame fits u32 after scaling it down.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let height = height as u32;
        image.resize_exact(
            EXAMPLE_MAX_WIDTH,
            height,
            image::imageops::FilterType::Triangle,
        )
    } else {
        image
    };
    let rgb = image.into_rgb8();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, EXAMPLE_JPEG_QUALITY)
        .write_image(
            rgb.as_raw(),
            rgb.width(),
            rgb.height(),
            image::ExtendedColorType::Rgb8,
        )
        .with_context(|| format!("encoding {what}"))?;
    Ok((
        out,
        f64::from(rgb.width()) / f64::from(w),
        f64::from(rgb.height()) / f64::from(h),
    ))
}

fn scaled(b: BBox, sx: f64, sy: f64) -> [f64; 4] {
    [b.x0 * sx, b.y0 * sy, b.x1 * sx, b.y1 * sy]
}

/// Training frames of the roadsynth arm (else the naive-paste arm) with their generated
/// objects (solid) and real ones (dashed).
fn generated_examples(config: &Orchestrator, spec: &ExperimentSpec) -> Result<Vec<Example>> {
    let Some((arm, dataset)) = ["roadsynth", "naive_paste"]
        .iter()
        .find_map(|want| spec.arms.iter().find(|(arm, _)| arm == want))
    else {
        return Ok(Vec::new());
    };
    let root = config.datasets_root.join(dataset);
    let generated = frames_where(&root, &spec.train_split, |annotations| {
        annotations.iter().any(|a| !a.origin.is_real())
    })?;
    let chosen = spread(&generated, GENERATED_EXAMPLES);
    let mut out = Vec::new();
    for record in frames_at(&root, &spec.train_split, &chosen)? {
        let Some(bytes) = record.image.as_deref() else {
            continue;
        };
        let (image, sx, sy) = example_image(bytes, &record.frame.image_name)?;
        let inserted: Vec<&str> = record
            .annotations
            .iter()
            .filter(|a| !a.origin.is_real())
            .map(|a| a.class.as_str())
            .collect();
        out.push(Example {
            caption: format!(
                "{arm} training frame {}: {} generated ({})",
                record.frame.image_name,
                inserted.len(),
                inserted.join(", ")
            ),
            image,
            boxes: record
                .annotations
                .iter()
                .map(|a| ExampleBox {
                    bbox: scaled(a.bbox, sx, sy),
                    label: if a.origin.is_real() {
                        String::new()
                    } else {
                        a.class.clone()
                    },
                    kind: if a.origin.is_real() {
                        BoxKind::GroundTruth
                    } else {
                        BoxKind::Inserted
                    },
                })
                .collect(),
        });
    }
    Ok(out)
}

/// A few images of the animal test set (else the first) with each arm's detections (first seed,
/// score at least [`DISPLAY_MIN_SCORE`]) over the ground truth: one example per image and arm.
fn detection_examples(
    spec: &ExperimentSpec,
    tests: &[TestData<'_>],
    seeds: &[u64],
    detections: &BTreeMap<(String, u64, String), Detections>,
) -> Result<Vec<Example>> {
    let (Some(test), Some(&seed)) = (
        tests
            .iter()
            .find(|t| t.gt.categories().iter().any(|c| c == "animal"))
            .or_else(|| tests.first()),
        seeds.first(),
    ) else {
        return Ok(Vec::new());
    };
    let with_objects = frames_where(&test.root, &test.spec.split, |annotations| {
        annotations.iter().any(|a| !a.crowd && !a.ignore)
    })?;
    let chosen = spread(&with_objects, TEST_EXAMPLES);
    let mut out = Vec::new();
    for (index, record) in chosen
        .iter()
        .zip(frames_at(&test.root, &test.spec.split, &chosen)?)
    {
        let Some(bytes) = record.image.as_deref() else {
            continue;
        };
        let (image, sx, sy) = example_image(bytes, &record.frame.image_name)?;
        let image_id = test.first_id + *index as u64;
        let truth: Vec<ExampleBox> = record
            .annotations
            .iter()
            .map(|a| ExampleBox {
                bbox: scaled(a.bbox, sx, sy),
                label: String::new(),
                kind: BoxKind::GroundTruth,
            })
            .collect();
        // In report order (baseline first), whatever order the file lists the arms in.
        for arm_id in Arm::ALL {
            let arm = arm_id.as_str();
            if !spec.arms.iter().any(|(a, _)| a == arm) {
                continue;
            }
            let Some(dets) = detections.get(&(arm.to_string(), seed, test.spec.name.clone()))
            else {
                continue;
            };
            let mut boxes = truth.clone();
            let mut shown = 0;
            for d in dets
                .items()
                .iter()
                .filter(|d| d.image_id == image_id && d.score >= DISPLAY_MIN_SCORE)
            {
                let [x, y, w, h] = d.bbox;
                boxes.push(ExampleBox {
                    bbox: scaled(BBox::from_xywh(x, y, w, h), sx, sy),
                    label: format!(
                        "{} {:.2}",
                        class_of(&test.classes, d.category_id).unwrap_or("?"),
                        d.score
                    ),
                    kind: BoxKind::Detection(arm_id),
                });
                shown += 1;
            }
            out.push(Example {
                caption: format!(
                    "{} {}: {arm} (seed {seed}), {shown} detection{} with score >= {DISPLAY_MIN_SCORE}",
                    test.spec.name,
                    record.frame.image_name,
                    if shown == 1 { "" } else { "s" }
                ),
                image: image.clone(),
                boxes,
            });
        }
    }
    Ok(out)
}

/// Every arm's dataset must exist before the stage: a helpful error naming the missing one.
pub fn check_inputs(config: &Orchestrator, spec: &ExperimentSpec) -> Result<()> {
    for (arm, dataset) in &spec.arms {
        let root: &Path = &config.datasets_root.join(dataset);
        anyhow::ensure!(
            root.join("CURRENT").exists(),
            "experiment arm {arm}: dataset {} does not exist (is it a source or an augment output?)",
            root.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_picks_evenly_and_keeps_short_lists() {
        assert_eq!(spread(&[1, 2], 6), [1, 2]);
        assert_eq!(spread(&(0..12).collect::<Vec<_>>(), 3), [0, 4, 8]);
        assert_eq!(class_of(&["a".into(), "b".into()], 2), Some("b"));
        assert_eq!(class_of(&["a".into()], 0), None);
    }
}
