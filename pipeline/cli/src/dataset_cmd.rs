use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};
use roadsynth_dataset::Dataset;
use roadsynth_formats::export;

#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Frames, annotations per class and quarantined items of a dataset version.
    Stats {
        /// Dataset root (its current version) or a version folder.
        dir: PathBuf,
        /// Print one JSON object: `frames`, `annotations` (class -> count), `quarantined`, and more.
        #[arg(long)]
        json: bool,
    },
    /// Export a dataset version for external trainers.
    Export {
        dir: PathBuf,
        #[arg(long, value_enum)]
        format: ExportFormat,
        #[arg(long)]
        output: PathBuf,
    },
    /// List the quarantined items with their reasons.
    Quarantine { dir: PathBuf },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// `OUTDIR/annotations.json` and `OUTDIR/images/`.
    Coco,
    /// `OUTDIR/images/<split>/`, `OUTDIR/labels/<split>/`, `OUTDIR/data.yaml`.
    Yolo,
}

pub fn run(cmd: &DatasetCommand) -> Result<ExitCode> {
    match cmd {
        DatasetCommand::Stats { dir, json } => stats(dir, *json),
        DatasetCommand::Export {
            dir,
            format,
            output,
        } => {
            let dataset = open(dir)?;
            let summary = match format {
                ExportFormat::Coco => export::to_coco(&dataset, output),
                ExportFormat::Yolo => export::to_yolo(&dataset, output),
            }
            .with_context(|| format!("exporting to {}", output.display()))?;
            println!(
                "exported {} frames, {} annotations to {}",
                summary.frames,
                summary.annotations,
                output.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        DatasetCommand::Quarantine { dir } => {
            for q in open(dir)?.quarantine()? {
                println!("{q}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn open(dir: &Path) -> Result<Dataset> {
    Dataset::open(dir).with_context(|| format!("opening dataset {}", dir.display()))
}

/// Prints a dataset's stats in the human form.
pub fn print_stats(dir: &Path) -> Result<()> {
    stats(dir, false).map(|_| ())
}

fn stats(dir: &Path, json: bool) -> Result<ExitCode> {
    let dataset = open(dir)?;
    let m = dataset.manifest();
    if json {
        let out = serde_json::json!({
            "version": m.version,
            "frames": m.frames(),
            "annotations": m.class_counts(),
            "quarantined": m.quarantined,
            "splits": m.splits,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} version {} (schema {})",
        dir.display(),
        m.version,
        m.schema_version
    );
    for name in m.split_names() {
        let s = &m.splits[&name];
        println!(
            "  {name:<10} {:>7} frames {:>8} annotations",
            s.frames, s.annotations
        );
    }
    println!("  classes:");
    for (class, n) in m.class_counts() {
        println!("    {class:<20} {n:>8}");
    }
    println!("  quarantined: {}", m.quarantined);
    Ok(ExitCode::SUCCESS)
}
