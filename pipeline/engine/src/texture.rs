//! Sensor noise and sharpness of a region, measured the same way on the frame and on a cut-out,
//! so that a cut-out can be blurred and noised to match where it goes. A cut-out from a sharp,
//! clean COCO photo, shrunk to a few dozen pixels, is far crisper and cleaner than the soft,
//! noisy pixels of a dash camera around it; that difference alone gives composites away.

use serde::{Deserialize, Serialize};

use crate::EngineError;
use crate::raster::{Plane, filter3};

/// Immerkær's noise-estimation kernel: the difference of two Laplacians, which cancels smooth
/// image structure; white noise of standard deviation σ comes out with standard deviation 6σ.
const NOISE_KERNEL: [f32; 9] = [1.0, -2.0, 1.0, -2.0, 4.0, -2.0, 1.0, -2.0, 1.0];
/// The 4-neighbour Laplacian; white noise σ gives variance 20σ².
const LAPLACIAN: [f32; 9] = [0.0, 1.0, 0.0, 1.0, -4.0, 1.0, 0.0, 1.0, 0.0];

/// Fewer measured pixels than this give no estimate.
const MIN_PIXELS: usize = 24;

/// Noise standard deviation (grey levels) over the pixels where `weight` is true, from the median
/// of Immerkær's filter response: the median ignores the edges and texture a mean would count as
/// noise (for Gaussian noise `median |x| = 0.6745 σ`).
pub fn noise_sigma(luma: &Plane, weight: &[bool]) -> Result<Option<f32>, EngineError> {
    let response = filter3(luma, NOISE_KERNEL)?;
    let mut values: Vec<f32> = response
        .data
        .iter()
        .zip(weight)
        .filter(|&(_, &w)| w)
        .map(|(v, _)| v.abs())
        .collect();
    if values.len() < MIN_PIXELS {
        return Ok(None);
    }
    let mid = values.len() / 2;
    let (_, median, _) = values.select_nth_unstable_by(mid, f32::total_cmp);
    Ok(Some(*median / (0.6745 * 6.0)))
}

/// Sharpness: the energy of the Laplacian over the energy of the gradient, both with the noise's
/// share (`20σ²` and `σ²`) taken out. Independent of contrast; blurring an edge by `σ_b` divides it
/// by about `1 + σ_b²`.
pub fn sharpness(luma: &Plane, weight: &[bool], noise: f32) -> Result<Option<f32>, EngineError> {
    let lap = filter3(luma, LAPLACIAN)?;
    let (w, h) = (luma.width as usize, luma.height as usize);
    let (mut hf, mut mf, mut n) = (0.0f64, 0.0f64, 0usize);
    for y in 1..h.saturating_sub(1) {
        for x in 1..w.saturating_sub(1) {
            let i = y * w + x;
            if !weight[i] {
                continue;
            }
            let gx = (luma.data[i + 1] - luma.data[i - 1]) / 2.0;
            let gy = (luma.data[i + w] - luma.data[i - w]) / 2.0;
            hf += f64::from(lap.data[i]).powi(2);
            mf += f64::from(gx * gx + gy * gy);
            n += 1;
        }
    }
    if n < MIN_PIXELS {
        return Ok(None);
    }
    let var = f64::from(noise).powi(2);
    let hf = (hf / n as f64 - 20.0 * var).max(0.0);
    let mf = (mf / n as f64 - var).max(1e-6);
    if mf < 1.0 {
        // A flat region: no edges to judge sharpness by.
        return Ok(None);
    }
    Ok(Some((hf / mf) as f32))
}

/// How a cut-out's blur and noise are matched to its surroundings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextureConfig {
    /// Blur the cut-out until it is no sharper than its surroundings.
    pub match_blur: bool,
    /// Blur sigmas tried, in pixels, smallest first; the first that matches is used.
    pub blur_sigmas: Vec<f64>,
    /// Add seeded Gaussian noise so the cut-out's noise matches its surroundings'.
    pub match_noise: bool,
    /// Most noise added, grey levels (a frame full of texture would otherwise read as noisy).
    pub max_noise_sigma: f32,
}

impl Default for TextureConfig {
    fn default() -> Self {
        Self {
            match_blur: true,
            blur_sigmas: vec![0.4, 0.6, 0.8, 1.0, 1.3, 1.6, 2.0],
            match_noise: true,
            max_noise_sigma: 6.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    #[test]
    fn noise_estimate_finds_added_noise_on_a_ramp() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let n = Normal::new(0.0f32, 4.0).expect("normal");
        let (w, h) = (64u32, 64u32);
        let data = (0..w * h)
            .map(|i| (i % w) as f32 * 2.0 + 40.0 + n.sample(&mut rng))
            .collect();
        let p = Plane {
            width: w,
            height: h,
            data,
        };
        let all = vec![true; (w * h) as usize];
        let s = noise_sigma(&p, &all).expect("cv").expect("estimate");
        assert!((s - 4.0).abs() < 0.6, "{s}");
    }

    #[test]
    fn blur_lowers_sharpness() {
        let (w, h) = (48u32, 48u32);
        let data = (0..w * h)
            .map(|i| if (i % w) / 6 % 2 == 0 { 50.0 } else { 200.0 })
            .collect();
        let p = Plane {
            width: w,
            height: h,
            data,
        };
        let all = vec![true; (w * h) as usize];
        let sharp = sharpness(&p, &all, 0.0).expect("cv").expect("edges");
        let soft = sharpness(
            &crate::raster::blur_plane(&p, 1.5).expect("blur"),
            &all,
            0.0,
        )
        .expect("cv")
        .expect("edges");
        assert!(soft < sharp * 0.5, "{soft} vs {sharp}");
    }
}
