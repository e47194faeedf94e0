//! Day to night: less light, a shifted colour, a noisy sensor, and lights that keep shining.

use image::RgbImage;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::atmosphere::box_stats;
use crate::color::{LUMA, decode_lut, encode, encode_lut};
use crate::error::Check;
use crate::filter::{box_mean, gaussian_blur};
use crate::noise::{Stream, normal_table, normals3, rng};
use crate::{WeatherContext, WeatherError, WeatherMaps, WeatherOutput, provenance};

/// The dominant illuminant of the night scene.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NightTint {
    /// No colour shift.
    Neutral,
    /// Moonlight and a camera white-balanced for it: blue.
    Moonlight,
    /// Low-pressure/high-pressure sodium street lamps: orange.
    Sodium,
    /// White LED street lamps: slightly cool.
    Led,
}

impl NightTint {
    /// Channel gains at full strength (normalised to unit luminance by the caller).
    fn gains(self) -> [f32; 3] {
        match self {
            NightTint::Neutral => [1.0, 1.0, 1.0],
            NightTint::Moonlight => [0.75, 0.92, 1.4],
            NightTint::Sodium => [1.4, 0.95, 0.45],
            NightTint::Led => [0.95, 1.0, 1.12],
        }
    }
}

/// A night version of a day frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Night {
    /// Exposure change in stops, `[-10, 0]` (-3 is eight times less light).
    pub exposure_ev: f32,
    /// Exponent applied to linear light before the exposure, `[0.5, 3]`: above 1 crushes shadows.
    pub gamma: f32,
    pub tint: NightTint,
    /// `[0, 1]`: how far toward the tint's gains.
    pub tint_strength: f32,
    /// Shot-noise coefficient `a` of the Poisson-Gaussian model `sigma^2 = a I + b` (linear `I`).
    pub noise_shot: f32,
    /// Read-noise variance `b`.
    pub noise_read: f32,
    /// sRGB level (`[0.5, 1]`) all three channels must reach for a pixel to be a street light
    /// (never a pixel of semantic sky, when the depth map has it).
    pub street_light_level: f32,
    /// Street lights are small: bright pixels whose neighbourhood is brighter than this share are
    /// sky or a white wall, not a lamp.
    pub max_light_fraction: f32,
    /// Light up the brightest red and white blobs in the lower half of `lights_in` boxes.
    pub vehicle_lights: bool,
    /// Radiance of a light relative to diffuse white (lights do not dim with the ambient light).
    pub light_gain: f32,
    /// Glow standard deviation, pixels; `None` is 1.2% of the image width.
    pub glow_sigma_px: Option<f32>,
    /// Strength of the glow (scattering in air and optics) relative to the light.
    pub glow_strength: f32,
}

impl Default for Night {
    fn default() -> Self {
        Self {
            exposure_ev: -3.5,
            gamma: 1.3,
            tint: NightTint::Moonlight,
            tint_strength: 0.6,
            noise_shot: 1e-3,
            noise_read: 4e-6,
            street_light_level: 0.97,
            max_light_fraction: 0.25,
            vehicle_lights: true,
            light_gain: 3.0,
            glow_sigma_px: None,
            glow_strength: 0.6,
        }
    }
}

/// Lights found in a frame: pixel index and linear colour normalised to a peak of 1.
struct Lights {
    pixels: Vec<(usize, [f32; 3])>,
    street: usize,
    vehicle: usize,
}

impl Night {
    pub fn validate(&self) -> Result<(), WeatherError> {
        let c = Check { operation: "night" };
        c.range("exposure_ev", self.exposure_ev, -10.0, 0.0, true, "stops")?;
        c.range("gamma", self.gamma, 0.5, 3.0, true, "")?;
        c.range("tint_strength", self.tint_strength, 0.0, 1.0, true, "")?;
        c.range("noise_shot", self.noise_shot, 0.0, 0.1, true, "")?;
        c.range("noise_read", self.noise_read, 0.0, 0.01, true, "")?;
        c.range(
            "street_light_level",
            self.street_light_level,
            0.5,
            1.0,
            true,
            "(sRGB)",
        )?;
        c.range(
            "max_light_fraction",
            self.max_light_fraction,
            0.0,
            1.0,
            false,
            "",
        )?;
        c.range("light_gain", self.light_gain, 0.0, 100.0, true, "")?;
        c.optional("glow_sigma_px", self.glow_sigma_px, 0.0, 500.0, "pixels")?;
        c.range("glow_strength", self.glow_strength, 0.0, 10.0, true, "")
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
        let raw = image.as_raw();

        // Tone: gamma, exposure and tint folded into one table per channel.
        let gains = {
            let full = self.tint.gains();
            let g = full.map(|v| 1.0 + self.tint_strength * (v - 1.0));
            let y = LUMA[0] * g[0] + LUMA[1] * g[1] + LUMA[2] * g[2];
            g.map(|v| v / y)
        };
        let scale = self.exposure_ev.exp2();
        let dec = decode_lut();
        let tone: [Vec<f32>; 3] = gains.map(|g| {
            dec.iter()
                .map(|&l| l.powf(self.gamma) * scale * g)
                .collect()
        });
        let mut lin: Vec<f32> = Vec::with_capacity(raw.len());
        for p in raw.chunks_exact(3) {
            lin.push(tone[0][p[0] as usize]);
            lin.push(tone[1][p[1] as usize]);
            lin.push(tone[2][p[2] as usize]);
        }

        let lights = self.find_lights(image, ctx);
        let sigma = self.glow_sigma_px.unwrap_or(0.012 * w as f32).max(0.5);
        let glow_region = self.glow(&mut lin, w, h, &lights, sigma);

        if self.noise_shot > 0.0 || self.noise_read > 0.0 {
            let table = normal_table();
            let mut rng = rng(seed, Stream::SensorNoise);
            for p in lin.chunks_exact_mut(3) {
                let n = normals3(table, rng.next_u64());
                for k in 0..3 {
                    let v = p[k].max(0.0);
                    p[k] = v + (self.noise_shot * v + self.noise_read).sqrt() * n[k];
                }
            }
        }

        let enc = encode_lut();
        let out_raw: Vec<u8> = lin.iter().map(|&v| encode(enc, v)).collect();
        let out = RgbImage::from_raw(w as u32, h as u32, out_raw)
            .unwrap_or_else(|| RgbImage::new(w as u32, h as u32));
        let per_box = box_stats(ctx.boxes, &out, None, 0.0, None);
        let derived = serde_json::json!({
            "exposure_scale": scale,
            "channel_gains": gains,
            "street_light_pixels": lights.street,
            "vehicle_light_pixels": lights.vehicle,
            "glow_sigma_px": sigma,
            "glow_region": glow_region,
        });
        Ok(WeatherOutput {
            image: out,
            per_box,
            params: provenance("night", self, &derived, ctx, seed),
            maps: WeatherMaps::default(),
        })
    }

    /// Street lights (small saturated blobs) and vehicle lights (the reddest and the whitest
    /// pixels of the lower half of each vehicle box).
    fn find_lights(&self, image: &RgbImage, ctx: &WeatherContext) -> Lights {
        let (w, h) = (image.width() as usize, image.height() as usize);
        let raw = image.as_raw();
        let dec = decode_lut();
        let colour = |i: usize| {
            let c = [
                dec[raw[3 * i] as usize],
                dec[raw[3 * i + 1] as usize],
                dec[raw[3 * i + 2] as usize],
            ];
            let peak = c[0].max(c[1]).max(c[2]).max(1e-6);
            c.map(|v| v / peak)
        };
        let mut lit = vec![false; w * h];
        let mut pixels = Vec::new();

        let level = (self.street_light_level * 255.0).round() as u8;
        // Where the depth map knows the sky (semantic labels), bright sky is not a lamp.
        let sky_known = ctx.depth.sky_masked;
        let bright: Vec<f32> = raw
            .chunks_exact(3)
            .zip(ctx.depth.metres())
            .map(|(p, &d)| {
                let lit = p[0].min(p[1]).min(p[2]) >= level && !(sky_known && d == f32::INFINITY);
                f32::from(u8::from(lit))
            })
            .collect();
        let mut street = 0;
        if bright.iter().any(|&b| b > 0.0) {
            let r = (w / 40).max(4);
            let share = box_mean(&bright, w, h, 1, r, r);
            for i in 0..w * h {
                if bright[i] > 0.0 && share[i] <= self.max_light_fraction {
                    lit[i] = true;
                    pixels.push((i, colour(i)));
                    street += 1;
                }
            }
        }

        let mut vehicle = 0;
        if self.vehicle_lights {
            for b in ctx.lights_in {
                let lower = roadsynth_types::BBox::new(b.x0, f64::midpoint(b.y0, b.y1), b.x1, b.y1);
                let Some((x0, x1, y0, y1)) = crate::depth::box_pixel_range(&lower, w, h) else {
                    continue;
                };
                let idx: Vec<usize> = (y0..y1)
                    .flat_map(|y| (x0..x1).map(move |x| y * w + x))
                    .collect();
                let redness = |i: usize| {
                    let p = &raw[3 * i..3 * i + 3];
                    p[0].saturating_sub(p[1].max(p[2]))
                };
                let whiteness = |i: usize| {
                    let p = &raw[3 * i..3 * i + 3];
                    p[0].min(p[1]).min(p[2])
                };
                for (score, floor, share) in [
                    (&redness as &dyn Fn(usize) -> u8, 60u8, 0.05),
                    (&whiteness, 200, 0.03),
                ] {
                    let threshold =
                        top_share_threshold(idx.iter().map(|&i| score(i)), idx.len(), share)
                            .max(floor);
                    for &i in &idx {
                        if score(i) >= threshold && !lit[i] {
                            lit[i] = true;
                            pixels.push((i, colour(i)));
                            vehicle += 1;
                        }
                    }
                }
            }
        }
        Lights {
            pixels,
            street,
            vehicle,
        }
    }

    /// Lights shine at `light_gain` whatever the exposure; their glow (a Gaussian of `sigma` plus
    /// a 3x wider tail for veiling glare, blurred over the lights' bounding region only) adds.
    fn glow(
        &self,
        lin: &mut [f32],
        w: usize,
        h: usize,
        lights: &Lights,
        sigma: f32,
    ) -> serde_json::Value {
        if lights.pixels.is_empty() {
            return serde_json::Value::Null;
        }
        let margin = (9.0 * sigma).ceil() as usize + 1;
        let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) = (w, 0, h, 0);
        for &(i, _) in &lights.pixels {
            let (x, y) = (i % w, i / w);
            x_lo = x_lo.min(x);
            x_hi = x_hi.max(x + 1);
            y_lo = y_lo.min(y);
            y_hi = y_hi.max(y + 1);
        }
        let (x_lo, y_lo) = (x_lo.saturating_sub(margin), y_lo.saturating_sub(margin));
        let (x_hi, y_hi) = ((x_hi + margin).min(w), (y_hi + margin).min(h));
        let (cw, ch) = (x_hi - x_lo, y_hi - y_lo);
        let mut emit = vec![0.0f32; 3 * cw * ch];
        for &(i, c) in &lights.pixels {
            let (x, y) = (i % w - x_lo, i / w - y_lo);
            for k in 0..3 {
                let e = c[k] * self.light_gain;
                emit[3 * (y * cw + x) + k] = e;
                lin[3 * i + k] = lin[3 * i + k].max(e);
            }
        }
        let near = gaussian_blur(&emit, cw, ch, 3, sigma);
        let far = gaussian_blur(&emit, cw, ch, 3, 3.0 * sigma);
        for y in 0..ch {
            for x in 0..cw {
                let j = 3 * (y * cw + x);
                let i = 3 * ((y + y_lo) * w + x + x_lo);
                for k in 0..3 {
                    lin[i + k] += self.glow_strength * (0.75 * near[j + k] + 0.25 * far[j + k]);
                }
            }
        }
        serde_json::json!({"x0": x_lo, "y0": y_lo, "x1": x_hi, "y1": y_hi})
    }
}

/// The smallest score among the top `share` of `n` scores (at least the maximum's bin).
fn top_share_threshold(scores: impl Iterator<Item = u8>, n: usize, share: f64) -> u8 {
    let mut hist = [0usize; 256];
    for s in scores {
        hist[s as usize] += 1;
    }
    let wanted = ((n as f64 * share).ceil() as usize).max(1);
    let mut count = 0;
    for v in (0..256).rev() {
        count += hist[v];
        if count >= wanted {
            return v as u8;
        }
    }
    0
}
