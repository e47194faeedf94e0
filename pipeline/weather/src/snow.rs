//! Falling snow: a Gunn-Marshall flake population, its extinction, flakes drawn by depth, and
//! cover on horizontal ground.

use image::RgbImage;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::atmosphere::{
    airlight_of, box_stats, koschmieder_linear, transmission, visibility_from_beta,
};
use crate::color::LinearRgb;
use crate::error::Check;
use crate::noise::{Stream, rng, value_noise};
use crate::particles::{
    MIN_ALPHA, Population, Streak, TruncatedExp, composite_encode, draw_all, plan, sample_depth,
    turn,
};
use crate::{ScalarMap, WeatherContext, WeatherError, WeatherMaps, WeatherOutput, provenance};

/// Largest melted-equivalent flake diameter drawn, mm.
const MAX_MELTED_MM: f32 = 5.0;
/// Opacity of an in-focus, motionless flake.
const FLAKE_OPACITY: f32 = 0.9;

/// Gunn and Marshall (1958) snow size distribution in melted-drop diameter:
/// `N(D) = N0 exp(-Lambda D)`, `N0 = 3800 R^-0.87` m^-3 mm^-1, `Lambda = 2.55 R^-0.48` mm^-1,
/// `R` the liquid-equivalent rate in mm/h.
fn gunn_marshall(rate_mm_h: f32) -> (f64, f64) {
    // Rate 0 is lying snow only: no flakes in the air (the distribution's limit).
    if rate_mm_h <= 0.0 {
        return (0.0, f64::INFINITY);
    }
    let r = f64::from(rate_mm_h);
    (3800.0 * r.powf(-0.87), 2.55 * r.powf(-0.48))
}

/// Flake diameter over melted diameter for a flake density `rho` (g/cm^3): equal mass.
fn swell(density_g_cm3: f32) -> f32 {
    (1.0 / density_g_cm3).cbrt()
}

/// Snow extinction coefficient per metre, from the flakes' geometric cross-section with extinction
/// efficiency 2 (particles far larger than the wavelength): `beta = 2 * integral of
/// (pi/4) D_s^2 N(D) dD = pi s^2 N0 / Lambda^3` (mm^2 m^-3, times 1e-6), where `D_s = s D` is
/// the flake diameter of a melted diameter `D` at flake density `rho` (`s = rho^-1/3`).
///
/// With `rho = 0.1` g/cm^3 this gives visibility `V ~= 0.9 R^-0.57` km (about 900 m at 1 mm/h,
/// 360 m at 5 mm/h), inside the factor-3-to-10 scatter that Rasmussen et al. (1999, J. Appl.
/// Meteor. 38) measured between visibility and liquid-equivalent snowfall rate. It is a derived
/// relation, not a fitted one.
pub fn snow_extinction_per_m(rate_mm_h: f32, density_g_cm3: f32) -> f32 {
    if rate_mm_h <= 0.0 {
        return 0.0;
    }
    let (n0, lambda) = gunn_marshall(rate_mm_h);
    let s = f64::from(swell(density_g_cm3));
    (std::f64::consts::PI * s * s * n0 / lambda.powi(3) * 1e-6) as f32
}

/// Snowfall.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Snow {
    /// Liquid-equivalent snowfall rate, mm/h, `(0, 30]` (1 is moderate, 2.5 and more heavy).
    pub rate_mm_h: f32,
    /// Angle of the drift from vertical in the image, degrees, positive to the right.
    pub wind_deg: f32,
    /// Exposure time, ms.
    pub exposure_ms: f32,
    /// Focal length, pixels; `None` takes the frame's intrinsics, else the nominal camera.
    pub focal_px: Option<f32>,
    /// Nearest and farthest flake drawn, metres.
    pub near_m: f32,
    pub far_m: f32,
    /// Smallest flake drawn, as melted-drop diameter, mm.
    pub min_melted_mm: f32,
    /// Bulk density of flakes, g/cm^3 (dry snow 0.05-0.1, wet 0.2-0.3): sets their size.
    pub flake_density: f32,
    /// Lens aperture diameter, mm, focused at infinity (defocus of near flakes).
    pub aperture_mm: f32,
    /// Most flakes drawn; beyond it the populated depth range shrinks (recorded).
    pub max_flakes: u32,
    /// Snow cover of drivable and pavement pixels, `[0, 1]`.
    pub accumulation: f32,
    /// Atmospheric light as sRGB `[0, 1]`; `None` estimates it from the frame.
    pub atmospheric_light: Option<[f32; 3]>,
}

impl Default for Snow {
    fn default() -> Self {
        Self {
            rate_mm_h: 1.0,
            wind_deg: 10.0,
            exposure_ms: 5.0,
            focal_px: None,
            near_m: 0.5,
            far_m: 10.0,
            min_melted_mm: 0.3,
            flake_density: 0.1,
            aperture_mm: 2.0,
            max_flakes: 20_000,
            accumulation: 0.6,
            atmospheric_light: None,
        }
    }
}

impl Snow {
    /// Snow of a rate, other parameters at their defaults.
    pub fn with_rate(rate_mm_h: f32) -> Self {
        Self {
            rate_mm_h,
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<(), WeatherError> {
        let c = Check { operation: "snow" };
        c.range(
            "rate_mm_h",
            self.rate_mm_h,
            0.0,
            30.0,
            true,
            "mm/h (liquid equivalent; 0 is lying snow only)",
        )?;
        c.range("wind_deg", self.wind_deg, -80.0, 80.0, true, "degrees")?;
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
        c.range("min_melted_mm", self.min_melted_mm, 0.05, 3.0, true, "mm")?;
        c.range(
            "flake_density",
            self.flake_density,
            0.01,
            0.9,
            true,
            "g/cm^3",
        )?;
        c.range("aperture_mm", self.aperture_mm, 0.0, 50.0, true, "mm")?;
        c.range_u32("max_flakes", self.max_flakes, 0, 2_000_000)?;
        c.range("accumulation", self.accumulation, 0.0, 1.0, true, "")?;
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
        // Snow is white, lit by the sky: its radiance follows the atmospheric light's level.
        let sky_level = (air.linear[0] + air.linear[1] + air.linear[2]) / 3.0;
        let mut lin = LinearRgb::from_srgb(image);

        let cover = self.cover(&mut lin.data, w, h, ctx, 0.85 * sky_level, seed);

        let beta = snow_extinction_per_m(self.rate_mm_h, self.flake_density);
        let t = transmission(ctx.depth, beta, None, ctx.intrinsics.as_ref());
        koschmieder_linear(&mut lin.data, &t, air.linear);

        let (layer, population) = self.flakes(w, h, focal, ctx.depth.metres(), seed);
        let out = composite_encode(
            &lin.data,
            &layer,
            [FLAKE_OPACITY * sky_level.max(0.3); 3],
            w,
            h,
        );
        let per_box = box_stats(ctx.boxes, &out, Some(&t), beta, None);
        let (n0, lambda) = gunn_marshall(self.rate_mm_h);
        let derived = serde_json::json!({
            "beta_per_m": beta,
            "visibility_m": visibility_from_beta(beta),
            "gunn_marshall_n0_per_m3_mm": n0,
            "gunn_marshall_lambda_per_mm": lambda,
            "flake_over_melted_diameter": swell(self.flake_density),
            "atmospheric_light": air,
            "focal_px": focal,
            "focal_source": focal_source,
            "flakes": population,
            "cover": cover,
            "distance": if ctx.intrinsics.is_some() { "ray_length" } else { "depth" },
        });
        Ok(WeatherOutput {
            image: out,
            per_box,
            params: provenance("snow", self, &derived, ctx, seed),
            maps: WeatherMaps {
                transmission: Some(ScalarMap::new(w, h, t)),
                raw_transmission: None,
                particles: Some(ScalarMap::new(w, h, layer)),
            },
        })
    }

    /// Blends drivable and pavement pixels toward snow, patchily (seeded noise).
    fn cover(
        &self,
        lin: &mut [f32],
        w: usize,
        h: usize,
        ctx: &WeatherContext,
        snow_radiance: f32,
        seed: u64,
    ) -> serde_json::Value {
        if self.accumulation <= 0.0 {
            return serde_json::json!({"applied": false, "reason": "accumulation is 0"});
        }
        let masks: Vec<&[u8]> = [ctx.drivable, ctx.pavement]
            .into_iter()
            .flatten()
            .map(|m| m.data.as_slice())
            .collect();
        if masks.is_empty() {
            return serde_json::json!({"applied": false, "reason": "no drivable or pavement mask"});
        }
        let mut rng = rng(seed, Stream::SnowCover);
        let patches = value_noise(w, h, w as f32 / 24.0, 3, &mut rng);
        let grain = value_noise(w, h, 3.0, 1, &mut rng);
        let mut covered = 0usize;
        for i in 0..w * h {
            if !masks.iter().any(|m| m[i] != 0) {
                continue;
            }
            covered += 1;
            let a = self.accumulation * (0.7 + 0.6 * patches[i]).clamp(0.0, 1.0);
            let s = snow_radiance * (0.93 + 0.07 * grain[i]);
            for k in 0..3 {
                let v = &mut lin[3 * i + k];
                *v += a * (s - *v);
            }
        }
        serde_json::json!({"applied": true, "pixels": covered, "snow_radiance_linear": snow_radiance})
    }

    /// Flake opacity of the population in the frustum.
    fn flakes(
        &self,
        w: usize,
        h: usize,
        focal: f32,
        scene_depth: &[f32],
        seed: u64,
    ) -> (Vec<f32>, Population) {
        let (n0, lambda) = gunn_marshall(self.rate_mm_h);
        if n0 == 0.0 {
            return (
                vec![0.0; w * h],
                plan(0.0, w, h, focal, self.near_m, self.far_m, 0),
            );
        }
        let density = n0 / lambda * (-lambda * f64::from(self.min_melted_mm)).exp();
        let mut population = plan(
            density,
            w,
            h,
            focal,
            self.near_m,
            self.far_m,
            self.max_flakes,
        );
        let mut layer = vec![0.0f32; w * h];
        let mut streaks = Vec::with_capacity(population.count as usize);
        let mut rng = rng(seed, Stream::SnowFlakes);
        let exposure_s = self.exposure_ms / 1000.0;
        let swell = swell(self.flake_density);
        let sizes = TruncatedExp::new(lambda as f32, self.min_melted_mm, MAX_MELTED_MM);
        let base = self.wind_deg.to_radians().sin_cos();
        for _ in 0..population.count {
            let depth = sample_depth(&mut rng, self.near_m, population.far_effective_m);
            let melted = sizes.sample(&mut rng);
            let cx = rng.random::<f32>() * w as f32;
            let cy = rng.random::<f32>() * h as f32;
            let turbulence: f32 = rng.random_range(-12.0..=12.0);
            let d_mm = melted * swell;
            // Locatelli and Hobbs (1974), aggregates of unrimed dendrites: v = 0.8 D^0.16 m/s.
            let speed = 0.8 * d_mm.powf(0.16);
            let width = focal * d_mm * 1e-3 / depth;
            let blur = focal * self.aperture_mm * 1e-3 / depth;
            let spread = (width * width + blur * blur).sqrt().max(1.0);
            let length = speed * exposure_s * focal / depth;
            // A disc spread over `spread^2`, each point covered for spread / (spread + length).
            let alpha = FLAKE_OPACITY * (width / spread).powi(2) * (spread / (spread + length));
            if alpha < MIN_ALPHA {
                population.skipped_faint += 1;
                continue;
            }
            let (sx, sy) = turn(base, turbulence.to_radians());
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
}
