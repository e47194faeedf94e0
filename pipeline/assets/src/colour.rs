//! CIE L\*a\*b\* (D65) of sRGB and back, by tables: the one conversion the asset bank and the
//! compositing engine share, so that a cut-out's measured colour and a frame's are comparable.
//!
//! It agrees with `palette` to within 2e-3 in L\*a\*b\* units (tested) at a fraction of the cost:
//! the sRGB transfer curves are tables interpolated linearly (4096 steps, error below 2e-5 of
//! full scale), and the cube root is Newton's iteration from a bit-level first guess (no call into
//! `libm`, no division). `OpenCV`'s float conversion, used before, built its tables in software
//! floating point on first use: about 0.1 s of CPU per process.

use std::sync::OnceLock;

/// sRGB (IEC 61966-2-1) linear RGB to CIE XYZ, D65.
const RGB_TO_XYZ: [[f64; 3]; 3] = [
    [0.412_456_4, 0.357_576_1, 0.180_437_5],
    [0.212_672_9, 0.715_152_2, 0.072_175_0],
    [0.019_333_9, 0.119_192_0, 0.950_304_1],
];
/// The D65 white point, `Y = 1`.
const WHITE: [f64; 3] = [0.950_47, 1.0, 1.088_83];
/// CIE's `(6/29)^3`: below it `f(t)` is linear.
const EPSILON: f32 = 216.0 / 24_389.0;
/// CIE's `(29/6)^2 / 3`, the slope of the linear part of `f`.
const KAPPA_3: f32 = 841.0 / 108.0;
/// Steps of the transfer-curve tables over `[0, 1]`.
const STEPS: usize = 4096;

struct Tables {
    /// sRGB `[0, 1]` to linear, at `i / STEPS`.
    decode: Vec<f32>,
    /// Linear `[0, 1]` to sRGB, at `i / STEPS`.
    encode: Vec<f32>,
    /// Linear RGB to `XYZ / white`.
    to_xyz: [[f32; 3]; 3],
    /// `XYZ / white` to linear RGB.
    from_xyz: [[f32; 3]; 3],
}

/// sRGB `[0, 1]` to linear, exactly (in `f64`).
pub(crate) fn decode_exact(v: f64) -> f64 {
    if v <= 0.040_45 {
        v / 12.92
    } else {
        ((v + 0.055) / 1.055).powf(2.4)
    }
}

fn encode_exact(v: f64) -> f64 {
    if v <= 0.003_130_8 {
        v * 12.92
    } else {
        1.055 * v.powf(1.0 / 2.4) - 0.055
    }
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let at = |f: fn(f64) -> f64| -> Vec<f32> {
            (0..=STEPS)
                .map(|i| f(i as f64 / STEPS as f64) as f32)
                .collect()
        };
        let to_xyz: [[f64; 3]; 3] =
            std::array::from_fn(|r| std::array::from_fn(|c| RGB_TO_XYZ[r][c] / WHITE[r]));
        Tables {
            decode: at(decode_exact),
            encode: at(encode_exact),
            to_xyz: to_xyz.map(|row| row.map(|v| v as f32)),
            from_xyz: inverse(&to_xyz).map(|row| row.map(|v| v as f32)),
        }
    })
}

fn inverse(m: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let cof =
        |r0: usize, r1: usize, c0: usize, c1: usize| m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
    let det = m[0][0] * cof(1, 2, 1, 2) - m[0][1] * cof(1, 2, 0, 2) + m[0][2] * cof(1, 2, 0, 1);
    [
        [cof(1, 2, 1, 2), -cof(0, 2, 1, 2), cof(0, 1, 1, 2)],
        [-cof(1, 2, 0, 2), cof(0, 2, 0, 2), -cof(0, 1, 0, 2)],
        [cof(1, 2, 0, 1), -cof(0, 2, 0, 1), cof(0, 1, 0, 1)],
    ]
    .map(|row| row.map(|v| v / det))
}

/// A transfer-curve table at `v`, clipped to `[0, 1]`, interpolated linearly.
fn interpolate(table: &[f32], v: f32) -> f32 {
    let x = v.clamp(0.0, 1.0) * STEPS as f32;
    // In 0..=STEPS: the clamp bounds it and truncation rounds toward 0.
    let i = (x as usize).min(STEPS - 1);
    let frac = x - i as f32;
    table[i] + (table[i + 1] - table[i]) * frac
}

/// CIE's `f(t)` of `XYZ / white`. Above `EPSILON` it is the cube root, to `f32` precision:
/// Newton's iteration for `t^(-1/3)`, which needs no division, from the classic bit-level first
/// guess (within 4%; three steps reach `f32` rounding). Branch-free, so that a loop over many
/// values runs in vector registers.
#[inline]
fn lab_f(t: f32) -> f32 {
    let x = t.max(EPSILON);
    // `bits / 3` in floating point (exact enough for a first guess, and it vectorises); the bits
    // of a positive float fit an `i32`.
    let third = (x.to_bits() as i32 as f32 * (1.0 / 3.0)) as i32 as u32;
    let mut r = f32::from_bits(0x54a2_fa8c - third);
    for _ in 0..3 {
        r *= (4.0 - x * r * r * r) * (1.0 / 3.0);
    }
    if t > EPSILON {
        x * r * r
    } else {
        KAPPA_3 * t + 4.0 / 29.0
    }
}

/// The inverse of [`lab_f`].
fn lab_f_inverse(f: f32) -> f32 {
    if f > 6.0 / 29.0 {
        f * f * f
    } else {
        (f - 4.0 / 29.0) / KAPPA_3
    }
}

/// Converts linear sRGB pixels to CIE L\*a\*b\* (D65; L\* in `0..=100`) in place.
pub fn lab_from_linear_srgb(pixels: &mut [[f32; 3]]) {
    let m = &tables().to_xyz;
    for p in pixels.iter_mut() {
        *p = m.map(|row| row[0] * p[0] + row[1] * p[1] + row[2] * p[2]);
    }
    // One flat pass over every `f(t)`, the costly part, free of per-pixel structure.
    for t in pixels.as_flattened_mut() {
        *t = lab_f(*t);
    }
    for p in pixels.iter_mut() {
        let [fx, fy, fz] = *p;
        *p = [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)];
    }
}

/// Converts sRGB pixels in `[0, 1]` (clipped to it) to CIE L\*a\*b\* (D65; L\* in `0..=100`) in
/// place.
pub fn lab_from_srgb(pixels: &mut [[f32; 3]]) {
    let decode = &tables().decode;
    for v in pixels.as_flattened_mut() {
        *v = interpolate(decode, *v);
    }
    lab_from_linear_srgb(pixels);
}

/// Converts CIE L\*a\*b\* pixels to sRGB in `[0, 1]` (the inverse of [`lab_from_srgb`]) in
/// place, clipped to the gamut per channel.
pub fn srgb_from_lab(pixels: &mut [[f32; 3]]) {
    let t = tables();
    for p in pixels.iter_mut() {
        let [l, a, b] = *p;
        let fy = (l + 16.0) / 116.0;
        let xyz = [fy + a / 500.0, fy, fy - b / 200.0].map(lab_f_inverse);
        *p = t.from_xyz.map(|row| {
            interpolate(
                &t.encode,
                row[0] * xyz[0] + row[1] * xyz[1] + row[2] * xyz[2],
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palette::{FromColor, Lab, Srgb, white_point::D65};

    #[test]
    fn cube_root_is_exact_to_a_few_float_steps() {
        for i in 0..=100_000 {
            let t = EPSILON + (1.2 - EPSILON) * i as f32 / 100_000.0;
            let exact = f64::from(t).cbrt();
            let err = (f64::from(lab_f(t)) - exact).abs() / exact;
            // f32 steps are 6e-8 relative.
            assert!(err < 5e-7, "cbrt({t}) off by {err}");
            let below = EPSILON * i as f32 / 100_000.0;
            assert_eq!(
                lab_f(below).to_bits(),
                (KAPPA_3 * below + 4.0 / 29.0).to_bits()
            );
        }
    }

    #[test]
    fn transfer_tables_are_within_2e5_of_the_curves() {
        for i in 0..=100_000 {
            let v = i as f32 / 100_000.0;
            let d =
                (f64::from(interpolate(&tables().decode, v)) - decode_exact(f64::from(v))).abs();
            let e =
                (f64::from(interpolate(&tables().encode, v)) - encode_exact(f64::from(v))).abs();
            assert!(
                d < 2e-5 && e < 2e-5,
                "at {v}: decode off {d}, encode off {e}"
            );
        }
    }

    #[test]
    fn lab_agrees_with_palette() {
        let mut worst = 0.0f32;
        for r in (0..=255u8).step_by(5) {
            for g in (0..=255u8).step_by(5) {
                for b in (0..=255u8).step_by(5) {
                    let p: Lab<D65, f32> = Lab::from_color(Srgb::new(r, g, b).into_linear::<f32>());
                    let mut ours = [[r, g, b].map(|v| f32::from(v) / 255.0)];
                    lab_from_srgb(&mut ours);
                    let ours = ours[0];
                    for (x, y) in ours.iter().zip([p.l, p.a, p.b]) {
                        worst = worst.max((x - y).abs());
                    }
                }
            }
        }
        assert!(worst < 2e-3, "worst L*a*b* difference from palette {worst}");
    }

    #[test]
    fn lab_round_trips_to_within_a_hundredth_of_a_level() {
        for r in (0..=255u8).step_by(3) {
            for g in (0..=255u8).step_by(3) {
                for b in (0..=255u8).step_by(3) {
                    let rgb = [r, g, b].map(|v| f32::from(v) / 255.0);
                    let mut back = [rgb];
                    lab_from_srgb(&mut back);
                    srgb_from_lab(&mut back);
                    let back = back[0];
                    for (x, y) in back.iter().zip(rgb) {
                        assert!(
                            (x - y).abs() * 255.0 < 1e-2,
                            "{rgb:?} came back as {back:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn out_of_gamut_lab_is_clipped() {
        let mut rgb = [[50.0, 120.0, -120.0], [100.0, 0.0, 0.0], [0.0, 0.0, 0.0]];
        srgb_from_lab(&mut rgb);
        assert!(rgb[0].iter().all(|v| (0.0..=1.0).contains(v)), "{rgb:?}");
        assert!(rgb[1].iter().all(|v| (v - 1.0).abs() < 1e-3), "{rgb:?}");
        assert!(rgb[2].iter().all(|v| v.abs() < 1e-6), "{rgb:?}");
    }
}
