//! Lighting statistics of an image region: colour in CIE L\*a\*b\* and the direction of shading.
//!
//! The same function measures a cut-out (weighted by its alpha) and the region of a target frame
//! it will be pasted into (weighted by a placement mask), so the engine can pick an asset lit like
//! the target and match the rest by colour transfer. L\*a\*b\* is used because its mean and
//! standard deviation per channel are what Reinhard-style colour transfer matches, and because
//! L\* is perceptual lightness, so "brighter by 10" means the same in dark and bright scenes.

use std::sync::OnceLock;

use image::{GrayImage, RgbImage};
use serde::{Deserialize, Serialize};

use crate::colour::{decode_exact, lab_from_linear_srgb};

/// Colour and shading statistics of a weighted region (see [`measure_lighting`]).
///
/// When the region is empty (`weight == 0`) every statistic is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Lighting {
    /// Sum of the pixel weights, a weight of 255 counting 1: the number of pixels for a binary mask.
    pub weight: f64,
    /// Weighted mean of CIE L\* (0 black ..100 white, D65).
    pub l_mean: f64,
    /// Weighted mean of a\* (green − .. red +).
    pub a_mean: f64,
    /// Weighted mean of b\* (blue − .. yellow +).
    pub b_mean: f64,
    pub l_std: f64,
    pub a_std: f64,
    pub b_std: f64,
    /// Unit vector in image axes (x right, y down) along which L\* grows fastest under a linear
    /// ramp fitted to the region: the side the light comes from, as far as shading shows it.
    /// `(0, 0)` when the region has no slope or is too thin to fit one.
    pub light_dx: f64,
    pub light_dy: f64,
    /// L\* difference of the fitted ramp between −1 and +1 standard deviation of the region's
    /// extent along `(light_dx, light_dy)`: how strongly one side is lit, in L\* units and
    /// independent of the region's size in pixels.
    pub light_strength: f64,
    /// Fraction of the L\* variance the ramp explains, `0..=1`: low when the shading is texture
    /// or several lights rather than one direction.
    pub light_explained: f64,
}

/// Regions whose pixel positions span less than this (determinant of their second moments, in
/// pixels⁴ per unit weight²) have no usable 2D slope: a line or a point.
const MIN_SPREAD_DET: f64 = 1e-6;

/// Linear values of the 256 sRGB byte levels.
fn srgb_decoding_table() -> &'static [f32; 256] {
    static TABLE: OnceLock<[f32; 256]> = OnceLock::new();
    TABLE.get_or_init(|| std::array::from_fn(|v| decode_exact(v as f64 / 255.0) as f32))
}

/// Measures the lighting of the pixels of `rgb` where `weight > 0`, each counted by
/// `weight / 255`.
///
/// # Panics
/// When `rgb` and `weight` differ in size: the weight must be a mask of that very image.
pub fn measure_lighting(rgb: &RgbImage, weight: &GrayImage) -> Lighting {
    assert_eq!(
        rgb.dimensions(),
        weight.dimensions(),
        "measure_lighting: image and weight differ in size"
    );
    // Two passes, means then central moments, keep the variances exact (a flat patch has 0, not
    // the rounding left of E[x^2] - E[x]^2). Each counted pixel is converted once; sRGB decoding
    // is per channel, so a table of the 256 levels serves it.
    let linear = srgb_decoding_table();
    let (placed, mut lab): (Vec<[u32; 3]>, Vec<[f32; 3]>) = weight
        .enumerate_pixels()
        .filter(|(_, _, w)| w.0[0] > 0)
        .map(|(x, y, w)| {
            let colour = rgb.get_pixel(x, y).0.map(|v| linear[usize::from(v)]);
            ([u32::from(w.0[0]), x, y], colour)
        })
        .unzip();
    // Converted all at once: the conversion runs in vector registers over a whole slice.
    lab_from_linear_srgb(&mut lab);
    let samples: Vec<[f64; 6]> = placed
        .into_iter()
        .zip(lab)
        .map(|([w, x, y], [l, a, b])| {
            [
                f64::from(w) / 255.0,
                f64::from(x) + 0.5,
                f64::from(y) + 0.5,
                f64::from(l),
                f64::from(a),
                f64::from(b),
            ]
        })
        .collect();
    let counted = || samples.iter().copied();
    let mut sums = [0.0; 6];
    for sample in counted() {
        sums[0] += sample[0];
        for i in 1..6 {
            sums[i] += sample[0] * sample[i];
        }
    }
    let total = sums[0];
    if total <= 0.0 {
        return Lighting::default();
    }
    let [_, mx, my, l_mean, a_mean, b_mean] = sums.map(|s| s / total);
    let mut sums = Moments::default();
    for [w, x, y, l, a, b] in counted() {
        let (dx, dy) = (x - mx, y - my);
        let (dl, da, db) = (l - l_mean, a - a_mean, b - b_mean);
        sums.xx += w * dx * dx;
        sums.yy += w * dy * dy;
        sums.xy += w * dx * dy;
        sums.xl += w * dx * dl;
        sums.yl += w * dy * dl;
        sums.ll += w * dl * dl;
        sums.aa += w * da * da;
        sums.bb += w * db * db;
    }
    let ramp = sums.fit_ramp(total);
    Lighting {
        weight: total,
        l_mean,
        a_mean,
        b_mean,
        l_std: (sums.ll / total).sqrt(),
        a_std: (sums.aa / total).sqrt(),
        b_std: (sums.bb / total).sqrt(),
        light_dx: ramp.dx,
        light_dy: ramp.dy,
        light_strength: ramp.strength,
        light_explained: ramp.explained,
    }
}

/// Weighted central second moments of position and L\*, and of a\* and b\*.
#[derive(Default)]
struct Moments {
    xx: f64,
    yy: f64,
    xy: f64,
    xl: f64,
    yl: f64,
    ll: f64,
    aa: f64,
    bb: f64,
}

#[derive(Default)]
struct Ramp {
    dx: f64,
    dy: f64,
    strength: f64,
    explained: f64,
}

impl Moments {
    /// Weighted least-squares plane `L = c + gx x + gy y`: the normal equations of the centred
    /// data are `[xx xy; xy yy] g = [xl; yl]`.
    fn fit_ramp(&self, total: f64) -> Ramp {
        let det = self.xx * self.yy - self.xy * self.xy;
        if det / (total * total) < MIN_SPREAD_DET {
            return Ramp::default();
        }
        let gx = (self.yy * self.xl - self.xy * self.yl) / det;
        let gy = (self.xx * self.yl - self.xy * self.xl) / det;
        let norm = gx.hypot(gy);
        if norm == 0.0 || !norm.is_finite() {
            return Ramp::default();
        }
        let (dx, dy) = (gx / norm, gy / norm);
        let spread = ((dx * dx * self.xx + 2.0 * dx * dy * self.xy + dy * dy * self.yy) / total)
            .max(0.0)
            .sqrt();
        let explained = if self.ll > 0.0 {
            ((gx * self.xl + gy * self.yl) / self.ll).clamp(0.0, 1.0)
        } else {
            0.0
        };
        Ramp {
            dx,
            dy,
            strength: 2.0 * norm * spread,
            explained,
        }
    }
}
