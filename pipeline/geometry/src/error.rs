use std::path::PathBuf;

/// What can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum GeometryError {
    #[error("invalid ground model: {0}")]
    InvalidModel(String),
    #[error(
        "cannot fit the ground geometry: {usable} usable boxes of classes with a size prior (need at least {needed})"
    )]
    TooFewBoxes { usable: usize, needed: usize },
    #[error("cannot fit the ground geometry: {0}")]
    FitFailed(String),
    #[error("semantic label image: {0}")]
    BadLabelImage(String),
    #[error("frame image: {0}")]
    BadImage(String),
    #[error("mask is {mask_width}x{mask_height}, the frame is {width}x{height}")]
    SizeMismatch {
        mask_width: u32,
        mask_height: u32,
        width: u32,
        height: u32,
    },
    #[error("drivable-area model `{name}` failed: {source}")]
    Segmenter {
        name: String,
        #[source]
        source: crate::SegmenterError,
    },
    #[error("mask cache {}: {source}", path.display())]
    CacheIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mask cache {}: {reason}", path.display())]
    CacheFormat { path: PathBuf, reason: String },
}
