use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum ScenarioCommand {
    /// Check scenario files: every error of every file, each as `file:line:col: message`.
    Validate {
        /// Scenario YAML files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the JSON Schema of scenario files (committed as `scenarios/scenario.schema.json`).
    Schema,
    /// Draw the planned boxes, horizon and depth bands over the first frames, as PNGs and a
    /// Rerun recording (`OUT/preview.rrd`).
    Preview {
        file: PathBuf,
        #[arg(long)]
        dataset: PathBuf,
        #[arg(long, default_value_t = 8)]
        frames: usize,
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(cmd: &ScenarioCommand) -> ExitCode {
    match cmd {
        ScenarioCommand::Validate { files } => validate(files),
        ScenarioCommand::Schema => {
            print!("{}", roadsynth_scenario::json_schema_text());
            ExitCode::SUCCESS
        }
        ScenarioCommand::Preview {
            file,
            dataset,
            frames,
            out,
        } => match crate::preview_cmd::preview(file, dataset, *frames, out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// `ok FILE (N operations)` on stdout for each valid file, every error on stderr; exit 1 when any
/// file is invalid.
fn validate(files: &[PathBuf]) -> ExitCode {
    let mut invalid = 0;
    let mut errors = 0;
    for file in files {
        match roadsynth_scenario::load(file) {
            Ok(scenario) => {
                let n = scenario.operations.len();
                let s = if n == 1 { "" } else { "s" };
                println!("ok {} ({n} operation{s})", file.display());
            }
            Err(e) => {
                invalid += 1;
                errors += e.0.len();
                eprintln!("{e}");
            }
        }
    }
    if invalid == 0 {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "{invalid} of {} file{} invalid ({errors} error{})",
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        if errors == 1 { "" } else { "s" }
    );
    ExitCode::FAILURE
}
