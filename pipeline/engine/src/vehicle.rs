//! Vehicle appearance edits: repaint vehicles already in a frame, keeping their shape and shading.
//!
//! Per selected vehicle: a mask inside its box (the VOC segmenter's car/bus pixels, `OpenCV`
//! `GrabCut` when there is no segmenter or it finds too little), minus the pixels of nearer objects;
//! then either the classical recolour or masked diffusion image-to-image; then a check that the
//! edited vehicle, segmented again the same way, has the same shape (`IoU` with the original mask).
//! An edit that fails the check is undone. Only mask pixels are ever written.
//!
//! The classical recolour works in `OKLab`, where lightness and chroma are perceptually even. Body
//! pixels are the mask's pixels that are none of: dark and grey (tyres, windows, grille), very
//! bright and grey (specular highlights, kept as they are), saturated red or amber (lights, unless
//! the body itself is that colour). Each body pixel keeps its lightness relative to the body's
//! mean (its shading: a multiplicative ratio, as diffuse light scales albedo), raised to a
//! finish-dependent contrast, on the target colour's lightness; hue and chroma come from the target
//! colour, plus part of the pixel's own chroma deviation (reflections of the sky and the road).

use image::{GrayImage, Luma, RgbImage};
use opencv::core::{Mat, Rect, Vec3b};
use opencv::imgproc;
use opencv::prelude::*;
use palette::{FromColor, LinSrgb, Oklab, Srgb};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use roadsynth_diffusion::{InpaintModel, InpaintRequest, ObjectRegion, SchedulerKind};
use roadsynth_models::{VOC_BUS, VOC_CAR, VOC_MOTORBIKE, VehicleSegmenter};

/// PASCAL VOC's `train` (trams and light rail look like it).
const VOC_TRAIN: u32 = 19;
use roadsynth_scenario::{Colour, EditBackend, EditVehicles, Finish};
use roadsynth_types::{Annotation, ProvenanceStep, TOOL_VERSION};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::EngineError;
use crate::diffusion::object_seed;
use crate::error::CvContext;
use crate::frame::{ExistingObjects, FrameInput, SemanticObjects};
use crate::raster::PixelRect;

/// Thresholds that sort a vehicle's pixels (`OKLab`: L `0..1`, chroma about `0..0.32`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BodyThresholds {
    /// Specular highlight: lightness above this and above the vehicle's median by `specular_rel`,
    /// chroma below `specular_chroma`.
    pub specular_l: f32,
    pub specular_rel: f32,
    pub specular_chroma: f32,
    /// Tyres, windows, grille: chroma below `dark_chroma` and lightness below both `dark_l` and
    /// the vehicle's median minus `dark_rel`.
    pub dark_l: f32,
    pub dark_rel: f32,
    pub dark_chroma: f32,
    /// Lights: chroma above `light_chroma` with an `OKLab` hue (degrees) in `light_hue` (red to
    /// amber).
    pub light_chroma: f32,
    pub light_hue: [f32; 2],
}

impl Default for BodyThresholds {
    fn default() -> Self {
        Self {
            specular_l: 0.88,
            specular_rel: 0.2,
            specular_chroma: 0.08,
            dark_l: 0.35,
            dark_rel: 0.15,
            dark_chroma: 0.06,
            light_chroma: 0.1,
            light_hue: [-15.0, 80.0],
        }
    }
}

/// Masked diffusion image-to-image for vehicle edits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffusionEditConfig {
    /// `{colour}`, `{finish}` and `{class}` are replaced.
    pub prompt: String,
    pub negative_prompt: String,
    pub steps: usize,
    /// Image-to-image strength in (0, 1]: how much of the vehicle is regenerated.
    pub strength: f32,
    pub guidance_scale: f32,
    pub scheduler: SchedulerKind,
    pub context_margin: f64,
}

impl Default for DiffusionEditConfig {
    fn default() -> Self {
        Self {
            prompt: "a {colour} {class} with {finish} paint, photo".into(),
            negative_prompt: "cartoon, drawing, blurry".into(),
            steps: 20,
            strength: 0.55,
            guidance_scale: 7.5,
            scheduler: SchedulerKind::default(),
            context_margin: 0.3,
        }
    }
}

/// Settings of [`VehicleEditor`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VehicleEditConfig {
    /// Context around the box given to the segmenter and `GrabCut`, as a fraction of its sides.
    pub mask_margin: f64,
    /// The segmenter's mask must cover this fraction of the box, else `GrabCut` is used.
    pub min_mask_fraction: f64,
    pub grabcut_iterations: i32,
    /// The edited vehicle, segmented again, must overlap its original mask by this much.
    pub min_resegmented_iou: f64,
    /// Body pixels must be at least this fraction of the mask (else there is no paint to change).
    pub min_body_fraction: f64,
    /// Vehicles whose median `OKLab` lightness is below this (black and dark grey paint, about
    /// sRGB 40) are not repainted: their windows, tyres and body cannot be told apart by colour,
    /// and repainting them lighter paints the windows too.
    pub min_paint_lightness: f32,
    pub body: BodyThresholds,
    pub semantic_objects: SemanticObjects,
}

impl Default for VehicleEditConfig {
    fn default() -> Self {
        Self {
            mask_margin: 0.15,
            min_mask_fraction: 0.2,
            grabcut_iterations: 5,
            min_resegmented_iou: 0.9,
            min_body_fraction: 0.2,
            min_paint_lightness: 0.28,
            body: BodyThresholds::default(),
            semantic_objects: SemanticObjects::default(),
        }
    }
}

/// Where a vehicle's mask came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskSource {
    Segmenter,
    GrabCut,
}

/// What became of one selected vehicle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VehicleEditStatus {
    Edited,
    /// The edit changed the vehicle's segmented shape too much; undone.
    RejectedGeometry,
    /// Too few paintable body pixels, or paint too dark to tell from windows and tyres.
    NoBody,
    /// No usable mask.
    NoMask,
}

/// One selected vehicle's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VehicleEditReport {
    pub annotation_index: usize,
    pub class: String,
    pub bbox: [f64; 4],
    pub status: VehicleEditStatus,
    pub colour: String,
    pub srgb: [u8; 3],
    pub finish: String,
    pub backend: String,
    pub mask_source: Option<MaskSource>,
    pub mask_px: usize,
    pub body_px: usize,
    /// Median `OKLab` lightness of the vehicle's mask (classical backend).
    pub paint_lightness: Option<f32>,
    /// Fraction of the box covered by nearer objects' boxes (the selection criterion).
    pub occlusion: f64,
    pub resegmented_iou: Option<f64>,
    /// Colours tried: the drawn one, then others while the shape check failed.
    pub attempts: usize,
}

/// The result of one `edit_vehicles` operation on a frame.
#[derive(Debug, Clone)]
pub struct EditOutcome {
    pub image: RgbImage,
    /// The input annotations; edited vehicles carry an `appearance_edit` attribute.
    pub annotations: Vec<Annotation>,
    /// 255 on the pixels written, 0 where the image is the input's bit for bit.
    pub edit_mask: GrayImage,
    pub reports: Vec<VehicleEditReport>,
    pub step: ProvenanceStep,
    pub edited: u64,
}

/// Repainted pixels over a vehicle's box rectangle, and which of them are written.
type Repaint = (Vec<[u8; 3]>, Vec<bool>);

/// A vehicle's mask over its box rectangle.
#[derive(Debug, Clone)]
struct VehicleMask {
    rect: PixelRect,
    bits: Vec<bool>,
    source: MaskSource,
}

impl VehicleMask {
    fn count(&self) -> usize {
        self.bits.iter().filter(|&&b| b).count()
    }

    fn iou(&self, other: &VehicleMask) -> f64 {
        let inter = self
            .bits
            .iter()
            .zip(&other.bits)
            .filter(|(a, b)| **a && **b)
            .count();
        let union = self
            .bits
            .iter()
            .zip(&other.bits)
            .filter(|(a, b)| **a || **b)
            .count();
        if union == 0 {
            0.0
        } else {
            inter as f64 / union as f64
        }
    }
}

/// Repaints vehicles (see the module documentation).
#[derive(Debug)]
pub struct VehicleEditor {
    config: VehicleEditConfig,
    segmenter: Option<VehicleSegmenter>,
    diffusion: Option<(InpaintModel, DiffusionEditConfig)>,
}

fn finish_name(f: Finish) -> &'static str {
    match f {
        Finish::Matte => "matte",
        Finish::Metallic => "metallic",
        Finish::Gloss => "gloss",
    }
}

/// Keeps the largest 4-connected component of a mask.
fn largest_component(bits: &mut [bool], width: usize) {
    let n = bits.len();
    let mut label = vec![0u32; n];
    let mut best = (0u32, 0usize);
    let mut next = 0u32;
    let mut stack = Vec::new();
    for start in 0..n {
        if !bits[start] || label[start] != 0 {
            continue;
        }
        next += 1;
        let mut size = 0usize;
        label[start] = next;
        stack.push(start);
        while let Some(i) = stack.pop() {
            size += 1;
            let (x, y) = (i % width, i / width);
            let mut visit = |j: usize| {
                if bits[j] && label[j] == 0 {
                    label[j] = next;
                    stack.push(j);
                }
            };
            if x > 0 {
                visit(i - 1);
            }
            if x + 1 < width {
                visit(i + 1);
            }
            if y > 0 {
                visit(i - width);
            }
            if i + width < n {
                visit(i + width);
            }
        }
        if size > best.1 {
            best = (next, size);
        }
    }
    for (b, l) in bits.iter_mut().zip(&label) {
        *b = *b && *l == best.0;
    }
}

fn to_oklab(p: [u8; 3]) -> [f32; 3] {
    let lin: LinSrgb<f32> = Srgb::new(p[0], p[1], p[2]).into_linear();
    let o = Oklab::from_color(lin);
    [o.l, o.a, o.b]
}

/// sRGB bytes of an `OKLab` colour, its chroma reduced until it fits the sRGB gamut.
fn from_oklab(l: f32, a: f32, b: f32) -> [u8; 3] {
    let in_gamut = |c: &LinSrgb<f32>| {
        [c.red, c.green, c.blue]
            .iter()
            .all(|v| (-1e-4..=1.0001).contains(v))
    };
    let mut lin = LinSrgb::from_color(Oklab::new(l, a, b));
    if !in_gamut(&lin) {
        let (mut lo, mut hi) = (0.0f32, 1.0f32);
        for _ in 0..8 {
            let mid = f32::midpoint(lo, hi);
            if in_gamut(&LinSrgb::from_color(Oklab::new(l, a * mid, b * mid))) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lin = LinSrgb::from_color(Oklab::new(l, a * lo, b * lo));
    }
    let clamped = LinSrgb::new(
        lin.red.clamp(0.0, 1.0),
        lin.green.clamp(0.0, 1.0),
        lin.blue.clamp(0.0, 1.0),
    );
    let s: Srgb<u8> = Srgb::from_linear(clamped);
    [s.red, s.green, s.blue]
}

fn hue_deg(a: f32, b: f32) -> f32 {
    b.atan2(a).to_degrees()
}

/// Which pixels of a vehicle are paint, and the paint's mean lightness and colour.
struct Body {
    bits: Vec<bool>,
    /// Median lightness of the whole vehicle mask.
    median_l: f32,
    mean_l: f32,
    mean_a: f32,
    mean_b: f32,
}

fn body_of(lab: &[[f32; 3]], mask: &[bool], t: &BodyThresholds, finish: Finish) -> Body {
    let mut ls: Vec<f32> = lab
        .iter()
        .zip(mask)
        .filter(|(_, m)| **m)
        .map(|(p, _)| p[0])
        .collect();
    let median = if ls.is_empty() {
        0.5
    } else {
        let mid = ls.len() / 2;
        *ls.select_nth_unstable_by(mid, f32::total_cmp).1
    };
    let chroma = |p: &[f32; 3]| p[1].hypot(p[2]);
    let specular = |p: &[f32; 3]| {
        p[0] > t.specular_l.max(median + t.specular_rel) && chroma(p) < t.specular_chroma
    };
    let dark = |p: &[f32; 3]| chroma(p) < t.dark_chroma && p[0] < t.dark_l.min(median - t.dark_rel);
    let in_light_hue = |a: f32, b: f32| {
        let h = hue_deg(a, b);
        h >= t.light_hue[0] && h <= t.light_hue[1]
    };
    // The paint's colour before excluding lights: if the body is itself red or amber, lights
    // cannot be told from it by colour, and are repainted with it.
    let (mut sa, mut sb, mut n) = (0.0f32, 0.0f32, 0usize);
    for (p, &m) in lab.iter().zip(mask) {
        if m && !specular(p) && !dark(p) {
            sa += p[1];
            sb += p[2];
            n += 1;
        }
    }
    let (ba, bb) = if n > 0 {
        (sa / n as f32, sb / n as f32)
    } else {
        (0.0, 0.0)
    };
    let body_is_light_coloured = ba.hypot(bb) > 0.06 && in_light_hue(ba, bb);
    let light = |p: &[f32; 3]| {
        !body_is_light_coloured && chroma(p) > t.light_chroma && in_light_hue(p[1], p[2])
    };
    let bits: Vec<bool> = lab
        .iter()
        .zip(mask)
        .map(|(p, &m)| {
            // A matte finish has no highlights to keep: they are repainted (and dulled).
            m && !dark(p) && !light(p) && (finish == Finish::Matte || !specular(p))
        })
        .collect();
    let (mut sl, mut sa, mut sb, mut n) = (0.0f32, 0.0f32, 0.0f32, 0usize);
    for (p, &b) in lab.iter().zip(&bits) {
        if b {
            sl += p[0];
            sa += p[1];
            sb += p[2];
            n += 1;
        }
    }
    let k = 1.0 / n.max(1) as f32;
    Body {
        bits,
        median_l: median,
        mean_l: sl * k,
        mean_a: sa * k,
        mean_b: sb * k,
    }
}

/// The repainted colour of one body pixel.
fn repaint(p: [f32; 3], body: &Body, target: [f32; 3], finish: Finish) -> [u8; 3] {
    // Shading contrast and how much of the environment's reflection shows, by finish.
    let (gamma, reflect) = match finish {
        Finish::Matte => (0.8f32, 0.15f32),
        Finish::Gloss => (1.0, 0.5),
        Finish::Metallic => (1.3, 0.35),
    };
    // Shading: the pixel's lightness deviation from the body's mean, scaled by the ratio of the
    // target's to the body's lightness (shading is multiplicative) but by at most 1.5 either
    // way, so that noise on a dark body does not turn into speckle on a light one.
    let gain = (target[0] / body.mean_l.max(1e-3)).clamp(1.0 / 1.5, 1.5) * gamma;
    let l = (target[0] + gain * (p[0] - body.mean_l)).clamp(0.02, 0.98);
    // Chroma follows lightness down into the shadows, not up into the highlights.
    let shade = (l / target[0].max(1e-3)).clamp(0.3, 1.0);
    let a = target[1] * shade + reflect * (p[1] - body.mean_a);
    let b = target[2] * shade + reflect * (p[2] - body.mean_b);
    from_oklab(l, a, b)
}

impl VehicleEditor {
    pub fn new(
        config: VehicleEditConfig,
        segmenter: Option<VehicleSegmenter>,
    ) -> Result<Self, EngineError> {
        let unit = 0.0..=1.0;
        let ok = unit.contains(&config.min_mask_fraction)
            && unit.contains(&config.min_resegmented_iou)
            && unit.contains(&config.min_body_fraction)
            && config.mask_margin >= 0.0
            && config.grabcut_iterations > 0;
        if !ok {
            return Err(EngineError::Config(format!(
                "vehicle edit settings out of range: {config:?}"
            )));
        }
        Ok(Self {
            config,
            segmenter,
            diffusion: None,
        })
    }

    /// The same editor, with a diffusion model for `backend: diffusion` operations.
    #[must_use]
    pub fn with_diffusion(mut self, model: InpaintModel, config: DiffusionEditConfig) -> Self {
        self.diffusion = Some((model, config));
        self
    }

    pub fn config(&self) -> &VehicleEditConfig {
        &self.config
    }

    /// The annotations an operation may edit, with the fraction of each box covered by the boxes
    /// of nearer objects: the classes asked for (ignoring case), tall enough, visible enough.
    pub fn eligible(annotations: &[Annotation], settings: &EditVehicles) -> Vec<(usize, f64)> {
        annotations
            .iter()
            .enumerate()
            .filter(|(_, a)| {
                !a.ignore
                    && !a.crowd
                    && settings
                        .classes
                        .iter()
                        .any(|c| c.eq_ignore_ascii_case(&a.class))
                    && a.bbox.height() >= f64::from(settings.min_height_px)
            })
            .map(|(i, _)| (i, occlusion(annotations, i)))
            .filter(|(_, occ)| *occ <= settings.max_occlusion)
            .collect()
    }

    /// The vehicles a variant edits: `fraction` of the eligible ones (the whole part, plus one
    /// more with the probability of the fractional part), drawn by `seed`.
    pub fn select(annotations: &[Annotation], settings: &EditVehicles, seed: u64) -> Vec<usize> {
        let mut eligible: Vec<usize> = Self::eligible(annotations, settings)
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        eligible.shuffle(&mut rng);
        let want = settings.fraction.clamp(0.0, 1.0) * eligible.len() as f64;
        let mut k = want.floor() as usize;
        if rng.random::<f64>() < want - want.floor() {
            k += 1;
        }
        eligible.truncate(k.min(eligible.len()));
        eligible.sort_unstable();
        eligible
    }

    /// Applies an `edit_vehicles` operation to a frame. Vehicle `i`'s colour is drawn from
    /// `ChaCha8Rng::seed_from_u64(seed)` on stream `i + 1`; when the repainted vehicle fails the
    /// shape check, the other colours are tried in an order drawn from the same stream.
    pub fn edit(
        &mut self,
        frame: FrameInput<'_>,
        settings: &EditVehicles,
        scenario: &str,
        seed: u64,
    ) -> Result<EditOutcome, EngineError> {
        frame.validate()?;
        let (w, h) = frame.image.dimensions();
        let selected = Self::select(frame.annotations, settings, seed);
        let occlusions: Vec<(usize, f64)> = Self::eligible(frame.annotations, settings);
        let mut order = selected.clone();
        // Far to near: where repainted pixels of two vehicles meet, the nearer one's win.
        order.sort_by(|&a, &b| {
            frame.annotations[a]
                .bbox
                .y1
                .total_cmp(&frame.annotations[b].bbox.y1)
        });
        let semantic = self.config.semantic_objects.clone();
        let mut existing = ExistingObjects::new(frame, &semantic);
        let mut out = frame.image.clone();
        let mut edit_mask = GrayImage::new(w, h);
        let mut annotations = frame.annotations.to_vec();
        let mut reports = Vec::new();
        for index in order {
            let a = &frame.annotations[index];
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(index as u64 + 1);
            if settings.appearance.colours.is_empty() {
                return Err(EngineError::Config("edit_vehicles has no colours".into()));
            }
            let colour_index = rng.random_range(0..settings.appearance.colours.len());
            let colour: &Colour = &settings.appearance.colours[colour_index];
            let finish = settings.appearance.finish;
            let backend = match settings.backend {
                EditBackend::Classical => "classical",
                EditBackend::Diffusion => "diffusion",
            };
            let mut report = VehicleEditReport {
                annotation_index: index,
                class: a.class.clone(),
                bbox: [a.bbox.x0, a.bbox.y0, a.bbox.x1, a.bbox.y1],
                status: VehicleEditStatus::NoMask,
                colour: colour.name.clone(),
                srgb: colour.srgb,
                finish: finish_name(finish).into(),
                backend: backend.into(),
                mask_source: None,
                mask_px: 0,
                body_px: 0,
                paint_lightness: None,
                occlusion: occlusions
                    .iter()
                    .find(|(i, _)| *i == index)
                    .map_or(0.0, |(_, o)| *o),
                resegmented_iou: None,
                attempts: 0,
            };
            // Pixels of nearer objects are never the vehicle's.
            let rect = PixelRect::covering(&a.bbox, 0.0, w, h);
            if rect.width() < 4 || rect.height() < 4 {
                reports.push(report);
                continue;
            }
            let mut exclude = vec![false; rect.area()];
            for other in existing.nearer_than(a.bbox.y1, &rect) {
                if other == index {
                    continue;
                }
                if let Some(px) = existing.pixels(other) {
                    for y in rect.y0..rect.y1 {
                        for x in rect.x0..rect.x1 {
                            if px.contains(x, y) {
                                exclude[rect.index(x, y)] = true;
                            }
                        }
                    }
                }
            }
            let Some(mask) =
                self.vehicle_mask(frame.image, rect, &a.class, &exclude, None, seed)?
            else {
                reports.push(report);
                continue;
            };
            report.mask_source = Some(mask.source);
            report.mask_px = mask.count();
            // The drawn colour first; if the repainted vehicle no longer segments as the same
            // shape, the other colours in a seeded order (a segmenter that cannot see a yellow
            // car in one frame may see a blue one). Diffusion gets one try.
            let mut candidates: Vec<usize> = (0..settings.appearance.colours.len())
                .filter(|&c| c != colour_index)
                .collect();
            candidates.shuffle(&mut rng);
            candidates.insert(0, colour_index);
            if settings.backend == EditBackend::Diffusion {
                candidates.truncate(1);
            }
            for (attempt, &c) in candidates.iter().enumerate() {
                let colour = &settings.appearance.colours[c];
                report.colour.clone_from(&colour.name);
                report.srgb = colour.srgb;
                report.attempts = attempt + 1;
                let edited = match settings.backend {
                    EditBackend::Classical => {
                        let (edited, lightness) =
                            self.recolour(frame.image, &mask, colour.srgb, finish);
                        report.paint_lightness = Some(lightness);
                        edited
                    }
                    EditBackend::Diffusion => {
                        self.diffuse(frame.image, &mask, colour, finish, &a.class, seed, index)?
                    }
                };
                let Some((pixels, written)) = edited else {
                    report.status = VehicleEditStatus::NoBody;
                    break;
                };
                report.body_px = written.iter().filter(|&&b| b).count();
                // The check: segment the edited vehicle again, the same way.
                let mut trial = frame.image.clone();
                write_pixels(&mut trial, rect, &pixels, &written);
                let again =
                    self.vehicle_mask(&trial, rect, &a.class, &exclude, Some(mask.source), seed)?;
                let iou = again.as_ref().map_or(0.0, |m| m.iou(&mask));
                report.resegmented_iou = Some(iou);
                if iou < self.config.min_resegmented_iou {
                    report.status = VehicleEditStatus::RejectedGeometry;
                    continue;
                }
                write_pixels(&mut out, rect, &pixels, &written);
                for y in rect.y0..rect.y1 {
                    for x in rect.x0..rect.x1 {
                        if written[rect.index(x, y)] {
                            edit_mask.put_pixel(x, y, Luma([255]));
                        }
                    }
                }
                report.status = VehicleEditStatus::Edited;
                annotations[index].attributes.insert(
                    "appearance_edit".into(),
                    json!({
                        "colour": colour.name,
                        "srgb": colour.srgb,
                        "finish": finish_name(finish),
                        "backend": backend,
                        "mask_source": mask.source,
                        "resegmented_iou": iou,
                        "scenario": scenario,
                        "seed": seed,
                    }),
                );
                break;
            }
            reports.push(report);
        }
        // Whatever happened above, pixels outside the edit mask are the input's.
        for (x, y, m) in edit_mask.enumerate_pixels() {
            if m.0[0] == 0 {
                out.put_pixel(x, y, *frame.image.get_pixel(x, y));
            }
        }
        reports.sort_by_key(|r| r.annotation_index);
        let edited = reports
            .iter()
            .filter(|r| r.status == VehicleEditStatus::Edited)
            .count() as u64;
        let step = ProvenanceStep {
            operation: "edit_vehicles".into(),
            scenario: Some(scenario.to_string()),
            seed: Some(seed),
            params: json!({
                "classes": settings.classes,
                "min_height_px": settings.min_height_px,
                "max_occlusion": settings.max_occlusion,
                "fraction": settings.fraction,
                "finish": finish_name(settings.appearance.finish),
                "colours": settings.appearance.colours.iter().map(|c| json!({"name": c.name, "srgb": c.srgb})).collect::<Vec<_>>(),
                "backend": match settings.backend { EditBackend::Classical => "classical", EditBackend::Diffusion => "diffusion" },
                "segmenter": self.segmenter.as_ref().map(|s| s.name().to_string()),
                "diffusion": self.diffusion.as_ref().map(|(_, c)| c),
                "config": self.config,
                "vehicles": reports,
            }),
            tool_version: TOOL_VERSION.to_string(),
        };
        Ok(EditOutcome {
            image: out,
            annotations,
            edit_mask,
            reports,
            step,
            edited,
        })
    }

    /// The vehicle's mask over `rect` (its box): the segmenter's pixels of the vehicle's VOC
    /// classes, else `GrabCut`; minus `exclude`; its largest component. `only` forces one source
    /// (the re-segmentation check uses the original's).
    fn vehicle_mask(
        &mut self,
        image: &RgbImage,
        rect: PixelRect,
        class: &str,
        exclude: &[bool],
        only: Option<MaskSource>,
        seed: u64,
    ) -> Result<Option<VehicleMask>, EngineError> {
        let (w, h) = image.dimensions();
        let mx = (self.config.mask_margin * f64::from(rect.width())).round() as u32;
        let my = (self.config.mask_margin * f64::from(rect.height())).round() as u32;
        let crop = PixelRect {
            x0: rect.x0.saturating_sub(mx),
            y0: rect.y0.saturating_sub(my),
            x1: (rect.x1 + mx).min(w),
            y1: (rect.y1 + my).min(h),
        };
        let min_px = (self.config.min_mask_fraction * rect.area() as f64) as usize;
        let finish = |mut bits: Vec<bool>, source| {
            for (b, e) in bits.iter_mut().zip(exclude) {
                *b = *b && !*e;
            }
            largest_component(&mut bits, rect.width() as usize);
            VehicleMask { rect, bits, source }
        };
        if only != Some(MaskSource::GrabCut)
            && let Some(seg) = self.segmenter.as_mut()
        {
            let lower = class.to_lowercase();
            // Cars, vans, buses and trams: the segmenter confuses these classes with each other
            // (a van repainted red reads as a bus), which changes no geometry.
            let classes: &[u32] = if lower.contains("motor") {
                &[VOC_MOTORBIKE]
            } else {
                &[VOC_CAR, VOC_BUS, VOC_TRAIN]
            };
            let m = seg.segment_classes(image, [crop.x0, crop.y0, crop.x1, crop.y1], classes)?;
            let mut bits = Vec::with_capacity(rect.area());
            for y in rect.y0..rect.y1 {
                for x in rect.x0..rect.x1 {
                    bits.push(m.get_pixel(x - crop.x0, y - crop.y0).0[0] > 0);
                }
            }
            let mask = finish(bits, MaskSource::Segmenter);
            if mask.count() >= min_px.max(1) || only == Some(MaskSource::Segmenter) {
                return Ok(Some(mask));
            }
        }
        // GrabCut: the box is "probably foreground", the context around it background.
        let bgr: Vec<Vec3b> = (crop.y0..crop.y1)
            .flat_map(|y| (crop.x0..crop.x1).map(move |x| (x, y)))
            .map(|(x, y)| {
                let p = image.get_pixel(x, y).0;
                Vec3b::from([p[2], p[1], p[0]])
            })
            .collect();
        let img = Mat::new_rows_cols_with_data(crop.height() as i32, crop.width() as i32, &bgr)
            .cv("GrabCut image")?
            .try_clone()
            .cv("GrabCut image")?;
        let mut gc = Mat::default();
        let mut bgd = Mat::default();
        let mut fgd = Mat::default();
        let inner = Rect::new(
            (rect.x0 - crop.x0) as i32,
            (rect.y0 - crop.y0) as i32,
            rect.width() as i32,
            rect.height() as i32,
        );
        // GrabCut seeds k-means from OpenCV's thread RNG: fix it so masks repeat.
        opencv::core::set_rng_seed((seed & 0x7fff_ffff) as i32).cv("GrabCut seed")?;
        imgproc::grab_cut(
            &img,
            &mut gc,
            inner,
            &mut bgd,
            &mut fgd,
            self.config.grabcut_iterations,
            imgproc::GC_INIT_WITH_RECT,
        )
        .cv("GrabCut")?;
        let labels = gc.data_typed::<u8>().cv("GrabCut mask")?;
        let cw = crop.width() as usize;
        let mut bits = Vec::with_capacity(rect.area());
        for y in rect.y0..rect.y1 {
            for x in rect.x0..rect.x1 {
                let v = i32::from(labels[(y - crop.y0) as usize * cw + (x - crop.x0) as usize]);
                bits.push(v == imgproc::GC_FGD || v == imgproc::GC_PR_FGD);
            }
        }
        let mask = finish(bits, MaskSource::GrabCut);
        Ok((mask.count() >= min_px.max(1) || only.is_some()).then_some(mask))
    }

    /// The classical recolour of a vehicle: new pixels over its rect and which were written (none
    /// when it has no paintable body), and the median lightness of its mask.
    fn recolour(
        &self,
        image: &RgbImage,
        mask: &VehicleMask,
        target: [u8; 3],
        finish: Finish,
    ) -> (Option<Repaint>, f32) {
        let rect = mask.rect;
        let original: Vec<[u8; 3]> = (rect.y0..rect.y1)
            .flat_map(|y| (rect.x0..rect.x1).map(move |x| (x, y)))
            .map(|(x, y)| image.get_pixel(x, y).0)
            .collect();
        let lab: Vec<[f32; 3]> = original
            .iter()
            .zip(&mask.bits)
            .map(|(p, &m)| if m { to_oklab(*p) } else { [0.0; 3] })
            .collect();
        let body = body_of(&lab, &mask.bits, &self.config.body, finish);
        let body_px = body.bits.iter().filter(|&&b| b).count();
        if body.median_l < self.config.min_paint_lightness
            || body_px == 0
            || (body_px as f64) < self.config.min_body_fraction * mask.count() as f64
        {
            return (None, body.median_l);
        }
        let t = to_oklab(target);
        let width = rect.width() as usize;
        let mut pixels = original.clone();
        for (i, p) in pixels.iter_mut().enumerate() {
            if !body.bits[i] {
                continue;
            }
            let new = repaint(lab[i], &body, t, finish);
            // On the mask's outline, half and half: the outline pixel mixes paint and
            // background already.
            let (x, y) = (i % width, i / width);
            let outline = x == 0
                || y == 0
                || x + 1 == width
                || i + width >= mask.bits.len()
                || !mask.bits[i - 1]
                || !mask.bits[i + 1]
                || !mask.bits[i - width]
                || !mask.bits[i + width];
            *p = if outline {
                [0, 1, 2]
                    .map(|c| ((u16::from(new[c]) + u16::from(original[i][c])).div_ceil(2)) as u8)
            } else {
                new
            };
        }
        let median = body.median_l;
        (Some((pixels, body.bits)), median)
    }

    /// Masked diffusion image-to-image over the vehicle's mask.
    #[allow(clippy::too_many_arguments)]
    fn diffuse(
        &mut self,
        image: &RgbImage,
        mask: &VehicleMask,
        colour: &Colour,
        finish: Finish,
        class: &str,
        seed: u64,
        index: usize,
    ) -> Result<Option<Repaint>, EngineError> {
        let Some((model, cfg)) = self.diffusion.as_mut() else {
            return Err(EngineError::Config(
                "edit_vehicles asks for the diffusion backend, but no diffusion model was given"
                    .into(),
            ));
        };
        let (w, h) = image.dimensions();
        let rect = mask.rect;
        let frame_mask = GrayImage::from_fn(w, h, |x, y| {
            let inside = x >= rect.x0
                && x < rect.x1
                && y >= rect.y0
                && y < rect.y1
                && mask.bits[rect.index(x, y)];
            Luma([if inside { 255 } else { 0 }])
        });
        let prompt = cfg
            .prompt
            .replace("{colour}", &colour.name)
            .replace("{finish}", finish_name(finish))
            .replace("{class}", &class.to_lowercase());
        let mut request = InpaintRequest::new(
            image,
            vec![ObjectRegion {
                bbox: [
                    f64::from(rect.x0),
                    f64::from(rect.y0),
                    f64::from(rect.x1),
                    f64::from(rect.y1),
                ],
                mask: Some(frame_mask),
                prompt: None,
            }],
            prompt,
        );
        request.negative_prompt.clone_from(&cfg.negative_prompt);
        request.steps = cfg.steps;
        request.strength = cfg.strength;
        request.guidance_scale = cfg.guidance_scale;
        request.scheduler = cfg.scheduler;
        request.context_margin = cfg.context_margin;
        request.feather = 0;
        request.seed = object_seed(seed, index as u32);
        let result = model.inpaint(&request)?;
        // Only the vehicle's own pixels are taken; the feather ring outside it is not.
        let pixels: Vec<[u8; 3]> = (rect.y0..rect.y1)
            .flat_map(|y| (rect.x0..rect.x1).map(move |x| (x, y)))
            .map(|(x, y)| result.image.get_pixel(x, y).0)
            .collect();
        Ok(Some((pixels, mask.bits.clone())))
    }
}

/// Fraction of annotation `i`'s box covered by the boxes of objects in front of it (box bottom
/// lower in the image), counted on the box's pixel grid so overlapping occluders count once.
fn occlusion(annotations: &[Annotation], i: usize) -> f64 {
    let b = annotations[i].bbox;
    let nearer: Vec<_> = annotations
        .iter()
        .enumerate()
        .filter(|(j, a)| *j != i && !a.ignore && a.bbox.y1 > b.y1 && a.bbox.intersection(&b) > 0.0)
        .map(|(_, a)| a.bbox)
        .collect();
    if nearer.is_empty() || b.area() <= 0.0 {
        return 0.0;
    }
    let (w, h) = (
        b.width().ceil().max(1.0) as usize,
        b.height().ceil().max(1.0) as usize,
    );
    let mut covered = 0usize;
    for y in 0..h {
        for x in 0..w {
            let (px, py) = (b.x0 + x as f64 + 0.5, b.y0 + y as f64 + 0.5);
            if nearer
                .iter()
                .any(|n| px >= n.x0 && px < n.x1 && py >= n.y0 && py < n.y1)
            {
                covered += 1;
            }
        }
    }
    covered as f64 / (w * h) as f64
}

fn write_pixels(image: &mut RgbImage, rect: PixelRect, pixels: &[[u8; 3]], written: &[bool]) {
    for y in rect.y0..rect.y1 {
        for x in rect.x0..rect.x1 {
            let i = rect.index(x, y);
            if written[i] {
                image.put_pixel(x, y, image::Rgb(pixels[i]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roadsynth_types::BBox;

    #[test]
    fn voc_train_is_the_train_class() {
        use roadsynth_models::VOC_CLASSES;
        assert_eq!(VOC_CLASSES[VOC_TRAIN as usize], "train");
    }

    #[test]
    fn oklab_round_trip_and_gamut_clip() {
        for p in [
            [200u8, 30, 40],
            [10, 120, 240],
            [128, 128, 128],
            [255, 255, 255],
        ] {
            let o = to_oklab(p);
            let back = from_oklab(o[0], o[1], o[2]);
            for c in 0..3 {
                assert!(back[c].abs_diff(p[c]) <= 1, "{p:?} -> {back:?}");
            }
        }
        // Far outside the gamut: chroma is reduced, lightness kept roughly.
        let q = from_oklab(0.6, 0.5, 0.5);
        assert!(to_oklab(q)[0] > 0.5);
    }

    #[test]
    fn repaint_keeps_shading_order_and_takes_the_hue() {
        // A grey car body with a lit and a shaded pixel, repainted red.
        let lab = [
            to_oklab([150, 150, 150]),
            to_oklab([90, 90, 90]),
            to_oklab([20, 20, 20]),
        ];
        let mask = [true, true, true];
        let body = body_of(&lab, &mask, &BodyThresholds::default(), Finish::Gloss);
        assert_eq!(
            body.bits,
            vec![true, true, false],
            "the near-black tyre is kept"
        );
        let red = to_oklab([200, 20, 30]);
        let lit = repaint(lab[0], &body, red, Finish::Gloss);
        let shaded = repaint(lab[1], &body, red, Finish::Gloss);
        assert!(lit[0] > shaded[0], "{lit:?} vs {shaded:?}");
        assert!(lit[0] > lit[1] + 60 && lit[0] > lit[2] + 60, "red: {lit:?}");
    }

    #[test]
    fn occlusion_counts_overlapping_occluders_once() {
        let mut car = Annotation::real("car", BBox::new(0.0, 0.0, 10.0, 10.0));
        car.bbox = BBox::new(0.0, 0.0, 10.0, 10.0);
        let p1 = Annotation::real("pedestrian", BBox::new(0.0, 0.0, 5.0, 12.0));
        let p2 = Annotation::real("pedestrian", BBox::new(2.0, 0.0, 5.0, 12.0));
        let behind = Annotation::real("car", BBox::new(5.0, 0.0, 10.0, 8.0));
        let all = [car, p1, p2, behind];
        assert!((occlusion(&all, 0) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn largest_component_drops_islands() {
        let mut bits = vec![
            true, true, false, false, //
            true, false, false, true, //
            false, false, false, false,
        ];
        largest_component(&mut bits, 4);
        assert_eq!(bits.iter().filter(|&&b| b).count(), 3);
        assert!(!bits[7]);
    }
}
