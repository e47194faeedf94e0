//! The roadsynth command line: ingest, datasets, scenarios, runs on a schedule, augmentation, training, evaluation and reports.

mod eval_cmd;
mod plan_cmd;
mod preview_cmd;
mod scenario_cmd;
mod train_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use roadsynth_cli::{assets_cmd, augment, dataset_cmd, ingest_cmd, runs_cmd};

#[derive(Debug, Parser)]
#[command(
    name = "roadsynth",
    version,
    about = "Make automotive perception data better: ingest, augment, retrain, report."
)]
struct Cli {
    /// Log filter (`tracing` `EnvFilter` syntax); `RUST_LOG` overrides it.
    #[arg(long, global = true, default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ingest real frames and labels into a versioned Parquet dataset.
    Ingest(ingest_cmd::IngestArgs),
    /// Inspect and export datasets.
    #[command(subcommand)]
    Dataset(dataset_cmd::DatasetCommand),
    /// Run the pipeline of an orchestrator file: ingest, asset banks, augmentations (stages
    /// whose inputs did not change are skipped).
    Run(roadsynth_cli::run_cmd::RunArgs),
    /// Check orchestrator files and print their JSON Schema.
    #[command(subcommand)]
    Orchestrator(OrchestratorCommand),
    /// Plan where a scenario inserts objects in a dataset (a Parquet table the engine executes).
    Plan(plan_cmd::PlanArgs),
    /// Validate scenario files and print their JSON Schema.
    #[command(subcommand)]
    Scenario(scenario_cmd::ScenarioCommand),
    /// Build asset banks (RGBA cut-outs) from instance-mask datasets.
    #[command(subcommand)]
    Assets(assets_cmd::AssetsCommand),
    /// Run a scenario over a dataset: plan, render, edit, weather, filter, write a new version.
    Augment(Box<augment::AugmentArgs>),
    /// Run the orchestrator file on its `schedule` (cron), one run at a time, until stopped.
    Schedule {
        #[arg(default_value = "orchestrator.yaml")]
        file: std::path::PathBuf,
        /// Stop after this many runs (tests, one-off catch-ups).
        #[arg(long)]
        max_runs: Option<u32>,
    },
    /// Train the built-in detector (a head on the frozen COCO-pretrained YOLOX-nano).
    Train(train_cmd::TrainArgs),
    /// Predict with a trained detector: a COCO results JSON for a dataset.
    Predict(train_cmd::PredictArgs),
    /// What past runs did, from their ledgers.
    #[command(subcommand)]
    Runs(runs_cmd::RunsCommand),
    /// Score predictions against a dataset: COCO mAP (pycocotools-identical), slices, intervals.
    Eval(eval_cmd::EvalArgs),
}

#[derive(Debug, Subcommand)]
enum OrchestratorCommand {
    /// Check an orchestrator file (every error at once, at its `file:line:col`) without running it.
    Validate {
        #[arg(default_value = "orchestrator.yaml")]
        file: std::path::PathBuf,
    },
    /// Print the JSON Schema of orchestrator files (committed as `orchestrator.schema.json`).
    Schema,
}

fn orchestrator_command(command: &OrchestratorCommand) -> ExitCode {
    match command {
        OrchestratorCommand::Validate { file } => match roadsynth_cli::orchestrator::load(file) {
            Ok(config) => {
                println!(
                    "{}: ok ({} sources, {} asset banks, {} augmentations, experiment: {})",
                    file.display(),
                    config.sources.len(),
                    config.assets.len(),
                    config.augment.len(),
                    if config.experiment.is_some() {
                        "yes"
                    } else {
                        "no"
                    }
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
        OrchestratorCommand::Schema => {
            print!("{}", roadsynth_cli::orchestrator::json_schema_text());
            ExitCode::SUCCESS
        }
    }
}

fn main() -> ExitCode {
    roadsynth_cli::exit_quietly_when_stdout_closes();
    let cli = Cli::parse();
    roadsynth_cli::init_logging(&cli.log);
    roadsynth_cli::name_rayon_threads();

    let result = match cli.command {
        Command::Ingest(args) => ingest_cmd::run(&args, None),
        Command::Dataset(cmd) => dataset_cmd::run(&cmd),
        Command::Scenario(cmd) => Ok(scenario_cmd::run(&cmd)),
        Command::Orchestrator(cmd) => Ok(orchestrator_command(&cmd)),
        Command::Plan(args) => plan_cmd::run(&args),
        // The run renders (augment): the worker runs it, after the file is checked here.
        Command::Run(args) => roadsynth_cli::orchestrator::load(&args.file)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .and_then(|_| roadsynth_cli::run_cmd::RunOptions::from_args(&args))
            .and_then(|_| Err(roadsynth_cli::exec_worker(std::env::args_os().skip(1)))),
        Command::Assets(cmd) => assets_cmd::run(&cmd),
        Command::Eval(args) => eval_cmd::run(&args),
        Command::Runs(cmd) => runs_cmd::run(&cmd),
        Command::Train(args) => train_cmd::train(&args),
        Command::Predict(args) => train_cmd::predict(&args),
        Command::Schedule { file, .. } => roadsynth_cli::orchestrator::load(&file)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .and_then(|_| Err(roadsynth_cli::exec_worker(std::env::args_os().skip(1)))),
        // Rendering needs OpenCV, which only the worker links: hand the command line over.
        Command::Augment(_) => Err(roadsynth_cli::exec_worker(std::env::args_os().skip(1))),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // Our error types already name their cause in their message; print each new part once.
            let mut message = e.to_string();
            for cause in e.chain().skip(1).map(ToString::to_string) {
                if !message.contains(&cause) {
                    message = format!("{message}: {cause}");
                }
            }
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
