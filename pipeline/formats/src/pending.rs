use std::path::PathBuf;

use roadsynth_types::{Annotation, Attributes, Camera, Quarantined};

/// Where an annotation was read from, so that a problem found later (when the image size is
/// known) can name it.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceLoc {
    pub file: PathBuf,
    /// 1-based line, for line-based label files (KITTI, YOLO).
    pub line: Option<u32>,
    /// Which entry of a file without useful lines (`annotation id 17` in a COCO JSON).
    pub entry: Option<String>,
}

impl SourceLoc {
    pub fn line(file: PathBuf, line: u32) -> Self {
        Self {
            file,
            line: Some(line),
            entry: None,
        }
    }

    pub fn entry(file: PathBuf, entry: String) -> Self {
        Self {
            file,
            line: None,
            entry: Some(entry),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PendingAnnotation {
    pub annotation: Annotation,
    pub loc: SourceLoc,
}

/// A frame whose labels are parsed and whose image is not yet read.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingFrame {
    pub split: String,
    pub source_format: &'static str,
    pub image_path: PathBuf,
    /// The image's name relative to the dataset root (`images/train/x.jpg`).
    pub image_name: String,
    /// The label file (or JSON) that describes this image.
    pub label_file: Option<PathBuf>,
    pub annotations: Vec<PendingAnnotation>,
    /// Boxes and polygon masks are in units of the image size (YOLO); loading scales them to
    /// pixels once the image size is known.
    pub normalized_coords: bool,
    /// Size the labels declare (COCO `width`, `height`); loading checks it against the image.
    pub expected_size: Option<(u32, u32)>,
    pub camera: Option<Camera>,
    pub semantic_label_path: Option<PathBuf>,
    pub semantic_label_name: Option<String>,
    pub sequence: Option<String>,
    pub timestamp_ms: Option<f64>,
    pub attributes: Attributes,
    /// Errors found while parsing this frame's labels; any of them quarantines the frame.
    pub label_errors: Vec<Quarantined>,
}

impl PendingFrame {
    /// A frame with no labels yet.
    pub fn new(
        split: &str,
        source_format: &'static str,
        image_path: PathBuf,
        image_name: String,
    ) -> Self {
        Self {
            split: split.to_string(),
            source_format,
            image_path,
            image_name,
            label_file: None,
            annotations: Vec::new(),
            normalized_coords: false,
            expected_size: None,
            camera: None,
            semantic_label_path: None,
            semantic_label_name: None,
            sequence: None,
            timestamp_ms: None,
            attributes: Attributes::new(),
            label_errors: Vec::new(),
        }
    }
}

/// What an adapter found: frames to load, and items already quarantined while parsing (a label
/// without image, a malformed file, ...).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scan {
    pub frames: Vec<PendingFrame>,
    pub quarantined: Vec<Quarantined>,
}
