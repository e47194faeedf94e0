//! KITTI object detection: `image_2/<id>.png`, `label_2/<id>.txt`, `calib/<id>.txt`.
//!
//! A label line has 15 fields (16 in result files, with a score): `type truncated occluded alpha
//! left top right bottom height width length x y z rotation_y`. `DontCare` lines mark regions to
//! ignore. `-1` for truncated or occluded means "not given" (`DontCare`).

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::Path;

use roadsynth_types::{Annotation, BBox, Camera, Kitti3d, QuarantineKind, Quarantined};

use crate::files::{
    IMAGE_EXTENSIONS, has_extension, line_number, quarantine, require_dir, sorted_files,
};
use crate::{FormatError, PendingAnnotation, PendingFrame, Scan, SourceLoc};

pub const SOURCE_FORMAT: &str = "kitti";

/// Height of KITTI's camera above the road, metres (Geiger et al. 2012, the recording platform).
const CAMERA_HEIGHT_M: f64 = 1.65;

const FIELD_NAMES: [&str; 16] = [
    "type",
    "truncated",
    "occluded",
    "alpha",
    "left",
    "top",
    "right",
    "bottom",
    "height",
    "width",
    "length",
    "x",
    "y",
    "z",
    "rotation_y",
    "score",
];

/// Scans a KITTI object folder (`root` holds `image_2/` and, usually, `label_2/` and `calib/`).
///
/// Without a `label_2/` folder the images are ingested unlabelled; with one, an image without its
/// label file is quarantined (an unlabelled image would teach that its objects are background).
/// Likewise without `calib/` frames have no camera, and with it a missing or bad calibration
/// quarantines the frame. Frames come sorted by file name.
pub fn scan(root: &Path, split: &str) -> Result<Scan, FormatError> {
    require_dir(root)?;
    let image_dir = root.join("image_2");
    if !image_dir.is_dir() {
        return Err(FormatError::NotADataset {
            path: root.to_path_buf(),
            format: SOURCE_FORMAT,
            reason: "it has no image_2/ folder".into(),
        });
    }
    let label_dir = root.join("label_2");
    let labels_present = label_dir.is_dir();
    let calib_dir = root.join("calib");
    let calib_present = calib_dir.is_dir();

    let images: Vec<_> = sorted_files(&image_dir)?
        .into_iter()
        .filter(|p| has_extension(p, IMAGE_EXTENSIONS))
        .collect();
    let mut scan = Scan::default();

    if labels_present {
        let image_stems: HashSet<OsString> = images
            .iter()
            .filter_map(|p| p.file_stem().map(OsString::from))
            .collect();
        for label in sorted_files(&label_dir)?
            .into_iter()
            .filter(|p| has_extension(p, &["txt"]))
        {
            if !label
                .file_stem()
                .is_some_and(|stem| image_stems.contains(stem))
            {
                scan.quarantined.push(quarantine(
                    &label,
                    None,
                    split,
                    QuarantineKind::LabelWithoutImage,
                    "no image with this name in image_2/",
                ));
            }
        }
    }

    for image_path in images {
        let (Some(stem), Some(file_name)) = (image_path.file_stem(), image_path.file_name()) else {
            continue;
        };
        let mut label_name = stem.to_os_string();
        label_name.push(".txt");
        let image_name = format!("image_2/{}", file_name.to_string_lossy());
        let mut frame = PendingFrame::new(split, SOURCE_FORMAT, image_path.clone(), image_name);

        if labels_present {
            let label_path = label_dir.join(&label_name);
            if !label_path.is_file() {
                scan.quarantined.push(quarantine(
                    &image_path,
                    None,
                    split,
                    QuarantineKind::Malformed,
                    "image has no label file",
                ));
                continue;
            }
            parse_label_file(&label_path, &mut frame);
            frame.label_file = Some(label_path);
        }
        if calib_present {
            match read_camera(&calib_dir.join(&label_name), split) {
                Ok(camera) => frame.camera = Some(camera),
                Err(problem) => frame.label_errors.push(problem),
            }
        }
        scan.frames.push(frame);
    }
    tracing::debug!(
        frames = scan.frames.len(),
        quarantined = scan.quarantined.len(),
        "scanned KITTI {}",
        root.display()
    );
    Ok(scan)
}

/// Adds the annotations of a label file to `frame`, and a label error for each bad line.
fn parse_label_file(label_path: &Path, frame: &mut PendingFrame) {
    let text = match std::fs::read_to_string(label_path) {
        Ok(text) => text,
        Err(e) => {
            let reason = format!("cannot read label file: {e}");
            frame.label_errors.push(quarantine(
                label_path,
                None,
                &frame.split,
                QuarantineKind::Malformed,
                reason,
            ));
            return;
        }
    };
    for (index, line_text) in text.lines().enumerate() {
        let fields: Vec<&str> = line_text.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let line = line_number(index);
        match parse_label_line(&fields) {
            Ok(annotation) => frame.annotations.push(PendingAnnotation {
                annotation,
                loc: SourceLoc::line(label_path.to_path_buf(), line),
            }),
            Err(reason) => frame.label_errors.push(quarantine(
                label_path,
                Some(line),
                &frame.split,
                QuarantineKind::BadLabelLine,
                reason,
            )),
        }
    }
}

/// One label line, split into fields. Box coordinates are checked later, against the image.
fn parse_label_line(fields: &[&str]) -> Result<Annotation, String> {
    if !(15..=16).contains(&fields.len()) {
        return Err(format!(
            "expected 15 fields (16 with a score), found {}",
            fields.len()
        ));
    }
    let class = fields[0];
    // values[i] is field i; values[0] (the type) is unused.
    let mut values = vec![0.0; fields.len()];
    for i in 1..fields.len() {
        let value: f64 = fields[i].parse().map_err(|_| {
            format!(
                "field `{}` is not a number: {:?}",
                FIELD_NAMES[i], fields[i]
            )
        })?;
        let is_box_field = (4..=7).contains(&i);
        if !value.is_finite() && !is_box_field {
            return Err(format!(
                "field `{}` is not finite: {:?}",
                FIELD_NAMES[i], fields[i]
            ));
        }
        values[i] = value;
    }
    let truncated = match values[1] {
        -1.0 => None,
        t if (0.0..=1.0).contains(&t) => Some(t as f32),
        t => {
            return Err(format!(
                "field `truncated` must be in 0..=1 (or -1), found {t}"
            ));
        }
    };
    let occluded = match values[2] {
        -1.0 => None,
        o if [0.0, 1.0, 2.0, 3.0].contains(&o) => Some(o as u8),
        o => {
            return Err(format!(
                "field `occluded` must be 0, 1, 2 or 3 (or -1), found {o}"
            ));
        }
    };
    let mut annotation =
        Annotation::real(class, BBox::new(values[4], values[5], values[6], values[7]));
    annotation.truncated = truncated;
    annotation.occluded = occluded;
    annotation.ignore = class == "DontCare";
    annotation.kitti = Some(Kitti3d {
        alpha: values[3],
        dimensions_hwl: [values[8], values[9], values[10]],
        location_xyz: [values[11], values[12], values[13]],
        rotation_y: values[14],
        score: values.get(15).copied(),
    });
    Ok(annotation)
}

/// The camera of image 2 from a calibration file's `P2` line (`P2: ` and 12 numbers, row-major).
fn read_camera(calib_path: &Path, split: &str) -> Result<Camera, Quarantined> {
    let bad = |line: Option<u32>, reason: String| {
        quarantine(
            calib_path,
            line,
            split,
            QuarantineKind::BadCalibration,
            reason,
        )
    };
    let text = std::fs::read_to_string(calib_path)
        .map_err(|e| bad(None, format!("cannot read calibration: {e}")))?;
    for (index, line_text) in text.lines().enumerate() {
        let mut fields = line_text.split_whitespace();
        // KITTI object calibration writes `P2:`, the tracking benchmark `P2`.
        if fields.next().map(|key| key.trim_end_matches(':')) != Some("P2") {
            continue;
        }
        let line = Some(line_number(index));
        let values: Vec<f64> = fields
            .map(|v| v.parse::<f64>().ok().filter(|v| v.is_finite()))
            .collect::<Option<_>>()
            .ok_or_else(|| bad(line, "P2 has a value that is not a finite number".into()))?;
        let projection: [f64; 12] = values
            .as_slice()
            .try_into()
            .map_err(|_| bad(line, format!("P2 needs 12 numbers, found {}", values.len())))?;
        return Ok(Camera {
            height_m: Some(CAMERA_HEIGHT_M),
            ..Camera::from_projection(projection)
        });
    }
    Err(bad(None, "no P2 line".into()))
}
