//! Shards: one stage run split over many processes or machines, merged into one version.
//!
//! A sharded run gives each of N processes a contiguous range of the run's input items (every
//! split in manifest order, frames in stored order; see [`ShardId::items`]). Each writes its part
//! with [`ShardWriter`] into `<shards dir>/shard-IIIII-of-NNNNN/`:
//!
//! ```text
//! shard-00001-of-00003/
//!   data/        a dataset root (CURRENT, versions/v0001-…): the shard's frames and quarantine
//!   shard.json   written last: shard, item range, the run's identity, counts
//! ```
//!
//! The folder is written under a hidden name and renamed into place once complete, and every byte
//! in it is a function of the inputs (the manifest's `created_at` is fixed), so a retried shard
//! writes the same bytes and a killed one leaves only a hidden folder that nothing reads.
//!
//! [`commit_shards`] checks that the set is complete (shards `0..N`, item ranges that tile the
//! input) and consistent (same input version, scenario, seed, settings, code version), then copies
//! the stored rows ([`crate::StoredFrame`]), split by split in shard order, into one new version
//! written with [`output_options`]. Because the ranges are contiguous, that is exactly the sequence
//! of writes a single process makes, so the committed version is byte-identical to the unsharded
//! one, provided the stage writes its unsharded output with [`output_options`] too.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File};
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::manifest::Manifest;
use crate::reader::Dataset;
use crate::writer::{DatasetWriter, WriteOptions};
use crate::{DatasetError, IoContext};

/// A shard's metadata file, written last.
pub const SHARD_FILE: &str = "shard.json";
/// The dataset root inside a shard folder.
pub const SHARD_DATA_DIR: &str = "data";

/// Shard `index` of `count` (0-based), written `index/count` on command lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardId {
    pub index: u32,
    pub count: u32,
}

impl ShardId {
    /// Checks `index < count`.
    pub fn new(index: u32, count: u32) -> Result<Self, ShardError> {
        if count == 0 || index >= count {
            return Err(ShardError::BadShardId(format!("{index}/{count}")));
        }
        Ok(Self { index, count })
    }

    /// The folder name of this shard's output: `shard-00001-of-00003`.
    pub fn dir_name(self) -> String {
        format!("shard-{:05}-of-{:05}", self.index, self.count)
    }

    fn from_dir_name(name: &str) -> Option<Self> {
        let (index, count) = name.strip_prefix("shard-")?.split_once("-of-")?;
        Self::new(index.parse().ok()?, count.parse().ok()?).ok()
    }

    /// The items of this shard: positions `start..end` in the run's input order.
    ///
    /// `parts` lists the input in order as `(items, weighted)`: weighted items (frames to
    /// augment) carry the cost and are divided evenly; unweighted ones (frames copied through) go
    /// with the next weighted item, and trailing ones with the last shard. So every shard is one
    /// contiguous range and the ranges tile the input. Without weighted items, all items are
    /// divided evenly.
    pub fn items(self, parts: &[(u64, bool)]) -> Range<u64> {
        self.boundary(parts, self.index)..self.boundary(parts, self.index + 1)
    }

    /// First position of shard `i` (`i == count`: the end).
    fn boundary(self, parts: &[(u64, bool)], i: u32) -> u64 {
        let total: u64 = parts.iter().map(|p| p.0).sum();
        let weighted: u64 = parts.iter().filter(|p| p.1).map(|p| p.0).sum();
        if i == 0 {
            return 0;
        }
        if i >= self.count {
            return total;
        }
        let share = |n: u64| {
            // ceil(i * n / count), in u128: no overflow for any u64 input.
            let num = u128::from(i) * u128::from(n);
            let den = u128::from(self.count);
            u64::try_from(num.div_ceil(den)).unwrap_or(u64::MAX)
        };
        if weighted == 0 {
            return share(total);
        }
        // Just after the last weighted item of shard i - 1 (shard i starts at weighted item k).
        let k = share(weighted);
        position_of_weighted(parts, k - 1) + 1
    }
}

/// Position in the input of the `j`-th weighted item (0-based).
fn position_of_weighted(parts: &[(u64, bool)], j: u64) -> u64 {
    let mut position = 0;
    let mut seen = 0;
    for &(n, weighted) in parts {
        if weighted {
            if j < seen + n {
                return position + (j - seen);
            }
            seen += n;
        }
        position += n;
    }
    position
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for ShardId {
    type Err = ShardError;

    /// `i/N`, with `0 <= i < N`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ShardError::BadShardId(s.to_string());
        let (index, count) = s.split_once('/').ok_or_else(bad)?;
        Self::new(
            index.trim().parse().map_err(|_| bad())?,
            count.trim().parse().map_err(|_| bad())?,
        )
    }
}

/// Positions `start..end` of a shard's items among the run's `total` input items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemRange {
    pub start: u64,
    pub end: u64,
    pub total: u64,
}

/// What makes shards parts of the same run: every shard of a set must record the same. A
/// mismatch is reported at the first field that differs, in this order (specific fields before
/// the hash and the provenance that cover them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardRun {
    /// The stage (`augment`).
    pub stage: String,
    /// Input dataset root, as given.
    pub input: String,
    /// The input's version folder name (content hash included).
    pub input_version: String,
    pub scenario: String,
    pub seed: u64,
    /// The stage's other settings (frame limits and the like).
    pub settings: serde_json::Value,
    pub tool_version: String,
    /// Hash of the resolved scenario settings (seed included).
    pub scenario_hash: String,
    /// The provenance the committed version's manifest gets (renderer and models included).
    pub provenance: serde_json::Value,
}

/// `shard.json`: one shard's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardManifest {
    pub shard: ShardId,
    pub items: ItemRange,
    pub run: ShardRun,
    /// The stage's counts for this shard (numbers; the commit adds them up).
    pub summary: serde_json::Value,
    /// Version folder of `data/` (its name is a hash of every file).
    pub data_version: String,
}

/// Why shards could not be written or committed.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("{0:?} is not a shard: write i/N with 0 <= i < N, e.g. 0/4")]
    BadShardId(String),
    #[error("{}: no shard outputs (shard-IIIII-of-NNNNN folders) to commit", dir.display())]
    NoShards { dir: PathBuf },
    #[error("{}: incomplete shard set: shards {} of {count} are missing (run them, then commit again)", dir.display(), list(missing))]
    Missing {
        dir: PathBuf,
        count: u32,
        missing: Vec<u32>,
    },
    #[error("{}: shards of different runs: {}", dir.display(), counts.join(", "))]
    Counts { dir: PathBuf, counts: Vec<String> },
    #[error("{}: inconsistent shard set: {mismatch}", dir.display())]
    Inconsistent {
        dir: PathBuf,
        mismatch: Box<Mismatch>,
    },
    #[error("{}: inconsistent shard set: {shard} covers items {start}..{end} of {total}, expected to start at {expected}", dir.display())]
    Gap {
        dir: PathBuf,
        shard: String,
        start: u64,
        end: u64,
        total: u64,
        expected: u64,
    },
    #[error("{}: damaged shard output: {reason}", shard.display())]
    Damaged { shard: PathBuf, reason: String },
    #[error(transparent)]
    Dataset(#[from] DatasetError),
}

/// Where a shard's run differs from the first shard's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub shard: String,
    pub first: String,
    /// The field, nested fields joined by `.` (`provenance.renderer`).
    pub field: String,
    pub found: String,
    pub expected: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} has {} = {}, {} has {}",
            self.shard, self.field, self.found, self.first, self.expected
        )
    }
}

fn list(items: &[u32]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// How a stage writes a version that shards can reproduce: the committed version is written with
/// these options, and so must the stage's unsharded output be (same batches, same bytes).
pub fn output_options() -> WriteOptions {
    WriteOptions {
        carry_other_splits: false,
        ..WriteOptions::default()
    }
}

/// A shard's own data: fixed `created_at`, and small row groups so that a shard's progress reaches
/// the disk as it goes (the commit batches again, so these sizes never show in its output).
fn shard_data_options() -> WriteOptions {
    WriteOptions {
        carry_other_splits: false,
        batch_rows: 2,
        row_group_bytes: 1 << 20,
        created_at: Some("1970-01-01T00:00:00Z".to_string()),
        ..WriteOptions::default()
    }
}

/// Where the shards of `output` go unless given: `<output>.shards` beside it.
pub fn default_shards_dir(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".shards");
    output.with_file_name(name)
}

fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos}", std::process::id())
}

/// Writes one shard's output (see the module documentation). Frames and quarantined items go
/// through the [`DatasetWriter`] that [`ShardWriter::create`] returns beside it.
#[derive(Debug)]
pub struct ShardWriter {
    shard: ShardId,
    shards_dir: PathBuf,
    tmp: PathBuf,
    published: bool,
}

impl ShardWriter {
    /// Starts shard `shard` under `shards_dir` (created if missing), in a hidden folder.
    pub fn create(
        shards_dir: &Path,
        shard: ShardId,
    ) -> Result<(Self, DatasetWriter), DatasetError> {
        fs::create_dir_all(shards_dir).at(shards_dir)?;
        let tmp = shards_dir.join(format!(".tmp-{}-{}", shard.dir_name(), unique_suffix()));
        fs::create_dir_all(&tmp).at(&tmp)?;
        let shard_writer = Self {
            shard,
            shards_dir: shards_dir.to_path_buf(),
            tmp,
            published: false,
        };
        let writer =
            DatasetWriter::create(&shard_writer.tmp.join(SHARD_DATA_DIR), shard_data_options())?;
        Ok((shard_writer, writer))
    }

    /// The folder the shard is being written in (hidden until [`ShardWriter::finish`]).
    pub fn staging_dir(&self) -> &Path {
        &self.tmp
    }

    /// Commits the shard's data, writes `shard.json` and renames the folder into place. If an
    /// earlier attempt already published this shard with the same `shard.json`, that one stays
    /// (same content, same bytes); a different one is replaced. Returns the published folder.
    pub fn finish(
        mut self,
        writer: DatasetWriter,
        items: ItemRange,
        run: ShardRun,
        summary: serde_json::Value,
    ) -> Result<(PathBuf, ShardManifest), DatasetError> {
        let data = writer.commit(run.provenance.clone())?;
        let manifest = ShardManifest {
            shard: self.shard,
            items,
            run,
            summary,
            data_version: data.version,
        };
        let bytes = serde_json::to_vec_pretty(&manifest).expect("shard manifest serialises");
        let path = self.tmp.join(SHARD_FILE);
        let mut f = File::create(&path).at(&path)?;
        f.write_all(&bytes).at(&path)?;
        f.sync_all().at(&path)?;
        File::open(&self.tmp)
            .and_then(|d| d.sync_all())
            .at(&self.tmp)?;

        let target = self.shards_dir.join(self.shard.dir_name());
        if fs::rename(&self.tmp, &target).is_err() {
            // Renaming onto a non-empty folder fails: an earlier attempt finished this shard.
            let existing = read_shard_manifest(&target).ok();
            if existing.as_ref() == Some(&manifest) {
                tracing::info!(shard = %self.shard, "shard already written by an earlier attempt");
            } else {
                let old = self.shards_dir.join(format!(
                    ".old-{}-{}",
                    self.shard.dir_name(),
                    unique_suffix()
                ));
                fs::rename(&target, &old).at(&target)?;
                fs::rename(&self.tmp, &target).at(&target)?;
                let _ = fs::remove_dir_all(&old);
            }
        }
        self.published = true;
        let _ = fs::remove_dir_all(&self.tmp);
        File::open(&self.shards_dir)
            .and_then(|d| d.sync_all())
            .at(&self.shards_dir)?;
        Ok((target, manifest))
    }
}

impl Drop for ShardWriter {
    fn drop(&mut self) {
        if !self.published {
            // A failed shard leaves nothing behind; a killed one leaves this hidden folder, which
            // the commit ignores and removes with the rest.
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

fn read_shard_manifest(dir: &Path) -> Result<ShardManifest, DatasetError> {
    let path = dir.join(SHARD_FILE);
    let text = fs::read_to_string(&path).at(&path)?;
    serde_json::from_str(&text).map_err(|source| DatasetError::Manifest { path, source })
}

/// What [`commit_shards`] wrote.
#[derive(Debug)]
pub struct CommittedShards {
    pub manifest: Manifest,
    /// The shards, in index order.
    pub shards: Vec<ShardManifest>,
    /// Every numeric field of the shards' summaries, added up.
    pub summary: serde_json::Map<String, serde_json::Value>,
}

/// Merges the complete, consistent shard set in `shards_dir` into a new version of `output`
/// (see the module documentation). With `expected_count`, shards of any other count are an
/// error too. Nothing is written unless every check passes.
pub fn commit_shards(
    shards_dir: &Path,
    output: &Path,
    expected_count: Option<u32>,
) -> Result<CommittedShards, ShardError> {
    let dir = shards_dir.to_path_buf();
    let mut found: Vec<(ShardId, PathBuf)> = Vec::new();
    let entries = match fs::read_dir(shards_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ShardError::NoShards { dir });
        }
        Err(source) => {
            return Err(DatasetError::Io { path: dir, source }.into());
        }
    };
    for entry in entries {
        let entry = entry.at(shards_dir)?;
        let name = entry.file_name();
        // Hidden folders are unfinished attempts.
        if let Some(id) = name.to_str().and_then(ShardId::from_dir_name) {
            found.push((id, entry.path()));
        }
    }
    if found.is_empty() {
        return Err(ShardError::NoShards { dir });
    }
    found.sort_by_key(|(id, _)| (id.count, id.index));
    let counts: BTreeSet<u32> = found.iter().map(|(id, _)| id.count).collect();
    let count = match (expected_count, counts.len()) {
        (Some(n), _) if counts.iter().all(|&c| c == n) => n,
        (None, 1) => found[0].0.count,
        _ => {
            let mut described: Vec<String> = counts
                .iter()
                .map(|c| {
                    let n = found.iter().filter(|(id, _)| id.count == *c).count();
                    format!("{n} shard(s) of a {c}-shard run")
                })
                .collect();
            if let Some(n) = expected_count {
                described.push(format!("expected a {n}-shard run"));
            }
            return Err(ShardError::Counts {
                dir,
                counts: described,
            });
        }
    };
    let missing: Vec<u32> = (0..count)
        .filter(|i| !found.iter().any(|(id, _)| id.index == *i))
        .collect();
    if !missing.is_empty() {
        return Err(ShardError::Missing {
            dir,
            count,
            missing,
        });
    }

    let mut shards: Vec<(ShardManifest, PathBuf, Dataset)> = Vec::new();
    for (id, path) in found {
        let damaged = |reason: String| ShardError::Damaged {
            shard: path.clone(),
            reason,
        };
        let manifest = read_shard_manifest(&path).map_err(|e| damaged(e.to_string()))?;
        if manifest.shard != id {
            return Err(damaged(format!(
                "{SHARD_FILE} says shard {}, the folder is shard {id}",
                manifest.shard
            )));
        }
        let data = Dataset::open(&path.join(SHARD_DATA_DIR)).map_err(|e| damaged(e.to_string()))?;
        if data.manifest().version != manifest.data_version {
            return Err(damaged(format!(
                "data version is {}, {SHARD_FILE} says {}",
                data.manifest().version,
                manifest.data_version
            )));
        }
        verify_files(&data).map_err(damaged)?;
        shards.push((manifest, path, data));
    }

    let name = |m: &ShardManifest| m.shard.dir_name();
    let first = &shards[0].0;
    let mut expected_start = 0;
    for (m, _, _) in &shards {
        if let Some((field, found, expected)) = first_difference(&m.run, &first.run) {
            return Err(ShardError::Inconsistent {
                dir,
                mismatch: Box::new(Mismatch {
                    shard: name(m),
                    first: name(first),
                    field,
                    found,
                    expected,
                }),
            });
        }
        let r = m.items;
        if r.start != expected_start || r.end < r.start || r.total != first.items.total {
            return Err(ShardError::Gap {
                dir,
                shard: name(m),
                start: r.start,
                end: r.end,
                total: r.total,
                expected: expected_start,
            });
        }
        expected_start = r.end;
    }
    if expected_start != first.items.total {
        let last = &shards[shards.len() - 1].0;
        return Err(ShardError::Gap {
            dir,
            shard: format!("the shard after {}", name(last)),
            start: expected_start,
            end: expected_start,
            total: first.items.total,
            expected: expected_start,
        });
    }

    let mut writer = DatasetWriter::create(output, output_options())?;
    let splits: BTreeSet<String> = shards
        .iter()
        .flat_map(|(_, _, d)| d.manifest().splits.keys().cloned())
        .collect();
    // Splits are written independently, so going split by split and shard by shard replays each
    // split's rows in input order, as the single writer saw them.
    for split in &splits {
        for (_, _, data) in &shards {
            if !data.manifest().splits.contains_key(split) {
                continue;
            }
            for frame in data.stored_frames(split)? {
                writer.write_stored(frame?)?;
            }
        }
    }
    for (_, _, data) in &shards {
        for item in data.quarantine()? {
            writer.quarantine(item);
        }
    }
    let manifest = writer.commit(first.run.provenance.clone())?;

    let mut summary = serde_json::Map::new();
    for (m, _, _) in &shards {
        if let Some(fields) = m.summary.as_object() {
            for (k, v) in fields {
                if let Some(n) = v.as_u64() {
                    let total = summary
                        .get(k)
                        .and_then(serde_json::Value::as_u64)
                        .unwrap_or(0);
                    summary.insert(k.clone(), serde_json::json!(total + n));
                }
            }
        }
    }
    Ok(CommittedShards {
        manifest,
        shards: shards.into_iter().map(|(m, _, _)| m).collect(),
        summary,
    })
}

/// Checks every file of a version against its manifest's size and BLAKE3.
fn verify_files(data: &Dataset) -> Result<(), String> {
    for entry in &data.manifest().files {
        let path = data.version_dir().join(&entry.path);
        let mut hasher = blake3::Hasher::new();
        let mut file = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let bytes = std::io::copy(&mut file, &mut hasher)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let hash = hasher.finalize().to_hex().to_string();
        if bytes != entry.bytes || hash != entry.blake3 {
            return Err(format!(
                "{} does not match its manifest ({bytes} bytes, BLAKE3 {hash}; manifest: {} bytes, {})",
                path.display(),
                entry.bytes,
                entry.blake3
            ));
        }
    }
    Ok(())
}

/// The first field (by name, nested fields as `settings.renderer`) where two runs differ.
fn first_difference(a: &ShardRun, b: &ShardRun) -> Option<(String, String, String)> {
    let (a, b) = (
        serde_json::to_value(a).expect("runs serialise"),
        serde_json::to_value(b).expect("runs serialise"),
    );
    difference("", &a, &b)
}

fn difference(
    at: &str,
    a: &serde_json::Value,
    b: &serde_json::Value,
) -> Option<(String, String, String)> {
    if let (Some(a), Some(b)) = (a.as_object(), b.as_object()) {
        // In field order (the JSON keeps it), then keys only `b` has.
        let keys = a.keys().chain(b.keys().filter(|k| !a.contains_key(*k)));
        for k in keys {
            let field = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            let null = serde_json::Value::Null;
            if let Some(d) =
                difference(&field, a.get(k).unwrap_or(&null), b.get(k).unwrap_or(&null))
            {
                return Some(d);
            }
        }
        return None;
    }
    (a != b).then(|| (at.to_string(), a.to_string(), b.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(parts: &[(u64, bool)], count: u32) -> Vec<Range<u64>> {
        (0..count)
            .map(|i| ShardId::new(i, count).expect("valid").items(parts))
            .collect()
    }

    #[test]
    fn shard_ids_parse_and_refuse_nonsense() {
        assert_eq!("1/3".parse::<ShardId>().ok(), ShardId::new(1, 3).ok());
        for bad in ["3/3", "0/0", "1", "a/2", "-1/2", ""] {
            assert!(bad.parse::<ShardId>().is_err(), "{bad}");
        }
        let id = ShardId::new(2, 12).expect("valid");
        assert_eq!(ShardId::from_dir_name(&id.dir_name()), Some(id));
        assert_eq!(id.to_string(), "2/12");
    }

    #[test]
    fn ranges_tile_the_input_and_split_the_weighted_items_evenly() {
        // 18 frames to augment, then 18 copied through: 6 augmented each, the copies go last.
        assert_eq!(ranges(&[(18, true), (18, false)], 3), [0..6, 6..12, 12..36]);
        // Copies first: they go with the first frame to augment.
        assert_eq!(ranges(&[(4, false), (9, true)], 3), [0..7, 7..10, 10..13]);
        // Unweighted only: by position.
        assert_eq!(ranges(&[(10, false)], 4), [0..3, 3..5, 5..8, 8..10]);
        // More shards than frames: some are empty, the tiling holds.
        assert_eq!(ranges(&[(2, true)], 4), [0..1, 1..1, 1..2, 2..2]);
        for count in 1..9 {
            for parts in [
                vec![(7, true), (3, false), (5, true)],
                vec![(0, true), (4, false)],
                vec![(1, false), (13, true), (2, false)],
            ] {
                let r = ranges(&parts, count);
                let total: u64 = parts.iter().map(|p| p.0).sum();
                assert_eq!(r[0].start, 0);
                assert_eq!(r[r.len() - 1].end, total);
                for w in r.windows(2) {
                    assert_eq!(w[0].end, w[1].start, "{parts:?} / {count}");
                }
            }
        }
    }

    #[test]
    fn runs_differ_at_a_named_field() {
        let run = ShardRun {
            stage: "augment".into(),
            input: "in".into(),
            input_version: "v0001-aa".into(),
            scenario: "fog".into(),
            scenario_hash: "h".into(),
            seed: 1,
            settings: serde_json::json!({"renderer": {"kind": "exemplar"}}),
            tool_version: "0".into(),
            provenance: serde_json::json!({}),
        };
        let mut other = run.clone();
        other.settings = serde_json::json!({"renderer": {"kind": "plain"}});
        let (field, found, expected) = first_difference(&other, &run).expect("differs");
        assert_eq!(field, "settings.renderer.kind");
        assert_eq!(
            (found.as_str(), expected.as_str()),
            ("\"plain\"", "\"exemplar\"")
        );
        assert!(first_difference(&run, &run.clone()).is_none());
    }
}
