//! File-system helpers shared by the adapters.

use std::io;
use std::path::{Path, PathBuf};

use roadsynth_types::{QuarantineKind, Quarantined};

use crate::FormatError;

/// Reads an adapter's input file; a missing input is fatal.
pub(crate) fn read_input(path: &Path) -> Result<Vec<u8>, FormatError> {
    std::fs::read(path).map_err(|source| io_error(path, source))
}

/// The input directory of an adapter; a missing one is fatal.
pub(crate) fn require_dir(path: &Path) -> Result<(), FormatError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(io_error(
            path,
            io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        )),
        Err(source) => Err(io_error(path, source)),
    }
}

fn io_error(path: &Path, source: io::Error) -> FormatError {
    if source.kind() == io::ErrorKind::NotFound {
        FormatError::NotFound {
            path: path.to_path_buf(),
        }
    } else {
        FormatError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The regular files directly in `dir`, sorted by name.
pub(crate) fn sorted_files(dir: &Path) -> Result<Vec<PathBuf>, FormatError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        if entry
            .file_type()
            .map_err(|e| io_error(&entry.path(), e))?
            .is_file()
        {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// The regular files under `dir` at any depth, sorted by path.
pub(crate) fn walk_files(dir: &Path) -> Result<Vec<PathBuf>, FormatError> {
    let mut files = Vec::new();
    let mut pending_dirs = vec![dir.to_path_buf()];
    while let Some(current) = pending_dirs.pop() {
        for entry in std::fs::read_dir(&current).map_err(|e| io_error(&current, e))? {
            let entry = entry.map_err(|e| io_error(&current, e))?;
            let file_type = entry.file_type().map_err(|e| io_error(&entry.path(), e))?;
            if file_type.is_dir() {
                pending_dirs.push(entry.path());
            } else if file_type.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Whether the file name ends in one of `extensions` (lower case, without dot), ignoring case.
pub(crate) fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Image files the pipeline stores (bytes are kept as they came, so only JPEG and PNG).
pub(crate) const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png"];

/// A quarantine record without a column (label lines, files, entries).
pub(crate) fn quarantine(
    file: &Path,
    line: Option<u32>,
    split: &str,
    kind: QuarantineKind,
    reason: impl Into<String>,
) -> Quarantined {
    Quarantined {
        file: file.display().to_string(),
        line,
        column: None,
        split: split.to_string(),
        kind,
        reason: reason.into(),
    }
}

/// A quarantine record for a JSON or YAML file that does not parse, at the parser's position.
pub(crate) fn syntax_error(
    file: &Path,
    position: Option<(usize, usize)>,
    split: &str,
    reason: impl Into<String>,
) -> Quarantined {
    Quarantined {
        column: position.map(|(_, column)| to_u32(column)),
        ..quarantine(
            file,
            position.map(|(line, _)| to_u32(line)),
            split,
            QuarantineKind::Malformed,
            reason,
        )
    }
}

/// 1-based line number of the `index`-th line (0-based) of a label file.
pub(crate) fn line_number(index: usize) -> u32 {
    to_u32(index + 1)
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// `path` relative to `root` when it lies under it, else the whole path.
pub(crate) fn relative_name(path: &Path, root: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}
