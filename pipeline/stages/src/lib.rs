//! Pipeline stages as components, each with its config beside it: augment (plan, render, vehicle edits, weather, filter, write).
//!
//! A stage is a config struct and the function that runs it over datasets. Stages stream through
//! [`flow`]: bounded channels (by items and bytes), a worker pool, and an ordered writer. Stages
//! that render link OpenCV and ONNX Runtime (through `roadsynth-engine` and `roadsynth-models`), so
//! only the `roadsynth-worker` binary depends on this crate; `roadsynth` hands their command lines
//! over.

pub mod augment;
pub mod flow;
pub mod render;

pub use augment::{
    AugmentConfig, AugmentSummary, ShardTarget, VariantEvent, VariantObserver, augment,
};
pub use flow::{FlowError, FlowOptions};
pub use render::{RenderSettings, Renderer, RendererKind};
pub use roadsynth_engine::BlendMode;

/// Why a stage stopped. Problems with single frames do not stop a stage: they are quarantined.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("dataset {}: {source}", path.display())]
    Dataset {
        path: std::path::PathBuf,
        #[source]
        source: Box<roadsynth_dataset::DatasetError>,
    },
    #[error(transparent)]
    Plan(Box<roadsynth_placement::PlanError>),
    #[error(transparent)]
    Model(#[from] roadsynth_models::ModelError),
    #[error(transparent)]
    Engine(Box<roadsynth_engine::EngineError>),
    #[error(transparent)]
    Flow(#[from] flow::FlowError),
    #[error("{0}")]
    Config(String),
    #[error("cannot start a thread: {0}")]
    Thread(#[source] std::io::Error),
}

impl From<roadsynth_engine::EngineError> for StageError {
    fn from(e: roadsynth_engine::EngineError) -> Self {
        StageError::Engine(Box::new(e))
    }
}

impl From<roadsynth_placement::PlanError> for StageError {
    fn from(e: roadsynth_placement::PlanError) -> Self {
        StageError::Plan(Box::new(e))
    }
}
