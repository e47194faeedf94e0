//! The horizon and the row-to-scale relation fitted on a dataset's own boxes.
//!
//! An object of height `H` standing on row `v` of a level camera at height `h_cam` is
//! `h_px = H * (v - v0) / h_cam` pixels tall. With `H` from a class prior, each box of a
//! known-size class gives a point `(v_bottom, h_px / H)` on the line `s = a * (v - v0)` with
//! `a = 1 / h_cam`. The fit is least median of squares over pairs of boxes (robust to half the
//! boxes being wrong: merged, occluded, mislabelled), refined by iteratively reweighted least
//! squares with Tukey's biweight, both on relative height errors.

use std::collections::BTreeMap;

use rayon::prelude::*;
use roadsynth_types::{Annotation, Frame};
use serde::{Deserialize, Serialize};

use crate::{DEFAULT_HFOV_DEG, GeometryError, GeometrySource, GroundModel, focal_from_hfov};

/// The typical real height of a class, for fitting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassPrior {
    /// The name recorded in the fit's source.
    pub name: String,
    /// Class names (compared case-insensitively) that this prior covers.
    pub aliases: Vec<String>,
    /// Mean object height, metres.
    pub height_m: f64,
}

impl ClassPrior {
    pub fn new(name: &str, aliases: &[&str], height_m: f64) -> Self {
        Self {
            name: name.to_string(),
            aliases: aliases.iter().map(|a| (*a).to_string()).collect(),
            height_m,
        }
    }

    /// The default priors: mean heights of the KITTI object training labels, as tabulated in
    /// Frustum `PointNets` (Qi et al., CVPR 2018; `g_type_mean_size` in `models/model_util.py` of
    /// charlesq34/frustum-pointnets) and reused by monocular 3D detectors (`GUPNet`, `MonoDLE`):
    /// Car 1.526 m, Pedestrian 1.763 m, Cyclist 1.737 m. A cyclist's box spans rider and bicycle.
    pub fn defaults() -> Vec<ClassPrior> {
        vec![
            ClassPrior::new("car", &["car"], 1.53),
            ClassPrior::new("pedestrian", &["pedestrian", "person"], 1.76),
            ClassPrior::new("cyclist", &["cyclist", "bicyclist", "rider"], 1.74),
        ]
    }

    fn covers(&self, class: &str) -> bool {
        self.aliases.iter().any(|a| a.eq_ignore_ascii_case(class))
    }
}

/// How boxes are chosen and the geometry is fitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitOptions {
    pub priors: Vec<ClassPrior>,
    /// Boxes shorter than this (pixels) are skipped: their heights are mostly rounding.
    pub min_height_px: f64,
    /// Boxes truncated by more than this fraction (when the source says) are skipped.
    pub max_truncation: f32,
    /// Boxes with a higher occlusion level (KITTI's 0..3, 3 unknown) are skipped.
    pub max_occlusion: u8,
    /// Boxes whose top or bottom lies within this many pixels of the image edge are skipped: the
    /// image cuts them, whatever the labels say about truncation.
    pub border_margin_px: f64,
    /// Fewest usable boxes for a fit; a sequence with fewer uses the dataset's fit.
    pub min_boxes: usize,
    /// Horizontal field of view assumed for the focal length of a fitted model, degrees.
    pub hfov_deg: f64,
    /// Camera height used for frames with intrinsics but no height, metres.
    pub default_camera_height_m: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            priors: ClassPrior::defaults(),
            min_height_px: 12.0,
            max_truncation: 0.1,
            max_occlusion: 1,
            border_margin_px: 2.0,
            min_boxes: 8,
            hfov_deg: DEFAULT_HFOV_DEG,
            default_camera_height_m: GroundModel::ASSUMED_CAMERA_HEIGHT_M,
        }
    }
}

/// One box usable for the fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoxObservation {
    /// The prior's name (`car`, `pedestrian`, `cyclist`).
    pub class: String,
    /// The box's bottom row `y1`: where the object stands.
    pub bottom_row: f64,
    pub height_px: f64,
    /// The class prior's height, metres.
    pub prior_height_m: f64,
}

impl BoxObservation {
    /// Pixels per metre of object height: the fitted quantity.
    fn scale(&self) -> f64 {
        self.height_px / self.prior_height_m
    }
}

/// The boxes of a frame usable for the fit: real, not ignored or crowd, of a class with a prior,
/// not (known to be) truncated or occluded beyond the options, not cut by the top or bottom edge,
/// not tiny.
pub fn observations(
    frame: &Frame,
    annotations: &[Annotation],
    opts: &FitOptions,
) -> Vec<BoxObservation> {
    let image_height = f64::from(frame.height);
    annotations
        .iter()
        .filter(|a| a.origin.is_real() && !a.ignore && !a.crowd)
        .filter(|a| a.truncated.is_none_or(|t| t <= opts.max_truncation))
        .filter(|a| a.occluded.is_none_or(|o| o <= opts.max_occlusion))
        .filter(|a| {
            a.bbox.height() >= opts.min_height_px
                && a.bbox.y0 > opts.border_margin_px
                && a.bbox.y1 < image_height - opts.border_margin_px
        })
        .filter_map(|a| {
            let prior = opts.priors.iter().find(|p| p.covers(&a.class))?;
            Some(BoxObservation {
                class: prior.name.clone(),
                bottom_row: a.bbox.y1,
                height_px: a.bbox.height(),
                prior_height_m: prior.height_m,
            })
        })
        .collect()
}

/// Fits a [`GroundModel`] (horizon and camera height) on boxes of known-size classes; the focal
/// length comes from `opts.hfov_deg` and `image_width`. The source records the classes, the number
/// of boxes and the median relative height error.
pub fn fit_from_boxes(
    obs: &[BoxObservation],
    image_width: u32,
    opts: &FitOptions,
) -> Result<GroundModel, GeometryError> {
    let usable: Vec<&BoxObservation> = obs
        .iter()
        .filter(|o| {
            o.bottom_row.is_finite()
                && o.height_px.is_finite()
                && o.height_px > 0.0
                && o.prior_height_m > 0.0
        })
        .collect();
    let needed = opts.min_boxes.max(2);
    if usable.len() < needed {
        return Err(GeometryError::TooFewBoxes {
            usable: usable.len(),
            needed,
        });
    }
    let points: Vec<(f64, f64)> = usable.iter().map(|o| (o.bottom_row, o.scale())).collect();
    let (a, v0) = least_median_start(&points).ok_or_else(|| {
        GeometryError::FitFailed(
            "no pair of boxes gives a positive scale growth with the row (are the boxes' rows all equal?)"
                .into(),
        )
    })?;
    let (a, v0) = reweighted(&points, a, v0);
    if !(a > 0.0 && a.is_finite() && v0.is_finite()) {
        return Err(GeometryError::FitFailed(format!(
            "the fit gives scale slope {a} and horizon {v0}; a positive slope is needed"
        )));
    }
    let residual = median_abs_relative(&points, a, v0);
    let mut classes: Vec<String> = usable.iter().map(|o| o.class.clone()).collect();
    classes.sort();
    classes.dedup();
    GroundModel {
        horizon_row: v0,
        focal_px: focal_from_hfov(image_width, opts.hfov_deg),
        camera_height_m: 1.0 / a,
        source: GeometrySource::FittedFromBoxes {
            classes,
            n: usable.len(),
            residual,
            assumed_hfov_deg: opts.hfov_deg,
        },
    }
    .checked()
}

/// The ground geometry of a dataset: a fit over all its boxes and one per sequence that has
/// enough boxes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetGeometry {
    /// The fit over every frame's boxes; `None` when there were too few or the fit failed.
    pub dataset: Option<GroundModel>,
    /// Why there is no dataset fit, when there is none.
    pub dataset_error: Option<String>,
    /// Fits per `Frame::sequence`, for sequences with at least `min_boxes` usable boxes.
    pub sequences: BTreeMap<String, GroundModel>,
    pub options: FitOptions,
}

impl DatasetGeometry {
    /// The best model for a frame: its intrinsics when it has a camera, else its sequence's fit,
    /// else the dataset's fit, else the horizon prior. A fitted model's focal length is set from
    /// the frame's own width.
    pub fn for_frame(&self, frame: &Frame) -> GroundModel {
        if let Some(camera) = &frame.camera
            && let Ok(model) =
                GroundModel::from_camera(camera, self.options.default_camera_height_m)
        {
            return model;
        }
        let fitted = frame
            .sequence
            .as_ref()
            .and_then(|s| self.sequences.get(s))
            .or(self.dataset.as_ref());
        match fitted {
            Some(model) => GroundModel {
                focal_px: focal_from_hfov(frame.width, self.options.hfov_deg),
                ..model.clone()
            },
            None => GroundModel::horizon_prior(frame.width, frame.height, self.options.hfov_deg),
        }
    }
}

/// Fits the geometry of a dataset (and of each of its sequences) on its real boxes. A failed fit
/// leaves its model out (with the reason for the dataset's); [`DatasetGeometry::for_frame`] then
/// falls back.
pub fn fit_dataset<'a>(
    frames: impl IntoIterator<Item = (&'a Frame, &'a [Annotation])>,
    opts: &FitOptions,
) -> DatasetGeometry {
    let mut fit = DatasetFit::new(opts);
    for (frame, annotations) in frames {
        fit.add(frame, annotations);
    }
    fit.finish()
}

/// [`fit_dataset`] one frame at a time, for a caller that streams the dataset: it keeps only the
/// usable boxes' observations and the frame widths' counts, never a frame or its annotations.
#[derive(Debug, Clone)]
pub struct DatasetFit {
    opts: FitOptions,
    all: Vec<BoxObservation>,
    widths: WidthCounts,
    by_sequence: BTreeMap<String, (Vec<BoxObservation>, WidthCounts)>,
}

impl DatasetFit {
    pub fn new(opts: &FitOptions) -> Self {
        Self {
            opts: opts.clone(),
            all: Vec::new(),
            widths: WidthCounts::default(),
            by_sequence: BTreeMap::new(),
        }
    }

    /// Adds a frame's usable boxes.
    pub fn add(&mut self, frame: &Frame, annotations: &[Annotation]) {
        let obs = observations(frame, annotations, &self.opts);
        if let Some(sequence) = &frame.sequence {
            let entry = self.by_sequence.entry(sequence.clone()).or_default();
            entry.0.extend(obs.iter().cloned());
            entry.1.add(frame.width);
        }
        self.all.extend(obs);
        self.widths.add(frame.width);
    }

    /// Fits the dataset and each sequence on the boxes added.
    pub fn finish(self) -> DatasetGeometry {
        let opts = self.opts;
        let sequences = self
            .by_sequence
            .into_iter()
            .filter_map(|(name, (obs, widths))| {
                let model = fit_from_boxes(&obs, widths.median(), &opts).ok()?;
                Some((name, model))
            })
            .collect();
        let (dataset, dataset_error) = match fit_from_boxes(&self.all, self.widths.median(), &opts)
        {
            Ok(model) => (Some(model), None),
            Err(e) => (None, Some(e.to_string())),
        };
        DatasetGeometry {
            dataset,
            dataset_error,
            sequences,
            options: opts,
        }
    }
}

/// How many frames have each width: the median without a list of every frame's.
#[derive(Debug, Clone, Default)]
struct WidthCounts(BTreeMap<u32, usize>);

impl WidthCounts {
    fn add(&mut self, width: u32) {
        *self.0.entry(width).or_default() += 1;
    }

    /// The element at index `n / 2` of the sorted widths (the upper median), 0 when there are none.
    fn median(&self) -> u32 {
        let mut rank = self.0.values().sum::<usize>() / 2;
        for (&width, &count) in &self.0 {
            if rank < count {
                return width;
            }
            rank -= count;
        }
        0
    }
}

/// Most candidate pairs tried by the least-median start.
const MAX_PAIRS: usize = 4000;

/// Log-ratio of the predicted to the observed scale: the symmetric relative error that both fit
/// steps minimise (a box half as tall and one twice as tall as predicted weigh the same). Points at
/// or above the horizon have an infinite error.
fn log_error(a: f64, v0: f64, (v, s): (f64, f64)) -> f64 {
    let predicted = a * (v - v0);
    if predicted > 0.0 {
        (predicted / s).ln()
    } else {
        f64::INFINITY
    }
}

/// Least median of squares: among lines through pairs of points (all pairs, or a fixed
/// pseudo-random sample of them), the one whose median absolute log error is least.
fn least_median_start(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len();
    let all_pairs = n * (n - 1) / 2;
    let mut pairs: Vec<(usize, usize)> = Vec::with_capacity(all_pairs.min(MAX_PAIRS));
    if all_pairs <= MAX_PAIRS {
        for i in 0..n {
            for j in i + 1..n {
                pairs.push((i, j));
            }
        }
    } else {
        // Deterministic: the same boxes give the same fit.
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        while pairs.len() < MAX_PAIRS {
            let i = (splitmix64(&mut state) % n as u64) as usize;
            let j = (splitmix64(&mut state) % n as u64) as usize;
            if i != j {
                pairs.push((i, j));
            }
        }
    }
    // Every pair's line is scored independently, on all cores; the least median wins, the
    // first such pair on ties, exactly as a serial scan would choose.
    let best = pairs
        .par_iter()
        .enumerate()
        .map_init(
            || vec![0u64; n],
            |keys, (index, &(i, j))| {
                let ((vi, si), (vj, sj)) = (points[i], points[j]);
                if (vj - vi).abs() < 1.0 {
                    return None;
                }
                let a = (sj - si) / (vj - vi);
                if !(a > 0.0 && a.is_finite()) {
                    return None;
                }
                let v0 = vi - si / a;
                // |ln r| of r = predicted / observed ranks as max(r, 1/r), and positive floats
                // rank as their bits: the median is selected among integers, with one logarithm
                // per pair instead of one per point (the logarithms were half the fit's time).
                for (key, &(v, s)) in keys.iter_mut().zip(points) {
                    let predicted = a * (v - v0);
                    let r = predicted / s;
                    *key = if predicted > 0.0 {
                        r.max(1.0 / r).to_bits()
                    } else {
                        f64::INFINITY.to_bits()
                    };
                }
                let mid = keys.len() / 2;
                let median = f64::from_bits(*keys.select_nth_unstable(mid).1).ln();
                Some((median, index, a, v0))
            },
        )
        .flatten()
        .min_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    best.map(|(_, _, a, v0)| (a, v0))
}

/// Iteratively reweighted Gauss-Newton on the log errors `ln a + ln(v - v0) - ln s`, with
/// Tukey's biweight (an MM-type estimate): the scale is fixed from the least-median start
/// (Rousseeuw's consistency-corrected `1.4826 (1 + 5 / (n - p)) med |r|`), and points beyond 2.5
/// scales get no weight. The usual 4.685 (95% Gaussian efficiency) lets the one-sided
/// contamination of real boxes (fragments of occluded objects are all too short) pull the line:
/// on KITTI it recovers the true camera height but predicts held-out boxes worse (median 15.1%
/// against 12.2%), and on `CamVid` it drifts to a 2 m camera.
fn reweighted(points: &[(f64, f64)], a: f64, v0: f64) -> (f64, f64) {
    const TUKEY_C: f64 = 2.5;
    let (mut ln_a, mut v0) = (a.ln(), v0);
    let mut abs: Vec<f64> = points.iter().map(|&p| log_error(a, v0, p).abs()).collect();
    let n = points.len() as f64;
    let cutoff =
        TUKEY_C * (1.4826 * (1.0 + 5.0 / (n - 2.0).max(1.0)) * median_in_place(&mut abs)).max(1e-3);
    for _ in 0..50 {
        let a = ln_a.exp();
        let residuals: Vec<f64> = points.iter().map(|&p| log_error(a, v0, p)).collect();
        // Normal equations of the weighted linearised problem; the Jacobian row of a point is
        // (1, -1 / (v - v0)).
        let (mut h00, mut h01, mut h11, mut g0, mut g1) = (0.0, 0.0, 0.0, 0.0, 0.0);
        let mut lowest_weighted_row = f64::INFINITY;
        for (&(v, _), &r) in points.iter().zip(&residuals) {
            let u = r / cutoff;
            // NaN and infinite errors (points at the horizon) get no weight either.
            if u.is_nan() || u.abs() >= 1.0 {
                continue;
            }
            let w = (1.0 - u * u).powi(2);
            let j1 = -1.0 / (v - v0);
            h00 += w;
            h01 += w * j1;
            h11 += w * j1 * j1;
            g0 += w * r;
            g1 += w * j1 * r;
            lowest_weighted_row = lowest_weighted_row.min(v);
        }
        let det = h00 * h11 - h01 * h01;
        if h00 <= 0.0 || det <= f64::EPSILON * h00 * h11 {
            break;
        }
        let d_ln_a = -(h11 * g0 - h01 * g1) / det;
        let mut d_v0 = -(h00 * g1 - h01 * g0) / det;
        // Keep the weighted points below the horizon.
        let room = lowest_weighted_row - v0;
        let mut scale = 1.0;
        while v0 + scale * d_v0 >= lowest_weighted_row - 0.01 * room && scale > 1e-6 {
            scale /= 2.0;
        }
        d_v0 *= scale;
        ln_a += scale * d_ln_a;
        v0 += d_v0;
        if (scale * d_ln_a).abs() < 1e-10 && d_v0.abs() < 1e-7 {
            break;
        }
    }
    (ln_a.exp(), v0)
}

fn median_abs_relative(points: &[(f64, f64)], a: f64, v0: f64) -> f64 {
    let mut errors: Vec<f64> = points
        .iter()
        .map(|&(v, s)| (a * (v - v0) / s - 1.0).abs())
        .collect();
    median_in_place(&mut errors)
}

/// The median (the upper one for an even count); NaN for no values.
fn median_in_place(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mid = values.len() / 2;
    *values.select_nth_unstable_by(mid, f64::total_cmp).1
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Synthetic boxes on a known ground plane, with a fraction of gross outliers.
    fn synthetic(v0: f64, h_cam: f64, n: usize, outlier_every: usize) -> Vec<BoxObservation> {
        let mut state = 7_u64;
        (0..n)
            .map(|i| {
                let v = v0 + 20.0 + (splitmix64(&mut state) % 150) as f64;
                let noise = 1.0 + ((splitmix64(&mut state) % 1000) as f64 / 1000.0 - 0.5) * 0.1;
                let mut h = 1.53 * (v - v0) / h_cam * noise;
                if outlier_every > 0 && i % outlier_every == 0 {
                    h *= 2.5;
                }
                BoxObservation {
                    class: "car".into(),
                    bottom_row: v,
                    height_px: h,
                    prior_height_m: 1.53,
                }
            })
            .collect()
    }

    #[test]
    fn recovers_a_known_plane_despite_outliers() {
        let obs = synthetic(180.0, 1.65, 300, 4);
        let m = fit_from_boxes(&obs, 1242, &FitOptions::default()).expect("fits");
        assert!((m.horizon_row - 180.0).abs() < 2.0, "{m:?}");
        assert!((m.camera_height_m - 1.65).abs() < 0.05, "{m:?}");
        let GeometrySource::FittedFromBoxes { n, residual, .. } = &m.source else {
            panic!("fitted source expected, got {:?}", m.source);
        };
        assert_eq!(*n, 300);
        assert!(*residual < 0.05, "{residual}");
        assert_eq!(m.source.as_str(), "fitted");
    }

    #[test]
    fn too_few_or_degenerate_boxes_are_errors() {
        let obs = synthetic(180.0, 1.65, 3, 0);
        assert!(matches!(
            fit_from_boxes(&obs, 640, &FitOptions::default()),
            Err(GeometryError::TooFewBoxes { usable: 3, .. })
        ));
        let flat: Vec<BoxObservation> = (0..10)
            .map(|_| BoxObservation {
                class: "car".into(),
                bottom_row: 200.0,
                height_px: 30.0,
                prior_height_m: 1.53,
            })
            .collect();
        assert!(matches!(
            fit_from_boxes(&flat, 640, &FitOptions::default()),
            Err(GeometryError::FitFailed(_))
        ));
    }

    #[test]
    fn the_fit_is_deterministic() {
        let obs = synthetic(150.0, 1.4, 2000, 3);
        let a = fit_from_boxes(&obs, 640, &FitOptions::default()).expect("fits");
        let b = fit_from_boxes(&obs, 640, &FitOptions::default()).expect("fits");
        assert_eq!(a, b);
    }
}
