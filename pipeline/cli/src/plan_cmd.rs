use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use roadsynth_placement::{PlanOptions, plan_dataset};

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Scenario YAML with an `insert_objects` operation.
    #[arg(long)]
    scenario: PathBuf,
    /// Dataset root (its current version is planned).
    #[arg(long)]
    dataset: PathBuf,
    /// Plan table to write (Parquet).
    #[arg(long)]
    output: PathBuf,
    /// Use the drivable-area model for frames without semantic labels (ONNX file; default:
    /// only semantic labels, else the region below the horizon).
    #[arg(long)]
    drivable_model: Option<PathBuf>,
}

pub fn run(args: &PlanArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let scenario = roadsynth_scenario::load(&args.scenario).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut model = match &args.drivable_model {
        Some(path) => Some(
            roadsynth_models::DrivableAreaModel::load(path)
                .with_context(|| format!("loading drivable-area model {}", path.display()))?,
        ),
        None => None,
    };
    let segmenter = model
        .as_mut()
        .map(|m| m as &mut dyn roadsynth_geometry::DrivableSegmenter);
    let (rows, summary) =
        plan_dataset(&args.dataset, &scenario, &PlanOptions::default(), segmenter).with_context(
            || {
                format!(
                    "planning {} over {}",
                    args.scenario.display(),
                    args.dataset.display()
                )
            },
        )?;
    roadsynth_dataset::table::write_table(&args.output, &rows)
        .with_context(|| format!("writing {}", args.output.display()))?;
    let geometry: Vec<String> = summary
        .geometry
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!(
        "planned {} objects over {} frames ({} not placed; geometry: {}; {} masks from cache) into {} in {:.2}s",
        summary.objects,
        summary.frames,
        summary.unplaced,
        geometry.join(", "),
        summary.cached_masks,
        args.output.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
