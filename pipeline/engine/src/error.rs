use std::path::PathBuf;

/// What can stop the engine. Problems with one planned insertion or one vehicle (no fitting
/// asset, fully occluded, rejected by the filter) are not errors: they are reported per item and
/// the frame goes on without it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The frame and its side inputs do not fit together (a semantic-label image of another size,
    /// an empty image).
    #[error("frame: {0}")]
    Frame(String),
    /// A plan row cannot be rendered at all (non-finite box, rows of different frames mixed).
    #[error("plan row {object_index} of frame {frame_id}: {reason}")]
    Plan {
        frame_id: String,
        object_index: u32,
        reason: String,
    },
    /// A configuration value is out of range.
    #[error("configuration: {0}")]
    Config(String),
    #[error("asset bank {}: {source}", path.display())]
    Bank {
        path: PathBuf,
        #[source]
        source: roadsynth_assets::AssetError,
    },
    #[error("asset {id}: {source}")]
    Asset {
        id: String,
        #[source]
        source: roadsynth_assets::AssetError,
    },
    #[error("OpenCV {context}: {source}")]
    OpenCv {
        context: &'static str,
        #[source]
        source: opencv::Error,
    },
    #[error(transparent)]
    Model(#[from] roadsynth_models::ModelError),
    #[error(transparent)]
    Diffusion(#[from] roadsynth_diffusion::DiffusionError),
}

/// Attaches what OpenCV was doing to its error.
pub(crate) trait CvContext<T> {
    fn cv(self, context: &'static str) -> Result<T, EngineError>;
}

impl<T> CvContext<T> for Result<T, opencv::Error> {
    fn cv(self, context: &'static str) -> Result<T, EngineError> {
        self.map_err(|source| EngineError::OpenCv { context, source })
    }
}
