//! `roadsynth runs list|show`: what past runs did, from their ledgers.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;

use crate::run_cmd::ledgers;

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// One line per run, oldest first: id, status, duration, stages run and skipped.
    List {
        /// The runs folder (`outputs.runs` of the orchestrator file).
        #[arg(long, default_value = "runs")]
        runs: PathBuf,
    },
    /// A run's whole ledger, as JSON.
    Show {
        id: String,
        #[arg(long, default_value = "runs")]
        runs: PathBuf,
    },
}

pub fn run(command: &RunsCommand) -> Result<ExitCode> {
    match command {
        RunsCommand::List { runs } => {
            for l in ledgers(runs)? {
                let count = |status: &str| l.stages.iter().filter(|s| s.status == status).count();
                let seconds = l
                    .finished_at
                    .as_deref()
                    .and_then(|end| {
                        let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
                        Some((parse(end)? - parse(&l.started_at)?).as_seconds_f64())
                    })
                    .map_or_else(|| "-".to_string(), |s| format!("{s:.1}s"));
                println!(
                    "{}  {:<26} {:>8}  {} stages ran, {} skipped{}",
                    l.run_id,
                    l.status,
                    seconds,
                    count("ran"),
                    count("skipped"),
                    // One line per run: the error's first line (`runs show` has all of it).
                    l.error
                        .map(|e| format!("  error: {}", e.lines().next().unwrap_or_default()))
                        .unwrap_or_default()
                );
            }
        }
        RunsCommand::Show { id, runs } => {
            let path = runs.join(id).join("ledger.json");
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("no run {id}: cannot read {}", path.display()))?;
            println!("{text}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
