use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{DatasetError, IoContext};

/// `manifest.json` of a dataset version: what it holds, how it was made, and hashes of its files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema_version: u32,
    /// Folder name of this version (`v0003-1a2b3c4d`).
    pub version: String,
    /// The version this one was derived from, if any.
    pub parent: Option<String>,
    pub created_at: String,
    pub tool_version: String,
    /// Per split: frame and annotation counts and annotations per class.
    pub splits: BTreeMap<String, SplitStats>,
    /// Every class name, sorted; exporters number classes in this order.
    pub classes: Vec<String>,
    /// Items in `quarantine.parquet`.
    pub quarantined: u64,
    /// Every data file of the version with its BLAKE3 hash.
    pub files: Vec<FileEntry>,
    /// What made this version (the ingest command and its inputs, or the scenario run).
    pub provenance: serde_json::Value,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitStats {
    pub frames: u64,
    pub annotations: u64,
    pub classes: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Path relative to the version folder, `/`-separated.
    pub path: String,
    pub split: Option<String>,
    pub rows: u64,
    pub bytes: u64,
    pub blake3: String,
}

impl Manifest {
    pub fn frames(&self) -> u64 {
        self.splits.values().map(|s| s.frames).sum()
    }

    /// Annotations per class over all splits.
    pub fn class_counts(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for s in self.splits.values() {
            for (c, n) in &s.classes {
                *out.entry(c.clone()).or_insert(0) += n;
            }
        }
        out
    }

    /// Split names in a stable order: train, val, test first, then the rest by name.
    pub fn split_names(&self) -> Vec<String> {
        let rank = |s: &str| {
            ["train", "val", "test"]
                .iter()
                .position(|k| *k == s)
                .unwrap_or(3)
        };
        let mut names: Vec<String> = self.splits.keys().cloned().collect();
        names.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
        names
    }

    /// The COCO export's image id of `split`'s first frame: frames are numbered from 1 over the
    /// splits in [`Self::split_names`] order, so a split's ids are the same whether it is
    /// exported alone or with the others (and predictions on one split score against it).
    pub fn first_export_id(&self, split: &str) -> Option<u64> {
        self.splits.contains_key(split).then(|| {
            1 + self
                .split_names()
                .iter()
                .take_while(|s| s.as_str() != split)
                .map(|s| self.splits[s].frames)
                .sum::<u64>()
        })
    }

    pub fn read(path: &Path) -> Result<Self, DatasetError> {
        let text = std::fs::read_to_string(path).at(path)?;
        serde_json::from_str(&text).map_err(|source| DatasetError::Manifest {
            path: path.to_path_buf(),
            source,
        })
    }
}
