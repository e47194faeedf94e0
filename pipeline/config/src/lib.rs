//! YAML configuration loading: wire structs parsed strictly, every error reported at once with its file, line and column.
//!
//! Users write scenario and orchestrator files all day, so one run must tell them everything that
//! is wrong, each at its place. serde stops at its first error; this crate keeps going: it parses the
//! YAML into a value tree, deserialises the wire struct from it, and on each error records it at the
//! offending node's `file:line:col`, removes the node and tries again (a removed optional field
//! falls back to its default). Semantic checks then add their errors through a [`Checker`], located
//! by field path with the same span index.

mod spans;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
pub use spans::{PathSeg, SpanIndex, parse_path};

/// One problem in a configuration file, at its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Every problem found in one or more files, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A parsed file: its path, text and where each node sits.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub spans: SpanIndex,
}

impl Source {
    /// An error at a field path (`weather.visibility_m`, `classes[2].height_m`): at the value when it
    /// exists, else at the nearest ancestor that does.
    pub fn error_at(&self, field_path: &str, message: impl Into<String>) -> ConfigError {
        let (line, column) = self.spans.locate_value(&parse_path(field_path));
        ConfigError {
            file: self.path.clone(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// A deserialised wire struct with its source.
#[derive(Debug, Clone)]
pub struct Loaded<T> {
    pub value: T,
    pub source: Source,
}

/// Reads and parses `path` into `T`, reporting every structural error at once.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<Loaded<T>, ConfigErrors> {
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

/// How many errors one file may report before the rest are dropped (a file that is not the
/// expected kind of YAML at all would otherwise list every node).
const MAX_ERRORS: usize = 50;

/// Parses `text` (read from `path`) into `T`, reporting every structural error at once.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<Loaded<T>, ConfigErrors> {
    let partial = parse_partial::<T>(path, text);
    match (partial.value, partial.source) {
        (Some(value), Some(source)) if partial.errors.is_empty() => Ok(Loaded { value, source }),
        _ => Err(ConfigErrors(partial.errors)),
    }
}

/// What could be parsed of a file with structural errors: the errors, and the value that remains
/// once every faulty node is removed (when that deserialises), so semantic checks can still run
/// and report in the same pass. Checks should skip the `removed` paths: they are reported already.
#[derive(Debug, Clone)]
pub struct Partial<T> {
    pub value: Option<T>,
    /// `None` only for a YAML syntax error.
    pub source: Option<Source>,
    pub errors: Vec<ConfigError>,
    pub removed: Vec<Vec<PathSeg>>,
}

/// Like [`parse`], but keeps what remains after removing the faulty nodes.
pub fn parse_partial<T: DeserializeOwned>(path: &Path, text: &str) -> Partial<T> {
    let at = |line: usize, column: usize, message: String| ConfigError {
        file: path.to_path_buf(),
        line,
        column,
        message,
    };
    let failed = |errors: Vec<ConfigError>| Partial {
        value: None,
        source: None,
        errors,
        removed: Vec::new(),
    };
    let mut tree: serde_norway::Value = match serde_norway::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
            return failed(vec![at(line, column, format!("invalid YAML: {e}"))]);
        }
    };
    let spans = match SpanIndex::build(text) {
        Ok(spans) => spans,
        Err((line, column, m)) => return failed(vec![at(line, column, m)]),
    };
    let source = Source {
        path: path.to_path_buf(),
        spans,
    };

    let mut errors = Vec::new();
    let mut removed: Vec<Vec<PathSeg>> = Vec::new();
    loop {
        match serde_path_to_error::deserialize::<_, T>(tree.clone()) {
            Ok(value) => {
                return Partial {
                    value: Some(value),
                    source: Some(source),
                    errors,
                    removed,
                };
            }
            Err(e) => {
                let segs = parse_path(&e.path().to_string());
                let message = strip_location(&e.into_inner().to_string());
                // A required field we removed ourselves: already reported, and no way on.
                let consequence = message.starts_with("missing field")
                    && removed.iter().any(|r| r.starts_with(&segs));
                if !consequence {
                    let (line, column) = if message.starts_with("unknown field") {
                        source.spans.locate_key(&segs)
                    } else {
                        source.spans.locate_value(&segs)
                    };
                    errors.push(at(line, column, message));
                }
                if consequence
                    || errors.len() >= MAX_ERRORS
                    || removed.contains(&segs)
                    || !remove_node(&mut tree, &segs)
                {
                    return Partial {
                        value: None,
                        source: Some(source),
                        errors,
                        removed,
                    };
                }
                removed.push(segs);
            }
        }
    }
}

/// `serde_norway` appends " at line L column C" for errors with a position in the original text;
/// from a value tree there is none, but strip it in case.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

fn remove_node(tree: &mut serde_norway::Value, path: &[PathSeg]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = tree;
    for seg in parents {
        node = match (seg, node) {
            (PathSeg::Key(k), serde_norway::Value::Mapping(m)) => match m.get_mut(k.as_str()) {
                Some(n) => n,
                None => return false,
            },
            (PathSeg::Index(i), serde_norway::Value::Sequence(s)) => match s.get_mut(*i) {
                Some(n) => n,
                None => return false,
            },
            (_, serde_norway::Value::Tagged(t)) => &mut t.value,
            _ => return false,
        };
    }
    match (last, node) {
        (PathSeg::Key(k), serde_norway::Value::Mapping(m)) => m.remove(k.as_str()).is_some(),
        (PathSeg::Index(i), serde_norway::Value::Sequence(s)) if *i < s.len() => {
            // Replace rather than shift, so later indices keep matching the text.
            s[*i] = serde_norway::Value::Null;
            true
        }
        _ => false,
    }
}

/// Collects semantic errors of a loaded file, then reports them together.
#[derive(Debug)]
pub struct Checker<'a> {
    source: &'a Source,
    errors: Vec<ConfigError>,
    removed: &'a [Vec<PathSeg>],
}

impl<'a> Checker<'a> {
    pub fn new(source: &'a Source) -> Self {
        Self {
            source,
            errors: Vec::new(),
            removed: &[],
        }
    }

    /// A checker for a [`Partial`] value: errors at paths whose node was removed (and so is
    /// already reported as a structural error) are skipped.
    pub fn for_partial(source: &'a Source, removed: &'a [Vec<PathSeg>]) -> Self {
        Self {
            source,
            errors: Vec::new(),
            removed,
        }
    }

    /// Records an error at a field path.
    pub fn error(&mut self, field_path: &str, message: impl Into<String>) {
        let path = parse_path(field_path);
        if self.removed.iter().any(|r| path.starts_with(r)) {
            return;
        }
        self.errors.push(self.source.error_at(field_path, message));
    }

    /// Records an error unless `ok`.
    pub fn check(&mut self, ok: bool, field_path: &str, message: impl FnOnce() -> String) {
        if !ok {
            self.error(field_path, message());
        }
    }

    pub fn finish(mut self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            return Ok(());
        }
        self.errors.sort_by_key(|e| (e.line, e.column));
        Err(ConfigErrors(self.errors))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Wire {
        name: String,
        #[serde(default)]
        seed: Option<u64>,
        #[serde(default)]
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Item {
        #[serde(default)]
        distance_m: Option<f64>,
        #[serde(default)]
        class: Option<String>,
    }

    fn errors(text: &str) -> Vec<String> {
        match parse::<Wire>(Path::new("s.yaml"), text) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn every_structural_error_is_reported_at_its_place() {
        let text =
            "name: x\nseed: -3\nitems:\n  - distance_m: 5\n    colour: red\n  - distance_m: far\n";
        let errs = errors(text);
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(
            errs[0].starts_with("s.yaml:2:7: invalid value: integer `-3`"),
            "{errs:#?}"
        );
        assert!(
            errs[1].starts_with("s.yaml:5:5: unknown field `colour`"),
            "{errs:#?}"
        );
        assert!(
            errs[2].starts_with("s.yaml:6:17: invalid type: string \"far\""),
            "{errs:#?}"
        );
    }

    #[test]
    fn syntax_errors_carry_the_parser_position() {
        let errs = errors("name: x\nitems: [1, 2\n");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("s.yaml:"), "{errs:?}");
        assert!(errs[0].contains("invalid YAML"), "{errs:?}");
    }

    #[test]
    fn checker_locates_semantic_errors_by_field_path() {
        let text = "name: x\nitems:\n  - distance_m: -5\n  - class: unicorn\n";
        let loaded = parse::<Wire>(Path::new("s.yaml"), text).expect("parses");
        assert_eq!((loaded.value.name.as_str(), loaded.value.seed), ("x", None));
        let mut c = Checker::new(&loaded.source);
        for (i, item) in loaded.value.items.iter().enumerate() {
            if item.distance_m.is_some_and(|d| d < 0.0) {
                c.error(&format!("items[{i}].distance_m"), "must not be negative");
            }
            if item.class.as_deref() == Some("unicorn") {
                c.error(&format!("items[{i}].class"), "unknown class");
            }
        }
        let errs: Vec<String> = c
            .finish()
            .expect_err("two errors")
            .0
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errs,
            [
                "s.yaml:3:17: must not be negative",
                "s.yaml:4:12: unknown class"
            ]
        );
    }
}
