//! The engine on real data: `CamVid` frames with plans from the placement model and COCO animal
//! cut-outs from the asset bank; vehicle edits on KITTI; the quality filter with `YOLOX`-nano.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use image::{GrayImage, RgbImage};
use roadsynth_assets::{AssetBank, BuildOptions};
use roadsynth_dataset::{Dataset, DatasetWriter, WriteOptions};
use roadsynth_engine::{
    DetectorFilter, ExemplarCompositor, ExemplarConfig, ExemplarLibrary, FilterConfig, FrameInput,
    InsertBackend, InsertConfig, InsertOutcome, InsertionEngine, InsertionStatus, NaiveConfig,
    NaivePaste, VehicleEditConfig, VehicleEditStatus, VehicleEditor,
};
use roadsynth_formats::{LoadOptions, coco, kitti, load_all};
use roadsynth_geometry::{FitOptions, SemanticRoadClasses, fit_dataset, ground_masks};
use roadsynth_models::{CocoDetector, VehicleSegmenter};
use roadsynth_placement::{MaskView, PlanRow, Planner, Scene, class_stats_from_annotations};
use roadsynth_scenario::{Colour, EditBackend, EditVehicles, Finish, Operation};
use roadsynth_testkit::shared;
use roadsynth_types::{FrameRecord, Origin};

/// Frames of `CamVid` train the insertion tests render.
const CAMVID_FRAMES: usize = 60;

fn load(scan: roadsynth_formats::Scan) -> Vec<FrameRecord> {
    let mut records = Vec::new();
    let sunk: Result<(), String> = load_all(scan.frames, &LoadOptions::default(), 32, |r| {
        records.push(r.map_err(|q| format!("{q:?}"))?);
        Ok(())
    });
    sunk.expect("every frame loads");
    records
}

/// The COCO animal cut-outs, ingested and built once per test binary.
fn library() -> Option<Arc<ExemplarLibrary>> {
    static LIBRARY: OnceLock<Option<Arc<ExemplarLibrary>>> = OnceLock::new();
    LIBRARY
        .get_or_init(|| {
            let source = shared("datasets/coco-animals-vehicles")?;
            // Under the build folder: a static fixture is never dropped, a TempDir would leak.
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("engine-coco-subset");
            if dir.exists() {
                std::fs::remove_dir_all(&dir).expect("remove the previous fixture");
            }
            let scan = coco::scan(
                &source.join("instances_subset.json"),
                Some(&source.join("images")),
                "train",
            )
            .expect("scan COCO");
            let mut writer =
                DatasetWriter::create(&dir, WriteOptions::default()).expect("create dataset");
            for r in load(scan) {
                writer.write(&r).expect("write");
            }
            writer
                .commit(serde_json::json!({"test": "engine"}))
                .expect("commit");
            let dataset = Dataset::open(&dir).expect("open");
            let options = BuildOptions {
                classes: [
                    "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra",
                    "giraffe",
                ]
                .iter()
                .map(|c| (*c).to_string())
                .collect(),
                min_area_px: 400,
                ..BuildOptions::default()
            };
            let (bank, _) = AssetBank::build(&dataset, &options).expect("build bank");
            Some(Arc::new(
                ExemplarLibrary::from_bank(&bank, None).expect("decode cut-outs"),
            ))
        })
        .clone()
}

/// A `CamVid` frame decoded, with its plan rows (one variant).
struct Planned {
    record: FrameRecord,
    image: RgbImage,
    labels: GrayImage,
    rows: Vec<PlanRow>,
}

impl Planned {
    fn input(&self) -> FrameInput<'_> {
        FrameInput::new(&self.image, &self.record.annotations).with_semantic(Some(&self.labels))
    }
}

/// The first `CamVid` train frames planned with `scenarios/animals-on-roads.yaml`, as the plan
/// stage plans them (geometry fitted on the frames' own boxes, ground from the semantic labels).
fn camvid_plans() -> Option<&'static [Planned]> {
    static PLANS: OnceLock<Option<Vec<Planned>>> = OnceLock::new();
    PLANS
        .get_or_init(|| {
            let root = shared("datasets/camvid")?;
            let all = load(
                coco::scan(&root.join("annotations_train.json"), None, "train").expect("scan"),
            );
            let scenario_path =
                roadsynth_testkit::repo_root().join("scenarios/animals-on-roads.yaml");
            let scenario = roadsynth_scenario::load(&scenario_path).expect("scenario");
            let Some(Operation::InsertObjects(insert)) = scenario
                .operations
                .iter()
                .find(|o| matches!(o, Operation::InsertObjects(_)))
            else {
                panic!("animals-on-roads inserts objects");
            };
            let geometry = fit_dataset(
                all.iter().map(|r| (&r.frame, r.annotations.as_slice())),
                &FitOptions::default(),
            );
            let stats = class_stats_from_annotations(all.iter().flat_map(|r| &r.annotations));
            let planner = Planner::new(insert, scenario.seed, &stats);
            // Every sixth frame: CamVid's neighbours are near-duplicates.
            let planned = all
                .into_iter()
                .step_by(6)
                .take(CAMVID_FRAMES)
                .map(|record| {
                    let ground = geometry.for_frame(&record.frame);
                    let masks =
                        ground_masks(&record, &ground, &SemanticRoadClasses::default(), None)
                            .expect("ground masks");
                    let scene = Scene {
                        frame_id: record.frame.id.as_str(),
                        width: record.frame.width,
                        height: record.frame.height,
                        existing: &record.annotations,
                        ground: &ground,
                        drivable: MaskView::from(&masks.drivable),
                        roadside: MaskView::from(&masks.roadside),
                    };
                    let plan = planner.plan(&scene, 0);
                    let rows = PlanRow::rows_of(&plan, &scenario.name, &masks.source.cache_key());
                    let image = image::load_from_memory(record.image.as_deref().expect("bytes"))
                        .expect("decode")
                        .to_rgb8();
                    let labels = image::load_from_memory(
                        record.semantic_label.as_deref().expect("CamVid has labels"),
                    )
                    .expect("decode labels")
                    .to_luma8();
                    Planned {
                        record,
                        image,
                        labels,
                        rows,
                    }
                })
                .collect();
            Some(planned)
        })
        .as_deref()
}

fn exemplar_engine(library: &Arc<ExemplarLibrary>) -> InsertionEngine {
    let backend =
        ExemplarCompositor::new(library.clone(), ExemplarConfig::standard()).expect("exemplar");
    InsertionEngine::new(InsertBackend::Exemplar(backend), InsertConfig::default()).expect("engine")
}

fn naive_engine(library: &Arc<ExemplarLibrary>) -> InsertionEngine {
    let backend = NaivePaste::new(library.clone(), NaiveConfig::default()).expect("naive");
    InsertionEngine::new(InsertBackend::Naive(backend), InsertConfig::default()).expect("engine")
}

fn detector() -> Option<CocoDetector> {
    let path = shared(CocoDetector::SHARED_PATH)?;
    Some(CocoDetector::load_with_threads(&path, Some(1)).expect("load YOLOX-nano"))
}

/// Saves an image under `$ROADSYNTH_ENGINE_DUMP` when it is set (to look at what the tests made).
fn dump(name: &str, image: &RgbImage) {
    if let Some(dir) = std::env::var_os("ROADSYNTH_ENGINE_DUMP") {
        let dir = Path::new(&dir);
        std::fs::create_dir_all(dir).expect("dump folder");
        image.save(dir.join(name)).expect("save dump");
    }
}

/// Pixels outside the edit mask are the input's; returns how many pixels the mask covers.
fn assert_outside_mask_identical(input: &RgbImage, output: &RgbImage, mask: &GrayImage) -> usize {
    assert_eq!(input.dimensions(), output.dimensions());
    assert_eq!(input.dimensions(), mask.dimensions());
    let mut masked = 0;
    for ((a, b), m) in input.pixels().zip(output.pixels()).zip(mask.pixels()) {
        if m.0[0] == 0 {
            assert_eq!(a, b, "a pixel outside the edit mask changed");
        } else {
            masked += 1;
        }
    }
    masked
}

/// Checks one frame's insertions; returns (planned, kept).
fn check_insertions(planned: &Planned, outcome: &InsertOutcome) -> (usize, usize) {
    let (w, h) = planned.image.dimensions();
    let masked = assert_outside_mask_identical(&planned.image, &outcome.image, &outcome.edit_mask);
    assert_eq!(outcome.reports.len(), planned.rows.len());
    assert_eq!(
        outcome.annotations.len(),
        planned.record.annotations.len() + outcome.generated.len()
    );
    // Existing labels stay valid: same classes and boxes.
    for (a, b) in planned.record.annotations.iter().zip(&outcome.annotations) {
        assert_eq!((&a.class, a.bbox), (&b.class, b.bbox));
    }
    let kept: Vec<_> = outcome
        .reports
        .iter()
        .filter(|r| r.status == InsertionStatus::Kept)
        .collect();
    assert_eq!(kept.len(), outcome.generated.len());
    assert_eq!(kept.len() as u64, outcome.kept);
    if !kept.is_empty() {
        assert!(masked > 0, "kept insertions but an empty edit mask");
    }
    for (report, a) in kept.iter().zip(&outcome.generated) {
        let b = a.bbox;
        assert!(
            b.x0 >= 0.0 && b.y0 >= 0.0 && b.x1 <= f64::from(w) && b.y1 <= f64::from(h),
            "box {b:?} outside the {w}x{h} frame"
        );
        // By object index, not position: an object placement could not place leaves a gap.
        let row = planned
            .rows
            .iter()
            .find(|r| r.object_index == report.object_index)
            .expect("the report's plan row");
        let plan = roadsynth_types::BBox::new(row.x0, row.y0, row.x1, row.y1);
        // The whole rendered object fits its planned box; so does the visible part unless
        // nearer objects hide some of it (then the label is the visible part's box). Below 8 px
        // a side, whole-pixel rounding alone moves the IoU by more than 0.2: there the box must
        // land within a pixel instead.
        let [x0, y0, x1, y1] = report.amodal_bbox.expect("amodal box");
        let amodal = roadsynth_types::BBox::new(x0, y0, x1, y1);
        if plan.width() >= 8.0 && plan.height() >= 8.0 {
            assert!(
                amodal.iou(&plan) >= 0.8,
                "object {} of {}: rendered box {amodal:?} vs planned {plan:?}: IoU {:.3}",
                report.object_index,
                row.frame_id,
                amodal.iou(&plan),
            );
            let visible = report.visible_fraction.expect("visible fraction");
            if visible >= 0.98 {
                assert!(
                    b.iou(&plan) >= 0.8,
                    "object {} of {}: tight box {b:?} vs planned {plan:?}: IoU {:.3}",
                    report.object_index,
                    row.frame_id,
                    b.iou(&plan),
                );
            }
        } else {
            for (r, p) in [
                (amodal.x0, plan.x0),
                (amodal.y0, plan.y0),
                (amodal.x1, plan.x1),
                (amodal.y1, plan.y1),
            ] {
                assert!(
                    (r - p).abs() <= 1.5,
                    "small object {amodal:?} vs planned {plan:?}"
                );
            }
        }
        assert!(b.x0 >= amodal.x0 && b.y0 >= amodal.y0 && b.x1 <= amodal.x1 && b.y1 <= amodal.y1);
        assert_eq!(a.class, row.label);
        let Origin::Generated {
            seed, operation, ..
        } = &a.origin
        else {
            panic!("generated annotation with origin {:?}", a.origin);
        };
        assert_eq!((*seed, operation.as_str()), (row.seed, "insert_objects"));
        assert_eq!(
            a.attributes.get("depth_m"),
            row.depth_m.map(Into::into).as_ref()
        );
        assert!(a.attributes.contains_key("asset_id"));
        // Every edited pixel of the object lies in the edit mask.
        let inside = (b.y0 as u32..b.y1 as u32)
            .flat_map(|y| (b.x0 as u32..b.x1 as u32).map(move |x| (x, y)))
            .filter(|&(x, y)| outcome.edit_mask.get_pixel(x, y).0[0] > 0)
            .count();
        assert!(inside > 0);
    }
    (planned.rows.len(), kept.len())
}

#[test]
fn insertions_fit_their_plans_and_leave_everything_else_bit_exact() {
    let (Some(library), Some(plans)) = (library(), camvid_plans()) else {
        return;
    };
    assert!(library.of_class("horse").count() > 3, "the bank has horses");
    for (name, mut engine) in [
        ("exemplar", exemplar_engine(&library)),
        ("naive", naive_engine(&library)),
    ] {
        let (mut planned, mut kept, mut substituted, mut poisson) = (0, 0, 0, 0);
        let mut blur = Vec::new();
        let mut noise = Vec::new();
        let mut l_shift = Vec::new();
        for p in plans {
            let outcome = engine.insert(p.input(), &p.rows).expect("insert");
            if outcome.kept > 0 {
                dump(&format!("{name}_{}.png", p.record.frame.id), &outcome.image);
                for r in &outcome.reports {
                    if let Some(e) = r.asset_id.as_deref().and_then(|id| library.get(id)) {
                        dump(
                            &format!("asset_{}_{}.png", p.record.frame.id, r.object_index),
                            &image::DynamicImage::ImageRgba8(e.rgba.clone()).to_rgb8(),
                        );
                    }
                }
            }
            let (n, k) = check_insertions(p, &outcome);
            planned += n;
            kept += k;
            substituted += outcome.reports.iter().filter(|r| r.substituted).count();
            poisson += outcome
                .reports
                .iter()
                .filter(|r| r.render.get("blend").and_then(|b| b.as_str()) == Some("poisson"))
                .count();
            for r in &outcome.reports {
                if let Some(b) = r
                    .render
                    .get("blur_sigma")
                    .and_then(serde_json::Value::as_f64)
                {
                    blur.push(b);
                }
                if let Some(n) = r.render["noise"]
                    .get("added_sigma")
                    .and_then(serde_json::Value::as_f64)
                {
                    noise.push(n);
                }
                if let Some(l) = r.render["harmonisation"]
                    .get("l_shift")
                    .and_then(serde_json::Value::as_f64)
                {
                    l_shift.push(l);
                }
            }
            if name == "exemplar" {
                for r in outcome
                    .reports
                    .iter()
                    .filter(|r| r.status != InsertionStatus::Kept)
                {
                    println!(
                        "{name}: {} {}: {:?}",
                        p.record.frame.image_name, r.class, r.reason
                    );
                }
            }
        }
        println!(
            "{name}: {kept} of {planned} planned insertions rendered on {} CamVid frames; {substituted} substituted; {poisson} Poisson-blended",
            plans.len()
        );
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        if !blur.is_empty() {
            println!(
                "{name}: mean blur sigma {:.2}, mean added noise {:.2}, mean L* shift {:.1}",
                mean(&blur),
                mean(&noise),
                mean(&l_shift)
            );
        }
        assert!(planned >= 40, "the plans have objects ({planned})");
        // Deer and boar have no COCO cut-outs: their insertions come from substitutes.
        assert!(substituted > 0);
        assert!(
            kept * 10 >= planned * 8,
            "{name}: only {kept} of {planned} planned insertions rendered"
        );
    }
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let (Some(library), Some(plans)) = (library(), camvid_plans()) else {
        return;
    };
    let p = plans
        .iter()
        .find(|p| p.rows.len() >= 2)
        .expect("a frame with 2 objects");
    let first = exemplar_engine(&library)
        .insert(p.input(), &p.rows)
        .expect("insert");
    let again = exemplar_engine(&library)
        .insert(p.input(), &p.rows)
        .expect("insert");
    assert!(first.kept > 0);
    assert_eq!(first.image.as_raw(), again.image.as_raw());
    assert_eq!(first.edit_mask.as_raw(), again.edit_mask.as_raw());
    assert_eq!(first.annotations, again.annotations);
    assert_eq!(first.step, again.step);
    // An object's pixels depend on its own row only: rendering it alone gives the same layer
    // wherever the other object is not.
    let alone = exemplar_engine(&library)
        .insert(p.input(), &p.rows[..1])
        .expect("insert");
    assert_eq!(first.reports[0].asset_id, alone.reports[0].asset_id);
    assert_eq!(first.reports[0].render, alone.reports[0].render);
    let mut other = p.rows.clone();
    for r in &mut other {
        r.seed ^= 0x5eed;
    }
    let different = exemplar_engine(&library)
        .insert(p.input(), &other)
        .expect("insert");
    assert_ne!(first.image.as_raw(), different.image.as_raw());
}

#[test]
fn filter_keeps_only_detected_insertions_and_measures_detection_rates() {
    let (Some(library), Some(plans), Some(det)) = (library(), camvid_plans(), detector()) else {
        return;
    };
    let config = FilterConfig::default();
    let mut filter = DetectorFilter::new(det, config.clone()).expect("filter");
    // Detection rate: render without the filter, then ask the filter about every kept object.
    let mut rates = Vec::new();
    for (name, mut engine) in [
        ("naive", naive_engine(&library)),
        ("exemplar", exemplar_engine(&library)),
    ] {
        let (mut seen, mut total, mut score_sum) = (0usize, 0usize, 0.0f64);
        for p in plans {
            let outcome = engine.insert(p.input(), &p.rows).expect("insert");
            for (report, a) in outcome
                .reports
                .iter()
                .filter(|r| r.status == InsertionStatus::Kept)
                .zip(&outcome.generated)
            {
                let verdict = roadsynth_engine::QualityFilter::judge(
                    &mut filter,
                    &outcome.image,
                    &roadsynth_engine::Inserted {
                        bbox: a.bbox,
                        label: &a.class,
                        class: &report.class,
                        source_class: report.asset_class.as_deref(),
                    },
                )
                .expect("judge");
                total += 1;
                seen += usize::from(verdict.keep);
                score_sum += f64::from(verdict.score);
            }
        }
        let rate = seen as f64 / total.max(1) as f64;
        println!(
            "YOLOX-nano detection rate of inserted animals, {name}: {seen}/{total} = {rate:.3} (mean score {:.3}, threshold {}, IoU >= {})",
            score_sum / total.max(1) as f64,
            config.threshold,
            config.min_iou
        );
        assert!(total >= 30, "{name}: too few insertions measured ({total})");
        rates.push(rate);
    }
    assert!(rates.iter().all(|r| (0.0..=1.0).contains(r)));

    // The engine with the filter: kept objects scored at or above the threshold, dropped ones
    // below, and the frame re-composed without them.
    let mut engine = exemplar_engine(&library).with_filter(Box::new(filter));
    let (mut kept, mut dropped) = (0, 0);
    for p in plans.iter().take(20) {
        let outcome = engine.insert(p.input(), &p.rows).expect("insert");
        assert_outside_mask_identical(&p.image, &outcome.image, &outcome.edit_mask);
        for r in &outcome.reports {
            match r.status {
                InsertionStatus::Kept => {
                    let v = r.filter.as_ref().expect("kept objects were judged");
                    assert!(v.keep && v.score >= config.threshold, "{v:?}");
                    kept += 1;
                }
                InsertionStatus::FilteredOut => {
                    let v = r.filter.as_ref().expect("dropped objects were judged");
                    assert!(!v.keep && v.score < config.threshold, "{v:?}");
                    dropped += 1;
                }
                InsertionStatus::NotRendered => {}
            }
        }
        assert_eq!(outcome.generated.len() as u64, outcome.kept);
        for a in &outcome.generated {
            let score = a.attributes["filter_score"]
                .as_f64()
                .expect("score recorded");
            assert!(score >= f64::from(config.threshold));
        }
        if outcome.kept == 0 {
            assert_eq!(
                outcome.image.as_raw(),
                p.image.as_raw(),
                "nothing kept, nothing changed"
            );
        }
    }
    println!("filter on 20 frames: {kept} kept, {dropped} filtered out");
    assert!(kept + dropped > 0);
}

/// Issue 7: the filter kept 72% of the animals it was asked for, so the roadsynth arm trained on
/// fewer animals than the naive one. A rejected object is now rendered again, from a cut-out not
/// yet tried, at the same planned place and size.
#[test]
fn issue_7_rejected_insertions_are_rendered_again_from_other_cut_outs() {
    let (Some(library), Some(plans)) = (library(), camvid_plans()) else {
        return;
    };
    let filtered = |max_attempts: u32| {
        let det = detector().expect("YOLOX-nano beside the library");
        let backend =
            ExemplarCompositor::new(library.clone(), ExemplarConfig::standard()).expect("exemplar");
        let config = InsertConfig {
            max_attempts,
            ..InsertConfig::default()
        };
        let filter = DetectorFilter::new(det, FilterConfig::default()).expect("filter");
        InsertionEngine::new(InsertBackend::Exemplar(backend), config)
            .expect("engine")
            .with_filter(Box::new(filter))
    };
    let (mut once, mut again) = (filtered(1), filtered(3));
    let (mut kept_once, mut kept_again, mut retried) = (0u64, 0u64, 0usize);
    for p in plans.iter().take(24) {
        let first = once.insert(p.input(), &p.rows).expect("insert");
        let outcome = again.insert(p.input(), &p.rows).expect("insert");
        assert_outside_mask_identical(&p.image, &outcome.image, &outcome.edit_mask);
        kept_once += first.kept;
        kept_again += outcome.kept;
        for (a, b) in first.reports.iter().zip(&outcome.reports) {
            assert_eq!(a.attempts, 1);
            assert!((1..=3).contains(&b.attempts), "{b:?}");
            // One rejected verdict per render replaced, each below the threshold.
            assert_eq!(b.rejected.len() as u32, b.attempts - 1, "{b:?}");
            assert!(b.rejected.iter().all(|r| !r.verdict.keep), "{b:?}");
            if b.attempts == 1 {
                // A first render is the same whatever the attempts allowed.
                assert_eq!(a.asset_id, b.asset_id);
                continue;
            }
            retried += 1;
            // The first render was the one-attempt engine's; no cut-out was tried twice.
            assert_eq!(b.rejected[0].asset_id, a.asset_id, "{b:?}");
            let mut tried: Vec<_> = b.rejected.iter().map(|r| r.asset_id.clone()).collect();
            tried.push(b.asset_id.clone());
            let distinct: std::collections::BTreeSet<_> = tried.iter().collect();
            assert_eq!(distinct.len(), tried.len(), "{tried:?}");
            assert_eq!(
                a.planned_bbox.map(f64::to_bits),
                b.planned_bbox.map(f64::to_bits)
            );
            match b.status {
                InsertionStatus::Kept => {
                    assert!(b.filter.as_ref().is_some_and(|v| v.keep), "{b:?}");
                }
                InsertionStatus::FilteredOut => {
                    assert!(b.filter.as_ref().is_some_and(|v| !v.keep), "{b:?}");
                }
                InsertionStatus::NotRendered => {}
            }
        }
        assert_eq!(
            outcome.rendered_again,
            outcome
                .reports
                .iter()
                .map(|r| u64::from(r.attempts - 1))
                .sum::<u64>()
        );
        assert_eq!(outcome.generated.len() as u64, outcome.kept);
    }
    println!(
        "24 frames: {kept_once} kept with one render each, {kept_again} with up to three ({retried} objects rendered again)"
    );
    assert!(retried > 0, "no object was rejected and rendered again");
    assert!(kept_again > kept_once, "{kept_again} <= {kept_once}");
}

fn kitti_records() -> Option<Vec<FrameRecord>> {
    let root = shared("datasets/kitti-object")?;
    Some(load(kitti::scan(&root, "train").expect("scan KITTI")))
}

fn colours() -> Vec<Colour> {
    [
        ("red", [200, 16, 46]),
        ("blue", [31, 58, 147]),
        ("white", [240, 240, 240]),
        ("yellow", [255, 209, 0]),
        ("black", [20, 20, 22]),
    ]
    .into_iter()
    .map(|(name, srgb)| Colour {
        name: name.into(),
        srgb,
    })
    .collect()
}

fn repaint_all(finish: Finish) -> EditVehicles {
    EditVehicles {
        classes: vec!["car".into(), "van".into()],
        min_height_px: 40,
        max_occlusion: 0.3,
        fraction: 1.0,
        appearance: roadsynth_scenario::Appearance {
            colours: colours(),
            finish,
        },
        backend: EditBackend::Classical,
    }
}

#[test]
fn vehicle_edits_on_kitti_keep_shape_and_background() {
    let (Some(records), Some(model)) = (kitti_records(), shared(VehicleSegmenter::SHARED_PATH))
    else {
        return;
    };
    let segmenter = VehicleSegmenter::load_with_threads(&model, Some(1)).expect("segmenter");
    let mut editor =
        VehicleEditor::new(VehicleEditConfig::default(), Some(segmenter)).expect("editor");
    let settings = repaint_all(Finish::Metallic);
    let mut ious = Vec::new();
    let (mut attempted, mut edited, mut rejected, mut dark) = (0, 0, 0, 0);
    for (i, r) in records.iter().enumerate() {
        let image = image::load_from_memory(r.image.as_deref().expect("bytes"))
            .expect("decode")
            .to_rgb8();
        let frame = FrameInput::new(&image, &r.annotations);
        let outcome = editor
            .edit(frame, &settings, "test", i as u64)
            .expect("edit");
        dump(&format!("kitti_{i}.png"), &outcome.image);
        let masked = assert_outside_mask_identical(&image, &outcome.image, &outcome.edit_mask);
        assert_eq!(outcome.annotations.len(), r.annotations.len());
        for rep in &outcome.reports {
            attempted += 1;
            if let Some(iou) = rep.resegmented_iou {
                ious.push(iou);
            }
            match rep.status {
                VehicleEditStatus::Edited => {
                    edited += 1;
                    assert!(
                        rep.resegmented_iou
                            .is_some_and(|v| v >= editor.config().min_resegmented_iou),
                        "{rep:?}"
                    );
                    assert!(
                        outcome.annotations[rep.annotation_index]
                            .attributes
                            .contains_key("appearance_edit")
                    );
                }
                VehicleEditStatus::RejectedGeometry => rejected += 1,
                VehicleEditStatus::NoBody => dark += 1,
                VehicleEditStatus::NoMask => {}
            }
        }
        if outcome.edited > 0 {
            assert!(masked > 0);
        } else {
            assert_eq!(outcome.image.as_raw(), image.as_raw());
        }
        // Same seed, same bytes.
        if i == 0 {
            let again = editor.edit(frame, &settings, "test", 0).expect("edit");
            assert_eq!(again.image.as_raw(), outcome.image.as_raw());
        }
    }
    ious.sort_by(f64::total_cmp);
    let mean = ious.iter().sum::<f64>() / ious.len().max(1) as f64;
    println!(
        "KITTI vehicle edits: {edited} of {attempted} selected cars repainted, {rejected} undone by the shape check, {dark} too dark to repaint; re-segmented IoU over {} checks: min {:.3}, median {:.3}, mean {mean:.3}",
        ious.len(),
        ious.first().copied().unwrap_or(0.0),
        ious.get(ious.len() / 2).copied().unwrap_or(0.0),
    );
    assert!(attempted >= 10, "KITTI has tall cars to edit ({attempted})");
    assert!(
        edited * 10 >= (edited + rejected) * 7,
        "only {edited} of {} vehicle edits kept their shape",
        edited + rejected
    );
}

#[test]
fn grabcut_masks_vehicles_without_a_segmenter() {
    let Some(plans) = camvid_plans() else {
        return;
    };
    let mut editor = VehicleEditor::new(VehicleEditConfig::default(), None).expect("editor");
    let settings = EditVehicles {
        min_height_px: 30,
        ..repaint_all(Finish::Matte)
    };
    let (mut attempted, mut edited) = (0, 0);
    for (i, p) in plans.iter().enumerate().take(20) {
        let frame = FrameInput::new(&p.image, &p.record.annotations).with_semantic(Some(&p.labels));
        let outcome = editor
            .edit(frame, &settings, "test", i as u64)
            .expect("edit");
        assert_outside_mask_identical(&p.image, &outcome.image, &outcome.edit_mask);
        for rep in &outcome.reports {
            attempted += 1;
            if rep.status == VehicleEditStatus::Edited {
                edited += 1;
                assert_eq!(rep.mask_source, Some(roadsynth_engine::MaskSource::GrabCut));
            }
        }
    }
    println!("CamVid GrabCut vehicle edits: {edited} of {attempted} kept their shape");
    assert!(attempted > 0 && edited > 0);
}

/// The shared tiny inpainting model (random weights: its output is noise, so only the engine's
/// guarantees are checked, not what it draws).
fn tiny_diffusion() -> Option<roadsynth_diffusion::InpaintModel> {
    let dir = shared("models/tiny-sd-inpaint")?;
    let options = roadsynth_diffusion::ModelOptions {
        threads: Some(1),
        resolution: 64,
        ..roadsynth_diffusion::ModelOptions::default()
    };
    Some(roadsynth_diffusion::InpaintModel::load(&dir, &options).expect("tiny model"))
}

#[test]
fn diffusion_backends_keep_the_background_bit_exact() {
    let (Some(plans), Some(model)) = (camvid_plans(), tiny_diffusion()) else {
        return;
    };
    let p = plans
        .iter()
        .find(|p| !p.rows.is_empty())
        .expect("a planned frame");
    let config = roadsynth_engine::DiffusionInsertConfig {
        steps: 2,
        ..roadsynth_engine::DiffusionInsertConfig::default()
    };
    let inserter = roadsynth_engine::DiffusionInserter::new(model, None, config).expect("inserter");
    let mut engine = InsertionEngine::new(
        InsertBackend::Diffusion(Box::new(inserter)),
        InsertConfig::default(),
    )
    .expect("engine");
    let outcome = engine.insert(p.input(), &p.rows).expect("inpaint");
    assert_outside_mask_identical(&p.image, &outcome.image, &outcome.edit_mask);
    // Without a segmenter the box is the inpainting mask's: the ellipse in the planned box.
    assert!(outcome.kept > 0, "{:?}", outcome.reports);
    for (a, r) in outcome.generated.iter().zip(&outcome.reports) {
        let planned = roadsynth_types::BBox::new(
            r.planned_bbox[0],
            r.planned_bbox[1],
            r.planned_bbox[2],
            r.planned_bbox[3],
        );
        assert!(a.bbox.iou(&planned) >= 0.7, "{:?} vs {planned:?}", a.bbox);
        assert_eq!(r.render["cover_source"], "inpaint_mask");
    }

    // Vehicle edits by masked image-to-image: only the vehicle's mask changes.
    let Some(model) = tiny_diffusion() else {
        return;
    };
    let mut editor = VehicleEditor::new(VehicleEditConfig::default(), None)
        .expect("editor")
        .with_diffusion(
            model,
            roadsynth_engine::DiffusionEditConfig {
                steps: 2,
                ..roadsynth_engine::DiffusionEditConfig::default()
            },
        );
    let settings = EditVehicles {
        min_height_px: 30,
        backend: EditBackend::Diffusion,
        ..repaint_all(Finish::Gloss)
    };
    let q = plans
        .iter()
        .find(|q| !VehicleEditor::select(&q.record.annotations, &settings, 1).is_empty())
        .expect("a frame with a car to edit");
    let outcome = editor
        .edit(q.input(), &settings, "test", 1)
        .expect("diffusion edit");
    assert_outside_mask_identical(&q.image, &outcome.image, &outcome.edit_mask);
    assert!(!outcome.reports.is_empty());
    for r in &outcome.reports {
        assert_eq!(r.backend, "diffusion");
        assert!(r.attempts <= 1);
    }
}
