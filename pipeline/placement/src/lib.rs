//! Geometry-aware location model: where inserted objects stand, at what depth and pixel size, seeded; plus the naive baseline.
//!
//! The geometry-aware model follows the factorisation of Qualcomm's scene-aware location model
//! (arXiv 2504.17076): pick a class; sample a depth from the class's log-normal; put the object's
//! foot point on allowed ground pixels whose ground-plane depth matches that depth (a "placement
//! band"); sample the object's real height for the class and turn it into pixels at that depth;
//! derive the width from the height through the class's length, width and a random heading. The
//! naive baseline (uniform position and scale, as in Copy-Paste) ignores all of this, so the
//! benefit of the geometry can be measured.
//!
//! Planning is a pure function of (scenario seed, frame id, variant): the same seed gives the same
//! plan, in any order and on any machine.

mod plan_table;
mod stage;
mod stats;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal as NormalDist};
use roadsynth_scenario::settings::{InsertObjects, ObjectClass, PlacementModel, PlacementRegion};
use roadsynth_types::{Annotation, BBox};

pub use plan_table::PlanRow;
pub use stage::{
    FramePlanRows, PlanError, PlanOptions, PlanSummary, ScenarioPlanner, cache_model_masks,
    dataset_geometry, plan_dataset, scenario_splits,
};
pub use stats::{ClassStats, ClassStatsBuilder, class_stats_from_annotations};

/// Ground-plane geometry of a frame: what placement needs to know about the camera.
pub trait GroundGeometry {
    /// Image row of the horizon (rows below it see the ground).
    fn horizon_row(&self) -> f64;
    /// Image row of a ground point at depth `z_m` metres.
    fn row_at_depth(&self, z_m: f64) -> f64;
    /// Ground-plane depth seen at image row `v`, `None` at or above the horizon.
    fn depth_at_row(&self, v: f64) -> Option<f64>;
    /// Pixel height of an object `h_m` metres tall standing at depth `z_m`.
    fn pixel_height(&self, h_m: f64, z_m: f64) -> f64;
    /// Where this geometry came from (`intrinsics`, `fitted`, `horizon`), recorded in plans.
    fn source(&self) -> &str;
}

/// A binary mask over a frame, row-major, nonzero = inside.
#[derive(Debug, Clone, Copy)]
pub struct MaskView<'a> {
    pub width: u32,
    pub height: u32,
    pub bits: &'a [u8],
}

impl<'a> From<&'a roadsynth_geometry::DrivableMask> for MaskView<'a> {
    fn from(mask: &'a roadsynth_geometry::DrivableMask) -> Self {
        Self {
            width: mask.width,
            height: mask.height,
            bits: &mask.bits,
        }
    }
}

/// Everything known about one frame that placement uses.
#[derive(Clone, Copy)]
pub struct Scene<'a> {
    pub frame_id: &'a str,
    pub width: u32,
    pub height: u32,
    /// The frame's real annotations: inserted objects must respect them.
    pub existing: &'a [Annotation],
    pub ground: &'a dyn GroundGeometry,
    pub drivable: MaskView<'a>,
    pub roadside: MaskView<'a>,
}

impl std::fmt::Debug for Scene<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scene")
            .field("frame_id", &self.frame_id)
            .field("geometry", &self.ground.source())
            .finish_non_exhaustive()
    }
}

/// One object the engine is asked to render.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedObject {
    pub object_index: u32,
    /// The scenario's class name (`deer`): picks assets.
    pub class: String,
    /// The class written into the generated annotation (`animal`).
    pub label: String,
    /// Target box, pixel `xyxy` (clipped to the image when truncation is allowed).
    pub bbox: BBox,
    /// Foot point column and row.
    pub foot: (f64, f64),
    /// Ground-plane depth of the foot point; `None` for the naive model.
    pub depth_m: Option<f64>,
    pub height_m: f64,
    pub length_m: f64,
    pub width_m: f64,
    /// Heading relative to the image plane, degrees (0 = side view).
    pub yaw_deg: f64,
    /// Fraction of the unclipped box outside the image.
    pub truncated: f64,
}

/// The plan of one frame variant.
#[derive(Debug, Clone, PartialEq)]
pub struct FramePlan {
    pub frame_id: String,
    pub variant: u32,
    /// The seed every random choice of this frame variant derives from.
    pub seed: u64,
    pub model: PlacementModel,
    /// Geometry source, or `none` for the naive model.
    pub geometry: String,
    pub objects: Vec<PlannedObject>,
    /// Objects asked for but not placed (no allowed pixels at any sampled depth, or overlap).
    pub unplaced: u32,
}

/// Objects smaller than this are not worth rendering: nothing can be learnt from them.
pub const MIN_HEIGHT_PX: f64 = 8.0;
/// Relative depth tolerance of a placement band.
pub const BAND_TOLERANCE: f64 = 0.05;
/// Attempts per object before giving up on it.
const MAX_TRIES: u32 = 40;

/// Plans `insert_objects` for frames.
#[derive(Debug, Clone)]
pub struct Planner<'s> {
    settings: &'s InsertObjects,
    scenario_seed: u64,
    /// Per scenario class: depth log-normal `(mu, sigma)` of ln(metres) and height prior.
    priors: Vec<ClassPrior>,
}

#[derive(Debug, Clone, Copy)]
struct ClassPrior {
    depth_mu: f64,
    depth_sigma: f64,
    height_mean: f64,
    height_std: f64,
}

impl<'s> Planner<'s> {
    /// A planner with the scenario's priors, refined by dataset statistics where a class exists
    /// in the dataset (matched by the class name or its label).
    pub fn new(
        settings: &'s InsertObjects,
        scenario_seed: u64,
        dataset_stats: &[ClassStats],
    ) -> Self {
        let (lo, hi) = (settings.distance_min_m.ln(), settings.distance_max_m.ln());
        let priors = settings
            .classes
            .iter()
            .map(|c| {
                let mut p = ClassPrior {
                    // The distance range spans +-2 sigma of the log-normal.
                    depth_mu: f64::midpoint(lo, hi),
                    depth_sigma: ((hi - lo) / 4.0).max(1e-3),
                    height_mean: c.height_m.mean,
                    height_std: c.height_m.std,
                };
                if let Some(s) = dataset_stats.iter().find(|s| s.matches(c)) {
                    s.refine(
                        &mut p.depth_mu,
                        &mut p.depth_sigma,
                        &mut p.height_mean,
                        &mut p.height_std,
                    );
                }
                p
            })
            .collect();
        Self {
            settings,
            scenario_seed,
            priors,
        }
    }

    /// The seed of one frame variant: independent of the order frames are planned in.
    pub fn frame_seed(&self, frame_id: &str, variant: u32) -> u64 {
        variant_seed(self.scenario_seed, frame_id, variant)
    }

    pub fn plan(&self, scene: &Scene<'_>, variant: u32) -> FramePlan {
        let rows = self.region_rows(scene);
        self.plan_with(scene, rows.as_ref(), variant)
    }

    /// Plans variants `0..variants` of a frame, indexing its allowed pixels once.
    pub fn plan_variants(&self, scene: &Scene<'_>, variants: u32) -> Vec<FramePlan> {
        let rows = self.region_rows(scene);
        (0..variants)
            .map(|v| self.plan_with(scene, rows.as_ref(), v))
            .collect()
    }

    fn region_rows<'a>(&self, scene: &Scene<'a>) -> Option<RegionRows<'a>> {
        match self.settings.model {
            PlacementModel::GeometryAware => Some(RegionRows::new(scene, self.settings.region)),
            PlacementModel::Naive => None,
        }
    }

    fn plan_with(&self, scene: &Scene<'_>, bands: Option<&RegionRows>, variant: u32) -> FramePlan {
        let seed = self.frame_seed(scene.frame_id, variant);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let s = self.settings;
        let count = rng.random_range(s.count_min..=s.count_max);
        let mut plan = FramePlan {
            frame_id: scene.frame_id.to_string(),
            variant,
            seed,
            model: s.model,
            geometry: match s.model {
                PlacementModel::GeometryAware => scene.ground.source().to_string(),
                PlacementModel::Naive => "none".to_string(),
            },
            objects: Vec::new(),
            unplaced: 0,
        };
        for index in 0..count {
            let class_idx = self.pick_class(&mut rng);
            let class = &s.classes[class_idx];
            let placed = (0..MAX_TRIES).find_map(|_| {
                let candidate = match bands {
                    Some(rows) => {
                        self.sample_geometric(&mut rng, scene, rows, class, self.priors[class_idx])
                    }
                    None => sample_naive(&mut rng, scene, class),
                }?;
                self.acceptable(scene, &plan.objects, &candidate)
                    .then_some(candidate)
            });
            match placed {
                Some(mut object) => {
                    object.object_index = index;
                    plan.objects.push(object);
                }
                None => plan.unplaced += 1,
            }
        }
        plan
    }

    fn pick_class(&self, rng: &mut ChaCha8Rng) -> usize {
        let total: f64 = self.settings.classes.iter().map(|c| c.weight).sum();
        let mut x = rng.random::<f64>() * total;
        for (i, c) in self.settings.classes.iter().enumerate() {
            x -= c.weight;
            if x < 0.0 {
                return i;
            }
        }
        self.settings.classes.len() - 1
    }

    fn sample_geometric(
        &self,
        rng: &mut ChaCha8Rng,
        scene: &Scene<'_>,
        rows: &RegionRows,
        class: &ObjectClass,
        prior: ClassPrior,
    ) -> Option<PlannedObject> {
        let settings = self.settings;
        // Depth: the class's log-normal, truncated to the scenario's distance range.
        let z = (0..20).find_map(|_| {
            let z = (prior.depth_mu + prior.depth_sigma * standard_normal(rng)).exp();
            (settings.distance_min_m..=settings.distance_max_m)
                .contains(&z)
                .then_some(z)
        })?;
        // The placement band: allowed ground pixels whose depth is within the tolerance of z.
        let ground = scene.ground;
        let far_row = ground.row_at_depth(z * (1.0 + BAND_TOLERANCE)).floor();
        let near_row = ground.row_at_depth(z * (1.0 - BAND_TOLERANCE)).ceil();
        let (u, v) = rows.sample_between(rng, far_row, near_row)?;
        let (u, v) = (f64::from(u) + 0.5, f64::from(v) + 1.0);
        // The foot point's own depth (the band is a range): sizes follow where it actually stands.
        let z = ground.depth_at_row(v).unwrap_or(z);
        if !(settings.distance_min_m..=settings.distance_max_m).contains(&z) {
            return None;
        }

        let height_m = sample_positive(rng, prior.height_mean, prior.height_std);
        let length_m = sample_positive(rng, class.length_m.mean, class.length_m.std);
        let width_m = sample_positive(rng, class.width_m.mean, class.width_m.std);
        let yaw = rng.random_range(0.0..std::f64::consts::PI);
        let h_px = ground.pixel_height(height_m, z);
        if h_px < MIN_HEIGHT_PX {
            return None;
        }
        let apparent_w_m = length_m * yaw.cos().abs() + width_m * yaw.sin().abs();
        let w_px = apparent_w_m * h_px / height_m;
        let unclipped = BBox::new(u - w_px / 2.0, v - h_px, u + w_px / 2.0, v);
        let (bbox, truncated) = clip(
            unclipped,
            scene.width,
            scene.height,
            settings.occlusion.allow_truncation,
        )?;
        Some(PlannedObject {
            object_index: 0,
            class: class.name.clone(),
            label: class.label.clone(),
            bbox,
            foot: (u, v),
            depth_m: Some(z),
            height_m,
            length_m,
            width_m,
            yaw_deg: yaw.to_degrees(),
            truncated,
        })
    }

    /// The occlusion policy: an inserted object may cover at most `max_overlap` of any existing or
    /// already planned object it stands in front of, and be covered by at most that much of any
    /// object in front of it (the nearer one has its foot point lower in the image).
    fn acceptable(
        &self,
        scene: &Scene<'_>,
        planned: &[PlannedObject],
        candidate: &PlannedObject,
    ) -> bool {
        let max = self.settings.occlusion.max_overlap;
        let b = &candidate.bbox;
        let others = scene
            .existing
            .iter()
            .filter(|a| !a.ignore)
            .map(|a| a.bbox)
            .chain(planned.iter().map(|p| p.bbox));
        for e in others {
            let inter = b.intersection(&e);
            if inter <= 0.0 {
                continue;
            }
            let covered = if b.y1 >= e.y1 {
                inter / e.area()
            } else {
                inter / b.area()
            };
            if covered > max {
                return false;
            }
        }
        true
    }
}

fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    NormalDist::new(0.0, 1.0).expect("valid").sample(rng)
}

/// A normal sample clamped to +-2 sigma and to positive values (sizes).
fn sample_positive(rng: &mut ChaCha8Rng, mean: f64, std: f64) -> f64 {
    let x = mean + std * standard_normal(rng).clamp(-2.0, 2.0);
    x.max(mean * 0.1).max(1e-3)
}

/// Clips to the image; `None` when truncation is not allowed and the box sticks out, or when less
/// than half of it would remain.
fn clip(b: BBox, width: u32, height: u32, allow_truncation: bool) -> Option<(BBox, f64)> {
    let (w, h) = (f64::from(width), f64::from(height));
    let inside = b.x0 >= 0.0 && b.y0 >= 0.0 && b.x1 <= w && b.y1 <= h;
    if inside {
        return Some((b, 0.0));
    }
    if !allow_truncation {
        return None;
    }
    let c = BBox::new(b.x0.max(0.0), b.y0.max(0.0), b.x1.min(w), b.y1.min(h));
    let visible = c.area() / b.area();
    (c.width() > 0.0 && c.height() > 0.0 && visible >= 0.5).then_some((c, 1.0 - visible))
}

fn sample_naive(
    rng: &mut ChaCha8Rng,
    scene: &Scene<'_>,
    class: &ObjectClass,
) -> Option<PlannedObject> {
    let (w, h) = (f64::from(scene.width), f64::from(scene.height));
    let h_px = rng.random_range(MIN_HEIGHT_PX..(h / 2.0).max(MIN_HEIGHT_PX + 1.0));
    let yaw = rng.random_range(0.0..std::f64::consts::PI);
    let aspect = (class.length_m.mean * yaw.cos().abs() + class.width_m.mean * yaw.sin().abs())
        / class.height_m.mean;
    let w_px = (h_px * aspect).min(w - 1.0);
    if w_px <= 1.0 || h_px >= h {
        return None;
    }
    let x0 = rng.random_range(0.0..w - w_px);
    let y0 = rng.random_range(0.0..h - h_px);
    let bbox = BBox::new(x0, y0, x0 + w_px, y0 + h_px);
    Some(PlannedObject {
        object_index: 0,
        class: class.name.clone(),
        label: class.label.clone(),
        bbox,
        foot: (x0 + w_px / 2.0, y0 + h_px),
        depth_m: None,
        height_m: class.height_m.mean,
        length_m: class.length_m.mean,
        width_m: class.width_m.mean,
        yaw_deg: yaw.to_degrees(),
        truncated: 0.0,
    })
}

/// Allowed foot-point pixels of a frame, counted by row for fast band sampling: a sample picks
/// the k-th allowed pixel of the band, and only its row is scanned for the column (indexing every
/// allowed pixel of the frame cost more than the planning it served).
struct RegionRows<'a> {
    /// Each row's allowed pixels: the masks' rows that decide it, none where they are missing.
    rows: Vec<AllowedRow<'a>>,
    /// Row `y`'s allowed pixels are numbers `starts[y]..starts[y + 1]` of the frame's.
    starts: Vec<usize>,
}

/// Where a foot point may stand in one row.
#[derive(Clone, Copy)]
enum AllowedRow<'a> {
    None,
    /// Nonzero bytes of one mask's row.
    One(&'a [u8]),
    /// Nonzero bytes of either of two masks' rows.
    Either(&'a [u8], &'a [u8]),
}

impl AllowedRow<'_> {
    fn count(self) -> usize {
        match self {
            AllowedRow::None => 0,
            // Byte sums per block rather than `filter().count()`: the compiler vectorises them.
            AllowedRow::One(row) => row
                .chunks(255)
                .map(|c| usize::from(c.iter().fold(0u8, |n, &b| n + u8::from(b != 0))))
                .sum(),
            AllowedRow::Either(a, b) => a
                .chunks(255)
                .zip(b.chunks(255))
                .map(|(a, b)| {
                    let n = a
                        .iter()
                        .zip(b)
                        .fold(0u8, |n, (&a, &b)| n + u8::from((a | b) != 0));
                    usize::from(n)
                })
                .sum(),
        }
    }

    /// The column of the `k`-th allowed pixel (from 0); none past the row's last.
    fn column(self, k: usize) -> Option<usize> {
        match self {
            AllowedRow::None => None,
            AllowedRow::One(row) => row
                .iter()
                .enumerate()
                .filter(|&(_, &b)| b != 0)
                .nth(k)
                .map(|(x, _)| x),
            AllowedRow::Either(a, b) => a
                .iter()
                .zip(b)
                .enumerate()
                .filter(|&(_, (&a, &b))| a != 0 || b != 0)
                .nth(k)
                .map(|(x, _)| x),
        }
    }
}

impl<'a> RegionRows<'a> {
    fn new(scene: &Scene<'a>, region: PlacementRegion) -> Self {
        // A row of a mask, or none where the mask is shorter than the frame.
        fn row_of<'m>(m: &MaskView<'m>, y: usize, w: usize) -> Option<&'m [u8]> {
            m.bits.get(y * w..(y + 1) * w)
        }
        let (w, h) = (scene.width as usize, scene.height as usize);
        let mut rows = Vec::with_capacity(h);
        let mut starts = Vec::with_capacity(h + 1);
        starts.push(0);
        for y in 0..h {
            let drivable = row_of(&scene.drivable, y, w);
            let roadside = row_of(&scene.roadside, y, w);
            let row = match (region, drivable, roadside) {
                (PlacementRegion::Drivable, Some(row), _)
                | (PlacementRegion::Roadside, _, Some(row))
                | (PlacementRegion::Ground, Some(row), None)
                | (PlacementRegion::Ground, None, Some(row)) => AllowedRow::One(row),
                (PlacementRegion::Ground, Some(d), Some(r)) => AllowedRow::Either(d, r),
                _ => AllowedRow::None,
            };
            starts.push(starts[y] + row.count());
            rows.push(row);
        }
        Self { rows, starts }
    }

    /// A uniformly chosen allowed pixel with row in `first..=last`.
    fn sample_between(&self, rng: &mut ChaCha8Rng, first: f64, last: f64) -> Option<(u32, u32)> {
        // Rows, none for an empty frame.
        let n = self.starts.len().saturating_sub(1) as f64;
        if n == 0.0 {
            return None;
        }
        let first = first.max(0.0).min(n - 1.0) as usize;
        let last = last.max(0.0).min(n - 1.0) as usize;
        if first > last {
            return None;
        }
        let (begin, end) = (self.starts[first], self.starts[last + 1]);
        if begin == end {
            return None;
        }
        let index = begin + rng.random_range(0..end - begin);
        // The row holding the index: the last row starting at or before it.
        let row = self.starts.partition_point(|&s| s <= index) - 1;
        let column = self.rows[row].column(index - self.starts[row])?;
        Some((column as u32, row as u32))
    }
}

/// The seed of one frame variant of a scenario: a hash of the scenario seed, the frame id and the
/// variant, so every stage's random choices for it are independent of order and sharding.
pub fn variant_seed(scenario_seed: u64, frame_id: &str, variant: u32) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&scenario_seed.to_le_bytes());
    h.update(frame_id.as_bytes());
    h.update(&variant.to_le_bytes());
    let bytes = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The block sums count what a filter counts, across the 255-byte blocks' edges, and the k-th
    /// allowed column is the k-th nonzero byte.
    #[test]
    fn allowed_rows_count_and_find_every_nonzero_byte() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for len in [0usize, 1, 254, 255, 256, 511, 960, 1300] {
            let mut byte = |p: f64| -> u8 {
                if rng.random_bool(p) {
                    rng.random_range(1..=255)
                } else {
                    0
                }
            };
            let a: Vec<u8> = (0..len).map(|_| byte(0.9)).collect();
            let b: Vec<u8> = (0..len).map(|_| byte(0.3)).collect();
            let one: Vec<usize> = (0..len).filter(|&x| a[x] != 0).collect();
            let either: Vec<usize> = (0..len).filter(|&x| a[x] != 0 || b[x] != 0).collect();
            for (row, columns) in [
                (AllowedRow::One(&a), &one),
                (AllowedRow::Either(&a, &b), &either),
            ] {
                assert_eq!(row.count(), columns.len(), "{len} bytes");
                for (k, &x) in columns.iter().enumerate() {
                    assert_eq!(row.column(k), Some(x));
                }
                assert_eq!(row.column(columns.len()), None);
            }
        }
        // Full blocks: 255 in each, the most a byte sum holds.
        let full = vec![7u8; 3 * 255 + 4];
        assert_eq!(AllowedRow::One(&full).count(), full.len());
        assert_eq!(AllowedRow::Either(&full, &full).count(), full.len());
    }
}
