//! Run recordings written here and read back with the same-version Rerun (Python SDK 0.36.3 and
//! its CLI): entity paths, per-timeline counts under the rate limits, the annotation context's
//! classes and colours, and what a live viewer receives.

use std::collections::BTreeMap;
use std::error::Error;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use image::{GrayImage, Luma, Rgb, RgbImage};
use roadsynth_inspect::{
    AugmentedFrame, ImageRef, InspectError, PLANNED_COLOUR, PREDICTED_COLOUR, Prediction,
    REAL_COLOUR, RateLimit, RecordingConfig, RunRecording, WeatherMap, paths, timelines,
};
use roadsynth_types::{Annotation, BBox, Origin};
use serde_json::Value;

type TestResult = Result<(), Box<dyn Error>>;

/// Reads an `.rrd` with the Rerun SDK's reader and prints one JSON object a row: entity, whether
/// static, its sequence timelines, and each non-null component (blobs summarised as length and
/// first bytes, so the JSON stays small).
const READ_BACK: &str = r#"
import json, sys
from rerun.experimental import RrdReader

def blobs(column):
    """Rows of a Blob column (lists of byte lists) as lengths and first bytes, not as ints."""
    out = []
    for row in column:
        if not row.is_valid:
            out.append(None)
            continue
        out.append([
            {"bytes": len(b.values), "head": bytes(b.values.slice(0, 4).to_pylist()).hex()}
            for b in row.values
        ])
    return out

rows = []
for chunk in RrdReader(sys.argv[1]).stream():
    batch = chunk.to_record_batch()
    timelines = [t for t in chunk.timeline_names if t in batch.schema.names]
    # Wall-clock timelines (log_time) are nanosecond timestamps Python cannot hold; skip them.
    columns = {}
    for field in batch.schema:
        name = field.name
        if name == "RowId" or (name in timelines and field.type != "int64"):
            continue
        component_type = (field.metadata or {}).get(b"rerun:component_type", b"")
        if component_type == b"rerun.components.Blob":
            columns[name] = blobs(batch.column(name))
        else:
            columns[name] = batch.column(name).to_pylist()
    for i in range(batch.num_rows):
        rows.append({
            "entity": chunk.entity_path,
            "static": chunk.is_static,
            "time": {t: columns[t][i] for t in timelines if t in columns},
            "components": {
                name: values[i]
                for name, values in columns.items()
                if name not in timelines and values[i] is not None
            },
        })
# Other binary values (recording properties) only by length.
print(json.dumps(rows, default=lambda v: {"bytes": len(v)} if isinstance(v, bytes) else str(v)))
"#;

/// One row of a recording as [`READ_BACK`] prints it.
#[derive(Debug, Clone)]
struct Row {
    entity: String,
    is_static: bool,
    time: BTreeMap<String, i64>,
    components: serde_json::Map<String, Value>,
}

fn read_back(rrd: &Path) -> Result<Vec<Row>, Box<dyn Error>> {
    let out = Command::new("python3")
        .args(["-c", READ_BACK])
        .arg(rrd)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "reading {} back failed: {}",
            rrd.display(),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let json: Vec<Value> = serde_json::from_slice(&out.stdout)?;
    json.into_iter()
        .map(|v| {
            let time = v["time"]
                .as_object()
                .ok_or("row without time")?
                .iter()
                .map(|(k, t)| Ok((k.clone(), t.as_i64().ok_or("non-integer time")?)))
                .collect::<Result<_, Box<dyn Error>>>()?;
            Ok(Row {
                entity: v["entity"].as_str().ok_or("row without entity")?.to_owned(),
                is_static: v["static"].as_bool().ok_or("row without static")?,
                time,
                components: v["components"]
                    .as_object()
                    .ok_or("row without components")?
                    .clone(),
            })
        })
        .collect()
}

/// The rows of entity `path` (as logged, without the leading slash).
fn rows<'a>(all: &'a [Row], path: &str) -> Vec<&'a Row> {
    let entity = format!("/{path}");
    all.iter().filter(|r| r.entity == entity).collect()
}

/// Values of `timeline` at which `path` has a non-empty `component`, sorted, and those where it
/// was logged empty (cleared).
fn logged_and_cleared(
    all: &[Row],
    path: &str,
    component: &str,
    timeline: &str,
) -> (Vec<i64>, Vec<i64>) {
    let (mut logged, mut cleared) = (Vec::new(), Vec::new());
    for r in rows(all, path) {
        let Some(v) = r.components.get(component) else {
            continue;
        };
        let Some(&t) = r.time.get(timeline) else {
            continue;
        };
        if v.as_array().is_some_and(Vec::is_empty) {
            cleared.push(t);
        } else {
            logged.push(t);
        }
    }
    logged.sort_unstable();
    cleared.sort_unstable();
    (logged, cleared)
}

/// The component value of `path` at `timeline == t`.
fn value_at<'a>(all: &'a [Row], path: &str, component: &str, timeline: &str, t: i64) -> &'a Value {
    rows(all, path)
        .into_iter()
        .filter(|r| r.time.get(timeline) == Some(&t))
        .find_map(|r| r.components.get(component))
        .unwrap_or(&Value::Null)
}

/// The annotation context with the most classes: contexts only grow, so it is the last one.
fn context(all: &[Row]) -> BTreeMap<u64, (String, u64)> {
    let mut best = BTreeMap::new();
    for r in rows(all, "").into_iter().filter(|r| r.is_static) {
        let Some(batch) = r.components.get("AnnotationContext:context") else {
            continue;
        };
        let Some(entries) = batch.get(0).and_then(Value::as_array) else {
            continue;
        };
        let map: BTreeMap<u64, (String, u64)> = entries
            .iter()
            .filter_map(|e| {
                let info = &e["class_description"]["info"];
                Some((
                    e["class_id"].as_u64()?,
                    (info["label"].as_str()?.to_owned(), info["color"].as_u64()?),
                ))
            })
            .collect();
        if map.len() > best.len() {
            best = map;
        }
    }
    best
}

fn packed(c: [u8; 3]) -> u64 {
    (u64::from(c[0]) << 24) | (u64::from(c[1]) << 16) | (u64::from(c[2]) << 8) | 0xff
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

fn rrd_verify(rrd: &Path) -> TestResult {
    let out = Command::new("rerun")
        .args(["rrd", "verify"])
        .arg(rrd)
        .output()?;
    assert!(
        out.status.success(),
        "rerun rrd verify {}: {}{}",
        rrd.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn kitti_annotations(label: &Path) -> Result<Vec<Annotation>, Box<dyn Error>> {
    let mut out = Vec::new();
    for line in std::fs::read_to_string(label)?.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let c: Vec<f64> = f[4..8]
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_, _>>()?;
        let mut a = Annotation::real(f[0], BBox::new(c[0], c[1], c[2], c[3]));
        a.ignore = f[0] == "DontCare";
        out.push(a);
    }
    Ok(out)
}

/// CamVid's first training frame and its boxes (COCO `[x, y, w, h]`).
fn camvid_frame(root: &Path) -> Result<(Vec<u8>, Vec<Annotation>), Box<dyn Error>> {
    let coco: Value = serde_json::from_slice(&std::fs::read(root.join("annotations_train.json"))?)?;
    let image = &coco["images"][0];
    let id = image["id"].as_u64().ok_or("image without id")?;
    let file = image["file_name"].as_str().ok_or("image without file")?;
    let classes: BTreeMap<u64, &str> = coco["categories"]
        .as_array()
        .ok_or("no categories")?
        .iter()
        .filter_map(|c| Some((c["id"].as_u64()?, c["name"].as_str()?)))
        .collect();
    let mut boxes = Vec::new();
    for a in coco["annotations"].as_array().ok_or("no annotations")? {
        if a["image_id"].as_u64() != Some(id) {
            continue;
        }
        let b: Vec<f64> = a["bbox"]
            .as_array()
            .ok_or("annotation without bbox")?
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        let class = classes
            .get(&a["category_id"].as_u64().ok_or("no category")?)
            .ok_or("unknown category")?;
        boxes.push(Annotation::real(
            *class,
            BBox::from_xywh(b[0], b[1], b[2], b[3]),
        ));
    }
    Ok((std::fs::read(root.join(file))?, boxes))
}

fn generated(class: &str, bbox: BBox) -> Annotation {
    let mut a = Annotation::real(class, bbox);
    a.origin = Origin::Generated {
        operation: "insert_objects".to_owned(),
        scenario: "test".to_owned(),
        seed: 7,
    };
    a
}

/// The frame with `boxes` tinted orange, and the mask of what changed: a stand-in for the engine
/// whose output this recording shows.
fn augment(frame: &RgbImage, boxes: &[Annotation]) -> (RgbImage, GrayImage) {
    let mut out = frame.clone();
    let mut mask = GrayImage::new(frame.width(), frame.height());
    for b in boxes {
        for y in (b.bbox.y0 as u32)..(b.bbox.y1 as u32).min(frame.height()) {
            for x in (b.bbox.x0 as u32)..(b.bbox.x1 as u32).min(frame.width()) {
                let p = out.get_pixel(x, y).0;
                out.put_pixel(
                    x,
                    y,
                    Rgb([0, 1, 2].map(|c| p[c] / 2 + PLANNED_COLOUR[c] / 2)),
                );
                mask.put_pixel(x, y, Luma([255]));
            }
        }
    }
    (out, mask)
}

/// Fog transmission falling with distance below a horizon row: `exp(-0.04 d)`.
fn transmission(width: u32, height: u32, horizon: f64) -> Vec<f32> {
    let mut t = Vec::with_capacity((width * height) as usize);
    for y in 0..height {
        let below = (f64::from(y) - horizon).max(1.0);
        let depth = (1.65 * 720.0 / below).min(200.0);
        t.extend(std::iter::repeat_n(
            (-0.04 * depth).exp() as f32,
            width as usize,
        ));
    }
    t
}

#[test]
fn run_recording_reads_back_with_entity_paths_counts_and_classes() -> TestResult {
    let (Some(kitti), Some(camvid)) = (
        roadsynth_testkit::shared("datasets/kitti-object"),
        roadsynth_testkit::shared("datasets/camvid"),
    ) else {
        return Ok(());
    };
    if !roadsynth_testkit::python_module("rerun") {
        return Ok(());
    }
    let kitti_png = std::fs::read(kitti.join("image_2/000001.png"))?;
    let kitti_rgb = image::load_from_memory(&kitti_png)?.to_rgb8();
    let kitti_real = kitti_annotations(&kitti.join("label_2/000001.txt"))?;
    let (kw, kh) = kitti_rgb.dimensions();
    let kitti_generated = [
        generated("Car", BBox::new(300.0, 190.0, 420.0, 260.0)),
        // Not in the configured classes: registered when it first appears.
        generated("deer", BBox::new(800.0, 200.0, 860.0, 250.0)),
    ];
    let (kitti_aug, kitti_mask) = augment(&kitti_rgb, &kitti_generated);
    let horizon = 175.0;
    let bands = [(200.0, 40.0), (230.0, 20.0), (290.0, 10.0)];
    let fog = transmission(kw, kh, horizon);
    let kitti_maps = [WeatherMap {
        name: "transmission",
        width: kw,
        height: kh,
        data: &fog,
        range: Some((0.0, 1.0)),
    }];

    let (camvid_jpeg, camvid_real) = camvid_frame(&camvid)?;
    let camvid_rgb = image::load_from_memory(&camvid_jpeg)?.to_rgb8();
    let (cw, ch) = camvid_rgb.dimensions();
    let camvid_generated = [generated("car", BBox::new(100.0, 200.0, 180.0, 260.0))];
    let (camvid_aug, _) = augment(&camvid_rgb, &camvid_generated);
    let particles: Vec<f32> = (0..cw * ch)
        .map(|i| ((i % 37) as f32 / 36.0) * 1.5)
        .collect();
    let camvid_maps = [WeatherMap {
        name: "particles",
        width: cw,
        height: ch,
        data: &particles,
        range: None,
    }];

    let dir = tempfile::tempdir()?;
    let rrd = dir.path().join("run.rrd");
    let config = RecordingConfig {
        augment: RateLimit {
            every: 2,
            max_frames: Some(3),
            min_interval: None,
        },
        eval: RateLimit {
            every: 1,
            max_frames: Some(2),
            min_interval: None,
        },
        jpeg_quality: 80,
        classes: vec!["Car".to_owned(), "car".to_owned(), "pedestrian".to_owned()],
    };
    let rec = RunRecording::create("roadsynth-test", &rrd, &config)?;

    let kitti_frame = AugmentedFrame {
        // The stored PNG (re-encoded to JPEG) and the engine's pixels (encoded to JPEG).
        original: ImageRef::Encoded(&kitti_png),
        augmented: ImageRef::Rgb(&kitti_aug),
        width: kw,
        height: kh,
        real: &kitti_real,
        generated: &kitti_generated,
        edit_mask: Some(&kitti_mask),
        horizon_row: Some(horizon),
        depth_bands: &bands,
        weather_maps: &kitti_maps,
    };
    let camvid_frame = AugmentedFrame {
        // A stored JPEG passes through untouched.
        original: ImageRef::Encoded(&camvid_jpeg),
        augmented: ImageRef::Rgb(&camvid_aug),
        width: cw,
        height: ch,
        real: &camvid_real,
        generated: &camvid_generated,
        edit_mask: None,
        horizon_row: None,
        depth_bands: &[],
        weather_maps: &camvid_maps,
    };
    let mut admitted = Vec::new();
    for seq in 0..8u64 {
        let frame = if seq % 4 == 2 {
            &camvid_frame
        } else {
            &kitti_frame
        };
        admitted.push(rec.log_augmented(seq, frame)?);
    }
    // Every second frame, at most three.
    assert_eq!(
        admitted,
        [true, false, true, false, true, false, false, false]
    );

    let predictions = [
        Prediction {
            class: "Car",
            score: 0.91,
            bbox: BBox::new(390.0, 182.0, 425.0, 204.0),
        },
        Prediction {
            class: "Pedestrian",
            score: 0.12,
            bbox: BBox::new(10.0, 10.0, 40.0, 80.0),
        },
    ];
    let mut evaluated = Vec::new();
    for seq in 0..4u64 {
        evaluated.push(rec.log_detections(
            seq,
            ImageRef::Encoded(&kitti_png),
            &kitti_real,
            &predictions,
        )?);
    }
    assert_eq!(evaluated, [true, true, false, false]);
    for step in 0..5u64 {
        rec.log_scalar("train/loss", step, 1.0 / (step as f64 + 1.0))?;
    }
    rec.log_scalar("eval/AP50", 4, 0.437)?;
    let stats = rec.finish(Duration::from_secs(30))?;
    assert_eq!((stats.augmented_frames, stats.eval_frames), (3, 2));
    eprintln!("{stats:?}, file {} bytes", std::fs::metadata(&rrd)?.len());
    // What bounds the viewer's memory: the encoded images are a fraction of their raw pixels.
    // KITTI: 2 augmented frames of 2 RGB images, an RGBA mask and an f32 map, 2 evaluated RGB
    // images; CamVid: 1 frame of 2 RGB images and an f32 map.
    let raw = 34 * u64::from(kw * kh) + 10 * u64::from(cw * ch);
    assert!(
        stats.image_bytes * 4 < raw,
        "{} encoded bytes against {raw} raw",
        stats.image_bytes
    );

    rrd_verify(&rrd)?;
    let all = read_back(&rrd)?;
    let f = timelines::FRAME;

    // Images: logged at the admitted frames, all JPEG; the CamVid JPEG byte for byte.
    for path in [paths::ORIGINAL, paths::AUGMENTED] {
        let (logged, cleared) = logged_and_cleared(&all, path, "EncodedImage:blob", f);
        assert_eq!((logged, cleared), (vec![0, 2, 4], vec![]), "{path}");
        for t in [0, 2, 4] {
            let media = value_at(&all, path, "EncodedImage:media_type", f, t);
            assert_eq!(media, &serde_json::json!(["image/jpeg"]), "{path} at {t}");
        }
    }
    let camvid_blob = value_at(&all, paths::ORIGINAL, "EncodedImage:blob", f, 2);
    assert_eq!(
        camvid_blob[0]["bytes"].as_u64(),
        Some(camvid_jpeg.len() as u64)
    );
    let kitti_blob = value_at(&all, paths::ORIGINAL, "EncodedImage:blob", f, 0);
    assert!(
        kitti_blob[0]["head"]
            .as_str()
            .is_some_and(|h| h.starts_with("ffd8")),
        "the KITTI PNG is re-encoded as JPEG: {kitti_blob}"
    );
    assert!(
        kitti_blob[0]["bytes"]
            .as_u64()
            .is_some_and(|n| n * 4 < kitti_png.len() as u64)
    );

    // What a frame lacks is cleared, not left over from the frame before.
    assert_eq!(
        logged_and_cleared(&all, paths::EDIT_MASK, "EncodedImage:blob", f),
        (vec![0, 4], vec![2])
    );
    assert_eq!(
        value_at(&all, paths::EDIT_MASK, "EncodedImage:media_type", f, 0),
        &serde_json::json!(["image/png"])
    );
    assert_eq!(
        logged_and_cleared(&all, paths::HORIZON, "LineStrips2D:strips", f),
        (vec![0, 4], vec![2])
    );
    let horizon_strip = value_at(&all, paths::HORIZON, "LineStrips2D:strips", f, 0);
    assert_eq!(
        horizon_strip,
        &serde_json::json!([[[0.0, 175.0], [1242.0, 175.0]]])
    );
    let band_labels = value_at(&all, paths::DEPTH_BANDS, "LineStrips2D:labels", f, 4);
    assert_eq!(band_labels, &serde_json::json!(["40 m", "20 m", "10 m"]));
    assert_eq!(
        logged_and_cleared(&all, paths::DEPTH_BANDS, "LineStrips2D:strips", f),
        (vec![0, 4], vec![2])
    );
    let transmission_path = format!("{}/transmission", paths::WEATHER);
    let particles_path = format!("{}/particles", paths::WEATHER);
    assert_eq!(
        logged_and_cleared(&all, &transmission_path, "EncodedImage:blob", f),
        (vec![0, 4], vec![2])
    );
    assert_eq!(
        logged_and_cleared(&all, &particles_path, "EncodedImage:blob", f),
        (vec![2], vec![4])
    );
    assert_eq!(
        value_at(
            &all,
            &format!("{transmission_path}/range"),
            "Scalars:scalars",
            f,
            0
        ),
        &serde_json::json!([0.0, 1.0])
    );
    let particle_range = value_at(
        &all,
        &format!("{particles_path}/range"),
        "Scalars:scalars",
        f,
        2,
    );
    assert_eq!(particle_range, &serde_json::json!([0.0, 1.5]));

    // Classes: real and generated boxes of one class have distinct ids, labels and colours.
    let classes = context(&all);
    let label_of = |id: &u64| classes.get(id).map(|(l, c)| (l.as_str(), *c));
    let real_ids = ids(value_at(&all, paths::REAL_BOXES, "Boxes2D:class_ids", f, 0));
    assert_eq!(real_ids.len(), kitti_real.len());
    for (a, id) in kitti_real.iter().zip(&real_ids) {
        let expected = if a.ignore {
            format!("{} (ignored)", a.class)
        } else {
            a.class.clone()
        };
        assert_eq!(label_of(id).map(|(l, _)| l.to_owned()), Some(expected));
        if !a.ignore {
            assert_eq!(label_of(id).map(|(_, c)| c), Some(packed(REAL_COLOUR)));
        }
    }
    let generated_ids = ids(value_at(
        &all,
        paths::GENERATED_BOXES,
        "Boxes2D:class_ids",
        f,
        0,
    ));
    let generated_labels: Vec<_> = generated_ids.iter().filter_map(label_of).collect();
    assert_eq!(
        generated_labels,
        [
            ("Car (generated)", packed(PLANNED_COLOUR)),
            ("deer (generated)", packed(PLANNED_COLOUR))
        ]
    );
    assert!(!real_ids.contains(&generated_ids[0]));
    // Configured classes keep their ids whatever the frames show: "Car" first, four kinds each.
    assert_eq!(label_of(&1), Some(("Car", packed(REAL_COLOUR))));
    assert_eq!(label_of(&2).map(|(l, _)| l), Some("Car (generated)"));
    let camvid_ids = ids(value_at(&all, paths::REAL_BOXES, "Boxes2D:class_ids", f, 2));
    assert_eq!(camvid_ids.len(), camvid_real.len());
    assert!(camvid_ids.iter().all(|id| label_of(id).is_some()));

    // Evaluation: its own timeline, predictions labelled with scores in their own colour.
    let e = timelines::EVAL_FRAME;
    assert_eq!(
        logged_and_cleared(&all, paths::EVAL_IMAGE, "EncodedImage:blob", e),
        (vec![0, 1], vec![])
    );
    assert!(
        rows(&all, paths::EVAL_IMAGE)
            .iter()
            .all(|r| !r.time.contains_key(f))
    );
    assert_eq!(
        value_at(&all, paths::PREDICTIONS, "Boxes2D:labels", e, 1),
        &serde_json::json!(["Car 0.91", "Pedestrian 0.12"])
    );
    let predicted: Vec<_> = ids(value_at(
        &all,
        paths::PREDICTIONS,
        "Boxes2D:class_ids",
        e,
        0,
    ))
    .iter()
    .filter_map(label_of)
    .collect();
    assert_eq!(
        predicted,
        [
            ("Car (predicted)", packed(PREDICTED_COLOUR)),
            ("Pedestrian (predicted)", packed(PREDICTED_COLOUR))
        ]
    );
    assert_eq!(
        ids(value_at(
            &all,
            paths::GROUND_TRUTH,
            "Boxes2D:class_ids",
            e,
            0
        ))
        .len(),
        kitti_real.len()
    );

    // Scalars: on the step timeline only.
    let loss = format!("{}/train/loss", paths::METRICS);
    let steps: Vec<(i64, Value)> = rows(&all, &loss)
        .iter()
        .map(|r| {
            assert_eq!(r.time.keys().collect::<Vec<_>>(), [timelines::STEP]);
            (
                r.time[timelines::STEP],
                r.components["Scalars:scalars"].clone(),
            )
        })
        .collect();
    assert_eq!(steps.len(), 5);
    assert_eq!(steps[1], (1, serde_json::json!([0.5])));
    let ap = format!("{}/eval/AP50", paths::METRICS);
    assert_eq!(
        value_at(&all, &ap, "Scalars:scalars", timelines::STEP, 4),
        &serde_json::json!([0.437])
    );
    Ok(())
}

/// A small synthetic frame: these tests need no shared data.
fn synthetic(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb([(x * 4) as u8, (y * 4) as u8, ((x + y) * 2) as u8])
    })
}

fn frame<'a>(image: &'a RgbImage, real: &'a [Annotation]) -> AugmentedFrame<'a> {
    AugmentedFrame {
        original: ImageRef::Rgb(image),
        augmented: ImageRef::Rgb(image),
        width: image.width(),
        height: image.height(),
        real,
        generated: &[],
        edit_mask: None,
        horizon_row: Some(20.0),
        depth_bands: &[],
        weather_maps: &[],
    }
}

#[test]
fn wall_clock_limit_and_bad_inputs() -> TestResult {
    let dir = tempfile::tempdir()?;
    let image = synthetic(64, 48);
    let real = [Annotation::real("car", BBox::new(4.0, 4.0, 20.0, 30.0))];

    // One frame an hour: only the first of a burst gets through.
    let rrd = dir.path().join("slow.rrd");
    let config = RecordingConfig {
        augment: RateLimit {
            every: 1,
            max_frames: None,
            min_interval: Some(Duration::from_hours(1)),
        },
        ..RecordingConfig::default()
    };
    let rec = RunRecording::create("roadsynth-test", &rrd, &config)?;
    let admitted: Vec<bool> = (0..4)
        .map(|seq| rec.log_augmented(seq, &frame(&image, &real)))
        .collect::<Result<_, _>>()?;
    assert_eq!(admitted, [true, false, false, false]);

    // A mask of the wrong size is refused before anything is logged, and gives its admission
    // back: with a cap of one frame, a good frame still gets logged after it.
    let capped = dir.path().join("capped.rrd");
    let config = RecordingConfig {
        augment: RateLimit {
            every: 1,
            max_frames: Some(1),
            min_interval: None,
        },
        ..RecordingConfig::default()
    };
    let capped_rec = RunRecording::create("roadsynth-test", &capped, &config)?;
    let small = GrayImage::new(10, 10);
    let bad = AugmentedFrame {
        edit_mask: Some(&small),
        ..frame(&image, &real)
    };
    assert!(matches!(
        capped_rec.log_augmented(0, &bad),
        Err(InspectError::Size { got: (10, 10), .. })
    ));
    let wrong_size = synthetic(32, 48);
    let mismatched = AugmentedFrame {
        augmented: ImageRef::Rgb(&wrong_size),
        ..frame(&image, &real)
    };
    assert!(matches!(
        capped_rec.log_augmented(1, &mismatched),
        Err(InspectError::Size { .. })
    ));
    assert!(matches!(
        capped_rec.log_augmented(
            2,
            &AugmentedFrame {
                original: ImageRef::Encoded(b"not an image"),
                ..frame(&image, &real)
            }
        ),
        Err(InspectError::Image { .. })
    ));
    let short_map = [WeatherMap {
        name: "fog",
        width: 64,
        height: 48,
        data: &[0.5; 10],
        range: None,
    }];
    assert!(matches!(
        capped_rec.log_augmented(
            3,
            &AugmentedFrame {
                weather_maps: &short_map,
                ..frame(&image, &real)
            }
        ),
        Err(InspectError::Config(_))
    ));
    assert!(capped_rec.log_augmented(4, &frame(&image, &real))?);
    assert!(!capped_rec.log_augmented(5, &frame(&image, &real))?);
    assert!(matches!(
        capped_rec.log_scalar("/", 0, 1.0),
        Err(InspectError::Config(_))
    ));
    assert_eq!(rec.finish(Duration::from_secs(10))?.augmented_frames, 1);
    assert_eq!(
        capped_rec.finish(Duration::from_secs(10))?.augmented_frames,
        1
    );

    // Configurations that cannot work are refused up front.
    for config in [
        RecordingConfig {
            augment: RateLimit {
                every: 0,
                ..RateLimit::ALL
            },
            ..RecordingConfig::default()
        },
        RecordingConfig {
            jpeg_quality: 0,
            ..RecordingConfig::default()
        },
    ] {
        let r = RunRecording::create("roadsynth-test", &dir.path().join("x.rrd"), &config);
        assert!(matches!(r, Err(InspectError::Config(_))), "{r:?}");
    }
    let missing = dir.path().join("no/such/folder/run.rrd");
    let r = RunRecording::create("roadsynth-test", &missing, &RecordingConfig::default());
    assert!(matches!(r, Err(InspectError::Recording { .. })), "{r:?}");

    if roadsynth_testkit::python_module("rerun") {
        let all = read_back(&capped)?;
        assert_eq!(
            logged_and_cleared(&all, paths::ORIGINAL, "EncodedImage:blob", timelines::FRAME),
            (vec![4], vec![])
        );
        let all = read_back(&rrd)?;
        assert_eq!(
            logged_and_cleared(
                &all,
                paths::AUGMENTED,
                "EncodedImage:blob",
                timelines::FRAME
            ),
            (vec![0], vec![])
        );
    }
    Ok(())
}

/// A port nothing listens on (just freed by the OS).
fn free_port() -> Result<u16, Box<dyn Error>> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Held by the tests that take a free port and count on what listens there: otherwise a viewer
/// one of them starts can land on the port another expects closed (a connect then succeeds).
static PORTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn hold_ports() -> std::sync::MutexGuard<'static, ()> {
    PORTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn connecting_where_no_viewer_listens_fails_at_once() -> TestResult {
    let _ports = hold_ports();
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let started = Instant::now();
    let r = RunRecording::connect(
        "roadsynth-test",
        &format!("127.0.0.1:{port}"),
        &RecordingConfig::default(),
    );
    assert!(matches!(r, Err(InspectError::Viewer { .. })), "{r:?}");
    let r = RunRecording::create_and_connect(
        "roadsynth-test",
        &dir.path().join("run.rrd"),
        &format!("rerun+http://127.0.0.1:{port}/proxy"),
        &RecordingConfig::default(),
    );
    assert!(matches!(r, Err(InspectError::Viewer { .. })), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let r = RunRecording::connect(
        "roadsynth-test",
        "rerun+http://127.0.0.1:9876/catalog",
        &RecordingConfig::default(),
    );
    assert!(matches!(r, Err(InspectError::Viewer { .. })), "{r:?}");
    Ok(())
}

/// A `rerun` server saving what it receives, stopped (by its id) when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Rerun binary the Python SDK ships (`rerun` on the PATH is a Python wrapper that would
/// outlive a kill of its own process).
fn rerun_binary() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, rerun_cli; print(os.path.join(os.path.dirname(rerun_cli.__file__), 'rerun'))",
        ])
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && path.is_file()).then_some(path)
}

/// Starts a `rerun` server on a free port that saves what it receives to `save`.
fn start_server(binary: &Path, save: &Path) -> Result<(Server, u16), Box<dyn Error>> {
    let port = free_port()?;
    let server = Server(
        Command::new(binary)
            .args(["--port", &port.to_string(), "--save"])
            .arg(save)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("rerun server did not start".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((server, port))
}

/// Non-static rows per entity.
fn row_counts(all: &[Row]) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in all.iter().filter(|r| !r.is_static) {
        *counts.entry(r.entity.clone()).or_default() += 1;
    }
    counts
}

/// Row counts of what the server saved, once they equal `expected` or after 30 s.
fn wait_for(saved: &Path, expected: &BTreeMap<String, usize>) -> BTreeMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = BTreeMap::new();
    while Instant::now() < deadline {
        // The server writes as it receives; a read mid-write may fail, and is retried.
        if let Ok(all) = read_back(saved) {
            got = row_counts(&all);
            if &got == expected {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    got
}

fn log_a_little(rec: &RunRecording) -> TestResult {
    let image = synthetic(64, 48);
    let real = [Annotation::real("car", BBox::new(4.0, 4.0, 20.0, 30.0))];
    for seq in 0..3 {
        assert!(rec.log_augmented(seq, &frame(&image, &real))?);
    }
    for step in 0..4 {
        rec.log_scalar("train/loss", step, 0.5)?;
    }
    Ok(())
}

#[test]
fn live_viewer_receives_what_the_file_holds() -> TestResult {
    if !roadsynth_testkit::python_module("rerun_cli") {
        return Ok(());
    }
    let binary = rerun_binary().ok_or("rerun_cli has no rerun binary")?;
    let _ports = hold_ports();
    let dir = tempfile::tempdir()?;

    // File and viewer at once.
    let live = dir.path().join("live.rrd");
    let (server, port) = start_server(&binary, &live)?;
    let file = dir.path().join("run.rrd");
    let rec = RunRecording::create_and_connect(
        "roadsynth-test",
        &file,
        &format!("127.0.0.1:{port}"),
        &RecordingConfig::default(),
    )?;
    log_a_little(&rec)?;
    rec.finish(Duration::from_secs(30))?;
    let from_file = row_counts(&read_back(&file)?);
    assert_eq!(from_file.get("/augment/original"), Some(&3));
    assert_eq!(from_file.get("/metrics/train/loss"), Some(&4));
    let from_viewer = wait_for(&live, &from_file);
    drop(server);
    assert_eq!(from_viewer, from_file);

    // The viewer alone, addressed by its full URL.
    let live_only = dir.path().join("live-only.rrd");
    let (server, port) = start_server(&binary, &live_only)?;
    let rec = RunRecording::connect(
        "roadsynth-test",
        &format!("rerun+http://127.0.0.1:{port}/proxy"),
        &RecordingConfig::default(),
    )?;
    log_a_little(&rec)?;
    rec.finish(Duration::from_secs(30))?;
    let from_viewer = wait_for(&live_only, &from_file);
    drop(server);
    assert_eq!(from_viewer, from_file);
    Ok(())
}
