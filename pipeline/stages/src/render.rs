//! The render stage's components: the insertion engine (exemplar compositing, plain paste or
//! diffusion), the vehicle editor and the detector filter, configured once per run and built once
//! per worker thread (ONNX Runtime sessions are not shared between threads).

use std::path::PathBuf;
use std::sync::Arc;

use image::{GrayImage, RgbImage};
use roadsynth_diffusion::{InpaintModel, ModelOptions};
use roadsynth_engine::{
    BlendMode, DetectorFilter, DiffusionEditConfig, DiffusionInsertConfig, DiffusionInserter,
    EditOutcome, EngineError, ExemplarCompositor, ExemplarConfig, ExemplarLibrary, FilterConfig,
    FrameInput, InsertBackend, InsertConfig, InsertOutcome, InsertionEngine, NaiveConfig,
    NaivePaste, VehicleEditConfig, VehicleEditor, bank_classes_for,
};
use roadsynth_models::{CocoDetector, VehicleSegmenter};
use roadsynth_placement::PlanRow;
use roadsynth_scenario::settings::{EditVehicles, Operation, Scenario};
use roadsynth_types::Annotation;
use serde::{Deserialize, Serialize};

use crate::StageError;

/// How planned insertions are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RendererKind {
    /// Real cut-outs from the asset bank, harmonised, blended, shadowed (the default).
    #[default]
    Exemplar,
    /// The baseline: the same cut-outs pasted with plain alpha, nothing else.
    Plain,
    /// Stable Diffusion inpainting of the planned box (needs `--diffusion-model`).
    Diffusion,
}

impl RendererKind {
    pub const NAMES: [&'static str; 3] = ["exemplar", "plain", "diffusion"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "exemplar" => Some(RendererKind::Exemplar),
            "plain" => Some(RendererKind::Plain),
            "diffusion" => Some(RendererKind::Diffusion),
            _ => None,
        }
    }
}

/// The render stage's settings: resolved once per run, shared by the worker threads.
#[derive(Debug, Clone)]
pub struct RenderSettings {
    pub kind: RendererKind,
    /// How the exemplar renderer blends cut-outs into the frame.
    pub blend: BlendMode,
    /// Cut-outs, loaded once (they are read-only and shared).
    pub library: Option<Arc<ExemplarLibrary>>,
    pub assets: Option<PathBuf>,
    pub diffusion_model: Option<PathBuf>,
    pub detector: Option<PathBuf>,
    pub filter: FilterConfig,
    pub vehicle_model: Option<PathBuf>,
    /// The scenario inserts objects / edits vehicles: build only the components it needs.
    pub inserts: bool,
    pub edits_vehicles: bool,
}

impl RenderSettings {
    pub fn from_args(args: &crate::AugmentConfig, scenario: &Scenario) -> Result<Self, StageError> {
        let inserts = scenario
            .operations
            .iter()
            .any(|op| matches!(op, Operation::InsertObjects(_)));
        let edits_vehicles = scenario
            .operations
            .iter()
            .any(|op| matches!(op, Operation::EditVehicles(_)));
        let scenario_assets = scenario.operations.iter().find_map(|op| match op {
            Operation::InsertObjects(i) => i.assets.clone(),
            _ => None,
        });
        let assets = args.assets.clone().or(scenario_assets);
        let needs_assets = inserts && args.renderer != RendererKind::Diffusion;
        let library = match (&assets, needs_assets) {
            (Some(dir), true) => {
                // Only cut-outs that the scenario's classes can be drawn from are decoded.
                let wanted = bank_classes_for(
                    scenario
                        .operations
                        .iter()
                        .filter_map(|op| match op {
                            Operation::InsertObjects(i) => Some(i),
                            _ => None,
                        })
                        .flat_map(|i| i.classes.iter().map(|c| c.name.as_str())),
                );
                let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
                let library = ExemplarLibrary::open(dir, Some(&wanted))?;
                if library.is_empty() {
                    return Err(StageError::Config(format!(
                        "asset bank {} has no cut-outs of the scenario's classes or their stand-ins ({})",
                        dir.display(),
                        wanted.join(", ")
                    )));
                }
                Some(Arc::new(library))
            }
            (None, true) => {
                return Err(StageError::Config(format!(
                    "scenario {} inserts objects: give an asset bank with --assets (build one with `roadsynth assets build`) or `assets:` in the scenario",
                    scenario.name
                )));
            }
            _ => None,
        };
        if inserts && args.renderer == RendererKind::Diffusion && args.diffusion_model.is_none() {
            return Err(StageError::Config(
                "the diffusion renderer needs a diffusion model folder".into(),
            ));
        }
        Ok(Self {
            kind: args.renderer,
            blend: args.blend,
            library,
            assets,
            diffusion_model: args.diffusion_model.clone(),
            detector: args.detector.clone(),
            filter: FilterConfig {
                threshold: args.filter_threshold,
                ..FilterConfig::default()
            },
            vehicle_model: args.vehicle_model.clone(),
            inserts,
            edits_vehicles,
        })
    }

    /// What rendered the frames, for the dataset's provenance.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "renderer": self.kind,
            "blend": (self.kind == RendererKind::Exemplar).then_some(self.blend),
            "assets": self.assets,
            "diffusion_model": self.diffusion_model,
            "filter": self.detector.as_ref().map(|d| serde_json::json!({
                "detector": d,
                "config": self.filter,
            })),
            "vehicle_model": self.vehicle_model,
        })
    }
}

/// One worker thread's engines.
#[derive(Debug)]
pub struct Renderer {
    inserter: Option<InsertionEngine>,
    vehicles: Option<VehicleEditor>,
}

fn load_segmenter(path: Option<&PathBuf>) -> Result<Option<VehicleSegmenter>, String> {
    path.map(|p| {
        VehicleSegmenter::load_with_threads(p, Some(1))
            .map_err(|e| format!("loading vehicle segmenter: {e}"))
    })
    .transpose()
}

fn load_diffusion(path: &std::path::Path) -> Result<InpaintModel, String> {
    InpaintModel::load(
        path,
        &ModelOptions {
            threads: Some(1),
            ..ModelOptions::default()
        },
    )
    .map_err(|e| format!("loading diffusion model {}: {e}", path.display()))
}

impl Renderer {
    /// Builds the engines `settings` call for. Errors are strings so a worker that cannot start
    /// reports the same reason for every frame it was given.
    pub fn new(settings: &RenderSettings) -> Result<Self, String> {
        let engine = |e: EngineError| e.to_string();
        let inserter = if settings.inserts {
            let backend = match settings.kind {
                RendererKind::Exemplar | RendererKind::Plain => {
                    let library = settings
                        .library
                        .clone()
                        .ok_or_else(|| "no asset bank loaded".to_string())?;
                    if settings.kind == RendererKind::Exemplar {
                        InsertBackend::Exemplar(
                            ExemplarCompositor::new(
                                library,
                                ExemplarConfig {
                                    blend: settings.blend,
                                    ..ExemplarConfig::standard()
                                },
                            )
                            .map_err(engine)?,
                        )
                    } else {
                        InsertBackend::Naive(
                            NaivePaste::new(library, NaiveConfig::default()).map_err(engine)?,
                        )
                    }
                }
                RendererKind::Diffusion => {
                    let path = settings
                        .diffusion_model
                        .as_ref()
                        .ok_or_else(|| "no diffusion model given".to_string())?;
                    InsertBackend::Diffusion(Box::new(
                        DiffusionInserter::new(
                            load_diffusion(path)?,
                            load_segmenter(settings.vehicle_model.as_ref())?,
                            DiffusionInsertConfig::default(),
                        )
                        .map_err(engine)?,
                    ))
                }
            };
            let mut engine_ =
                InsertionEngine::new(backend, InsertConfig::default()).map_err(engine)?;
            if let Some(path) = &settings.detector {
                let detector = CocoDetector::load_with_threads(path, Some(1))
                    .map_err(|e| format!("loading detector: {e}"))?;
                engine_ = engine_.with_filter(Box::new(
                    DetectorFilter::new(detector, settings.filter.clone()).map_err(engine)?,
                ));
            }
            Some(engine_)
        } else {
            None
        };
        let vehicles = if settings.edits_vehicles {
            let mut editor = VehicleEditor::new(
                VehicleEditConfig::default(),
                load_segmenter(settings.vehicle_model.as_ref())?,
            )
            .map_err(engine)?;
            if let Some(path) = &settings.diffusion_model {
                editor =
                    editor.with_diffusion(load_diffusion(path)?, DiffusionEditConfig::default());
            }
            Some(editor)
        } else {
            None
        };
        Ok(Self { inserter, vehicles })
    }

    /// Renders one frame variant's plan rows.
    pub fn insert(
        &mut self,
        image: &RgbImage,
        annotations: &[Annotation],
        semantic: Option<&GrayImage>,
        rows: &[PlanRow],
    ) -> Result<InsertOutcome, StageError> {
        let engine = self
            .inserter
            .as_mut()
            .ok_or_else(|| StageError::Config("no insertion engine configured".into()))?;
        Ok(engine.insert(
            FrameInput::new(image, annotations).with_semantic(semantic),
            rows,
        )?)
    }

    /// Applies one `edit_vehicles` operation.
    pub fn edit_vehicles(
        &mut self,
        image: &RgbImage,
        annotations: &[Annotation],
        semantic: Option<&GrayImage>,
        settings: &EditVehicles,
        scenario: &str,
        seed: u64,
    ) -> Result<EditOutcome, StageError> {
        let editor = self
            .vehicles
            .as_mut()
            .ok_or_else(|| StageError::Config("no vehicle editor configured".into()))?;
        Ok(editor.edit(
            FrameInput::new(image, annotations).with_semantic(semantic),
            settings,
            scenario,
            seed,
        )?)
    }
}
