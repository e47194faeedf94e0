use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};
use roadsynth_dataset::{Dataset, shard};
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
        /// Export only this split (repeatable; default: every split). Image ids stay those of the
        /// whole version's export, so predictions on a split's export score against the dataset.
        #[arg(long = "split")]
        splits: Vec<String>,
    },
    /// List the quarantined items with their reasons.
    Quarantine { dir: PathBuf },
    /// Merge the shard outputs of `augment --shard i/N` into one new version of the output,
    /// atomically; refuses an incomplete or inconsistent set, naming what is wrong. The version
    /// is byte-identical to an unsharded run's.
    CommitShards {
        /// The output dataset root the shards were run for.
        #[arg(long)]
        output: PathBuf,
        /// The shards' folder (default: `<output>.shards`).
        #[arg(long)]
        shard_dir: Option<PathBuf>,
        /// How many shards the run has (default: what the shards say, which must agree).
        #[arg(long)]
        shards: Option<u32>,
        /// Keep the shard outputs after the commit (default: removed).
        #[arg(long)]
        keep_shards: bool,
    },
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
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
            splits,
        } => {
            let splits = (!splits.is_empty()).then_some(splits.as_slice());
            let summary = export_dataset(dir, *format, output, splits)?;
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
        DatasetCommand::CommitShards {
            output,
            shard_dir,
            shards,
            keep_shards,
        } => commit_shards(output, shard_dir.as_deref(), *shards, *keep_shards),
    }
}

fn commit_shards(
    output: &Path,
    shard_dir: Option<&Path>,
    shards: Option<u32>,
    keep: bool,
) -> Result<ExitCode> {
    let dir = shard_dir.map_or_else(|| shard::default_shards_dir(output), Path::to_path_buf);
    let committed = shard::commit_shards(&dir, output, shards)?;
    let m = &committed.manifest;
    let counts: Vec<String> = committed
        .summary
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!(
        "committed {} shards of {} into {}: version {} ({} frames, {} quarantined; {})",
        committed.shards.len(),
        committed
            .shards
            .first()
            .map_or_else(String::new, |s| s.run.input.clone()),
        output.display(),
        m.version,
        m.frames(),
        m.quarantined,
        counts.join(", ")
    );
    if !keep {
        // The version holds everything the shards did; unfinished attempts go with them. Only
        // shard entries are removed (the folder may be one the user named and holds more), then
        // the folder if that left it empty.
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if ["shard-", ".tmp-shard-", ".old-shard-"]
                .iter()
                .any(|p| name.starts_with(p))
            {
                std::fs::remove_dir_all(entry.path())
                    .with_context(|| format!("removing {}", entry.path().display()))?;
            }
        }
        let _ = std::fs::remove_dir(&dir);
    }
    Ok(if m.quarantined > 0 {
        ExitCode::from(crate::ingest_cmd::EXIT_QUARANTINED)
    } else {
        ExitCode::SUCCESS
    })
}

/// `roadsynth dataset export`: the dataset at `dir` (its current version) in `format` into
/// `output`, only `splits` when given.
pub fn export_dataset(
    dir: &Path,
    format: ExportFormat,
    output: &Path,
    splits: Option<&[String]>,
) -> Result<export::ExportSummary> {
    let dataset = open(dir)?;
    match format {
        ExportFormat::Coco => export::to_coco_splits(&dataset, output, splits),
        ExportFormat::Yolo => export::to_yolo_splits(&dataset, output, splits),
    }
    .with_context(|| format!("exporting {} to {}", dir.display(), output.display()))
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
