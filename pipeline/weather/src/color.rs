//! sRGB <-> linear light through lookup tables: every operation mixes light in linear space, where
//! Koschmieder's law and additive glows hold, and 8-bit sRGB only at the ends.

use std::sync::OnceLock;

use image::RgbImage;

/// Entries of the linear -> sRGB table: linear values are quantised to `1/(LINEAR_STEPS - 1)`.
pub const LINEAR_STEPS: usize = 4096;

/// Rec. 709 / sRGB luminance weights of linear RGB.
pub const LUMA: [f32; 3] = [0.2126, 0.7152, 0.0722];

/// The sRGB electro-optical transfer function (IEC 61966-2-1), `c` in `[0, 1]`.
pub fn srgb_to_linear(c: f32) -> f32 {
    if c <= 0.040_45 {
        c / 12.92
    } else {
        ((c + 0.055) / 1.055).powf(2.4)
    }
}

/// The inverse of [`srgb_to_linear`], `l` in `[0, 1]`.
pub fn linear_to_srgb(l: f32) -> f32 {
    if l <= 0.003_130_8 {
        l * 12.92
    } else {
        1.055 * l.powf(1.0 / 2.4) - 0.055
    }
}

/// The 256-entry decoding table: sRGB code -> linear value.
pub fn decode_lut() -> &'static [f32; 256] {
    static LUT: OnceLock<[f32; 256]> = OnceLock::new();
    LUT.get_or_init(|| {
        let mut lut = [0.0; 256];
        for (code, v) in lut.iter_mut().enumerate() {
            *v = srgb_to_linear(code as f32 / 255.0);
        }
        lut
    })
}

/// The 4096-entry encoding table: quantised linear value -> sRGB code.
pub fn encode_lut() -> &'static [u8; LINEAR_STEPS] {
    static LUT: OnceLock<[u8; LINEAR_STEPS]> = OnceLock::new();
    LUT.get_or_init(|| {
        let mut lut = [0; LINEAR_STEPS];
        for (i, v) in lut.iter_mut().enumerate() {
            let l = i as f32 / (LINEAR_STEPS - 1) as f32;
            *v = (linear_to_srgb(l) * 255.0).round().clamp(0.0, 255.0) as u8;
        }
        lut
    })
}

/// Encodes one linear value (clamped to `[0, 1]`; NaN gives 0) with the table. Rounds by adding
/// 2^23 (where the float's unit is 1, so the mantissa holds the rounded integer): no libm call and
/// no saturating conversion in the innermost loops.
#[inline]
pub fn encode(lut: &[u8; LINEAR_STEPS], l: f32) -> u8 {
    const SHIFT: f32 = 8_388_608.0;
    // Not `clamp`: NaN must become 0 (`max` drops NaN), not stay NaN.
    #[allow(clippy::manual_clamp, reason = "NaN must map to 0")]
    let v = l.max(0.0).min(1.0) * (LINEAR_STEPS - 1) as f32 + SHIFT;
    lut[(v.to_bits() & (LINEAR_STEPS as u32 - 1)) as usize]
}

/// Encodes a linear value already known to lie in `[0, 1]`, pre-scaled: `v = l * 4095 + 2^23`.
#[inline]
pub fn encode_scaled(lut: &[u8; LINEAR_STEPS], v: f32) -> u8 {
    lut[(v.to_bits() & (LINEAR_STEPS as u32 - 1)) as usize]
}

/// A linear-light RGB image, interleaved `f32`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearRgb {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl LinearRgb {
    pub fn from_srgb(image: &RgbImage) -> Self {
        let lut = decode_lut();
        let data = image.as_raw().iter().map(|&c| lut[c as usize]).collect();
        Self {
            width: image.width() as usize,
            height: image.height() as usize,
            data,
        }
    }

    /// Encodes back to 8-bit sRGB, clamping to `[0, 1]`.
    pub fn to_srgb(&self) -> RgbImage {
        let lut = encode_lut();
        let raw: Vec<u8> = self.data.iter().map(|&l| encode(lut, l)).collect();
        RgbImage::from_raw(self.width as u32, self.height as u32, raw)
            .unwrap_or_else(|| RgbImage::new(self.width as u32, self.height as u32))
    }

    #[inline]
    pub fn pixel(&self, i: usize) -> [f32; 3] {
        [self.data[3 * i], self.data[3 * i + 1], self.data[3 * i + 2]]
    }
}

/// Linear luminance of a pixel.
#[inline]
pub fn luminance(p: [f32; 3]) -> f32 {
    LUMA[0] * p[0] + LUMA[1] * p[1] + LUMA[2] * p[2]
}

/// Grey level in `[0, 1]` of 8-bit sRGB (BT.601 weights in 1/256ths, as image guides use), as
/// three tables: `gray = t[0][r] + t[1][g] + t[2][b]`.
pub fn gray_luts() -> &'static [[f32; 256]; 3] {
    static LUTS: OnceLock<[[f32; 256]; 3]> = OnceLock::new();
    LUTS.get_or_init(|| {
        let mut t = [[0.0; 256]; 3];
        for (lut, weight) in t.iter_mut().zip([77.0f32, 150.0, 29.0]) {
            for (code, v) in lut.iter_mut().enumerate() {
                *v = weight * code as f32 / (256.0 * 255.0);
            }
        }
        t
    })
}

/// Grey level of one pixel (see [`gray_luts`]).
#[inline]
pub fn gray(luts: &[[f32; 256]; 3], p: &[u8]) -> f32 {
    luts[0][p[0] as usize] + luts[1][p[1] as usize] + luts[2][p[2] as usize]
}

/// Mean grey level of `s x s` blocks (the last ones ragged), as [`crate::filter::pool_mean`]
/// would give on the grey image.
pub fn pool_gray(image: &RgbImage, s: usize) -> Vec<f64> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let (lw, lh) = (w.div_ceil(s), h.div_ceil(s));
    let mut sums = vec![0u64; lw * lh];
    // Down the block's rows per byte first (independent adds), then across each block.
    let mut column = vec![0u32; 3 * w];
    for (by, rows) in image.as_raw().chunks(3 * w * s).enumerate() {
        column.fill(0);
        for row in rows.chunks_exact(3 * w) {
            for (c, &v) in column.iter_mut().zip(row) {
                *c = c.wrapping_add(u32::from(v));
            }
        }
        let dst = &mut sums[by * lw..(by + 1) * lw];
        for (d, block) in dst.iter_mut().zip(column.chunks(3 * s)) {
            let (mut r, mut g, mut b) = (0u32, 0u32, 0u32);
            for p in block.chunks_exact(3) {
                r = r.wrapping_add(p[0]);
                g = g.wrapping_add(p[1]);
                b = b.wrapping_add(p[2]);
            }
            // Sums of at most 16 x 16 bytes: no overflow.
            *d = 77u64
                .wrapping_mul(u64::from(r))
                .wrapping_add(150u64.wrapping_mul(u64::from(g)))
                .wrapping_add(29u64.wrapping_mul(u64::from(b)));
        }
    }
    let mut out = vec![0.0f64; lw * lh];
    for ly in 0..lh {
        let rows = (h.min((ly + 1) * s) - ly * s) as f64;
        for lx in 0..lw {
            let cols = (w.min((lx + 1) * s) - lx * s) as f64;
            out[ly * lw + lx] = sums[ly * lw + lx] as f64 / (256.0 * 255.0 * rows * cols);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_the_tables() {
        let (dec, enc) = (decode_lut(), encode_lut());
        for code in 0..=255u8 {
            assert_eq!(encode(enc, dec[code as usize]), code, "code {code}");
        }
        assert_eq!(encode(enc, f32::NAN), 0);
        assert_eq!(encode(enc, -1.0), 0);
        assert_eq!(encode(enc, 7.0), 255);
    }
}
