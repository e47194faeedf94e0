//! The worker of `roadsynth`: the only binary that links OpenCV. It runs the commands that need it
//! (video ingest, rendering) with the same arguments as `roadsynth`, which hands
//! those command lines to it.

mod recording;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use roadsynth_cli::augment;
use roadsynth_cli::ingest_cmd::{self, IngestArgs};
use roadsynth_cli::orchestrator::{AugmentSpec, Concurrency, Orchestrator};
use roadsynth_cli::run_recording::StageRecording;
use roadsynth_cli::{run_cmd, schedule};
use roadsynth_stages::{AugmentConfig, BlendMode, FlowOptions, RendererKind, VariantObserver};
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
    Augment(Box<augment::AugmentArgs>),
    Run(run_cmd::RunArgs),
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

/// The augment flow's options: the orchestrator's where it gives them, the defaults elsewhere.
fn flow_options(c: Concurrency) -> FlowOptions {
    let default = FlowOptions::default();
    let workers = c.workers.unwrap_or(default.workers);
    FlowOptions {
        workers,
        channel_items: c.channel_frames.unwrap_or(4 * workers),
        channel_bytes: c.channel_mib.map_or(default.channel_bytes, |m| m << 20),
    }
}

/// One augmentation of an orchestrator file, as `roadsynth augment` would run it.
fn orchestrated_augment(
    spec: &AugmentSpec,
    config: &Orchestrator,
    recording: Option<StageRecording>,
) -> Result<bool> {
    let args = augment::AugmentArgs::for_spec(spec, config);
    let flow = flow_options(config.concurrency);
    let observer = recording.map(recording::observer);
    Ok(augment(&args, observer, flow)? == ExitCode::from(ingest_cmd::EXIT_QUARANTINED))
}

fn run(args: &run_cmd::RunArgs) -> Result<ExitCode> {
    let config =
        roadsynth_cli::orchestrator::load(&args.file).map_err(|e| anyhow::anyhow!("{e}"))?;
    run_cmd::run(
        &config,
        &orchestrated_augment,
        &run_cmd::RunOptions::from_args(args)?,
    )
}

fn augment(
    args: &augment::AugmentArgs,
    observer: Option<VariantObserver>,
    flow: FlowOptions,
) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let mut scenario =
        roadsynth_scenario::load(&args.scenario).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(seed) = args.seed {
        scenario.seed = seed;
    }
    let renderer = RendererKind::parse(&args.renderer)
        .ok_or_else(|| anyhow::anyhow!("unknown renderer {}", args.renderer))?;
    anyhow::ensure!(
        renderer == RendererKind::Exemplar || args.blend == BlendMode::Auto.as_str(),
        "--blend {} applies to the exemplar renderer only (this is --renderer {})",
        args.blend,
        args.renderer
    );
    let config = AugmentConfig {
        dataset: args.dataset.clone(),
        output: args.output.clone(),
        assets: args.assets.clone(),
        renderer,
        blend: BlendMode::parse(&args.blend)
            .ok_or_else(|| anyhow::anyhow!("unknown blend mode {}", args.blend))?,
        diffusion_model: args.diffusion_model.clone(),
        detector: args.detector.clone(),
        filter_threshold: args.filter_threshold,
        vehicle_model: args.vehicle_model.clone(),
        drivable_model: args.drivable_model.clone(),
        max_frames: args.max_frames,
        generated_only: args.generated_only,
        observer,
        flow,
        ..AugmentConfig::default()
    };
    let config = sharded(config, args);
    let s = roadsynth_stages::augment(&config, &scenario)?;
    if let Some(shard) = args.shard {
        print!("shard {shard}: ");
    }
    println!(
        "augmented {} frames of {} with {}: {} variants written ({} unchanged, dropped); insertions: {} planned, {} kept, {} filtered out, {} not rendered, {} rendered again; {} vehicles edited; {} weather effects; {} real frames kept; version {} in {:.1}s",
        s.frames_read,
        args.dataset.display(),
        scenario.name,
        s.variants_written,
        s.variants_unchanged,
        s.insertions_planned,
        s.insertions_rendered,
        s.insertions_filtered_out,
        s.insertions_not_rendered,
        s.insertions_rendered_again,
        s.vehicles_edited,
        s.weather_applied,
        s.real_frames_written,
        s.version,
        started.elapsed().as_secs_f64()
    );
    if let Some(n) = args.max_frames {
        println!(
            "--max-frames {n}: of the splits {:?}, only the first {n} frames each were augmented and written",
            scenario.splits
        );
    }
    Ok(if s.quarantined > 0 {
        ExitCode::from(ingest_cmd::EXIT_QUARANTINED)
    } else {
        ExitCode::SUCCESS
    })
}

/// `--shard` and `--workers` on top of the stage's settings: a shard reports progress (and
/// honours the test-only kill switch) unless an observer is already set.
fn sharded(mut config: AugmentConfig, args: &augment::AugmentArgs) -> AugmentConfig {
    if let Some(workers) = args.workers {
        let workers = usize::from(workers);
        config.flow = roadsynth_stages::FlowOptions {
            workers,
            channel_items: 4 * workers,
            ..config.flow
        };
    }
    if let Some(id) = args.shard {
        let dir = args
            .shard_dir
            .clone()
            .unwrap_or_else(|| roadsynth_dataset::shard::default_shards_dir(&args.output));
        if config.observer.is_none() {
            let progress = roadsynth_cli::shard_task::ShardProgress::new(id, dir.clone());
            config.observer = Some(VariantObserver::new(move |event| {
                progress.variant_written(event.sequence);
            }));
        }
        config.shard = Some(roadsynth_stages::ShardTarget { id, dir });
    }
    config
}

fn main() -> ExitCode {
    roadsynth_cli::exit_quietly_when_stdout_closes();
    let cli = Cli::parse();
    roadsynth_cli::init_logging(&cli.log);
    roadsynth_cli::name_rayon_threads();
    let result = match cli.command {
        Command::Ingest(args) => ingest_cmd::run(&args, Some(&decode)),
        Command::Augment(args) => augment(&args, None, FlowOptions::default()),
        Command::Run(args) => run(&args),
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
