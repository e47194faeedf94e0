//! Fog by Koschmieder's law on depth, as Foggy Cityscapes (Sakaridis, Dai, Van Gool, IJCV 2018)
//! renders it, at frame rates.

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::atmosphere::{
    SampleMap, airlight_of, beta_from_visibility, box_stats, koschmieder_srgb, transmission,
    transmission_at,
};
use crate::color::{decode_lut, encode_lut, encode_scaled, gray, gray_luts, pool_gray};
use crate::error::Check;
use crate::filter::GuidedCoefficients;
use crate::noise::{Stream, ValueNoise, rng};
use crate::{ScalarMap, WeatherContext, WeatherError, WeatherMaps, WeatherOutput, provenance};

/// Homogeneous (optionally gently varying) fog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Fog {
    /// Meteorological visibility `V`, metres (Foggy Cityscapes: 600, 300, 150); `beta = -ln(0.05) / V`.
    pub visibility_m: f32,
    /// Relative amplitude of the spatial variation of `beta`, `[0, 0.9]`: `beta (1 + a n(x, y))`
    /// with `n` smooth seeded noise in `[-1, 1]`.
    pub spatial_variation: f32,
    /// Size of the variation's features, as a fraction of the image width.
    pub variation_scale: f32,
    /// Atmospheric light as sRGB `[0, 1]`; `None` estimates it from the frame (dark channel).
    pub atmospheric_light: Option<[f32; 3]>,
    /// Guided-filter radius in pixels (0 keeps the raw transmission).
    pub guided_radius: u32,
    /// Guided-filter regularisation (guide in `[0, 1]`).
    pub guided_eps: f32,
    /// Subsampling of the fast guided filter (1 = exact filter).
    pub guided_subsample: u32,
}

impl Default for Fog {
    fn default() -> Self {
        Self {
            visibility_m: 300.0,
            spatial_variation: 0.0,
            variation_scale: 0.5,
            atmospheric_light: None,
            guided_radius: 8,
            guided_eps: 1e-3,
            guided_subsample: 4,
        }
    }
}

impl Fog {
    /// Fog of a visibility, other parameters at their defaults.
    pub fn with_visibility(visibility_m: f32) -> Self {
        Self {
            visibility_m,
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<(), WeatherError> {
        let c = Check { operation: "fog" };
        c.range(
            "visibility_m",
            self.visibility_m,
            1.0,
            100_000.0,
            true,
            "metres",
        )?;
        c.range(
            "spatial_variation",
            self.spatial_variation,
            0.0,
            0.9,
            true,
            "",
        )?;
        c.range(
            "variation_scale",
            self.variation_scale,
            0.0,
            4.0,
            false,
            "image widths",
        )?;
        c.atmospheric_light(self.atmospheric_light)?;
        c.range_u32("guided_radius", self.guided_radius, 0, 128)?;
        c.range("guided_eps", self.guided_eps, 0.0, 1.0, false, "")?;
        c.range_u32("guided_subsample", self.guided_subsample, 1, 16)
    }

    /// Fogs `image` with the frame's depth.
    pub fn apply(
        &self,
        image: &RgbImage,
        ctx: &WeatherContext,
        seed: u64,
    ) -> Result<WeatherOutput, WeatherError> {
        self.validate()?;
        ctx.check(image)?;
        let (w, h) = (image.width() as usize, image.height() as usize);
        let air = airlight_of(image, self.atmospheric_light);
        let beta = beta_from_visibility(self.visibility_m);
        let modulation = (self.spatial_variation > 0.0).then(|| Modulation {
            noise: ValueNoise::new(
                w,
                h,
                (self.variation_scale * w as f32).max(2.0),
                2,
                &mut rng(seed, Stream::FogVariation),
            ),
            amplitude: self.spatial_variation,
        });
        let intrinsics = ctx.intrinsics.as_ref();
        let full_raw = || {
            let (xs, ys): (Vec<usize>, Vec<usize>) = ((0..w).collect(), (0..h).collect());
            let m = modulation.as_ref().map(|m| m.at(&xs, &ys));
            transmission(ctx.depth, beta, m.as_deref(), intrinsics)
        };
        let (t, raw, out) = if self.guided_radius == 0 {
            let t = full_raw();
            let out = koschmieder_srgb(image, &t, air.linear);
            (t.clone(), ctx.diagnostic_maps.then_some(t), out)
        } else {
            // The fast guided filter's input (He and Sun 2015): the raw transmission at one pixel
            // of each subsampling block (offset (s - 1) / 2, within half a pixel of the block's
            // centre, immaterial to a filter of radius r), so that depth, noise and exponential
            // are evaluated per block rather than per pixel.
            let s = self.guided_subsample as usize;
            let samples = |n: usize| -> Vec<usize> {
                (0..n.div_ceil(s))
                    .map(|i| (i * s + (s - 1) / 2).min(n - 1))
                    .collect()
            };
            let (xs, ys) = (samples(w), samples(h));
            let m = modulation.as_ref().map(|m| m.at(&xs, &ys));
            let p_low = transmission_at(ctx.depth, beta, m.as_deref(), intrinsics, (&xs, &ys));
            let (t, out) = self.smooth_and_fog(image, &p_low, (xs.len(), ys.len()), air.linear);
            (t, ctx.diagnostic_maps.then(full_raw), out)
        };
        let sampler = |xs: &[usize], ys: &[usize]| {
            modulation.as_ref().map_or_else(Vec::new, |m| m.at(xs, ys))
        };
        let per_box = box_stats(
            ctx.boxes,
            &out,
            Some(&t),
            beta,
            modulation.is_some().then_some(&sampler as &SampleMap<'_>),
        );
        let derived = serde_json::json!({
            "beta_per_m": beta,
            "atmospheric_light": air,
            "transmission_smoothing": if self.guided_radius > 0 { "guided_filter" } else { "none" },
            "distance": if ctx.intrinsics.is_some() { "ray_length" } else { "depth" },
        });
        Ok(WeatherOutput {
            image: out,
            per_box,
            params: provenance("fog", self, &derived, ctx, seed),
            maps: WeatherMaps {
                transmission: Some(ScalarMap::new(w, h, t)),
                raw_transmission: raw.map(|raw| ScalarMap::new(w, h, raw)),
                particles: None,
            },
        })
    }

    /// The guided filter of the raw transmission sampled per block (guide: the frame's grey level,
    /// block means), fused with Koschmieder's law: one pass writes the smoothed transmission and
    /// the fogged pixel.
    fn smooth_and_fog(
        &self,
        image: &RgbImage,
        raw_low: &[f32],
        (lw, lh): (usize, usize),
        air: [f32; 3],
    ) -> (Vec<f32>, RgbImage) {
        let (w, h) = (image.width() as usize, image.height() as usize);
        let s = self.guided_subsample as usize;
        let p_low: Vec<f64> = raw_low.iter().map(|&v| f64::from(v)).collect();
        let g_low = pool_gray(image, s);
        let coefficients = GuidedCoefficients::new(
            &g_low,
            &p_low,
            lw,
            lh,
            w,
            h,
            self.guided_radius as usize,
            f64::from(self.guided_eps),
            s,
        );
        // Koschmieder per channel as `t (R - L) + L`, pre-scaled for the encoding table: the
        // result lies in [0, 1] (a convex combination), so no clamping is needed.
        let scale = (crate::color::LINEAR_STEPS - 1) as f32;
        let dec = decode_lut();
        let diff: [[f32; 256]; 3] = air.map(|l| std::array::from_fn(|c| (dec[c] - l) * scale));
        let base = air.map(|l| l * scale + 8_388_608.0);
        let (enc, grays) = (encode_lut(), gray_luts());
        let mut t = vec![0.0f32; w * h];
        let mut out = image.clone();
        let mut scratch = Vec::with_capacity(lw);
        for (y, (t_row, px_row)) in t
            .chunks_exact_mut(w)
            .zip(out.as_mut().chunks_exact_mut(3 * w))
            .enumerate()
        {
            coefficients.row_low(y, &mut scratch);
            for ((tv, p), &(x0, x1, fx)) in t_row
                .iter_mut()
                .zip(px_row.chunks_exact_mut(3))
                .zip(coefficients.taps())
            {
                let ((a0, b0), (a1, b1)) = (scratch[x0], scratch[x1]);
                let (av, bv) = (a0 + (a1 - a0) * fx, b0 + (b1 - b0) * fx);
                let v = (av * gray(grays, p) + bv).clamp(0.0, 1.0);
                *tv = v;
                p[0] = encode_scaled(enc, v * diff[0][p[0] as usize] + base[0]);
                p[1] = encode_scaled(enc, v * diff[1][p[1] as usize] + base[1]);
                p[2] = encode_scaled(enc, v * diff[2][p[2] as usize] + base[2]);
            }
        }
        (t, out)
    }
}

/// The spatial variation of `beta`: `1 + a n(x, y)` with `n` the frame's seeded value noise,
/// evaluated only at the pixels asked for (the same values wherever it is asked).
struct Modulation {
    noise: ValueNoise,
    amplitude: f32,
}

impl Modulation {
    fn at(&self, xs: &[usize], ys: &[usize]) -> Vec<f32> {
        let mut m = self.noise.at_grid(xs, ys);
        for v in &mut m {
            *v = 1.0 + self.amplitude * *v;
        }
        m
    }
}
