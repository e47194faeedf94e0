use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use roadsynth_types::{FrameRecord, Quarantined, SCHEMA_VERSION, TOOL_VERSION};
use serde::Serialize;

use crate::manifest::{FileEntry, Manifest, SplitStats};
use crate::reader::{Dataset, StoredFrame};
use crate::schema::{self, BYTE_COLUMNS, FrameRow, QuarantineRow};
use crate::writeback::Writeback;
use crate::{
    CURRENT_FILE, DatasetError, IoContext, LOCK_FILE, MANIFEST_FILE, QUARANTINE_FILE, VERSIONS_DIR,
};

/// How a [`DatasetWriter`] batches and lays out files.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Build on the dataset's current version: splits this writer does not touch (no frame and no
    /// quarantined item written for them) are carried over unchanged. Off: the new version holds
    /// only what is written.
    pub carry_other_splits: bool,
    /// Frames buffered before they are converted to Arrow and handed to Parquet.
    pub batch_rows: usize,
    /// Encoded bytes buffered before a flush, whichever limit comes first. A batch's Arrow
    /// buffers are built afresh: 2 MiB (one or two generated frames) keeps them reused and in
    /// cache, where 8 MiB made the augment stage 3-4% slower.
    pub batch_bytes: usize,
    /// A row group is closed once it holds this many bytes (bounds writer memory with big images).
    /// With the batch, this is most of a writer's memory: 8 + 16 MiB kept augmenting `CamVid` at
    /// about 170 MiB peak, where 32 + 64 MiB took 240 MiB at the same speed.
    pub row_group_bytes: usize,
    /// A split's part file is closed and a new one started past this size.
    pub part_bytes: u64,
    /// The manifest's `created_at`; `None`: now. A fixed value makes every byte of a version a
    /// function of its content (shard outputs, which a retry must write identically).
    pub created_at: Option<String>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            carry_other_splits: true,
            batch_rows: 64,
            batch_bytes: 2 << 20,
            row_group_bytes: 16 << 20,
            part_bytes: 1 << 30,
            created_at: None,
        }
    }
}

/// Writes one new version of a dataset; nothing is visible until [`DatasetWriter::commit`].
#[derive(Debug)]
pub struct DatasetWriter {
    root: PathBuf,
    staging: PathBuf,
    options: WriteOptions,
    base: Option<Dataset>,
    /// The version `CURRENT` named when this writer started: a commit that finds another has
    /// lost a concurrent writer's version, so it fails instead.
    current_at_start: Option<String>,
    splits: BTreeMap<String, SplitWriter>,
    quarantine: Vec<Quarantined>,
    writeback: Writeback,
    committed: bool,
}

#[derive(Debug)]
struct SplitWriter {
    pending: Vec<FrameRow>,
    pending_bytes: usize,
    part: Option<PartFile>,
    done: Vec<FileEntry>,
    stats: SplitStats,
}

/// One Parquet file being written, hashed as it goes.
struct PartFile {
    rel_path: String,
    writer: ArrowWriter<PartSink>,
    rows: u64,
}

impl std::fmt::Debug for PartFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartFile")
            .field("rel_path", &self.rel_path)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

/// Where a part file's bytes go: buffered, then hashed and counted on their way to the file. The
/// hasher sees the buffer's large writes rather than Parquet's small ones: BLAKE3 hashes 16
/// chunks of 1 KiB at once, which an 8 KiB write cannot fill.
type PartSink = BufWriter<HashingWriter<File>>;

/// Hashes and counts every byte on its way to the file, so no second read is needed.
struct HashingWriter<W> {
    inner: W,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn writer_properties() -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_key_value_metadata(Some(vec![parquet::file::metadata::KeyValue::new(
            schema::SCHEMA_VERSION_KEY.to_string(),
            SCHEMA_VERSION.to_string(),
        )]));
    // Encoded images are already compressed: compressing, dictionary-encoding or computing
    // min/max statistics of them costs time and gains nothing.
    for col in BYTE_COLUMNS {
        let path = ColumnPath::from(col);
        b = b
            .set_column_compression(path.clone(), Compression::UNCOMPRESSED)
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_statistics_enabled(path, EnabledStatistics::None);
    }
    b.build()
}

fn open_parquet(path: &Path, schema: SchemaRef) -> Result<ArrowWriter<PartSink>, DatasetError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).at(dir)?;
    }
    let file = File::create(path).at(path)?;
    let sink = BufWriter::with_capacity(
        1 << 20,
        HashingWriter {
            inner: file,
            hasher: blake3::Hasher::new(),
            bytes: 0,
        },
    );
    ArrowWriter::try_new(sink, schema, Some(writer_properties())).at(path)
}

/// Closes a Parquet writer, syncs the file and describes it.
fn finish_parquet(
    writer: ArrowWriter<PartSink>,
    dir: &Path,
    rel_path: String,
    split: Option<String>,
    rows: u64,
) -> Result<FileEntry, DatasetError> {
    let path = dir.join(&rel_path);
    let sink = writer.into_inner().at(&path)?;
    // Writes out the buffer's last bytes, through the hasher.
    let hashed = sink.into_inner().map_err(|e| DatasetError::Io {
        path: path.clone(),
        source: e.into_error(),
    })?;
    hashed.inner.sync_all().at(&path)?;
    Ok(FileEntry {
        path: rel_path,
        split,
        rows,
        bytes: hashed.bytes,
        blake3: hashed.hasher.finalize().to_hex().to_string(),
    })
}

fn write_rows<T: Serialize>(
    writer: &mut ArrowWriter<PartSink>,
    schema: &SchemaRef,
    rows: &[T],
    path: &Path,
) -> Result<(), DatasetError> {
    let batch = serde_arrow::to_record_batch(schema.fields(), &rows)?;
    // serde_arrow builds a batch without schema metadata; the writer's schema carries the version.
    let batch = batch.with_schema(schema.clone()).at(path)?;
    writer.write(&batch).at(path)
}

impl DatasetWriter {
    /// Starts a new version under `root` (created if missing).
    pub fn create(root: &Path, options: WriteOptions) -> Result<Self, DatasetError> {
        let versions = root.join(VERSIONS_DIR);
        fs::create_dir_all(&versions).at(&versions)?;
        let current_at_start = current_version(root)?;
        // What killed writers on this machine left behind goes first.
        crate::sweep_staging(root, |pid| !crate::process_alive(pid));
        // The version read as `CURRENT` above, not `CURRENT` again: another commit in between
        // must fail this writer's commit, not be carried over unnoticed.
        let base = match (&current_at_start, options.carry_other_splits) {
            (Some(version), true) => Some(Dataset::open(&versions.join(version))?),
            _ => None,
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let staging = versions.join(format!(
            "{}{}-{nanos}-{}",
            crate::STAGING_PREFIX,
            std::process::id(),
            crate::host_name()
        ));
        fs::create_dir_all(&staging).at(&staging)?;
        Ok(Self {
            root: root.to_path_buf(),
            staging,
            options,
            base,
            current_at_start,
            splits: BTreeMap::new(),
            quarantine: Vec::new(),
            writeback: Writeback::default(),
            committed: false,
        })
    }

    /// Adds a frame to its split.
    pub fn write(&mut self, record: &FrameRecord) -> Result<(), DatasetError> {
        self.push(FrameRow::from_record(record))
    }

    /// [`Self::write`] for a record the caller is done with: its image bytes are not copied.
    pub fn write_owned(&mut self, record: FrameRecord) -> Result<(), DatasetError> {
        self.push(FrameRow::from_owned_record(record))
    }

    /// Adds a frame read as stored from another version: the same row, byte for byte (see
    /// [`StoredFrame`]).
    pub fn write_stored(&mut self, frame: StoredFrame) -> Result<(), DatasetError> {
        self.push(frame.0)
    }

    // Counts and batches from the row alone, so that a record and its stored row are written alike.
    fn push(&mut self, row: FrameRow) -> Result<(), DatasetError> {
        let name = row.split.clone();
        if !self.splits.contains_key(&name) {
            // The name becomes a folder: checked before anything is made of it.
            crate::check_split_name(&name)?;
        }
        let split = self
            .splits
            .entry(name.clone())
            .or_insert_with(|| SplitWriter {
                pending: Vec::new(),
                pending_bytes: 0,
                part: None,
                done: Vec::new(),
                stats: SplitStats::default(),
            });
        split.stats.frames += 1;
        split.stats.annotations += row.annotations.len() as u64;
        for a in &row.annotations {
            *split.stats.classes.entry(a.class.clone()).or_insert(0) += 1;
        }
        split.pending_bytes += row.image.as_ref().map_or(0, Vec::len)
            + row.semantic_label.as_ref().map_or(0, Vec::len);
        split.pending.push(row);
        if split.pending.len() >= self.options.batch_rows
            || split.pending_bytes >= self.options.batch_bytes
        {
            self.flush_split(&name)?;
        }
        Ok(())
    }

    /// Records an item that could not be ingested.
    pub fn quarantine(&mut self, item: Quarantined) {
        self.quarantine.push(item);
    }

    /// Items quarantined so far by this writer.
    pub fn quarantined(&self) -> &[Quarantined] {
        &self.quarantine
    }

    fn flush_split(&mut self, name: &str) -> Result<(), DatasetError> {
        let options = &self.options;
        let staging = &self.staging;
        let Some(split) = self.splits.get_mut(name) else {
            return Ok(());
        };
        if split.pending.is_empty() {
            return Ok(());
        }
        if split.part.is_none() {
            let rel_path = format!("frames/split={name}/part-{:05}.parquet", split.done.len());
            let writer = open_parquet(&staging.join(&rel_path), schema::frames_schema())?;
            split.part = Some(PartFile {
                rel_path,
                writer,
                rows: 0,
            });
        }
        let part = split.part.as_mut().expect("opened above");
        let path = staging.join(&part.rel_path);
        write_rows(
            &mut part.writer,
            &schema::frames_schema(),
            &split.pending,
            &path,
        )?;
        part.rows += split.pending.len() as u64;
        split.pending.clear();
        split.pending_bytes = 0;
        if part.writer.in_progress_size() >= options.row_group_bytes {
            part.writer.flush().at(&path)?;
            self.writeback
                .request(path, &part.writer.inner().get_ref().inner);
        }
        if part.writer.bytes_written() as u64 >= options.part_bytes {
            let part = split.part.take().expect("checked above");
            split.done.push(finish_parquet(
                part.writer,
                staging,
                part.rel_path,
                Some(name.to_string()),
                part.rows,
            )?);
        }
        Ok(())
    }

    /// Finishes the version and makes it the dataset's current one, atomically.
    pub fn commit(mut self, provenance: serde_json::Value) -> Result<Manifest, DatasetError> {
        let names: Vec<String> = self.splits.keys().cloned().collect();
        for name in &names {
            self.flush_split(name)?;
        }
        let mut files = Vec::new();
        let mut splits = BTreeMap::new();
        for (name, mut split) in std::mem::take(&mut self.splits) {
            if let Some(part) = split.part.take() {
                split.done.push(finish_parquet(
                    part.writer,
                    &self.staging,
                    part.rel_path,
                    Some(name.clone()),
                    part.rows,
                )?);
            }
            files.extend(split.done);
            splits.insert(name, split.stats);
        }
        // Every part file is synced now; a background sync that failed must still fail the commit.
        self.writeback.finish()?;

        // Splits this writer touched replace the base's; the others are carried over (hard-linked:
        // versions are immutable, so sharing the bytes is safe).
        let touched: BTreeSet<String> = splits
            .keys()
            .cloned()
            .chain(self.quarantine.iter().map(|q| q.split.clone()))
            .collect();
        let mut quarantine = std::mem::take(&mut self.quarantine);
        let parent = self.base.as_ref().map(|b| b.manifest().version.clone());
        if let Some(base) = self.base.take() {
            for (name, stats) in &base.manifest().splits {
                if touched.contains(name) {
                    continue;
                }
                for entry in base
                    .manifest()
                    .files
                    .iter()
                    .filter(|f| f.split.as_deref() == Some(name))
                {
                    let (from, to) = (
                        base.version_dir().join(&entry.path),
                        self.staging.join(&entry.path),
                    );
                    if let Some(dir) = to.parent() {
                        fs::create_dir_all(dir).at(dir)?;
                    }
                    if fs::hard_link(&from, &to).is_err() {
                        fs::copy(&from, &to).at(&from)?;
                    }
                    files.push(entry.clone());
                }
                splits.insert(name.clone(), stats.clone());
            }
            quarantine.extend(
                base.quarantine()?
                    .into_iter()
                    .filter(|q| !touched.contains(&q.split)),
            );
        }

        let qpath = self.staging.join(QUARANTINE_FILE);
        let mut qwriter = open_parquet(&qpath, schema::quarantine_schema())?;
        let rows: Vec<QuarantineRow> = quarantine.iter().map(QuarantineRow::from_item).collect();
        write_rows(&mut qwriter, &schema::quarantine_schema(), &rows, &qpath)?;
        files.push(finish_parquet(
            qwriter,
            &self.staging,
            QUARANTINE_FILE.to_string(),
            None,
            rows.len() as u64,
        )?);
        files.sort_by(|a, b| a.path.cmp(&b.path));

        let mut content = blake3::Hasher::new();
        for f in &files {
            content.update(f.path.as_bytes());
            content.update(f.blake3.as_bytes());
        }
        let versions = self.root.join(VERSIONS_DIR);
        // From choosing the number to replacing `CURRENT`, one writer at a time; and only if no
        // other committed since this one started, else that version would silently lose its
        // splits (this one carried over the older ones).
        let lock_path = self.root.join(LOCK_FILE);
        let lock = File::create(&lock_path).at(&lock_path)?;
        lock.lock().at(&lock_path)?;
        let found = current_version(&self.root)?;
        if found != self.current_at_start {
            return Err(DatasetError::ChangedMeanwhile(Box::new(
                crate::ChangedMeanwhile {
                    root: self.root.clone(),
                    started_from: self.current_at_start.clone(),
                    found,
                },
            )));
        }
        let number = next_version_number(&versions)?;
        let version = format!("v{number:04}-{}", &content.finalize().to_hex()[..8]);

        let classes = splits
            .values()
            .flat_map(|s: &SplitStats| s.classes.keys().cloned())
            .collect::<BTreeSet<_>>();
        let manifest = Manifest {
            schema_version: SCHEMA_VERSION,
            version: version.clone(),
            parent,
            created_at: self.options.created_at.clone().unwrap_or_else(created_now),
            tool_version: TOOL_VERSION.to_string(),
            splits,
            classes: classes.into_iter().collect(),
            quarantined: quarantine.len() as u64,
            files,
            provenance,
        };
        let mpath = self.staging.join(MANIFEST_FILE);
        write_synced(
            &mpath,
            &serde_json::to_vec_pretty(&manifest).expect("manifest serialises"),
        )?;
        sync_dir(&self.staging)?;

        let final_dir = versions.join(&version);
        fs::rename(&self.staging, &final_dir).at(&final_dir)?;
        self.committed = true;
        sync_dir(&versions)?;
        let current_tmp = self
            .root
            .join(format!(".{CURRENT_FILE}.tmp-{}", std::process::id()));
        write_synced(&current_tmp, format!("{version}\n").as_bytes())?;
        let current = self.root.join(CURRENT_FILE);
        fs::rename(&current_tmp, &current).at(&current)?;
        sync_dir(&self.root)?;
        drop(lock);
        tracing::info!(version = %version, root = %self.root.display(), "dataset version committed");
        Ok(manifest)
    }
}

impl Drop for DatasetWriter {
    fn drop(&mut self) {
        if !self.committed {
            // An abandoned version leaves nothing behind; errors here only leave a hidden folder.
            let _ = fs::remove_dir_all(&self.staging);
        }
    }
}

/// Now, or `SOURCE_DATE_EPOCH` (seconds) when set: the reproducible-builds convention, so that
/// two runs can be compared file by file, `manifest.json` included.
fn created_now() -> String {
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok());
    epoch
        .unwrap_or_else(time::OffsetDateTime::now_utc)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The version `CURRENT` names at `root`, if there is one.
fn current_version(root: &Path) -> Result<Option<String>, DatasetError> {
    let path = root.join(CURRENT_FILE);
    match fs::read_to_string(&path) {
        Ok(name) => Ok(Some(name.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(DatasetError::Io { path, source: e }),
    }
}

fn next_version_number(versions: &Path) -> Result<u32, DatasetError> {
    let mut max = 0;
    for entry in fs::read_dir(versions).at(versions)? {
        let name = entry.at(versions)?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_prefix('v')
            .and_then(|s| s.split('-').next())
            .and_then(|s| s.parse::<u32>().ok())
        {
            max = max.max(n);
        }
    }
    Ok(max + 1)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), DatasetError> {
    let mut f = File::create(path).at(path)?;
    f.write_all(bytes).at(path)?;
    f.sync_all().at(path)
}

fn sync_dir(dir: &Path) -> Result<(), DatasetError> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}
