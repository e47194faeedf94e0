//! The diffusion backend: each planned object is inpainted into its box by a Stable Diffusion
//! inpainting model (`roadsynth-diffusion`), from the prompt of its class. The generated object
//! has no alpha of its own; its tight box comes from segmenting the generated pixels with the VOC
//! segmenter when one is given (an object the segmenter cannot find is not kept), else from the
//! inpainting mask.

use image::{GrayImage, Luma, RgbImage};
use roadsynth_diffusion::{InpaintModel, InpaintRequest, ObjectRegion, SchedulerKind};
use roadsynth_models::{VOC_ANIMALS, VOC_VEHICLES, VehicleSegmenter};
use roadsynth_placement::PlanRow;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::EngineError;
use crate::compose::Layer;
use crate::exemplar::{MIN_RENDER_HEIGHT_PX, Rendered, Skip};
use crate::library::Target;
use crate::raster::PixelRect;

/// Settings of [`DiffusionInserter`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffusionInsertConfig {
    /// Prompt; `{class}` is replaced by the scenario class (`wild boar`).
    pub prompt: String,
    pub negative_prompt: String,
    pub steps: usize,
    pub guidance_scale: f32,
    pub scheduler: SchedulerKind,
    /// Context around the box, as a fraction of its longer side.
    pub context_margin: f64,
    /// Feather of the paste-back, pixels.
    pub feather: u32,
    /// The segmenter must find the object on at least this fraction of its box.
    pub min_segmented_fraction: f64,
}

impl Default for DiffusionInsertConfig {
    fn default() -> Self {
        Self {
            prompt: "a photo of a {class} standing on the road, realistic".into(),
            negative_prompt: "cartoon, drawing, blurry, text".into(),
            steps: 25,
            guidance_scale: 7.5,
            scheduler: SchedulerKind::default(),
            context_margin: 0.5,
            feather: 3,
            min_segmented_fraction: 0.15,
        }
    }
}

/// Stable Diffusion inpainting of planned boxes.
#[derive(Debug)]
pub struct DiffusionInserter {
    model: InpaintModel,
    segmenter: Option<VehicleSegmenter>,
    config: DiffusionInsertConfig,
}

/// The seed of an object's noise: the variant seed and the object index mixed (`SplitMix64`), so
/// objects of one frame get unrelated noise.
pub(crate) fn object_seed(seed: u64, index: u32) -> u64 {
    let mut z = seed ^ (u64::from(index) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl DiffusionInserter {
    pub fn new(
        model: InpaintModel,
        segmenter: Option<VehicleSegmenter>,
        config: DiffusionInsertConfig,
    ) -> Result<Self, EngineError> {
        if config.steps == 0 || !(0.0..=1.0).contains(&config.min_segmented_fraction) {
            return Err(EngineError::Config(format!(
                "diffusion settings out of range: {config:?}"
            )));
        }
        Ok(Self {
            model,
            segmenter,
            config,
        })
    }

    pub fn config(&self) -> &DiffusionInsertConfig {
        &self.config
    }

    pub(crate) fn render(
        &mut self,
        image: &RgbImage,
        row: &PlanRow,
    ) -> Result<Result<Rendered, Skip>, EngineError> {
        let (w, h) = image.dimensions();
        let target = match Target::of(row, w, h) {
            Ok(t) => t,
            Err(reason) => return Ok(Err(reason)),
        };
        if target.planned.height() < MIN_RENDER_HEIGHT_PX {
            return Ok(Err("planned box too small to inpaint".into()));
        }
        // The region to generate: the ellipse inscribed in the planned box (a box-shaped mask
        // invites box-shaped content).
        let b = target.planned;
        let (cx, cy) = (f64::midpoint(b.x0, b.x1), f64::midpoint(b.y0, b.y1));
        let (rx, ry) = (b.width() / 2.0, b.height() / 2.0);
        let mask = GrayImage::from_fn(w, h, |x, y| {
            let dx = (f64::from(x) + 0.5 - cx) / rx;
            let dy = (f64::from(y) + 0.5 - cy) / ry;
            Luma([if dx * dx + dy * dy <= 1.0 { 255 } else { 0 }])
        });
        let class = row.class.replace('_', " ");
        let mut request = InpaintRequest::new(
            image,
            vec![ObjectRegion {
                bbox: [b.x0, b.y0, b.x1, b.y1],
                mask: Some(mask.clone()),
                prompt: None,
            }],
            self.config.prompt.replace("{class}", &class),
        );
        request
            .negative_prompt
            .clone_from(&self.config.negative_prompt);
        request.steps = self.config.steps;
        request.guidance_scale = self.config.guidance_scale;
        request.scheduler = self.config.scheduler;
        request.context_margin = self.config.context_margin;
        request.feather = self.config.feather;
        request.seed = object_seed(row.seed, row.object_index);
        let result = self.model.inpaint(&request)?;
        let Some(object) = result.objects.first() else {
            return Ok(Err("the model generated nothing".into()));
        };
        let c = object.crop;
        let rect = PixelRect {
            x0: c.x,
            y0: c.y,
            x1: c.x + c.width,
            y1: c.y + c.height,
        };
        let mut layer = Layer::empty(rect, target.foot_v);
        let box_rect = PixelRect::covering(&b, 0.0, w, h);
        // Coverage: the segmenter's object pixels in the box, else the inpainting mask.
        let mut cover_source = "inpaint_mask";
        let mut segmented: Option<GrayImage> = None;
        if let Some(seg) = self.segmenter.as_mut() {
            let classes: &[u32] = if row.label.eq_ignore_ascii_case("animal") {
                &VOC_ANIMALS
            } else {
                &VOC_VEHICLES
            };
            let m = seg.segment_classes(
                &result.image,
                [box_rect.x0, box_rect.y0, box_rect.x1, box_rect.y1],
                classes,
            )?;
            let found = m.pixels().filter(|p| p.0[0] > 0).count();
            if (found as f64) < self.config.min_segmented_fraction * box_rect.area() as f64 {
                return Ok(Err(format!(
                    "the segmenter finds the generated {class} on {found} of {} box pixels",
                    box_rect.area()
                )));
            }
            cover_source = "segmenter";
            segmented = Some(m);
        }
        for y in rect.y0..rect.y1 {
            for x in rect.x0..rect.x1 {
                let i = rect.index(x, y);
                if result.edit_mask.get_pixel(x, y).0[0] > 0 {
                    let p = result.image.get_pixel(x, y).0;
                    layer.rgb[i] = p.map(f32::from);
                    layer.alpha[i] = 1.0;
                }
                let inside_box =
                    x >= box_rect.x0 && x < box_rect.x1 && y >= box_rect.y0 && y < box_rect.y1;
                layer.cover[i] = match &segmented {
                    Some(m) if inside_box => f32::from(u8::from(
                        m.get_pixel(x - box_rect.x0, y - box_rect.y0).0[0] > 0,
                    )),
                    Some(_) => 0.0,
                    None => f32::from(u8::from(mask.get_pixel(x, y).0[0] > 0)),
                };
            }
        }
        Ok(Ok(Rendered {
            layer,
            asset_id: None,
            asset_class: None,
            substituted: false,
            params: json!({
                "backend": "diffusion",
                "prompt": request.prompt,
                "seed": request.seed,
                "cover_source": cover_source,
                "inpaint": result.params,
                "blend": "diffusion",
            }),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_seeds_differ_and_repeat() {
        assert_eq!(object_seed(5, 0), object_seed(5, 0));
        assert_ne!(object_seed(5, 0), object_seed(5, 1));
        assert_ne!(object_seed(5, 0), object_seed(6, 0));
    }
}
