//! Canonical frame, box, annotation, camera and provenance types shared by every stage.
//!
//! This crate is the single owner of these types. It has no heavy dependencies so that every
//! other crate can use it without paying for `Arrow`, `OpenCV` or `ONNX Runtime`. How the types are
//! stored (the Arrow schema) belongs to `roadsynth-dataset`.

mod annotation;
mod bbox;
mod frame;
mod quarantine;

pub use annotation::{Annotation, Attributes, Kitti3d, Mask, Origin, Rle, RleCounts};
pub use bbox::{BBox, BoxError};
pub use frame::{Camera, Frame, FrameId, FrameRecord, ImageFormat, Provenance, ProvenanceStep};
pub use quarantine::{QuarantineKind, Quarantined};

/// Version of the canonical dataset schema. Bump it when a stored field changes meaning or layout;
/// readers refuse datasets written with a newer version.
pub const SCHEMA_VERSION: u32 = 1;

/// Version of this build of roadsynth, recorded in provenance and manifests.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");
