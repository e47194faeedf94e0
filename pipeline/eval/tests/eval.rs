//! Evaluation on real data: parity with pycocotools on a dataset's COCO export, slice and KITTI
//! difficulty semantics, and the bootstrap's properties.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use roadsynth_dataset::{Dataset, DatasetWriter, Projection, WriteOptions};
use roadsynth_eval::{
    Bootstrap, ClassMap, Detection, Detections, EvalOptions, EvalReport, GroundTruth, Interval,
    KittiLevel, MISSING, Metrics, SliceSpec, compare, evaluate, pr_curves,
};
use roadsynth_formats::{LoadOptions, Scan, coco, export, kitti, load_all};
use roadsynth_testkit::{python_module, shared};
use roadsynth_types::{Annotation, FrameRecord, Origin};
use serde_json::{Value, json};

/// Loads every frame of a scan; the shared data must load without quarantine.
fn load(scan: Scan) -> Vec<FrameRecord> {
    assert!(scan.quarantined.is_empty(), "{:#?}", scan.quarantined);
    let mut records = Vec::new();
    load_all(scan.frames, &LoadOptions::default(), 16, |result| {
        records.push(result.expect("shared frames load"));
        Ok::<(), ()>(())
    })
    .expect("load");
    records
}

fn camvid_val() -> Option<Vec<FrameRecord>> {
    let root = shared("datasets/camvid")?;
    Some(load(
        coco::scan(&root.join("annotations_val.json"), None, "val").expect("scan camvid"),
    ))
}

fn road_animals() -> Option<Vec<FrameRecord>> {
    let root = shared("datasets/road-animals")?;
    Some(load(
        coco::scan(&root.join("annotations.json"), None, "test").expect("scan road-animals"),
    ))
}

/// A simulated detector: deterministic per frame (seeded by the frame id), so a frame gets the same
/// detections whatever numbering or subset it is evaluated in.
#[derive(Clone, Copy)]
struct Detector {
    seed: u64,
    /// Probability of missing an object.
    miss: f64,
    /// Box jitter as a fraction of the object's size.
    jitter: f64,
    false_positives: usize,
}

const NOISY: Detector = Detector {
    seed: 1,
    miss: 0.25,
    jitter: 0.12,
    false_positives: 3,
};

impl Detector {
    /// Detections of one frame. `class_id` gives the category id of a class (`None`: the class
    /// is not in the numbering); `ids` are all category ids, for confusions and false positives.
    fn detect(
        &self,
        image_id: u64,
        record: &FrameRecord,
        class_id: &dyn Fn(&str) -> Option<u64>,
        ids: &[u64],
    ) -> Vec<Detection> {
        let key = u64::from_str_radix(&record.frame.id.as_str()[..16], 16).expect("hex frame id");
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ key);
        let (w, h) = (
            f64::from(record.frame.width),
            f64::from(record.frame.height),
        );
        let mut out = Vec::new();
        for a in &record.annotations {
            let Some(class) = class_id(&a.class) else {
                continue;
            };
            let (bw, bh) = (a.bbox.width(), a.bbox.height());
            if a.crowd {
                // Detections on a crowd: pycocotools counts them as neither hit nor miss.
                if rng.random_bool(0.7) {
                    let b = [
                        a.bbox.x0 + 0.2 * bw,
                        a.bbox.y0 + 0.2 * bh,
                        0.5 * bw,
                        0.5 * bh,
                    ];
                    out.push(Detection {
                        image_id,
                        category_id: class,
                        bbox: b,
                        score: rng.random_range(0.3..1.0),
                    });
                }
                continue;
            }
            if a.ignore || rng.random_bool(self.miss) {
                continue;
            }
            let mut jitter = |s: f64| (rng.random::<f64>() - 0.5) * 2.0 * self.jitter * s;
            let bbox = [
                a.bbox.x0 + jitter(bw),
                a.bbox.y0 + jitter(bh),
                bw * (1.0 + jitter(1.0)).max(0.1),
                bh * (1.0 + jitter(1.0)).max(0.1),
            ];
            let category_id = if rng.random_bool(0.05) {
                ids[rng.random_range(0..ids.len())]
            } else {
                class
            };
            let score = rng.random_range(0.2..1.0);
            out.push(Detection {
                image_id,
                category_id,
                bbox,
                score,
            });
            if rng.random_bool(0.1) {
                out.push(Detection {
                    image_id,
                    category_id,
                    bbox,
                    score: score * 0.6,
                });
            }
        }
        for _ in 0..self.false_positives {
            let (bw, bh) = (
                rng.random_range(10.0..w / 3.0),
                rng.random_range(10.0..h / 3.0),
            );
            out.push(Detection {
                image_id,
                category_id: ids[rng.random_range(0..ids.len())],
                bbox: [
                    rng.random_range(0.0..w - bw),
                    rng.random_range(0.0..h - bh),
                    bw,
                    bh,
                ],
                score: rng.random_range(0.0..0.8),
            });
        }
        out
    }

    /// Detections of records numbered as [`GroundTruth::from_records`] numbers them.
    fn detect_records(&self, records: &[FrameRecord], gt: &GroundTruth) -> Detections {
        let classes = gt.source_classes().to_vec();
        let ids: Vec<u64> = (1..=classes.len() as u64).collect();
        let class_id = |c: &str| classes.iter().position(|x| x == c).map(|i| i as u64 + 1);
        let items = records
            .iter()
            .zip(1..)
            .flat_map(|(r, id)| self.detect(id, r, &class_id, &ids))
            .collect();
        Detections::new(format!("detector seed {}", self.seed), items)
    }
}

/// pycocotools on a ground-truth file and a results file, restricted to `image_ids` when not
/// empty: the twelve `stats` and, per class name, `[AP, AP50]` from `eval['precision']`, and the
/// precision curves `eval['precision'][t, :, k, 0, -1]` at `IoU` 0.5 and 0.75.
struct Reference {
    stats: Vec<f64>,
    per_class: BTreeMap<String, [f64; 2]>,
    curves: BTreeMap<String, BTreeMap<String, Vec<f64>>>,
}

const PYCOCOTOOLS: &str = r#"
import contextlib, json, sys
import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

gt_path, dt_path, image_ids = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
with contextlib.redirect_stdout(sys.stderr):
    gt = COCO(gt_path)
    dt = gt.loadRes(dt_path)
    ev = COCOeval(gt, dt, "bbox")
    if image_ids:
        ev.params.imgIds = image_ids
    ev.evaluate()
    ev.accumulate()
    ev.summarize()

def mean_valid(s):
    s = s[s > -1]
    return float(np.mean(s)) if s.size else -1.0

precision = ev.eval["precision"]  # [T, R, K, A, M]
per_class = {}
curves = {"0.5": {}, "0.75": {}}
for k, cat_id in enumerate(ev.params.catIds):
    name = gt.cats[int(cat_id)]["name"]
    per_class[name] = [mean_valid(precision[:, :, k, 0, -1]), mean_valid(precision[0, :, k, 0, -1])]
    for iou, t in (("0.5", 0), ("0.75", 5)):
        curves[iou][name] = [float(x) for x in precision[t, :, k, 0, -1]]
print(json.dumps({"stats": [float(x) for x in ev.stats], "per_class": per_class, "curves": curves}))
"#;

fn pycocotools(gt: &Path, detections: &[Detection], image_ids: &[u64], dir: &Path) -> Reference {
    let dt_path = dir.join(format!("detections-{}.json", detections.len()));
    std::fs::write(&dt_path, serde_json::to_vec(detections).expect("json")).expect("write");
    let out = Command::new("python3")
        .args(["-c", PYCOCOTOOLS])
        .arg(gt)
        .arg(&dt_path)
        .arg(serde_json::to_string(image_ids).expect("json"))
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "pycocotools failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("pycocotools output is JSON");
    Reference {
        stats: serde_json::from_value(v["stats"].clone()).expect("stats"),
        per_class: serde_json::from_value(v["per_class"].clone()).expect("per_class"),
        curves: serde_json::from_value(v["curves"].clone()).expect("curves"),
    }
}

/// All twelve figures and every class's AP and AP50 equal to 1e-6; returns the largest deviation.
fn assert_parity(ours: &Metrics, reference: &Reference, what: &str) -> f64 {
    let mut worst: f64 = 0.0;
    let mut check = |a: f64, b: f64, name: &str| {
        let d = (a - b).abs();
        worst = worst.max(d);
        assert!(d <= 1e-6, "{what}: {name}: ours {a}, pycocotools {b}");
    };
    for (i, (a, b)) in ours
        .summary
        .stats()
        .iter()
        .zip(&reference.stats)
        .enumerate()
    {
        check(*a, *b, roadsynth_eval::Summary::NAMES[i]);
    }
    for (class, [ap, ap50]) in &reference.per_class {
        let c = ours.per_class.iter().find(|c| &c.class == class);
        // A class without ground truth has no AP in pycocotools (-1) and is not evaluated here.
        let (our_ap, our_ap50) = c.map_or((-1.0, -1.0), |c| {
            (c.ap.unwrap_or(-1.0), c.ap50.unwrap_or(-1.0))
        });
        check(our_ap, *ap, &format!("{class} AP"));
        check(our_ap50, *ap50, &format!("{class} AP50"));
    }
    assert_eq!(reference.stats.len(), 12);
    worst
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("read")).expect("parse")
}

/// Real frames with frame and object attributes to slice by: weather, a fog visibility and
/// generated objects (in about half the frames).
fn decorate(records: &mut [FrameRecord]) {
    let generated = Origin::Generated {
        operation: "insert_objects".into(),
        scenario: "test".into(),
        seed: 1,
    };
    for (i, r) in records.iter_mut().enumerate() {
        let weather = if i % 3 == 0 { "rain" } else { "clear" };
        r.frame.attributes.insert("weather".into(), json!(weather));
        r.frame.attributes.insert(
            "fog_visibility_m".into(),
            json!([100, 200, 450, 800][i % 4]),
        );
        // Every other object of every other frame was inserted.
        if i % 2 == 0 {
            for a in r
                .annotations
                .iter_mut()
                .filter(|a| !a.crowd)
                .skip(1)
                .step_by(2)
            {
                a.origin = generated.clone();
            }
        }
    }
}

#[test]
fn parity_with_pycocotools_on_the_coco_export() {
    let (Some(mut val), Some(animals)) = (camvid_val(), road_animals()) else {
        return;
    };
    if !python_module("pycocotools") {
        return;
    }
    decorate(&mut val);
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("ds");
    let mut writer = DatasetWriter::create(&root, WriteOptions::default()).expect("create");
    for r in val.iter().chain(&animals) {
        writer.write(r).expect("write");
    }
    writer.commit(json!({"test": "eval"})).expect("commit");
    let dataset = Dataset::open(&root).expect("open");
    let out = tmp.path().join("export");
    export::to_coco(&dataset, &out).expect("export");
    let gt_file = out.join("annotations.json");
    let exported = read_json(&gt_file);

    // Detections keyed by the export's own ids, so a numbering mismatch fails the parity below.
    let image_id: HashMap<String, u64> = exported["images"]
        .as_array()
        .expect("images")
        .iter()
        .map(|i| {
            (
                i["frame_id"].as_str().expect("frame_id").to_string(),
                i["id"].as_u64().expect("id"),
            )
        })
        .collect();
    let category_id: HashMap<String, u64> = exported["categories"]
        .as_array()
        .expect("categories")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().expect("name").to_string(),
                c["id"].as_u64().expect("id"),
            )
        })
        .collect();
    let ids: Vec<u64> = category_id.values().copied().collect();
    let stored: Vec<FrameRecord> = dataset
        .all_frames(Projection::WithoutImages)
        .expect("frames")
        .map(|r| r.expect("frame"))
        .collect();
    let detections: Vec<Detection> = stored
        .iter()
        .flat_map(|r| {
            NOISY.detect(
                image_id[r.frame.id.as_str()],
                r,
                &|c| category_id.get(c).copied(),
                &ids,
            )
        })
        .collect();
    let crowds = stored
        .iter()
        .flat_map(|r| &r.annotations)
        .filter(|a| a.crowd)
        .count();
    assert_eq!(crowds, 6, "road-animals has six herds");
    let dets = Detections::new("simulated detector", detections.clone());
    let options = EvalOptions {
        slices: vec![SliceSpec::by("weather")],
        ..EvalOptions::default()
    };

    // The whole export.
    let gt = GroundTruth::from_dataset(&dataset, None, &ClassMap::identity()).expect("gt");
    assert_eq!(
        gt.source_classes(),
        ["animal", "bicyclist", "car", "pedestrian"]
    );
    let report = evaluate(&gt, &dets, &options).expect("evaluate");
    assert_eq!(report.detections.evaluated, detections.len());
    let reference = pycocotools(&gt_file, &detections, &[], tmp.path());
    let mut worst = assert_parity(&report.overall, &reference, "all splits");
    assert!(
        report
            .overall
            .summary
            .ap
            .is_some_and(|ap| ap > 0.2 && ap < 0.9)
    );
    assert!(report.overall.summary.ap_small.is_some());

    // PR curves are pycocotools' precision arrays; at IoU 0.5 each one's mean is the class's AP50.
    for (iou, key, is_ap50) in [(0.5, "0.5", true), (0.75, "0.75", false)] {
        let curves = pr_curves(&gt, &dets, iou).expect("pr curves");
        let expected = &reference.curves[key];
        assert_eq!(
            curves.iter().map(|c| c.class.as_str()).collect::<Vec<_>>(),
            expected.keys().map(String::as_str).collect::<Vec<_>>(),
            "IoU {iou}: one curve per class with ground truth"
        );
        for c in &curves {
            assert_eq!(c.recall.len(), 101);
            assert!((c.iou - iou).abs() < 1e-12);
            assert!(
                c.recall
                    .iter()
                    .enumerate()
                    .all(|(i, r)| (r - i as f64 / 100.0).abs() < 1e-12)
            );
            let theirs = &expected[&c.class];
            assert_eq!(c.precision.len(), theirs.len());
            for (r, (a, b)) in c.precision.iter().zip(theirs).enumerate() {
                let d = (a - b).abs();
                worst = worst.max(d);
                assert!(
                    d <= 1e-6,
                    "{} IoU {iou} recall {r}: ours {a}, pycocotools {b}",
                    c.class
                );
            }
            if is_ap50 {
                let mean = c.precision.iter().sum::<f64>() / c.precision.len() as f64;
                let ap50 = report
                    .overall
                    .per_class
                    .iter()
                    .find(|m| m.class == c.class)
                    .and_then(|m| m.ap50)
                    .expect("AP50 of a class with a curve");
                assert!(
                    (mean - ap50).abs() <= 1e-12,
                    "{}: {mean} vs {ap50}",
                    c.class
                );
            }
        }
    }
    assert!(matches!(
        pr_curves(&gt, &dets, 0.52),
        Err(roadsynth_eval::EvalError::IouThreshold { .. })
    ));

    // A frame-attribute slice is pycocotools on the images with that value.
    for value in ["rain", "clear"] {
        let images: Vec<u64> = exported["images"]
            .as_array()
            .expect("images")
            .iter()
            .filter(|i| i["attributes"]["weather"] == json!(value))
            .map(|i| i["id"].as_u64().expect("id"))
            .collect();
        let slice = report
            .slices
            .iter()
            .find(|s| s.value == value)
            .expect("slice present");
        assert_eq!(slice.metrics.images, images.len());
        let reference = pycocotools(&gt_file, &detections, &images, tmp.path());
        worst = worst.max(assert_parity(&slice.metrics, &reference, value));
    }

    // One split, scored with the predictions for the whole export: the other split's detections
    // are set aside, and the numbers are pycocotools' on that split's images.
    let test_gt = GroundTruth::from_dataset(&dataset, Some("test"), &ClassMap::identity())
        .expect("gt of test");
    let test_images: Vec<u64> = exported["images"]
        .as_array()
        .expect("images")
        .iter()
        .filter(|i| i["split"] == "test")
        .map(|i| i["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(test_images.len(), 10);
    let test_report = evaluate(&test_gt, &dets, &EvalOptions::default()).expect("evaluate test");
    let on_test = detections
        .iter()
        .filter(|d| test_images.contains(&d.image_id))
        .count();
    assert_eq!(
        test_report.detections.other_images,
        detections.len() - on_test
    );
    assert_eq!(test_report.categories, ["animal"]);
    let reference = pycocotools(&gt_file, &detections, &test_images, tmp.path());
    worst = worst.max(assert_parity(
        &test_report.overall,
        &reference,
        "split test",
    ));
    eprintln!("largest deviation from pycocotools: {worst:e}");

    // Frame records in the export's order give the same ground truth as the dataset.
    let from_records = GroundTruth::from_records(&stored, &ClassMap::identity());
    let again = evaluate(&from_records, &dets, &options).expect("evaluate records");
    assert_eq!(again.overall, report.overall);
    assert_eq!(again.slices, report.slices);
}

#[test]
fn attribute_slices_score_each_value_on_its_own_objects() {
    let Some(mut val) = camvid_val() else {
        return;
    };
    decorate(&mut val);
    let gt = GroundTruth::from_records(&val, &ClassMap::identity());
    let classes = gt.source_classes().to_vec();
    let class_id = |c: &str| {
        classes
            .iter()
            .position(|x| x == c)
            .map_or(0, |i| i as u64 + 1)
    };
    // Perfect boxes; real objects found with higher scores than generated ones.
    let perfect = |a: &Annotation, id: u64, score: f64| Detection {
        image_id: id,
        category_id: class_id(&a.class),
        bbox: a.bbox.to_xywh(),
        score,
    };
    let mut both = Vec::new();
    let mut generated_only = Vec::new();
    for (r, id) in val.iter().zip(1..) {
        for a in r.annotations.iter().filter(|a| !a.crowd) {
            if a.origin.is_real() {
                both.push(perfect(a, id, 0.9));
            } else {
                both.push(perfect(a, id, 0.6));
                generated_only.push(perfect(a, id, 0.6));
            }
        }
    }
    let options = EvalOptions {
        slices: vec![
            SliceSpec::by("origin"),
            SliceSpec::parse("fog_visibility_m:150,300,600").expect("spec"),
            SliceSpec::by("weather"),
            SliceSpec::by("sun"),
        ],
        ..EvalOptions::default()
    };
    let slice = |report: &EvalReport, key: &str, value: &str| -> Metrics {
        report
            .slices
            .iter()
            .find(|s| s.key == key && s.value == value)
            .unwrap_or_else(|| panic!("no slice {key}={value}"))
            .metrics
            .clone()
    };

    let report = evaluate(&gt, &Detections::new("both", both), &options).expect("evaluate");
    let (generated, real) = (
        slice(&report, "origin", "generated"),
        slice(&report, "origin", "real"),
    );
    // A detection of a real object is not a false positive of the generated slice, and the
    // reverse: both slices are perfect.
    assert_eq!(generated.summary.ap, Some(1.0));
    assert_eq!(real.summary.ap, Some(1.0));
    assert_eq!(generated.objects + real.objects, report.overall.objects);
    let with_generated = val
        .iter()
        .filter(|r| r.annotations.iter().any(|a| !a.origin.is_real()))
        .count();
    assert_eq!(generated.images, with_generated);
    assert!(with_generated < val.len());

    let report = evaluate(
        &gt,
        &Detections::new("generated only", generated_only),
        &options,
    )
    .expect("eval");
    assert_eq!(slice(&report, "origin", "generated").summary.ap, Some(1.0));
    assert_eq!(slice(&report, "origin", "real").summary.ap, Some(0.0));
    assert!(
        report
            .overall
            .summary
            .ap
            .is_some_and(|ap| ap > 0.0 && ap < 1.0)
    );

    // Frame attributes: every image in exactly one value; numeric values in their buckets.
    let values = |key: &str| -> Vec<(String, usize)> {
        report
            .slices
            .iter()
            .filter(|s| s.key == key)
            .map(|s| (s.value.clone(), s.metrics.images))
            .collect()
    };
    assert_eq!(
        values("fog_visibility_m"),
        [
            ("<150".to_string(), 26),
            ("[150, 300)".to_string(), 25),
            ("[300, 600)".to_string(), 25),
            (">=600".to_string(), 25)
        ]
    );
    assert_eq!(
        values("weather"),
        [("clear".to_string(), 67), ("rain".to_string(), 34)]
    );
    // No frame or object has `sun`: one slice of every image with objects.
    let sun = values("sun");
    assert_eq!(sun.len(), 1);
    assert_eq!(sun[0].0, MISSING);
}

fn kitti_records() -> Option<Vec<FrameRecord>> {
    let root = shared("datasets/kitti-object")?;
    Some(load(kitti::scan(&root, "train").expect("scan kitti")))
}

#[test]
fn kitti_difficulty_levels_and_dont_care_regions() {
    let Some(records) = kitti_records() else {
        return;
    };
    let map = ClassMap::parse("Car=car,Pedestrian=pedestrian,Cyclist=cyclist").expect("map");
    let gt = GroundTruth::from_records(&records, &map);
    assert!(gt.is_kitti());
    assert_eq!(gt.categories(), ["car", "cyclist", "pedestrian"]);
    let classes = gt.source_classes().to_vec();
    let id = |c: &str| {
        classes
            .iter()
            .position(|x| x == c)
            .map_or(0, |i| i as u64 + 1)
    };
    let evaluated = ["Car", "Pedestrian", "Cyclist"];
    let easy = |a: &Annotation| {
        a.bbox.height() >= 40.0
            && a.occluded.is_some_and(|o| o == 0)
            && a.truncated.is_some_and(|t| t <= 0.15)
    };
    let mut all = Vec::new();
    let mut easy_only = Vec::new();
    let mut on_dont_care = Vec::new();
    let mut dont_cares = 0;
    for (r, image_id) in records.iter().zip(1..) {
        for a in &r.annotations {
            let d = Detection {
                image_id,
                category_id: id(&a.class),
                bbox: a.bbox.to_xywh(),
                score: 0.5,
            };
            if a.class == "DontCare" {
                dont_cares += 1;
                // A car detection with the top score on an unlabelled region.
                on_dont_care.push(Detection {
                    category_id: id("Car"),
                    score: 0.99,
                    ..d
                });
            } else if evaluated.contains(&a.class.as_str()) {
                all.push(d);
                if easy(a) {
                    easy_only.push(d);
                }
            }
        }
    }
    assert!(dont_cares > 0);
    let options = EvalOptions::default();
    let run = |dets: Vec<Detection>| {
        evaluate(&gt, &Detections::new("kitti", dets), &options).expect("evaluate")
    };
    let level = |report: &EvalReport, level: KittiLevel| -> Metrics {
        report
            .kitti_difficulty
            .iter()
            .find(|d| d.level == level)
            .expect("level")
            .metrics
            .clone()
    };

    let perfect = run(all.clone());
    assert_eq!(perfect.overall.summary.ap, Some(1.0));
    assert_eq!(
        perfect.kitti_difficulty.len(),
        3,
        "KITTI data gets levels by default"
    );
    for l in KittiLevel::ALL {
        assert_eq!(level(&perfect, l).summary.ap, Some(1.0), "{l:?}");
    }
    let (e, m, h) = (
        level(&perfect, KittiLevel::Easy).objects,
        level(&perfect, KittiLevel::Moderate).objects,
        level(&perfect, KittiLevel::Hard).objects,
    );
    assert!(
        0 < e && e < m && m <= h && h < perfect.overall.objects,
        "{e} {m} {h}"
    );

    // Detections on DontCare are neither hits nor misses, for every class.
    let mut with_dont_care = all.clone();
    with_dont_care.extend(on_dont_care);
    assert_eq!(run(with_dont_care).overall.summary.ap, Some(1.0));

    // Finding only the easy objects is perfect at the easy level and not beyond.
    let easy_report = run(easy_only);
    assert_eq!(level(&easy_report, KittiLevel::Easy).summary.ap, Some(1.0));
    assert!(
        level(&easy_report, KittiLevel::Hard)
            .summary
            .ap
            .is_some_and(|ap| ap < 1.0)
    );

    // A false positive lower than 25 px is ignored by every level, not overall.
    let mut small = all;
    small.push(Detection {
        image_id: 1,
        category_id: id("Car"),
        bbox: [5.0, 5.0, 30.0, 20.0],
        score: 1.0,
    });
    let small = run(small);
    assert!(small.overall.summary.ap.is_some_and(|ap| ap < 1.0));
    for l in KittiLevel::ALL {
        assert_eq!(level(&small, l).summary.ap, Some(1.0), "{l:?}");
    }
}

fn width(i: Option<Interval>) -> f64 {
    let i = i.expect("interval");
    i.upper - i.lower
}

fn contains(i: Option<Interval>, v: Option<f64>) -> bool {
    let (i, v) = (i.expect("interval"), v.expect("value"));
    i.lower <= v && v <= i.upper
}

#[test]
fn bootstrap_intervals_cover_the_estimate_and_narrow_with_more_images() {
    let Some(val) = camvid_val() else {
        return;
    };
    let bootstrap = Bootstrap {
        resamples: 1000,
        seed: 3,
        confidence: 0.95,
    };
    let options = EvalOptions {
        bootstrap: Some(bootstrap),
        ..EvalOptions::default()
    };
    let run = |records: &[FrameRecord], options: &EvalOptions| {
        let gt = GroundTruth::from_records(records, &ClassMap::identity());
        evaluate(&gt, &NOISY.detect_records(records, &gt), options).expect("evaluate")
    };

    let started = Instant::now();
    let full = run(&val, &options);
    let with_bootstrap = started.elapsed();
    let started = Instant::now();
    let plain = run(&val, &EvalOptions::default());
    let one_evaluation = started.elapsed();
    eprintln!(
        "{} images, {} detections: evaluation {one_evaluation:?}; with 1000 resamples {with_bootstrap:?} (1000 full evaluations would take ~{:?})",
        full.overall.images,
        full.detections.evaluated,
        one_evaluation * 1000
    );
    assert_eq!(plain.overall.summary, full.overall.summary);
    assert!(plain.overall.intervals.is_none());

    let iv = full.overall.intervals.expect("intervals");
    let s = full.overall.summary;
    assert!(contains(iv.ap, s.ap) && contains(iv.ap50, s.ap50) && contains(iv.ap75, s.ap75));
    assert!(width(iv.ap) > 0.01, "{iv:?}");
    assert_eq!(iv.ap.expect("ap").resamples, 1000);
    for c in &full.overall.per_class {
        assert!(contains(c.ap_interval, c.ap), "{c:?}");
        assert!(contains(c.ap50_interval, c.ap50), "{c:?}");
    }

    let quarter = run(&val[..25], &options);
    let qiv = quarter.overall.intervals.expect("intervals");
    eprintln!(
        "AP interval width: {} images {:.4}, {} images {:.4}",
        quarter.overall.images,
        width(qiv.ap),
        full.overall.images,
        width(iv.ap)
    );
    assert!(width(iv.ap) < width(qiv.ap));
    assert!(width(iv.ap50) < width(qiv.ap50));
}

#[test]
fn bootstrap_is_reproducible_from_its_seed() {
    let Some(val) = camvid_val() else {
        return;
    };
    let val = &val[..40];
    let gt = GroundTruth::from_records(val, &ClassMap::identity());
    let dets = NOISY.detect_records(val, &gt);
    let run = |seed| {
        let options = EvalOptions {
            bootstrap: Some(Bootstrap {
                resamples: 200,
                seed,
                confidence: 0.95,
            }),
            slices: vec![SliceSpec::by("sequence")],
            ..EvalOptions::default()
        };
        evaluate(&gt, &dets, &options).expect("evaluate")
    };
    let (a, b, c) = (run(5), run(5), run(6));
    assert_eq!(a, b);
    assert_eq!(a.overall.summary, c.overall.summary);
    assert_ne!(a.overall.intervals, c.overall.intervals);
}

#[test]
fn paired_difference_of_two_arms() {
    let Some(val) = camvid_val() else {
        return;
    };
    let gt = GroundTruth::from_records(&val, &ClassMap::identity());
    let bootstrap = Bootstrap::default();
    let worse = NOISY.detect_records(&val, &gt);
    let better = Detector {
        miss: 0.1,
        jitter: 0.05,
        ..NOISY
    }
    .detect_records(&val, &gt);

    let same = compare(&gt, &worse, &worse, &bootstrap).expect("compare");
    assert_eq!(same.images, val.len());
    for d in &same.differences {
        if d.a.is_some() {
            assert_eq!(d.difference, Some(0.0), "{d:?}");
            let i = d.interval.expect("interval");
            assert!(i.lower <= 0.0 && 0.0 <= i.upper, "{d:?}");
            assert_eq!(d.b_better, Some(0.0));
        }
    }

    let diff = compare(&gt, &worse, &better, &bootstrap).expect("compare");
    let ap = diff
        .differences
        .iter()
        .find(|d| d.metric == "AP")
        .expect("AP");
    eprintln!("{diff}");
    let i = ap.interval.expect("interval");
    assert!(contains(ap.interval, ap.difference), "{ap:?}");
    assert!(i.lower > 0.0, "the better arm is better: {ap:?}");
    // Pairing cancels the image-to-image variation both arms share: the interval of the
    // difference is narrower than the two arms' own intervals put together.
    let options = EvalOptions {
        bootstrap: Some(bootstrap),
        ..EvalOptions::default()
    };
    let (ra, rb) = (
        evaluate(&gt, &worse, &options).expect("a"),
        evaluate(&gt, &better, &options).expect("b"),
    );
    assert_eq!(ap.a, ra.overall.summary.ap);
    assert_eq!(ap.b, rb.overall.summary.ap);
    let (wa, wb) = (
        width(ra.overall.intervals.expect("a").ap),
        width(rb.overall.intervals.expect("b").ap),
    );
    eprintln!(
        "AP interval widths: a {wa:.4}, b {wb:.4}, paired b-a {:.4}",
        i.upper - i.lower
    );
    assert!(i.upper - i.lower < (wa * wa + wb * wb).sqrt());
}

#[test]
fn missing_files_are_errors_naming_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("nope.json");
    let err = Detections::read(&missing).expect_err("missing").to_string();
    assert!(err.contains("nope.json"), "{err}");
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, r#"[{"image_id": 1}]"#).expect("write");
    let err = Detections::read(&bad).expect_err("malformed").to_string();
    assert!(err.contains("bad.json"), "{err}");
    let wrapped = tmp.path().join("wrapped.json");
    std::fs::write(
        &wrapped,
        r#"{"annotations": [{"image_id": 1, "category_id": 2, "bbox": [1, 2, 3, 4], "score": 0.5, "area": 12}]}"#,
    )
    .expect("write");
    let read = Detections::read(&wrapped).expect("wrapped results");
    assert_eq!(
        read.items(),
        [Detection {
            image_id: 1,
            category_id: 2,
            bbox: [1.0, 2.0, 3.0, 4.0],
            score: 0.5
        }]
    );
    let err = GroundTruth::open(tmp.path(), None, &ClassMap::identity())
        .expect_err("not a dataset")
        .to_string();
    assert!(err.contains(&tmp.path().display().to_string()), "{err}");
}
