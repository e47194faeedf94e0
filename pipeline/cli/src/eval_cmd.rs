//! `roadsynth eval`: COCO-style scores of a predictions file against a dataset's labels, with
//! slices and bootstrap intervals.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use roadsynth_eval::{Bootstrap, ClassMap, Detections, EvalOptions, GroundTruth, SliceSpec};

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Dataset root whose labels are the ground truth.
    #[arg(long)]
    pub dataset: PathBuf,
    /// COCO results JSON (`roadsynth predict`, or any detector using the image and category ids
    /// of `roadsynth dataset export --format coco`).
    #[arg(long)]
    pub predictions: PathBuf,
    /// Score one split (default: every split, like pycocotools on the whole export).
    #[arg(long)]
    pub split: Option<String>,
    /// Rename or select classes, e.g. `Car=car,Van=car` (unlisted classes are dropped; `,*`
    /// keeps them).
    #[arg(long)]
    pub classes: Option<String>,
    /// Also score per value of an annotation attribute, e.g. `origin` or
    /// `fog_visibility_m:150,300,600` (numeric buckets); repeatable.
    #[arg(long = "slice")]
    pub slices: Vec<String>,
    /// Bootstrap resamples for the 95% intervals (0: none).
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &EvalArgs) -> Result<ExitCode> {
    let class_map = match &args.classes {
        Some(spec) => ClassMap::parse(spec)?,
        None => ClassMap::identity(),
    };
    let gt = GroundTruth::open(&args.dataset, args.split.as_deref(), &class_map)?;
    let detections = Detections::read(&args.predictions)?;
    let slices = args
        .slices
        .iter()
        .map(|s| SliceSpec::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let options = EvalOptions {
        slices,
        kitti_difficulty: None,
        bootstrap: (args.bootstrap > 0).then(|| Bootstrap {
            resamples: args.bootstrap,
            seed: args.seed,
            ..Bootstrap::default()
        }),
    };
    let report = roadsynth_eval::evaluate(&gt, &detections, &options)
        .with_context(|| format!("evaluating {}", args.predictions.display()))?;
    let d = &report.detections;
    // Ids follow `dataset export --format coco` of this very version: predictions made on an
    // export of another version (adding a split before this one renumbers it) fall elsewhere,
    // and would score 0 without a word.
    if d.evaluated == 0 && d.other_images > 0 {
        anyhow::bail!(
            "nothing to score: none of the {} predictions in {} is on an image of {} (split {}); \
             image ids are those of `roadsynth dataset export --format coco` of its current version",
            d.other_images + d.unevaluated_class,
            args.predictions.display(),
            args.dataset.display(),
            args.split.as_deref().unwrap_or("all")
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(ExitCode::SUCCESS)
}
