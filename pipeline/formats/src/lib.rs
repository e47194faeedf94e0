//! Interchange formats: ingest from KITTI, COCO, YOLO and BDD100K, export to COCO and YOLO, with quarantine of bad input.
//!
//! Ingest runs in two steps. An adapter's `scan` reads the labels of a dataset into
//! [`PendingFrame`]s (and quarantines what is wrong with the labels themselves); [`load`] or
//! [`load_all`] then reads each image, checks it, checks every box against it and produces a
//! [`FrameRecord`](roadsynth_types::FrameRecord). A frame with any bad label is quarantined whole,
//! with every reason, because training on a frame with a dropped label teaches that the object is
//! background.
//!
//! [`export`] writes a dataset version out for external tools, as COCO or YOLO.

pub mod bdd100k;
pub mod coco;
mod error;
pub mod export;
mod files;
pub mod image_probe;
pub mod kitti;
mod load;
mod pending;
pub mod yolo;

pub use error::FormatError;
pub use image_probe::ImageProbeError;
pub use load::{LoadOptions, load, load_all};
pub use pending::{PendingAnnotation, PendingFrame, Scan, SourceLoc};
