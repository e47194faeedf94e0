//! Checks of the ground geometry and masks on the shared real data (KITTI, `CamVid`).

use std::collections::BTreeMap;
use std::path::Path;

use roadsynth_formats::{LoadOptions, Scan, coco, kitti, load_all};
use roadsynth_geometry::{
    BoxObservation, DatasetFit, DrivableMask, DrivableSegmenter, FitOptions, GeometrySource,
    GroundModel, MaskCache, MaskSource, SegmenterError, SemanticRoadClasses, fit_dataset,
    fit_from_boxes, footprint_depths, ground_masks, observations, placement_band,
};
use roadsynth_types::{Annotation, FrameRecord};

fn load(scan: Scan) -> Vec<FrameRecord> {
    let mut records = Vec::new();
    let sunk: Result<(), ()> = load_all(scan.frames, &LoadOptions::default(), 64, |result| {
        if let Ok(record) = result {
            records.push(record);
        }
        Ok(())
    });
    assert!(sunk.is_ok());
    records
}

fn kitti_records() -> Option<Vec<FrameRecord>> {
    let root = roadsynth_testkit::shared("datasets/kitti-object")?;
    let records = load(kitti::scan(&root, "train").expect("scan KITTI"));
    assert_eq!(records.len(), 18, "the shared KITTI sample has 18 frames");
    Some(records)
}

fn camvid_records(split: &str) -> Option<Vec<FrameRecord>> {
    let root = roadsynth_testkit::shared("datasets/camvid")?;
    let json = root.join(format!("annotations_{split}.json"));
    let records = load(coco::scan(&json, None, split).expect("scan CamVid"));
    assert!(!records.is_empty());
    Some(records)
}

fn median(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty(), "median of nothing");
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

const KITTI_CLASSES: [&str; 3] = ["Car", "Pedestrian", "Cyclist"];

/// The image row of a camera-frame point projected through a row-major 3x4 matrix.
fn projected_row(matrix: &[f64; 12], point: [f64; 3]) -> f64 {
    let dot = |row: usize| {
        (0..3).map(|i| matrix[4 * row + i] * point[i]).sum::<f64>() + matrix[4 * row + 3]
    };
    dot(1) / dot(2)
}

/// The exact reference: the rows spanned by the 8 projected corners of a KITTI 3D box, clipped to
/// the image.
fn projected_rows(matrix: &[f64; 12], annotation: &Annotation, image_height: u32) -> (f64, f64) {
    let k = annotation.kitti.expect("3D fields");
    let [height, width, length] = k.dimensions_hwl;
    let [x, y, z] = k.location_xyz;
    let (sin, cos) = k.rotation_y.sin_cos();
    let (mut top, mut bottom) = (f64::INFINITY, f64::NEG_INFINITY);
    for (along, across) in [(1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)] {
        let (ox, oz) = (along * length / 2.0, across * width / 2.0);
        // Rotation about the camera's y axis by rotation_y.
        let (corner_x, corner_z) = (x + cos * ox + sin * oz, z - sin * ox + cos * oz);
        for corner_y in [y, y - height] {
            let row = projected_row(matrix, [corner_x, corner_y, corner_z]);
            top = top.min(row);
            bottom = bottom.max(row);
        }
    }
    let image_height = f64::from(image_height);
    (
        top.clamp(0.0, image_height),
        bottom.clamp(0.0, image_height),
    )
}

#[test]
fn kitti_pixel_heights_from_intrinsics_match_the_boxes() {
    let Some(records) = kitti_records() else {
        return;
    };
    let mut simple: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut boxed: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let (mut exact, mut all_boxed, mut foot_px, mut foot_rel, mut all) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut near_px, mut near_rel) = (vec![], vec![]);
    for record in &records {
        let camera = record.frame.camera.expect("KITTI frames have P2");
        let p2 = camera.projection.expect("P2");
        let model = GroundModel::from_camera(&camera, 1.65).expect("valid intrinsics");
        assert_eq!(
            model.source,
            GeometrySource::Intrinsics {
                camera_height_m: 1.65,
                height_assumed: false
            }
        );
        for a in &record.annotations {
            let Some(class) = KITTI_CLASSES.iter().find(|c| **c == a.class) else {
                continue;
            };
            let k = a.kitti.expect("3D fields");
            let (h, z) = (k.dimensions_hwl[0], k.location_xyz[2]);
            let box_h = a.bbox.height();
            let rel = (model.pixel_height(h, z) - box_h).abs() / box_h;
            simple.entry(class).or_default().push(rel);
            all.push(rel);
            let (top, bottom) = projected_rows(&p2, a, record.frame.height);
            exact.push(((bottom - top) - box_h).abs() / box_h);
            // The ground-plane model with the object's footprint, clipped to the image like
            // the labelled box.
            let [_, width, length] = k.dimensions_hwl;
            let (z_near, z_far) = footprint_depths(z, length, width, k.rotation_y);
            let (top, bottom) = model.box_rows(h, z_near, z_far);
            let image_h = f64::from(record.frame.height);
            let predicted = bottom.clamp(0.0, image_h) - top.clamp(0.0, image_h);
            let rel = (predicted - box_h).abs() / box_h;
            boxed.entry(class).or_default().push(rel);
            all_boxed.push(rel);
            let foot = model.row_at_depth(z);
            foot_px.push((foot - a.bbox.y1).abs());
            foot_rel.push((foot - a.bbox.y1).abs() / box_h);
            let near = model.row_at_depth(z_near).min(image_h);
            near_px.push((near - a.bbox.y1).abs());
            near_rel.push((near - a.bbox.y1).abs() / box_h);
        }
    }
    let n = all.len();
    let median_simple = median(all);
    let median_boxed = median(all_boxed);
    let median_exact = median(exact);
    eprintln!(
        "KITTI intrinsics, {n} Car/Pedestrian/Cyclist: median relative height error: ground plane with footprint \
         {median_boxed:.4}, H*fy/Z {median_simple:.4}, 8-corner projection through P2 {median_exact:.4}"
    );
    eprintln!(
        "  foot row vs box bottom: from the centre depth Z median {:.2} px ({:.4} of the box height), \
         from the footprint's nearest depth {:.2} px ({:.4})",
        median(foot_px),
        median(foot_rel),
        median(near_px),
        median(near_rel),
    );
    for (class, errors) in &boxed {
        eprintln!(
            "  {class}: n {}, median with footprint {:.4}, H*fy/Z {:.4}",
            errors.len(),
            median(errors.clone()),
            median(simple[class].clone()),
        );
    }
    assert!(n >= 90, "{n} objects");
    assert!(median_boxed <= 0.05, "median {median_boxed}");
    assert!(median_exact <= 0.05, "median {median_exact}");
    assert!(median_simple <= 0.08, "median {median_simple}");
}

/// Observations of every frame, with for each frame the objects it is evaluated on.
fn kitti_observations(records: &[FrameRecord], opts: &FitOptions) -> Vec<Vec<BoxObservation>> {
    records
        .iter()
        .map(|r| observations(&r.frame, &r.annotations, opts))
        .collect()
}

#[test]
fn kitti_fit_without_intrinsics_predicts_held_out_heights() {
    let Some(records) = kitti_records() else {
        return;
    };
    let opts = FitOptions::default();
    let per_frame = kitti_observations(&records, &opts);
    let total: usize = per_frame.iter().map(Vec::len).sum();

    // Leave one frame out: fit on the other 17 frames' boxes, predict this frame's boxes.
    let (mut errors, mut errors_true_h, mut all_errors) = (vec![], vec![], vec![]);
    let (mut horizons, mut heights) = (vec![], vec![]);
    for (i, record) in records.iter().enumerate() {
        let training: Vec<BoxObservation> = per_frame
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .flat_map(|(_, obs)| obs.iter().cloned())
            .collect();
        let model = fit_from_boxes(&training, record.frame.width, &opts).expect("fits");
        horizons.push(model.horizon_row);
        heights.push(model.camera_height_m);
        for o in &per_frame[i] {
            let predicted = model.pixel_height_at_row(o.prior_height_m, o.bottom_row);
            errors.push((predicted - o.height_px).abs() / o.height_px);
        }
        for a in &record.annotations {
            if !KITTI_CLASSES.contains(&a.class.as_str()) {
                continue;
            }
            let prior = opts
                .priors
                .iter()
                .find(|p| p.aliases.iter().any(|n| n.eq_ignore_ascii_case(&a.class)))
                .expect("prior");
            let predicted = model.pixel_height_at_row(prior.height_m, a.bbox.y1);
            all_errors.push((predicted - a.bbox.height()).abs() / a.bbox.height());
            if let Some(k) = a.kitti {
                let predicted = model.pixel_height_at_row(k.dimensions_hwl[0], a.bbox.y1);
                errors_true_h.push((predicted - a.bbox.height()).abs() / a.bbox.height());
            }
        }
    }
    let whole = fit_from_boxes(
        &per_frame.concat(),
        records[0].frame.width,
        &FitOptions::default(),
    )
    .expect("fits");
    let n = errors.len();
    let med = median(errors);
    eprintln!(
        "KITTI fit without intrinsics on {total} usable boxes: whole-set horizon {:.1} px (P2 cy 172.9-187), camera height {:.3} m (true 1.65), source {:?}",
        whole.horizon_row, whole.camera_height_m, whole.source
    );
    eprintln!(
        "  leave-one-frame-out: horizon {:.1}..{:.1}, camera height {:.3}..{:.3}; median relative height error \
         {med:.4} on {n} usable held-out boxes, {:.4} with the labelled 3D height, {:.4} on all {} Car/Pedestrian/Cyclist boxes \
         (incl. truncated and occluded)",
        horizons.iter().copied().fold(f64::INFINITY, f64::min),
        horizons.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        heights.iter().copied().fold(f64::INFINITY, f64::min),
        heights.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        median(errors_true_h),
        median(all_errors.clone()),
        all_errors.len(),
    );
    assert!(n >= 50, "{n} held-out boxes");
    assert!(med <= 0.15, "median {med}");
    assert!((whole.camera_height_m - 1.65).abs() < 0.4, "{whole:?}");
    assert!((150.0..210.0).contains(&whole.horizon_row), "{whole:?}");
}

#[test]
fn kitti_frames_choose_their_intrinsics() {
    let Some(records) = kitti_records() else {
        return;
    };
    let geometry = fit_dataset(
        records.iter().map(|r| (&r.frame, r.annotations.as_slice())),
        &FitOptions::default(),
    );
    assert!(geometry.dataset.is_some());
    for r in &records {
        assert_eq!(geometry.for_frame(&r.frame).source.as_str(), "intrinsics");
    }
    // Without a camera: the dataset's fit; with no usable boxes either: the horizon prior.
    let mut frame = records[0].frame.clone();
    frame.camera = None;
    let fitted = geometry.for_frame(&frame);
    assert_eq!(fitted.source.as_str(), "fitted");
    assert!(
        (fitted.focal_px - roadsynth_geometry::focal_from_hfov(frame.width, 60.0)).abs() < 1e-9
    );
    let empty = fit_dataset([(&frame, &[][..])], &FitOptions::default());
    assert!(empty.dataset.is_none());
    assert!(
        empty
            .dataset_error
            .as_deref()
            .is_some_and(|e| e.contains("0 usable boxes")),
        "{:?}",
        empty.dataset_error
    );
    let prior = empty.for_frame(&frame);
    assert_eq!(prior.source.as_str(), "horizon");
    assert!((prior.horizon_row - f64::from(frame.height) / 2.0).abs() < 1e-9);
}

/// Issue 6 (memory flat in dataset size): the augment stage fits the geometry frame by frame as it
/// streams the dataset, keeping no frame; the result is the fit over the collected frames.
#[test]
fn issue_6_geometry_fitted_frame_by_frame_equals_the_fit_over_all_frames() {
    let Some(train) = camvid_records("train") else {
        return;
    };
    let records = with_sequences(train);
    let opts = FitOptions::default();
    let collected = fit_dataset(
        records.iter().map(|r| (&r.frame, r.annotations.as_slice())),
        &opts,
    );
    let mut streamed = DatasetFit::new(&opts);
    for r in records.clone() {
        streamed.add(&r.frame, &r.annotations);
    }
    let streamed = streamed.finish();
    assert!(collected.dataset.is_some() && collected.sequences.len() >= 2);
    assert_eq!(streamed, collected);
    // Frames of several widths: the fitted focal length follows the median width (not the most
    // common, not the mean), as when every width was kept.
    let mut mixed = DatasetFit::new(&opts);
    for (i, r) in records.iter().enumerate() {
        let mut frame = r.frame.clone();
        frame.width = [900, 900, 960, 1000, 1100][i % 5];
        mixed.add(&frame, &r.annotations);
    }
    let mixed = mixed.finish();
    let model = mixed.dataset.expect("a fit");
    assert!(
        (model.focal_px - roadsynth_geometry::focal_from_hfov(960, opts.hfov_deg)).abs() < 1e-9,
        "{model:?}"
    );
}

/// `CamVid` frames with their sequence (the image name's prefix, `0001TP_006690.jpg`).
fn with_sequences(mut records: Vec<FrameRecord>) -> Vec<FrameRecord> {
    for r in &mut records {
        let name = Path::new(&r.frame.image_name)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        r.frame.sequence = name.split('_').next().map(str::to_string);
    }
    records
}

#[test]
fn camvid_fit_on_train_cars_is_sane() {
    let (Some(train), Some(val)) = (camvid_records("train"), camvid_records("val")) else {
        return;
    };
    let opts = FitOptions::default();
    let geometry = fit_dataset(
        train.iter().map(|r| (&r.frame, r.annotations.as_slice())),
        &opts,
    );
    let model = geometry.dataset.clone().expect("a fit on CamVid train");
    let GeometrySource::FittedFromBoxes {
        classes,
        n,
        residual,
        assumed_hfov_deg,
    } = &model.source
    else {
        panic!("fitted source expected: {:?}", model.source);
    };
    eprintln!(
        "CamVid train fit: horizon {:.1} px of 360, camera height {:.3} m (scale {:.4} px per m of height per px of row), \
         focal {:.1} px from an assumed {assumed_hfov_deg} deg FOV, classes {classes:?}, n {n}, median relative residual {residual:.4}",
        model.horizon_row,
        model.camera_height_m,
        1.0 / model.camera_height_m,
        model.focal_px,
    );
    assert!((0.0..216.0).contains(&model.horizon_row), "{model:?}");
    assert!((0.5..4.0).contains(&model.camera_height_m), "{model:?}");
    assert!(*residual < 0.25, "{residual}");
    for r in &train {
        assert_eq!(geometry.for_frame(&r.frame).source.as_str(), "fitted");
    }

    // Heights planned at a row agree with the real cars of the val split standing on that row.
    let mut errors = Vec::new();
    for r in &val {
        for o in observations(&r.frame, &r.annotations, &opts) {
            if o.class == "car" {
                let planned = model.pixel_height_at_row(o.prior_height_m, o.bottom_row);
                errors.push((planned - o.height_px).abs() / o.height_px);
            }
        }
    }
    let n_val = errors.len();
    let med = median(errors);
    eprintln!(
        "  val cars: median relative error of the planned car height at their foot row {med:.4} (n {n_val})"
    );
    assert!(med < 0.3, "{med}");

    // Per sequence, when frames carry one.
    let train = with_sequences(train);
    let per_sequence = fit_dataset(
        train.iter().map(|r| (&r.frame, r.annotations.as_slice())),
        &opts,
    );
    for (name, m) in &per_sequence.sequences {
        let GeometrySource::FittedFromBoxes { n, residual, .. } = &m.source else {
            panic!("fitted source expected");
        };
        eprintln!(
            "  sequence {name}: horizon {:.1}, camera height {:.3} m, n {n}, residual {residual:.4}",
            m.horizon_row, m.camera_height_m
        );
        assert!(m.camera_height_m > 0.0);
    }
    assert!(!per_sequence.sequences.is_empty());
    let first = &train[0];
    let chosen = per_sequence.for_frame(&first.frame);
    let sequence = first.frame.sequence.as_ref().expect("sequence");
    assert_eq!(chosen.source, per_sequence.sequences[sequence].source);
}

#[test]
fn camvid_masks_from_labels_are_plausible_and_cache() {
    let Some(records) = camvid_records("val") else {
        return;
    };
    let ground = GroundModel::horizon_prior(480, 360, 60.0);
    let classes = SemanticRoadClasses::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = MaskCache::for_dataset(dir.path());
    let (mut fractions, mut read_times) = (Vec::new(), Vec::new());
    for record in records.iter().step_by(10) {
        let masks = ground_masks(record, &ground, &classes, None).expect("masks");
        assert_eq!(masks.source, MaskSource::SemanticLabels);
        let (d, s) = (masks.drivable.fraction(), masks.roadside.fraction());
        fractions.push(d);
        eprintln!(
            "CamVid {}: road {:.3}, pavement {:.3}",
            record.frame.image_name, d, s
        );
        assert!((0.10..=0.50).contains(&d), "road fraction {d}");
        // Most road lies in the lower half.
        let lower: usize = (180..360)
            .map(|y| masks.drivable.row(y).iter().filter(|&&b| b != 0).count())
            .sum();
        assert!(lower as f64 >= 0.8 * masks.drivable.count() as f64);

        let path = cache.write(&record.frame.id, &masks).expect("write cache");
        assert!(path.starts_with(dir.path().join("cache/masks/labels")));
        let start = std::time::Instant::now();
        let back = cache
            .read(&record.frame.id, &MaskSource::SemanticLabels)
            .expect("read cache")
            .expect("cached");
        read_times.push(start.elapsed().as_secs_f64() * 1e3);
        assert_eq!(back, masks);
        let first = cache
            .read_first(
                &record.frame.id,
                &[
                    MaskSource::Model {
                        name: "twinlitenet".into(),
                    },
                    MaskSource::SemanticLabels,
                ],
            )
            .expect("read cache");
        assert_eq!(first.as_ref(), Some(&masks));

        // A band of 8 to 20 m: only drivable pixels, at the right depths.
        let band = placement_band(&ground, &masks.drivable, 8.0, 20.0);
        for (x, y) in band.pixels(&masks.drivable) {
            assert!(masks.drivable.get(x, y));
            let z = ground
                .depth_at_row(f64::from(y) + 0.5)
                .expect("below horizon");
            assert!((8.0..=20.0).contains(&z), "{z}");
        }
    }
    eprintln!(
        "CamVid val road fraction median {:.3} over {} frames; cached mask read median {:.2} ms",
        median(fractions.clone()),
        fractions.len(),
        median(read_times),
    );
    assert!(
        cache
            .read(&records[1].frame.id, &MaskSource::SemanticLabels)
            .expect("read")
            .is_none(),
        "not written"
    );
}

/// A stand-in model: the bottom third of the frame is drivable.
#[derive(Debug)]
struct BottomThird;

impl DrivableSegmenter for BottomThird {
    fn name(&self) -> &'static str {
        "bottom-third"
    }

    fn drivable(&mut self, rgb: &image::RgbImage) -> Result<DrivableMask, SegmenterError> {
        let (w, h) = rgb.dimensions();
        Ok(DrivableMask::from_fn(w, h, |_, y| y >= h * 2 / 3))
    }
}

#[test]
fn frames_without_labels_use_the_model_then_the_horizon() {
    let Some(records) = kitti_records() else {
        return;
    };
    let record = &records[0];
    let ground = GroundModel::from_camera(&record.frame.camera.expect("P2"), 1.65).expect("camera");
    let classes = SemanticRoadClasses::default();
    let mut model = BottomThird;
    let masks = ground_masks(record, &ground, &classes, Some(&mut model)).expect("masks");
    assert_eq!(
        masks.source,
        MaskSource::Model {
            name: "bottom-third".into()
        }
    );
    assert_eq!(masks.drivable.width, record.frame.width);
    assert!(
        masks.roadside.count() == 0,
        "the stand-in road spans the frame's width"
    );
    let masks = ground_masks(record, &ground, &classes, None).expect("masks");
    assert_eq!(masks.source, MaskSource::BelowHorizon);
    let expected = (record.frame.height as usize
        - ((ground.horizon_row - 0.5).floor() as usize + 1))
        * record.frame.width as usize;
    assert_eq!(masks.drivable.count(), expected);
}
