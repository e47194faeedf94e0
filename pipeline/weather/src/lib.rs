//! Physically based weather: depth-aware fog, rain, snow and night, seeded, with per-box transmittance and full provenance.
//!
//! Every effect works in linear light (sRGB decoded through a 256-entry table, encoded through a
//! 4096-entry one) on an 8-bit RGB frame, with a per-pixel [`DepthMap`] built from the best source
//! the frame has (a dense map; else the calibrated ground plane, object foot points and sky; else
//! an assumed camera), recorded as a [`DepthSource`]:
//!
//! - [`Fog`]: Koschmieder's law `I = R t + L (1 - t)`, `t = exp(-beta d)`, `beta = -ln(0.05) / V`,
//!   atmospheric light `L` from the dark channel, optional seeded spatial variation of `beta`, the
//!   transmission smoothed along image edges with a guided filter (as Foggy Cityscapes does).
//! - [`Rain`]: rain extinction `beta = 0.312 R^0.67` km^-1 (Halder et al., ICCV 2019), streaks
//!   from a Marshall-Palmer drop population in the view frustum with Atlas fall speeds, exposure,
//!   wind, defocus and depth occlusion; wet-road darkening with Fresnel reflections on drivable
//!   pixels; optional lens drops.
//! - [`Snow`]: Gunn-Marshall flake population, extinction from its geometric cross-section, flakes
//!   by depth with defocus, accumulation on drivable and pavement pixels.
//! - [`Night`]: exposure and gamma drop, colour shift, Poisson-Gaussian sensor noise, glows around
//!   street lights and around vehicle lights found inside vehicle boxes.
//!
//! Each `apply(image, ctx, seed)` is deterministic (same seed, same bytes; `ChaCha8` streams, no
//! global state), keeps the boxes, returns per-box transmittance and visibility so evaluation can
//! slice by them, and records every parameter (given and derived) for provenance. Effects are
//! single-threaded: the pipeline parallelises frames.

#![allow(
    clippy::many_single_char_names,
    reason = "pixel code names its coordinates and sizes x, y, w, h, as the papers do"
)]

mod atmosphere;
mod color;
mod depth;
mod error;
mod filter;
mod fog;
mod night;
mod noise;
mod particles;
mod rain;
mod scenario;
mod sky;
mod snow;

use image::RgbImage;
use roadsynth_types::BBox;
use serde::{Deserialize, Serialize};

pub use atmosphere::{
    Airlight, CONTRAST_THRESHOLD_LN, beta_from_visibility, estimate_airlight, visibility_from_beta,
};
pub use color::{LinearRgb, decode_lut, encode_lut, linear_to_srgb, luminance, srgb_to_linear};
pub use depth::{
    ASSUMED_BACKDROP_M, DepthMap, DepthSource, Intrinsics, NOMINAL_CAMERA_HEIGHT_M,
    NOMINAL_FOCAL_PER_WIDTH, PixelMask, box_pixel_range,
};
pub use error::WeatherError;
pub use filter::{box_mean, gaussian_blur, guided_filter};
pub use fog::Fog;
pub use night::{Night, NightTint};
pub use rain::{Rain, atlas_fall_speed_m_s, marshall_palmer_per_m3, rain_extinction_per_m};
pub use sky::{SKY_MAX_GRADIENT, SKY_MIN_GREY, estimate_sky};
pub use snow::{Snow, snow_extinction_per_m};

/// What an effect knows about the frame besides its pixels.
#[derive(Debug, Clone, Copy)]
pub struct WeatherContext<'a> {
    /// Depth of every pixel (required; see [`DepthMap`]'s constructors).
    pub depth: &'a DepthMap,
    /// Pinhole intrinsics: depth becomes ray length, and rain/snow take their focal length here
    /// when their parameters give none.
    pub intrinsics: Option<Intrinsics>,
    /// Drivable space (wet road, snow cover).
    pub drivable: Option<&'a PixelMask>,
    /// Pavement and other horizontal non-drivable ground (snow cover).
    pub pavement: Option<&'a PixelMask>,
    /// The frame's annotation boxes: each gets a [`BoxWeather`], in this order.
    pub boxes: &'a [BBox],
    /// Vehicle boxes whose lights glow at night.
    pub lights_in: &'a [BBox],
    /// Whether to return maps that cost extra full-frame work beyond the effect itself (fog's raw
    /// transmission); the image is the same either way.
    pub diagnostic_maps: bool,
}

impl<'a> WeatherContext<'a> {
    pub fn new(depth: &'a DepthMap) -> Self {
        Self {
            depth,
            intrinsics: None,
            drivable: None,
            pavement: None,
            boxes: &[],
            lights_in: &[],
            diagnostic_maps: true,
        }
    }

    /// Without the maps that cost extra work (see [`WeatherContext::diagnostic_maps`]).
    #[must_use]
    pub fn without_diagnostic_maps(mut self) -> Self {
        self.diagnostic_maps = false;
        self
    }

    #[must_use]
    pub fn with_intrinsics(mut self, intrinsics: Intrinsics) -> Self {
        self.intrinsics = Some(intrinsics);
        self
    }

    #[must_use]
    pub fn with_drivable(mut self, drivable: &'a PixelMask) -> Self {
        self.drivable = Some(drivable);
        self
    }

    #[must_use]
    pub fn with_pavement(mut self, pavement: &'a PixelMask) -> Self {
        self.pavement = Some(pavement);
        self
    }

    #[must_use]
    pub fn with_boxes(mut self, boxes: &'a [BBox]) -> Self {
        self.boxes = boxes;
        self
    }

    #[must_use]
    pub fn with_lights_in(mut self, vehicles: &'a [BBox]) -> Self {
        self.lights_in = vehicles;
        self
    }

    /// Every map has the image's size.
    pub fn check(&self, image: &RgbImage) -> Result<(), WeatherError> {
        let (w, h) = image.dimensions();
        self.depth.check(w, h)?;
        if let Some(m) = self.drivable {
            m.check("drivable mask", w, h)?;
        }
        if let Some(m) = self.pavement {
            m.check("pavement mask", w, h)?;
        }
        if let Some(k) = &self.intrinsics
            && !([k.fx, k.fy].iter().all(|f| f.is_finite() && *f > 0.0)
                && k.cx.is_finite()
                && k.cy.is_finite())
        {
            return Err(WeatherError::InvalidDepth(format!(
                "intrinsics {k:?} need positive finite focal lengths and a finite principal point"
            )));
        }
        Ok(())
    }

    /// Focal length in pixels: the given one, else the intrinsics' `fy`, else the nominal camera's.
    pub(crate) fn focal_px(&self, given: Option<f32>) -> (f32, &'static str) {
        if let Some(f) = given {
            (f, "parameter")
        } else if let Some(k) = &self.intrinsics {
            (k.fy as f32, "intrinsics")
        } else {
            (
                (NOMINAL_FOCAL_PER_WIDTH * f64::from(self.depth.width)) as f32,
                "nominal",
            )
        }
    }

    /// Horizon row: the depth map's ground plane, else the intrinsics' `cy`, else mid-height.
    pub(crate) fn horizon_row(&self) -> f32 {
        self.depth
            .ground_plane()
            .map(|(v0, _)| v0)
            .or(self.intrinsics.map(|k| k.cy))
            .unwrap_or(f64::from(self.depth.height) / 2.0) as f32
    }
}

/// What the weather did to one annotated object, added to its annotation so evaluation can slice
/// by it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoxWeather {
    /// Mean transmission `t` over the box's pixels (1 where the effect does not attenuate).
    pub transmittance: f32,
    /// Meteorological visibility at the box, metres (`-ln(0.05) / beta`; infinity, which JSON
    /// writes as null, where the effect does not attenuate).
    pub visibility_m: f32,
    /// Mean linear luminance of the output inside the box, `[0, 1]` (how dark the object is at
    /// night).
    pub luminance: f32,
}

/// A one-channel `f32` map over the frame, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarMap {
    pub width: u32,
    pub height: u32,
    pub data: Vec<f32>,
}

impl ScalarMap {
    pub(crate) fn new(width: usize, height: usize, data: Vec<f32>) -> Self {
        Self {
            width: width as u32,
            height: height as u32,
            data,
        }
    }

    pub fn get(&self, x: u32, y: u32) -> Option<f32> {
        (x < self.width && y < self.height)
            .then(|| self.data.get((y * self.width + x) as usize).copied())
            .flatten()
    }
}

/// Intermediate maps an effect exposes (each where the effect has it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WeatherMaps {
    /// The transmission used: `exp(-beta d)`, smoothed along edges for fog.
    pub transmission: Option<ScalarMap>,
    /// The transmission before smoothing: exactly `exp(-beta * m * distance)` (fog: unless the
    /// context asked for no diagnostic maps).
    pub raw_transmission: Option<ScalarMap>,
    /// Accumulated opacity of rendered particles (rain streaks, snow flakes), before clamping.
    pub particles: Option<ScalarMap>,
}

/// The result of one effect on one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct WeatherOutput {
    pub image: RgbImage,
    /// One per [`WeatherContext::boxes`], in order.
    pub per_box: Vec<BoxWeather>,
    /// Every parameter, given and derived, and the depth's provenance: for the frame's
    /// provenance step.
    pub params: serde_json::Value,
    pub maps: WeatherMaps,
}

/// One weather effect with its parameters, as a scenario names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WeatherEffect {
    Fog(Fog),
    Rain(Rain),
    Snow(Snow),
    Night(Night),
}

impl WeatherEffect {
    pub fn name(&self) -> &'static str {
        match self {
            WeatherEffect::Fog(_) => "fog",
            WeatherEffect::Rain(_) => "rain",
            WeatherEffect::Snow(_) => "snow",
            WeatherEffect::Night(_) => "night",
        }
    }

    pub fn validate(&self) -> Result<(), WeatherError> {
        match self {
            WeatherEffect::Fog(e) => e.validate(),
            WeatherEffect::Rain(e) => e.validate(),
            WeatherEffect::Snow(e) => e.validate(),
            WeatherEffect::Night(e) => e.validate(),
        }
    }

    pub fn apply(
        &self,
        image: &RgbImage,
        ctx: &WeatherContext,
        seed: u64,
    ) -> Result<WeatherOutput, WeatherError> {
        match self {
            WeatherEffect::Fog(e) => e.apply(image, ctx, seed),
            WeatherEffect::Rain(e) => e.apply(image, ctx, seed),
            WeatherEffect::Snow(e) => e.apply(image, ctx, seed),
            WeatherEffect::Night(e) => e.apply(image, ctx, seed),
        }
    }
}

/// The provenance record of one application: the effect's parameters as given, what was derived
/// from them and the frame, the depth's source and the seed.
pub(crate) fn provenance<P: Serialize>(
    operation: &str,
    params: &P,
    derived: &serde_json::Value,
    ctx: &WeatherContext,
    seed: u64,
) -> serde_json::Value {
    serde_json::json!({
        "operation": operation,
        "seed": seed,
        "params": serde_json::to_value(params).unwrap_or(serde_json::Value::Null),
        "derived": derived,
        "depth": ctx.depth.provenance(),
        "intrinsics": ctx.intrinsics,
        "drivable_mask": ctx.drivable.is_some(),
        "pavement_mask": ctx.pavement.is_some(),
        "tool_version": roadsynth_types::TOOL_VERSION,
    })
}
