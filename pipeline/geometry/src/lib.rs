//! Ground plane and camera geometry: horizon, row depth and pixel height from intrinsics or fitted from real boxes, and drivable and roadside masks with their cache.
//!
//! The model is a pinhole camera at height `h_cam` above a flat road, looking level (zero pitch
//! and roll). With focal length `fy` (pixels) and the horizon at row `v0`:
//!
//! - a point of the road at depth `Z` projects to row `v = v0 + fy * h_cam / Z`, so the
//!   ground-plane depth of row `v > v0` is `Z(v) = fy * h_cam / (v - v0)`;
//! - an object of height `H` standing at depth `Z` is `H * fy / Z` pixels tall, which, with its
//!   foot on row `v`, is `H * (v - v0) / h_cam`: heights at a row do not depend on `fy`.
//!
//! [`GroundModel`] holds `v0`, `fy` and `h_cam` and records where they came from
//! ([`GeometrySource`]): the frame's intrinsics (KITTI's P2 and 1.65 m), a robust fit on the
//! dataset's own boxes of known-size classes ([`fit_from_boxes`], [`fit_dataset`]), or a horizon
//! prior. Without intrinsics `fy` is not observable from boxes; it comes from an assumed
//! horizontal field of view (recorded in the source), and only metric depths depend on it.
//!
//! Ground masks ([`GroundMasks`]: drivable and roadside) come from the best source a frame has:
//! its semantic labels, a drivable-area model behind the [`DrivableSegmenter`] trait (implemented
//! by `roadsynth-models`, so this crate stays free of ONNX Runtime), or the region below the
//! horizon. [`MaskCache`] keeps them as PNGs beside the dataset; [`placement_band`] turns a depth
//! range into the rows and drivable pixels where a foot point at that depth can go.

mod bands;
mod cache;
mod error;
mod fit;
mod ground;
mod mask;

pub use bands::{PlacementBand, placement_band};
pub use cache::MaskCache;
pub use error::GeometryError;
pub use fit::{
    BoxObservation, ClassPrior, DatasetFit, DatasetGeometry, FitOptions, fit_dataset,
    fit_from_boxes, observations,
};
pub use ground::{
    DEFAULT_HFOV_DEG, GeometrySource, GroundModel, focal_from_hfov, footprint_depths,
};
pub use mask::{
    DEFAULT_ROADSIDE_WIDTH_M, DrivableMask, DrivableSegmenter, GroundMasks, MaskSource,
    SegmenterError, SemanticRoadClasses, ground_masks, masks_below_horizon, masks_from_label_image,
    masks_from_labels, roadside_near,
};
