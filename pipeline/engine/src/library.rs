//! Exemplars: the asset bank's cut-outs decoded once, the class substitution table, and the choice
//! of a cut-out for a planned box.

use std::collections::BTreeMap;
use std::path::Path;

use image::RgbaImage;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use roadsynth_assets::{AssetBank, Lighting};
use roadsynth_placement::PlanRow;
use roadsynth_types::BBox;
use serde::{Deserialize, Serialize};

use crate::EngineError;

/// One cut-out, decoded, with the cues the choice uses.
#[derive(Debug, Clone)]
pub struct Exemplar {
    pub id: String,
    /// The source dataset's class (`horse`).
    pub class: String,
    /// Source colour, alpha = the instance mask; the image is the mask's tight box.
    pub rgba: RgbaImage,
    /// The mask reaches its source image's edge: probably truncated there.
    pub touches_border: bool,
    /// Fraction of the cut-out's box covered by other instances in its source.
    pub occluded_fraction: f64,
    /// Colour and shading of the cut-out (`roadsynth_assets::measure_lighting` over its mask).
    pub lighting: Lighting,
}

impl Exemplar {
    /// Width over height of the mask's tight box.
    pub fn aspect(&self) -> f64 {
        f64::from(self.rgba.width()) / f64::from(self.rgba.height().max(1))
    }
}

/// The cut-outs the compositors paste, by class. Built once per run and shared between threads
/// (`Arc`): decoding the PNGs per insertion would cost more than compositing.
#[derive(Debug, Clone, Default)]
pub struct ExemplarLibrary {
    exemplars: Vec<Exemplar>,
    by_class: BTreeMap<String, Vec<usize>>,
}

impl ExemplarLibrary {
    /// Every cut-out of a bank (of `classes` only, when given), decoded.
    pub fn from_bank(bank: &AssetBank, classes: Option<&[&str]>) -> Result<Self, EngineError> {
        // Decoding the cut-outs is most of opening a bank: on all cores, in bank order.
        let exemplars = bank
            .assets()
            .par_iter()
            .filter(|asset| classes.is_none_or(|c| c.contains(&asset.class.as_str())))
            .map(|asset| {
                let rgba = asset.rgba().map_err(|source| EngineError::Asset {
                    id: asset.id.clone(),
                    source,
                })?;
                Ok(Exemplar {
                    id: asset.id.clone(),
                    class: asset.class.clone(),
                    rgba,
                    touches_border: asset.touches_border,
                    occluded_fraction: asset.occluded_fraction,
                    lighting: asset.lighting,
                })
            })
            .collect::<Vec<Result<Exemplar, EngineError>>>()
            .into_iter()
            // The first failure in bank order, as a serial decode would report.
            .collect::<Result<Vec<_>, EngineError>>()?;
        Ok(Self::from_exemplars(exemplars))
    }

    /// Opens a bank folder (`roadsynth assets build`) and decodes its cut-outs (of `classes`
    /// only, when given: see [`bank_classes_for`]).
    pub fn open(dir: &Path, classes: Option<&[&str]>) -> Result<Self, EngineError> {
        let bank = AssetBank::open(dir).map_err(|source| EngineError::Bank {
            path: dir.to_path_buf(),
            source,
        })?;
        Self::from_bank(&bank, classes)
    }

    pub fn from_exemplars(exemplars: Vec<Exemplar>) -> Self {
        let mut by_class: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, e) in exemplars.iter().enumerate() {
            by_class.entry(e.class.clone()).or_default().push(i);
        }
        Self {
            exemplars,
            by_class,
        }
    }

    pub fn len(&self) -> usize {
        self.exemplars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.exemplars.is_empty()
    }

    pub fn classes(&self) -> impl Iterator<Item = &str> {
        self.by_class.keys().map(String::as_str)
    }

    /// The exemplar with an asset id.
    pub fn get(&self, id: &str) -> Option<&Exemplar> {
        self.exemplars.iter().find(|e| e.id == id)
    }

    pub fn of_class<'a>(&'a self, class: &str) -> impl Iterator<Item = &'a Exemplar> + 'a {
        self.by_class
            .get(class)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|&i| &self.exemplars[i])
    }
}

/// Scenario classes that COCO has no cut-outs of, and the COCO classes that stand in for them,
/// best first, with why. Chosen by body shape and proportions, since what a detector must learn
/// from the inserted pixels is "a four-legged animal of this build on the road"; the label
/// written is the scenario's (`animal`), and the substitution is recorded per insertion.
pub const SUBSTITUTIONS: &[(&str, &[&str], &str)] = &[
    (
        "deer",
        &["horse", "sheep", "cow", "dog"],
        "slender, long-legged ungulate: a horse's legs and neck are closest, then sheep and cattle",
    ),
    (
        "roe_deer",
        &["sheep", "horse", "dog", "cow"],
        "small slender ungulate: about a sheep's size, a horse's build",
    ),
    (
        "white_tailed_deer",
        &["horse", "sheep", "cow", "dog"],
        "slender, long-legged ungulate, as deer",
    ),
    (
        "moose",
        &["horse", "cow"],
        "large, long-legged, dark ungulate: a horse's height and legs, a cow's bulk",
    ),
    (
        "wild_boar",
        &["bear", "sheep", "cow", "dog"],
        "stocky, short-legged, dark and bristly: a bear's build and coat, a sheep's size",
    ),
    (
        "fox",
        &["dog", "cat"],
        "small canid: a dog's build, a cat's size",
    ),
    (
        "kangaroo",
        &["dog", "horse"],
        "no upright hopping animal in COCO: the nearest brown mammals of its size",
    ),
    (
        "van",
        &["truck", "car"],
        "box-shaped light commercial vehicle: COCO labels vans as trucks or cars",
    ),
];

/// Lower-case, words joined by `_`, as scenario class names are compared.
pub fn normalise_class(name: &str) -> String {
    name.trim()
        .to_lowercase()
        .split(|c: char| c.is_whitespace() || c == '-' || c == '_')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}

/// The source classes to cut exemplars from for a scenario class, best first, and whether each
/// is a substitution: the class itself first (a bank may have it), then the table's stand-ins.
pub fn source_classes(class: &str) -> Vec<(String, bool)> {
    let name = normalise_class(class);
    let mut out = vec![(name.replace('_', " "), false)];
    if name.contains('_') {
        out.push((name.clone(), false));
    }
    if let Some((_, subs, _)) = SUBSTITUTIONS.iter().find(|(c, _, _)| *c == name) {
        out.extend(subs.iter().map(|s| ((*s).to_string(), true)));
    }
    out
}

/// The bank classes that can serve scenario classes: each one's [`source_classes`], in order of
/// first appearance. A library of these only chooses exactly as one of the whole bank would (the
/// choice never looks at other classes) and decodes no cut-out it could not choose.
pub fn bank_classes_for<'a>(scenario_classes: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for class in scenario_classes {
        for (source, _) in source_classes(class) {
            if !out.contains(&source) {
                out.push(source);
            }
        }
    }
    out
}

/// How exemplars are chosen for a planned box.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectionConfig {
    /// Largest enlargement of a cut-out: beyond about 2x its blur and JPEG blocks show.
    pub max_upscale: f64,
    /// Largest ratio between the horizontal and vertical scale (a bounded anisotropic fit): the
    /// cut-out is stretched this much at most to match the planned box's aspect.
    pub max_anisotropy: f64,
    /// Cut-outs more occluded than this in their source are missing parts.
    pub max_occluded_fraction: f64,
    /// The fitted cut-out's box must overlap the planned box by at least this (the engine's
    /// check is 0.8; the margin absorbs the soft edge of the alpha).
    pub min_expected_iou: f64,
    /// When no cut-out passes the limits above, these looser ones are tried (recorded as
    /// `tier: relaxed`).
    pub relaxed_max_upscale: f64,
    pub relaxed_max_occluded_fraction: f64,
    /// Cut-outs whose score is within this of the best are drawn uniformly (variety across
    /// insertions without giving up on fit).
    pub near_best: f64,
}

impl Default for SelectionConfig {
    fn default() -> Self {
        Self {
            max_upscale: 2.0,
            max_anisotropy: 1.25,
            max_occluded_fraction: 0.15,
            min_expected_iou: 0.85,
            relaxed_max_upscale: 3.0,
            relaxed_max_occluded_fraction: 0.3,
            near_best: 0.3,
        }
    }
}

impl SelectionConfig {
    pub(crate) fn validate(&self) -> Result<(), EngineError> {
        let ok = self.max_upscale >= 1.0
            && self.relaxed_max_upscale >= self.max_upscale
            && self.max_anisotropy >= 1.0
            && (0.0..=1.0).contains(&self.max_occluded_fraction)
            && (0.0..=1.0).contains(&self.relaxed_max_occluded_fraction)
            && (0.0..=1.0).contains(&self.min_expected_iou)
            && self.near_best >= 0.0;
        ok.then_some(()).ok_or_else(|| {
            EngineError::Config(format!("selection settings out of range: {self:?}"))
        })
    }
}

/// Where a planned object is drawn: the planned (possibly clipped) box and the full box the
/// cut-out is fitted to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Target {
    pub planned: BBox,
    /// The planned box before clipping to the image, as far as the foot point tells.
    pub full: BBox,
    pub foot_u: f64,
    pub foot_v: f64,
}

impl Target {
    pub fn of(row: &PlanRow, width: u32, height: u32) -> Result<Self, String> {
        let planned = BBox::new(row.x0, row.y0, row.x1, row.y1);
        let planned = planned
            .validated(width, height)
            .map_err(|e| format!("planned box: {e}"))?;
        if !(row.foot_u.is_finite() && row.foot_v.is_finite()) {
            return Err("foot point is not finite".into());
        }
        let (w, h) = (f64::from(width), f64::from(height));
        let mut full = planned;
        // A truncated box was clipped; the foot point is the full box's bottom centre.
        if row.truncated > 0.0 {
            if planned.x0 <= 0.0 && planned.x1 < w {
                full.x0 = full.x0.min(2.0 * row.foot_u - planned.x1);
            }
            if planned.x1 >= w && planned.x0 > 0.0 {
                full.x1 = full.x1.max(2.0 * row.foot_u - planned.x0);
            }
            if planned.y1 >= h {
                full.y1 = full.y1.max(row.foot_v);
            }
        }
        Ok(Self {
            planned,
            full,
            foot_u: row.foot_u,
            foot_v: row.foot_v,
        })
    }
}

/// How a cut-out is scaled and placed: its pixel size and top-left corner in the frame (which
/// may lie outside it for truncated objects).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fit {
    pub width: u32,
    pub height: u32,
    pub x0: i64,
    pub y0: i64,
    /// Horizontal over vertical scale applied.
    pub anisotropy: f64,
    /// The larger of the two scales.
    pub scale: f64,
    /// Width ratio of the fitted and the full planned box (their heights agree).
    pub expected_iou: f64,
}

fn fit(e: &Exemplar, full: &BBox, max_anisotropy: f64) -> Fit {
    let (aw, ah) = (f64::from(e.rgba.width()), f64::from(e.rgba.height()));
    let sy = full.height() / ah;
    let wanted = (full.width() / aw) / sy;
    let anisotropy = wanted.clamp(1.0 / max_anisotropy, max_anisotropy);
    let sx = sy * anisotropy;
    let (tw, th) = ((aw * sx).round().max(1.0), full.height().round().max(1.0));
    let cx = f64::midpoint(full.x0, full.x1);
    Fit {
        width: tw as u32,
        height: th as u32,
        x0: (cx - tw / 2.0).round() as i64,
        y0: (full.y1 - th).round() as i64,
        anisotropy,
        scale: sx.max(sy),
        expected_iou: tw.min(full.width()) / tw.max(full.width()),
    }
}

/// Which limits a chosen cut-out passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Strict,
    Relaxed,
}

/// A chosen cut-out and how it is fitted.
#[derive(Debug, Clone)]
pub(crate) struct Choice<'l> {
    pub exemplar: &'l Exemplar,
    pub substituted: bool,
    pub fit: Fit,
    pub tier: Tier,
    pub score: f64,
    pub candidates: usize,
}

/// How the choice weighs lighting: the exemplar compositor prefers cut-outs lit like the target
/// region; the naive baseline draws uniformly among those that fit.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Preference<'a> {
    Lighting(&'a Lighting),
    Uniform,
}

/// Picks a cut-out for a target: only cut-outs of the class (or its substitutes) that fit the box
/// within the limits; among them, the best by aspect, class rank, enlargement and (when asked)
/// lighting, drawn uniformly within `near_best` of the best score.
pub(crate) fn choose<'l>(
    library: &'l ExemplarLibrary,
    class: &str,
    target: &Target,
    config: &SelectionConfig,
    preference: Preference<'_>,
    exclude: &[String],
    rng: &mut ChaCha8Rng,
) -> Option<Choice<'l>> {
    let sources = source_classes(class);
    for (tier, max_up, max_occ) in [
        (
            Tier::Strict,
            config.max_upscale,
            config.max_occluded_fraction,
        ),
        (
            Tier::Relaxed,
            config.relaxed_max_upscale,
            config.relaxed_max_occluded_fraction,
        ),
    ] {
        let mut scored: Vec<Choice<'l>> = Vec::new();
        for (rank, (source, substituted)) in sources.iter().enumerate() {
            for e in library.of_class(source) {
                if e.touches_border || e.occluded_fraction > max_occ || exclude.contains(&e.id) {
                    continue;
                }
                let f = fit(e, &target.full, config.max_anisotropy);
                if f.scale > max_up || f.expected_iou < config.min_expected_iou {
                    continue;
                }
                // The stretch applied plus the aspect mismatch it could not absorb.
                let aspect_cost = f.anisotropy.ln().abs()
                    + ((target.full.width() / target.full.height()) / e.aspect())
                        .ln()
                        .abs();
                let upscale_cost = 0.5 * f.scale.ln().max(0.0);
                let light_cost = match preference {
                    Preference::Lighting(l) => {
                        (e.lighting.l_mean - l.l_mean).abs() / 25.0
                            + (e.lighting.a_mean - l.a_mean).hypot(e.lighting.b_mean - l.b_mean)
                                / 40.0
                    }
                    Preference::Uniform => 0.0,
                };
                let score = match preference {
                    Preference::Uniform => 0.0,
                    Preference::Lighting(_) => {
                        0.3 * rank as f64 + aspect_cost + upscale_cost + light_cost
                    }
                };
                scored.push(Choice {
                    exemplar: e,
                    substituted: *substituted,
                    fit: f,
                    tier,
                    score,
                    candidates: 0,
                });
            }
        }
        if scored.is_empty() {
            continue;
        }
        let best = scored.iter().map(|c| c.score).fold(f64::INFINITY, f64::min);
        let near: Vec<Choice<'l>> = scored
            .into_iter()
            .filter(|c| c.score <= best + config.near_best)
            .collect();
        let n = near.len();
        let mut pick = near[rng.random_range(0..n)].clone();
        pick.candidates = n;
        return Some(pick);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deer_is_drawn_from_horses_first_and_marked_substituted() {
        let s = source_classes("Deer");
        assert_eq!(s[0], ("deer".to_string(), false));
        assert_eq!(s[1], ("horse".to_string(), true));
        let boar = source_classes("wild boar");
        assert!(boar.contains(&("wild_boar".to_string(), false)));
        assert!(boar.contains(&("bear".to_string(), true)));
        // A COCO class maps to itself only.
        assert_eq!(source_classes("sheep"), vec![("sheep".to_string(), false)]);
    }

    fn exemplar(w: u32, h: u32) -> Exemplar {
        Exemplar {
            id: format!("{w}x{h}"),
            class: "horse".into(),
            rgba: RgbaImage::from_pixel(w, h, image::Rgba([100, 80, 60, 255])),
            touches_border: false,
            occluded_fraction: 0.0,
            lighting: Lighting::default(),
        }
    }

    #[test]
    fn fit_keeps_the_foot_row_and_bounds_the_stretch() {
        let full = BBox::new(100.0, 50.0, 160.0, 90.0);
        // Same aspect (1.5): exact fit.
        let f = fit(&exemplar(120, 80), &full, 1.25);
        assert_eq!((f.width, f.height, f.x0, f.y0), (60, 40, 100, 50));
        assert!((f.expected_iou - 1.0).abs() < 1e-9);
        // A square cut-out is stretched by at most 1.25: 50 px wide, IoU 50/60.
        let f = fit(&exemplar(80, 80), &full, 1.25);
        assert_eq!((f.width, f.height), (50, 40));
        assert!((f.expected_iou - 50.0 / 60.0).abs() < 1e-9);
        assert_eq!(f.y0 + i64::from(f.height), 90);
    }

    #[test]
    fn choice_skips_cut_outs_that_would_be_enlarged_too_much() {
        let library = ExemplarLibrary::from_exemplars(vec![exemplar(15, 10), exemplar(90, 60)]);
        let target = Target {
            planned: BBox::new(0.0, 0.0, 60.0, 40.0),
            full: BBox::new(0.0, 0.0, 60.0, 40.0),
            foot_u: 30.0,
            foot_v: 40.0,
        };
        let mut rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
        let c = choose(
            &library,
            "deer",
            &target,
            &SelectionConfig::default(),
            Preference::Uniform,
            &[],
            &mut rng,
        )
        .expect("a fitting cut-out");
        assert_eq!(c.exemplar.id, "90x60");
        assert!(c.substituted);
        assert_eq!(c.tier, Tier::Strict);
    }
}
