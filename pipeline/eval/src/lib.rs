//! Detection evaluation: COCO mAP identical to pycocotools (hotcoco), slices by attribute and KITTI difficulty, bootstrap confidence intervals.
//!
//! # Use
//!
//! ```no_run
//! # fn main() -> Result<(), roadsynth_eval::EvalError> {
//! use roadsynth_eval::{Bootstrap, ClassMap, Detections, EvalOptions, GroundTruth, SliceSpec};
//! let gt = GroundTruth::open("data/ds".as_ref(), Some("val"), &ClassMap::identity())?;
//! let detections = Detections::read("preds.json".as_ref())?;
//! let options = EvalOptions {
//!     slices: vec![SliceSpec::by("origin"), SliceSpec::parse("fog_visibility_m:150,300,600")?],
//!     kitti_difficulty: None,
//!     bootstrap: Some(Bootstrap::default()),
//! };
//! let report = roadsynth_eval::evaluate(&gt, &detections, &options)?;
//! println!("{report}");
//! # Ok(()) }
//! ```
//!
//! # What the numbers are
//!
//! The overall figures and the per-class AP come from hotcoco, a pure-Rust port of pycocotools'
//! `COCOeval` (bbox, `IoU` 0.50:0.05:0.95, 101 recall points, 1/10/100 detections per image, COCO's
//! small/medium/large), run on the ground truth as the COCO export writes it; the integration test
//! checks all twelve figures and per-class AP against pycocotools to 1e-6 on real data with crowd
//! regions. Detections must use the export's image and category ids ([`GroundTruth`] says how
//! they are numbered). Crowd and ignore regions are `iscrowd` ground truth; how ignore regions of
//! classes that are not evaluated (KITTI `DontCare`) apply is in [`GroundTruth`].
//!
//! [`pr_curves`] gives each class's precision at COCO's 101 recall points for one `IoU`
//! threshold, read from the same accumulation (pycocotools' `eval['precision'][t, :, k, 0, -1]`,
//! checked against it in the same test); at 0.5 a curve's mean is the class's AP50.
//!
//! Slices ([`SliceSpec`]) and KITTI difficulty levels ([`KittiLevel`]) are each one more hotcoco
//! run on a view of the ground truth in which objects outside the slice are ignored the way COCO
//! ignores objects outside an area range. KITTI levels report COCO's AP on KITTI's difficulty
//! subsets (ignoring detections below the level's minimum height, as the KITTI devkit does), not
//! the KITTI benchmark's `AP|R40` at class-specific `IoU`.
//!
//! # Bootstrap
//!
//! Intervals ([`Bootstrap`]) resample the evaluated images with replacement. Matching is done
//! once: hotcoco's per-image results (`eval_imgs`) are reduced to a table of, per category and
//! area range, each detection's image and true/false-positive flag per `IoU` threshold plus each
//! image's ground-truth count. A resample is then a weighted pass over that table (an image drawn
//! twice counts twice), which is pycocotools' `accumulate` for that multiset of images, so 1000
//! resamples of ~100 images take well under a second instead of 1000 full evaluations. Two arms
//! ([`compare`]) are re-accumulated on the same resamples, which gives the paired interval of
//! their difference. The match of a detection does not depend on which other images are in the
//! resample, so this is exact, not an approximation.

mod bootstrap;
mod detections;
mod error;
mod ground_truth;
mod report;
mod slices;
mod table;
#[cfg(test)]
mod tests;

pub use bootstrap::{Bootstrap, Interval};
pub use detections::{Detection, DetectionCounts, Detections};
pub use error::EvalError;
pub use ground_truth::{ClassMap, GroundTruth};
pub use report::{
    ClassMetrics, ClassPrCurve, Comparison, Difference, DifficultyReport, EvalOptions, EvalReport,
    Metrics, SliceReport, Summary, SummaryIntervals, compare, evaluate, pr_curves,
};
pub use slices::{KittiLevel, MISSING, SliceSpec};
