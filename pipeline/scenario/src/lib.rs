//! Scenario YAML: strict wire structs with every error located, real-world size priors, typed settings and the JSON Schema.
//!
//! A scenario file names operations (`insert_objects`, `edit_vehicles`, `weather`) with their
//! parameters. [`load`] parses it with `roadsynth-config` (unknown keys and wrong types are
//! reported, each at its place, all in one run), checks every value's meaning (ranges, unknown
//! classes, required fields) and resolves it into [`Scenario`]: defaults filled in, class sizes
//! from the built-in [`priors`] unless the file overrides them. Structural and semantic errors
//! come back together, in line order.
//!
//! [`json_schema`] is generated from the [`wire`] structs; `scenarios/scenario.schema.json` is
//! its committed copy, which editors use for completion and hover docs.

pub mod priors;
pub mod settings;
mod validate;
pub mod wire;

use std::path::Path;

pub use roadsynth_config::{ConfigError, ConfigErrors, Source};
use roadsynth_config::{PathSeg, SpanIndex, parse_path};
pub use settings::*;

/// Reads, checks and resolves the scenario file at `path`. Its name defaults to the file stem.
pub fn load(path: &Path) -> Result<Scenario, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            message: format!("cannot read: {e}"),
        }])
    })?;
    parse(path, &text)
}

/// Checks and resolves scenario `text`, read from `path` (which names it in errors, gives the
/// default name and anchors relative asset paths).
pub fn parse(path: &Path, text: &str) -> Result<Scenario, ConfigErrors> {
    match roadsynth_config::parse::<wire::Scenario>(path, text) {
        Ok(loaded) => validate::resolve(&loaded.value, &loaded.source, &[], path),
        Err(structural) => {
            // Structural errors stop `roadsynth-config` without a value. Salvage what parses
            // (the same removals) so the semantic errors are reported in the same run.
            let mut errors = structural.0;
            if let Some((value, source, removed)) = salvage(path, text)
                && let Err(semantic) = validate::resolve(&value, &source, &removed, path)
            {
                errors.extend(semantic.0);
            }
            errors.sort_by_key(|e| (e.line, e.column));
            errors.dedup();
            Err(ConfigErrors(errors))
        }
    }
}

/// The JSON Schema (draft 07, which every YAML editor plugin reads) of scenario files.
pub fn json_schema() -> serde_json::Value {
    schemars::generate::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<wire::Scenario>()
        .to_value()
}

/// [`json_schema`] as the text of `scenarios/scenario.schema.json` (pretty, newline at the end).
pub fn json_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&json_schema()).unwrap_or_default();
    text.push('\n');
    text
}

/// Upper bound on salvage retries (one per structural error; `roadsynth-config` stops at 50).
const MAX_REMOVALS: usize = 64;

/// The wire value left after removing each node that fails to deserialise, as `roadsynth-config`
/// does, with the removed paths; `None` when even that fails (a syntax error).
fn salvage(path: &Path, text: &str) -> Option<(wire::Scenario, Source, Vec<Vec<PathSeg>>)> {
    let mut tree: serde_norway::Value = serde_norway::from_str(text).ok()?;
    let spans = SpanIndex::build(text).ok()?;
    let mut removed = Vec::new();
    for _ in 0..MAX_REMOVALS {
        match serde_path_to_error::deserialize::<_, wire::Scenario>(tree.clone()) {
            Ok(value) => {
                let source = Source {
                    path: path.to_path_buf(),
                    spans,
                };
                return Some((value, source, removed));
            }
            Err(e) => {
                let segs = parse_path(&e.path().to_string());
                if removed.contains(&segs) || !remove_node(&mut tree, &segs) {
                    return None;
                }
                removed.push(segs);
            }
        }
    }
    None
}

/// Removes the node at `path` (a sequence item becomes null so later indices keep matching the
/// text), exactly as `roadsynth-config` does.
fn remove_node(tree: &mut serde_norway::Value, path: &[PathSeg]) -> bool {
    use serde_norway::Value;
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = tree;
    for seg in parents {
        node = match (seg, node) {
            (PathSeg::Key(k), Value::Mapping(m)) => match m.get_mut(k.as_str()) {
                Some(n) => n,
                None => return false,
            },
            (PathSeg::Index(i), Value::Sequence(s)) => match s.get_mut(*i) {
                Some(n) => n,
                None => return false,
            },
            (_, Value::Tagged(t)) => &mut t.value,
            _ => return false,
        };
    }
    match (last, node) {
        (PathSeg::Key(k), Value::Mapping(m)) => m.remove(k.as_str()).is_some(),
        (PathSeg::Index(i), Value::Sequence(s)) if *i < s.len() => {
            s[*i] = Value::Null;
            true
        }
        _ => false,
    }
}
