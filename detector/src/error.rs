use std::path::PathBuf;

use roadsynth_dataset::DatasetError;
use roadsynth_models::ModelError;

/// What can go wrong training or running the detector. Every variant that concerns a file names
/// it.
#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("dataset {}: {source}", path.display())]
    Dataset {
        path: PathBuf,
        #[source]
        source: DatasetError,
    },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{}: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The training configuration cannot be used (no classes, a class map naming an unknown
    /// class, an empty scale range, ...).
    #[error("training configuration: {0}")]
    Config(String),
    /// The backbone file is not the one the model was trained with.
    #[error(
        "backbone {}: sha256 is {found}, but the configuration expects {expected}",
        path.display()
    )]
    BackboneChanged {
        path: PathBuf,
        expected: String,
        found: String,
    },
    /// A weights or checkpoint file is unreadable or does not fit the configuration.
    #[error("weights {}: {reason}", path.display())]
    BadWeights { path: PathBuf, reason: String },
    /// The output folder of a training run already holds a model.
    #[error(
        "model folder {} already holds {file}; train into a new or empty folder",
        path.display()
    )]
    ModelDirNotEmpty { path: PathBuf, file: &'static str },
    /// A frame's image bytes cannot be decoded.
    #[error("dataset {}: frame {frame_id} ({image_name}): {reason}", dataset.display())]
    BadImage {
        dataset: PathBuf,
        frame_id: String,
        image_name: String,
        reason: String,
    },
    /// The split to train on holds no frames.
    #[error("dataset {}: split {split:?} has no frames to train on", dataset.display())]
    EmptySplit { dataset: PathBuf, split: String },
}

pub(crate) fn io_at(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DetectorError {
    let path = path.into();
    move |source| DetectorError::Io { path, source }
}

pub(crate) fn dataset_at(path: impl Into<PathBuf>) -> impl Fn(DatasetError) -> DetectorError {
    let path = path.into();
    move |source| DetectorError::Dataset {
        path: path.clone(),
        source,
    }
}
