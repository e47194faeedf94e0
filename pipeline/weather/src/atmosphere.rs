//! The atmosphere shared by fog, rain and snow: atmospheric light from the frame, transmission
//! `t = exp(-beta * distance)` from depth, Koschmieder's law, and per-box statistics.

use image::RgbImage;
use roadsynth_types::BBox;
use serde::Serialize;

use crate::BoxWeather;
use crate::color::{decode_lut, encode, encode_lut, linear_to_srgb, luminance, srgb_to_linear};
use crate::depth::{DepthMap, Intrinsics, box_pixels_or_centre};

/// `-ln(0.05)`: meteorological visibility is the distance at which the contrast of a black object
/// against the horizon sky falls to 5% (Koschmieder), so `beta = -ln(0.05) / V ~= 3 / V`.
pub const CONTRAST_THRESHOLD_LN: f32 = 2.995_732_3;

/// Extinction coefficient (per metre) of a visibility (metres).
pub fn beta_from_visibility(visibility_m: f32) -> f32 {
    CONTRAST_THRESHOLD_LN / visibility_m
}

/// Visibility (metres) of an extinction coefficient (per metre); infinity for zero.
pub fn visibility_from_beta(beta: f32) -> f32 {
    if beta > 0.0 {
        CONTRAST_THRESHOLD_LN / beta
    } else {
        f32::INFINITY
    }
}

/// The atmospheric light the medium scatters toward the camera.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Airlight {
    /// Linear RGB.
    pub linear: [f32; 3],
    /// The same in sRGB `[0, 1]`, for provenance.
    pub srgb: [f32; 3],
    /// `dark_channel` (estimated) or `given`.
    pub source: &'static str,
    /// Pixels whose colour was averaged.
    pub pixels: usize,
}

impl Airlight {
    /// A given sRGB colour (`[0, 1]` each).
    pub fn given(srgb: [f32; 3]) -> Self {
        Self {
            linear: srgb.map(srgb_to_linear),
            srgb,
            source: "given",
            pixels: 0,
        }
    }
}

/// The given atmospheric light, else the one estimated from the frame.
pub fn airlight_of(image: &RgbImage, given: Option<[f32; 3]>) -> Airlight {
    given.map_or_else(|| estimate_airlight(image), Airlight::given)
}

/// Side of the pooling block and radius (in blocks) of the minimum filter of the dark channel:
/// a 3-pixel pooling then a 5-block window is He et al.'s 15-pixel patch.
const DARK_POOL: usize = 3;
const DARK_RADIUS: usize = 2;

/// Atmospheric light by the dark channel prior (He, Sun, Tang 2009): the dark channel is the
/// minimum over RGB and over a 15x15 patch; the brightest 0.1% of it are the most haze-opaque
/// pixels, and their mean colour is the atmospheric light. Clamped to a plausible fog colour: grey
/// level (sRGB) in `[0.6, 0.95]`, each channel within 0.06 of it, so a frame without sky (a wall,
/// a dark night) still gets a believable fog.
pub fn estimate_airlight(image: &RgbImage) -> Airlight {
    let (w, h) = (image.width() as usize, image.height() as usize);
    if w == 0 || h == 0 {
        return clamp_airlight([0.8; 3], 0);
    }
    let raw = image.as_raw();
    let (lw, lh) = (w.div_ceil(DARK_POOL), h.div_ceil(DARK_POOL));
    let pooled = dark_pool(raw, w, h);
    let dark = erode(
        &erode_rows(&pooled, lw, lh, DARK_RADIUS),
        lw,
        lh,
        DARK_RADIUS,
    );
    let mut hist = [0usize; 256];
    for &d in &dark {
        hist[d as usize] += 1;
    }
    // Exactly the brightest 0.1% of cells: all above the threshold value, then cells at it in
    // raster order.
    let wanted = (dark.len() as f64 * 0.001).ceil().max(1.0) as usize;
    let mut threshold = 0usize;
    let mut above = 0usize;
    for v in (0..256).rev() {
        if above + hist[v] >= wanted {
            threshold = v;
            break;
        }
        above += hist[v];
    }
    let mut at_threshold = wanted - above;
    let lut = decode_lut();
    let mut sum = [0.0f64; 3];
    let mut n = 0usize;
    for (cell, &d) in dark.iter().enumerate() {
        let d = d as usize;
        if d < threshold {
            continue;
        }
        if d == threshold {
            if at_threshold == 0 {
                continue;
            }
            at_threshold -= 1;
        }
        let (cx, cy) = (cell % lw, cell / lw);
        for y in cy * DARK_POOL..((cy + 1) * DARK_POOL).min(h) {
            for x in cx * DARK_POOL..((cx + 1) * DARK_POOL).min(w) {
                let i = 3 * (y * w + x);
                for (k, s) in sum.iter_mut().enumerate() {
                    *s += f64::from(lut[raw[i + k] as usize]);
                }
                n += 1;
            }
        }
    }
    let mean = sum.map(|s| linear_to_srgb((s / n.max(1) as f64) as f32));
    clamp_airlight(mean, n)
}

fn clamp_airlight(srgb: [f32; 3], pixels: usize) -> Airlight {
    let grey = (srgb[0] + srgb[1] + srgb[2]) / 3.0;
    let level = grey.clamp(0.6, 0.95);
    let srgb = srgb.map(|c| (level + (c - grey).clamp(-0.06, 0.06)).clamp(0.0, 1.0));
    Airlight {
        linear: srgb.map(srgb_to_linear),
        srgb,
        source: "dark_channel",
        pixels,
    }
}

/// Branch-free minimum (pixel values are random, so branches would mispredict; wrapping
/// arithmetic, since the values are bytes).
#[inline]
fn min_i32(a: i32, b: i32) -> i32 {
    let d = a.wrapping_sub(b);
    b.wrapping_add(d & (d >> 31))
}

/// Minimum over RGB and over `DARK_POOL x DARK_POOL` blocks, sampled on a 2-pixel lattice (rows
/// 0 and 2, pixels 0 and 2 of each block: four of nine, at half the cost; the dark channel only
/// ranks regions here): first down the two rows (independent per byte), then across each block.
fn dark_pool(raw: &[u8], w: usize, h: usize) -> Vec<u8> {
    let lw = w.div_ceil(DARK_POOL);
    let stride = 3 * w;
    let mut pooled = vec![0u8; lw * h.div_ceil(DARK_POOL)];
    let min3 = |p: &[u8]| min_i32(min_i32(i32::from(p[0]), i32::from(p[1])), i32::from(p[2]));
    for (by, out) in pooled.chunks_exact_mut(lw).enumerate() {
        let y0 = by * DARK_POOL;
        let top = &raw[y0 * stride..(y0 + 1) * stride];
        let y2 = (y0 + 2).min(h - 1);
        let bottom = &raw[y2 * stride..(y2 + 1) * stride];
        for (bx, o) in out.iter_mut().enumerate() {
            let first = 3 * DARK_POOL * bx;
            // Pixel 2 of the block, or the last pixel of a ragged block.
            let third = (first + 6).min(stride - 3);
            let m = min_i32(
                min_i32(min3(&top[first..first + 3]), min3(&top[third..third + 3])),
                min_i32(
                    min3(&bottom[first..first + 3]),
                    min3(&bottom[third..third + 3]),
                ),
            );
            *o = m as u8;
        }
    }
    pooled
}

/// Minimum over a clamped `2r + 1` window along rows.
fn erode_rows(src: &[u8], w: usize, _h: usize, r: usize) -> Vec<u8> {
    let mut out = vec![0u8; src.len()];
    for (row, dst) in src.chunks_exact(w).zip(out.chunks_exact_mut(w)) {
        for (x, o) in dst.iter_mut().enumerate() {
            let window = &row[x.saturating_sub(r)..=(x + r).min(w - 1)];
            *o = window.iter().fold(255, |m, &c| min_i32(m, i32::from(c))) as u8;
        }
    }
    out
}

/// Minimum over a clamped `2r + 1` window along columns, a row at a time.
fn erode(src: &[u8], w: usize, h: usize, r: usize) -> Vec<u8> {
    let mut out = vec![0u8; src.len()];
    let mut acc = vec![0i32; w];
    for (y, dst) in out.chunks_exact_mut(w).enumerate() {
        acc.fill(255);
        for row in src[y.saturating_sub(r) * w..((y + r).min(h - 1) + 1) * w].chunks_exact(w) {
            for (a, &c) in acc.iter_mut().zip(row) {
                *a = min_i32(*a, i32::from(c));
            }
        }
        for (o, &a) in dst.iter_mut().zip(&acc) {
            *o = a as u8;
        }
    }
    out
}

/// Per-pixel factor from depth (z) to the length of the viewing ray, `sqrt(1 + x'^2 + y'^2)`, as
/// separable squared terms: `(columns, rows)`.
pub fn ray_terms(w: usize, h: usize, k: &Intrinsics) -> (Vec<f32>, Vec<f32>) {
    let col = (0..w)
        .map(|x| (((x as f64 + 0.5 - k.cx) / k.fx).powi(2)) as f32)
        .collect();
    let row = (0..h)
        .map(|y| (((y as f64 + 0.5 - k.cy) / k.fy).powi(2)) as f32)
        .collect();
    (col, row)
}

/// A per-pixel quantity evaluated on demand at the pixels `xs x ys` (row-major), such as fog's
/// modulation of `beta`.
pub type SampleMap<'a> = dyn Fn(&[usize], &[usize]) -> Vec<f32> + 'a;

/// [`transmission`] at the pixels `xs x ys` only (row-major: `ys.len()` rows of `xs.len()`), with
/// `modulation` given at those samples: the same values the full map has there.
pub fn transmission_at(
    depth: &DepthMap,
    beta: f32,
    modulation: Option<&[f32]>,
    intrinsics: Option<&Intrinsics>,
    (xs, ys): (&[usize], &[usize]),
) -> Vec<f32> {
    let w = depth.width as usize;
    let depths = depth.at_grid(xs, ys);
    let mut t = Vec::with_capacity(xs.len() * ys.len());
    if modulation.is_none() && intrinsics.is_none() {
        for &d in &depths {
            t.push((-beta * d.max(0.0)).exp());
        }
        return t;
    }
    let (col, row) = intrinsics.map_or_else(
        || (vec![0.0; w], vec![0.0; depth.height as usize]),
        |k| ray_terms(w, depth.height as usize, k),
    );
    for (k, &y) in ys.iter().enumerate() {
        let ry = 1.0 + row[y];
        for (i, &x) in xs.iter().enumerate() {
            let d = depths[k * xs.len() + i];
            let m = modulation.map_or(1.0, |m| m[k * xs.len() + i]);
            t.push(if d == f32::INFINITY {
                0.0
            } else {
                (-beta * m * d.max(0.0) * (ry + col[x]).sqrt()).exp()
            });
        }
    }
    t
}

/// Transmission `t = exp(-beta * m * distance)` of every pixel, where `m` is an optional
/// per-pixel multiplier of `beta` (spatial variation) and `distance` the ray length when
/// intrinsics are given, else the depth. Depth NaN or negative counts as zero distance.
pub fn transmission(
    depth: &DepthMap,
    beta: f32,
    modulation: Option<&[f32]>,
    intrinsics: Option<&Intrinsics>,
) -> Vec<f32> {
    let (w, h) = (depth.width as usize, depth.height as usize);
    let mut t = vec![0.0f32; w * h];
    if modulation.is_none() && intrinsics.is_none() {
        // Ground-plane and box depths repeat along rows: reuse the last exponential.
        let (mut last_d, mut last_t) = (f32::NAN.to_bits(), 1.0f32);
        for (o, &d) in t.iter_mut().zip(depth.metres()) {
            if d.to_bits() != last_d {
                last_d = d.to_bits();
                last_t = (-beta * d.max(0.0)).exp();
            }
            *o = last_t;
        }
        return t;
    }
    let (col, row) =
        intrinsics.map_or_else(|| (vec![0.0; w], vec![0.0; h]), |k| ray_terms(w, h, k));
    let ones = vec![1.0f32; w];
    for (y, (out, ds)) in t
        .chunks_exact_mut(w)
        .zip(depth.metres().chunks_exact(w))
        .enumerate()
    {
        let ry = 1.0 + row[y];
        let m = modulation.map_or(ones.as_slice(), |m| &m[y * w..(y + 1) * w]);
        for (((o, &d), &c), &m) in out.iter_mut().zip(ds).zip(&col).zip(m) {
            // Sky (infinite depth) is common and needs no arithmetic: t = 0.
            *o = if d == f32::INFINITY {
                0.0
            } else {
                (-beta * m * d.max(0.0) * (ry + c).sqrt()).exp()
            };
        }
    }
    t
}

/// Koschmieder's law in linear light on 8-bit sRGB: `I = R t + L (1 - t)`.
pub fn koschmieder_srgb(image: &RgbImage, t: &[f32], air: [f32; 3]) -> RgbImage {
    let (dec, enc) = (decode_lut(), encode_lut());
    let mut out = image.clone();
    for (p, &tv) in out.as_mut().chunks_exact_mut(3).zip(t) {
        let s = 1.0 - tv;
        p[0] = encode(enc, dec[p[0] as usize] * tv + air[0] * s);
        p[1] = encode(enc, dec[p[1] as usize] * tv + air[1] * s);
        p[2] = encode(enc, dec[p[2] as usize] * tv + air[2] * s);
    }
    out
}

/// Koschmieder's law on a linear image in place.
pub fn koschmieder_linear(lin: &mut [f32], t: &[f32], air: [f32; 3]) {
    for (p, &tv) in lin.chunks_exact_mut(3).zip(t) {
        let s = 1.0 - tv;
        p[0] = p[0] * tv + air[0] * s;
        p[1] = p[1] * tv + air[1] * s;
        p[2] = p[2] * tv + air[2] * s;
    }
}

/// Per-box statistics: mean transmission, visibility from the mean extinction inside the box
/// (`beta * modulation`), and mean linear luminance of the output.
pub fn box_stats(
    boxes: &[BBox],
    out: &RgbImage,
    t: Option<&[f32]>,
    beta: f32,
    modulation: Option<&SampleMap<'_>>,
) -> Vec<BoxWeather> {
    let (w, h) = (out.width() as usize, out.height() as usize);
    let lut = decode_lut();
    let raw = out.as_raw();
    boxes
        .iter()
        .map(|b| {
            let Some((x0, x1, y0, y1)) = box_pixels_or_centre(b, w, h) else {
                return BoxWeather {
                    transmittance: t.map_or(1.0, |_| f32::NAN),
                    visibility_m: visibility_from_beta(beta),
                    luminance: f32::NAN,
                };
            };
            let (mut st, mut sm, mut sl) = (0.0f64, 0.0f64, 0.0f64);
            let m = modulation.map(|m| {
                let xs: Vec<usize> = (x0..x1).collect();
                let ys: Vec<usize> = (y0..y1).collect();
                let values = m(&xs, &ys);
                debug_assert_eq!(values.len(), xs.len() * ys.len(), "one value per box pixel");
                values
            });
            let mut m = m.iter().flatten();
            for y in y0..y1 {
                for x in x0..x1 {
                    let i = y * w + x;
                    st += f64::from(t.map_or(1.0, |t| t[i]));
                    sm += f64::from(m.next().copied().unwrap_or(1.0));
                    let p = [
                        lut[raw[3 * i] as usize],
                        lut[raw[3 * i + 1] as usize],
                        lut[raw[3 * i + 2] as usize],
                    ];
                    sl += f64::from(luminance(p));
                }
            }
            let n = ((x1 - x0) * (y1 - y0)) as f64;
            BoxWeather {
                transmittance: (st / n) as f32,
                visibility_m: visibility_from_beta(beta * (sm / n) as f32),
                luminance: (sl / n) as f32,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transmission_at_samples_is_the_full_map_there() {
        let (w, h) = (37usize, 23usize);
        let metres: Vec<f32> = (0..w * h)
            .map(|i| match i % 7 {
                0 => f32::INFINITY,
                k => 4.0 + (i as f32) * 0.37 + k as f32,
            })
            .collect();
        let depth = DepthMap::new(w as u32, h as u32, metres).expect("depth");
        let modulation: Vec<f32> = (0..w * h).map(|i| 0.8 + 0.01 * (i % 40) as f32).collect();
        let k = Intrinsics {
            fx: 30.0,
            fy: 28.0,
            cx: 18.0,
            cy: 11.0,
        };
        let (xs, ys) = ([0usize, 5, 17, 36], [0usize, 9, 22]);
        for (m, intrinsics) in [
            (None, None),
            (Some(&modulation), None),
            (None, Some(&k)),
            (Some(&modulation), Some(&k)),
        ] {
            let full = transmission(&depth, 0.02, m.map(Vec::as_slice), intrinsics);
            let sampled_m: Option<Vec<f32>> = m.map(|m| {
                ys.iter()
                    .flat_map(|&y| xs.iter().map(move |&x| m[y * w + x]))
                    .collect()
            });
            let at = transmission_at(&depth, 0.02, sampled_m.as_deref(), intrinsics, (&xs, &ys));
            for (j, &y) in ys.iter().enumerate() {
                for (i, &x) in xs.iter().enumerate() {
                    assert_eq!(
                        at[j * xs.len() + i].to_bits(),
                        full[y * w + x].to_bits(),
                        "({x}, {y}), modulated {}, intrinsics {}",
                        m.is_some(),
                        intrinsics.is_some()
                    );
                }
            }
        }
    }
}
