use std::path::PathBuf;

use roadsynth_dataset::DatasetError;

/// Why an evaluation could not run. Every variant names the file or dataset it is about, so a
/// message read in a CI log says where to look.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading dataset {}: {source}", .path.display())]
    Dataset {
        path: PathBuf,
        #[source]
        source: DatasetError,
    },
    #[error("{}: not COCO detection results (a JSON list of {{image_id, category_id, bbox, score}}): {source}", .path.display())]
    DetectionsJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{source_name}: detection {index} has a non-finite {field} ({value})")]
    NonFinite {
        source_name: String,
        index: usize,
        field: &'static str,
        value: f64,
    },
    #[error(
        "{source_name}: detection {index} has category_id {category_id}, but the ground truth numbers {classes} classes from 1 ({names}); were the predictions made against another export?"
    )]
    UnknownCategory {
        source_name: String,
        index: usize,
        category_id: u64,
        classes: usize,
        names: String,
    },
    #[error(
        "{source_name}: detection {index} has image_id {image_id}, but the ground truth's images are numbered 1..={images}; were the predictions made against another export?"
    )]
    UnknownImage {
        source_name: String,
        index: usize,
        image_id: u64,
        images: u64,
    },
    #[error("dataset {}: {reason}", .path.display())]
    Inconsistent { path: PathBuf, reason: String },
    #[error("class map {spec:?}: {reason}")]
    ClassMap { spec: String, reason: String },
    #[error("slice {key:?}: {reason}")]
    Slice { key: String, reason: String },
    #[error("IoU threshold {iou}: PR curves are accumulated at COCO's 0.50, 0.55, ..., 0.95 only")]
    IouThreshold { iou: f64 },
    #[error("bootstrap: {0}")]
    Bootstrap(String),
    #[error("hotcoco: {0}")]
    Hotcoco(#[from] hotcoco::Error),
}
