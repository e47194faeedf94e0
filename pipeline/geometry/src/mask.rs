//! Drivable and roadside masks of a frame, from labels, a model or the horizon.

use image::{DynamicImage, GrayImage, RgbImage};
use roadsynth_types::FrameRecord;
use serde::{Deserialize, Serialize};

use crate::{GeometryError, GroundModel};

/// A binary mask over a frame: `bits[y * width + x]` is 1 inside, 0 outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrivableMask {
    pub width: u32,
    pub height: u32,
    pub bits: Vec<u8>,
}

impl DrivableMask {
    /// An empty mask.
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            bits: vec![0; width as usize * height as usize],
        }
    }

    /// A mask with `f(x, y)` at each pixel.
    pub fn from_fn(width: u32, height: u32, mut f: impl FnMut(u32, u32) -> bool) -> Self {
        let mut bits = Vec::with_capacity(width as usize * height as usize);
        for y in 0..height {
            for x in 0..width {
                bits.push(u8::from(f(x, y)));
            }
        }
        Self {
            width,
            height,
            bits,
        }
    }

    /// From one byte per pixel, row-major; any non-zero byte is inside.
    pub fn from_bytes(width: u32, height: u32, bytes: &[u8]) -> Result<Self, GeometryError> {
        if bytes.len() != width as usize * height as usize {
            return Err(GeometryError::InvalidModel(format!(
                "mask of {width}x{height} needs {} bytes, got {}",
                width as usize * height as usize,
                bytes.len()
            )));
        }
        Ok(Self {
            width,
            height,
            bits: bytes.iter().map(|&b| u8::from(b != 0)).collect(),
        })
    }

    /// Is pixel `(x, y)` inside? False outside the image.
    pub fn get(&self, x: u32, y: u32) -> bool {
        x < self.width
            && y < self.height
            && self.bits.get(self.index(x, y)).is_some_and(|&b| b != 0)
    }

    /// Sets pixel `(x, y)`; ignored outside the image.
    pub fn set(&mut self, x: u32, y: u32, inside: bool) {
        if x < self.width && y < self.height {
            let i = self.index(x, y);
            if let Some(bit) = self.bits.get_mut(i) {
                *bit = u8::from(inside);
            }
        }
    }

    fn index(&self, x: u32, y: u32) -> usize {
        y as usize * self.width as usize + x as usize
    }

    /// Row `y` (0/1 per pixel); empty outside the image (or when `bits` is shorter than
    /// `width * height`).
    pub fn row(&self, y: u32) -> &[u8] {
        if y >= self.height {
            return &[];
        }
        let w = self.width as usize;
        self.bits
            .get(y as usize * w..(y as usize + 1) * w)
            .unwrap_or(&[])
    }

    /// Number of pixels inside.
    pub fn count(&self) -> usize {
        self.bits.iter().filter(|&&b| b != 0).count()
    }

    /// Fraction of the image inside, `0..=1` (0 for an empty image).
    pub fn fraction(&self) -> f64 {
        if self.bits.is_empty() {
            0.0
        } else {
            self.count() as f64 / self.bits.len() as f64
        }
    }

    /// Intersection over union with a mask of the same size; `None` when the sizes differ.
    /// Two empty masks have an `IoU` of 1.
    pub fn iou(&self, other: &DrivableMask) -> Option<f64> {
        if (self.width, self.height) != (other.width, other.height) {
            return None;
        }
        let (mut inter, mut union) = (0_usize, 0_usize);
        for (&a, &b) in self.bits.iter().zip(&other.bits) {
            inter += usize::from(a != 0 && b != 0);
            union += usize::from(a != 0 || b != 0);
        }
        Some(if union == 0 {
            1.0
        } else {
            inter as f64 / union as f64
        })
    }

    /// Nearest-neighbour resize (pixel centres map to pixel centres).
    #[must_use]
    pub fn resized_nearest(&self, width: u32, height: u32) -> DrivableMask {
        if (width, height) == (self.width, self.height) {
            return self.clone();
        }
        if self.width == 0 || self.height == 0 {
            return DrivableMask::new(width, height);
        }
        let src_x: Vec<u32> = (0..width)
            .map(|x| nearest_source(x, width, self.width))
            .collect();
        let mut out = DrivableMask::new(width, height);
        for y in 0..height {
            let row = self.row(nearest_source(y, height, self.height));
            let w = width as usize;
            let dst = &mut out.bits[y as usize * w..(y as usize + 1) * w];
            for (d, &sx) in dst.iter_mut().zip(&src_x) {
                *d = row.get(sx as usize).copied().unwrap_or(0);
            }
        }
        out
    }

    /// The mask as an 8-bit image, 255 inside (for previews).
    pub fn to_image(&self) -> GrayImage {
        GrayImage::from_fn(self.width, self.height, |x, y| {
            image::Luma([if self.get(x, y) { 255 } else { 0 }])
        })
    }
}

/// The source pixel whose centre is nearest to the centre of destination pixel `i`.
fn nearest_source(i: u32, dst_len: u32, src_len: u32) -> u32 {
    let centre = (f64::from(i) + 0.5) * f64::from(src_len) / f64::from(dst_len);
    (centre.floor() as u32).min(src_len.saturating_sub(1))
}

/// The error a [`DrivableSegmenter`] reports.
pub type SegmenterError = Box<dyn std::error::Error + Send + Sync>;

/// A model that finds the drivable area of an RGB frame. Implemented in `roadsynth-models`
/// (ONNX Runtime) so this crate does not depend on it.
pub trait DrivableSegmenter {
    /// The model's name, recorded in [`MaskSource::Model`] and in the cache path.
    fn name(&self) -> &str;

    /// The drivable mask, at the frame's size.
    fn drivable(&mut self, rgb: &RgbImage) -> Result<DrivableMask, SegmenterError>;
}

/// Where a frame's ground masks came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MaskSource {
    /// The dataset's semantic labels (`CamVid`'s road and pavement classes).
    SemanticLabels,
    /// A drivable-area model.
    Model { name: String },
    /// Everything below the horizon (no better source).
    BelowHorizon,
}

impl MaskSource {
    /// Short name for recording: `labels`, `model` or `horizon`.
    pub fn as_str(&self) -> &'static str {
        match self {
            MaskSource::SemanticLabels => "labels",
            MaskSource::Model { .. } => "model",
            MaskSource::BelowHorizon => "horizon",
        }
    }

    /// The cache folder name: `labels`, `horizon`, or `model-<name>` with the name reduced to
    /// `[A-Za-z0-9._-]`.
    pub fn cache_key(&self) -> String {
        match self {
            MaskSource::Model { name } => {
                let safe: String = name
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                format!("model-{safe}")
            }
            other => other.as_str().to_string(),
        }
    }
}

/// Which semantic-label codes are drivable, roadside and sky. The default is `CamVid`'s
/// (11-class `SegNet` version): road 3 drivable, pavement 4 roadside, sky 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SemanticRoadClasses {
    pub drivable: Vec<u8>,
    /// Roadside codes; when empty, roadside is derived from the drivable mask like for a model.
    pub roadside: Vec<u8>,
    /// Sky codes: infinitely far for weather effects.
    #[serde(default)]
    pub sky: Vec<u8>,
}

impl Default for SemanticRoadClasses {
    fn default() -> Self {
        Self {
            drivable: vec![3],
            roadside: vec![4],
            sky: vec![0],
        }
    }
}

/// A frame's ground: where objects may stand on the road, and beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroundMasks {
    pub drivable: DrivableMask,
    pub roadside: DrivableMask,
    pub source: MaskSource,
}

/// How wide, in metres, the roadside strip next to the drivable area is when no labels say
/// where it is: about a pavement or verge.
pub const DEFAULT_ROADSIDE_WIDTH_M: f64 = 3.0;

/// Masks from a semantic-label PNG (8-bit grayscale class codes).
pub fn masks_from_labels(
    label_png: &[u8],
    classes: &SemanticRoadClasses,
    ground: &GroundModel,
) -> Result<GroundMasks, GeometryError> {
    let decoded = image::load_from_memory(label_png)
        .map_err(|e| GeometryError::BadLabelImage(e.to_string()))?;
    let DynamicImage::ImageLuma8(labels) = decoded else {
        return Err(GeometryError::BadLabelImage(format!(
            "expected 8-bit grayscale class codes, found {:?}",
            decoded.color()
        )));
    };
    Ok(masks_from_label_image(&labels, classes, ground))
}

/// [`masks_from_labels`] for class codes already decoded (one code per pixel).
pub fn masks_from_label_image(
    labels: &GrayImage,
    classes: &SemanticRoadClasses,
    ground: &GroundModel,
) -> GroundMasks {
    let (width, height) = labels.dimensions();
    let codes = labels.as_raw();
    // One table lookup per pixel rather than a search of the class list.
    let bits_of = |wanted: &[u8]| {
        let mut table = [0u8; 256];
        for &code in wanted {
            table[usize::from(code)] = 1;
        }
        codes.iter().map(|&c| table[usize::from(c)]).collect()
    };
    let drivable = DrivableMask {
        width,
        height,
        bits: bits_of(&classes.drivable),
    };
    let roadside = if classes.roadside.is_empty() {
        roadside_near(&drivable, ground, DEFAULT_ROADSIDE_WIDTH_M)
    } else {
        DrivableMask {
            width,
            height,
            bits: bits_of(&classes.roadside),
        }
    };
    GroundMasks {
        drivable,
        roadside,
        source: MaskSource::SemanticLabels,
    }
}

/// Pixel row `y` lies below the horizon when its centre does.
fn below_horizon(y: u32, horizon_row: f64) -> bool {
    f64::from(y) + 0.5 > horizon_row
}

/// With nothing better: every pixel below the horizon is drivable, and (not knowing where the
/// road ends) roadside too.
pub fn masks_below_horizon(width: u32, height: u32, horizon_row: f64) -> GroundMasks {
    let ground = DrivableMask::from_fn(width, height, |_, y| below_horizon(y, horizon_row));
    GroundMasks {
        roadside: ground.clone(),
        drivable: ground,
        source: MaskSource::BelowHorizon,
    }
}

/// Roadside: pixels below the horizon, outside `drivable`, within `width_m` metres sideways of a
/// drivable pixel on the same row (the metres-to-pixels scale of a row comes from `ground`, so the
/// strip narrows towards the horizon).
pub fn roadside_near(drivable: &DrivableMask, ground: &GroundModel, width_m: f64) -> DrivableMask {
    let (w, h) = (drivable.width, drivable.height);
    let mut out = DrivableMask::new(w, h);
    let mut dist = vec![u32::MAX; w as usize];
    for y in 0..h {
        if !below_horizon(y, ground.horizon_row) {
            continue;
        }
        let radius = width_m * ground.pixels_per_metre_at_row(f64::from(y) + 0.5);
        let row = drivable.row(y);
        if row.len() != w as usize {
            continue;
        }
        // Distance to the nearest drivable pixel on the left, then on the right.
        let mut last: Option<usize> = None;
        for (x, d) in dist.iter_mut().enumerate() {
            if row[x] != 0 {
                last = Some(x);
            }
            *d = last.map_or(u32::MAX, |l| (x - l) as u32);
        }
        last = None;
        for x in (0..w as usize).rev() {
            if row[x] != 0 {
                last = Some(x);
            }
            if let Some(l) = last {
                dist[x] = dist[x].min((l - x) as u32);
            }
        }
        let start = y as usize * w as usize;
        for (x, &d) in dist.iter().enumerate() {
            if row[x] == 0 && d != u32::MAX && f64::from(d) <= radius {
                out.bits[start + x] = 1;
            }
        }
    }
    out
}

/// The ground masks of a frame from the best source it has: its semantic labels (when the
/// record carries the label bytes), else `segmenter` on the decoded image, else the region below
/// the horizon. Model masks get a roadside strip of [`DEFAULT_ROADSIDE_WIDTH_M`].
pub fn ground_masks(
    record: &FrameRecord,
    ground: &GroundModel,
    classes: &SemanticRoadClasses,
    segmenter: Option<&mut dyn DrivableSegmenter>,
) -> Result<GroundMasks, GeometryError> {
    let (width, height) = (record.frame.width, record.frame.height);
    let check_size = |mask: &DrivableMask| {
        if (mask.width, mask.height) == (width, height) {
            Ok(())
        } else {
            Err(GeometryError::SizeMismatch {
                mask_width: mask.width,
                mask_height: mask.height,
                width,
                height,
            })
        }
    };
    if let Some(label) = &record.semantic_label {
        let masks = masks_from_labels(label, classes, ground)?;
        check_size(&masks.drivable)?;
        return Ok(masks);
    }
    if let (Some(segmenter), Some(bytes)) = (segmenter, &record.image) {
        let rgb = image::load_from_memory(bytes)
            .map_err(|e| GeometryError::BadImage(e.to_string()))?
            .into_rgb8();
        let drivable = segmenter
            .drivable(&rgb)
            .map_err(|source| GeometryError::Segmenter {
                name: segmenter.name().to_string(),
                source,
            })?;
        check_size(&drivable)?;
        let roadside = roadside_near(&drivable, ground, DEFAULT_ROADSIDE_WIDTH_M);
        return Ok(GroundMasks {
            drivable,
            roadside,
            source: MaskSource::Model {
                name: segmenter.name().to_string(),
            },
        });
    }
    Ok(masks_below_horizon(width, height, ground.horizon_row))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat_model(horizon_row: f64) -> GroundModel {
        GroundModel {
            horizon_row,
            focal_px: 100.0,
            camera_height_m: 1.0,
            source: crate::GeometrySource::HorizonPrior {
                horizon_fraction: 0.5,
                camera_height_m: 1.0,
                assumed_hfov_deg: 60.0,
            },
        }
    }

    #[test]
    fn resize_and_iou() {
        let m = DrivableMask::from_fn(4, 2, |x, _| x < 2);
        let big = m.resized_nearest(8, 4);
        assert_eq!(big.count(), 16);
        assert!(big.get(3, 3) && !big.get(4, 0));
        assert_eq!(big.resized_nearest(4, 2), m);
        let other = DrivableMask::from_fn(4, 2, |x, _| x < 1);
        assert!((m.iou(&other).expect("same size") - 0.5).abs() < 1e-12);
        assert_eq!(m.iou(&big), None);
        assert!((m.fraction() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn roadside_is_a_strip_beside_the_road_below_the_horizon() {
        // Road in columns 10..20 on every row; horizon at row 5; 1 m = (v - 5) px.
        let road = DrivableMask::from_fn(40, 12, |x, _| (10..20).contains(&x));
        let side = roadside_near(&road, &flat_model(5.0), 1.0);
        for y in 0..12 {
            let ppm = (f64::from(y) + 0.5 - 5.0).max(0.0);
            for x in 0..40 {
                let d = if x < 10 {
                    f64::from(10 - x)
                } else if x >= 20 {
                    f64::from(x - 19)
                } else {
                    0.0
                };
                let expected = y >= 5 && d > 0.0 && d <= ppm;
                assert_eq!(side.get(x, y), expected, "({x}, {y})");
            }
        }
    }

    #[test]
    fn below_horizon_and_cache_keys() {
        let m = masks_below_horizon(10, 10, 4.5);
        assert_eq!(m.drivable.count(), 50);
        assert_eq!(m.source.cache_key(), "horizon");
        let model = MaskSource::Model {
            name: "twin lite/net".into(),
        };
        assert_eq!(model.cache_key(), "model-twin_lite_net");
        assert_eq!(model.as_str(), "model");
    }

    #[test]
    fn labels_must_be_grayscale_codes() {
        let mut png = Vec::new();
        let rgb = RgbImage::new(4, 4);
        rgb.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("encodes");
        let err = masks_from_labels(&png, &SemanticRoadClasses::default(), &flat_model(1.0));
        assert!(
            matches!(err, Err(GeometryError::BadLabelImage(_))),
            "{err:?}"
        );

        let mut codes = GrayImage::new(4, 4);
        codes.put_pixel(1, 3, image::Luma([3]));
        codes.put_pixel(2, 3, image::Luma([4]));
        let mut png = Vec::new();
        codes
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("encodes");
        let m = masks_from_labels(&png, &SemanticRoadClasses::default(), &flat_model(1.0))
            .expect("decodes");
        assert!(m.drivable.get(1, 3) && m.drivable.count() == 1);
        assert!(m.roadside.get(2, 3) && m.roadside.count() == 1);
    }
}
