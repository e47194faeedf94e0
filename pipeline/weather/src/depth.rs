//! Depth per pixel, from the best source a frame has, and the masks the effects use.

use std::sync::OnceLock;

use image::RgbImage;
use roadsynth_types::{BBox, Camera};
use serde::{Deserialize, Serialize};

use crate::WeatherError;

/// Focal length assumed when a frame has no calibration, as a fraction of the image width
/// (a horizontal field of view of about 71 degrees, typical of dashcams).
pub const NOMINAL_FOCAL_PER_WIDTH: f64 = 0.7;
/// Camera height above the road assumed when a frame has no calibration, metres.
pub const NOMINAL_CAMERA_HEIGHT_M: f64 = 1.5;

/// How far the scenery is assumed to stand when nothing says (no semantic labels, no
/// drivable-area model): a street's buildings and trees. Every depth is capped at it, sky aside;
/// without it everything above the horizon would be infinitely far, as white as the sky in fog.
pub const ASSUMED_BACKDROP_M: f32 = 50.0;

/// Where a depth map came from, recorded in provenance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DepthSource {
    /// A measured or estimated dense depth map (stereo, lidar, a depth network).
    DepthMap,
    /// The ground plane of a calibrated camera (`k = fy * camera height`, horizon row known).
    GroundPlane,
    /// The ground plane of an assumed camera: only the horizon (or nothing) is known.
    HorizonOnly,
}

/// Pinhole intrinsics: with them, depth (z) becomes the length of the viewing ray, which is the
/// path length Koschmieder's law needs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Intrinsics {
    pub fx: f64,
    pub fy: f64,
    pub cx: f64,
    pub cy: f64,
}

impl From<&Camera> for Intrinsics {
    fn from(c: &Camera) -> Self {
        Self {
            fx: c.fx,
            fy: c.fy,
            cx: c.cx,
            cy: c.cy,
        }
    }
}

/// A binary mask over a frame, row-major, nonzero = inside (drivable space, pavement, sky).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PixelMask {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl PixelMask {
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Result<Self, WeatherError> {
        let mask = Self {
            width,
            height,
            data,
        };
        mask.check("mask", width, height)?;
        Ok(mask)
    }

    /// Pixels of a label image (one byte per pixel) whose label is one of `labels`.
    pub fn from_labels(
        width: u32,
        height: u32,
        labels: &[u8],
        of: &[u8],
    ) -> Result<Self, WeatherError> {
        // A table over every label value: one load per pixel instead of a search of `of`.
        let mut member = [0u8; 256];
        for &l in of {
            member[usize::from(l)] = 1;
        }
        Self::new(
            width,
            height,
            labels.iter().map(|&l| member[usize::from(l)]).collect(),
        )
    }

    /// Pixels inside `self` or `other` (same size).
    pub fn union(&self, other: &PixelMask) -> Result<Self, WeatherError> {
        other.check("mask", self.width, self.height)?;
        Ok(Self {
            width: self.width,
            height: self.height,
            data: self
                .data
                .iter()
                .zip(&other.data)
                .map(|(&a, &b)| u8::from(a != 0 || b != 0))
                .collect(),
        })
    }

    pub(crate) fn check(
        &self,
        what: &'static str,
        width: u32,
        height: u32,
    ) -> Result<(), WeatherError> {
        if self.width == width
            && self.height == height
            && self.data.len() == width as usize * height as usize
        {
            Ok(())
        } else {
            Err(WeatherError::SizeMismatch {
                what,
                width,
                height,
                got_width: self.width,
                got_height: self.height,
                got_len: self.data.len(),
            })
        }
    }
}

/// Depth (z, metres along the optical axis) of every pixel; `f32::INFINITY` for sky.
///
/// Kept as its base (a dense map or a ground plane) and the refinements applied to it, in order:
/// the per-pixel map is computed only when asked for ([`Self::metres`]). Fog needs depth at one
/// pixel per block of its guided filter ([`Self::at_grid`]), a fraction of the work of the full
/// map (which was 3% of the augment stage's time).
#[derive(Debug, Clone)]
pub struct DepthMap {
    pub width: u32,
    pub height: u32,
    base: Base,
    refinements: Vec<Refinement>,
    /// The per-pixel map, once computed.
    dense: OnceLock<Vec<f32>>,
    pub source: DepthSource,
    /// Object boxes painted with their foot-point depth.
    pub boxes_painted: u32,
    /// Whether a sky mask (semantic labels) set sky to infinity.
    pub sky_masked: bool,
    /// Whether that sky was estimated from the image ([`crate::estimate_sky`]) rather than labelled.
    pub sky_from_image: bool,
    /// Whether non-ground pixels took the depth of the ground they stand on.
    pub vertical_structures: bool,
    /// The assumed distance of the scenery, when depths were capped at it ([`ASSUMED_BACKDROP_M`]).
    pub backdrop_m: Option<f32>,
}

#[derive(Debug, Clone)]
enum Base {
    Dense(Vec<f32>),
    /// `depth(v) = k / (v - v0)` below the horizon row `v0`, infinity above.
    GroundPlane {
        horizon_row: f64,
        k: f64,
    },
}

impl Base {
    /// The ground plane's depth of pixel row `row` (the same in every column).
    fn ground_plane_row(horizon_row: f64, k: f64, row: usize) -> f32 {
        let dv = row as f64 + 0.5 - horizon_row;
        if dv > 0.0 {
            (k / dv) as f32
        } else {
            f32::INFINITY
        }
    }
}

/// A change to the map, applied after those before it.
#[derive(Debug, Clone)]
enum Refinement {
    /// Pixel ranges `(x0, x1, y0, y1)` painted with a depth, in painting order (farthest first).
    Boxes(Vec<((usize, usize, usize, usize), f32)>),
    /// Nonzero pixels become infinitely far.
    Sky(PixelMask),
    /// Pixels off the ground take the depth of the nearest ground pixel below them.
    Vertical(PixelMask),
    /// Every depth at most this.
    Cap(f32),
}

/// One step of the bottom-up scan of a column: `d` is the pixel's depth so far, `foot` the depth of
/// the last ground pixel seen below it (NaN: none yet). Selects rather than branches, which the
/// compiler can vectorise.
#[inline]
fn upright_step(d: f32, on_ground_mask: bool, foot: &mut f32) -> f32 {
    let on_ground = on_ground_mask && d.is_finite();
    // Upright, standing on the last ground seen below it.
    let upright = !on_ground && foot.is_finite();
    *foot = if on_ground { d } else { *foot };
    if upright { *foot } else { d }
}

impl PartialEq for DepthMap {
    fn eq(&self, other: &Self) -> bool {
        self.width == other.width
            && self.height == other.height
            && self.source == other.source
            && self.boxes_painted == other.boxes_painted
            && self.sky_masked == other.sky_masked
            && self.sky_from_image == other.sky_from_image
            && self.vertical_structures == other.vertical_structures
            && self.backdrop_m == other.backdrop_m
            && self.metres() == other.metres()
    }
}

impl DepthMap {
    fn with_base(width: u32, height: u32, base: Base, source: DepthSource) -> Self {
        Self {
            width,
            height,
            base,
            refinements: Vec::new(),
            dense: OnceLock::new(),
            source,
            boxes_painted: 0,
            sky_masked: false,
            sky_from_image: false,
            vertical_structures: false,
            backdrop_m: None,
        }
    }

    /// A dense depth map (`source = DepthMap`). Values must be positive (infinity for sky); NaN
    /// and non-positive values are rejected.
    pub fn new(width: u32, height: u32, metres: Vec<f32>) -> Result<Self, WeatherError> {
        if metres.len() != width as usize * height as usize {
            return Err(WeatherError::SizeMismatch {
                what: "depth map",
                width,
                height,
                got_width: width,
                got_height: height,
                got_len: metres.len(),
            });
        }
        if let Some(i) = metres.iter().position(|d| d.is_nan() || *d <= 0.0) {
            return Err(WeatherError::InvalidDepth(format!(
                "value {} at pixel ({}, {}) is not a positive depth",
                metres[i],
                i % width.max(1) as usize,
                i / width.max(1) as usize
            )));
        }
        Ok(Self::with_base(
            width,
            height,
            Base::Dense(metres),
            DepthSource::DepthMap,
        ))
    }

    /// A constant depth everywhere (tests, and a flat backdrop).
    pub fn constant(width: u32, height: u32, metres: f32) -> Result<Self, WeatherError> {
        Self::new(
            width,
            height,
            vec![metres; width as usize * height as usize],
        )
    }

    /// The flat ground seen by a level camera: `depth(v) = k / (v - v0)` for pixel rows whose
    /// centre `v = row + 0.5` lies below the horizon row `v0`, infinity above. `k = fy * camera
    /// height` (metres * pixels).
    pub fn from_ground_plane(
        width: u32,
        height: u32,
        horizon_row: f64,
        k: f64,
    ) -> Result<Self, WeatherError> {
        if !horizon_row.is_finite() {
            return Err(WeatherError::InvalidDepth(format!(
                "horizon row {horizon_row} is not finite"
            )));
        }
        if !(k.is_finite() && k > 0.0) {
            return Err(WeatherError::InvalidDepth(format!(
                "ground-plane constant k = fy * camera height = {k} must be positive"
            )));
        }
        Ok(Self::with_base(
            width,
            height,
            Base::GroundPlane { horizon_row, k },
            DepthSource::GroundPlane,
        ))
    }

    /// The ground plane of a calibrated camera: horizon at `cy` (a level camera), `k = fy * h`.
    pub fn from_camera(
        width: u32,
        height: u32,
        camera: &Camera,
        camera_height_m: f64,
    ) -> Result<Self, WeatherError> {
        Self::from_ground_plane(width, height, camera.cy, camera.fy * camera_height_m)
    }

    /// The ground plane of an assumed camera when nothing is calibrated: focal
    /// [`NOMINAL_FOCAL_PER_WIDTH`] of the width, height [`NOMINAL_CAMERA_HEIGHT_M`], horizon at
    /// `horizon_row` or mid-height.
    pub fn horizon_only(
        width: u32,
        height: u32,
        horizon_row: Option<f64>,
    ) -> Result<Self, WeatherError> {
        let v0 = horizon_row.unwrap_or(f64::from(height) / 2.0);
        let k = NOMINAL_FOCAL_PER_WIDTH * f64::from(width) * NOMINAL_CAMERA_HEIGHT_M;
        let mut map = Self::from_ground_plane(width, height, v0, k)?;
        map.source = DepthSource::HorizonOnly;
        Ok(map)
    }

    /// `(horizon_row, k)` of the ground plane the map was built from, if any.
    pub fn ground_plane(&self) -> Option<(f64, f64)> {
        match self.base {
            Base::GroundPlane { horizon_row, k } => Some((horizon_row, k)),
            Base::Dense(_) => None,
        }
    }

    /// Ground-plane depth of a box's foot point (its bottom edge), when the map has a ground plane
    /// and the bottom edge lies below the horizon.
    pub fn foot_point_depth(&self, bbox: &BBox) -> Option<f32> {
        let (v0, k) = self.ground_plane()?;
        let dv = bbox.y1 - v0;
        (dv > 0.0 && k.is_finite()).then(|| (k / dv) as f32)
    }

    /// A refinement: the map computed so far, if any, is dropped.
    fn refine(&mut self, refinement: Refinement) {
        self.dense = OnceLock::new();
        self.refinements.push(refinement);
    }

    /// Paints each object's box with its depth (foot-point depth, or the label's): every pixel
    /// whose centre lies inside the box takes it. Boxes are painted farthest first, so a nearer
    /// object occludes a farther one whatever their order in `boxes` (ties keep that order).
    /// Boxes with a non-finite or non-positive depth are skipped.
    pub fn with_boxes(&mut self, boxes: &[(BBox, f32)]) -> &mut Self {
        let (w, h) = (self.width as usize, self.height as usize);
        let mut order: Vec<&(BBox, f32)> = boxes
            .iter()
            .filter(|(_, d)| d.is_finite() && *d > 0.0)
            .collect();
        order.sort_by(|a, b| b.1.total_cmp(&a.1));
        let painted: Vec<_> = order
            .into_iter()
            .filter_map(|(bbox, depth)| box_pixel_range(bbox, w, h).map(|r| (r, *depth)))
            .collect();
        self.boxes_painted += painted.len() as u32;
        if !painted.is_empty() {
            self.refine(Refinement::Boxes(painted));
        }
        self
    }

    /// Paints boxes at their ground-plane foot-point depth (for datasets without 3D labels).
    /// Boxes whose foot lies above the horizon, or a map without ground plane, are skipped.
    pub fn with_boxes_on_ground(&mut self, boxes: &[BBox]) -> &mut Self {
        let painted: Vec<(BBox, f32)> = boxes
            .iter()
            .filter_map(|b| self.foot_point_depth(b).map(|d| (*b, d)))
            .collect();
        self.with_boxes(&painted)
    }

    /// Sets the pixels of `sky` (nonzero) to infinity.
    pub fn with_sky(&mut self, sky: PixelMask) -> Result<&mut Self, WeatherError> {
        sky.check("sky mask", self.width, self.height)?;
        self.refine(Refinement::Sky(sky));
        self.sky_masked = true;
        Ok(self)
    }

    /// Sets the sky estimated from `image` ([`crate::estimate_sky`], above the ground plane's
    /// horizon, or the upper half without one) to infinity: for frames without labelled sky.
    pub fn with_sky_from_image(&mut self, image: &RgbImage) -> Result<&mut Self, WeatherError> {
        let horizon = self
            .ground_plane()
            .map_or(f64::from(self.height) / 2.0, |(v0, _)| v0);
        self.with_sky(crate::estimate_sky(image, horizon))?;
        self.sky_from_image = true;
        Ok(self)
    }

    /// Caps every depth at `metres`, the assumed distance of the scenery when nothing says how far
    /// it is ([`ASSUMED_BACKDROP_M`]); recorded in provenance. Sky set afterwards stays infinite.
    pub fn with_backdrop(&mut self, metres: f32) -> &mut Self {
        if metres > 0.0 {
            self.refine(Refinement::Cap(metres));
            self.backdrop_m = Some(metres);
        }
        self
    }

    /// The "vertical world" model: pixels outside `ground` (buildings, poles, trees, verges)
    /// stand upright on the ground just below them, so each takes the depth of the nearest
    /// ground pixel below it in its column (columns are scanned bottom-up). Sky should be set
    /// afterwards with [`Self::with_sky`] and boxes with [`Self::with_boxes`]. Pixels with no ground
    /// below them (a bonnet at the bottom edge) keep their ground-plane depth.
    pub fn with_vertical_structures(
        &mut self,
        ground: PixelMask,
    ) -> Result<&mut Self, WeatherError> {
        ground.check("ground mask", self.width, self.height)?;
        self.refine(Refinement::Vertical(ground));
        self.vertical_structures = true;
        Ok(self)
    }

    /// Caps every depth (sky included) at `max_m`: for a scene known to be enclosed.
    pub fn cap_depth(&mut self, max_m: f32) -> &mut Self {
        if max_m > 0.0 {
            self.refine(Refinement::Cap(max_m));
        }
        self
    }

    /// The depth of every pixel, row-major (computed on first use; a dense map not refined is
    /// its own).
    pub fn metres(&self) -> &[f32] {
        match &self.base {
            Base::Dense(metres) if self.refinements.is_empty() => metres,
            _ => self.dense.get_or_init(|| self.compute_dense()),
        }
    }

    fn compute_dense(&self) -> Vec<f32> {
        let (w, h) = (self.width as usize, self.height as usize);
        let mut metres = match &self.base {
            Base::Dense(metres) => metres.clone(),
            Base::GroundPlane { horizon_row, k } => {
                let mut metres = Vec::with_capacity(w * h);
                for row in 0..h {
                    let d = Base::ground_plane_row(*horizon_row, *k, row);
                    metres.extend(std::iter::repeat_n(d, w));
                }
                metres
            }
        };
        for refinement in &self.refinements {
            match refinement {
                Refinement::Boxes(boxes) => {
                    for ((x0, x1, y0, y1), depth) in boxes {
                        for row in metres[y0 * w..y1 * w].chunks_exact_mut(w) {
                            row[*x0..*x1].fill(*depth);
                        }
                    }
                }
                Refinement::Sky(sky) => {
                    // A select rather than a branch, which the compiler can vectorise.
                    for (d, &s) in metres.iter_mut().zip(&sky.data) {
                        *d = if s == 0 { *d } else { f32::INFINITY };
                    }
                }
                Refinement::Vertical(ground) => {
                    let mut foot = vec![f32::NAN; w];
                    for y in (0..h).rev() {
                        let row = &mut metres[y * w..(y + 1) * w];
                        let mask = &ground.data[y * w..(y + 1) * w];
                        for ((d, &g), f) in row.iter_mut().zip(mask).zip(foot.iter_mut()) {
                            *d = upright_step(*d, g != 0, f);
                        }
                    }
                }
                Refinement::Cap(max_m) => {
                    for d in &mut metres {
                        *d = d.min(*max_m);
                    }
                }
            }
        }
        metres
    }

    /// The depth at the pixels `xs x ys` (row-major: `ys.len()` rows of `xs.len()`), equal to
    /// [`Self::metres`] there, without computing the other pixels (unless they already are).
    /// Vertical structures need every row below a sample, but only the sampled columns.
    ///
    /// # Panics
    /// If a sample lies outside the map.
    pub fn at_grid(&self, xs: &[usize], ys: &[usize]) -> Vec<f32> {
        let w = self.width as usize;
        if let Some(metres) = self.dense.get() {
            return ys
                .iter()
                .flat_map(|&y| xs.iter().map(move |&x| metres[y * w + x]))
                .collect();
        }
        let mut out = vec![0.0f32; xs.len() * ys.len()];
        // Sample rows from the bottom up, so that one scan serves every row.
        let mut order: Vec<usize> = (0..ys.len()).collect();
        order.sort_by_key(|&k| std::cmp::Reverse(ys[k]));
        let verticals = self
            .refinements
            .iter()
            .filter(|r| matches!(r, Refinement::Vertical(_)))
            .count();
        let (Some(&top), Some(&lowest)) = (ys.iter().min(), ys.iter().max()) else {
            return out;
        };
        let bottom = if verticals == 0 {
            lowest
        } else {
            // Every row below a sample counts for the structures standing on it.
            (self.height as usize - 1).max(lowest)
        };
        // One foot per vertical refinement and sampled column.
        let mut feet = vec![f32::NAN; verticals * xs.len()];
        let mut row_depths = vec![0.0f32; xs.len()];
        let mut next = 0;
        for y in (top..=bottom).rev() {
            let sampled = next < order.len() && ys[order[next]] == y;
            if verticals == 0 && !sampled {
                continue;
            }
            // The row's depths at the sampled columns, one refinement at a time.
            match &self.base {
                Base::Dense(metres) => {
                    for (d, &x) in row_depths.iter_mut().zip(xs) {
                        *d = metres[y * w + x];
                    }
                }
                Base::GroundPlane { horizon_row, k } => {
                    row_depths.fill(Base::ground_plane_row(*horizon_row, *k, y));
                }
            }
            let mut vertical = 0;
            for refinement in &self.refinements {
                match refinement {
                    Refinement::Vertical(ground) => {
                        let mask = &ground.data[y * w..(y + 1) * w];
                        let feet = &mut feet[vertical * xs.len()..(vertical + 1) * xs.len()];
                        vertical += 1;
                        for ((d, &x), foot) in row_depths.iter_mut().zip(xs).zip(feet) {
                            *d = upright_step(*d, mask[x] != 0, foot);
                        }
                    }
                    Refinement::Sky(sky) => {
                        let mask = &sky.data[y * w..(y + 1) * w];
                        for (d, &x) in row_depths.iter_mut().zip(xs) {
                            *d = if mask[x] == 0 { *d } else { f32::INFINITY };
                        }
                    }
                    Refinement::Boxes(boxes) => {
                        for ((x0, x1, y0, y1), depth) in boxes {
                            if (*y0..*y1).contains(&y) {
                                for (d, &x) in row_depths.iter_mut().zip(xs) {
                                    if (*x0..*x1).contains(&x) {
                                        *d = *depth;
                                    }
                                }
                            }
                        }
                    }
                    Refinement::Cap(max_m) => {
                        for d in &mut row_depths {
                            *d = d.min(*max_m);
                        }
                    }
                }
            }
            while next < order.len() && ys[order[next]] == y {
                let k = order[next];
                out[k * xs.len()..(k + 1) * xs.len()].copy_from_slice(&row_depths);
                next += 1;
            }
        }
        out
    }

    /// Where the depth came from and how it was refined, for provenance.
    pub fn provenance(&self) -> serde_json::Value {
        serde_json::json!({
            "source": self.source,
            "ground_plane": self.ground_plane().map(|(v0, k)| serde_json::json!({"horizon_row": v0, "k": k})),
            "boxes_painted": self.boxes_painted,
            "sky_masked": self.sky_masked,
            "sky": if self.sky_from_image { "image" } else if self.sky_masked { "labels" } else { "none" },
            "vertical_structures": self.vertical_structures,
            "backdrop_m": self.backdrop_m,
        })
    }

    pub(crate) fn check(&self, width: u32, height: u32) -> Result<(), WeatherError> {
        let len = match &self.base {
            Base::Dense(metres) => metres.len(),
            Base::GroundPlane { .. } => self.width as usize * self.height as usize,
        };
        if self.width == width && self.height == height && len == width as usize * height as usize {
            Ok(())
        } else {
            Err(WeatherError::SizeMismatch {
                what: "depth map",
                width,
                height,
                got_width: self.width,
                got_height: self.height,
                got_len: len,
            })
        }
    }
}

/// Pixel columns `x0..x1` and rows `y0..y1` whose centres lie inside the box, clipped to the
/// image; `None` when that is empty.
pub fn box_pixel_range(b: &BBox, w: usize, h: usize) -> Option<(usize, usize, usize, usize)> {
    let lo = |v: f64, n: usize| ((v - 0.5).ceil().max(0.0) as usize).min(n);
    let (x0, x1) = (lo(b.x0, w), lo(b.x1, w));
    let (y0, y1) = (lo(b.y0, h), lo(b.y1, h));
    (x0 < x1 && y0 < y1).then_some((x0, x1, y0, y1))
}

/// Like [`box_pixel_range`], but at least the pixel nearest the box centre for a box thinner than
/// a pixel; `None` only for a box entirely outside the image or with non-finite coordinates.
pub fn box_pixels_or_centre(b: &BBox, w: usize, h: usize) -> Option<(usize, usize, usize, usize)> {
    if w == 0 || h == 0 || ![b.x0, b.y0, b.x1, b.y1].iter().all(|v| v.is_finite()) {
        return None;
    }
    if b.x1 <= 0.0 || b.y1 <= 0.0 || b.x0 >= w as f64 || b.y0 >= h as f64 {
        return None;
    }
    box_pixel_range(b, w, h).or_else(|| {
        let cx = (f64::midpoint(b.x0, b.x1).max(0.0) as usize).min(w - 1);
        let cy = (f64::midpoint(b.y0, b.y1).max(0.0) as usize).min(h - 1);
        Some((cx, cx + 1, cy, cy + 1))
    })
}
