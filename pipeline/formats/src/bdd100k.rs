//! BDD100K detection labels: a JSON list of frames `{name, attributes, timestamp, videoName,
//! labels}`, each label `{id, category, attributes, box2d: {x1, y1, x2, y2}}` in pixels.
//!
//! Labels without `box2d` (lane and drivable-area polygons) are not objects and are skipped.

use std::path::Path;

use roadsynth_types::{Annotation, Attributes, BBox, QuarantineKind};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::files::{quarantine, read_input, syntax_error};
use crate::{FormatError, PendingAnnotation, PendingFrame, Scan, SourceLoc};

pub const SOURCE_FORMAT: &str = "bdd100k";

#[derive(Deserialize)]
struct BddFrame {
    name: String,
    /// `weather`, `scene`, `timeofday`.
    #[serde(default)]
    attributes: Map<String, Value>,
    /// Milliseconds into the video.
    timestamp: Option<f64>,
    #[serde(rename = "videoName")]
    video_name: Option<String>,
    labels: Option<Vec<Value>>,
    /// Other frame fields (`frameIndex`, ...), kept as attributes.
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[derive(Deserialize)]
struct BddLabel {
    id: Option<Value>,
    category: String,
    #[serde(default)]
    attributes: Map<String, Value>,
    box2d: Box2d,
    /// Other label fields (`manualShape`, ...), kept as attributes.
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[derive(Deserialize)]
struct Box2d {
    x1: f64,
    y1: f64,
    x2: f64,
    y2: f64,
}

/// Scans a BDD100K labels JSON; images are `images_root/<name>`, by default beside the JSON.
pub fn scan(
    labels_json: &Path,
    images_root: Option<&Path>,
    split: &str,
) -> Result<Scan, FormatError> {
    let bytes = read_input(labels_json)?;
    let images_root = images_root.unwrap_or(labels_json.parent().unwrap_or(Path::new("")));
    let mut scan = Scan::default();
    let frames: Vec<Value> = match serde_json::from_slice(&bytes) {
        Ok(frames) => frames,
        Err(e) => {
            let position = (e.line() > 0).then(|| (e.line(), e.column()));
            let reason = format!("not a BDD100K labels JSON (a list of frames): {e}");
            scan.quarantined
                .push(syntax_error(labels_json, position, split, reason));
            return Ok(scan);
        }
    };
    for (index, value) in frames.into_iter().enumerate() {
        match serde_json::from_value::<BddFrame>(value) {
            Ok(frame) => scan
                .frames
                .push(pending_frame(frame, labels_json, images_root, split)),
            Err(e) => scan.quarantined.push(quarantine(
                labels_json,
                None,
                split,
                QuarantineKind::Malformed,
                format!("frame #{index}: {e}"),
            )),
        }
    }
    tracing::debug!(
        frames = scan.frames.len(),
        quarantined = scan.quarantined.len(),
        "scanned BDD100K {}",
        labels_json.display()
    );
    Ok(scan)
}

fn pending_frame(
    frame: BddFrame,
    labels_json: &Path,
    images_root: &Path,
    split: &str,
) -> PendingFrame {
    let mut pending = PendingFrame::new(
        split,
        SOURCE_FORMAT,
        images_root.join(&frame.name),
        frame.name.clone(),
    );
    pending.label_file = Some(labels_json.to_path_buf());
    pending.sequence = frame.video_name;
    pending.timestamp_ms = frame.timestamp;
    pending.attributes = frame.extra.into_iter().chain(frame.attributes).collect();
    for (index, value) in frame.labels.unwrap_or_default().into_iter().enumerate() {
        if value.get("box2d").is_none_or(Value::is_null) {
            continue;
        }
        let entry = match value.get("id") {
            Some(id) => format!("frame {} label id {id}", frame.name),
            None => format!("frame {} label #{index}", frame.name),
        };
        let annotation = serde_json::from_value::<BddLabel>(value)
            .map_err(|e| e.to_string())
            .and_then(annotation);
        match annotation {
            Ok(annotation) => pending.annotations.push(PendingAnnotation {
                annotation,
                loc: SourceLoc::entry(labels_json.to_path_buf(), entry),
            }),
            Err(reason) => pending.label_errors.push(quarantine(
                labels_json,
                None,
                split,
                QuarantineKind::Malformed,
                format!("{entry}: {reason}"),
            )),
        }
    }
    pending
}

fn annotation(label: BddLabel) -> Result<Annotation, String> {
    let Box2d { x1, y1, x2, y2 } = label.box2d;
    let mut annotation = Annotation::real(label.category, BBox::new(x1, y1, x2, y2));
    let mut attributes: Attributes = label.extra.into_iter().chain(label.attributes).collect();
    annotation.occluded = take_flag(&mut attributes, "occluded")?.map(u8::from);
    annotation.truncated =
        take_flag(&mut attributes, "truncated")?.map(|t| if t { 1.0 } else { 0.0 });
    annotation.crowd = take_flag(&mut attributes, "crowd")?.unwrap_or(false);
    if let Some(id) = label.id {
        attributes.insert("bdd_id".into(), id);
    }
    annotation.attributes = attributes;
    Ok(annotation)
}

/// Removes a boolean attribute that has a field of its own in [`Annotation`].
fn take_flag(attributes: &mut Attributes, key: &str) -> Result<Option<bool>, String> {
    match attributes.remove(key) {
        None => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(flag)),
        Some(other) => Err(format!("attribute `{key}` is not a boolean: {other}")),
    }
}
