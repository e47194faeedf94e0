//! The experiment stage: every arm (real, naive paste, roadsynth) trained with the same
//! configuration, epochs and seeds, scored on held-out real test sets that are never augmented,
//! compared with paired bootstrap intervals, and written as `reports/<run id>/metrics.json` and
//! `report.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use roadsynth_detector::{TrainConfig, TrainOptions};
use roadsynth_eval::{
    Bootstrap, ClassMap, Comparison, Detections, EvalOptions, EvalReport, GroundTruth, SliceSpec,
};
use serde::Serialize;

use crate::orchestrator::{ExperimentSpec, Orchestrator};

/// One arm and seed on one test set.
#[derive(Debug, Serialize)]
pub struct ArmScore {
    pub arm: String,
    pub seed: u64,
    pub test: String,
    pub model_dir: PathBuf,
    pub predictions: PathBuf,
    pub train_frames_per_epoch: u64,
    pub train_steps: u64,
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

/// What the stage writes to `metrics.json`.
#[derive(Debug, Serialize)]
pub struct ExperimentMetrics {
    pub run_id: String,
    pub epochs: u32,
    pub seeds: Vec<u64>,
    /// Per arm, test set and class: AP50 and AP averaged over seeds, with each seed's value and
    /// its bootstrap interval.
    pub summary: BTreeMap<String, BTreeMap<String, BTreeMap<String, ClassSummary>>>,
    pub scores: Vec<ArmScore>,
    pub deltas: Vec<ArmDelta>,
}

#[derive(Debug, Default, Serialize)]
pub struct ClassSummary {
    pub ap50_mean: Option<f64>,
    pub ap_mean: Option<f64>,
    /// `(seed, AP50, interval lower, interval upper)`.
    pub ap50_per_seed: Vec<(u64, Option<f64>, Option<f64>, Option<f64>)>,
    pub ap_per_seed: Vec<(u64, Option<f64>)>,
}

fn mean(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = values.flatten().collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Trains, predicts, scores and reports every arm of `spec`; returns the report folder.
pub fn run(config: &Orchestrator, spec: &ExperimentSpec, run_id: &str) -> Result<PathBuf> {
    let run_dir = config.runs_root.join(run_id);
    let report_dir = config.reports_root.join(run_id);
    std::fs::create_dir_all(&report_dir)
        .with_context(|| format!("creating {}", report_dir.display()))?;
    let bootstrap = Bootstrap {
        resamples: spec.bootstrap,
        ..Bootstrap::default()
    };
    // Equal epochs *and* equal optimiser steps: every arm's epoch is as many frames as the largest
    // arm's training split (smaller arms pass over theirs again), so the real-only arm is not
    // handicapped by fewer updates (the objection Dream4Drive raised against such comparisons).
    let mut frames_per_epoch = 0u64;
    for (_, dataset) in &spec.arms {
        let root = config.datasets_root.join(dataset);
        let frames = roadsynth_dataset::Dataset::open(&root)
            .with_context(|| format!("opening {}", root.display()))?
            .manifest()
            .splits
            .get(&spec.train_split)
            .map_or(0, |s| s.frames);
        frames_per_epoch = frames_per_epoch.max(frames);
    }
    let mut scores = Vec::new();
    let mut detections: BTreeMap<(String, u64, String), Detections> = BTreeMap::new();
    for (arm, dataset) in &spec.arms {
        for &seed in &spec.seeds {
            let model_dir = run_dir.join("models").join(format!("{arm}-seed{seed}"));
            let train_config = TrainConfig {
                epochs: spec.epochs,
                seed,
                frames_per_epoch: Some(frames_per_epoch),
                ..TrainConfig::default()
            };
            let trained = roadsynth_detector::train_with(
                &config.datasets_root.join(dataset),
                &spec.train_split,
                &train_config,
                &model_dir,
                TrainOptions {
                    resume: model_dir.join(roadsynth_detector::CONFIG_FILE).exists(),
                    ..TrainOptions::default()
                },
                |e| {
                    tracing::info!(arm = %arm, seed, epoch = e.epoch, loss = e.loss, "training");
                },
            )
            .with_context(|| format!("training arm {arm} seed {seed}"))?;
            for test in &spec.tests {
                let predictions = run_dir
                    .join("predictions")
                    .join(format!("{arm}-seed{seed}-{}.json", test.name));
                let test_root = config.datasets_root.join(&test.dataset);
                roadsynth_detector::predict_dataset(
                    &model_dir,
                    &test_root,
                    Some(std::slice::from_ref(&test.split)),
                    &predictions,
                )
                .with_context(|| format!("predicting {arm} seed {seed} on {}", test.name))?;
                let gt = GroundTruth::open(&test_root, Some(&test.split), &ClassMap::identity())?;
                let dets = Detections::read(&predictions)?;
                let report = roadsynth_eval::evaluate(
                    &gt,
                    &dets,
                    &EvalOptions {
                        slices: test.slices.iter().map(SliceSpec::by).collect(),
                        kitti_difficulty: None,
                        bootstrap: Some(bootstrap.clone()),
                    },
                )?;
                detections.insert((arm.clone(), seed, test.name.clone()), dets);
                scores.push(ArmScore {
                    arm: arm.clone(),
                    seed,
                    test: test.name.clone(),
                    model_dir: model_dir.clone(),
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
    for test in &spec.tests {
        let gt = GroundTruth::open(
            &config.datasets_root.join(&test.dataset),
            Some(&test.split),
            &ClassMap::identity(),
        )?;
        for &seed in &spec.seeds {
            for (a, b) in pairs {
                let (Some(da), Some(db)) = (
                    detections.get(&(a.to_string(), seed, test.name.clone())),
                    detections.get(&(b.to_string(), seed, test.name.clone())),
                ) else {
                    continue;
                };
                deltas.push(ArmDelta {
                    test: test.name.clone(),
                    seed,
                    a: a.into(),
                    b: b.into(),
                    comparison: roadsynth_eval::compare(&gt, da, db, &bootstrap)?,
                });
            }
        }
    }
    let mut summary: BTreeMap<String, BTreeMap<String, BTreeMap<String, ClassSummary>>> =
        BTreeMap::new();
    for s in &scores {
        for c in &s.report.overall.per_class {
            let entry = summary
                .entry(s.arm.clone())
                .or_default()
                .entry(s.test.clone())
                .or_default()
                .entry(c.class.clone())
                .or_default();
            entry.ap50_per_seed.push((
                s.seed,
                c.ap50,
                c.ap50_interval.as_ref().map(|i| i.lower),
                c.ap50_interval.as_ref().map(|i| i.upper),
            ));
            entry.ap_per_seed.push((s.seed, c.ap));
        }
    }
    for tests in summary.values_mut() {
        for classes in tests.values_mut() {
            for c in classes.values_mut() {
                c.ap50_mean = mean(c.ap50_per_seed.iter().map(|x| x.1));
                c.ap_mean = mean(c.ap_per_seed.iter().map(|x| x.1));
            }
        }
    }
    let metrics = ExperimentMetrics {
        run_id: run_id.to_string(),
        epochs: spec.epochs,
        seeds: spec.seeds.clone(),
        summary,
        scores,
        deltas,
    };
    std::fs::write(
        report_dir.join("metrics.json"),
        serde_json::to_string_pretty(&metrics)?,
    )
    .with_context(|| format!("writing {}", report_dir.display()))?;
    std::fs::write(report_dir.join("report.md"), markdown(&metrics))
        .with_context(|| format!("writing {}", report_dir.display()))?;
    Ok(report_dir)
}

fn fmt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.3}"))
}

/// The report for people: per test set and class, AP50 per arm (mean over seeds, each seed with
/// its interval), then the paired differences with their intervals.
pub fn markdown(m: &ExperimentMetrics) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Experiment {}\n", m.run_id);
    let _ = writeln!(
        out,
        "Every arm trains the same detector configuration for {} epochs of the same number of frames (equal optimiser steps; smaller training sets are passed over again) with seeds {:?}; test sets are real and never augmented. Intervals: 95% bootstrap over test images.\n",
        m.epochs, m.seeds
    );
    let steps: BTreeMap<&str, (u64, u64)> = m
        .scores
        .iter()
        .map(|s| (s.arm.as_str(), (s.train_frames_per_epoch, s.train_steps)))
        .collect();
    let _ = writeln!(
        out,
        "| arm | frames per epoch | optimiser steps |\n|---|---|---|"
    );
    for (arm, (frames, steps)) in &steps {
        let _ = writeln!(out, "| {arm} | {frames} | {steps} |");
    }
    let tests: Vec<&String> = m
        .summary
        .values()
        .flat_map(BTreeMap::keys)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for test in tests {
        let _ = writeln!(
            out,
            "\n## {test}: AP50 (mean over seeds; per seed [95% CI])\n"
        );
        let _ = writeln!(
            out,
            "| class | arm | AP50 | AP | per seed |\n|---|---|---|---|---|"
        );
        for (arm, by_test) in &m.summary {
            let Some(classes) = by_test.get(test) else {
                continue;
            };
            for (class, c) in classes {
                let seeds: Vec<String> = c
                    .ap50_per_seed
                    .iter()
                    .map(|(seed, v, lo, hi)| {
                        format!("s{seed} {} [{}, {}]", fmt(*v), fmt(*lo), fmt(*hi))
                    })
                    .collect();
                let _ = writeln!(
                    out,
                    "| {class} | {arm} | {} | {} | {} |",
                    fmt(c.ap50_mean),
                    fmt(c.ap_mean),
                    seeds.join("; ")
                );
            }
        }
        let _ = writeln!(out, "\n### Differences (b − a, paired bootstrap)\n");
        let _ = writeln!(
            out,
            "| a → b | seed | metric | b − a | 95% CI | P(b > a) |\n|---|---|---|---|---|---|"
        );
        for d in m.deltas.iter().filter(|d| &d.test == test) {
            for diff in d
                .comparison
                .differences
                .iter()
                .filter(|x| x.metric.ends_with("/AP50") || x.metric == "AP50")
            {
                let _ = writeln!(
                    out,
                    "| {} → {} | {} | {} | {} | {} | {} |",
                    d.a,
                    d.b,
                    d.seed,
                    diff.metric,
                    fmt(diff.difference),
                    diff.interval.as_ref().map_or_else(
                        || "-".into(),
                        |i| format!("[{:.3}, {:.3}]", i.lower, i.upper)
                    ),
                    fmt(diff.b_better)
                );
            }
        }
    }
    out
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
