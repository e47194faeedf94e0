//! The models on real data: the drivable-area model on `BDD100K` dash-cam frames and `CamVid`
//! against its labels; the COCO detector on KITTI cars, road-animal photos and COCO's own labels;
//! the VOC segmenter on KITTI cars and road animals against their masks.

use std::path::{Path, PathBuf};
use std::time::Instant;

use image::{GrayImage, Luma, Rgb, RgbImage};
use roadsynth_formats::{LoadOptions, PendingAnnotation, PendingFrame, coco, kitti, load_all};
use roadsynth_geometry::{
    DrivableMask, GroundModel, MaskSource, SemanticRoadClasses, ground_masks, masks_from_labels,
};
use roadsynth_models::{
    COCO_CLASSES, CocoDetector, Detection, DrivableAreaModel, ModelError, ORT_DYLIB_ENV,
    VOC_ANIMALS, VOC_CAR, VOC_CLASSES, VehicleSegmenter, box_iou, init_runtime, is_coco_animal,
    is_coco_vehicle,
};

/// A shared model's path, when it and ONNX Runtime are both available (else the test skips).
fn shared_model(rel: &str) -> Option<PathBuf> {
    let path = roadsynth_testkit::shared(rel)?;
    if std::env::var_os(ORT_DYLIB_ENV).is_none() && !roadsynth_testkit::python_module("onnxruntime")
    {
        return None;
    }
    Some(path)
}

/// The shared drivable-area model (or skip).
fn model() -> Option<DrivableAreaModel> {
    let path = shared_model(DrivableAreaModel::SHARED_PATH)?;
    Some(DrivableAreaModel::load(&path).expect("the shared TwinLiteNet model loads"))
}

/// The shared COCO detector (or skip).
fn detector() -> Option<CocoDetector> {
    let path = shared_model(CocoDetector::SHARED_PATH)?;
    Some(CocoDetector::load(&path).expect("the shared YOLOX-nano model loads"))
}

/// The shared VOC segmenter (or skip).
fn segmenter() -> Option<VehicleSegmenter> {
    let path = shared_model(VehicleSegmenter::SHARED_PATH)?;
    Some(VehicleSegmenter::load(&path).expect("the shared DeepLabv3 model loads"))
}

fn xyxy(annotation: &PendingAnnotation) -> [f64; 4] {
    let b = annotation.annotation.bbox;
    [b.x0, b.y0, b.x1, b.y1]
}

fn rgb_of(frame: &PendingFrame) -> RgbImage {
    image::open(&frame.image_path)
        .expect("decode the frame")
        .to_rgb8()
}

fn file_name(frame: &PendingFrame) -> String {
    frame
        .image_path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// The KITTI object sample frames with their labels (or skip).
fn kitti_frames() -> Option<Vec<PendingFrame>> {
    let root = roadsynth_testkit::shared("datasets/kitti-object")?;
    let scan = kitti::scan(&root, "train").expect("scan KITTI");
    assert!(
        scan.frames.len() >= 10,
        "{} KITTI frames",
        scan.frames.len()
    );
    Some(scan.frames)
}

/// The road-animal photos with their COCO boxes (or skip).
fn road_animal_frames() -> Option<Vec<PendingFrame>> {
    let root = roadsynth_testkit::shared("datasets/road-animals")?;
    let scan = coco::scan(&root.join("annotations.json"), None, "dev").expect("scan road-animals");
    assert!(
        scan.frames.len() >= 5,
        "{} road-animal frames",
        scan.frames.len()
    );
    Some(scan.frames)
}

/// KITTI's difficulty levels for a `Car` label (Geiger et al. 2012): the smallest box height in
/// pixels, the worst occlusion level and the largest truncation admitted.
#[derive(Debug, Clone, Copy)]
struct Difficulty {
    name: &'static str,
    min_height: f64,
    max_occluded: u8,
    max_truncated: f32,
}

const EASY: Difficulty = Difficulty {
    name: "easy",
    min_height: 40.0,
    max_occluded: 0,
    max_truncated: 0.15,
};
const MODERATE: Difficulty = Difficulty {
    name: "moderate",
    min_height: 25.0,
    max_occluded: 1,
    max_truncated: 0.3,
};

impl Difficulty {
    fn admits(self, annotation: &PendingAnnotation) -> bool {
        let a = &annotation.annotation;
        let b = a.bbox;
        a.class == "Car"
            && !a.ignore
            && b.y1 - b.y0 >= self.min_height
            && a.occluded.is_some_and(|o| o <= self.max_occluded)
            && a.truncated.is_some_and(|t| t <= self.max_truncated)
    }
}

/// Does a detection of a car (or a truck: COCO calls pick-ups and SUVs, which KITTI labels
/// `Car`, trucks) overlap the box by an intersection over union of 0.5 or more?
fn car_found(detections: &[Detection], bbox: [f64; 4]) -> bool {
    detections
        .iter()
        .any(|d| matches!(d.class_name, "car" | "truck") && box_iou(d.bbox, bbox) >= 0.5)
}

/// `[x0, y0, x1, y1]` widened by `fraction` of its size on each side, in whole pixels inside a
/// `width x height` image.
fn widened(bbox: [f64; 4], fraction: f64, width: u32, height: u32) -> [u32; 4] {
    let (mx, my) = (
        (bbox[2] - bbox[0]) * fraction,
        (bbox[3] - bbox[1]) * fraction,
    );
    [
        (bbox[0] - mx).floor().max(0.0) as u32,
        (bbox[1] - my).floor().max(0.0) as u32,
        ((bbox[2] + mx).ceil() as u32).min(width),
        ((bbox[3] + my).ceil() as u32).min(height),
    ]
}

/// Is pixel `(x, y)` (its centre) inside an `xyxy` box?
fn inside(bbox: [f64; 4], x: u32, y: u32) -> bool {
    let (cx, cy) = (f64::from(x) + 0.5, f64::from(y) + 0.5);
    (bbox[0]..bbox[2]).contains(&cx) && (bbox[1]..bbox[3]).contains(&cy)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Fraction of a mask's pixels that lie in the lower half of the image.
fn lower_half_share(mask: &DrivableMask) -> f64 {
    let lower: usize = (mask.height / 2..mask.height)
        .map(|y| mask.row(y).iter().filter(|&&b| b != 0).count())
        .sum();
    lower as f64 / mask.count().max(1) as f64
}

#[test]
fn missing_runtime_and_model_are_clear_errors() {
    let missing = Path::new("/nonexistent/libonnxruntime.so.1.31.1");
    let err = init_runtime(missing).expect_err("no library there");
    assert!(matches!(err, ModelError::RuntimeMissing { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("/nonexistent/libonnxruntime.so.1.31.1")
    );

    let err = DrivableAreaModel::load(Path::new("/nonexistent/model.onnx")).expect_err("no model");
    assert!(matches!(err, ModelError::ModelMissing { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/model.onnx"));

    let err = CocoDetector::load(Path::new("/nonexistent/yolox.onnx")).expect_err("no model");
    assert!(matches!(err, ModelError::ModelMissing { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/yolox.onnx"));

    let err = VehicleSegmenter::load(Path::new("/nonexistent/deeplab.onnx")).expect_err("no model");
    assert!(matches!(err, ModelError::ModelMissing { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/deeplab.onnx"));
}

#[test]
fn a_model_of_the_wrong_kind_is_rejected_naming_the_file() {
    let (Some(yolox), Some(deeplab)) = (
        shared_model(CocoDetector::SHARED_PATH),
        shared_model(VehicleSegmenter::SHARED_PATH),
    ) else {
        return;
    };
    // The segmenter's NHWC input is no detector input, and the detector's NCHW input is no
    // segmenter input.
    let err = CocoDetector::load(&deeplab).expect_err("DeepLab is no detector");
    assert!(matches!(err, ModelError::BadModel { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&deeplab.display().to_string()),
        "{err}"
    );
    let err = VehicleSegmenter::load(&yolox).expect_err("YOLOX is no segmenter");
    assert!(matches!(err, ModelError::BadModel { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&yolox.display().to_string()),
        "{err}"
    );
}

#[test]
fn the_class_list_beside_the_detector_has_the_same_order() {
    let Some(path) = roadsynth_testkit::shared("models/yolox-nano/coco80_classes.txt") else {
        return;
    };
    let text = std::fs::read_to_string(&path).expect("read the class list");
    let listed: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(listed.len(), COCO_CLASSES.len());
    // The file spells six classes as PASCAL VOC does.
    let voc_spelling = |name: &'static str| match name {
        "motorcycle" => "motorbike",
        "airplane" => "aeroplane",
        "couch" => "sofa",
        "potted plant" => "pottedplant",
        "dining table" => "diningtable",
        "tv" => "tvmonitor",
        other => other,
    };
    for (i, (ours, theirs)) in COCO_CLASSES.iter().zip(&listed).enumerate() {
        assert_eq!(voc_spelling(ours), theirs.trim(), "class {i}");
    }
}

#[test]
fn yolox_finds_most_kitti_cars() {
    let (Some(mut detector), Some(frames)) = (detector(), kitti_frames()) else {
        return;
    };
    assert_eq!(detector.input_size(), (416, 416));
    // Found on the whole frame, found by `detect_region`, labelled: for easy and moderate cars.
    let mut easy = [0usize; 3];
    let mut moderate = [0usize; 3];
    for frame in &frames {
        let rgb = rgb_of(frame);
        let start = Instant::now();
        let detections = detector.detect(&rgb).expect("detect");
        let elapsed = start.elapsed();
        let (mut found, mut cars) = (0, 0);
        for annotation in &frame.annotations {
            if !MODERATE.admits(annotation) {
                continue;
            }
            let bbox = xyxy(annotation);
            let around = detector.detect_region(&rgb, bbox).expect("detect region");
            let counts = [
                usize::from(car_found(&detections, bbox)),
                usize::from(car_found(&around, bbox)),
                1,
            ];
            for (total, count) in moderate.iter_mut().zip(counts) {
                *total += count;
            }
            if EASY.admits(annotation) {
                for (total, count) in easy.iter_mut().zip(counts) {
                    *total += count;
                }
            }
            found += counts[0];
            cars += 1;
        }
        eprintln!(
            "KITTI {}: {}x{}, {} detections ({} cars/trucks), {found}/{cars} moderate cars found, {:.0} ms",
            file_name(frame),
            rgb.width(),
            rgb.height(),
            detections.len(),
            detections
                .iter()
                .filter(|d| matches!(d.class_name, "car" | "truck"))
                .count(),
            elapsed.as_secs_f64() * 1e3,
        );
    }
    let recall = |found: usize, total: usize| found as f64 / total.max(1) as f64;
    for (level, [whole, region, total]) in [(EASY, easy), (MODERATE, moderate)] {
        eprintln!(
            "KITTI {} cars at IoU >= 0.5: recall {:.3} ({whole}/{total}) on whole frames, {:.3} ({region}/{total}) through detect_region",
            level.name,
            recall(whole, total),
            recall(region, total),
        );
    }
    let [whole, region, total] = easy;
    assert!(total >= 10, "{total} easy cars");
    assert!(recall(whole, total) >= 0.8, "easy {whole}/{total}");
    assert!(recall(region, total) >= 0.8, "easy {region}/{total}");
    let [whole, region, total] = moderate;
    assert!(recall(whole, total) >= 0.7, "moderate {whole}/{total}");
    assert!(recall(region, total) >= 0.7, "moderate {region}/{total}");
}

#[test]
fn yolox_finds_the_animals_on_road_photos() {
    let (Some(mut detector), Some(frames)) = (detector(), road_animal_frames()) else {
        return;
    };
    let (mut images_hit, mut boxes_found, mut boxes) = (0, 0, 0);
    for frame in &frames {
        let rgb = rgb_of(frame);
        let detections = detector.detect(&rgb).expect("detect");
        let animals: Vec<&Detection> = detections.iter().filter(|d| d.is_animal()).collect();
        // A detection on a herd (a crowd box) counts when it lies mostly inside the herd.
        let hits_crowd = |d: &Detection, bbox: [f64; 4]| {
            let [x0, y0, x1, y1] = d.bbox;
            let inter = (x1.min(bbox[2]) - x0.max(bbox[0])).max(0.0)
                * (y1.min(bbox[3]) - y0.max(bbox[1])).max(0.0);
            inter >= 0.5 * (x1 - x0) * (y1 - y0)
        };
        let mut hit = false;
        let mut found_here = 0;
        let mut labelled = 0;
        for annotation in &frame.annotations {
            let bbox = xyxy(annotation);
            if annotation.annotation.crowd {
                hit |= animals.iter().any(|d| hits_crowd(d, bbox));
                continue;
            }
            labelled += 1;
            if animals.iter().any(|d| box_iou(d.bbox, bbox) >= 0.5) {
                found_here += 1;
                hit = true;
            }
        }
        let species = frame
            .annotations
            .first()
            .and_then(|a| a.annotation.attributes.get("species"))
            .map(ToString::to_string)
            .unwrap_or_default();
        eprintln!(
            "{}: {species}, animals detected {:?}, {found_here}/{labelled} single animals found",
            file_name(frame),
            animals
                .iter()
                .map(|d| format!("{} {:.2}", d.class_name, d.score))
                .collect::<Vec<_>>(),
        );
        images_hit += usize::from(hit);
        boxes_found += found_here;
        boxes += labelled;
    }
    eprintln!(
        "road animals: an animal found in {images_hit}/{} photos; {boxes_found}/{boxes} single animals at IoU >= 0.5",
        frames.len()
    );
    assert!(
        images_hit * 10 >= frames.len() * 8,
        "{images_hit}/{}",
        frames.len()
    );
    assert!(boxes_found * 2 >= boxes, "{boxes_found}/{boxes}");
}

#[test]
fn yolox_classes_agree_with_coco_labels() {
    let (Some(mut detector), Some(root)) = (
        detector(),
        roadsynth_testkit::shared("datasets/coco-animals-vehicles"),
    ) else {
        return;
    };
    let scan = coco::scan(
        &root.join("instances_subset.json"),
        Some(&root.join("images")),
        "subset",
    )
    .expect("scan the COCO subset");
    assert!(scan.frames.len() >= 50, "{} frames", scan.frames.len());
    // Large (COCO's 96 px square or more) single animals and vehicles of every 4th photo: the
    // objects the pipeline cuts out and checks. Every label's class must be one of ours by
    // name, which checks the spelling of the embedded class list against COCO's own.
    let (mut found, mut total) = (0, 0);
    let mut classes_seen = std::collections::BTreeSet::new();
    for frame in scan.frames.iter().step_by(4) {
        let rgb = rgb_of(frame);
        let detections = detector.detect(&rgb).expect("detect");
        for annotation in &frame.annotations {
            let a = &annotation.annotation;
            let class = COCO_CLASSES
                .iter()
                .position(|c| *c == a.class)
                .unwrap_or_else(|| panic!("`{}` is not a COCO-80 class name", a.class))
                as u32;
            let bbox = xyxy(annotation);
            let large = (bbox[2] - bbox[0]) * (bbox[3] - bbox[1]) >= 96.0 * 96.0;
            if a.crowd || !large || !(is_coco_animal(class) || is_coco_vehicle(class)) {
                continue;
            }
            total += 1;
            let hit = detections
                .iter()
                .any(|d| d.class_id == class && box_iou(d.bbox, bbox) >= 0.5);
            if hit {
                found += 1;
                classes_seen.insert(a.class.clone());
            } else {
                let nearest = detections
                    .iter()
                    .max_by(|p, q| box_iou(p.bbox, bbox).total_cmp(&box_iou(q.bbox, bbox)));
                eprintln!(
                    "{}: {} {bbox:?} missed; nearest detection {:?}",
                    file_name(frame),
                    a.class,
                    nearest.map(|d| (d.class_name, d.score, box_iou(d.bbox, bbox)))
                );
            }
        }
    }
    eprintln!(
        "COCO subset: {found}/{total} large animals and vehicles found with their own class at IoU >= 0.5 ({classes_seen:?})"
    );
    assert!(total >= 15, "{total}");
    assert!(found * 100 >= total * 65, "{found}/{total}");
    assert!(classes_seen.len() >= 4, "{classes_seen:?}");
}

#[test]
fn detections_map_back_through_either_letterbox_axis() {
    let (Some(mut detector), Some(frames)) = (detector(), road_animal_frames()) else {
        return;
    };
    // The horse photo: one large, clear animal.
    let frame = frames
        .iter()
        .find(|f| file_name(f).contains("Pferdebahn"))
        .expect("the horse photo is in the set");
    let rgb = rgb_of(frame);
    let horse = xyxy(&frame.annotations[0]);
    let best = |detections: &[Detection]| {
        detections
            .iter()
            .filter(|d| d.class_name == "horse")
            .max_by(|a, b| a.score.total_cmp(&b.score))
            .copied()
            .expect("a horse is detected")
    };
    let plain = best(&detector.detect(&rgb).expect("detect"));
    assert!(box_iou(plain.bbox, horse) >= 0.7, "{plain:?} vs {horse:?}");
    // The photo pasted lower on a square canvas (the letterbox still fits the width) and lower
    // right on a tall one (it now fits the height and pads on the right).
    for (canvas, (dx, dy)) in [((1280, 1280), (0, 300)), ((1500, 1800), (200, 700))] {
        let mut padded = RgbImage::from_pixel(canvas.0, canvas.1, Rgb([90, 90, 90]));
        image::imageops::replace(&mut padded, &rgb, i64::from(dx), i64::from(dy));
        let moved = best(&detector.detect(&padded).expect("detect"));
        let (dx, dy) = (f64::from(dx), f64::from(dy));
        let back = [
            moved.bbox[0] - dx,
            moved.bbox[1] - dy,
            moved.bbox[2] - dx,
            moved.bbox[3] - dy,
        ];
        let iou = box_iou(back, plain.bbox);
        eprintln!(
            "{}x{} canvas: horse {:?} -> shifted back {back:?}, IoU {iou:.3} with the plain detection {:?}",
            canvas.0, canvas.1, moved.bbox, plain.bbox
        );
        assert!(iou >= 0.85, "{iou}");
        assert!(box_iou(back, horse) >= 0.7);
    }
}

#[test]
fn detection_and_segmentation_are_deterministic() {
    let (Some(mut detector), Some(mut segmenter), Some(frames)) =
        (detector(), segmenter(), kitti_frames())
    else {
        return;
    };
    let rgb = rgb_of(&frames[0]);
    let first = detector.detect(&rgb).expect("detect");
    assert!(!first.is_empty());
    assert_eq!(first, detector.detect(&rgb).expect("detect again"));
    let crop = [0, 0, rgb.width(), rgb.height()];
    let labels = segmenter.segment_labels(&rgb, crop).expect("segment");
    assert_eq!(labels, segmenter.segment_labels(&rgb, crop).expect("again"));
}

#[test]
fn bad_regions_and_classes_are_input_errors() {
    let (Some(mut detector), Some(mut segmenter)) = (detector(), segmenter()) else {
        return;
    };
    let rgb = RgbImage::from_pixel(64, 48, Rgb([0, 0, 0]));
    for region in [
        [10.0, 10.0, 5.0, 20.0],
        [f64::NAN, 0.0, 5.0, 5.0],
        [100.0, 100.0, 120.0, 120.0],
    ] {
        let err = detector
            .detect_region(&rgb, region)
            .expect_err("bad region");
        assert!(matches!(err, ModelError::BadInput { .. }), "{err:?}");
    }
    let err = detector
        .detect(&RgbImage::new(0, 10))
        .expect_err("empty image");
    assert!(matches!(err, ModelError::BadInput { .. }), "{err:?}");
    let err = segmenter
        .segment_classes(&rgb, [0, 0, 65, 48], &[VOC_CAR])
        .expect_err("crop past the edge");
    assert!(err.to_string().contains("[0, 0, 65, 48]"), "{err}");
    let err = segmenter
        .segment_classes(&rgb, [0, 0, 64, 48], &[21])
        .expect_err("no class 21");
    assert!(matches!(err, ModelError::BadInput { .. }), "{err:?}");
}

#[test]
fn deeplab_masks_fill_kitti_car_boxes() {
    let (Some(mut segmenter), Some(frames)) = (segmenter(), kitti_frames()) else {
        return;
    };
    assert_eq!(segmenter.input_size(), (257, 257));
    let (mut coverages, mut leaks) = (Vec::new(), Vec::new());
    for frame in &frames {
        let rgb = rgb_of(frame);
        let (width, height) = rgb.dimensions();
        // Other vehicles and unlabelled regions may rightly show car pixels outside the box.
        let others: Vec<[f64; 4]> = frame
            .annotations
            .iter()
            .filter(|a| a.annotation.class != "Pedestrian" && a.annotation.class != "Cyclist")
            .map(xyxy)
            .collect();
        for annotation in &frame.annotations {
            let a = &annotation.annotation;
            let bbox = xyxy(annotation);
            let large = bbox[3] - bbox[1] >= 60.0;
            if a.class != "Car" || !large || a.occluded != Some(0) || a.truncated > Some(0.1) {
                continue;
            }
            let crop = widened(bbox, 0.25, width, height);
            let mask: GrayImage = segmenter
                .segment_classes(&rgb, crop, &[VOC_CAR])
                .expect("segment");
            assert_eq!(mask.dimensions(), (crop[2] - crop[0], crop[3] - crop[1]));
            let (mut in_box, mut box_area, mut stray, mut car) = (0u32, 0u32, 0u32, 0u32);
            for (x, y, &Luma([v])) in mask.enumerate_pixels() {
                let (x, y) = (x + crop[0], y + crop[1]);
                let is_car = v == 255;
                car += u32::from(is_car);
                if inside(bbox, x, y) {
                    box_area += 1;
                    in_box += u32::from(is_car);
                } else if is_car && !others.iter().any(|&o| inside(o, x, y)) {
                    stray += 1;
                }
            }
            let coverage = f64::from(in_box) / f64::from(box_area.max(1));
            let leak = f64::from(stray) / f64::from(car.max(1));
            eprintln!(
                "KITTI {} car {bbox:?}: mask covers {coverage:.3} of the box, {leak:.3} of the mask strays outside",
                file_name(frame)
            );
            coverages.push(coverage);
            leaks.push(leak);
        }
    }
    let (coverage, leak) = (median(coverages.clone()), median(leaks.clone()));
    eprintln!(
        "KITTI cars: median car-mask coverage of the box {coverage:.3}, median stray share {leak:.3}, over {} cars (min coverage {:.3}, max stray {:.3})",
        coverages.len(),
        coverages.iter().copied().fold(f64::INFINITY, f64::min),
        leaks.iter().copied().fold(0.0, f64::max),
    );
    assert!(coverages.len() >= 5, "{} cars", coverages.len());
    assert!(coverage >= 0.6, "{coverage}");
    assert!(leak <= 0.1, "{leak}");
}

#[test]
fn deeplab_finds_road_animals_where_their_masks_are() {
    let (Some(mut segmenter), Some(frames), Some(root)) = (
        segmenter(),
        road_animal_frames(),
        roadsynth_testkit::shared("datasets/road-animals"),
    ) else {
        return;
    };
    let mut ious = Vec::new();
    for frame in &frames {
        let rgb = rgb_of(frame);
        let (width, height) = rgb.dimensions();
        let stem = frame.image_path.file_stem().unwrap_or_default();
        let truth_path = root.join("masks").join(stem).with_extension("png");
        // 0 background, 2 animal.
        let truth = image::open(&truth_path)
            .expect("decode the mask")
            .to_luma8();
        assert_eq!(truth.dimensions(), (width, height));
        for annotation in &frame.annotations {
            let bbox = xyxy(annotation);
            // VOC has no zebra or donkey: only its own animals are expected.
            let species = annotation.annotation.attributes.get("species");
            let voc_species = species
                .and_then(|s| s.as_str())
                .is_some_and(|s| VOC_CLASSES.contains(&s));
            if !voc_species || (bbox[2] - bbox[0]) * (bbox[3] - bbox[1]) < 64.0 * 64.0 {
                continue;
            }
            let crop = widened(bbox, 0.2, width, height);
            let labels = segmenter.segment_labels(&rgb, crop).expect("segment");
            let (mut both, mut either) = (0u32, 0u32);
            let mut counts = [0u32; 21];
            for (x, y, &Luma([class])) in labels.enumerate_pixels() {
                counts[usize::from(class)] += 1;
                let ours = VOC_ANIMALS.contains(&u32::from(class));
                let theirs = truth.get_pixel(x + crop[0], y + crop[1]).0[0] == 2;
                both += u32::from(ours && theirs);
                either += u32::from(ours || theirs);
            }
            let iou = f64::from(both) / f64::from(either.max(1));
            let mut top: Vec<(u32, &str)> = counts
                .iter()
                .zip(VOC_CLASSES)
                .filter(|(n, _)| **n > 0)
                .map(|(n, c)| (*n, c))
                .collect();
            top.sort_by(|a, b| b.cmp(a));
            eprintln!(
                "{} {:?}: animal-mask IoU {iou:.3} with the labelled mask; classes {:?}",
                file_name(frame),
                annotation.annotation.attributes.get("species"),
                &top[..top.len().min(3)],
            );
            ious.push(iou);
        }
    }
    let median_iou = median(ious.clone());
    let good = ious.iter().filter(|&&iou| iou >= 0.5).count();
    eprintln!(
        "road animals: median IoU of the VOC animal mask with the labelled mask {median_iou:.3} over {} boxes, {good} at 0.5 or more",
        ious.len()
    );
    assert!(ious.len() >= 8, "{}", ious.len());
    assert!(median_iou >= 0.6, "{median_iou}");
    assert!(good * 3 >= ious.len() * 2, "{good}/{}", ious.len());
}

#[test]
fn dashcam_frames_have_a_plausible_drivable_area() {
    let (Some(mut model), Some(dir)) = (
        model(),
        roadsynth_testkit::shared("datasets/dashcam/yolop_bdd100k"),
    ) else {
        return;
    };
    assert_eq!(model.input_size(), (640, 360));
    let mut frames: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read the dashcam folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    frames.sort();
    assert!(frames.len() >= 5, "{} frames", frames.len());
    let mut fractions = Vec::new();
    for path in &frames {
        let rgb = image::open(path).expect("decode").to_rgb8();
        let start = Instant::now();
        let mask = model.predict(&rgb).expect("inference");
        let elapsed = start.elapsed();
        assert_eq!((mask.width, mask.height), rgb.dimensions());
        let (fraction, lower) = (mask.fraction(), lower_half_share(&mask));
        eprintln!(
            "{}: {}x{}, drivable {fraction:.3} of the frame, {lower:.3} of it in the lower half, {:.0} ms",
            path.file_name().unwrap_or_default().to_string_lossy(),
            mask.width,
            mask.height,
            elapsed.as_secs_f64() * 1e3,
        );
        assert!((0.05..=0.50).contains(&fraction), "{fraction}");
        assert!(lower >= 0.9, "{lower}");
        fractions.push(fraction);
    }
    eprintln!(
        "BDD100K dash-cam: median drivable fraction {:.3} over {} frames",
        median(fractions.clone()),
        fractions.len()
    );
}

#[test]
fn camvid_model_masks_overlap_the_labelled_road() {
    let (Some(mut model), Some(root)) = (model(), roadsynth_testkit::shared("datasets/camvid"))
    else {
        return;
    };
    let scan = coco::scan(&root.join("annotations_val.json"), None, "val").expect("scan");
    let mut records = Vec::new();
    let sunk: Result<(), ()> = load_all(scan.frames, &LoadOptions::default(), 64, |r| {
        records.extend(r.ok());
        Ok(())
    });
    assert!(sunk.is_ok() && !records.is_empty());
    let ground = GroundModel::horizon_prior(480, 360, 60.0);
    let classes = SemanticRoadClasses::default();
    let mut ious = Vec::new();
    for record in records.iter().step_by(10) {
        let labels = masks_from_labels(
            record.semantic_label.as_deref().expect("CamVid has labels"),
            &classes,
            &ground,
        )
        .expect("labels decode");
        // Without its labels the frame falls back to the model.
        let mut unlabelled = record.clone();
        unlabelled.semantic_label = None;
        let masks =
            ground_masks(&unlabelled, &ground, &classes, Some(&mut model)).expect("model masks");
        assert_eq!(
            masks.source,
            MaskSource::Model {
                name: "twinlitenet_bdd100k_360x640".into()
            }
        );
        let iou = masks.drivable.iou(&labels.drivable).expect("same size");
        eprintln!(
            "CamVid {}: model drivable {:.3}, label road {:.3}, IoU {iou:.3}, roadside {:.3}",
            record.frame.image_name,
            masks.drivable.fraction(),
            labels.drivable.fraction(),
            masks.roadside.fraction(),
        );
        ious.push(iou);
    }
    let median_iou = median(ious.clone());
    eprintln!(
        "CamVid val: median IoU of the model's drivable area with the labelled road {median_iou:.3} over {} frames (min {:.3})",
        ious.len(),
        ious.iter().copied().fold(f64::INFINITY, f64::min),
    );
    assert!(median_iou > 0.6, "{median_iou}");
}
