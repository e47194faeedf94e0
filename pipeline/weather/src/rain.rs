//! Rain after Halder, de Charette, Lalonde (ICCV 2019): extinction by the rain rate, plus streaks
//! rendered from a physical drop population, a wet road and lens drops.

use image::RgbImage;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::atmosphere::{
    airlight_of, box_stats, koschmieder_linear, transmission, visibility_from_beta,
};
use crate::color::LinearRgb;
use crate::error::Check;
use crate::filter::{pool_mean, upsample_taps};
use crate::noise::{Stream, ValueNoise, rng};
use crate::particles::{
    MIN_ALPHA, Streak, TruncatedExp, composite, composite_encode, draw_all, plan, sample_depth,
    turn,
};
use crate::{ScalarMap, WeatherContext, WeatherError, WeatherMaps, WeatherOutput, provenance};

/// Marshall-Palmer intercept `N0`, m^-3 mm^-1 (Marshall and Palmer 1948).
pub const MARSHALL_PALMER_N0: f64 = 8000.0;
/// Largest drop drawn, mm (larger drops break up).
pub const MAX_DROP_MM: f32 = 6.0;
/// Refractive index of water (Fresnel reflection of a wet road).
const WATER_N: f32 = 1.333;

/// Rain extinction coefficient per metre for a rain rate in mm/h: `0.312 R^0.67` km^-1, the
/// relation Halder et al. (ICCV 2019) use for rain-induced attenuation.
pub fn rain_extinction_per_m(rate_mm_h: f32) -> f32 {
    0.312 * rate_mm_h.powf(0.67) / 1000.0
}

/// Marshall-Palmer slope `Lambda = 4.1 R^-0.21` mm^-1.
fn marshall_palmer_lambda(rate_mm_h: f32) -> f32 {
    4.1 * rate_mm_h.powf(-0.21)
}

/// Drops per cubic metre with diameter at least `min_mm`, from the Marshall-Palmer distribution
/// `N(D) = 8000 exp(-Lambda D)` m^-3 mm^-1: `N0 / Lambda * exp(-Lambda min)`.
pub fn marshall_palmer_per_m3(rate_mm_h: f32, min_mm: f32) -> f64 {
    let lambda = f64::from(marshall_palmer_lambda(rate_mm_h));
    MARSHALL_PALMER_N0 / lambda * (-lambda * f64::from(min_mm)).exp()
}

/// Terminal fall speed of a drop of diameter `d_mm`, m/s (Atlas, Srivastava, Sekhon 1973, fit to
/// Gunn and Kinzer 1949): `9.65 - 10.3 exp(-0.6 D)`.
pub fn atlas_fall_speed_m_s(d_mm: f32) -> f32 {
    (9.65 - 10.3 * (-0.6 * d_mm).exp()).max(0.0)
}

/// Rain of a given rate, seen by a camera of a given exposure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rain {
    /// Rain rate, mm/h, `(0, 300]` (heavy rain is about 10-50, cloudbursts above 100).
    pub rate_mm_h: f32,
    /// Angle of the fall direction from vertical in the image, degrees, positive to the right.
    pub wind_deg: f32,
    /// Exposure time, ms: streak length is fall speed x exposure (daylight automotive cameras
    /// expose about 1-10 ms).
    pub exposure_ms: f32,
    /// Focal length, pixels; `None` takes the frame's intrinsics, else the nominal camera.
    pub focal_px: Option<f32>,
    /// Nearest and farthest drop drawn, metres (farther drops are sub-pixel and faint; the
    /// extinction term accounts for them).
    pub near_m: f32,
    pub far_m: f32,
    /// Smallest drop drawn, mm.
    pub min_drop_mm: f32,
    /// Lens aperture diameter, mm, focused at infinity: near drops are defocused by
    /// `focal * aperture / depth` pixels (0 = pinhole).
    pub aperture_mm: f32,
    /// Most streaks drawn; beyond it the populated depth range shrinks (recorded).
    pub max_streaks: u32,
    /// Wetness of drivable pixels, `[0, 1]`: darkening and reflections (needs a drivable mask).
    pub wetness: f32,
    /// Albedo factor of a fully wet road, `[0.3, 1]`.
    pub wet_darkening: f32,
    /// Water drops on the lens, `[0, 50]`.
    pub lens_drops: u32,
    /// Atmospheric light as sRGB `[0, 1]`; `None` estimates it from the frame.
    pub atmospheric_light: Option<[f32; 3]>,
}

impl Default for Rain {
    fn default() -> Self {
        Self {
            rate_mm_h: 25.0,
            wind_deg: 0.0,
            exposure_ms: 5.0,
            focal_px: None,
            near_m: 0.5,
            far_m: 8.0,
            min_drop_mm: 0.5,
            aperture_mm: 2.0,
            max_streaks: 12_000,
            wetness: 0.8,
            wet_darkening: 0.7,
            lens_drops: 0,
            atmospheric_light: None,
        }
    }
}

impl Rain {
    /// Rain of a rate, other parameters at their defaults.
    pub fn with_rate(rate_mm_h: f32) -> Self {
        Self {
            rate_mm_h,
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<(), WeatherError> {
        let c = Check { operation: "rain" };
        c.range("rate_mm_h", self.rate_mm_h, 0.0, 300.0, false, "mm/h")?;
        c.range("wind_deg", self.wind_deg, -75.0, 75.0, true, "degrees")?;
        c.range("exposure_ms", self.exposure_ms, 0.0, 200.0, false, "ms")?;
        c.optional("focal_px", self.focal_px, 0.0, 1e6, "pixels")?;
        c.range("near_m", self.near_m, 0.05, 50.0, true, "metres")?;
        c.range(
            "far_m",
            self.far_m,
            self.near_m,
            200.0,
            false,
            "metres (above near_m)",
        )?;
        c.range("min_drop_mm", self.min_drop_mm, 0.1, 5.0, true, "mm")?;
        c.range("aperture_mm", self.aperture_mm, 0.0, 50.0, true, "mm")?;
        c.range_u32("max_streaks", self.max_streaks, 0, 2_000_000)?;
        c.range("wetness", self.wetness, 0.0, 1.0, true, "")?;
        c.range("wet_darkening", self.wet_darkening, 0.3, 1.0, true, "")?;
        c.range_u32("lens_drops", self.lens_drops, 0, 50)?;
        c.atmospheric_light(self.atmospheric_light)?;
        Ok(())
    }

    pub fn apply(
        &self,
        image: &RgbImage,
        ctx: &WeatherContext,
        seed: u64,
    ) -> Result<WeatherOutput, WeatherError> {
        self.validate()?;
        ctx.check(image)?;
        let (w, h) = (image.width() as usize, image.height() as usize);
        let (focal, focal_source) = ctx.focal_px(self.focal_px);
        let air = airlight_of(image, self.atmospheric_light);
        let beta = rain_extinction_per_m(self.rate_mm_h);
        let t = transmission(ctx.depth, beta, None, ctx.intrinsics.as_ref());
        let (layer, population) = self.streaks(w, h, focal, ctx.depth.metres(), seed);
        let wet_mask = ctx.drivable.filter(|_| self.wetness > 0.0);
        let dry_reason = serde_json::json!({
            "applied": false,
            "reason": if ctx.drivable.is_some() { "wetness is 0" } else { "no drivable mask" },
        });
        // Drops refract a wide view of the environment (Garg and Nayar 2004): their radiance is
        // about 0.94 of the mean environment, here half sky (the atmospheric light), half scene.
        let radiance_of =
            |mean: [f32; 3]| [0, 1, 2].map(|k| 0.94 * (0.5 * air.linear[k] + 0.5 * mean[k]));
        let (out, wet, drops, radiance) = if wet_mask.is_none() && self.lens_drops == 0 {
            // Nothing reads neighbouring pixels: decode, attenuate, add streaks and encode in one
            // pass, without a linear copy of the frame.
            let radiance = radiance_of(attenuated_mean(image, &t, air.linear));
            let out = attenuate_composite_encode(image, &t, air.linear, &layer, radiance);
            (out, dry_reason, serde_json::json!([]), radiance)
        } else {
            let mut lin = LinearRgb::from_srgb(image).data;
            // The wet road first: its reflections are then attenuated like everything else.
            let wet = match wet_mask {
                Some(mask) => {
                    self.wet_road(&mut lin, w, h, &mask.data, ctx.horizon_row(), focal, seed)
                }
                None => dry_reason,
            };
            koschmieder_linear(&mut lin, &t, air.linear);
            let radiance = radiance_of(mean_colour(&lin));
            let (out, drops) = if self.lens_drops == 0 {
                (
                    composite_encode(&lin, &layer, radiance, w, h),
                    serde_json::json!([]),
                )
            } else {
                composite(&mut lin, &layer, radiance);
                let drops = lens_drops(&mut lin, w, h, self.lens_drops, seed);
                (
                    LinearRgb {
                        width: w,
                        height: h,
                        data: lin,
                    }
                    .to_srgb(),
                    drops,
                )
            };
            (out, wet, drops, radiance)
        };
        let per_box = box_stats(ctx.boxes, &out, Some(&t), beta, None);
        let derived = serde_json::json!({
            "beta_ext_per_km": beta * 1000.0,
            "visibility_m": visibility_from_beta(beta),
            "atmospheric_light": air,
            "focal_px": focal,
            "focal_source": focal_source,
            "marshall_palmer_lambda_per_mm": marshall_palmer_lambda(self.rate_mm_h),
            "streaks": population,
            "streak_radiance_linear": radiance,
            "wet_road": wet,
            "lens_drops": drops,
            "distance": if ctx.intrinsics.is_some() { "ray_length" } else { "depth" },
        });
        Ok(WeatherOutput {
            image: out,
            per_box,
            params: provenance("rain", self, &derived, ctx, seed),
            maps: WeatherMaps {
                transmission: Some(ScalarMap::new(w, h, t)),
                raw_transmission: None,
                particles: Some(ScalarMap::new(w, h, layer)),
            },
        })
    }

    /// Streak opacity of the drop population in the frustum.
    fn streaks(
        &self,
        w: usize,
        h: usize,
        focal: f32,
        scene_depth: &[f32],
        seed: u64,
    ) -> (Vec<f32>, crate::particles::Population) {
        let lambda = marshall_palmer_lambda(self.rate_mm_h);
        let density = marshall_palmer_per_m3(self.rate_mm_h, self.min_drop_mm);
        let mut population = plan(
            density,
            w,
            h,
            focal,
            self.near_m,
            self.far_m,
            self.max_streaks,
        );
        let mut layer = vec![0.0f32; w * h];
        let mut streaks = Vec::with_capacity(population.count as usize);
        let mut rng = rng(seed, Stream::RainDrops);
        let exposure_s = self.exposure_ms / 1000.0;
        let sizes = TruncatedExp::new(lambda, self.min_drop_mm, MAX_DROP_MM);
        let base = self.wind_deg.to_radians().sin_cos();
        for _ in 0..population.count {
            let depth = sample_depth(&mut rng, self.near_m, population.far_effective_m);
            let d_mm = sizes.sample(&mut rng);
            let cx = rng.random::<f32>() * w as f32;
            let cy = rng.random::<f32>() * h as f32;
            let jitter: f32 = rng.random_range(-3.0..=3.0);
            // Image of the drop: its width, its defocus, and its motion during the exposure.
            let width = focal * d_mm * 1e-3 / depth;
            let blur = focal * self.aperture_mm * 1e-3 / depth;
            let spread = (width * width + blur * blur).sqrt().max(1.0);
            let length = atlas_fall_speed_m_s(d_mm) * exposure_s * focal / depth;
            // Each point of the streak is covered for width / (width + length) of the exposure,
            // and the drop's width is spread over `spread` pixels.
            let alpha = (width / spread) * (width / (width + length));
            if alpha < MIN_ALPHA {
                population.skipped_faint += 1;
                continue;
            }
            let (sx, sy) = turn(base, jitter.to_radians());
            let (hx, hy) = (0.5 * length * sx, 0.5 * length * sy);
            streaks.push(Streak {
                x0: cx - hx,
                y0: cy - hy,
                x1: cx + hx,
                y1: cy + hy,
                width: spread,
                alpha,
                depth,
            });
        }
        draw_all(&mut layer, w, h, scene_depth, &streaks);
        (layer, population)
    }

    /// Darkens drivable pixels and mirrors the scene in them (Fresnel reflectance of water at the
    /// viewing angle, patchy puddles), about the top of each column's drivable run: an upright
    /// object standing on the road is mirrored about its foot.
    #[allow(
        clippy::too_many_arguments,
        reason = "plain frame geometry, called once"
    )]
    fn wet_road(
        &self,
        lin: &mut [f32],
        w: usize,
        h: usize,
        drivable: &[u8],
        horizon: f32,
        focal: f32,
        seed: u64,
    ) -> serde_json::Value {
        let pixels = drivable.iter().filter(|&&m| m != 0).count();
        if pixels == 0 {
            return serde_json::json!({"applied": false, "reason": "empty drivable mask"});
        }
        // Rough water blurs reflections, mostly along the vertical: three taps `blur_rows` apart.
        let blur_rows = (h / 120).max(1);
        let puddles = ValueNoise::new(w, h, w as f32 / 10.0, 2, &mut rng(seed, Stream::Puddles));
        let fresnel: Vec<f32> = (0..h)
            .map(|y| {
                let below = (y as f32 + 0.5 - horizon).max(0.0);
                let elevation = (below / focal).atan().max(0.5f32.to_radians());
                fresnel_water(std::f32::consts::FRAC_PI_2 - elevation)
            })
            .collect();
        let dark = 1.0 - self.wetness * (1.0 - self.wet_darkening);
        let mut top = vec![0usize; w];
        let mut inside = vec![false; w];
        let mut reflected = 0usize;
        for (y, &reflectance) in fresnel.iter().enumerate() {
            for x in 0..w {
                let i = y * w + x;
                if drivable[i] == 0 {
                    inside[x] = false;
                    continue;
                }
                if !inside[x] {
                    inside[x] = true;
                    top[x] = y;
                }
                let tx = top[x];
                if tx == 0 {
                    // Nothing above the run to mirror.
                    for k in 0..3 {
                        lin[3 * i + k] *= dark;
                    }
                    continue;
                }
                let n = ((puddles.at(x, y) + 0.15) * 2.0).clamp(0.0, 1.0);
                let puddle = n * n * (3.0 - 2.0 * n);
                let r = self.wetness * reflectance * (0.35 + 0.65 * puddle);
                // The mirror image of row y about the run's top edge, and its vertical blur taps,
                // all above the run.
                let ys = (2 * tx).saturating_sub(y + 1);
                let taps = [
                    3 * (ys.saturating_sub(blur_rows) * w + x),
                    3 * (ys * w + x),
                    3 * ((ys + blur_rows).min(tx - 1) * w + x),
                ];
                for k in 0..3 {
                    let mirror =
                        (lin[taps[0] + k] + lin[taps[1] + k] + lin[taps[2] + k]) * (1.0 / 3.0);
                    lin[3 * i + k] = lin[3 * i + k] * dark * (1.0 - r) + r * mirror;
                }
                reflected += 1;
            }
        }
        serde_json::json!({
            "applied": true,
            "drivable_pixels": pixels,
            "albedo_factor": dark,
            "fresnel_at_bottom_row": fresnel.last(),
            "reflection_blur_rows": blur_rows,
            "reflected_pixels": reflected,
        })
    }
}

/// Unpolarised Fresnel reflectance of a water surface at incidence `theta_i` (radians from the
/// normal).
fn fresnel_water(theta_i: f32) -> f32 {
    let (si, ci) = theta_i.sin_cos();
    let st = si / WATER_N;
    let ct = (1.0 - st * st).max(0.0).sqrt();
    let rs = ((ci - WATER_N * ct) / (ci + WATER_N * ct)).powi(2);
    let rp = ((ct - WATER_N * ci) / (ct + WATER_N * ci)).powi(2);
    0.5 * (rs + rp)
}

/// Mean colour of the attenuated frame (`R t + L (1 - t)`) over every 7th pixel.
fn attenuated_mean(image: &RgbImage, t: &[f32], air: [f32; 3]) -> [f32; 3] {
    let dec = crate::color::decode_lut();
    let mut sum = [0.0f64; 3];
    let mut n = 0usize;
    for (p, &tv) in image.as_raw().chunks_exact(3).zip(t).step_by(7) {
        for k in 0..3 {
            sum[k] += f64::from(dec[p[k] as usize] * tv + air[k] * (1.0 - tv));
        }
        n += 1;
    }
    sum.map(|s| (s / n.max(1) as f64) as f32)
}

/// Koschmieder's law, streak compositing and sRGB encoding of an 8-bit frame in one pass. Every
/// step is a convex combination of values in `[0, 1]`, so the pre-scaled encoding needs no clamp.
fn attenuate_composite_encode(
    image: &RgbImage,
    t: &[f32],
    air: [f32; 3],
    layer: &[f32],
    radiance: [f32; 3],
) -> RgbImage {
    use crate::color::{LINEAR_STEPS, decode_lut, encode_lut, encode_scaled};
    let scale = (LINEAR_STEPS - 1) as f32;
    let (dec, enc) = (decode_lut(), encode_lut());
    let (l, e) = (air, radiance.map(|v| v * scale));
    let mut out = image.clone();
    for ((p, &tv), &s) in out.as_mut().chunks_exact_mut(3).zip(t).zip(layer) {
        let a = s.min(1.0);
        let keep = (1.0 - a) * scale;
        let fog = 1.0 - tv;
        let v0 = dec[p[0] as usize] * tv + l[0] * fog;
        let v1 = dec[p[1] as usize] * tv + l[1] * fog;
        let v2 = dec[p[2] as usize] * tv + l[2] * fog;
        p[0] = encode_scaled(enc, v0 * keep + a * e[0] + 8_388_608.0);
        p[1] = encode_scaled(enc, v1 * keep + a * e[1] + 8_388_608.0);
        p[2] = encode_scaled(enc, v2 * keep + a * e[2] + 8_388_608.0);
    }
    out
}

/// Mean colour over every 7th pixel.
fn mean_colour(lin: &[f32]) -> [f32; 3] {
    let mut sum = [0.0f64; 3];
    let mut n = 0usize;
    for p in lin.chunks_exact(3).step_by(7) {
        for k in 0..3 {
            sum[k] += f64::from(p[k]);
        }
        n += 1;
    }
    sum.map(|s| (s / n.max(1) as f64) as f32)
}

/// Pooling of the defocused copy seen through lens drops.
const POOL: usize = 8;

/// Water drops on the lens: out-of-focus discs that refract an inverted, wide view of the scene
/// (sampled from an 8x-pooled copy, which is the defocus), with a darker rim.
fn lens_drops(lin: &mut [f32], w: usize, h: usize, count: u32, seed: u64) -> serde_json::Value {
    if count == 0 || w == 0 || h == 0 {
        return serde_json::json!([]);
    }
    let mut rng = rng(seed, Stream::LensDrops);
    let planes: Vec<Vec<f64>> = (0..3)
        .map(|k| {
            let channel: Vec<f32> = lin.chunks_exact(3).map(|p| p[k]).collect();
            pool_mean(&channel, w, h, POOL).0
        })
        .collect();
    let (lw, lh) = (w.div_ceil(POOL), h.div_ceil(POOL));
    let xt = upsample_taps(w, lw, POOL);
    let yt = upsample_taps(h, lh, POOL);
    let mut drops = Vec::new();
    for _ in 0..count {
        let radius = rng.random_range(0.025f32..0.07) * w.min(h) as f32;
        let cx = rng.random::<f32>() * w as f32;
        let cy = rng.random::<f32>() * h as f32;
        let magnify = rng.random_range(2.0f32..3.5);
        drops.push(
            serde_json::json!({"x": cx, "y": cy, "radius_px": radius, "magnification": magnify}),
        );
        let y_lo = (cy - radius).floor().max(0.0) as usize;
        let y_hi = ((cy + radius).ceil().max(0.0) as usize).min(h);
        let x_lo = (cx - radius).floor().max(0.0) as usize;
        let x_hi = ((cx + radius).ceil().max(0.0) as usize).min(w);
        for y in y_lo..y_hi {
            for x in x_lo..x_hi {
                let (ox, oy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
                let rho = (ox * ox + oy * oy).sqrt() / radius;
                if rho >= 1.0 {
                    continue;
                }
                // Inverted and widened view through the drop.
                let k = magnify * (1.0 + 0.5 * rho * rho);
                let sx = ((cx - ox * k).max(0.0) as usize).min(w - 1);
                let sy = ((cy - oy * k).max(0.0) as usize).min(h - 1);
                let (x0, x1, fx) = xt[sx];
                let (y0, y1, fy) = yt[sy];
                let rim = 1.0 - 0.35 * rho.powi(4);
                let alpha = ((1.0 - rho) / 0.12).min(1.0);
                let i = 3 * (y * w + x);
                for (c, plane) in planes.iter().enumerate() {
                    let top =
                        plane[y0 * lw + x0] as f32 * (1.0 - fx) + plane[y0 * lw + x1] as f32 * fx;
                    let bottom =
                        plane[y1 * lw + x0] as f32 * (1.0 - fx) + plane[y1 * lw + x1] as f32 * fx;
                    let v = (top * (1.0 - fy) + bottom * fy) * rim;
                    lin[i + c] += alpha * (v - lin[i + c]);
                }
            }
        }
    }
    serde_json::Value::Array(drops)
}
