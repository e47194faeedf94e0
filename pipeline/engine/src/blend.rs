//! Blending a harmonised cut-out into the frame: feathered alpha, or Poisson (gradient-domain)
//! blending as `OpenCV`'s `seamlessClone` computes it ([`crate::seamless`], with `rustdct`'s sine
//! transforms: `OpenCV`'s took a tenth of the augment stage), chosen per insertion by a measurement
//! when asked.
//!
//! Poisson blending removes the seam between a cut-out and the frame by solving for pixels whose
//! gradients are the cut-out's and whose border values are the frame's. It also drags the whole
//! object's colour toward its surroundings (a brown deer on grey asphalt comes out greyish), the
//! known failure that makes it a bad default. `auto` therefore runs both and keeps Poisson only
//! when it lowers the seam clearly and shifts the object's own colours little.

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::EngineError;
use crate::raster::{PixelRect, Plane, RgbPlane, luma, rgb_to_lab, to_u8};
use crate::seamless::normal_clone;

/// How cut-outs are blended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlendMode {
    /// Alpha compositing with a feathered edge.
    Feather,
    /// Seamless cloning (`OpenCV`'s `NORMAL_CLONE`) wherever it can run.
    Poisson,
    /// Poisson where [`PoissonConfig`]'s measurement says it helps, feather elsewhere.
    #[default]
    Auto,
}

impl BlendMode {
    pub const NAMES: [&'static str; 3] = ["auto", "feather", "poisson"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "auto" => Some(BlendMode::Auto),
            "feather" => Some(BlendMode::Feather),
            "poisson" => Some(BlendMode::Poisson),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BlendMode::Feather => "feather",
            BlendMode::Poisson => "poisson",
            BlendMode::Auto => "auto",
        }
    }
}

/// When `auto` keeps Poisson blending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoissonConfig {
    /// Poisson must lower the seam (mean luma gradient along the object's edge) by at least this
    /// fraction.
    pub min_seam_gain: f64,
    /// ... and shift the object's core colours by at most this mean CIE76 ΔE (about 2.3 is a
    /// just-noticeable difference; beyond 6 the object visibly takes the road's colour).
    pub max_colour_shift: f64,
    /// Frame pixels around the object included in the clone region.
    pub margin_px: u32,
}

impl Default for PoissonConfig {
    fn default() -> Self {
        Self {
            min_seam_gain: 0.15,
            max_colour_shift: 6.0,
            margin_px: 2,
        }
    }
}

/// What the `auto` measurement found.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BlendMeasure {
    pub seam_feather: f64,
    pub seam_poisson: f64,
    pub colour_shift: f64,
}

/// The seam of a composite: the mean luma gradient magnitude over the object's edge pixels
/// (coverage strictly between 0.1 and 0.9, or the outermost covered ring).
fn seam(rgb: &[[f32; 3]], alpha: &[f32], width: usize, height: usize) -> f64 {
    let l: Vec<f32> = rgb.iter().map(|&p| luma(p)).collect();
    let (mut sum, mut n) = (0.0f64, 0usize);
    for y in 1..height.saturating_sub(1) {
        for x in 1..width.saturating_sub(1) {
            let i = y * width + x;
            let a = alpha[i];
            let edge = (a > 0.1 && a < 0.9)
                || (a >= 0.9
                    && [i - 1, i + 1, i - width, i + width]
                        .iter()
                        .any(|&j| alpha[j] <= 0.1));
            if !edge {
                continue;
            }
            let gx = l[i + 1] - l[i - 1];
            let gy = l[i + width] - l[i - width];
            sum += f64::from(gx.hypot(gy));
            n += 1;
        }
    }
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// Poisson-blends an object (colour `object` and coverage `alpha` over `rect`) into `image`.
/// Returns the cloned pixels over `rect`, the region they replace (1 inside), and the
/// measurement; `None` when the region reaches the frame's border (the clone needs frame
/// pixels all around it).
pub fn poisson(
    image: &RgbImage,
    rect: PixelRect,
    object: &RgbPlane,
    alpha: &Plane,
    config: &PoissonConfig,
) -> Option<(RgbPlane, Vec<f32>, BlendMeasure)> {
    let (w, h) = (rect.width() as usize, rect.height() as usize);
    let background = RgbPlane::crop(image, rect);
    // The feathered composite: Poisson's source, and the reference it is measured against.
    let feather: Vec<[f32; 3]> = background
        .data
        .iter()
        .zip(&object.data)
        .zip(&alpha.data)
        .map(|((b, o), &a)| [0, 1, 2].map(|c| a * o[c] + (1.0 - a) * b[c]))
        .collect();
    // Clone region: the object dilated by the margin (a square, as rows then columns).
    let m = config.margin_px as usize;
    if w == 0 || h == 0 {
        return None;
    }
    let mut across = vec![false; w * h];
    for (covered, row) in alpha.data.chunks_exact(w).zip(across.chunks_exact_mut(w)) {
        for (x, _) in covered.iter().enumerate().filter(|(_, a)| **a > 0.02) {
            row[x.saturating_sub(m)..=(x + m).min(w - 1)].fill(true);
        }
    }
    let mut region = vec![0u8; w * h];
    for y in 0..h {
        for yy in y.saturating_sub(m)..=(y + m).min(h - 1) {
            for (r, &a) in region[yy * w..(yy + 1) * w]
                .iter_mut()
                .zip(&across[y * w..(y + 1) * w])
            {
                *r |= if a { 255 } else { 0 };
            }
        }
    }
    let (mut bx0, mut by0, mut bx1, mut by1) = (usize::MAX, usize::MAX, 0, 0);
    for (y, row) in region.chunks_exact(w).enumerate() {
        if let (Some(first), Some(last)) = (
            row.iter().position(|&r| r != 0),
            row.iter().rposition(|&r| r != 0),
        ) {
            bx0 = bx0.min(first);
            bx1 = bx1.max(last + 1);
            by0 = by0.min(y);
            by1 = y + 1;
        }
    }
    if bx0 >= bx1 || bx0 == 0 || by0 == 0 || bx1 >= w || by1 >= h {
        return None;
    }
    // The clone over the region's bounding box (frame pixels all around it).
    let (rw, rh) = (bx1 - bx0, by1 - by0);
    let roi_bytes = |px: &[[f32; 3]]| -> Vec<u8> {
        let mut bytes = Vec::with_capacity(3 * rw * rh);
        for y in by0..by1 {
            for p in &px[y * w + bx0..y * w + bx1] {
                bytes.extend_from_slice(&p.map(to_u8));
            }
        }
        bytes
    };
    let roi_mask: Vec<u8> = (by0..by1)
        .flat_map(|y| region[y * w + bx0..y * w + bx1].iter().copied())
        .collect();
    let roi = normal_clone(
        &roi_bytes(&background.data),
        &roi_bytes(&feather),
        &roi_mask,
        rw,
        rh,
    );
    // The region takes the clone; the rest of the crop keeps the background.
    let mut result = background.data.clone();
    for (y, row) in (by0..by1).zip(roi.chunks_exact(3 * rw)) {
        for (x, p) in (bx0..bx1).zip(row.chunks_exact(3)) {
            if region[y * w + x] > 0 {
                result[y * w + x] = [f32::from(p[0]), f32::from(p[1]), f32::from(p[2])];
            }
        }
    }
    let weight: Vec<f32> = region.iter().map(|&r| f32::from(r) / 255.0).collect();

    // Measurement: seams of both composites, colour shift of the object's core.
    let seam_feather = seam(&feather, &alpha.data, w, h);
    let seam_poisson = seam(&result, &alpha.data, w, h);
    // Only the core's pixels are converted (the conversion is per pixel), as one row.
    let core = |px: &[[f32; 3]]| -> RgbPlane {
        let data: Vec<[f32; 3]> = px
            .iter()
            .zip(&alpha.data)
            .filter(|(_, a)| **a >= 0.9)
            .map(|(p, _)| *p)
            .collect();
        rgb_to_lab(&RgbPlane {
            // At most the crop's pixel count, itself a product of two `u32`s that fits.
            width: data.len() as u32,
            height: u32::from(!data.is_empty()),
            data,
        })
    };
    let (lab_f, lab_p) = (core(&feather), core(&result));
    let (mut shift, mut n) = (0.0f64, 0usize);
    for (a, b) in lab_f.data.iter().zip(&lab_p.data) {
        let d = [0, 1, 2].map(|c| f64::from(a[c] - b[c]));
        shift += (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
        n += 1;
    }
    let colour_shift = if n == 0 { 0.0 } else { shift / n as f64 };
    Some((
        RgbPlane {
            width: rect.width(),
            height: rect.height(),
            data: result,
        },
        weight,
        BlendMeasure {
            seam_feather,
            seam_poisson,
            colour_shift,
        },
    ))
}

impl PoissonConfig {
    /// Whether a measurement favours Poisson.
    pub fn prefers_poisson(&self, m: &BlendMeasure) -> bool {
        m.seam_poisson <= (1.0 - self.min_seam_gain) * m.seam_feather
            && m.colour_shift <= self.max_colour_shift
    }

    pub(crate) fn validate(&self) -> Result<(), EngineError> {
        let ok = (0.0..1.0).contains(&self.min_seam_gain) && self.max_colour_shift >= 0.0;
        ok.then_some(())
            .ok_or_else(|| EngineError::Config(format!("Poisson settings out of range: {self:?}")))
    }
}
