use std::fmt;

use serde::{Deserialize, Serialize};

/// An input item that could not be ingested, kept with the reason so nothing is silently lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    /// The file at fault (label file, image, JSON), as a path.
    pub file: String,
    /// 1-based line in `file`, when the format has lines (KITTI/YOLO labels, JSON/YAML syntax errors).
    pub line: Option<u32>,
    /// 1-based column, for syntax errors.
    pub column: Option<u32>,
    /// The split the item was headed for.
    pub split: String,
    pub kind: QuarantineKind,
    pub reason: String,
}

impl Quarantined {
    /// `file:line:col`, as far as known, for messages.
    pub fn location(&self) -> String {
        match (self.line, self.column) {
            (Some(l), Some(c)) => format!("{}:{l}:{c}", self.file),
            (Some(l), None) => format!("{}:{l}", self.file),
            _ => self.file.clone(),
        }
    }
}

impl fmt::Display for Quarantined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.location(),
            self.kind.as_str(),
            self.reason
        )
    }
}

/// Why an item was quarantined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuarantineKind {
    /// The image is missing, unreadable, truncated or not a JPEG/PNG.
    BadImage,
    /// A label line with the wrong number of fields or an unparsable number.
    BadLabelLine,
    /// A NaN or infinite coordinate.
    NonFiniteBox,
    /// x0 >= x1 or y0 >= y1.
    InvertedBox,
    /// A box outside the image.
    BoxOutsideImage,
    /// A label (or annotation) whose image does not exist.
    LabelWithoutImage,
    /// A class id or category id the dataset does not define.
    UnknownClass,
    /// A JSON or YAML file that does not parse, or an entry with the wrong shape.
    Malformed,
    /// A calibration file that is missing or does not parse.
    BadCalibration,
    /// The same image bytes appear twice in one ingest.
    Duplicate,
    /// A frame a stage could not process (render, weather): the run goes on without it.
    StageFailed,
}

impl QuarantineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineKind::BadImage => "bad_image",
            QuarantineKind::BadLabelLine => "bad_label_line",
            QuarantineKind::NonFiniteBox => "non_finite_box",
            QuarantineKind::InvertedBox => "inverted_box",
            QuarantineKind::BoxOutsideImage => "box_outside_image",
            QuarantineKind::LabelWithoutImage => "label_without_image",
            QuarantineKind::UnknownClass => "unknown_class",
            QuarantineKind::Malformed => "malformed",
            QuarantineKind::BadCalibration => "bad_calibration",
            QuarantineKind::Duplicate => "duplicate",
            QuarantineKind::StageFailed => "stage_failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            QuarantineKind::BadImage,
            QuarantineKind::BadLabelLine,
            QuarantineKind::NonFiniteBox,
            QuarantineKind::InvertedBox,
            QuarantineKind::BoxOutsideImage,
            QuarantineKind::LabelWithoutImage,
            QuarantineKind::UnknownClass,
            QuarantineKind::Malformed,
            QuarantineKind::BadCalibration,
            QuarantineKind::Duplicate,
            QuarantineKind::StageFailed,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

impl From<&crate::BoxError> for QuarantineKind {
    fn from(e: &crate::BoxError) -> Self {
        match e {
            crate::BoxError::NonFinite(_) => QuarantineKind::NonFiniteBox,
            crate::BoxError::Inverted(_) => QuarantineKind::InvertedBox,
            crate::BoxError::OutsideImage { .. } => QuarantineKind::BoxOutsideImage,
        }
    }
}
