//! The default backend: real cut-outs, chosen and fitted to the planned box, harmonised to the
//! local light, matched in blur and noise, blended, with a contact shadow.

use std::sync::Arc;

use image::{GrayImage, Luma, RgbImage};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use roadsynth_assets::measure_lighting;
use roadsynth_placement::PlanRow;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::EngineError;
use crate::blend::{BlendMode, PoissonConfig, poisson};
use crate::compose::Layer;
use crate::harmonise::{self, HarmoniseConfig, LabStats};
use crate::library::{Choice, ExemplarLibrary, Preference, SelectionConfig, Target, choose};
use crate::raster::{PixelRect, Plane, Premultiplied, RgbPlane, rgb_to_lab};
use crate::texture::{TextureConfig, noise_sigma, sharpness};

/// Objects shorter than this (pixels) are not rendered: nothing of a cut-out survives.
pub const MIN_RENDER_HEIGHT_PX: f64 = 4.0;

/// The contact shadow: a soft dark ellipse on the ground under the foot row. Without it an
/// object pasted on a road seems to float.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowConfig {
    pub enabled: bool,
    /// Darkening at the centre (`0..1`) in a scene of average brightness; brighter surroundings
    /// (sun) get up to 1.2 times this, dim ones down to half.
    pub strength: f64,
    /// Ellipse width as a fraction of the object's width.
    pub width: f64,
    /// Ellipse half-height as a fraction of the object's height (at least 1.5 px).
    pub height: f64,
}

impl Default for ShadowConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            strength: 0.35,
            width: 0.9,
            height: 0.06,
        }
    }
}

/// Settings of [`ExemplarCompositor`]; the default is [`ExemplarConfig::standard`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExemplarConfig {
    pub selection: SelectionConfig,
    pub harmonise: HarmoniseConfig,
    pub texture: TextureConfig,
    pub shadow: ShadowConfig,
    pub blend: BlendMode,
    pub poisson: PoissonConfig,
    /// Feather of the alpha edge, Gaussian sigma in pixels.
    pub feather_sigma: f64,
    /// Width of the context ring measured around the planned box, as a fraction of its longer
    /// side (at least 4 px).
    pub context_margin: f64,
}

impl Default for ExemplarConfig {
    fn default() -> Self {
        Self::standard()
    }
}

impl ExemplarConfig {
    /// The defaults: feather 0.3 px (the resampled alpha is already anti-aliased; a wider feather
    /// reads as a soft halo at `CamVid`'s resolution and cost `YOLOX`-nano 8 points of detection
    /// rate at 0.6 px), context ring 0.35 of the box.
    pub fn standard() -> Self {
        Self {
            selection: SelectionConfig::default(),
            harmonise: HarmoniseConfig::default(),
            texture: TextureConfig::default(),
            shadow: ShadowConfig::default(),
            blend: BlendMode::default(),
            poisson: PoissonConfig::default(),
            feather_sigma: 0.3,
            context_margin: 0.35,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), EngineError> {
        self.selection.validate()?;
        self.harmonise.validate()?;
        self.poisson.validate()?;
        let ok = self.feather_sigma >= 0.0
            && self.context_margin > 0.0
            && (0.0..1.0).contains(&self.shadow.strength)
            && self.shadow.width > 0.0
            && self.shadow.height > 0.0
            && self.texture.max_noise_sigma >= 0.0
            && self.texture.blur_sigmas.iter().all(|s| *s > 0.0);
        ok.then_some(())
            .ok_or_else(|| EngineError::Config(format!("exemplar settings out of range: {self:?}")))
    }
}

/// What a backend produced for one planned object.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub layer: Layer,
    pub asset_id: Option<String>,
    pub asset_class: Option<String>,
    pub substituted: bool,
    /// Everything about how it was rendered, for the annotation and provenance.
    pub params: serde_json::Value,
}

/// A planned object a backend could not render, and why.
pub type Skip = String;

/// The context of a planned box: the ring of frame pixels around it.
struct Context {
    rect: PixelRect,
    rgb: RgbPlane,
    ring: Vec<bool>,
}

impl Context {
    fn of(image: &RgbImage, target: &Target, margin_fraction: f64) -> Self {
        let b = target.planned;
        let margin = (margin_fraction * b.width().max(b.height())).max(4.0);
        let (w, h) = image.dimensions();
        let rect = PixelRect::covering(&b, margin, w, h);
        let rgb = RgbPlane::crop(image, rect);
        let inner = PixelRect::covering(&b, 0.0, w, h);
        let mut ring = Vec::with_capacity(rect.area());
        for y in rect.y0..rect.y1 {
            for x in rect.x0..rect.x1 {
                ring.push(!(x >= inner.x0 && x < inner.x1 && y >= inner.y0 && y < inner.y1));
            }
        }
        Self { rect, rgb, ring }
    }

    /// L\*a\*b\* statistics of the ring. Only the ring's pixels are converted, packed into one
    /// row in scan order, so the sums run over the same values in the same order as over the
    /// whole rectangle.
    fn ring_lab_stats(&self) -> LabStats {
        let data: Vec<[f32; 3]> = self
            .rgb
            .data
            .iter()
            .zip(&self.ring)
            .filter(|(_, in_ring)| **in_ring)
            .map(|(p, _)| *p)
            .collect();
        let lab = rgb_to_lab(&RgbPlane {
            // At most the rectangle's pixel count, a product of two `u32`s within the frame.
            width: data.len() as u32,
            height: 1,
            data,
        });
        LabStats::of(&lab, &vec![1.0; lab.data.len()])
    }

    fn image_and_weight(&self) -> (RgbImage, GrayImage) {
        let (w, h) = (self.rect.width(), self.rect.height());
        let img = RgbImage::from_fn(w, h, |x, y| {
            let p = self.rgb.data[(y * w + x) as usize];
            image::Rgb(p.map(crate::raster::to_u8))
        });
        let weight = GrayImage::from_fn(w, h, |x, y| {
            Luma([if self.ring[(y * w + x) as usize] {
                255
            } else {
                0
            }])
        });
        (img, weight)
    }
}

/// Pixels whose coverage and whose 4 neighbours' coverage are (nearly) full: the interior where
/// a cut-out's own texture can be measured without its edge.
fn interior(alpha: &Plane) -> Vec<bool> {
    let (w, h) = (alpha.width as usize, alpha.height as usize);
    let full = |i: usize| alpha.data[i] >= 0.99;
    (0..w * h)
        .map(|i| {
            let (x, y) = (i % w, i / w);
            x > 0
                && y > 0
                && x + 1 < w
                && y + 1 < h
                && full(i)
                && full(i - 1)
                && full(i + 1)
                && full(i - w)
                && full(i + w)
        })
        .collect()
}

/// The exemplar compositor (see the module documentation).
#[derive(Debug, Clone)]
pub struct ExemplarCompositor {
    library: Arc<ExemplarLibrary>,
    config: ExemplarConfig,
}

impl ExemplarCompositor {
    pub fn new(library: Arc<ExemplarLibrary>, config: ExemplarConfig) -> Result<Self, EngineError> {
        config.validate()?;
        Ok(Self { library, config })
    }

    pub fn config(&self) -> &ExemplarConfig {
        &self.config
    }

    pub fn library(&self) -> &ExemplarLibrary {
        &self.library
    }

    /// Renders one planned object as a layer. `occluders_near` says whether nearer existing
    /// objects overlap it (Poisson would pull their colours into the object, so `auto` keeps
    /// feathering there); cut-outs whose ids are in `exclude` are not chosen.
    pub(crate) fn render(
        &self,
        image: &RgbImage,
        row: &PlanRow,
        occluders_near: bool,
        exclude: &[String],
        rng: &mut ChaCha8Rng,
    ) -> Result<Result<Rendered, Skip>, EngineError> {
        let (w, h) = image.dimensions();
        let target = match Target::of(row, w, h) {
            Ok(t) => t,
            Err(reason) => return Ok(Err(reason)),
        };
        if target.full.height() < MIN_RENDER_HEIGHT_PX {
            return Ok(Err(format!(
                "planned box is {:.1} px tall, below {MIN_RENDER_HEIGHT_PX}",
                target.full.height()
            )));
        }
        let cfg = &self.config;
        let context = Context::of(image, &target, cfg.context_margin);
        let (ring_image, ring_weight) = context.image_and_weight();
        let lighting = measure_lighting(&ring_image, &ring_weight);
        let Some(choice) = choose(
            &self.library,
            &row.class,
            &target,
            &cfg.selection,
            Preference::Lighting(&lighting),
            exclude,
            rng,
        ) else {
            return Ok(Err(format!(
                "no cut-out of {} (or its substitutes) fits a {:.0}x{:.0} box",
                row.class,
                target.full.width(),
                target.full.height()
            )));
        };
        // Face the cut-out's lit side the way the surroundings are lit, when both show a
        // direction; otherwise either way.
        let el = &choice.exemplar.lighting;
        let flip = if lighting.light_explained > 0.2
            && el.light_explained > 0.2
            && lighting.light_dx.abs() > 0.3
            && el.light_dx.abs() > 0.3
        {
            (lighting.light_dx > 0.0) != (el.light_dx > 0.0)
        } else {
            rng.random_bool(0.5)
        };
        let fit = choice.fit;
        let mut patch =
            Premultiplied::resized_from_rgba(&choice.exemplar.rgba, flip, fit.width, fit.height)?;

        // Blur and noise of the surroundings.
        let ring_luma = context.rgb.luma();
        let ring_noise = noise_sigma(&ring_luma, &context.ring)?;
        let ring_sharp = sharpness(&ring_luma, &context.ring, ring_noise.unwrap_or(0.0))?;
        let inside = interior(&patch.alpha());
        let object_noise = |p: &Premultiplied| -> Result<f32, EngineError> {
            Ok(noise_sigma(&p.colour().luma(), &inside)?.unwrap_or(0.0))
        };
        let mut blur_sigma = 0.0;
        if cfg.texture.match_blur
            && let Some(target_sharp) = ring_sharp
        {
            let noise = object_noise(&patch)?;
            let own = sharpness(&patch.colour().luma(), &inside, noise)?;
            if own.is_some_and(|s| s > target_sharp) {
                // The first blur as soft as the surroundings, else the strongest tried.
                let mut softest = None;
                for &sigma in &cfg.texture.blur_sigmas {
                    blur_sigma = sigma;
                    let blurred = patch.blurred(sigma)?;
                    let s = sharpness(&blurred.colour().luma(), &inside, 0.0)?;
                    softest = Some(blurred);
                    if s.is_none_or(|s| s <= target_sharp) {
                        break;
                    }
                }
                if let Some(blurred) = softest {
                    patch = blurred;
                }
            }
        }

        // Feathered edge: colour from the unfeathered cut-out where it is mostly opaque, from the
        // blurred premultiplied one at the new soft edge (so the edge carries object colour, not
        // black).
        let hard_alpha = patch.alpha();
        let hard_colour = patch.colour();
        let (alpha, mut colour) = if cfg.feather_sigma > 0.0 {
            let soft = patch.blurred(cfg.feather_sigma)?;
            let soft_colour = soft.colour();
            let colour = RgbPlane {
                width: patch.width,
                height: patch.height,
                data: hard_colour
                    .data
                    .iter()
                    .zip(&soft_colour.data)
                    .zip(&hard_alpha.data)
                    .map(|((hc, sc), &a)| if a >= 0.5 { *hc } else { *sc })
                    .collect(),
            };
            (soft.alpha(), colour)
        } else {
            (hard_alpha, hard_colour)
        };

        // Harmonisation toward the ring.
        // The object's L*a*b* serves both its statistics and the transfer itself.
        let object_lab = rgb_to_lab(&colour);
        let object_stats = LabStats::of(&object_lab, &alpha.data);
        let ring_stats = context.ring_lab_stats();
        let harmonisation = harmonise::plan(object_stats, ring_stats, &cfg.harmonise);
        colour = harmonise::apply_to_lab(object_lab, &harmonisation);

        // Sensor noise: what the surroundings have beyond what the (blurred) cut-out has.
        let mut noise_added = 0.0f32;
        if cfg.texture.match_noise
            && let Some(target_noise) = ring_noise
        {
            let own = noise_sigma(&colour.luma(), &inside)?.unwrap_or(0.0);
            noise_added = (target_noise * target_noise - own * own)
                .max(0.0)
                .sqrt()
                .min(cfg.texture.max_noise_sigma);
            if noise_added > 0.05
                && let Ok(n) = Normal::new(0.0f32, noise_added)
            {
                for (p, &a) in colour.data.iter_mut().zip(&alpha.data) {
                    if a > 0.0 {
                        for c in p.iter_mut() {
                            *c = (*c + n.sample(rng)).clamp(0.0, 255.0);
                        }
                    }
                }
            }
        }

        let mut layer = self.layer(image, &target, &choice, &colour, &alpha, ring_stats);
        let mut blend_used = "feather";
        let mut measure = None;
        let want_poisson = match cfg.blend {
            BlendMode::Feather => false,
            BlendMode::Poisson => true,
            BlendMode::Auto => !occluders_near,
        };
        if want_poisson {
            let object_rect = PixelRect {
                x0: fit.x0.clamp(0, i64::from(w)) as u32,
                y0: fit.y0.clamp(0, i64::from(h)) as u32,
                x1: (fit.x0 + i64::from(fit.width)).clamp(0, i64::from(w)) as u32,
                y1: (fit.y0 + i64::from(fit.height)).clamp(0, i64::from(h)) as u32,
            };
            let m = cfg.poisson.margin_px + 2;
            let clone_rect = PixelRect {
                x0: object_rect.x0.saturating_sub(m),
                y0: object_rect.y0.saturating_sub(m),
                x1: (object_rect.x1 + m).min(w),
                y1: (object_rect.y1 + m).min(h),
            };
            let (obj, a) = crop_layer(&layer, clone_rect);
            if let Some((cloned, region, m)) = poisson(image, clone_rect, &obj, &a, &cfg.poisson) {
                measure = Some(m);
                if cfg.blend == BlendMode::Poisson || cfg.poisson.prefers_poisson(&m) {
                    blend_used = "poisson";
                    for y in clone_rect.y0..clone_rect.y1 {
                        for x in clone_rect.x0..clone_rect.x1 {
                            let (i, j) = (layer.rect.index(x, y), clone_rect.index(x, y));
                            if region[j] > 0.0 {
                                layer.rgb[i] = cloned.data[j];
                                layer.alpha[i] = 1.0;
                            }
                        }
                    }
                }
            }
        }

        let params = json!({
            "backend": "exemplar",
            "asset_id": choice.exemplar.id,
            "asset_class": choice.exemplar.class,
            "substituted": choice.substituted,
            "selection": {
                "tier": choice.tier,
                "candidates": choice.candidates,
                "score": choice.score,
                "flipped": flip,
                "fit": fit,
                "target_lighting": {
                    "l_mean": lighting.l_mean,
                    "a_mean": lighting.a_mean,
                    "b_mean": lighting.b_mean,
                    "light_dx": lighting.light_dx,
                    "light_explained": lighting.light_explained,
                },
            },
            "harmonisation": harmonisation,
            "blur_sigma": blur_sigma,
            "noise": {"context_sigma": ring_noise, "added_sigma": noise_added},
            "context_sharpness": ring_sharp,
            "blend": blend_used,
            "blend_requested": cfg.blend.as_str(),
            "blend_measure": measure,
        });
        Ok(Ok(Rendered {
            layer,
            asset_id: Some(choice.exemplar.id.clone()),
            asset_class: Some(choice.exemplar.class.clone()),
            substituted: choice.substituted,
            params,
        }))
    }

    /// The layer of a fitted, finished cut-out: the object where it falls in the frame, and its
    /// contact shadow.
    fn layer(
        &self,
        image: &RgbImage,
        target: &Target,
        choice: &Choice<'_>,
        colour: &RgbPlane,
        alpha: &Plane,
        ring: LabStats,
    ) -> Layer {
        let (w, h) = image.dimensions();
        let fit = choice.fit;
        let shadow = &self.config.shadow;
        let rx = (shadow.width * f64::from(fit.width) / 2.0).max(1.0);
        let ry = (shadow.height * f64::from(fit.height)).max(1.5);
        let (sx, sy) = (target.foot_u, target.foot_v);
        let ext = |v: f64, hi: u32| v.clamp(0.0, f64::from(hi)) as u32;
        let mut x0 = fit.x0.clamp(0, i64::from(w)) as u32;
        let mut y0 = fit.y0.clamp(0, i64::from(h)) as u32;
        let mut x1 = (fit.x0 + i64::from(fit.width)).clamp(0, i64::from(w)) as u32;
        let mut y1 = (fit.y0 + i64::from(fit.height)).clamp(0, i64::from(h)) as u32;
        if shadow.enabled {
            x0 = x0.min(ext((sx - rx).floor(), w));
            x1 = x1.max(ext((sx + rx).ceil(), w));
            y0 = y0.min(ext((sy - ry).floor(), h));
            y1 = y1.max(ext((sy + ry).ceil(), h));
        }
        // Room for the Poisson clone region.
        let m = self.config.poisson.margin_px + 2;
        let rect = PixelRect {
            x0: x0.saturating_sub(m),
            y0: y0.saturating_sub(m),
            x1: (x1 + m).min(w),
            y1: (y1 + m).min(h),
        };
        let mut layer = Layer::empty(rect, target.foot_v);
        // Brighter surroundings, harder shadows.
        let strength = shadow.strength * (ring.mean[0] / 50.0).clamp(0.5, 1.2);
        for y in rect.y0..rect.y1 {
            for x in rect.x0..rect.x1 {
                let i = rect.index(x, y);
                let (px, py) = (i64::from(x) - fit.x0, i64::from(y) - fit.y0);
                if px >= 0 && py >= 0 && px < i64::from(fit.width) && py < i64::from(fit.height) {
                    let j = py as usize * fit.width as usize + px as usize;
                    layer.rgb[i] = colour.data[j];
                    layer.alpha[i] = alpha.data[j];
                    layer.cover[i] = alpha.data[j];
                }
                if shadow.enabled {
                    let dx = (f64::from(x) + 0.5 - sx) / rx;
                    let dy = (f64::from(y) + 0.5 - sy) / ry;
                    let d = dx * dx + dy * dy;
                    if d < 1.0 {
                        layer.shadow[i] = (strength * (1.0 - d).powi(2)) as f32;
                    }
                }
            }
        }
        layer
    }
}

/// The colour and write weight of a layer over a sub-rectangle.
fn crop_layer(layer: &Layer, rect: PixelRect) -> (RgbPlane, Plane) {
    let mut rgb = Vec::with_capacity(rect.area());
    let mut a = Vec::with_capacity(rect.area());
    for y in rect.y0..rect.y1 {
        for x in rect.x0..rect.x1 {
            let i = layer.rect.index(x, y);
            rgb.push(layer.rgb[i]);
            a.push(layer.alpha[i]);
        }
    }
    (
        RgbPlane {
            width: rect.width(),
            height: rect.height(),
            data: rgb,
        },
        Plane {
            width: rect.width(),
            height: rect.height(),
            data: a,
        },
    )
}
