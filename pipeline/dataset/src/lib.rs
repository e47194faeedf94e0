//! Versioned Parquet datasets: Arrow schema, atomic writer, projecting reader, manifest and quarantine table.
//!
//! A dataset is a folder of immutable versions:
//!
//! ```text
//! DIR/
//!   CURRENT                       name of the newest complete version, replaced atomically
//!   versions/
//!     v0001-1a2b3c4d/
//!       frames/split=train/part-00000.parquet
//!       frames/split=val/part-00000.parquet
//!       quarantine.parquet
//!       manifest.json             written last
//! ```
//!
//! A [`DatasetWriter`] writes a version into a hidden staging folder, writes `manifest.json` last,
//! renames the folder into `versions/` and only then points `CURRENT` at it, so a reader never sees a
//! half-written version and a crash leaves at most a stale staging folder, which the next writer
//! on that machine removes ([`sweep_staging`]).

mod manifest;
mod reader;
pub mod schema;
pub mod shard;
pub mod table;
mod writeback;
mod writer;

use std::path::PathBuf;

pub use manifest::{FileEntry, Manifest, SplitStats};
pub use reader::{Dataset, FrameReader, Projection, StoredFrame, StoredFrames};
pub use writer::{DatasetWriter, WriteOptions};

/// Prefix of the hidden folder a version is written in before it is renamed into place:
/// `.staging-<pid>-<nanos>-<host>`, so that a crashed writer's leftovers can be told from a live
/// one's (see [`staging_writer`]).
pub const STAGING_PREFIX: &str = ".staging-";

/// The process id and host of the writer of a staging folder named `name`, if it is one.
pub fn staging_writer(name: &str) -> Option<(u32, &str)> {
    let rest = name.strip_prefix(STAGING_PREFIX)?;
    let mut parts = rest.splitn(3, '-');
    let pid = parts.next()?.parse().ok()?;
    let _nanos = parts.next()?;
    Some((pid, parts.next()?))
}

/// Removes the staging folders under `root/versions/` written on this machine by a process
/// `owned` selects (a dead one: what a killed writer left behind). Folders of other hosts (a
/// shared filesystem) are never touched: their writers' liveness cannot be checked from here. A
/// folder is first renamed aside, then deleted: if its writer renamed it into place first, the
/// rename fails and the published version stays whole; if ours wins, the writer's publishing
/// rename fails instead.
pub fn sweep_staging(root: &std::path::Path, owned: impl Fn(u32) -> bool) {
    let host = host_name();
    let Ok(versions) = std::fs::read_dir(root.join(VERSIONS_DIR)) else {
        return;
    };
    for entry in versions.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((pid, writer_host)) = staging_writer(name) else {
            continue;
        };
        if writer_host != host || !owned(pid) {
            continue;
        }
        let trash = entry
            .path()
            .with_file_name(format!(".trash{}", &name[STAGING_PREFIX.len() - 1..]));
        if std::fs::rename(entry.path(), &trash).is_ok() {
            tracing::info!("removing unfinished version {}", entry.path().display());
            let _ = std::fs::remove_dir_all(&trash);
        }
    }
}

/// Whether process `pid` is alive on this machine (on Linux, through `/proc`).
pub fn process_alive(pid: u32) -> bool {
    std::path::Path::new("/proc").join(pid.to_string()).exists()
}

/// This machine's name (`/proc/sys/kernel/hostname`), `localhost` when it cannot be read.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Whether `name` can name a split: it becomes a folder (`frames/split=NAME`) and a Hive partition
/// value, so only a plain, portable file name is accepted (no separators, no `..`, no spaces).
pub fn check_split_name(name: &str) -> Result<(), DatasetError> {
    let plain = (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if plain {
        Ok(())
    } else {
        Err(DatasetError::BadSplitName(name.to_owned()))
    }
}

/// Name of the pointer file at a dataset root.
pub const CURRENT_FILE: &str = "CURRENT";
/// Folder of versions under a dataset root.
pub const VERSIONS_DIR: &str = "versions";
pub const MANIFEST_FILE: &str = "manifest.json";
pub const QUARANTINE_FILE: &str = "quarantine.parquet";
/// Lock file at a dataset root, held while a version is made current (see [`DatasetWriter::commit`]).
pub const LOCK_FILE: &str = ".lock";

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{path}: {source}")]
    Arrow {
        path: PathBuf,
        #[source]
        source: arrow_schema::ArrowError,
    },
    #[error("converting rows: {0}")]
    Rows(#[from] serde_arrow::Error),
    #[error("{path}: invalid manifest: {source}")]
    Manifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0}: not a roadsynth dataset (no {CURRENT_FILE} file and no {MANIFEST_FILE})")]
    NotADataset(PathBuf),
    #[error("{path}: written with schema version {found}, this build reads up to {supported}")]
    SchemaTooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("dataset has no split {0:?}")]
    NoSuchSplit(String),
    #[error(
        "split name {0:?} cannot be used: a split is a folder (`frames/split=NAME`), so its name \
         must be 1 to 64 of A-Z a-z 0-9 . _ - and not start with a dot"
    )]
    BadSplitName(String),
    #[error("{0}")]
    ChangedMeanwhile(Box<ChangedMeanwhile>),
    #[error("corrupt dataset: {0}")]
    Corrupt(String),
}

/// A commit that found another writer's version made current since it started (boxed in
/// [`DatasetError`], which every error of the pipeline carries).
#[derive(Debug, thiserror::Error)]
#[error(
    "{}: another process committed version {} while this one was written (it started from {}); \
     nothing of this version was kept: run it again",
    .root.display(),
    .found.as_deref().unwrap_or("none"),
    .started_from.as_deref().unwrap_or("no version")
)]
pub struct ChangedMeanwhile {
    pub root: PathBuf,
    pub started_from: Option<String>,
    pub found: Option<String>,
}

pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, DatasetError>;
}

impl<T> IoContext<T> for Result<T, std::io::Error> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, DatasetError> {
        self.map_err(|source| DatasetError::Io {
            path: path.into(),
            source,
        })
    }
}

impl<T> IoContext<T> for Result<T, parquet::errors::ParquetError> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, DatasetError> {
        self.map_err(|source| DatasetError::Parquet {
            path: path.into(),
            source,
        })
    }
}

impl<T> IoContext<T> for Result<T, arrow_schema::ArrowError> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, DatasetError> {
        self.map_err(|source| DatasetError::Arrow {
            path: path.into(),
            source,
        })
    }
}
