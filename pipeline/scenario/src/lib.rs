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
    let partial = roadsynth_config::parse_partial::<wire::Scenario>(path, text);
    let mut errors = partial.errors;
    // Semantic checks run on whatever parsed, so structural and semantic errors come together.
    if let (Some(value), Some(source)) = (&partial.value, &partial.source) {
        match validate::resolve(value, source, &partial.removed, path) {
            Ok(scenario) if errors.is_empty() => return Ok(scenario),
            Ok(_) => {}
            Err(semantic) => errors.extend(semantic.0),
        }
    }
    errors.sort_by_key(|e| (e.line, e.column));
    errors.dedup();
    Err(ConfigErrors(errors))
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
