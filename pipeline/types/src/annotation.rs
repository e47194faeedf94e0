use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::BBox;

/// Free attributes of an annotation or a frame (BDD100K `weather`, a species, `depth_m`, ...).
/// Values keep their JSON type. Sorted, so equal attributes serialise to equal bytes.
pub type Attributes = BTreeMap<String, serde_json::Value>;

/// One labelled object (or ignore region) in a frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    /// Class name as the source dataset spells it (`Car`, `car`, `animal`, ...).
    pub class: String,
    pub bbox: BBox,
    /// Fraction of the object outside the image, `0..=1` (KITTI, BDD100K as 0/1).
    pub truncated: Option<f32>,
    /// Occlusion level: KITTI's 0 fully visible, 1 partly, 2 largely occluded, 3 unknown;
    /// BDD100K's boolean becomes 0 or 1.
    pub occluded: Option<u8>,
    /// COCO `iscrowd`: a group of objects; a detection on it is neither a hit nor a miss.
    pub crowd: bool,
    /// A region to ignore in training and evaluation (KITTI `DontCare`).
    pub ignore: bool,
    pub attributes: Attributes,
    pub mask: Option<Mask>,
    /// KITTI's 3D fields, when the source has them.
    pub kitti: Option<Kitti3d>,
    pub origin: Origin,
}

impl Annotation {
    /// A real, plain box annotation; the other fields start empty.
    pub fn real(class: impl Into<String>, bbox: BBox) -> Self {
        Self {
            class: class.into(),
            bbox,
            truncated: None,
            occluded: None,
            crowd: false,
            ignore: false,
            attributes: Attributes::new(),
            mask: None,
            kitti: None,
            origin: Origin::Real,
        }
    }
}

/// An instance mask, as COCO stores them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Mask {
    /// One or more polygons, each `[x0, y0, x1, y1, ...]` in pixels.
    Polygons(Vec<Vec<f64>>),
    Rle(Rle),
}

/// COCO run-length encoding, column-major, starting with a run of zeros.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rle {
    /// `[height, width]`, COCO's order.
    pub size: [u32; 2],
    pub counts: RleCounts,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RleCounts {
    /// Plain run lengths (COCO's "uncompressed RLE", used for crowd regions in JSON).
    Runs(Vec<u32>),
    /// pycocotools' compressed LEB128-like string form.
    Compressed(String),
}

/// KITTI's 3D object fields, in the rectified camera frame (metres, radians).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Kitti3d {
    /// Observation angle, `-pi..pi`.
    pub alpha: f64,
    /// Object height, width, length in metres (KITTI's order).
    pub dimensions_hwl: [f64; 3],
    /// Bottom-centre location `x y z` in camera coordinates, metres.
    pub location_xyz: [f64; 3],
    pub rotation_y: f64,
    /// Detection score (only in result files, the 16th field).
    pub score: Option<f64>,
}

/// Where an annotation came from: a real label, or an operation of roadsynth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    Real,
    Generated {
        /// The operation that made it (`insert_objects`, `edit_vehicles`, `weather`).
        operation: String,
        /// Name of the scenario that asked for it.
        scenario: String,
        seed: u64,
    },
}

impl Origin {
    pub fn is_real(&self) -> bool {
        matches!(self, Origin::Real)
    }
}
