use std::path::PathBuf;

/// A problem that stops a whole ingest. Everything about single items (a bad label line, a broken
/// image, malformed JSON) is quarantined instead.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("input {} does not exist", .path.display())]
    NotFound { path: PathBuf },
    #[error("{} is not a {format} dataset: {reason}", .path.display())]
    NotADataset {
        path: PathBuf,
        format: &'static str,
        reason: String,
    },
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
