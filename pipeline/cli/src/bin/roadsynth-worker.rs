//! The video helper of `roadsynth ingest --format video`: the only binary that links OpenCV.
//! It takes the same arguments as `roadsynth` (the main binary passes its own through).

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use roadsynth_cli::ingest_cmd::{self, IngestArgs};
use roadsynth_types::{FrameRecord, Quarantined};
use roadsynth_video::{VideoOptions, ingest_video};

#[derive(Debug, Parser)]
#[command(
    name = "roadsynth-video",
    about = "Video ingest helper of roadsynth (links OpenCV)."
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    roadsynth_cli::init_logging(&cli.log);
    let Command::Ingest(args) = cli.command;
    match ingest_cmd::run(&args, Some(&decode)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
