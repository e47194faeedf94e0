//! Video ingest through OpenCV: every Nth frame of a clip, with timestamps.
//!
//! Video frames have no encoded image of their own, so each kept frame is encoded once as JPEG
//! (quality [`JPEG_QUALITY`]); the provenance of every frame records that encoding, so nobody
//! mistakes it for a camera's original bytes.

use std::path::Path;

use opencv::core::{Mat, Vector};
use opencv::prelude::*;
use opencv::{imgcodecs, videoio};
use roadsynth_types::{
    Attributes, Frame, FrameId, FrameRecord, ImageFormat, Provenance, ProvenanceStep,
    QuarantineKind, Quarantined, TOOL_VERSION,
};

/// JPEG quality of stored video frames: visually lossless, about a fifth of PNG's size.
pub const JPEG_QUALITY: i32 = 95;

pub const SOURCE_FORMAT: &str = "video";

#[derive(Debug, Clone)]
pub struct VideoOptions {
    pub split: String,
    /// Keep every Nth frame (1 keeps all).
    pub every: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VideoSummary {
    /// Frames decoded from the clip.
    pub decoded: u64,
    /// Frames kept and handed to the sink.
    pub kept: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("{path}: {source}")]
    OpenCv {
        path: String,
        #[source]
        source: opencv::Error,
    },
}

/// Decodes `path` and hands every `every`-th frame to `sink`, in order. A clip that cannot be opened
/// becomes one quarantined item; the sink's own errors stop the decode and are returned.
pub fn ingest_video<E: From<VideoError>>(
    path: &Path,
    options: &VideoOptions,
    mut sink: impl FnMut(Result<FrameRecord, Quarantined>) -> Result<(), E>,
) -> Result<VideoSummary, E> {
    let display = path.display().to_string();
    let cv = |source| VideoError::OpenCv {
        path: display.clone(),
        source,
    };
    let quarantine = |reason: String| Quarantined {
        file: display.clone(),
        line: None,
        column: None,
        split: options.split.clone(),
        kind: QuarantineKind::BadImage,
        reason,
    };
    if !path.is_file() {
        sink(Err(quarantine("video file not found".into())))?;
        return Ok(VideoSummary::default());
    }
    let mut capture =
        videoio::VideoCapture::from_file(&display, videoio::CAP_FFMPEG).map_err(cv)?;
    if !capture.is_opened().map_err(cv)? {
        sink(Err(quarantine(
            "OpenCV cannot open or decode this video".into(),
        )))?;
        return Ok(VideoSummary::default());
    }
    let fps = capture.get(videoio::CAP_PROP_FPS).map_err(cv)?;
    // What the container's header says; a clip cut short decodes its first frames and then
    // simply ends, with nothing but FFmpeg's log to say so.
    let announced = capture.get(videoio::CAP_PROP_FRAME_COUNT).map_err(cv)?;
    let stem = path
        .file_stem()
        .map_or_else(|| "video".into(), |s| s.to_string_lossy().into_owned());
    let sequence = path.file_name().map(|s| s.to_string_lossy().into_owned());
    let absolute = std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string();
    let every = u64::from(options.every.max(1));
    let params = Vector::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, JPEG_QUALITY]);

    let mut summary = VideoSummary::default();
    let mut mat = Mat::default();
    // grab() advances without converting the frame; only kept frames are retrieved and encoded.
    while capture.grab().map_err(cv)? {
        let index = summary.decoded;
        summary.decoded += 1;
        if index % every != 0 {
            continue;
        }
        let timestamp_ms = if fps > 0.0 {
            index as f64 * 1000.0 / fps
        } else {
            capture.get(videoio::CAP_PROP_POS_MSEC).map_err(cv)?
        };
        if !capture.retrieve(&mut mat, 0).map_err(cv)? || mat.empty() {
            sink(Err(Quarantined {
                reason: format!("frame {index} could not be decoded"),
                ..quarantine(String::new())
            }))?;
            continue;
        }
        let mut encoded = Vector::<u8>::new();
        imgcodecs::imencode(".jpg", &mat, &mut encoded, &params).map_err(cv)?;
        let image = encoded.to_vec();
        let mut attributes = Attributes::new();
        attributes.insert("frame_index".into(), index.into());
        let record = FrameRecord {
            frame: Frame {
                id: FrameId::from_image_bytes(&image),
                split: options.split.clone(),
                source_uri: format!("{absolute}#t={timestamp_ms:.3}ms"),
                image_name: format!("{stem}_{index:06}.jpg"),
                image_format: ImageFormat::Jpeg,
                width: mat.cols() as u32,
                height: mat.rows() as u32,
                camera: None,
                semantic_label: None,
                sequence: sequence.clone(),
                timestamp_ms: Some(timestamp_ms),
                attributes,
                provenance: Provenance {
                    source_format: SOURCE_FORMAT.into(),
                    parent: None,
                    steps: vec![ProvenanceStep {
                        operation: "video_frame_encode".into(),
                        scenario: None,
                        seed: None,
                        params: serde_json::json!({"codec": "jpeg", "quality": JPEG_QUALITY, "frame_index": index, "fps": fps}),
                        tool_version: TOOL_VERSION.into(),
                    }],
                },
            },
            annotations: Vec::new(),
            image: Some(image),
            semantic_label: None,
        };
        summary.kept += 1;
        sink(Ok(record))?;
    }
    if announced.is_finite() && announced > 0.0 {
        // Counts from a header can be estimates (duration times rate): a few frames of slack.
        let announced = announced.round() as u64;
        if summary.decoded + (announced / 50).max(2) < announced {
            sink(Err(quarantine(format!(
                "the clip ends after {} of the {announced} frames its header announces \
                 (truncated or corrupt); the frames before were kept",
                summary.decoded
            ))))?;
        }
    }
    Ok(summary)
}
