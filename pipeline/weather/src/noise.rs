//! Seeded randomness: one `ChaCha8` stream per purpose (so adding draws to one effect never shifts
//! another), smooth value noise, and a fast table-driven standard normal.

use std::sync::OnceLock;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Streams of one seed, one per purpose.
#[derive(Debug, Clone, Copy)]
#[repr(u64)]
pub enum Stream {
    FogVariation = 1,
    RainDrops = 2,
    Puddles = 3,
    LensDrops = 4,
    SnowFlakes = 5,
    SnowCover = 6,
    SensorNoise = 7,
}

/// The generator of one purpose of one seed.
pub fn rng(seed: u64, stream: Stream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream as u64);
    rng
}

/// Smooth value noise in about `[-1, 1]`: random values on a grid of `cell` pixels, interpolated
/// with smoothstep, plus `octaves - 1` finer octaves at half the cell and amplitude each.
pub fn value_noise(w: usize, h: usize, cell: f32, octaves: u32, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let xs: Vec<usize> = (0..w).collect();
    let ys: Vec<usize> = (0..h).collect();
    ValueNoise::new(w, h, cell, octaves, rng).at_grid(&xs, &ys)
}

/// The octave grids of [`value_noise`] of a `w x h` image, drawn once, to evaluate where needed.
#[derive(Debug, Clone)]
pub struct ValueNoise {
    /// Per octave: grid values, grid width and height, cell size, amplitude.
    octaves: Vec<(Vec<f32>, usize, usize, f32, f32)>,
    total: f32,
}

impl ValueNoise {
    pub fn new(w: usize, h: usize, cell: f32, octaves: u32, rng: &mut ChaCha8Rng) -> Self {
        let mut layers = Vec::new();
        let (mut cell, mut amplitude, mut total) = (cell.max(2.0), 1.0f32, 0.0f32);
        for _ in 0..octaves.max(1) {
            let gw = (w as f32 / cell).ceil() as usize + 2;
            let gh = (h as f32 / cell).ceil() as usize + 2;
            let grid: Vec<f32> = (0..gw * gh)
                .map(|_| rng.random_range(-1.0f32..=1.0))
                .collect();
            layers.push((grid, gw, gh, cell, amplitude));
            total += amplitude;
            amplitude *= 0.5;
            cell = (cell * 0.5).max(2.0);
        }
        Self {
            octaves: layers,
            total,
        }
    }

    /// The noise at pixel `(x, y)`, in about `[-1, 1]` (for sparse uses such as puddles on
    /// drivable pixels): bit for bit [`value_noise`]'s value there.
    pub fn at(&self, x: usize, y: usize) -> f32 {
        // `add_octave`'s arithmetic for one pixel, without its buffers.
        let mut sum = 0.0f32;
        for (grid, gw, gh, cell, amplitude) in &self.octaves {
            let u = x as f32 / cell;
            let floor_u = u.floor() as usize;
            let (i, fx) = (floor_u.min(gw - 2), smoothstep(u - floor_u as f32));
            let v = y as f32 / cell;
            let j = (v.floor() as usize).min(gh - 2);
            let fy = smoothstep(v - j as f32);
            let row = |i: usize| {
                let a = grid[j * gw + i];
                a + (grid[(j + 1) * gw + i] - a) * fy
            };
            let (left, right) = (row(i), row(i + 1));
            sum += amplitude * (left + (right - left) * fx);
        }
        sum * (1.0 / self.total)
    }

    /// The noise at the pixels `xs x ys` (row-major: `ys.len()` rows of `xs.len()`): bit for bit
    /// [`value_noise`]'s values there, for the cost of the samples.
    pub fn at_grid(&self, xs: &[usize], ys: &[usize]) -> Vec<f32> {
        let mut out = vec![0.0f32; xs.len() * ys.len()];
        for (grid, gw, gh, cell, amplitude) in &self.octaves {
            add_octave(&mut out, (grid, *gw, *gh), (xs, ys), *cell, *amplitude);
        }
        let norm = 1.0 / self.total;
        for v in &mut out {
            *v *= norm;
        }
        out
    }
}

fn smoothstep(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

/// One octave's grid, interpolated at the sample pixels `(xs, ys)` and added.
fn add_octave(
    out: &mut [f32],
    (grid, gw, gh): (&[f32], usize, usize),
    (xs, ys): (&[usize], &[usize]),
    cell: f32,
    amplitude: f32,
) {
    // Column taps once: grid column and smoothed weight.
    let taps: Vec<(usize, f32)> = xs
        .iter()
        .map(|&x| {
            let u = x as f32 / cell;
            let i = u.floor() as usize;
            (i.min(gw - 2), smoothstep(u - i as f32))
        })
        .collect();
    let mut row = vec![0.0f32; gw];
    let n = xs.len();
    for (k, &y) in ys.iter().enumerate() {
        let v = y as f32 / cell;
        let j = (v.floor() as usize).min(gh - 2);
        let fy = smoothstep(v - j as f32);
        for (i, r) in row.iter_mut().enumerate() {
            let a = grid[j * gw + i];
            *r = a + (grid[(j + 1) * gw + i] - a) * fy;
        }
        for (o, &(i, fx)) in out[k * n..(k + 1) * n].iter_mut().zip(&taps) {
            *o += amplitude * (row[i] + (row[i + 1] - row[i]) * fx);
        }
    }
}

/// Entries of the normal table: a 12-bit uniform picks one.
const NORMAL_STEPS: usize = 4096;

/// Quantiles of the standard normal at `(i + 0.5) / 4096`: a draw is one table lookup (tails cut
/// at about 3.5 sigma, which sensor noise does not miss).
pub fn normal_table() -> &'static [f32; NORMAL_STEPS] {
    static TABLE: OnceLock<[f32; NORMAL_STEPS]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [0.0; NORMAL_STEPS];
        for (i, v) in t.iter_mut().enumerate() {
            *v = inverse_normal_cdf((i as f64 + 0.5) / NORMAL_STEPS as f64) as f32;
        }
        t
    })
}

/// Acklam's rational approximation of the standard normal quantile (relative error < 1.2e-9).
#[allow(
    clippy::unreadable_literal,
    reason = "published coefficients, copied as printed"
)]
fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383_577_518_672_69e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    const P_LOW: f64 = 0.02425;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < P_LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - P_LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// Three standard normal draws from one 64-bit word (12 bits each).
#[inline]
pub fn normals3(table: &[f32; NORMAL_STEPS], bits: u64) -> [f32; 3] {
    let mask = (NORMAL_STEPS - 1) as u64;
    [
        table[(bits & mask) as usize],
        table[((bits >> 12) & mask) as usize],
        table[((bits >> 24) & mask) as usize],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_table_has_unit_variance_and_zero_mean() {
        let t = normal_table();
        let mean: f64 = t.iter().map(|&v| f64::from(v)).sum::<f64>() / t.len() as f64;
        let var: f64 = t.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / t.len() as f64;
        assert!(mean.abs() < 1e-6, "{mean}");
        assert!((var - 1.0).abs() < 0.01, "{var}");
    }

    #[test]
    fn value_noise_at_samples_is_the_full_noise_there() {
        let full = value_noise(50, 30, 8.0, 2, &mut rng(4, Stream::FogVariation));
        let (xs, ys) = ([0usize, 7, 49], [3usize, 29]);
        let noise = ValueNoise::new(50, 30, 8.0, 2, &mut rng(4, Stream::FogVariation));
        let at = noise.at_grid(&xs, &ys);
        for (k, &y) in ys.iter().enumerate() {
            for (i, &x) in xs.iter().enumerate() {
                assert_eq!(at[k * xs.len() + i].to_bits(), full[y * 50 + x].to_bits());
                assert_eq!(noise.at(x, y).to_bits(), full[y * 50 + x].to_bits());
            }
        }
    }

    #[test]
    fn value_noise_is_bounded_and_seeded() {
        let a = value_noise(50, 30, 8.0, 2, &mut rng(1, Stream::FogVariation));
        let b = value_noise(50, 30, 8.0, 2, &mut rng(1, Stream::FogVariation));
        let c = value_noise(50, 30, 8.0, 2, &mut rng(2, Stream::FogVariation));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|v| (-1.0..=1.0).contains(v)));
    }
}
