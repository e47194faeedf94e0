//! The experiment stage: every arm (real, naive paste, roadsynth) trained with the same
//! configuration, epochs and seeds, scored on held-out real test sets that are never augmented,
//! compared with paired bootstrap intervals, and reported in `reports/<run id>/` (metrics.json,
//! report.md, report.html, through `roadsynth-report`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result};
use roadsynth_detector::{TrainConfig, TrainOptions};
use roadsynth_eval::{
    Bootstrap, ClassMap, Comparison, Detections, EvalOptions, EvalReport, GroundTruth, SliceSpec,
};
use roadsynth_report::{Arm, ArmComparison, ArmResult, Experiment, SeedResult, TestSetReport};
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
                        bootstrap: Some(bootstrap),
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
    let mut arms: Vec<ArmResult> = Vec::new();
    for (arm, _) in &spec.arms {
        let arm_id = Arm::from_str(arm).map_err(|e| anyhow::anyhow!("{e}"))?;
        let seeds = spec
            .seeds
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
        arms.push(ArmResult { arm: arm_id, seeds });
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
    let steps: Vec<String> = scores
        .iter()
        .filter(|s| s.test == spec.tests[0].name)
        .map(|s| {
            format!(
                "{} seed {}: {} frames per epoch, {} optimiser steps",
                s.arm, s.seed, s.train_frames_per_epoch, s.train_steps
            )
        })
        .collect();
    let experiment = Experiment {
        name: format!("Detector retraining, run {run_id}"),
        run_id: run_id.to_string(),
        created_at: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        arms,
        comparisons,
        pr_curves: Vec::new(),
        examples: Vec::new(),
        notes: std::iter::once(format!(
            "Every arm trains the same detector configuration (a head on the frozen COCO-pretrained YOLOX-nano) for {} epochs of {frames_per_epoch} frames each (equal optimiser steps; smaller training sets are passed over again), seeds {:?}. Test sets are real and never augmented.",
            spec.epochs, spec.seeds
        ))
        .chain(steps)
        .collect(),
        caveats: vec![
            "PR curves and example images are not yet part of this report.".into(),
        ],
    };
    roadsynth_report::write_report(&report_dir, &experiment)?;
    Ok(report_dir)
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
