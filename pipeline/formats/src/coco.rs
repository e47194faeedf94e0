//! COCO detection JSON: `images`, `annotations`, `categories`; boxes `[x, y, w, h]` in pixels.
//!
//! The top level is parsed with each entry kept as a JSON value and then parsed on its own, so
//! that one bad entry quarantines its frame and not the whole file.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use roadsynth_types::{Annotation, Attributes, BBox, Mask, QuarantineKind, Rle, RleCounts};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::files::{quarantine, read_input, syntax_error};
use crate::{FormatError, PendingAnnotation, PendingFrame, Scan, SourceLoc};

pub const SOURCE_FORMAT: &str = "coco";

#[derive(Deserialize)]
struct CocoFile {
    images: Vec<Value>,
    #[serde(default)]
    annotations: Vec<Value>,
    categories: Vec<Value>,
}

#[derive(Deserialize)]
struct CocoImage {
    id: u64,
    file_name: String,
    width: u32,
    height: u32,
    /// Everything else (license, `coco_url`, `CamVid`'s `semantic_label`, ...).
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[derive(Deserialize)]
struct CocoCategory {
    id: u64,
    name: String,
}

#[derive(Deserialize)]
struct CocoAnnotation {
    id: Option<Value>,
    image_id: u64,
    category_id: u64,
    bbox: [f64; 4],
    area: Option<Value>,
    #[serde(default)]
    iscrowd: u8,
    segmentation: Option<Value>,
    attributes: Option<Map<String, Value>>,
    /// Fields COCO does not define (tool-specific), kept as attributes.
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Segmentation {
    Polygons(Vec<Vec<f64>>),
    Rle { size: [u32; 2], counts: Counts },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Counts {
    Runs(Vec<u32>),
    Compressed(String),
}

/// Scans a COCO JSON file. Image `file_name`s are resolved against `images_root`, by default the
/// JSON's folder. Images that are listed without annotations are ingested as frames without
/// objects.
pub fn scan(
    json_path: &Path,
    images_root: Option<&Path>,
    split: &str,
) -> Result<Scan, FormatError> {
    let bytes = read_input(json_path)?;
    let json_dir = json_path.parent().unwrap_or(Path::new(""));
    let images_root = images_root.unwrap_or(json_dir);
    let mut scan = Scan::default();
    let file: CocoFile = match serde_json::from_slice(&bytes) {
        Ok(file) => file,
        Err(e) => {
            let position = (e.line() > 0).then(|| (e.line(), e.column()));
            scan.quarantined.push(syntax_error(
                json_path,
                position,
                split,
                format!("not a COCO JSON file: {e}"),
            ));
            return Ok(scan);
        }
    };
    let malformed =
        |reason: String| quarantine(json_path, None, split, QuarantineKind::Malformed, reason);

    let mut class_names: HashMap<u64, String> = HashMap::new();
    for (index, value) in file.categories.into_iter().enumerate() {
        match serde_json::from_value::<CocoCategory>(value) {
            Ok(category) => {
                class_names.insert(category.id, category.name);
            }
            // Annotations of this category are then quarantined as of an unknown class.
            Err(e) => scan
                .quarantined
                .push(malformed(format!("category #{index}: {e}"))),
        }
    }

    let mut frame_of_image: HashMap<u64, usize> = HashMap::new();
    let mut rejected_images: HashSet<u64> = HashSet::new();
    for (index, value) in file.images.into_iter().enumerate() {
        let raw_id = value.get("id").and_then(Value::as_u64);
        let image = match serde_json::from_value::<CocoImage>(value) {
            Ok(image) if !frame_of_image.contains_key(&image.id) => image,
            Ok(image) => {
                scan.quarantined.push(malformed(format!(
                    "image #{index}: image id {} is listed twice",
                    image.id
                )));
                continue;
            }
            Err(e) => {
                // Its annotations go with it rather than being reported as labels without image.
                rejected_images.extend(raw_id);
                scan.quarantined
                    .push(malformed(format!("image #{index}: {e}")));
                continue;
            }
        };
        frame_of_image.insert(image.id, scan.frames.len());
        scan.frames
            .push(pending_frame(image, json_path, images_root, split));
    }

    for (index, value) in file.annotations.into_iter().enumerate() {
        // Named by id where it has one: that is what a user can search the JSON for.
        let entry = match value.get("id") {
            Some(id) => format!("annotation id {id}"),
            None => format!("annotation #{index}"),
        };
        let raw_image_id = value.get("image_id").and_then(Value::as_u64);
        let frame_index = raw_image_id.and_then(|id| frame_of_image.get(&id).copied());
        let parsed = serde_json::from_value::<CocoAnnotation>(value);
        let Some(frame_index) = frame_index else {
            if raw_image_id.is_some_and(|id| rejected_images.contains(&id)) {
                continue;
            }
            scan.quarantined.push(match parsed {
                Ok(parsed) => quarantine(
                    json_path,
                    None,
                    split,
                    QuarantineKind::LabelWithoutImage,
                    format!(
                        "{entry} refers to image id {}, which `images` does not list",
                        parsed.image_id
                    ),
                ),
                Err(e) => malformed(format!("{entry}: {e}")),
            });
            continue;
        };
        let frame = &mut scan.frames[frame_index];
        let problem = |kind, reason: String| {
            quarantine(json_path, None, split, kind, format!("{entry}: {reason}"))
        };
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(e) => {
                frame
                    .label_errors
                    .push(problem(QuarantineKind::Malformed, e.to_string()));
                continue;
            }
        };
        let Some(class) = class_names.get(&parsed.category_id) else {
            let reason = format!("category id {} is not in `categories`", parsed.category_id);
            frame
                .label_errors
                .push(problem(QuarantineKind::UnknownClass, reason));
            continue;
        };
        match annotation(parsed, class) {
            Ok(annotation) => frame.annotations.push(PendingAnnotation {
                annotation,
                loc: SourceLoc::entry(json_path.to_path_buf(), entry),
            }),
            Err(reason) => frame
                .label_errors
                .push(problem(QuarantineKind::Malformed, reason)),
        }
    }
    tracing::debug!(
        frames = scan.frames.len(),
        quarantined = scan.quarantined.len(),
        "scanned COCO {}",
        json_path.display()
    );
    Ok(scan)
}

fn pending_frame(
    image: CocoImage,
    json_path: &Path,
    images_root: &Path,
    split: &str,
) -> PendingFrame {
    let mut frame = PendingFrame::new(
        split,
        SOURCE_FORMAT,
        images_root.join(&image.file_name),
        image.file_name,
    );
    frame.label_file = Some(json_path.to_path_buf());
    frame.expected_size = Some((image.width, image.height));
    frame
        .attributes
        .insert("coco_image_id".into(), image.id.into());
    for (key, value) in image.extra {
        match (key.as_str(), value) {
            ("semantic_label", Value::String(name)) => {
                frame.semantic_label_path = Some(images_root.join(&name));
                frame.semantic_label_name = Some(name);
            }
            (_, value) => {
                frame.attributes.insert(key, value);
            }
        }
    }
    frame
}

fn annotation(parsed: CocoAnnotation, class: &str) -> Result<Annotation, String> {
    let [x, y, w, h] = parsed.bbox;
    let mut annotation = Annotation::real(class, BBox::from_xywh(x, y, w, h));
    annotation.crowd = parsed.iscrowd != 0;
    annotation.mask = match parsed.segmentation {
        None | Some(Value::Null) => None,
        Some(value) => mask(value)?,
    };
    let mut attributes: Attributes = parsed.extra.into_iter().collect();
    attributes.extend(parsed.attributes.unwrap_or_default());
    if let Some(id) = parsed.id {
        attributes.insert("coco_id".into(), id);
    }
    if let Some(area) = parsed.area {
        attributes.insert("area".into(), area);
    }
    // Our own COCO exports carry origin and ignore in `attributes`: read them back, so an
    // export re-ingests as the same dataset (generated stays generated).
    if attributes
        .get("origin")
        .and_then(|o| o.get("kind"))
        .is_some()
    {
        let origin = attributes.remove("origin").unwrap_or_default();
        annotation.origin = serde_json::from_value(origin)
            .map_err(|e| format!("attributes.origin is not a roadsynth origin: {e}"))?;
    }
    if attributes.get("ignore") == Some(&Value::Bool(true)) {
        attributes.remove("ignore");
        annotation.ignore = true;
        annotation.crowd = false;
    }
    annotation.attributes = attributes;
    Ok(annotation)
}

fn mask(segmentation: Value) -> Result<Option<Mask>, String> {
    match serde_json::from_value::<Segmentation>(segmentation) {
        Ok(Segmentation::Polygons(polygons)) if polygons.is_empty() => Ok(None),
        Ok(Segmentation::Polygons(polygons)) => Ok(Some(Mask::Polygons(polygons))),
        Ok(Segmentation::Rle { size, counts }) => {
            let counts = match counts {
                Counts::Runs(runs) => RleCounts::Runs(runs),
                Counts::Compressed(text) => RleCounts::Compressed(text),
            };
            Ok(Some(Mask::Rle(Rle { size, counts })))
        }
        Err(_) => {
            Err("segmentation is neither a list of polygons nor an RLE {size, counts}".into())
        }
    }
}
