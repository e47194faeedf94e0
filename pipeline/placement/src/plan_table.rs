//! Plans are data: one row per planned object, the table the engine executes.

use serde::{Deserialize, Serialize};

use crate::FramePlan;
use roadsynth_scenario::settings::PlacementModel;
use roadsynth_types::{Annotation, BBox, Origin};

/// One planned insertion. Box in pixel `xyxy` (the convention of `roadsynth_types::BBox`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRow {
    pub frame_id: String,
    pub variant: u32,
    pub object_index: u32,
    pub operation: String,
    pub scenario: String,
    /// The scenario's class name (`deer`): picks assets.
    pub class: String,
    /// The class the generated annotation gets (`animal`).
    pub label: String,
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
    pub foot_u: f64,
    pub foot_v: f64,
    /// Ground-plane depth of the foot point in metres; empty for the naive model.
    pub depth_m: Option<f64>,
    /// Sampled real size, metres.
    pub height_m: f64,
    pub length_m: f64,
    pub width_m: f64,
    pub yaw_deg: f64,
    pub truncated: f64,
    /// `geometry` or `naive`.
    pub model: String,
    /// `intrinsics`, `fitted`, `horizon`, or `none` for the naive model.
    pub geometry: String,
    /// Where the allowed-ground mask came from (`semantic_labels`, `model:...`, `below_horizon`).
    pub mask_source: String,
    /// Seed of the frame variant; every random choice of the engine for it derives from this.
    pub seed: u64,
}

impl PlanRow {
    pub fn rows_of(plan: &FramePlan, scenario: &str, mask_source: &str) -> Vec<PlanRow> {
        plan.objects
            .iter()
            .map(|o| PlanRow {
                frame_id: plan.frame_id.clone(),
                variant: plan.variant,
                object_index: o.object_index,
                operation: "insert_objects".into(),
                scenario: scenario.into(),
                class: o.class.clone(),
                label: o.label.clone(),
                x0: o.bbox.x0,
                y0: o.bbox.y0,
                x1: o.bbox.x1,
                y1: o.bbox.y1,
                foot_u: o.foot.0,
                foot_v: o.foot.1,
                depth_m: o.depth_m,
                height_m: o.height_m,
                length_m: o.length_m,
                width_m: o.width_m,
                yaw_deg: o.yaw_deg,
                truncated: o.truncated,
                model: match plan.model {
                    PlacementModel::GeometryAware => "geometry".into(),
                    PlacementModel::Naive => "naive".into(),
                },
                geometry: plan.geometry.clone(),
                mask_source: mask_source.into(),
                seed: plan.seed,
            })
            .collect()
    }

    /// The annotation the engine writes for this insertion before it tightens the box to the
    /// rendered alpha: generated, with the planned depth, real size and geometry source as
    /// attributes so evaluation can slice by them.
    pub fn annotation(&self) -> Annotation {
        let mut a = Annotation::real(
            self.label.clone(),
            BBox::new(self.x0, self.y0, self.x1, self.y1),
        );
        a.origin = Origin::Generated {
            operation: self.operation.clone(),
            scenario: self.scenario.clone(),
            seed: self.seed,
        };
        a.truncated = Some(self.truncated as f32);
        let attrs = &mut a.attributes;
        if let Some(z) = self.depth_m {
            attrs.insert("depth_m".into(), z.into());
        }
        attrs.insert("height_m".into(), self.height_m.into());
        attrs.insert("geometry".into(), self.geometry.clone().into());
        attrs.insert("inserted_class".into(), self.class.clone().into());
        attrs.insert("placement".into(), self.model.clone().into());
        a
    }
}
