//! Export of a dataset version for external tools: COCO detection JSON and Ultralytics YOLO.
//!
//! Both exporters stream the dataset: image bytes are read one frame at a time and written exactly
//! as stored (never re-encoded), so an exported image hashes to its frame id.
//!
//! # Layout
//!
//! Images go to `OUTDIR/images/<split>/<stem>.<ext>`: `<stem>` is the file stem of the frame's
//! source `image_name` and `<ext>` comes from its stored format (`jpg`, `png`). Within a split the
//! first frame (in export order) with a stem keeps it; a later frame with the same stem gets
//! `<stem>-<first 8 hex digits of its frame id>`. Names are compared by stem, not by file name, so
//! that `x.jpg` and `x.png` cannot share a YOLO label file.
//!
//! # Atomicity
//!
//! Everything is written into a sibling folder `OUTDIR.tmp-<pid>`, which is renamed to `OUTDIR`
//! once complete; on any error it is removed. An existing `OUTDIR` must be an empty folder.
//!
//! # Order and ids
//!
//! Frames are exported splits in [`Manifest::split_names`](roadsynth_dataset::Manifest::split_names)
//! order (train, val, test, then the rest by name), each in stored order. COCO image ids are the
//! 1-based position in that order, annotation ids run from 1 in the same order, and category ids
//! are the 1-based index in the manifest's sorted `classes`. A dataset version is immutable, so
//! exporting the same version twice gives the same ids and a byte-identical `annotations.json`.
//! YOLO class indices are the 0-based index in the same `classes`.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use roadsynth_dataset::{Dataset, DatasetError, Manifest, Projection};
use roadsynth_types::{Annotation, BBox, Frame, FrameRecord, Mask, RleCounts};
use serde_json::{Map, Value, json};

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// Frames (images) written.
    pub frames: u64,
    /// Annotations written (COCO: all; YOLO: label lines).
    pub annotations: u64,
    /// Annotations left out because the format cannot express them (YOLO: crowd and ignore
    /// regions). Always 0 for COCO.
    pub skipped: u64,
}

/// Why an export failed. Nothing is left at the output path when an export fails.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("output {} exists and is not an empty folder; refusing to overwrite it", .path.display())]
    OutputNotEmpty { path: PathBuf },
    #[error("output {} does not name a folder", .path.display())]
    InvalidOutput { path: PathBuf },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading dataset {}: {source}", .path.display())]
    Dataset {
        path: PathBuf,
        #[source]
        source: DatasetError,
    },
    #[error("writing {}: {source}", .path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("writing {}: {source}", .path.display())]
    Yaml {
        path: PathBuf,
        #[source]
        source: serde_norway::Error,
    },
    #[error("dataset {}: frame {frame_id} ({image_name}) was read without its image bytes", .dataset.display())]
    MissingImage {
        dataset: PathBuf,
        frame_id: String,
        image_name: String,
    },
    #[error("dataset {}: frame {frame_id} has an annotation of class {class:?}, which the manifest's classes do not list", .dataset.display())]
    UnknownClass {
        dataset: PathBuf,
        frame_id: String,
        class: String,
    },
    #[error("dataset {}: split name {split:?} cannot be used as a folder name", .dataset.display())]
    BadSplitName { dataset: PathBuf, split: String },
    #[error("dataset {}: {reason}", .dataset.display())]
    Inconsistent { dataset: PathBuf, reason: String },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn dataset_err(dataset: &Dataset) -> impl Fn(DatasetError) -> ExportError + '_ {
    move |source| ExportError::Dataset {
        path: dataset.version_dir().to_path_buf(),
        source,
    }
}

/// Exports to COCO detection format: `OUTDIR/annotations.json` and `OUTDIR/images/<split>/`.
///
/// `annotations.json` holds `info` (`description`, `version`: the dataset version,
/// `schema_version`, `date_created`), `images`, `annotations` and `categories`, one entry per line.
/// Beside COCO's fields, an image carries `frame_id`, `split`, `source_image` (the stored
/// `image_name`), `source_uri`, `provenance`, `camera`, `semantic_label` (the exported
/// label image, `semantic_labels/<split>/<stem>.png`), `source_semantic_label` (the stored name), `sequence`, `timestamp_ms` (each when present) and the
/// frame's `attributes`. An annotation's `attributes` hold its stored attributes plus `origin`
/// (`kind`, and for generated ones `operation`, `scenario`, `seed`), `truncated`, `occluded`,
/// `kitti` (when present) and `ignore: true` for ignore regions. Crowd and ignore regions get
/// `iscrowd: 1`: COCO evaluators count a detection on them as neither hit nor miss. `area` is the
/// stored `area` attribute when there is one (masks are not rasterised), else the box area.
///
/// Ids are stable for a dataset version (see the [module documentation](self)).
pub fn to_coco(dataset: &Dataset, output: &Path) -> Result<ExportSummary, ExportError> {
    to_coco_splits(dataset, output, None)
}

/// [`to_coco`] of some splits only (`None`: all), e.g. a training split handed to an external
/// trainer without the held-out frames beside it. Image ids are those of the whole export
/// ([`roadsynth_dataset::Manifest::first_export_id`]), so predictions on an exported split score
/// against the dataset's split.
pub fn to_coco_splits(
    dataset: &Dataset,
    output: &Path,
    only: Option<&[String]>,
) -> Result<ExportSummary, ExportError> {
    let manifest = dataset.manifest();
    let splits = checked_splits(dataset, only)?;
    let category_ids: HashMap<&str, u64> = manifest
        .classes
        .iter()
        .zip(1..)
        .map(|(class, id)| (class.as_str(), id))
        .collect();
    let staging = Staging::begin(output)?;
    for split in &splits {
        staging.create_dir(&format!("images/{split}"))?;
    }
    let mut json = JsonOut::create(staging.path("annotations.json"))?;
    json.raw("{\n\"info\": ")?;
    json.value(&coco_info(manifest))?;

    // Pass 1, with image bytes: image files and `images` entries.
    json.raw(",\n\"images\": [")?;
    let mut summary = ExportSummary::default();
    let mut namer = Namer::default();
    let mut next_ids = HashMap::new();
    for record in frames(dataset, &splits, Projection::Full)? {
        let record = record.map_err(dataset_err(dataset))?;
        check_split(dataset, &splits, &record.frame)?;
        let file_name = namer.image_file(&record.frame);
        staging.write_new(&file_name, image_bytes(dataset, &record)?)?;
        // The semantic-label image travels with the frame so the export ingests back unchanged.
        let label_name = match &record.semantic_label {
            Some(bytes) => {
                let stem = Path::new(&file_name)
                    .file_stem()
                    .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
                staging.create_dir(&format!("semantic_labels/{}", record.frame.split))?;
                let name = format!("semantic_labels/{}/{stem}.png", record.frame.split);
                staging.write_new(&name, bytes)?;
                Some(name)
            }
            None => None,
        };
        summary.frames += 1;
        let id = export_id(&mut next_ids, manifest, &record.frame.split);
        json.entry(
            summary.frames == 1,
            &coco_image(id, &file_name, label_name.as_deref(), &record.frame),
        )?;
    }

    // Pass 2, metadata only (image bytes are never read): `annotations`.
    json.raw("\n],\n\"annotations\": [")?;
    let mut image_count = 0;
    let mut next_ids = HashMap::new();
    for record in frames(dataset, &splits, Projection::WithoutImages)? {
        let record = record.map_err(dataset_err(dataset))?;
        image_count += 1;
        let image_id = export_id(&mut next_ids, manifest, &record.frame.split);
        for annotation in &record.annotations {
            let Some(&category_id) = category_ids.get(annotation.class.as_str()) else {
                return Err(unknown_class(dataset, &record.frame, annotation));
            };
            summary.annotations += 1;
            let entry = coco_annotation(summary.annotations, image_id, category_id, annotation);
            json.entry(summary.annotations == 1, &entry)?;
        }
    }
    if image_count != summary.frames {
        return Err(ExportError::Inconsistent {
            dataset: dataset.version_dir().to_path_buf(),
            reason: format!(
                "read {} frames with images and {image_count} without",
                summary.frames
            ),
        });
    }

    json.raw("\n],\n\"categories\": [")?;
    for (class, id) in manifest.classes.iter().zip(1_u64..) {
        json.entry(id == 1, &json!({"id": id, "name": class}))?;
    }
    json.raw("\n]\n}\n")?;
    json.finish()?;
    staging.finish()?;
    tracing::debug!(
        frames = summary.frames,
        annotations = summary.annotations,
        "exported COCO to {}",
        output.display()
    );
    Ok(summary)
}

/// Exports to Ultralytics YOLO: `OUTDIR/images/<split>/`, `OUTDIR/labels/<split>/<stem>.txt` and
/// `OUTDIR/data.yaml` (`path`: OUTDIR made absolute, one key per split naming its image folder, `names` as a map
/// from class index to name in the manifest's class order).
///
/// A label line is `class cx cy w h`, normalised to the image size, 6 decimals (boxes are clipped
/// to the image). A frame without annotations gets an empty label file. Crowd and ignore regions
/// are not written (YOLO cannot mark a region as ignored, and a box would teach it as an object);
/// they are counted in [`ExportSummary::skipped`]. Masks are not exported.
pub fn to_yolo(dataset: &Dataset, output: &Path) -> Result<ExportSummary, ExportError> {
    to_yolo_splits(dataset, output, None)
}

/// [`to_yolo`] of some splits only (`None`: all); `data.yaml` names only those.
pub fn to_yolo_splits(
    dataset: &Dataset,
    output: &Path,
    only: Option<&[String]>,
) -> Result<ExportSummary, ExportError> {
    let manifest = dataset.manifest();
    let splits = checked_splits(dataset, only)?;
    let class_index: HashMap<&str, usize> = manifest
        .classes
        .iter()
        .enumerate()
        .map(|(i, class)| (class.as_str(), i))
        .collect();
    let staging = Staging::begin(output)?;
    for split in &splits {
        staging.create_dir(&format!("images/{split}"))?;
        staging.create_dir(&format!("labels/{split}"))?;
    }

    let mut summary = ExportSummary::default();
    let mut namer = Namer::default();
    let mut label = String::new();
    for record in frames(dataset, &splits, Projection::Full)? {
        let record = record.map_err(dataset_err(dataset))?;
        let frame = &record.frame;
        check_split(dataset, &splits, frame)?;
        let stem = namer.stem(frame);
        let image_file = format!(
            "images/{}/{stem}.{}",
            frame.split,
            frame.image_format.extension()
        );
        staging.write_new(&image_file, image_bytes(dataset, &record)?)?;
        label.clear();
        for annotation in &record.annotations {
            let Some(&class) = class_index.get(annotation.class.as_str()) else {
                return Err(unknown_class(dataset, frame, annotation));
            };
            if annotation.crowd || annotation.ignore {
                summary.skipped += 1;
                continue;
            }
            let Some(bbox) = clip(annotation.bbox, frame.width, frame.height) else {
                summary.skipped += 1;
                continue;
            };
            let [cx, cy, w, h] = bbox.to_normalized_cxcywh(frame.width, frame.height);
            writeln!(label, "{class} {cx:.6} {cy:.6} {w:.6} {h:.6}").expect("writing to a String");
            summary.annotations += 1;
        }
        staging.write_new(
            &format!("labels/{}/{stem}.txt", frame.split),
            label.as_bytes(),
        )?;
        summary.frames += 1;
    }

    let mut data = serde_norway::Mapping::new();
    // Absolute: Ultralytics resolves a relative `path` against its own datasets folder.
    let root = std::path::absolute(output).map_err(io_at(output))?;
    data.insert("path".into(), root.display().to_string().into());
    for split in &splits {
        data.insert(split.as_str().into(), format!("images/{split}").into());
    }
    let names: serde_norway::Mapping = manifest
        .classes
        .iter()
        .enumerate()
        .map(|(i, class)| (i.into(), class.as_str().into()))
        .collect();
    data.insert("names".into(), names.into());
    let yaml_path = staging.path("data.yaml");
    let yaml = serde_norway::to_string(&data).map_err(|source| ExportError::Yaml {
        path: yaml_path.clone(),
        source,
    })?;
    fs::write(&yaml_path, yaml).map_err(io_at(&yaml_path))?;
    staging.finish()?;
    tracing::debug!(
        frames = summary.frames,
        annotations = summary.annotations,
        skipped = summary.skipped,
        "exported YOLO to {}",
        output.display()
    );
    Ok(summary)
}

/// The manifest's split names in export order (those of `only` when given, each of which must
/// exist), each checked to be a plain folder name.
fn checked_splits(dataset: &Dataset, only: Option<&[String]>) -> Result<Vec<String>, ExportError> {
    let mut splits = dataset.manifest().split_names();
    if let Some(only) = only {
        if let Some(missing) = only.iter().find(|s| !splits.contains(s)) {
            return Err(ExportError::Inconsistent {
                dataset: dataset.version_dir().to_path_buf(),
                reason: format!("no split {missing:?} to export (it has {splits:?})"),
            });
        }
        splits.retain(|s| only.contains(s));
    }
    for split in &splits {
        let plain = !split.is_empty()
            && split != "."
            && split != ".."
            && !split.contains(['/', '\\', '\0']);
        if !plain {
            return Err(ExportError::BadSplitName {
                dataset: dataset.version_dir().to_path_buf(),
                split: split.clone(),
            });
        }
    }
    Ok(splits)
}

/// The frames of `splits`, in that order (every split: the dataset's own export order).
fn frames(
    dataset: &Dataset,
    splits: &[String],
    projection: Projection,
) -> Result<impl Iterator<Item = Result<FrameRecord, DatasetError>>, ExportError> {
    let readers = splits
        .iter()
        .map(|split| dataset.frames(split, projection))
        .collect::<Result<Vec<_>, _>>()
        .map_err(dataset_err(dataset))?;
    Ok(readers.into_iter().flatten())
}

fn check_split(dataset: &Dataset, splits: &[String], frame: &Frame) -> Result<(), ExportError> {
    if splits.contains(&frame.split) {
        return Ok(());
    }
    Err(ExportError::Inconsistent {
        dataset: dataset.version_dir().to_path_buf(),
        reason: format!(
            "frame {} is in split {:?}, which the manifest does not list",
            frame.id, frame.split
        ),
    })
}

fn image_bytes<'a>(dataset: &Dataset, record: &'a FrameRecord) -> Result<&'a [u8], ExportError> {
    record
        .image
        .as_deref()
        .ok_or_else(|| ExportError::MissingImage {
            dataset: dataset.version_dir().to_path_buf(),
            frame_id: record.frame.id.to_string(),
            image_name: record.frame.image_name.clone(),
        })
}

fn unknown_class(dataset: &Dataset, frame: &Frame, annotation: &Annotation) -> ExportError {
    ExportError::UnknownClass {
        dataset: dataset.version_dir().to_path_buf(),
        frame_id: frame.id.to_string(),
        class: annotation.class.clone(),
    }
}

/// The box clipped to the image, or `None` when nothing of it is inside.
fn clip(bbox: BBox, width: u32, height: u32) -> Option<BBox> {
    let (w, h) = (f64::from(width), f64::from(height));
    let clipped = BBox::new(
        bbox.x0.max(0.0),
        bbox.y0.max(0.0),
        bbox.x1.min(w),
        bbox.y1.min(h),
    );
    (clipped.x0 < clipped.x1 && clipped.y0 < clipped.y1).then_some(clipped)
}

fn coco_info(manifest: &Manifest) -> Value {
    json!({
        "description": format!("roadsynth dataset version {}", manifest.version),
        "version": manifest.version,
        "schema_version": manifest.schema_version,
        "date_created": manifest.created_at,
    })
}

fn coco_image(id: u64, file_name: &str, semantic_label: Option<&str>, frame: &Frame) -> Value {
    let mut image = Map::new();
    image.insert("id".into(), id.into());
    image.insert("file_name".into(), file_name.into());
    image.insert("width".into(), frame.width.into());
    image.insert("height".into(), frame.height.into());
    image.insert("frame_id".into(), frame.id.as_str().into());
    image.insert("split".into(), frame.split.as_str().into());
    image.insert("source_image".into(), frame.image_name.as_str().into());
    image.insert("source_uri".into(), frame.source_uri.as_str().into());
    image.insert("provenance".into(), to_json(&frame.provenance));
    if let Some(camera) = &frame.camera {
        image.insert("camera".into(), to_json(camera));
    }
    if let Some(name) = semantic_label {
        image.insert("semantic_label".into(), name.into());
    }
    if let Some(name) = &frame.semantic_label {
        image.insert("source_semantic_label".into(), name.as_str().into());
    }
    if let Some(sequence) = &frame.sequence {
        image.insert("sequence".into(), sequence.as_str().into());
    }
    if let Some(t) = frame.timestamp_ms {
        image.insert("timestamp_ms".into(), t.into());
    }
    image.insert("attributes".into(), to_json(&frame.attributes));
    Value::Object(image)
}

/// The next image id of `split` in the whole export's numbering.
fn export_id(next: &mut HashMap<String, u64>, manifest: &Manifest, split: &str) -> u64 {
    let id = next
        .entry(split.to_owned())
        .or_insert_with(|| manifest.first_export_id(split).unwrap_or(1));
    let current = *id;
    *id += 1;
    current
}

fn coco_annotation(id: u64, image_id: u64, category_id: u64, a: &Annotation) -> Value {
    let area = match a.attributes.get("area") {
        Some(area) if area.is_number() => area.clone(),
        _ => a.bbox.area().into(),
    };
    let mut entry = Map::new();
    entry.insert("id".into(), id.into());
    entry.insert("image_id".into(), image_id.into());
    entry.insert("category_id".into(), category_id.into());
    entry.insert("bbox".into(), json!(a.bbox.to_xywh()));
    entry.insert("area".into(), area);
    entry.insert("iscrowd".into(), u8::from(a.crowd || a.ignore).into());
    match &a.mask {
        None => {}
        Some(Mask::Polygons(polygons)) => {
            entry.insert("segmentation".into(), json!(polygons));
        }
        Some(Mask::Rle(rle)) => {
            let counts = match &rle.counts {
                RleCounts::Runs(runs) => json!(runs),
                RleCounts::Compressed(text) => json!(text),
            };
            entry.insert(
                "segmentation".into(),
                json!({"size": rle.size, "counts": counts}),
            );
        }
    }
    let mut attributes: Map<String, Value> = a
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    attributes.insert("origin".into(), to_json(&a.origin));
    if let Some(truncated) = a.truncated {
        attributes.insert("truncated".into(), f32_json(truncated));
    }
    if let Some(occluded) = a.occluded {
        attributes.insert("occluded".into(), occluded.into());
    }
    if let Some(k) = &a.kitti {
        let mut kitti = json!({
            "alpha": k.alpha,
            "dimensions_hwl": k.dimensions_hwl,
            "location_xyz": k.location_xyz,
            "rotation_y": k.rotation_y,
        });
        if let Some(score) = k.score {
            kitti["score"] = score.into();
        }
        attributes.insert("kitti".into(), kitti);
    }
    if a.ignore {
        attributes.insert("ignore".into(), true.into());
    }
    entry.insert("attributes".into(), Value::Object(attributes));
    Value::Object(entry)
}

/// Canonical types serialise to JSON infallibly (string keys, no non-string map keys).
fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("canonical types serialise to JSON")
}

/// An `f32` as the shortest decimal that reads back as it (`0.3`, not `0.30000001192092896`).
fn f32_json(v: f32) -> Value {
    v.to_string()
        .parse::<f64>()
        .map_or(Value::Null, Value::from)
}

/// Picks unique file stems per split: the source stem, then `-<8 hex of frame id>` on a clash.
#[derive(Debug, Default)]
struct Namer {
    used: HashMap<String, HashSet<String>>,
}

impl Namer {
    fn stem(&mut self, frame: &Frame) -> String {
        let source = Path::new(&frame.image_name)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| frame.id.to_string());
        let id = frame.id.as_str();
        let short = &id[..id.len().min(8)];
        let used = self.used.entry(frame.split.clone()).or_default();
        // The full id is taken only if a source name looks like `<stem>-<8 hex>` of another
        // frame; a counter only if one frame id appears twice in a split.
        let mut stem = source.clone();
        let mut attempt = 0_u64;
        while used.contains(&stem) {
            attempt += 1;
            stem = match attempt {
                1 => format!("{source}-{short}"),
                2 => format!("{source}-{id}"),
                n => format!("{source}-{id}-{n}"),
            };
        }
        used.insert(stem.clone());
        stem
    }

    /// `images/<split>/<stem>.<ext>`, relative to the output folder.
    fn image_file(&mut self, frame: &Frame) -> String {
        let stem = self.stem(frame);
        format!(
            "images/{}/{stem}.{}",
            frame.split,
            frame.image_format.extension()
        )
    }
}

/// The output being written: `OUTDIR.tmp-<pid>`, renamed to `OUTDIR` by [`Staging::finish`] and
/// removed when dropped unfinished.
#[derive(Debug)]
struct Staging {
    tmp: PathBuf,
    output: PathBuf,
    finished: bool,
}

impl Staging {
    fn begin(output: &Path) -> Result<Self, ExportError> {
        // Drops `.` components, so that `out/.` names `out`.
        let output: PathBuf = output.components().collect();
        let Some(name) = output.file_name() else {
            return Err(ExportError::InvalidOutput { path: output });
        };
        match fs::read_dir(&output) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(ExportError::OutputNotEmpty { path: output });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                return Err(ExportError::OutputNotEmpty { path: output });
            }
            Err(source) => {
                return Err(ExportError::Io {
                    path: output,
                    source,
                });
            }
        }
        let mut tmp_name = name.to_os_string();
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp = output.with_file_name(tmp_name);
        if let Some(parent) = tmp.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io_at(parent))?;
        }
        // Left by an earlier run of a process with the same id that crashed.
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io_at(&tmp))?;
        }
        fs::create_dir(&tmp).map_err(io_at(&tmp))?;
        Ok(Self {
            tmp,
            output,
            finished: false,
        })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.join(rel)
    }

    fn create_dir(&self, rel: &str) -> Result<(), ExportError> {
        let path = self.path(rel);
        fs::create_dir_all(&path).map_err(io_at(&path))
    }

    /// Writes a file that must not exist yet (a name clash is a bug, never an overwrite).
    fn write_new(&self, rel: &str, bytes: &[u8]) -> Result<(), ExportError> {
        let path = self.path(rel);
        File::create_new(&path)
            .and_then(|mut f| f.write_all(bytes))
            .map_err(io_at(&path))
    }

    fn finish(mut self) -> Result<(), ExportError> {
        match fs::rename(&self.tmp, &self.output) {
            Ok(()) => {
                self.finished = true;
                Ok(())
            }
            // Something appeared at the output while exporting.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::DirectoryNotEmpty
                        | io::ErrorKind::AlreadyExists
                        | io::ErrorKind::NotADirectory
                ) =>
            {
                Err(ExportError::OutputNotEmpty {
                    path: self.output.clone(),
                })
            }
            Err(source) => Err(ExportError::Io {
                path: self.output.clone(),
                source,
            }),
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.finished
            && let Err(e) = fs::remove_dir_all(&self.tmp)
        {
            tracing::warn!(
                "cannot remove unfinished export {}: {e}",
                self.tmp.display()
            );
        }
    }
}

/// `annotations.json` being written, entries one per line.
struct JsonOut {
    path: PathBuf,
    out: BufWriter<File>,
}

impl JsonOut {
    fn create(path: PathBuf) -> Result<Self, ExportError> {
        let file = File::create_new(&path).map_err(io_at(&path))?;
        Ok(Self {
            out: BufWriter::new(file),
            path,
        })
    }

    fn raw(&mut self, text: &str) -> Result<(), ExportError> {
        self.out
            .write_all(text.as_bytes())
            .map_err(io_at(&self.path))
    }

    fn value(&mut self, value: &Value) -> Result<(), ExportError> {
        serde_json::to_writer(&mut self.out, value).map_err(|source| ExportError::Json {
            path: self.path.clone(),
            source,
        })
    }

    /// An array element on its own line.
    fn entry(&mut self, first: bool, value: &Value) -> Result<(), ExportError> {
        self.raw(if first { "\n" } else { ",\n" })?;
        self.value(value)
    }

    fn finish(self) -> Result<(), ExportError> {
        let Self { path, out } = self;
        out.into_inner()
            .map_err(io::IntoInnerError::into_error)
            .and_then(|file| file.sync_all())
            .map_err(io_at(&path))
    }
}
