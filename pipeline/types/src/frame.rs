use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Annotation, Attributes};

/// Stable identity of a frame: the first 128 bits of the BLAKE3 hash of its image bytes, in hex.
/// The same image ingested twice, from any format, gets the same id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FrameId(String);

impl FrameId {
    pub fn from_image_bytes(bytes: &[u8]) -> Self {
        let hash = blake3::hash(bytes);
        Self(hash.to_hex()[..32].to_string())
    }

    /// Wraps an id read back from storage.
    pub fn from_stored(id: String) -> Self {
        Self(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FrameId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Encoding of the stored image bytes (kept exactly as they came; never re-encoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Jpeg,
    Png,
}

impl ImageFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpeg",
            ImageFormat::Png => "png",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Png => "png",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "jpeg" => Some(ImageFormat::Jpeg),
            "png" => Some(ImageFormat::Png),
            _ => None,
        }
    }
}

/// Pinhole camera intrinsics of a frame, with the full projection matrix when the source has one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Camera {
    pub fx: f64,
    pub fy: f64,
    pub cx: f64,
    pub cy: f64,
    /// Row-major 3x4 projection matrix (KITTI's P2: rectified camera to image of camera 2).
    pub projection: Option<[f64; 12]>,
    /// Height of the camera above the ground plane in metres, when known (KITTI: 1.65 m).
    pub height_m: Option<f64>,
}

impl Camera {
    /// Intrinsics from a row-major 3x4 projection matrix `P = K [R|t]`.
    pub fn from_projection(p: [f64; 12]) -> Self {
        Self {
            fx: p[0],
            fy: p[5],
            cx: p[2],
            cy: p[6],
            projection: Some(p),
            height_m: None,
        }
    }
}

/// One real or generated frame: its identity and metadata. The bytes travel in [`FrameRecord`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    pub id: FrameId,
    pub split: String,
    /// Where the image came from: an absolute path, or `clip.mp4#t=1520ms` for video frames.
    pub source_uri: String,
    /// The image's name in its source dataset, relative to the dataset root (`images/train/x.jpg`),
    /// used by exporters to keep names recognisable.
    pub image_name: String,
    pub image_format: ImageFormat,
    pub width: u32,
    pub height: u32,
    pub camera: Option<Camera>,
    /// Name of the semantic-label image in the source dataset (the `semantic_label` of `CamVid`).
    pub semantic_label: Option<String>,
    /// Sequence or clip the frame belongs to (video file, `CamVid` sequence, `BDD100K` video name).
    pub sequence: Option<String>,
    /// Time of the frame within its sequence, milliseconds.
    pub timestamp_ms: Option<f64>,
    /// Extra fields of the source (BDD100K weather/timeofday/scene, COCO license, ...).
    pub attributes: Attributes,
    pub provenance: Provenance,
}

/// How a frame came to be: its source and every operation applied since.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// Format it was ingested from (`kitti`, `coco`, `yolo`, `bdd100k`, `video`).
    pub source_format: String,
    /// The frame this one was derived from, for generated frames.
    pub parent: Option<FrameId>,
    pub steps: Vec<ProvenanceStep>,
}

/// One operation applied to a frame, with everything needed to redo it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvenanceStep {
    pub operation: String,
    pub scenario: Option<String>,
    pub seed: Option<u64>,
    /// Every parameter of the operation.
    pub params: serde_json::Value,
    pub tool_version: String,
}

/// A frame with its annotations and bytes: the unit that flows between stages and into storage.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameRecord {
    pub frame: Frame,
    pub annotations: Vec<Annotation>,
    /// The encoded image exactly as it came. `None` when read back with image bytes projected out.
    pub image: Option<Vec<u8>>,
    /// The encoded semantic-label image, when the dataset has one. `None` when projected out.
    pub semantic_label: Option<Vec<u8>>,
}
