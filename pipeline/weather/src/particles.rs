//! Falling particles (rain drops, snow flakes) in the camera's view frustum: how many, at what
//! depth, and their motion-blurred, defocused images accumulated as opacity.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// How many particles of a population are drawn, and how deep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Population {
    /// Particles (of the rendered sizes) per cubic metre.
    pub density_per_m3: f64,
    /// Expected particles between `near` and the requested far distance.
    pub expected: f64,
    /// Particles drawn.
    pub count: u32,
    pub near_m: f32,
    /// The far distance actually populated: reduced from the requested one when the expected
    /// count exceeds the cap (the farthest particles are the faintest; the extinction term
    /// already accounts for the medium).
    pub far_effective_m: f32,
    /// Particles not rasterised because their opacity was below [`MIN_ALPHA`].
    pub skipped_faint: u32,
}

/// Opacity below which a particle is not rasterised (invisible at 8 bits).
pub const MIN_ALPHA: f32 = 1e-3;

/// Plans a population of `density` particles per m^3 between `near` and `far` metres seen by a
/// `w x h` camera of focal `f` pixels: the frustum's cross-section at depth `d` is
/// `(w h / f^2) d^2`, so the volume is `(w h / f^2) (far^3 - near^3) / 3`.
pub fn plan(density: f64, w: usize, h: usize, f: f32, near: f32, far: f32, cap: u32) -> Population {
    let area = (w * h) as f64 / f64::from(f).powi(2);
    let (n3, f3) = (f64::from(near).powi(3), f64::from(far).powi(3));
    let expected = density * area * (f3 - n3) / 3.0;
    let (count, far_eff) = if expected > f64::from(cap) {
        let far3 = n3 + 3.0 * f64::from(cap) / (density * area);
        (cap, far3.cbrt() as f32)
    } else {
        (expected.round() as u32, far)
    };
    Population {
        density_per_m3: density,
        expected,
        count,
        near_m: near,
        far_effective_m: far_eff,
        skipped_faint: 0,
    }
}

/// A depth uniform in the frustum's volume between `near` and `far` (density proportional to `d^2`).
pub fn sample_depth(rng: &mut ChaCha8Rng, near: f32, far: f32) -> f32 {
    let (n3, f3) = (near.powi(3), far.powi(3));
    (n3 + rng.random::<f32>() * (f3 - n3)).cbrt()
}

/// Sizes from `N(D) ~ exp(-lambda D)` truncated to `[lo, hi]`, by the inverse CDF.
#[derive(Debug, Clone, Copy)]
pub struct TruncatedExp {
    lambda: f32,
    lo: f32,
    hi: f32,
    span: f32,
}

impl TruncatedExp {
    pub fn new(lambda: f32, lo: f32, hi: f32) -> Self {
        Self {
            lambda,
            lo,
            hi,
            span: 1.0 - (-lambda * (hi - lo)).exp(),
        }
    }

    pub fn sample(&self, rng: &mut ChaCha8Rng) -> f32 {
        let u: f32 = rng.random();
        (self.lo - (1.0 - u * self.span).ln() / self.lambda).min(self.hi)
    }
}

/// The fall direction `(sin, cos)` of a base angle turned by a small `jitter` (radians, a few
/// degrees): third-order expansions instead of a libm call per particle.
#[inline]
pub fn turn(base: (f32, f32), jitter: f32) -> (f32, f32) {
    let j2 = jitter * jitter;
    let (sj, cj) = (jitter * (1.0 - j2 / 6.0), 1.0 - 0.5 * j2);
    (base.0 * cj + base.1 * sj, base.1 * cj - base.0 * sj)
}

/// One particle's image during the exposure: a segment (start to end of its motion) of a given
/// width, peak opacity and depth.
#[derive(Debug, Clone, Copy, Default)]
pub struct Streak {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
    /// Full width in pixels (at least 1: thinner images are spread over one pixel with their
    /// opacity scaled down by the caller).
    pub width: f32,
    pub alpha: f32,
    pub depth: f32,
}

/// `floor` without a libm call (the build's baseline x86-64 has no rounding instruction) and
/// without a branch: truncation of a value shifted positive (coordinates here are far above
/// -4096; anything below clamps there).
#[inline]
fn floor_i(v: f32) -> i64 {
    (v.max(-4096.0) + 4096.0) as i64 - 4096
}

/// Adds a streak's opacity to `layer`, skipping pixels whose scene depth is nearer than the
/// particle (it is behind them). Streaks one pixel wide (most of them: sub-pixel drops far from the
/// lens) are drawn by Wu's method along their major axis, wider ones as an anti-aliased capsule.
pub fn draw(layer: &mut [f32], w: usize, h: usize, scene_depth: &[f32], s: &Streak) {
    if s.width <= 1.0 {
        draw_thin(layer, w, h, scene_depth, s);
    } else {
        draw_capsule(layer, w, h, scene_depth, s);
    }
}

/// A one-pixel-wide streak, extended by half a pixel at each end (the particle's own image):
/// each step along the major axis gives `alpha * overlap * len / major` to the two pixels
/// nearest the line across it, split linearly, so the total is the capsule's area times alpha.
fn draw_thin(layer: &mut [f32], w: usize, h: usize, scene_depth: &[f32], s: &Streak) {
    let (dx, dy) = (s.x1 - s.x0, s.y1 - s.y0);
    let len = (dx * dx + dy * dy).sqrt();
    // Work in (major, minor) coordinates: rows for steep streaks, columns for flat ones.
    let vertical = dy.abs() >= dx.abs();
    let (a0, b0, da, db, n_major, n_minor) = if vertical {
        (s.y0, s.x0, dy, dx, h, w)
    } else {
        (s.x0, s.y0, dx, dy, w, h)
    };
    let (lo, hi) = if da >= 0.0 {
        (a0, a0 + da)
    } else {
        (a0 + da, a0)
    };
    let (lo, hi) = (lo - 0.5, hi + 0.5);
    let slope = if da.abs() > 1e-6 { db / da } else { 0.0 };
    let gain = if da.abs() > 1e-6 {
        s.alpha * len / da.abs()
    } else {
        s.alpha
    };
    let first = floor_i(lo).max(0);
    let last = floor_i(hi).min(n_major as i64 - 1);
    let (c_lo, c_hi) = (a0.min(a0 + da), a0.max(a0 + da));
    // Pixel index = major * major_stride + minor * minor_stride (wrapping: both in range).
    let (major_stride, minor_stride) = if vertical { (w, 1) } else { (1, w) };
    let n_minor = n_minor as i64;
    let end = last + 1;
    for j in first..end {
        let jf = j as f32;
        let overlap = hi.min(jf + 1.0) - lo.max(jf);
        if overlap <= 0.0 {
            continue;
        }
        let centre = (jf + 0.5).max(c_lo).min(c_hi);
        let u = b0 + (centre - a0) * slope - 0.5;
        let i = floor_i(u);
        let f = u - i as f32;
        let weight = gain * overlap;
        let base = (j as usize).wrapping_mul(major_stride);
        if i >= 0 && i < n_minor {
            let idx = base.wrapping_add((i as usize).wrapping_mul(minor_stride));
            deposit(layer, scene_depth, idx, s.depth, weight * (1.0 - f));
        }
        if f > 0.0 && i + 1 >= 0 && i + 1 < n_minor {
            let idx = base.wrapping_add(((i + 1) as usize).wrapping_mul(minor_stride));
            deposit(layer, scene_depth, idx, s.depth, weight * f);
        }
    }
}

/// Adds opacity to one pixel unless the scene there is nearer than the particle.
#[inline]
fn deposit(layer: &mut [f32], scene_depth: &[f32], idx: usize, depth: f32, amount: f32) {
    if scene_depth[idx] >= depth {
        layer[idx] += amount;
    }
}

/// Rows per band of [`draw_all`]'s ordering.
const BAND_ROWS: usize = 8;

/// Draws every streak, band of rows by band of rows (a stable counting sort on the top row, so
/// the result is still a pure function of the list): the depth and opacity maps are then swept top
/// to bottom instead of hit at random, which keeps them in cache.
pub fn draw_all(layer: &mut [f32], w: usize, h: usize, scene_depth: &[f32], streaks: &[Streak]) {
    let bands = h.div_ceil(BAND_ROWS).max(1);
    let band = |s: &Streak| ((s.y0.min(s.y1).max(0.0) as usize) / BAND_ROWS).min(bands - 1);
    let mut starts = vec![0usize; bands + 1];
    for s in streaks {
        starts[band(s) + 1] += 1;
    }
    for b in 0..bands {
        starts[b + 1] += starts[b];
    }
    let mut sorted = vec![Streak::default(); streaks.len()];
    for s in streaks {
        let b = band(s);
        sorted[starts[b]] = *s;
        starts[b] += 1;
    }
    for s in &sorted {
        draw(layer, w, h, scene_depth, s);
    }
}

/// A capsule around the segment with an anti-aliased edge (coverage falls from 1 to 0 over the
/// last pixel).
fn draw_capsule(layer: &mut [f32], w: usize, h: usize, scene_depth: &[f32], s: &Streak) {
    let reach = 0.5 * s.width + 0.5;
    let (dx, dy) = (s.x1 - s.x0, s.y1 - s.y0);
    let len2 = dx * dx + dy * dy;
    let len = len2.sqrt();
    let inv_len2 = if len2 > 0.0 { 1.0 / len2 } else { 0.0 };
    let clip = |v: f32, n: usize| (floor_i(v).max(0) as usize).min(n);
    let y_lo = clip(s.y0.min(s.y1) - reach, h);
    let y_hi = clip(s.y0.max(s.y1) + reach + 1.0, h);
    let bx_lo = clip(s.x0.min(s.x1) - reach, w);
    let bx_hi = clip(s.x0.max(s.x1) + reach + 1.0, w);
    // Horizontal half-extent of the band around the segment's line at one row.
    let ext = if dy.abs() > 1e-3 * len.max(1.0) {
        reach * len / dy.abs()
    } else {
        f32::INFINITY
    };
    for y in y_lo..y_hi {
        let py = y as f32 + 0.5;
        let xc = if dy.abs() > 0.0 {
            s.x0 + ((py - s.y0) / dy).clamp(0.0, 1.0) * dx
        } else {
            s.x0
        };
        let x_lo = clip(xc - ext, w).max(bx_lo);
        let x_hi = clip(xc + ext + 1.0, w).min(bx_hi);
        let row = y.wrapping_mul(w);
        for x in x_lo..x_hi {
            let px = x as f32 + 0.5;
            let t = (((px - s.x0) * dx + (py - s.y0) * dy) * inv_len2).clamp(0.0, 1.0);
            let (qx, qy) = (s.x0 + t * dx - px, s.y0 + t * dy - py);
            let cover = reach - (qx * qx + qy * qy).sqrt();
            let idx = row.wrapping_add(x);
            if cover <= 0.0 || scene_depth[idx] < s.depth {
                continue;
            }
            layer[idx] += s.alpha * cover.min(1.0);
        }
    }
}

/// Composites accumulated particle opacity over a linear image: `I + min(S, 1) (E - I)`, the
/// time-averaged blend of the particle's radiance `E` over the background (Garg and Nayar 2004).
pub fn composite(lin: &mut [f32], layer: &[f32], radiance: [f32; 3]) {
    for (p, &s) in lin.chunks_exact_mut(3).zip(layer) {
        if s > 0.0 {
            let a = s.min(1.0);
            p[0] += a * (radiance[0] - p[0]);
            p[1] += a * (radiance[1] - p[1]);
            p[2] += a * (radiance[2] - p[2]);
        }
    }
}

/// [`composite`] fused with the encoding to 8-bit sRGB (one pass instead of two).
pub fn composite_encode(
    lin: &[f32],
    layer: &[f32],
    radiance: [f32; 3],
    w: usize,
    h: usize,
) -> image::RgbImage {
    use crate::color::{LINEAR_STEPS, encode_scaled};
    let enc = crate::color::encode_lut();
    let scale = (LINEAR_STEPS - 1) as f32;
    // Every input is a convex combination of values in [0, 1]: pre-scaled, unclamped encoding.
    let e = radiance.map(|v| v * scale);
    let mut raw = vec![0u8; lin.len()];
    for ((o, p), &s) in raw.chunks_exact_mut(3).zip(lin.chunks_exact(3)).zip(layer) {
        let a = s.min(1.0);
        let keep = (1.0 - a) * scale;
        o[0] = encode_scaled(enc, p[0] * keep + a * e[0] + 8_388_608.0);
        o[1] = encode_scaled(enc, p[1] * keep + a * e[1] + 8_388_608.0);
        o[2] = encode_scaled(enc, p[2] * keep + a * e[2] + 8_388_608.0);
    }
    image::RgbImage::from_raw(w as u32, h as u32, raw)
        .unwrap_or_else(|| image::RgbImage::new(w as u32, h as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vertical_streak_covers_its_length_with_its_opacity() {
        let (w, h) = (20, 40);
        let mut layer = vec![0.0; w * h];
        let depth = vec![f32::INFINITY; w * h];
        let s = Streak {
            x0: 10.5,
            y0: 5.0,
            x1: 10.5,
            y1: 25.0,
            width: 1.0,
            alpha: 0.5,
            depth: 3.0,
        };
        draw(&mut layer, w, h, &depth, &s);
        let total: f32 = layer.iter().sum();
        // Area of a 1-px-wide capsule of length 20, at opacity 0.5.
        assert!((total - 0.5 * 21.0).abs() < 0.01, "{total}");
        assert!((layer[15 * w + 10] - 0.5).abs() < 1e-6);
        // A wide streak (capsule) keeps its area too: 3 x (20 + 3 pi / 4) at full coverage.
        let mut wide = vec![0.0; w * h];
        draw(&mut wide, w, h, &depth, &Streak { width: 3.0, ..s });
        let area: f32 = wide.iter().sum::<f32>() / 0.5;
        assert!(
            (area - (3.0 * 20.0 + std::f32::consts::PI * 2.25)).abs() < 2.5,
            "{area}"
        );
        // A slanted thin streak keeps its length.
        let mut slanted = vec![0.0; w * h];
        draw(
            &mut slanted,
            w,
            h,
            &depth,
            &Streak {
                x0: 5.0,
                y0: 5.0,
                x1: 15.0,
                y1: 25.0,
                ..s
            },
        );
        let expected = 0.5 * (500.0f32.sqrt() + 1.0);
        let got: f32 = slanted.iter().sum();
        assert!((got - expected).abs() < 0.3, "{got} vs {expected}");
        // Behind a nearer object nothing is drawn.
        let mut hidden = vec![0.0; w * h];
        draw(&mut hidden, w, h, &vec![2.0; w * h], &s);
        assert!(hidden.iter().all(|&v| v == 0.0));
    }
}
