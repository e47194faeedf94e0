//! The naive baseline: the same kind of cut-out pasted with its plain alpha, as Copy-Paste does:
//! no choice by lighting, no harmonisation, no blur or noise matching, no shadow. Rendering the
//! same plans both ways measures what the exemplar compositor's care is worth.

use std::sync::Arc;

use image::RgbImage;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use roadsynth_placement::PlanRow;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::EngineError;
use crate::compose::Layer;
use crate::exemplar::{MIN_RENDER_HEIGHT_PX, Rendered, Skip};
use crate::library::{ExemplarLibrary, Preference, SelectionConfig, Target, choose};
use crate::raster::{PixelRect, Premultiplied};

/// Settings of [`NaivePaste`]: only which cut-outs fit the box (the same limits as the exemplar
/// compositor, so both render the planned boxes and differ only in how).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NaiveConfig {
    pub selection: SelectionConfig,
}

/// Plain alpha paste of a uniformly drawn fitting cut-out.
#[derive(Debug, Clone)]
pub struct NaivePaste {
    library: Arc<ExemplarLibrary>,
    config: NaiveConfig,
}

impl NaivePaste {
    pub fn new(library: Arc<ExemplarLibrary>, config: NaiveConfig) -> Result<Self, EngineError> {
        config.selection.validate()?;
        Ok(Self { library, config })
    }

    pub fn config(&self) -> &NaiveConfig {
        &self.config
    }

    pub(crate) fn render(
        &self,
        image: &RgbImage,
        row: &PlanRow,
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
        let Some(choice) = choose(
            &self.library,
            &row.class,
            &target,
            &self.config.selection,
            Preference::Uniform,
            &[],
            rng,
        ) else {
            return Ok(Err(format!(
                "no cut-out of {} (or its substitutes) fits a {:.0}x{:.0} box",
                row.class,
                target.full.width(),
                target.full.height()
            )));
        };
        let flip = rng.random_bool(0.5);
        let fit = choice.fit;
        let patch =
            Premultiplied::resized_from_rgba(&choice.exemplar.rgba, flip, fit.width, fit.height)?;
        let colour = patch.colour();
        let rect = PixelRect {
            x0: fit.x0.clamp(0, i64::from(w)) as u32,
            y0: fit.y0.clamp(0, i64::from(h)) as u32,
            x1: (fit.x0 + i64::from(fit.width)).clamp(0, i64::from(w)) as u32,
            y1: (fit.y0 + i64::from(fit.height)).clamp(0, i64::from(h)) as u32,
        };
        if rect.is_empty() {
            return Ok(Err("the fitted cut-out lies outside the frame".into()));
        }
        let mut layer = Layer::empty(rect, target.foot_v);
        for y in rect.y0..rect.y1 {
            for x in rect.x0..rect.x1 {
                let i = rect.index(x, y);
                let j = (i64::from(y) - fit.y0) as usize * fit.width as usize
                    + (i64::from(x) - fit.x0) as usize;
                // Plain alpha: the resampled mask as it is, no feather.
                let a = patch.data[j][3];
                layer.rgb[i] = colour.data[j];
                layer.alpha[i] = a;
                layer.cover[i] = a;
            }
        }
        let params = json!({
            "backend": "naive",
            "asset_id": choice.exemplar.id,
            "asset_class": choice.exemplar.class,
            "substituted": choice.substituted,
            "selection": {
                "tier": choice.tier,
                "candidates": choice.candidates,
                "flipped": flip,
                "fit": fit,
            },
            "blend": "plain_alpha",
        });
        Ok(Ok(Rendered {
            layer,
            asset_id: Some(choice.exemplar.id.clone()),
            asset_class: Some(choice.exemplar.class.clone()),
            substituted: choice.substituted,
            params,
        }))
    }
}
