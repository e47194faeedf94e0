//! `orchestrator.yaml`: what the main job runs. For now its sources and output root drive the
//! ingest stage; the staged dataflow, schedule and the other stages arrive with issue 6.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use roadsynth_config::{Checker, ConfigError, ConfigErrors};
use serde::Deserialize;

use crate::ingest_cmd::{self, EXIT_QUARANTINED, IngestArgs, InputFormat};

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrchestratorWire {
    #[serde(default)]
    sources: Vec<SourceWire>,
    #[serde(default)]
    outputs: OutputsWire,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceWire {
    /// Dataset the source is ingested into (`<outputs.datasets>/<dataset>`); sources naming the
    /// same dataset add their splits to it in order.
    #[serde(default)]
    dataset: Option<String>,
    #[serde(default)]
    format: Option<InputFormat>,
    /// Path; relative paths resolve against the file's folder; a leading `$ROADSYNTH_SHARED`
    /// is the shared data root (the environment variable, else `../shared` beside the file).
    #[serde(default)]
    input: Option<String>,
    #[serde(default)]
    split: Option<String>,
    #[serde(default)]
    images_root: Option<String>,
    #[serde(default)]
    every: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputsWire {
    #[serde(default)]
    datasets: Option<String>,
}

/// One resolved source.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub dataset: String,
    pub format: InputFormat,
    pub input: PathBuf,
    pub split: String,
    pub images_root: Option<PathBuf>,
    pub every: u32,
}

/// The resolved orchestrator settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Orchestrator {
    pub sources: Vec<Source>,
    pub datasets_root: PathBuf,
}

fn resolve_path(base: &Path, raw: &str) -> PathBuf {
    if let Some(rest) = raw.strip_prefix("$ROADSYNTH_SHARED") {
        let shared = std::env::var_os("ROADSYNTH_SHARED")
            .map_or_else(|| base.join("../shared"), PathBuf::from);
        return shared.join(rest.trim_start_matches('/'));
    }
    base.join(raw)
}

/// Reads, checks (every error at once, `file:line:col`) and resolves an orchestrator file.
pub fn load(path: &Path) -> Result<Orchestrator, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            message: format!("cannot read: {e}"),
        }])
    })?;
    let partial = roadsynth_config::parse_partial::<OrchestratorWire>(path, &text);
    let mut errors = partial.errors;
    // Semantic checks run on whatever parsed, so every error is reported in one pass.
    let (Some(wire), Some(source)) = (partial.value, partial.source) else {
        return Err(ConfigErrors(errors));
    };
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut check = Checker::for_partial(&source, &partial.removed);
    check.check(!wire.sources.is_empty(), "sources", || {
        "at least one source is needed".into()
    });
    let mut sources = Vec::new();
    for (i, s) in wire.sources.iter().enumerate() {
        let at = |field: &str| format!("sources[{i}].{field}");
        check.check(s.dataset.is_some(), &at("dataset"), || {
            "missing `dataset`".into()
        });
        check.check(s.format.is_some(), &at("format"), || {
            "missing `format`".into()
        });
        check.check(s.input.is_some(), &at("input"), || "missing `input`".into());
        if let Some(d) = &s.dataset {
            check.check(
                !d.is_empty()
                    && d.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
                &at("dataset"),
                || format!("dataset name {d:?} must be letters, digits, `-`, `_` or `.`"),
            );
        }
        let input = s.input.as_deref().map(|raw| resolve_path(base, raw));
        if let Some(p) = &input {
            check.check(p.exists(), &at("input"), || {
                format!("{} does not exist", p.display())
            });
        }
        check.check(s.every != Some(0), &at("every"), || {
            "`every` must be at least 1".into()
        });
        if let (Some(dataset), Some(format), Some(input)) = (&s.dataset, s.format, input) {
            sources.push(Source {
                dataset: dataset.clone(),
                format,
                input,
                split: s.split.clone().unwrap_or_else(|| "train".into()),
                images_root: s.images_root.as_deref().map(|r| resolve_path(base, r)),
                every: s.every.unwrap_or(1),
            });
        }
    }
    if let Err(semantic) = check.finish() {
        errors.extend(semantic.0);
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| (e.line, e.column));
        return Err(ConfigErrors(errors));
    }
    let datasets_root = base.join(wire.outputs.datasets.as_deref().unwrap_or("datasets"));
    Ok(Orchestrator {
        sources,
        datasets_root,
    })
}

/// Runs the ingest stage of every source, then prints each dataset's stats. The first source of a
/// dataset starts a fresh version; later ones add their splits to it.
pub fn run_ingest(config: &Orchestrator) -> Result<ExitCode> {
    let mut quarantined = false;
    let mut seen: Vec<&str> = Vec::new();
    for s in &config.sources {
        let first = !seen.contains(&s.dataset.as_str());
        seen.push(&s.dataset);
        let args = IngestArgs {
            format: s.format,
            input: s.input.clone(),
            output: config.datasets_root.join(&s.dataset),
            split: s.split.clone(),
            images_root: s.images_root.clone(),
            every: s.every,
            verify_decode: false,
            replace: first,
        };
        let code = ingest_cmd::run(&args, None)?;
        if code == ExitCode::from(EXIT_QUARANTINED) {
            quarantined = true;
        } else if code != ExitCode::SUCCESS {
            anyhow::bail!("ingest of {} failed", s.input.display());
        }
    }
    Ok(if quarantined {
        ExitCode::from(EXIT_QUARANTINED)
    } else {
        ExitCode::SUCCESS
    })
}
