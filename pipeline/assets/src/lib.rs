//! Asset bank: RGBA cut-outs of objects from instance-mask datasets, with class, size, viewpoint and lighting cues, in a Parquet table.
//!
//! The compositing engine pastes real objects into real frames. It needs them cut out, and it needs
//! cues to pick a cut-out that fits the target: the class, its size, whether it was truncated or
//! occluded in its source (a cut-out with a missing half looks wrong), its shape and orientation,
//! and how it was lit (a bright, left-lit object pasted into a dim, right-lit scene is the classic
//! tell of a composite). [`AssetBank::build`] makes one asset per instance mask of a dataset;
//! [`measure_lighting`] is public so the engine measures the target region with the very same
//! statistics.
//!
//! Masks are rasterised by [`mask::rasterize`], hotcoco's port of pycocotools' `maskApi.c`, so a
//! cut-out covers exactly the pixels `COCO.annToMask` gives.
//!
//! # On disk
//!
//! ```text
//! DIR/
//!   assets.parquet   one row per asset (below), written atomically
//!   bank.json        build options, source dataset version, counts per class, skips per reason,
//!                    tool and format version
//! ```
//!
//! `assets.parquet` columns, in order (one flat table, so polars, pyarrow and `DuckDB` read it
//! without unnesting):
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `id` | utf8 | stable id: 128-bit BLAKE3 (hex) of `"{source_frame}:{source_annotation}"` |
//! | `class` | utf8 | class name as the source dataset spells it |
//! | `source_frame` | utf8 | frame id (BLAKE3 of the image bytes) the object was cut from |
//! | `source_split` | utf8 | that frame's split |
//! | `source_image` | utf8 | that frame's image name in its source dataset |
//! | `source_annotation` | u32 | index of the annotation within the frame |
//! | `source_x`, `source_y` | u32 | top-left pixel of the cut-out in the source image |
//! | `source_width`, `source_height` | u32 | size of the source image |
//! | `width`, `height` | u32 | size of the cut-out: the tight box of the mask |
//! | `mask_area_px` | u64 | mask pixels (= pixels with alpha 255) |
//! | `touches_border` | bool | the mask reaches an image edge: the object is probably truncated |
//! | `occluded_fraction` | f64 | fraction of the cut-out's box covered by other instances' masks and not by its own |
//! | `aspect` | f64 | `width / height` |
//! | `axis_angle_deg` | f64 | major principal axis of the mask, degrees in `(-90, 90]`, 0 = horizontal, positive = clockwise on screen |
//! | `elongation` | f64 | major over minor principal standard deviation, `>= 1` |
//! | `centroid_offset_x`, `centroid_offset_y` | f64 | mask centroid minus box centre, in box widths / heights |
//! | `heavier_side` | utf8 | `left`, `right` or `balanced`: the side of the box centre the mask centroid lies on, beyond 2 % of the width (a lean of the mass, not a measured facing) |
//! | `lighting_weight` | f64 | pixels measured for the lighting columns |
//! | `l_mean`, `a_mean`, `b_mean` | f64 | mean CIE L\*a\*b\* (D65) over the mask |
//! | `l_std`, `a_std`, `b_std` | f64 | their standard deviations |
//! | `light_dx`, `light_dy` | f64 | unit vector (image axes, y down) towards brighter L\* over the mask; 0, 0 when flat |
//! | `light_strength` | f64 | L\* difference of the fitted ramp between -1 and +1 standard deviation of the mask along that vector |
//! | `light_explained` | f64 | fraction of L\* variance the ramp explains, `0..=1` |
//! | `rgba_png` | binary | the cut-out: source RGB of the box, alpha = mask x 255, PNG |
//!
//! Building is deterministic: the same dataset version and options give the same bytes in both
//! files (no timestamps; assets in dataset order).

mod bank;
pub mod colour;
mod lighting;
pub mod mask;
mod viewpoint;

use std::path::PathBuf;

pub use bank::{
    ASSETS_FILE, Asset, AssetBank, BANK_FILE, BankInfo, BuildOptions, BuildReport, FORMAT_VERSION,
    SkipReason, Skipped,
};
pub use lighting::{Lighting, measure_lighting};
pub use viewpoint::{HeavierSide, Viewpoint, measure_viewpoint};

/// Everything that can stop a build, a write or an open. Problems with single annotations are not
/// here: they are skipped and listed in [`BuildReport::skipped`].
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error("reading dataset {path}: {source}")]
    Dataset {
        path: PathBuf,
        #[source]
        source: roadsynth_dataset::DatasetError,
    },
    #[error("{path}: {source}")]
    Table {
        path: PathBuf,
        #[source]
        source: roadsynth_dataset::DatasetError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid bank description: {source}")]
    BankJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: written with bank format {found}, this build reads up to {supported}")]
    FormatTooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{path}: corrupt asset bank: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("asset {id}: cut-out PNG: {source}")]
    Png {
        id: String,
        #[source]
        source: image::ImageError,
    },
}
