use std::path::PathBuf;

/// Why a report could not be written. Input problems name the arm, seed, test set or class they
/// are about; output problems name the file.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", .path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The experiment is incomplete or contradicts itself (a missing arm, a test set one model
    /// was not evaluated on, a comparison whose numbers are not those of the reports it names).
    #[error("experiment {run_id:?}: {reason}")]
    Input { run_id: String, reason: String },
    #[error("experiment {run_id:?}: example {caption:?}: not a readable PNG or JPEG: {reason}")]
    Image {
        run_id: String,
        caption: String,
        reason: String,
    },
    #[error("drawing plot {plot:?}: {reason}")]
    Plot { plot: String, reason: String },
    #[error("run id {run_id:?} cannot name a report folder: {reason}")]
    RunId { run_id: String, reason: String },
}
