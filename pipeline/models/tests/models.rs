//! The drivable-area model on real frames: `BDD100K` dash-cam frames and `CamVid` against its labels.

use std::path::{Path, PathBuf};
use std::time::Instant;

use roadsynth_formats::{LoadOptions, coco, load_all};
use roadsynth_geometry::{
    DrivableMask, GroundModel, MaskSource, SemanticRoadClasses, ground_masks, masks_from_labels,
};
use roadsynth_models::{DrivableAreaModel, ModelError, ORT_DYLIB_ENV, init_runtime};

/// The shared model, when the model and ONNX Runtime are both available (else the test skips).
fn model() -> Option<DrivableAreaModel> {
    let path = roadsynth_testkit::shared(DrivableAreaModel::SHARED_PATH)?;
    if std::env::var_os(ORT_DYLIB_ENV).is_none() && !roadsynth_testkit::python_module("onnxruntime")
    {
        return None;
    }
    Some(DrivableAreaModel::load(&path).expect("the shared TwinLiteNet model loads"))
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
