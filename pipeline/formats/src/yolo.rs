//! Ultralytics YOLO: a `data.yaml` naming split image folders and class names; one label file per
//! image at the image's path with its last `images` folder replaced by `labels` and a `.txt`
//! extension. A label line is `class cx cy w h` (a box) or `class x1 y1 x2 y2 ...` (a polygon), in
//! units of the image size.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use roadsynth_types::{Annotation, BBox, Mask, QuarantineKind};
use serde::Deserialize;

use crate::files::{
    IMAGE_EXTENSIONS, has_extension, line_number, quarantine, read_input, relative_name,
    syntax_error, walk_files,
};
use crate::{FormatError, PendingAnnotation, PendingFrame, Scan, SourceLoc};

pub const SOURCE_FORMAT: &str = "yolo";

/// Image formats Ultralytics reads that the pipeline does not store; quarantined, not skipped.
const UNSUPPORTED_IMAGE_EXTENSIONS: &[&str] =
    &["bmp", "dng", "mpo", "tif", "tiff", "webp", "pfm", "heic"];

#[derive(Deserialize)]
struct DataYaml {
    /// Dataset root; relative to the YAML's folder; default that folder.
    path: Option<PathBuf>,
    train: Option<SplitDirs>,
    val: Option<SplitDirs>,
    test: Option<SplitDirs>,
    names: Names,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SplitDirs {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Names {
    List(Vec<String>),
    Map(BTreeMap<usize, String>),
}

/// Scans the dataset a `data.yaml` describes. Each frame's split is the YAML key (`train`, `val`,
/// `test`) that lists its folder; `default_split` is the split recorded for problems with the
/// YAML itself. An image without a label file is a frame without objects (YOLO's convention for
/// background images).
pub fn scan(data_yaml: &Path, default_split: &str) -> Result<Scan, FormatError> {
    let bytes = read_input(data_yaml)?;
    let mut scan = Scan::default();
    let config: DataYaml = match serde_norway::from_slice(&bytes) {
        Ok(config) => config,
        Err(e) => {
            let position = e.location().map(|l| (l.line(), l.column()));
            scan.quarantined.push(syntax_error(
                data_yaml,
                position,
                default_split,
                format!("not a YOLO data.yaml: {e}"),
            ));
            return Ok(scan);
        }
    };
    let yaml_dir = data_yaml.parent().unwrap_or(Path::new(""));
    // Rebuilt from components to drop `.` (`path: .` is common), for clean names in reports.
    let root: PathBuf = config
        .path
        .map_or_else(|| yaml_dir.to_path_buf(), |p| yaml_dir.join(p))
        .components()
        .collect();
    let class_names: BTreeMap<usize, String> = match config.names {
        Names::List(names) => names.into_iter().enumerate().collect(),
        Names::Map(names) => names,
    };
    let splits = [
        ("train", config.train),
        ("val", config.val),
        ("test", config.test),
    ];
    for (split, dirs) in splits {
        let dirs = match dirs {
            None => Vec::new(),
            Some(SplitDirs::One(dir)) => vec![dir],
            Some(SplitDirs::Many(dirs)) => dirs,
        };
        // `test:` is often present and empty.
        for dir in dirs.iter().filter(|d| !d.is_empty()) {
            let image_dir = root.join(dir);
            if image_dir.is_dir() {
                scan_split(&image_dir, &root, split, &class_names, &mut scan)?;
            } else {
                let reason = format!("`{split}` folder {} does not exist", image_dir.display());
                scan.quarantined.push(quarantine(
                    data_yaml,
                    None,
                    split,
                    QuarantineKind::Malformed,
                    reason,
                ));
            }
        }
    }
    tracing::debug!(
        frames = scan.frames.len(),
        quarantined = scan.quarantined.len(),
        "scanned YOLO {}",
        data_yaml.display()
    );
    Ok(scan)
}

fn scan_split(
    image_dir: &Path,
    root: &Path,
    split: &str,
    class_names: &BTreeMap<usize, String>,
    scan: &mut Scan,
) -> Result<(), FormatError> {
    let mut expected_labels = HashSet::new();
    for path in walk_files(image_dir)? {
        if has_extension(&path, UNSUPPORTED_IMAGE_EXTENSIONS) {
            let reason = "unsupported image format: only JPEG and PNG are stored";
            scan.quarantined.push(quarantine(
                &path,
                None,
                split,
                QuarantineKind::BadImage,
                reason,
            ));
            continue;
        }
        if !has_extension(&path, IMAGE_EXTENSIONS) {
            continue;
        }
        let label_path = label_path_for(&path);
        let mut frame = PendingFrame::new(
            split,
            SOURCE_FORMAT,
            path.clone(),
            relative_name(&path, root),
        );
        frame.normalized_coords = true;
        if label_path.is_file() {
            parse_label_file(&label_path, class_names, &mut frame);
            frame.label_file = Some(label_path.clone());
        }
        expected_labels.insert(label_path);
        scan.frames.push(frame);
    }
    let label_dir = swap_images_for_labels(image_dir);
    if label_dir.is_dir() {
        for label in walk_files(&label_dir)? {
            if has_extension(&label, &["txt"]) && !expected_labels.contains(&label) {
                let reason = "no image for this label file";
                scan.quarantined.push(quarantine(
                    &label,
                    None,
                    split,
                    QuarantineKind::LabelWithoutImage,
                    reason,
                ));
            }
        }
    }
    Ok(())
}

/// Ultralytics' rule: the last `images` folder of the path becomes `labels`, the extension `.txt`.
fn label_path_for(image_path: &Path) -> PathBuf {
    let folder = image_path
        .parent()
        .map(swap_images_for_labels)
        .unwrap_or_default();
    folder
        .join(image_path.file_name().unwrap_or_default())
        .with_extension("txt")
}

fn swap_images_for_labels(folder: &Path) -> PathBuf {
    let components: Vec<_> = folder.components().collect();
    let Some(swap_at) = components.iter().rposition(|c| c.as_os_str() == "images") else {
        return folder.to_path_buf();
    };
    components
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i == swap_at {
                "labels".as_ref()
            } else {
                c.as_os_str()
            }
        })
        .collect()
}

fn parse_label_file(
    label_path: &Path,
    class_names: &BTreeMap<usize, String>,
    frame: &mut PendingFrame,
) {
    let text = match std::fs::read_to_string(label_path) {
        Ok(text) => text,
        Err(e) => {
            let reason = format!("cannot read label file: {e}");
            frame.label_errors.push(quarantine(
                label_path,
                None,
                &frame.split,
                QuarantineKind::Malformed,
                reason,
            ));
            return;
        }
    };
    for (index, line_text) in text.lines().enumerate() {
        let fields: Vec<&str> = line_text.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let line = line_number(index);
        match parse_label_line(&fields, class_names) {
            Ok(annotation) => frame.annotations.push(PendingAnnotation {
                annotation,
                loc: SourceLoc::line(label_path.to_path_buf(), line),
            }),
            Err((kind, reason)) => {
                frame.label_errors.push(quarantine(
                    label_path,
                    Some(line),
                    &frame.split,
                    kind,
                    reason,
                ));
            }
        }
    }
}

/// One label line, in units of the image size (scaled to pixels when the image is loaded).
fn parse_label_line(
    fields: &[&str],
    class_names: &BTreeMap<usize, String>,
) -> Result<Annotation, (QuarantineKind, String)> {
    let count = fields.len();
    if count != 5 && (count < 7 || count.is_multiple_of(2)) {
        let reason = format!(
            "expected 5 fields (class cx cy w h) or an odd number of at least 7 (class and polygon points), found {count}"
        );
        return Err((QuarantineKind::BadLabelLine, reason));
    }
    let class_id: usize = fields[0].parse().map_err(|_| {
        (
            QuarantineKind::BadLabelLine,
            format!("class id is not a non-negative integer: {:?}", fields[0]),
        )
    })?;
    let mut values = Vec::with_capacity(count - 1);
    for field in &fields[1..] {
        let value: f64 = field.parse().map_err(|_| {
            (
                QuarantineKind::BadLabelLine,
                format!("not a number: {field:?}"),
            )
        })?;
        if !value.is_finite() {
            return Err((
                QuarantineKind::NonFiniteBox,
                format!("coordinate is not finite: {field:?}"),
            ));
        }
        values.push(value);
    }
    let Some(class) = class_names.get(&class_id) else {
        let reason = format!(
            "class id {class_id} is not in `names` ({} classes)",
            class_names.len()
        );
        return Err((QuarantineKind::UnknownClass, reason));
    };
    if let [cx, cy, w, h] = values[..] {
        return Ok(Annotation::real(
            class,
            BBox::from_normalized_cxcywh(cx, cy, w, h, 1, 1),
        ));
    }
    let xs = values.iter().step_by(2).copied();
    let ys = values.iter().skip(1).step_by(2).copied();
    let bbox = BBox::new(
        xs.clone().fold(f64::INFINITY, f64::min),
        ys.clone().fold(f64::INFINITY, f64::min),
        xs.fold(f64::NEG_INFINITY, f64::max),
        ys.fold(f64::NEG_INFINITY, f64::max),
    );
    let mut annotation = Annotation::real(class, bbox);
    annotation.mask = Some(Mask::Polygons(vec![values]));
    Ok(annotation)
}
