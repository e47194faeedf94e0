use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use roadsynth_types::{FrameRecord, Quarantined, SCHEMA_VERSION};

use crate::manifest::Manifest;
use crate::schema::{BYTE_COLUMNS, FrameRow, QuarantineRow};
use crate::{CURRENT_FILE, DatasetError, IoContext, MANIFEST_FILE, QUARANTINE_FILE, VERSIONS_DIR};

/// Which columns a reader decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projection {
    /// Everything, image bytes included.
    Full,
    /// Metadata and annotations only: the image and semantic-label bytes are never read from disk.
    WithoutImages,
    /// Metadata, annotations and semantic-label bytes, without the image bytes (planning).
    SemanticLabelsOnly,
}

impl Projection {
    /// Stored columns this projection leaves out.
    fn skipped_columns(self) -> &'static [&'static str] {
        match self {
            Projection::Full => &[],
            Projection::WithoutImages => &BYTE_COLUMNS,
            Projection::SemanticLabelsOnly => &["image"],
        }
    }
}

/// One committed, immutable version of a dataset.
#[derive(Debug)]
pub struct Dataset {
    version_dir: PathBuf,
    manifest: Manifest,
}

impl Dataset {
    /// Opens a dataset root (its current version) or a version folder directly.
    pub fn open(path: &Path) -> Result<Self, DatasetError> {
        let version_dir = if path.join(MANIFEST_FILE).is_file() {
            path.to_path_buf()
        } else if path.join(CURRENT_FILE).is_file() {
            let current = path.join(CURRENT_FILE);
            let name = std::fs::read_to_string(&current).at(&current)?;
            path.join(VERSIONS_DIR).join(name.trim())
        } else {
            return Err(DatasetError::NotADataset(path.to_path_buf()));
        };
        let mpath = version_dir.join(MANIFEST_FILE);
        let manifest = Manifest::read(&mpath)?;
        if manifest.schema_version > SCHEMA_VERSION {
            return Err(DatasetError::SchemaTooNew {
                path: mpath,
                found: manifest.schema_version,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(Self {
            version_dir,
            manifest,
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn version_dir(&self) -> &Path {
        &self.version_dir
    }

    /// Frames of one split, in stored order.
    pub fn frames(&self, split: &str, projection: Projection) -> Result<FrameReader, DatasetError> {
        if !self.manifest.splits.contains_key(split) {
            return Err(DatasetError::NoSuchSplit(split.to_string()));
        }
        let files = self
            .manifest
            .files
            .iter()
            .filter(|f| f.split.as_deref() == Some(split))
            .map(|f| self.version_dir.join(&f.path))
            .collect();
        Ok(FrameReader {
            files,
            projection,
            current: None,
            rows: VecDeque::new(),
        })
    }

    /// Frames of one split as stored (see [`StoredFrame`]), in stored order, images included.
    pub fn stored_frames(&self, split: &str) -> Result<StoredFrames, DatasetError> {
        Ok(StoredFrames(self.frames(split, Projection::Full)?))
    }

    /// Frames of every split, splits in [`Manifest::split_names`] order.
    pub fn all_frames(&self, projection: Projection) -> Result<FrameReader, DatasetError> {
        let mut files = Vec::new();
        for split in self.manifest.split_names() {
            files.extend(
                self.manifest
                    .files
                    .iter()
                    .filter(|f| f.split.as_deref() == Some(split.as_str()))
                    .map(|f| self.version_dir.join(&f.path)),
            );
        }
        Ok(FrameReader {
            files: files.into(),
            projection,
            current: None,
            rows: VecDeque::new(),
        })
    }

    /// The quarantine table: every input item that could not be ingested, with the reason.
    pub fn quarantine(&self) -> Result<Vec<Quarantined>, DatasetError> {
        let path = self.version_dir.join(QUARANTINE_FILE);
        let reader = open_batches(&path, Projection::Full, 1024)?;
        let mut out = Vec::new();
        for batch in reader {
            let batch = batch.at(&path)?;
            let rows: Vec<QuarantineRow> = serde_arrow::from_record_batch(&batch)?;
            for row in rows {
                out.push(row.into_item()?);
            }
        }
        Ok(out)
    }
}

fn open_batches(
    path: &Path,
    projection: Projection,
    batch_size: usize,
) -> Result<ParquetRecordBatchReader, DatasetError> {
    let file = File::open(path).at(path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .at(path)?
        .with_batch_size(batch_size);
    let skipped = projection.skipped_columns();
    let builder = if skipped.is_empty() {
        builder
    } else {
        let keep: Vec<usize> = builder
            .schema()
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| !skipped.contains(&f.name().as_str()))
            .map(|(i, _)| i)
            .collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), keep);
        builder.with_projection(mask)
    };
    builder.build().at(path)
}

/// Streams frames from a split's Parquet files, one batch in memory at a time.
pub struct FrameReader {
    files: VecDeque<PathBuf>,
    projection: Projection,
    current: Option<(PathBuf, ParquetRecordBatchReader)>,
    rows: VecDeque<FrameRow>,
}

impl std::fmt::Debug for FrameReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReader")
            .field("files", &self.files)
            .field("projection", &self.projection)
            .finish_non_exhaustive()
    }
}

impl FrameReader {
    /// Frames per decoded batch: small, because a batch with images holds their bytes.
    const BATCH_ROWS: usize = 64;

    fn refill(&mut self) -> Result<bool, DatasetError> {
        loop {
            if self.current.is_none() {
                let Some(path) = self.files.pop_front() else {
                    return Ok(false);
                };
                let batch_rows = match self.projection {
                    Projection::Full | Projection::SemanticLabelsOnly => Self::BATCH_ROWS,
                    Projection::WithoutImages => 1024,
                };
                let reader = open_batches(&path, self.projection, batch_rows)?;
                self.current = Some((path, reader));
            }
            let (path, reader) = self.current.as_mut().expect("set above");
            match reader.next() {
                Some(batch) => {
                    let batch = batch.at(path.as_path())?;
                    let rows: Vec<FrameRow> = serde_arrow::from_record_batch(&batch)?;
                    self.rows.extend(rows);
                    return Ok(true);
                }
                None => self.current = None,
            }
        }
    }
}

impl FrameReader {
    fn next_row(&mut self) -> Option<Result<FrameRow, DatasetError>> {
        if self.rows.is_empty() {
            match self.refill() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    self.files.clear();
                    self.current = None;
                    return Some(Err(e));
                }
            }
        }
        self.rows.pop_front().map(Ok)
    }
}

impl Iterator for FrameReader {
    type Item = Result<FrameRecord, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_row()
            .map(|row| row.and_then(FrameRow::into_record))
    }
}

/// A frame as stored: its row, not decoded into the canonical types. Copying stored frames into
/// another version ([`crate::DatasetWriter::write_stored`]) writes exactly what their writer
/// wrote; decoding and encoding again need not (JSON numbers are parsed and printed again).
#[derive(Debug)]
pub struct StoredFrame(pub(crate) FrameRow);

impl StoredFrame {
    pub fn split(&self) -> &str {
        &self.0.split
    }

    pub fn frame_id(&self) -> &str {
        &self.0.frame_id
    }
}

/// Streams the stored frames of a split ([`Dataset::stored_frames`]).
#[derive(Debug)]
pub struct StoredFrames(FrameReader);

impl Iterator for StoredFrames {
    type Item = Result<StoredFrame, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next_row().map(|row| row.map(StoredFrame))
    }
}
