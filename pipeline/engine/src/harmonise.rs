//! Colour and luminance harmonisation: a partial, bounded Reinhard-style transfer of the cut-out's
//! CIE L\*a\*b\* statistics toward the ring of frame pixels around where it goes.
//!
//! Full Reinhard transfer would give the object the colours of the road around it (a grey deer on
//! grey asphalt). What the surroundings do tell is the light: its level (overall L\*), its contrast
//! (L\* spread) and its colour cast (a\*, b\* means). So the transfer moves only part of the way,
//! and each shift is capped: the object keeps its own colours, lit like the scene.

use serde::{Deserialize, Serialize};

use crate::EngineError;
use crate::raster::{RgbPlane, lab_to_rgb};

/// How far a cut-out is moved toward its surroundings' statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HarmoniseConfig {
    /// Fraction of the L\* mean difference applied.
    pub luminance_strength: f64,
    /// Cap on the L\* mean shift (L\* units, 0..100).
    pub max_luminance_shift: f64,
    /// Exponent on the L\* standard-deviation ratio: 0 keeps the cut-out's contrast, 1 matches
    /// the surroundings'.
    pub contrast_strength: f64,
    /// Bounds of the contrast gain.
    pub contrast_range: [f64; 2],
    /// Fraction of the a\*, b\* mean difference (the colour cast) applied.
    pub colour_strength: f64,
    /// Cap on the a\*b\* shift (its length, in a\*b\* units).
    pub max_colour_shift: f64,
}

impl Default for HarmoniseConfig {
    fn default() -> Self {
        Self {
            luminance_strength: 0.5,
            max_luminance_shift: 20.0,
            contrast_strength: 0.3,
            contrast_range: [0.8, 1.25],
            colour_strength: 0.3,
            max_colour_shift: 8.0,
        }
    }
}

impl HarmoniseConfig {
    pub(crate) fn validate(&self) -> Result<(), EngineError> {
        let unit = 0.0..=1.0;
        let ok = unit.contains(&self.luminance_strength)
            && unit.contains(&self.contrast_strength)
            && unit.contains(&self.colour_strength)
            && self.max_luminance_shift >= 0.0
            && self.max_colour_shift >= 0.0
            && self.contrast_range[0] > 0.0
            && self.contrast_range[0] <= 1.0
            && self.contrast_range[1] >= 1.0;
        ok.then_some(()).ok_or_else(|| {
            EngineError::Config(format!("harmonisation settings out of range: {self:?}"))
        })
    }
}

/// Weighted L\*a\*b\* means and standard deviations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LabStats {
    pub mean: [f64; 3],
    pub std: [f64; 3],
    pub weight: f64,
}

impl LabStats {
    pub fn of(lab: &RgbPlane, weight: &[f32]) -> Self {
        let mut sum = [0.0f64; 3];
        let mut sq = [0.0f64; 3];
        let mut total = 0.0f64;
        for (p, &w) in lab.data.iter().zip(weight) {
            if w <= 0.0 {
                continue;
            }
            let w = f64::from(w);
            total += w;
            for c in 0..3 {
                let v = f64::from(p[c]);
                sum[c] += w * v;
                sq[c] += w * v * v;
            }
        }
        if total <= 0.0 {
            return Self::default();
        }
        let mean = sum.map(|s| s / total);
        let std = [0, 1, 2].map(|c| (sq[c] / total - mean[c] * mean[c]).max(0.0).sqrt());
        Self {
            mean,
            std,
            weight: total,
        }
    }
}

/// What the transfer did, for provenance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Harmonisation {
    pub object: LabStats,
    pub ring: LabStats,
    pub l_shift: f64,
    pub contrast: f64,
    pub a_shift: f64,
    pub b_shift: f64,
}

/// The transfer's parameters for an object and its ring.
pub fn plan(object: LabStats, ring: LabStats, config: &HarmoniseConfig) -> Harmonisation {
    if object.weight <= 0.0 || ring.weight <= 0.0 {
        return Harmonisation {
            object,
            ring,
            l_shift: 0.0,
            contrast: 1.0,
            a_shift: 0.0,
            b_shift: 0.0,
        };
    }
    let cap = config.max_luminance_shift;
    let l_shift = (config.luminance_strength * (ring.mean[0] - object.mean[0])).clamp(-cap, cap);
    let ratio = if object.std[0] > 1e-3 && ring.std[0] > 1e-3 {
        ring.std[0] / object.std[0]
    } else {
        1.0
    };
    let contrast = ratio
        .powf(config.contrast_strength)
        .clamp(config.contrast_range[0], config.contrast_range[1]);
    let (mut da, mut db) = (
        config.colour_strength * (ring.mean[1] - object.mean[1]),
        config.colour_strength * (ring.mean[2] - object.mean[2]),
    );
    let len = da.hypot(db);
    if len > config.max_colour_shift {
        let k = config.max_colour_shift / len;
        da *= k;
        db *= k;
    }
    Harmonisation {
        object,
        ring,
        l_shift,
        contrast,
        a_shift: da,
        b_shift: db,
    }
}

/// Applies a transfer to colours already converted to L\*a\*b\* (by
/// [`rgb_to_lab`](crate::raster::rgb_to_lab): the conversion its statistics were taken from),
/// returning sRGB `0..=255`.
pub fn apply_to_lab(mut lab: RgbPlane, h: &Harmonisation) -> RgbPlane {
    let mean_l = h.object.mean[0] as f32;
    let (shift, gain) = (h.l_shift as f32, h.contrast as f32);
    let (da, db) = (h.a_shift as f32, h.b_shift as f32);
    for p in &mut lab.data {
        p[0] = ((p[0] - mean_l) * gain + mean_l + shift).clamp(0.0, 100.0);
        p[1] += da;
        p[2] += db;
    }
    lab_to_rgb(lab)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raster::rgb_to_lab;

    #[test]
    fn shifts_are_partial_and_capped() {
        let object = LabStats {
            mean: [70.0, 10.0, 20.0],
            std: [10.0, 3.0, 3.0],
            weight: 100.0,
        };
        let ring = LabStats {
            mean: [20.0, -40.0, 20.0],
            std: [40.0, 3.0, 3.0],
            weight: 100.0,
        };
        let h = plan(object, ring, &HarmoniseConfig::default());
        // Half of -50 is -25, capped at -20.
        assert!((h.l_shift + 20.0).abs() < 1e-9);
        // 4^0.3 = 1.516, capped at 1.25.
        assert!((h.contrast - 1.25).abs() < 1e-9);
        // 0.3 * -50 = -15 in a*, capped to length 8.
        assert!((h.a_shift + 8.0).abs() < 1e-9 && h.b_shift.abs() < 1e-9);
    }

    #[test]
    fn darker_surroundings_darken_the_object() {
        let colour = RgbPlane {
            width: 2,
            height: 1,
            data: vec![[180.0, 150.0, 120.0], [160.0, 130.0, 100.0]],
        };
        let lab = rgb_to_lab(&colour);
        let object = LabStats::of(&lab, &[1.0, 1.0]);
        let ring = LabStats {
            mean: [30.0, 0.0, 0.0],
            std: object.std,
            weight: 10.0,
        };
        let h = plan(object, ring, &HarmoniseConfig::default());
        let out = apply_to_lab(rgb_to_lab(&colour), &h);
        for (a, b) in colour.data.iter().zip(&out.data) {
            assert!(b[1] < a[1] - 10.0, "{a:?} -> {b:?}");
        }
    }
}
