//! The experiment's external trainer hook (`experiment.external_trainer` in orchestrator.yaml):
//! a user's own detector, trained and run by a command of theirs on each arm's exported training
//! split, with its COCO results scored exactly like the built-in detector's.
//!
//! The command sees files, not roadsynth: the arm's training split exported as COCO or YOLO
//! (`roadsynth dataset export`), and per test set a COCO image-info file (`images` and
//! `categories`, no annotations, so the held-out labels never reach it) beside the test images.
//! It writes COCO detection results whose `image_id`s are that file's, which are those of
//! `roadsynth dataset export --format coco` of the test dataset.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use roadsynth_config::Checker;
use roadsynth_dataset::{Dataset, Projection};
use serde::Deserialize;
use serde_json::json;

use crate::dataset_cmd::ExportFormat;

/// `experiment.external_trainer` as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ExternalTrainer")]
pub(crate) struct ExternalTrainerWire {
    /// Shown in the report (default `external`).
    #[serde(default)]
    name: Option<String>,
    /// Optional: run once per arm and seed before the test sets (trains into `{workdir}`).
    #[serde(default)]
    train: Option<CommandWire>,
    /// Run once per arm, seed and test set: writes COCO results for `{test_images}` to
    /// `{predictions}`.
    #[serde(default)]
    command: Option<CommandWire>,
    /// How the arm's training split is exported to `{train_dir}`: `coco` (default) or `yolo`.
    #[serde(default)]
    format: Option<ExportFormat>,
}

/// A shell command line (run with `sh -c`, placeholders substituted shell-quoted) or an argv list
/// (run directly, placeholders substituted as they are).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "Command")]
pub(crate) enum CommandWire {
    Shell(String),
    Argv(Vec<String>),
}

/// A resolved command of the hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrainerCommand {
    Shell(String),
    Argv(Vec<String>),
}

/// The resolved hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalTrainer {
    pub name: String,
    pub train: Option<TrainerCommand>,
    pub command: TrainerCommand,
    pub format: ExportFormat,
    /// Where the commands run: the orchestrator file's folder, so a repository-relative script
    /// path works.
    pub cwd: PathBuf,
    /// BLAKE3 of the files the commands name (their scripts): the experiment's stage key hashes
    /// the resolved settings, so an edited script re-runs the experiment like an edited setting.
    pub files_hash: String,
}

/// Placeholders every command may use.
pub const PLACEHOLDERS: [&str; 8] = [
    "arm",
    "seed",
    "epochs",
    "classes",
    "train_dir",
    "train_format",
    "train_split",
    "workdir",
];
/// Placeholders only the per-test-set `command` may use.
pub const TEST_PLACEHOLDERS: [&str; 4] = ["test_name", "test_images", "test_dir", "predictions"];

/// The `{name}`s of a text: lower-case names only, so that a shell's `${HOME}` stays literal;
/// `{{` and `}}` are literal braces.
fn placeholders(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        if let Some(escaped) = after.strip_prefix('{') {
            rest = escaped;
            continue;
        }
        match after.find('}') {
            Some(close)
                if close > 0
                    && after[..close]
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c == '_') =>
            {
                out.push(&after[..close]);
                rest = &after[close + 1..];
            }
            _ => rest = after,
        }
    }
    out
}

/// `text` with each known `{name}` replaced by `quote(value)`, `{{`/`}}` by single braces.
fn substitute(text: &str, values: &BTreeMap<&str, String>, quote: fn(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if text[i + 1..].starts_with('{') => {
                chars.next();
                out.push('{');
            }
            '}' if text[i + 1..].starts_with('}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let after = &text[i + 1..];
                let name = after.find('}').map(|close| &after[..close]);
                if let Some(value) = name.and_then(|n| values.get(n)) {
                    out.push_str(&quote(value));
                    // Skip the name and its closing brace.
                    for _ in 0..=name.map_or(0, |n| n.chars().count()) {
                        chars.next();
                    }
                } else {
                    out.push('{');
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// POSIX shell single quoting: any value, spaces and quotes included, is one word.
fn shell_quote(value: &str) -> String {
    if !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c))
    {
        return value.to_string();
    }
    format!("'{}'", value.replace('\'', r"'\''"))
}

impl TrainerCommand {
    fn texts(&self) -> Vec<&str> {
        match self {
            TrainerCommand::Shell(s) => vec![s.as_str()],
            TrainerCommand::Argv(v) => v.iter().map(String::as_str).collect(),
        }
    }

    /// Whether the command uses `{name}`.
    pub fn uses(&self, name: &str) -> bool {
        self.texts().iter().any(|t| placeholders(t).contains(&name))
    }

    /// The command as written, placeholders unsubstituted (for the report).
    pub fn template(&self) -> String {
        match self {
            TrainerCommand::Shell(s) => s.clone(),
            TrainerCommand::Argv(v) => v
                .iter()
                .map(|a| {
                    if a.contains(char::is_whitespace) {
                        format!("'{a}'")
                    } else {
                        a.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    /// The command as the log and errors show it, placeholders substituted.
    pub fn display(&self, values: &BTreeMap<&str, String>) -> String {
        match self {
            TrainerCommand::Shell(s) => substitute(s, values, shell_quote),
            TrainerCommand::Argv(v) => v
                .iter()
                .map(|a| shell_quote(&substitute(a, values, str::to_string)))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    fn command(&self, values: &BTreeMap<&str, String>) -> Command {
        match self {
            TrainerCommand::Shell(s) => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(substitute(s, values, shell_quote));
                c
            }
            TrainerCommand::Argv(v) => {
                let mut args = v.iter().map(|a| substitute(a, values, str::to_string));
                // Resolution refused an empty list.
                let mut c = Command::new(args.next().unwrap_or_default());
                c.args(args);
                c
            }
        }
    }
}

impl ExternalTrainerWire {
    /// Checks the hook (every error at its place) and resolves it; `base` is the file's folder.
    pub(crate) fn resolve(&self, base: &Path, check: &mut Checker<'_>) -> Option<ExternalTrainer> {
        let at = |f: &str| format!("experiment.external_trainer.{f}");
        let name = self.name.clone().unwrap_or_else(|| "external".into());
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        check.check(valid, &at("name"), || {
            format!("name {name:?} must be letters, digits, `-`, `_` or `.`")
        });
        let resolve = |field: &str,
                       wire: &CommandWire,
                       allowed: &[&str],
                       check: &mut Checker<'_>|
         -> Option<TrainerCommand> {
            let command = match wire {
                CommandWire::Shell(s) => TrainerCommand::Shell(s.clone()),
                CommandWire::Argv(v) => TrainerCommand::Argv(v.clone()),
            };
            let empty = command.texts().first().is_none_or(|t| t.trim().is_empty());
            check.check(!empty, &at(field), || "the command is empty".into());
            let unknown: Vec<&str> = command
                .texts()
                .iter()
                .flat_map(|t| placeholders(t))
                .filter(|p| !allowed.contains(p))
                .collect();
            check.check(unknown.is_empty(), &at(field), || {
                format!(
                    "unknown placeholder(s) {}; this command may use {}",
                    unknown
                        .iter()
                        .map(|p| format!("{{{p}}}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                    allowed
                        .iter()
                        .map(|p| format!("{{{p}}}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            });
            (!empty && unknown.is_empty()).then_some(command)
        };
        let all: Vec<&str> = PLACEHOLDERS
            .iter()
            .chain(&TEST_PLACEHOLDERS)
            .copied()
            .collect();
        let train = self
            .train
            .as_ref()
            .map(|w| resolve("train", w, &PLACEHOLDERS, check));
        let command = if let Some(w) = &self.command {
            resolve("command", w, &all, check)
        } else {
            check.error(
                &at("command"),
                "`command` is needed: it writes COCO results for {test_images} to {predictions}",
            );
            None
        };
        // Both checked before giving up, so every error is reported in one pass.
        let (train, Some(command)) = (train, command) else {
            return None;
        };
        let train = match train {
            None => None,
            Some(Some(t)) => Some(t),
            Some(None) => return None,
        };
        let cwd = base.to_path_buf();
        let mut hasher = blake3::Hasher::new();
        for text in train
            .iter()
            .chain([&command])
            .flat_map(TrainerCommand::texts)
        {
            for word in text.split_whitespace() {
                let path = cwd.join(word.trim_matches(['\'', '"']));
                if !placeholders(word).is_empty() || !path.is_file() {
                    continue;
                }
                if let Ok(bytes) = std::fs::read(&path) {
                    hasher.update(word.as_bytes());
                    hasher.update(&bytes);
                }
            }
        }
        Some(ExternalTrainer {
            name,
            train,
            command,
            format: self.format.unwrap_or(ExportFormat::Coco),
            cwd,
            files_hash: hasher.finalize().to_hex()[..16].to_string(),
        })
    }
}

impl ExternalTrainer {
    /// Whether a command takes `{seed}`: without it every seed would run the same thing, so the
    /// experiment runs it once per arm.
    pub fn uses_seed(&self) -> bool {
        self.command.uses("seed") || self.train.as_ref().is_some_and(|t| t.uses("seed"))
    }

    pub fn format_name(&self) -> &'static str {
        match self.format {
            ExportFormat::Coco => "COCO",
            ExportFormat::Yolo => "YOLO",
        }
    }
}

/// Runs one command of the hook in `cwd` with its output (stdout and stderr) going to `log`;
/// a failure names the command, its exit status and the log, and quotes the log's end.
pub fn run_logged(
    what: &str,
    command: &TrainerCommand,
    values: &BTreeMap<&str, String>,
    cwd: &Path,
    log: &Path,
) -> Result<()> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let shown = command.display(values);
    let mut file =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    {
        use std::io::Write as _;
        writeln!(file, "$ {shown}\n").with_context(|| format!("writing {}", log.display()))?;
    }
    let err_file = file
        .try_clone()
        .with_context(|| format!("opening {}", log.display()))?;
    let started = std::time::Instant::now();
    tracing::info!(command = %shown, log = %log.display(), "{what}");
    let status = command
        .command(values)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err_file)
        .status()
        .with_context(|| format!("{what}: cannot start `{shown}` (in {})", cwd.display()))?;
    tracing::info!(seconds = started.elapsed().as_secs_f64(), %status, "{what} finished");
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let mut tail = String::new();
        for line in &lines[lines.len().saturating_sub(15)..] {
            let _ = writeln!(tail, "  | {line}");
        }
        bail!(
            "{what}: `{shown}` failed ({status}); its output is in {}; it ends:\n{tail}",
            log.display()
        );
    }
    Ok(())
}

/// Writes the images of one test split and its COCO image-info file (`images.json`: `images` with
/// the ids `roadsynth dataset export --format coco` of the whole dataset gives them, `categories`,
/// no annotations) into `dir`, which must not exist yet; returns the file's path.
pub fn write_test_images(dataset_root: &Path, split: &str, dir: &Path) -> Result<PathBuf> {
    let dataset = Dataset::open(dataset_root)
        .with_context(|| format!("opening {}", dataset_root.display()))?;
    let manifest = dataset.manifest();
    let first_id = first_image_id(&dataset, split)?;
    let staging = dir.with_extension("tmp");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("removing {}", staging.display()))?;
    }
    std::fs::create_dir_all(staging.join("images"))
        .with_context(|| format!("creating {}", staging.display()))?;
    let mut images = Vec::new();
    let reader = dataset
        .frames(split, Projection::Full)
        .with_context(|| format!("reading split {split} of {}", dataset_root.display()))?;
    for (id, record) in (first_id..).zip(reader) {
        let record = record.with_context(|| format!("reading {}", dataset_root.display()))?;
        let frame = &record.frame;
        let bytes = record
            .image
            .as_deref()
            .with_context(|| format!("frame {} has no image bytes", frame.id))?;
        // Named by id: unique whatever the source names were.
        let file_name = format!("images/{id:06}.{}", frame.image_format.extension());
        std::fs::write(staging.join(&file_name), bytes)
            .with_context(|| format!("writing {}", staging.join(&file_name).display()))?;
        images.push(json!({
            "id": id,
            "file_name": file_name,
            "width": frame.width,
            "height": frame.height,
            "frame_id": frame.id.as_str(),
            "source_image": frame.image_name,
        }));
    }
    let categories: Vec<_> = manifest
        .classes
        .iter()
        .zip(1_u64..)
        .map(|(name, id)| json!({"id": id, "name": name}))
        .collect();
    let info = json!({
        "info": {"description": format!("roadsynth test images: {} split {split}, no annotations", dataset_root.display())},
        "images": images,
        "categories": categories,
    });
    let file = staging.join("images.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&info)?)
        .with_context(|| format!("writing {}", file.display()))?;
    std::fs::rename(&staging, dir)
        .with_context(|| format!("renaming {} to {}", staging.display(), dir.display()))?;
    Ok(dir.join("images.json"))
}

/// The COCO export's image id of the first frame of `split`: the splits before it in
/// `split_names` order are numbered first.
pub fn first_image_id(dataset: &Dataset, split: &str) -> Result<u64> {
    let manifest = dataset.manifest();
    anyhow::ensure!(
        manifest.splits.contains_key(split),
        "dataset {} has no split {split:?}",
        dataset.version_dir().display()
    );
    Ok(manifest.first_export_id(split).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_lower_case_names_and_braces_escape() {
        assert_eq!(
            placeholders("x {train_dir} ${HOME} {{seed}} {a-b} {seed}"),
            ["train_dir", "seed"]
        );
        let values: BTreeMap<&str, String> = [
            ("train_dir", "/tmp/my dir".to_string()),
            ("seed", "3".to_string()),
        ]
        .into();
        assert_eq!(
            substitute(
                "run {train_dir} --seed {seed} {{seed}} ${HOME} {other}",
                &values,
                shell_quote
            ),
            "run '/tmp/my dir' --seed 3 {seed} ${HOME} {other}"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        let argv = TrainerCommand::Argv(vec!["echo".into(), "{train_dir}/x".into()]);
        assert_eq!(argv.display(&values), "echo '/tmp/my dir/x'");
        assert!(!argv.uses("seed"));
        assert!(TrainerCommand::Shell("t --seed={seed}".into()).uses("seed"));
    }
}
