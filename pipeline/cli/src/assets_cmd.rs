//! `roadsynth assets build`: an asset bank of RGBA cut-outs from a dataset's instance masks.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use roadsynth_assets::{AssetBank, BuildOptions};
use roadsynth_dataset::Dataset;

#[derive(Debug, Subcommand)]
pub enum AssetsCommand {
    /// Cut out every instance mask of the given classes into an asset bank.
    Build(BuildArgs),
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Dataset root with instance masks (COCO polygons or RLE), e.g. an ingest of
    /// coco-animals-vehicles.
    #[arg(long)]
    pub dataset: PathBuf,
    /// Classes to cut out, as the dataset spells them (comma-separated); default: every class.
    #[arg(long, value_delimiter = ',')]
    pub classes: Vec<String>,
    /// Splits to read (comma-separated); default: every split.
    #[arg(long, value_delimiter = ',')]
    pub splits: Vec<String>,
    /// Masks with fewer pixels are skipped (0: keep every instance; the engine itself never
    /// picks a cut-out it would have to enlarge too much).
    #[arg(long, default_value_t = 0)]
    pub min_area_px: u64,
    /// Output folder (`assets.parquet`, `bank.json`).
    #[arg(long)]
    pub output: PathBuf,
}

pub fn run(command: &AssetsCommand) -> Result<ExitCode> {
    let AssetsCommand::Build(args) = command;
    build(args)?;
    Ok(ExitCode::SUCCESS)
}

/// Builds and writes the bank; returns it for callers that go on to use it.
pub fn build(args: &BuildArgs) -> Result<AssetBank> {
    let started = Instant::now();
    let dataset = Dataset::open(&args.dataset)
        .with_context(|| format!("opening dataset {}", args.dataset.display()))?;
    let options = BuildOptions {
        classes: args.classes.clone(),
        splits: args.splits.clone(),
        min_area_px: args.min_area_px,
        include_generated: false,
    };
    let (bank, report) = AssetBank::build(&dataset, &options)?;
    // A bank without cut-outs would only fail later, in augment; one without some class asked
    // for is usable, but the user should know (a typo, or a class without instance masks).
    if report.assets() == 0 {
        anyhow::bail!(
            "{}: no cut-out of {:?} (cut-outs need instance masks: COCO polygons or RLE; the \
             dataset's classes are {:?}); nothing written",
            args.dataset.display(),
            args.classes,
            dataset.manifest().classes
        );
    }
    for class in &args.classes {
        if !report.assets_per_class.contains_key(class) {
            tracing::warn!(
                "no cut-out of {class:?} in {} (its classes are {:?})",
                args.dataset.display(),
                dataset.manifest().classes
            );
        }
    }
    bank.write(&args.output)?;
    let classes: Vec<String> = report
        .assets_per_class
        .iter()
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    let skipped: Vec<String> = report
        .skipped_per_reason()
        .iter()
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    println!(
        "built {} assets from {} frames into {} in {:.1}s: {}{}",
        report.assets(),
        report.frames_used,
        args.output.display(),
        started.elapsed().as_secs_f64(),
        classes.join(", "),
        if skipped.is_empty() {
            String::new()
        } else {
            format!("; skipped: {}", skipped.join(", "))
        }
    );
    Ok(bank)
}
