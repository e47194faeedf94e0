//! The insertion engine: a frame and the plan rows of one of its variants in; the new frame, the
//! generated annotations with tight boxes, the edit mask, a report per planned object and the
//! provenance step out.

use image::{GrayImage, RgbImage};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use roadsynth_placement::PlanRow;
use roadsynth_types::{Annotation, BBox, ProvenanceStep, TOOL_VERSION};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::EngineError;
use crate::compose::{Composite, Layer, compose, tight_box, visible_rle};
use crate::diffusion::DiffusionInserter;
use crate::exemplar::{ExemplarCompositor, Rendered, Skip};
use crate::filter::{Inserted, QualityFilter, Verdict};
use crate::frame::{ExistingObjects, FrameInput, SemanticObjects};
use crate::naive::NaivePaste;
use crate::raster::PixelRect;

/// How planned objects are rendered.
#[derive(Debug)]
pub enum InsertBackend {
    /// Real cut-outs, harmonised and blended (the default).
    Exemplar(ExemplarCompositor),
    /// The baseline: plain alpha paste.
    Naive(NaivePaste),
    /// Stable Diffusion inpainting of the planned box.
    Diffusion(Box<DiffusionInserter>),
}

impl InsertBackend {
    pub fn name(&self) -> &'static str {
        match self {
            InsertBackend::Exemplar(_) => "exemplar",
            InsertBackend::Naive(_) => "naive",
            InsertBackend::Diffusion(_) => "diffusion",
        }
    }

    fn params(&self) -> serde_json::Value {
        match self {
            InsertBackend::Exemplar(e) => json!({"name": "exemplar", "config": e.config()}),
            InsertBackend::Naive(n) => json!({"name": "naive", "config": n.config()}),
            InsertBackend::Diffusion(d) => json!({"name": "diffusion", "config": d.config()}),
        }
    }
}

/// Settings of [`InsertionEngine`] beyond its backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InsertConfig {
    /// Semantic-label ids of movable objects (see [`SemanticObjects`]).
    pub semantic_objects: SemanticObjects,
    /// An inserted object hidden behind nearer existing or inserted ones beyond this is dropped:
    /// a label on a sliver teaches nothing.
    pub min_visible_fraction: f64,
    /// Give generated annotations the instance mask of their visible pixels (COCO RLE).
    pub store_masks: bool,
    /// Rounds of filter, drop (or render again), re-compose and re-check of the objects a change
    /// uncovered; a render again needs a round left to be judged in.
    pub max_filter_rounds: u32,
    /// Renders of one planned object with the exemplar backend: an object the filter rejects is
    /// rendered again at the same place and size from another cut-out (never one already tried),
    /// while rounds remain to judge it, so that the filter keeps quality without thinning the
    /// number of objects asked for. 1 drops a rejected object at once.
    pub max_attempts: u32,
}

impl Default for InsertConfig {
    fn default() -> Self {
        Self {
            semantic_objects: SemanticObjects::default(),
            min_visible_fraction: 0.3,
            store_masks: true,
            max_filter_rounds: 3,
            max_attempts: 3,
        }
    }
}

/// What became of one planned object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InsertionStatus {
    Kept,
    /// Rendered, but the quality filter did not see it as its class.
    FilteredOut,
    /// Not rendered: no fitting cut-out, hidden, or an unusable plan row.
    NotRendered,
}

/// One planned object's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InsertionReport {
    pub object_index: u32,
    pub class: String,
    pub label: String,
    pub status: InsertionStatus,
    pub reason: Option<String>,
    pub planned_bbox: [f64; 4],
    /// Tight box of the visible rendered object: the label's box.
    pub bbox: Option<[f64; 4]>,
    /// Tight box of the whole rendered object, ignoring what nearer objects hide (equals `bbox`
    /// when nothing does).
    pub amodal_bbox: Option<[f64; 4]>,
    pub iou_with_plan: Option<f64>,
    pub visible_fraction: Option<f64>,
    pub asset_id: Option<String>,
    pub asset_class: Option<String>,
    pub substituted: bool,
    pub filter: Option<Verdict>,
    /// Renders of this object: more than one when the filter rejected earlier cut-outs.
    pub attempts: u32,
    /// The renders the filter rejected before the last, in order: cut-out and verdict.
    pub rejected: Vec<RejectedRender>,
    /// The backend's parameters (selection, harmonisation, blur, noise, blend).
    pub render: serde_json::Value,
}

/// A render of a planned object that the filter rejected and that was replaced by another.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RejectedRender {
    pub asset_id: Option<String>,
    pub verdict: Verdict,
}

/// The result of one frame variant's insertions.
#[derive(Debug, Clone)]
pub struct InsertOutcome {
    pub image: RgbImage,
    /// The input annotations (attributes added where inserted objects cover them) followed by
    /// the generated ones.
    pub annotations: Vec<Annotation>,
    /// Just the generated annotations, in plan order.
    pub generated: Vec<Annotation>,
    /// Full-frame mask: 0 where `image` equals the input bit for bit.
    pub edit_mask: GrayImage,
    pub reports: Vec<InsertionReport>,
    pub step: ProvenanceStep,
    pub kept: u64,
    pub filtered_out: u64,
    pub not_rendered: u64,
    /// Renders beyond each object's first (see [`InsertConfig::max_attempts`]).
    pub rendered_again: u64,
}

/// Renders plan rows into frames (see the crate documentation).
pub struct InsertionEngine {
    backend: InsertBackend,
    filter: Option<Box<dyn QualityFilter>>,
    config: InsertConfig,
}

impl std::fmt::Debug for InsertionEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InsertionEngine")
            .field("backend", &self.backend.name())
            .field(
                "filter",
                &self.filter.as_ref().map(|f| f.name().to_string()),
            )
            .field("config", &self.config)
            .finish()
    }
}

/// Where a rendered object stands in the pipeline of one frame.
struct Item<'r> {
    row: &'r PlanRow,
    rendered: Result<Rendered, Skip>,
    status: InsertionStatus,
    reason: Option<String>,
    verdict: Option<Verdict>,
    occluders_near: bool,
    /// Renders so far, the cut-outs they used, and the rejected ones' verdicts.
    attempts: u32,
    tried: Vec<String>,
    rejected: Vec<RejectedRender>,
}

/// The random stream of one render of a planned object: the first render's is the object's own,
/// so retries leave every first render as it was.
fn render_rng(row: &PlanRow, attempt: u32) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(row.seed);
    rng.set_stream(u64::from(row.object_index) | (u64::from(attempt) << 32));
    rng
}

impl InsertionEngine {
    pub fn new(backend: InsertBackend, config: InsertConfig) -> Result<Self, EngineError> {
        if config.max_attempts == 0 {
            return Err(EngineError::Config(
                "max_attempts must be at least 1 (one render per object)".into(),
            ));
        }
        if !(0.0..=1.0).contains(&config.min_visible_fraction) {
            return Err(EngineError::Config(format!(
                "min_visible_fraction {} must be in 0..=1",
                config.min_visible_fraction
            )));
        }
        Ok(Self {
            backend,
            filter: None,
            config,
        })
    }

    /// The same engine, keeping only insertions `filter` accepts.
    #[must_use]
    pub fn with_filter(mut self, filter: Box<dyn QualityFilter>) -> Self {
        self.filter = Some(filter);
        self
    }

    pub fn backend(&self) -> &InsertBackend {
        &self.backend
    }

    pub fn config(&self) -> &InsertConfig {
        &self.config
    }

    /// Renders the plan rows of one frame variant into `frame`.
    ///
    /// Every random choice of object `i` comes from `ChaCha8Rng::seed_from_u64(row.seed)` on
    /// stream `i`, and each object is rendered against the input frame alone, so an object's
    /// first render does not depend on the other objects or their order. A render the filter
    /// rejects is replaced by one from another cut-out (stream `i + (attempt << 32)`, see
    /// [`InsertConfig::max_attempts`]).
    pub fn insert(
        &mut self,
        frame: FrameInput<'_>,
        rows: &[PlanRow],
    ) -> Result<InsertOutcome, EngineError> {
        frame.validate()?;
        let (w, h) = frame.image.dimensions();
        let mut existing = ExistingObjects::new(frame, &self.config.semantic_objects);
        let mut items: Vec<Item<'_>> = Vec::with_capacity(rows.len());
        for row in rows {
            let mut rng = render_rng(row, 0);
            let planned = BBox::new(row.x0, row.y0, row.x1, row.y1);
            if ![planned.x0, planned.y0, planned.x1, planned.y1]
                .iter()
                .all(|v| v.is_finite())
            {
                return Err(EngineError::Plan {
                    frame_id: row.frame_id.clone(),
                    object_index: row.object_index,
                    reason: format!("box {planned:?} is not finite"),
                });
            }
            let rect = PixelRect::covering(&planned, 0.0, w, h);
            let occluders_near = !existing.nearer_than(row.foot_v, &rect).is_empty();
            let rendered = match &mut self.backend {
                InsertBackend::Exemplar(e) => {
                    e.render(frame.image, row, occluders_near, &[], &mut rng)?
                }
                InsertBackend::Naive(n) => n.render(frame.image, row, &mut rng)?,
                InsertBackend::Diffusion(d) => d.render(frame.image, row)?,
            };
            let (status, reason) = match &rendered {
                Ok(_) => (InsertionStatus::Kept, None),
                Err(skip) => (InsertionStatus::NotRendered, Some(skip.clone())),
            };
            let tried = rendered
                .as_ref()
                .ok()
                .and_then(|r| r.asset_id.clone())
                .into_iter()
                .collect();
            items.push(Item {
                row,
                rendered,
                status,
                reason,
                verdict: None,
                occluders_near,
                attempts: 1,
                tried,
                rejected: Vec::new(),
            });
        }

        // Compose; drop the hidden; filter, drop, re-compose and re-check what a drop changed.
        let mut composite = compose_items(frame.image, &items, &mut existing);
        let mut rounds = 0;
        loop {
            let mut dropped: Vec<PixelRect> = Vec::new();
            let order = composite.0.clone();
            for (k, &i) in order.iter().enumerate() {
                let placed = &composite.1.placed[k];
                let Some(layer) = layer_of(&items[i]).map(|l| l.rect) else {
                    continue;
                };
                let visible = placed.visible_fraction();
                if tight_box(&layer, &placed.visible).is_none()
                    || visible < self.config.min_visible_fraction
                {
                    items[i].status = InsertionStatus::NotRendered;
                    items[i].reason = Some(format!(
                        "hidden by nearer objects: {:.0} % visible",
                        100.0 * visible
                    ));
                    dropped.push(layer);
                }
            }
            if let Some(filter) = self.filter.as_mut() {
                for (k, &i) in order.iter().enumerate() {
                    if items[i].status != InsertionStatus::Kept || items[i].verdict.is_some() {
                        continue;
                    }
                    let placed = &composite.1.placed[k];
                    let Some(rect) = layer_of(&items[i]).map(|l| l.rect) else {
                        continue;
                    };
                    let Some(bbox) = tight_box(&rect, &placed.visible) else {
                        continue;
                    };
                    let it = &items[i];
                    let source_class = it
                        .rendered
                        .as_ref()
                        .ok()
                        .and_then(|r| r.asset_class.as_deref());
                    let verdict = filter.judge(
                        &composite.1.image,
                        &Inserted {
                            bbox,
                            label: &it.row.label,
                            class: &it.row.class,
                            source_class,
                        },
                    )?;
                    if verdict.keep {
                        items[i].verdict = Some(verdict);
                        continue;
                    }
                    dropped.push(rect);
                    // Another cut-out at the same place, while a round remains to judge it.
                    let retry = match &self.backend {
                        InsertBackend::Exemplar(e)
                            if items[i].attempts < self.config.max_attempts
                                && rounds + 1 < self.config.max_filter_rounds.max(1) =>
                        {
                            let item = &items[i];
                            let mut rng = render_rng(item.row, item.attempts);
                            Some(e.render(
                                frame.image,
                                item.row,
                                item.occluders_near,
                                &item.tried,
                                &mut rng,
                            )?)
                        }
                        _ => None,
                    };
                    let item = &mut items[i];
                    match retry {
                        Some(Ok(again)) => {
                            let asset_id =
                                item.rendered.as_ref().ok().and_then(|r| r.asset_id.clone());
                            item.rejected.push(RejectedRender { asset_id, verdict });
                            item.attempts += 1;
                            item.tried.extend(again.asset_id.clone());
                            dropped.push(again.layer.rect);
                            item.rendered = Ok(again);
                            item.verdict = None;
                        }
                        other => {
                            item.status = InsertionStatus::FilteredOut;
                            item.reason = Some(match other {
                                Some(Err(skip)) => format!(
                                    "filter score {:.3} below threshold; not rendered again: {skip}",
                                    verdict.score
                                ),
                                _ => format!("filter score {:.3} below threshold", verdict.score),
                            });
                            item.verdict = Some(verdict);
                        }
                    }
                }
            }
            if dropped.is_empty() {
                break;
            }
            composite = compose_items(frame.image, &items, &mut existing);
            rounds += 1;
            if rounds >= self.config.max_filter_rounds.max(1) {
                break;
            }
            // Objects whose pixels a drop may have changed are judged again.
            for i in kept_indices(&items) {
                let touched = layer_of(&items[i])
                    .is_some_and(|l| dropped.iter().any(|d| d.intersect(&l.rect).is_some()));
                if touched {
                    items[i].verdict = None;
                }
            }
            if self.filter.is_none() {
                // Only visibility can change, and it only grows when objects are dropped.
                break;
            }
        }

        let (kept_order, composite) = composite;
        let mut generated = Vec::new();
        let mut reports = Vec::with_capacity(items.len());
        let mut kept_layers: Vec<(&Layer, &[f32])> = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let row = item.row;
            let planned = BBox::new(row.x0, row.y0, row.x1, row.y1);
            let mut report = InsertionReport {
                object_index: row.object_index,
                class: row.class.clone(),
                label: row.label.clone(),
                status: item.status,
                reason: item.reason.clone(),
                planned_bbox: [planned.x0, planned.y0, planned.x1, planned.y1],
                bbox: None,
                amodal_bbox: None,
                iou_with_plan: None,
                visible_fraction: None,
                asset_id: None,
                asset_class: None,
                substituted: false,
                filter: item.verdict.clone(),
                attempts: item.attempts,
                rejected: item.rejected.clone(),
                render: serde_json::Value::Null,
            };
            if let Ok(r) = &item.rendered {
                report.asset_id.clone_from(&r.asset_id);
                report.asset_class.clone_from(&r.asset_class);
                report.substituted = r.substituted;
                report.render = r.params.clone();
            }
            if item.status == InsertionStatus::Kept
                && let Ok(r) = &item.rendered
                && let Some(k) = kept_order.iter().position(|&i| i == index)
            {
                let placed = &composite.placed[k];
                let rect = r.layer.rect;
                if let Some(bbox) = tight_box(&rect, &placed.visible) {
                    let iou = bbox.iou(&planned);
                    report.bbox = Some([bbox.x0, bbox.y0, bbox.x1, bbox.y1]);
                    report.amodal_bbox =
                        tight_box(&rect, &r.layer.cover).map(|b| [b.x0, b.y0, b.x1, b.y1]);
                    report.iou_with_plan = Some(iou);
                    report.visible_fraction = Some(placed.visible_fraction());
                    let mut a = row.annotation();
                    a.bbox = bbox;
                    if self.config.store_masks {
                        a.mask = Some(visible_rle(&rect, &placed.visible, w, h));
                    }
                    let at = &mut a.attributes;
                    at.insert("backend".into(), self.backend.name().into());
                    if let Some(id) = &r.asset_id {
                        at.insert("asset_id".into(), id.clone().into());
                    }
                    if let Some(c) = &r.asset_class {
                        at.insert("asset_class".into(), c.clone().into());
                        at.insert("substituted".into(), r.substituted.into());
                    }
                    if let Some(blend) = r.params.get("blend") {
                        at.insert("blend".into(), blend.clone());
                    }
                    if let Some(hm) = r.params.get("harmonisation") {
                        at.insert(
                            "harmonisation".into(),
                            json!({
                                "l_shift": hm["l_shift"],
                                "contrast": hm["contrast"],
                                "a_shift": hm["a_shift"],
                                "b_shift": hm["b_shift"],
                            }),
                        );
                    }
                    at.insert("planned_bbox".into(), json!(report.planned_bbox));
                    at.insert("amodal_bbox".into(), json!(report.amodal_bbox));
                    at.insert("iou_with_plan".into(), json!(iou));
                    at.insert("visible_fraction".into(), json!(placed.visible_fraction()));
                    if let Some(v) = &item.verdict {
                        at.insert("filter_score".into(), json!(v.score));
                    }
                    generated.push(a);
                    kept_layers.push((&r.layer, placed.visible.as_slice()));
                }
            }
            reports.push(report);
        }

        // Existing objects that inserted ones now partly hide.
        let mut annotations: Vec<Annotation> = frame.annotations.to_vec();
        for a in &mut annotations {
            if a.ignore {
                continue;
            }
            let r = PixelRect::covering(&a.bbox, 0.0, w, h);
            if r.is_empty() {
                continue;
            }
            let mut covered = 0usize;
            for y in r.y0..r.y1 {
                for x in r.x0..r.x1 {
                    if kept_layers.iter().any(|(l, v)| {
                        x >= l.rect.x0
                            && x < l.rect.x1
                            && y >= l.rect.y0
                            && y < l.rect.y1
                            && v[l.rect.index(x, y)] >= 0.5
                    }) {
                        covered += 1;
                    }
                }
            }
            if covered > 0 {
                a.attributes.insert(
                    "covered_by_insertions".into(),
                    json!(covered as f64 / r.area() as f64),
                );
            }
        }
        annotations.extend(generated.iter().cloned());

        let count = |s: InsertionStatus| items.iter().filter(|i| i.status == s).count() as u64;
        let first = rows.first();
        let step = ProvenanceStep {
            operation: first.map_or_else(|| "insert_objects".to_string(), |r| r.operation.clone()),
            scenario: first.map(|r| r.scenario.clone()),
            seed: first.map(|r| r.seed),
            params: json!({
                "backend": self.backend.params(),
                "engine": self.config,
                "filter": self.filter.as_ref().map(|f| f.params()),
                "insertions": reports,
            }),
            tool_version: TOOL_VERSION.to_string(),
        };
        Ok(InsertOutcome {
            image: composite.image,
            annotations,
            generated,
            edit_mask: composite.edit_mask,
            kept: count(InsertionStatus::Kept),
            filtered_out: count(InsertionStatus::FilteredOut),
            not_rendered: count(InsertionStatus::NotRendered),
            rendered_again: items.iter().map(|i| u64::from(i.attempts - 1)).sum(),
            reports,
            step,
        })
    }
}

fn layer_of<'a>(item: &'a Item<'_>) -> Option<&'a Layer> {
    item.rendered.as_ref().ok().map(|r| &r.layer)
}

fn kept_indices(items: &[Item<'_>]) -> Vec<usize> {
    items
        .iter()
        .enumerate()
        .filter(|(_, i)| i.status == InsertionStatus::Kept && i.rendered.is_ok())
        .map(|(k, _)| k)
        .collect()
}

/// Composes the kept items; returns which item each placed layer belongs to, and the composite.
fn compose_items(
    image: &RgbImage,
    items: &[Item<'_>],
    existing: &mut ExistingObjects<'_>,
) -> (Vec<usize>, Composite) {
    let kept = kept_indices(items);
    let layers: Vec<&Layer> = kept.iter().filter_map(|&i| layer_of(&items[i])).collect();
    let composite = compose(image, &layers, existing);
    (kept, composite)
}
