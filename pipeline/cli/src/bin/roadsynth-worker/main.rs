//! The worker of `roadsynth`: the only binary that links OpenCV. It runs the commands that need it
//! (video ingest, rendering) with the same arguments as `roadsynth`, which hands
//! those command lines to it.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use roadsynth_cli::augment;
use roadsynth_cli::ingest_cmd::{self, IngestArgs};
use roadsynth_cli::orchestrator::{AugmentSpec, Orchestrator};
use roadsynth_cli::{run_cmd, schedule};
use roadsynth_stages::{AugmentConfig, RendererKind};
use roadsynth_types::{FrameRecord, Quarantined};
use roadsynth_video::{VideoOptions, ingest_video};

#[derive(Debug, Parser)]
#[command(
    name = "roadsynth-worker",
    about = "The roadsynth commands that need OpenCV: video ingest, rendering."
)]
struct Cli {
    #[arg(long, global = true, default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Ingest(IngestArgs),
    Augment(augment::AugmentArgs),
    Run {
        #[arg(default_value = "orchestrator.yaml")]
        file: std::path::PathBuf,
    },
    Schedule {
        #[arg(default_value = "orchestrator.yaml")]
        file: std::path::PathBuf,
        #[arg(long)]
        max_runs: Option<u32>,
    },
}

fn decode(
    clip: &std::path::Path,
    split: &str,
    every: u32,
    sink: &mut dyn FnMut(Result<FrameRecord, Quarantined>) -> Result<()>,
) -> Result<()> {
    let options = VideoOptions {
        split: split.to_string(),
        every,
    };
    ingest_video::<anyhow::Error>(clip, &options, sink).map(|_| ())
}

/// One augmentation of an orchestrator file, as `roadsynth augment` would run it.
fn orchestrated_augment(spec: &AugmentSpec, config: &Orchestrator) -> Result<bool> {
    let path =
        |m: &Option<roadsynth_cli::orchestrator::PinnedModel>| m.as_ref().map(|m| m.path.clone());
    let args = augment::AugmentArgs {
        scenario: spec.scenario.clone(),
        dataset: config.datasets_root.join(&spec.dataset),
        output: config.datasets_root.join(&spec.name),
        seed: None,
        assets: spec.assets.as_ref().map(|a| config.assets_root.join(a)),
        renderer: spec.renderer.clone(),
        diffusion_model: None,
        detector: if spec.filter {
            path(&config.models.detector)
        } else {
            None
        },
        filter_threshold: 0.25,
        vehicle_model: path(&config.models.vehicle_segmenter),
        drivable_model: path(&config.models.drivable_area),
        max_frames: spec.max_frames,
        generated_only: false,
    };
    Ok(augment(&args)? == ExitCode::from(ingest_cmd::EXIT_QUARANTINED))
}

fn run(file: &std::path::Path) -> Result<ExitCode> {
    let config = roadsynth_cli::orchestrator::load(file).map_err(|e| anyhow::anyhow!("{e}"))?;
    run_cmd::run(&config, &orchestrated_augment)
}

fn augment(args: &augment::AugmentArgs) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let mut scenario =
        roadsynth_scenario::load(&args.scenario).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(seed) = args.seed {
        scenario.seed = seed;
    }
    let config = AugmentConfig {
        dataset: args.dataset.clone(),
        output: args.output.clone(),
        assets: args.assets.clone(),
        renderer: RendererKind::parse(&args.renderer)
            .ok_or_else(|| anyhow::anyhow!("unknown renderer {}", args.renderer))?,
        diffusion_model: args.diffusion_model.clone(),
        detector: args.detector.clone(),
        filter_threshold: args.filter_threshold,
        vehicle_model: args.vehicle_model.clone(),
        drivable_model: args.drivable_model.clone(),
        max_frames: args.max_frames,
        generated_only: args.generated_only,
        ..AugmentConfig::default()
    };
    let s = roadsynth_stages::augment(&config, &scenario)?;
    println!(
        "augmented {} frames of {} with {}: {} variants written ({} unchanged, dropped); insertions: {} planned, {} kept, {} filtered out, {} not rendered; {} vehicles edited; {} weather effects; {} real frames kept; version {} in {:.1}s",
        s.frames_read,
        args.dataset.display(),
        scenario.name,
        s.variants_written,
        s.variants_unchanged,
        s.insertions_planned,
        s.insertions_rendered,
        s.insertions_filtered_out,
        s.insertions_not_rendered,
        s.vehicles_edited,
        s.weather_applied,
        s.real_frames_written,
        s.version,
        started.elapsed().as_secs_f64()
    );
    Ok(if s.quarantined > 0 {
        ExitCode::from(ingest_cmd::EXIT_QUARANTINED)
    } else {
        ExitCode::SUCCESS
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    roadsynth_cli::init_logging(&cli.log);
    let result = match cli.command {
        Command::Ingest(args) => ingest_cmd::run(&args, Some(&decode)),
        Command::Augment(args) => augment(&args),
        Command::Run { file } => run(&file),
        Command::Schedule { file, max_runs } => {
            schedule::run(&file, max_runs, &orchestrated_augment)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
