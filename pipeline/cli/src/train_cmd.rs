//! `roadsynth train` and `roadsynth predict`: the built-in detector (`roadsynth-detector`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use roadsynth_detector::{TrainConfig, TrainOptions};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Dataset root to train on.
    #[arg(long)]
    pub dataset: PathBuf,
    /// Split to train on.
    #[arg(long, default_value = "train")]
    pub split: String,
    /// Model folder to create (weights, checkpoints, config.json, summary.json).
    #[arg(long)]
    pub output: PathBuf,
    /// Training configuration (JSON, the `config.json` a model folder holds); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub epochs: Option<u32>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// The frozen YOLOX backbone (ONNX); default: the shared YOLOX-nano.
    #[arg(long)]
    pub backbone: Option<PathBuf>,
    /// Continue from the newest checkpoint in `--output` (same configuration).
    #[arg(long)]
    pub resume: bool,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Model folder written by `roadsynth train`.
    #[arg(long)]
    pub model: PathBuf,
    /// Dataset root to predict on.
    #[arg(long)]
    pub dataset: PathBuf,
    /// Splits to predict (comma-separated); default: every split.
    #[arg(long, value_delimiter = ',')]
    pub split: Vec<String>,
    /// COCO results JSON to write (image and category ids as in `dataset export --format coco`).
    #[arg(long)]
    pub output: PathBuf,
}

pub fn train(args: &TrainArgs) -> Result<ExitCode> {
    let mut config = match &args.config {
        Some(path) => TrainConfig::read(path)?,
        None => TrainConfig::default(),
    };
    if let Some(e) = args.epochs {
        config.epochs = e;
    }
    if let Some(s) = args.seed {
        config.seed = s;
    }
    if let Some(b) = &args.backbone {
        config.backbone.path.clone_from(b);
        config.backbone.sha256 = None;
    }
    let summary = roadsynth_detector::train_with(
        &args.dataset,
        &args.split,
        &config,
        &args.output,
        TrainOptions {
            resume: args.resume,
            ..TrainOptions::default()
        },
        |epoch| println!("{}", serde_json::to_string(epoch).unwrap_or_default()),
    )
    .with_context(|| format!("training on {}", args.dataset.display()))?;
    println!(
        "trained {} epochs ({} steps, {} frames per epoch) on {} split {} into {}",
        summary.epochs.len(),
        summary.steps,
        summary.frames_per_epoch,
        args.dataset.display(),
        args.split,
        summary.model_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn predict(args: &PredictArgs) -> Result<ExitCode> {
    let splits = (!args.split.is_empty()).then_some(args.split.as_slice());
    let summary =
        roadsynth_detector::predict_dataset(&args.model, &args.dataset, splits, &args.output)
            .with_context(|| format!("predicting on {}", args.dataset.display()))?;
    println!(
        "predicted {} detections on {} frames into {}{}",
        summary.detections,
        summary.frames,
        args.output.display(),
        if summary.unmatched.is_empty() {
            String::new()
        } else {
            format!(
                " (left out, no such category in the dataset: {:?})",
                summary.unmatched
            )
        }
    );
    Ok(ExitCode::SUCCESS)
}
