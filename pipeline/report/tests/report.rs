//! Reports from real evaluations: CamVid val and road-animals ingested into datasets, scored by
//! roadsynth-eval for three simulated detectors of different quality (one per arm, two training
//! seeds each), and the report checked as a reader would use it: metrics.json against the
//! evaluations, report.md's tables, report.html's self-containment, and a screenshot of the page
//! in headless Chromium.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hotcoco::params::IouType;
use hotcoco::{COCO, COCOeval};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use roadsynth_dataset::{Dataset, DatasetWriter, Projection, WriteOptions};
use roadsynth_eval::{
    Bootstrap, ClassMap, Detection, Detections, EvalOptions, EvalReport, GroundTruth, SliceSpec,
    compare, evaluate,
};
use roadsynth_formats::{LoadOptions, coco, export, load_all};
use roadsynth_report::{
    Arm, ArmComparison, ArmPrCurve, ArmResult, BoxKind, Example, ExampleBox, Experiment,
    MetricsFile, PrCurve, ReportError, SeedResult, TestSetReport, report_dir, write_report,
};
use roadsynth_testkit::shared;
use roadsynth_types::FrameRecord;
use serde_json::Value;

const SEEDS: [u64; 2] = [0, 1];
const BOOTSTRAP: Bootstrap = Bootstrap {
    resamples: 300,
    seed: 7,
    confidence: 0.95,
};

/// A test set: its ingested dataset, ground truth, frames (with images, in export order) and the
/// COCO export that hotcoco reads for PR curves.
struct TestSet {
    name: &'static str,
    gt: GroundTruth,
    records: Vec<FrameRecord>,
    /// Frame id → export image id.
    image_ids: HashMap<String, u64>,
    /// Class → export category id.
    category_ids: HashMap<String, u64>,
    coco_json: PathBuf,
}

/// Ingests a COCO source into a dataset under `dir` and exports it, as the experiment does.
fn ingest(name: &'static str, annotations: &Path, split: &str, dir: &Path) -> TestSet {
    let scan = coco::scan(annotations, None, split).expect("scan");
    assert!(scan.quarantined.is_empty(), "{:#?}", scan.quarantined);
    let root = dir.join(name);
    let mut writer = DatasetWriter::create(&root, WriteOptions::default()).expect("create");
    load_all(scan.frames, &LoadOptions::default(), 16, |r| {
        writer
            .write(&r.expect("shared frames load"))
            .expect("write");
        Ok::<(), ()>(())
    })
    .expect("load");
    writer
        .commit(serde_json::json!({"test": "report"}))
        .expect("commit");
    let dataset = Dataset::open(&root).expect("open");
    let gt = GroundTruth::from_dataset(&dataset, None, &ClassMap::identity()).expect("gt");
    let records: Vec<FrameRecord> = dataset
        .all_frames(Projection::Full)
        .expect("frames")
        .map(|r| r.expect("frame"))
        .collect();
    let out = dir.join(format!("{name}-coco"));
    export::to_coco(&dataset, &out).expect("export");
    let coco_json = out.join("annotations.json");
    let exported: Value =
        serde_json::from_slice(&std::fs::read(&coco_json).expect("read export")).expect("json");
    let ids = |key: &str, field: &str| -> HashMap<String, u64> {
        exported[key]
            .as_array()
            .expect("array")
            .iter()
            .map(|i| {
                (
                    i[field].as_str().expect("name").to_string(),
                    i["id"].as_u64().expect("id"),
                )
            })
            .collect()
    };
    TestSet {
        name,
        gt,
        records,
        image_ids: ids("images", "frame_id"),
        category_ids: ids("categories", "name"),
        coco_json,
    }
}

/// A simulated detector, deterministic per frame, arm and seed. Better arms miss fewer objects,
/// place boxes tighter and score their hits above their false positives more often.
#[derive(Clone, Copy)]
struct Detector {
    arm: Arm,
    seed: u64,
}

impl Detector {
    fn quality(self) -> (f64, f64, f64) {
        // (miss probability, box jitter, chance a hit scores above the false positives)
        match self.arm {
            Arm::Real => (0.45, 0.16, 0.55),
            Arm::NaivePaste => (0.35, 0.12, 0.65),
            Arm::Roadsynth => (0.15, 0.06, 0.85),
        }
    }

    fn detect(self, t: &TestSet) -> Detections {
        let (miss, jitter, rank) = self.quality();
        let ids: Vec<u64> = t.category_ids.values().copied().collect();
        let mut items = Vec::new();
        for r in &t.records {
            let key = u64::from_str_radix(&r.frame.id.as_str()[..16], 16).expect("hex frame id");
            let mut rng =
                ChaCha8Rng::seed_from_u64(key ^ ((self.arm as u64) << 40) ^ (self.seed << 48));
            let image_id = t.image_ids[r.frame.id.as_str()];
            for a in r.annotations.iter().filter(|a| !a.crowd && !a.ignore) {
                if rng.random_bool(miss) {
                    continue;
                }
                let (w, h) = (a.bbox.width(), a.bbox.height());
                let mut j = |s: f64| (rng.random::<f64>() - 0.5) * 2.0 * jitter * s;
                let bbox = [
                    a.bbox.x0 + j(w),
                    a.bbox.y0 + j(h),
                    w * (1.0 + j(1.0)).max(0.2),
                    h * (1.0 + j(1.0)).max(0.2),
                ];
                let score = if rng.random_bool(rank) {
                    rng.random_range(0.6..1.0)
                } else {
                    rng.random_range(0.05..0.6)
                };
                items.push(Detection {
                    image_id,
                    category_id: t.category_ids[&a.class],
                    bbox,
                    score,
                });
            }
            let (fw, fh) = (f64::from(r.frame.width), f64::from(r.frame.height));
            for _ in 0..3 {
                let (bw, bh) = (
                    rng.random_range(12.0..fw / 4.0),
                    rng.random_range(12.0..fh / 4.0),
                );
                items.push(Detection {
                    image_id,
                    category_id: ids[rng.random_range(0..ids.len())],
                    bbox: [
                        rng.random_range(0.0..fw - bw),
                        rng.random_range(0.0..fh - bh),
                        bw,
                        bh,
                    ],
                    score: rng.random_range(0.0..0.7),
                });
            }
        }
        Detections::new(
            format!("{} seed {} on {}", self.arm, self.seed, t.name),
            items,
        )
    }
}

/// Per class, COCO's interpolated precision at the 101 recall thresholds, `IoU` 0.5, area all,
/// 100 detections: hotcoco's `accumulate` on the export, read the way roadsynth-eval reads AP50.
fn pr_curves(t: &TestSet, detections: &Detections) -> Vec<PrCurve> {
    let gt = COCO::new(&t.coco_json).expect("hotcoco reads the export");
    let anns = detections
        .items()
        .iter()
        .map(|d| hotcoco::Annotation {
            image_id: d.image_id,
            category_id: d.category_id,
            bbox: Some(d.bbox),
            score: Some(d.score),
            ..Default::default()
        })
        .collect();
    let dt = gt.load_res_anns(anns).expect("results");
    let mut ev = COCOeval::new(gt, dt, IouType::Bbox);
    ev.evaluate().expect("evaluate");
    ev.accumulate();
    let acc = ev.accumulated().expect("accumulated");
    let p = &ev.params;
    let (t50, area, cap) = (
        p.iou_thr_idx(0.5).expect("IoU 0.5"),
        p.all_area_idx(),
        p.max_det_idx(),
    );
    let names: HashMap<u64, &String> = t.category_ids.iter().map(|(n, id)| (*id, n)).collect();
    acc.cat_ids
        .iter()
        .enumerate()
        .map(|(k, id)| PrCurve {
            class: names[id].clone(),
            iou: 0.5,
            recall: p.rec_thrs.clone(),
            precision: (0..acc.shape.r)
                .map(|r| acc.precision[acc.precision_idx(t50, r, k, area, cap)])
                .collect(),
        })
        .filter(|c| c.precision.iter().all(|v| *v >= 0.0))
        .collect()
}

/// Frames of a test set with their ground truth and one arm's confident detections.
fn example(t: &TestSet, index: usize, arm: Arm, detections: &Detections) -> Example {
    let r = &t.records[index];
    let image_id = t.image_ids[r.frame.id.as_str()];
    let names: HashMap<u64, &String> = t.category_ids.iter().map(|(n, id)| (*id, n)).collect();
    let mut boxes: Vec<ExampleBox> = r
        .annotations
        .iter()
        .map(|a| ExampleBox {
            bbox: [a.bbox.x0, a.bbox.y0, a.bbox.x1, a.bbox.y1],
            label: String::new(),
            kind: BoxKind::GroundTruth,
        })
        .collect();
    boxes.extend(
        detections
            .items()
            .iter()
            .filter(|d| d.image_id == image_id && d.score >= 0.5)
            .map(|d| ExampleBox {
                bbox: [
                    d.bbox[0],
                    d.bbox[1],
                    d.bbox[0] + d.bbox[2],
                    d.bbox[1] + d.bbox[3],
                ],
                label: format!("{} {:.2}", names[&d.category_id], d.score),
                kind: BoxKind::Detection(arm),
            }),
    );
    Example {
        caption: format!(
            "{} {}: ground truth and {arm} seed 0 detections (score >= 0.5)",
            t.name, r.frame.image_name
        ),
        image: r.image.clone().expect("frames were read with images"),
        boxes,
    }
}

/// The experiment, its detections and evaluations, built once for every test of this binary.
struct Built {
    experiment: Experiment,
    /// (arm, seed, test set) → evaluation.
    reports: HashMap<(Arm, u64, String), EvalReport>,
}

fn built() -> Option<&'static Built> {
    static BUILT: OnceLock<Option<Built>> = OnceLock::new();
    BUILT.get_or_init(build).as_ref()
}

fn build() -> Option<Built> {
    let camvid = shared("datasets/camvid")?;
    let animals = shared("datasets/road-animals")?;
    let dir = tempfile::tempdir().expect("tempdir");
    let test_sets = [
        ingest(
            "camvid-val",
            &camvid.join("annotations_val.json"),
            "val",
            dir.path(),
        ),
        ingest(
            "road-animals",
            &animals.join("annotations.json"),
            "test",
            dir.path(),
        ),
    ];
    let options = EvalOptions {
        bootstrap: Some(BOOTSTRAP),
        ..EvalOptions::default()
    };
    let mut reports = HashMap::new();
    let mut detections = HashMap::new();
    let mut arms = Vec::new();
    let mut pr = Vec::new();
    for arm in Arm::ALL {
        let mut seeds = Vec::new();
        for seed in SEEDS {
            let mut results = Vec::new();
            for t in &test_sets {
                let dets = Detector { arm, seed }.detect(t);
                // road-animals sliced by species, as an experiment's `slices:` asks.
                let options = EvalOptions {
                    slices: if t.name == "road-animals" {
                        vec![SliceSpec::by("species")]
                    } else {
                        Vec::new()
                    },
                    ..options.clone()
                };
                let report = evaluate(&t.gt, &dets, &options).expect("evaluate");
                for curve in pr_curves(t, &dets) {
                    pr.push(ArmPrCurve {
                        arm,
                        seed,
                        test_set: t.name.to_string(),
                        curve,
                    });
                }
                reports.insert((arm, seed, t.name.to_string()), report.clone());
                detections.insert((arm, seed, t.name), dets);
                results.push(TestSetReport {
                    test_set: t.name.to_string(),
                    report,
                });
            }
            seeds.push(SeedResult {
                seed,
                model_dir: PathBuf::from(format!("models/{arm}-seed{seed}")),
                test_sets: results,
            });
        }
        arms.push(ArmResult { arm, seeds });
    }
    let mut comparisons = Vec::new();
    for t in &test_sets {
        for (a, b) in Arm::PAIRS {
            for seed in SEEDS {
                comparisons.push(ArmComparison {
                    test_set: t.name.to_string(),
                    a,
                    a_seed: seed,
                    b,
                    b_seed: seed,
                    comparison: compare(
                        &t.gt,
                        &detections[&(a, seed, t.name)],
                        &detections[&(b, seed, t.name)],
                        &BOOTSTRAP,
                    )
                    .expect("compare"),
                });
            }
        }
    }
    let [camvid, animals] = &test_sets;
    let examples = vec![
        example(
            camvid,
            3,
            Arm::Roadsynth,
            &detections[&(Arm::Roadsynth, 0, camvid.name)],
        ),
        example(
            camvid,
            3,
            Arm::Real,
            &detections[&(Arm::Real, 0, camvid.name)],
        ),
        example(
            camvid,
            40,
            Arm::NaivePaste,
            &detections[&(Arm::NaivePaste, 0, camvid.name)],
        ),
        example(
            animals,
            2,
            Arm::Roadsynth,
            &detections[&(Arm::Roadsynth, 0, animals.name)],
        ),
    ];
    let experiment = Experiment {
        name: "Report test: simulated detectors on CamVid val and road-animals".into(),
        run_id: "report-test".into(),
        created_at: "2026-11-25T12:00:00Z".into(),
        arms,
        comparisons,
        pr_curves: pr,
        examples,
        notes: vec![
            "Simulated detectors (no training): real misses 45% of objects, naive_paste 35%, \
             roadsynth 15%."
                .into(),
            "Equal epochs and steps per arm would be stated here by the experiment driver.".into(),
        ],
        caveats: vec![
            "The detectors are simulated; the numbers test the report, not roadsynth.".into(),
        ],
    };
    Some(Built {
        experiment,
        reports,
    })
}

fn out_dir(name: &str) -> PathBuf {
    // Under cargo's scratch folder for integration tests, so the last run's report and screenshot
    // can be opened after a failure.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("roadsynth-report")
        .join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("clear the previous run's report");
    }
    dir
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("read")).expect("parse")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn metrics_json_holds_every_arm_class_seed_and_delta() {
    let Some(built) = built() else {
        return;
    };
    let dir = out_dir("metrics");
    let files = write_report(&dir, &built.experiment).expect("write report");
    let json = read_json(&files.metrics_json);
    assert_eq!(json["schema"], roadsynth_report::SCHEMA);
    let arm_names: Vec<&str> = json["arms"]
        .as_object()
        .expect("arms")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(arm_names, ["real", "naive_paste", "roadsynth"]);
    let test_sets: Vec<&String> = json["test_sets"]
        .as_object()
        .expect("test sets")
        .keys()
        .collect();
    assert_eq!(test_sets, ["camvid-val", "road-animals"]);
    assert_eq!(
        json["test_sets"]["camvid-val"]["classes"],
        serde_json::json!({"bicyclist": 201, "car": 193, "pedestrian": 221}),
        "CamVid val's evaluated objects per class"
    );

    for arm in Arm::ALL {
        let a = &json["arms"][arm.as_str()];
        let models: Vec<(u64, &str)> = a["models"]
            .as_array()
            .expect("models")
            .iter()
            .map(|m| {
                (
                    m["seed"].as_u64().expect("seed"),
                    m["model_dir"].as_str().expect("dir"),
                )
            })
            .collect();
        assert_eq!(
            models,
            [
                (0, format!("models/{arm}-seed0").as_str()),
                (1, format!("models/{arm}-seed1").as_str())
            ]
        );
        for (t, ts) in a["test_sets"].as_object().expect("test sets") {
            let report = |seed: u64| &built.reports[&(arm, seed, t.clone())];
            for (class, f) in ts["classes"].as_object().expect("classes") {
                for (key, interval_key) in [("ap50", "ap50_interval"), ("ap", "ap_interval")] {
                    let fig = &f[key];
                    let seeds = fig["seeds"].as_array().expect("seeds");
                    assert_eq!(seeds.len(), SEEDS.len());
                    let mut sum = 0.0;
                    for s in seeds {
                        let seed = s["seed"].as_u64().expect("seed");
                        let c = report(seed)
                            .overall
                            .per_class
                            .iter()
                            .find(|c| &c.class == class)
                            .expect("class evaluated");
                        let expected = serde_json::to_value(c).expect("json");
                        assert_eq!(s["value"], expected[key], "{arm} {seed} {t} {class} {key}");
                        assert_eq!(s["interval"], expected[interval_key]);
                        sum += s["value"].as_f64().expect("value");
                    }
                    let mean = fig["mean"].as_f64().expect("mean");
                    assert!(close(mean, sum / 2.0), "{arm} {t} {class} {key} mean");
                    let (lo, hi) = (
                        fig["interval"]["lower"].as_f64().expect("lower"),
                        fig["interval"]["upper"].as_f64().expect("upper"),
                    );
                    for s in seeds {
                        assert!(lo <= s["interval"]["lower"].as_f64().expect("lower"));
                        assert!(hi >= s["interval"]["upper"].as_f64().expect("upper"));
                    }
                    assert!(fig["std"].as_f64().is_some(), "two seeds give a std");
                }
            }
            let overall = &ts["overall"]["ap50"]["seeds"][0]["value"];
            assert_eq!(overall.as_f64(), report(0).overall.summary.ap50);
        }
    }

    // Deltas: every pair on every test set, each exactly the difference of the arms' means, with
    // the paired comparisons' intervals.
    let deltas = json["deltas"].as_array().expect("deltas");
    assert_eq!(deltas.len(), 2 * Arm::PAIRS.len());
    for d in deltas {
        let (t, arm_a, arm_b) = (
            d["test_set"].as_str().expect("test set"),
            d["a"].as_str().expect("a"),
            d["b"].as_str().expect("b"),
        );
        let mean = |arm: &str, class: Option<&str>, key: &str| {
            let ts = &json["arms"][arm]["test_sets"][t];
            let f = class.map_or(&ts["overall"], |c| &ts["classes"][c]);
            f[key]["mean"].as_f64().expect("mean")
        };
        let mut rows: Vec<(Option<&str>, &Value)> = vec![(None, &d["overall"])];
        rows.extend(
            d["classes"]
                .as_object()
                .expect("classes")
                .iter()
                .map(|(c, x)| (Some(c.as_str()), x)),
        );
        for (class, row) in rows {
            for key in ["ap50", "ap"] {
                let diff = row[key]["difference"].as_f64().expect("difference");
                assert!(
                    close(diff, mean(arm_b, class, key) - mean(arm_a, class, key)),
                    "{arm_b} - {arm_a} on {t}, {class:?} {key}"
                );
                let pairs = row[key]["pairs"].as_array().expect("pairs");
                assert_eq!(pairs.len(), SEEDS.len(), "one comparison per seed");
                for p in pairs {
                    let seed = p["a_seed"].as_u64().expect("seed");
                    let arm = |name: &str| match name {
                        "real" => Arm::Real,
                        "naive_paste" => Arm::NaivePaste,
                        _ => Arm::Roadsynth,
                    };
                    let value = |arm: Arm| {
                        let r = &built.reports[&(arm, seed, t.to_string())];
                        let c = class.map(|c| {
                            r.overall
                                .per_class
                                .iter()
                                .find(|x| x.class == c)
                                .expect("class")
                        });
                        match (key, c) {
                            ("ap50", Some(c)) => c.ap50,
                            ("ap", Some(c)) => c.ap,
                            ("ap50", None) => r.overall.summary.ap50,
                            _ => r.overall.summary.ap,
                        }
                        .expect("defined")
                    };
                    let paired = p["difference"].as_f64().expect("paired difference");
                    assert!(close(paired, value(arm(arm_b)) - value(arm(arm_a))));
                    assert!(p["interval"]["lower"].as_f64().is_some());
                    assert!(p["b_better"].as_f64().is_some());
                }
            }
        }
    }
    // The simulated quality gap shows: roadsynth beats real on CamVid with an interval above 0.
    let m: MetricsFile = serde_json::from_value(json.clone()).expect("metrics.json reads back");
    let d = m
        .deltas
        .iter()
        .find(|d| d.test_set == "camvid-val" && d.a == Arm::Real && d.b == Arm::Roadsynth)
        .expect("roadsynth - real");
    let iv = d.overall.ap50.interval.expect("interval");
    assert!(iv.lower > 0.0, "roadsynth - real AP50 interval {iv:?}");
    // road-animals has 10 images: the caveats say that its classes are small.
    assert!(
        m.caveats
            .iter()
            .any(|c| c.contains("road-animals") && c.contains("fewer than")),
        "{:#?}",
        m.caveats
    );
    assert_eq!(m.caveats[0], built.experiment.caveats[0]);
}

/// Issue 7: a test set's slices (here road-animals by species) reach metrics.json and the
/// tables, per arm and seed, with the values roadsynth-eval computed; an unsliced test set has none.
#[test]
fn issue_7_slices_of_a_test_set_are_reported_per_arm() {
    let Some(built) = built() else {
        return;
    };
    let dir = out_dir("slices");
    let files = write_report(&dir, &built.experiment).expect("write report");
    let json = read_json(&files.metrics_json);
    assert!(json["test_sets"]["camvid-val"].get("slices").is_none());
    let slices = json["test_sets"]["road-animals"]["slices"]
        .as_object()
        .expect("road-animals slices");
    assert!(slices.contains_key("species=cow"), "{slices:?}");
    for arm in Arm::ALL {
        let figure = &json["arms"][arm.as_str()]["test_sets"]["road-animals"]["slices"]["species=cow"]
            ["ap50"];
        for (i, seed) in SEEDS.into_iter().enumerate() {
            let report = &built.reports[&(arm, seed, "road-animals".to_string())];
            let cows = report
                .slices
                .iter()
                .find(|s| s.key == "species" && s.value == "cow")
                .expect("a cow slice");
            let expected = cows.metrics.summary.ap50;
            let got = figure["seeds"][i]["value"].as_f64();
            assert_eq!(got, expected, "{arm} seed {seed}: {figure}");
        }
    }
    let md = std::fs::read_to_string(&files.report_md).expect("report.md");
    let section = md
        .split("## Test set `road-animals`")
        .nth(1)
        .expect("road-animals section");
    assert!(section.contains("### AP50 per slice (all classes)"), "{md}");
    assert!(section.contains("| species=cow |"), "{md}");
    let camvid = md
        .split("## Test set `camvid-val`")
        .nth(1)
        .and_then(|s| s.split("## Test set").next())
        .expect("camvid-val section");
    assert!(!camvid.contains("per slice"));
    let html = std::fs::read_to_string(&files.report_html).expect("report.html");
    assert!(html.contains("AP50 per slice (all classes)"));
}

#[test]
fn report_md_has_the_tables_and_caveats() {
    let Some(b) = built() else {
        return;
    };
    let dir = out_dir("markdown");
    let files = write_report(&dir, &b.experiment).expect("write report");
    let md = std::fs::read_to_string(&files.report_md).expect("read report.md");
    for needle in [
        "# Report test: simulated detectors",
        "## What was compared",
        "- **real**: 2 models (seeds 0, 1)",
        "Equal epochs and steps per arm",
        "## Test set `camvid-val`",
        "## Test set `road-animals`",
        "| class | objects | real | naive_paste | roadsynth |",
        "### roadsynth - real",
        "### roadsynth - naive_paste",
        "| class | Δ AP50 | P(b > a) AP50 | Δ AP | P(b > a) AP |",
        "| models/roadsynth-seed1 |",
        "## Caveats",
        "The detectors are simulated",
    ] {
        assert!(md.contains(needle), "report.md lacks {needle:?}:\n{md}");
    }
    // The AP50 table's car row carries each arm's mean, seed range and interval.
    let m: MetricsFile =
        serde_json::from_slice(&std::fs::read(&files.metrics_json).expect("read")).expect("parse");
    let car = |arm: Arm| {
        m.arms
            .get(arm.as_str())
            .expect("arm")
            .test_sets
            .get("camvid-val")
            .expect("set")
            .classes
            .get("car")
            .expect("car")
            .ap50
            .clone()
    };
    let row = md
        .lines()
        .find(|l| l.starts_with("| car | 193 |"))
        .expect("car row");
    for arm in Arm::ALL {
        let f = car(arm);
        let iv = f.interval.expect("interval");
        let cell = format!(
            "{:.3} ({:.3}..{:.3}, 2 seeds) [{:.3}, {:.3}]",
            f.mean.expect("mean"),
            f.min.expect("min"),
            f.max.expect("max"),
            iv.lower,
            iv.upper
        );
        assert!(row.contains(&cell), "{arm}: {cell} not in {row}");
    }
}

/// Every `src`/`href` attribute value in the page.
fn references(html: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\""] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let end = rest.find('"').expect("closed attribute");
            out.push(&rest[..end]);
            rest = &rest[end..];
        }
    }
    out
}

#[test]
fn report_html_is_self_contained_and_deterministic() {
    let Some(b) = built() else {
        return;
    };
    let files = write_report(&out_dir("html-a"), &b.experiment).expect("write report");
    let html = std::fs::read_to_string(&files.report_html).expect("read report.html");
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(!html.contains("url(") && !html.contains("@import"));
    let refs = references(&html);
    assert_eq!(
        refs.len(),
        b.experiment.examples.len(),
        "one image per example"
    );
    assert!(
        refs.iter()
            .all(|r| r.starts_with("data:image/jpeg;base64,"))
    );
    // Two bar charts per test set, and a PR plot per class of each: 3 + 1 classes.
    let svgs = html.matches("<svg").count();
    assert_eq!(svgs, 2 * 2 + 4 + b.experiment.examples.len(), "SVG count");
    // Every arm's bars, in its colour, and the whiskers' caps.
    for arm in Arm::ALL {
        assert!(
            html.contains(&format!("fill=\"{}\"", arm.css())),
            "{arm} bars"
        );
    }
    assert!(html.contains("AP50 per class: camvid-val"));
    // Detection boxes of the examples, and their labels escaped as text.
    assert!(html.contains(&format!("stroke=\"{}\"", Arm::Roadsynth.css())));
    assert!(html.contains(">car 0."));

    // Same input, same bytes.
    let again = write_report(&out_dir("html-b"), &b.experiment).expect("write again");
    for (x, y) in [
        (&files.metrics_json, &again.metrics_json),
        (&files.report_md, &again.report_md),
        (&files.report_html, &again.report_html),
    ] {
        assert!(
            std::fs::read(x).expect("read") == std::fs::read(y).expect("read"),
            "{} and {} differ",
            x.display(),
            y.display()
        );
    }
}

/// Debian's `chromium`, or `None` after saying why the test skips (a failure under `CI=true`, as
/// for shared data: CI must not pass by skipping).
fn chromium() -> Option<&'static str> {
    let ok = Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let msg = "chromium not found (scripts/setup.sh installs Debian's chromium)";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{msg}; under CI=true this is a failure"
        );
        eprintln!("SKIP: {msg}");
    }
    ok.then_some("chromium")
}

/// Pixels of an RGB colour (within 6 per channel) inside an area of it: the pixels 4 to the right
/// and 4 below have it too. Bars count; lines (2 px wide PR curves) and text do not.
fn count_filled(img: &image::RgbaImage, rgb: (u8, u8, u8)) -> usize {
    let colour = [rgb.0, rgb.1, rgb.2];
    let is = |x: u32, y: u32| {
        let p = img.get_pixel(x, y);
        (0..3).all(|i| p[i].abs_diff(colour[i]) <= 6)
    };
    let (width, height) = img.dimensions();
    (0..height - 4)
        .flat_map(|y| (0..width - 4).map(move |x| (x, y)))
        .filter(|&(x, y)| is(x, y) && is(x + 4, y) && is(x, y + 4) && is(x + 4, y + 4))
        .count()
}

#[test]
fn report_html_renders_in_headless_chromium() {
    let Some(b) = built() else {
        return;
    };
    let Some(chromium) = chromium() else {
        return;
    };
    let dir = out_dir("chromium");
    let files = write_report(&dir, &b.experiment).expect("write report");
    let html = files.report_html.canonicalize().expect("absolute path");
    let png = dir.join("screenshot.png");
    let profile = tempfile::tempdir().expect("profile dir");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1280,2000")
        .arg(format!("file://{}", html.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_mins(2);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish its screenshot in 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = child
        .wait_with_output()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default();
    assert!(status.success(), "chromium failed: {status}\n{stderr}");
    assert!(
        png.is_file(),
        "no screenshot at {}:\n{stderr}",
        png.display()
    );
    let img = image::open(&png).expect("screenshot is a PNG").to_rgba8();
    assert_eq!(
        img.dimensions(),
        (1280, 2000),
        "screenshot has the window size"
    );

    // Not blank: the luma varies (text, tables, plots on white).
    let luma: Vec<f64> = img
        .pixels()
        .map(|p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]))
        .collect();
    let mean = luma.iter().sum::<f64>() / luma.len() as f64;
    let var = luma.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / luma.len() as f64;
    assert!(
        var > 200.0,
        "screenshot looks blank: luma variance {var:.1}"
    );
    // Each arm's bars are drawn: far more filled area of its colour than the legend swatch's.
    for arm in Arm::ALL {
        let n = count_filled(&img, arm.rgb());
        assert!(
            n > 3000,
            "{arm}: only {n} pixels of {} in {}",
            arm.css(),
            png.display()
        );
    }
}

#[test]
fn inconsistent_experiments_are_rejected_by_name() {
    let Some(b) = built() else {
        return;
    };
    let dir = out_dir("rejected");
    let expect_err = |e: &Experiment, needle: &str| {
        let err = write_report(&dir, e).expect_err("inconsistent experiment accepted");
        assert!(matches!(err, ReportError::Input { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
        assert!(
            !dir.exists(),
            "a rejected experiment left files in {}",
            dir.display()
        );
    };

    // A comparison filed under another seed than the detections it was computed from.
    let mut e = b.experiment.clone();
    let c = e
        .comparisons
        .iter_mut()
        .find(|c| c.test_set == "camvid-val" && c.b == Arm::Roadsynth && c.a_seed == 0)
        .expect("comparison");
    c.b_seed = 1;
    expect_err(&e, "was it computed from other detections?");

    // A baseline on the wrong side.
    let mut e = b.experiment.clone();
    let c = &mut e.comparisons[0];
    std::mem::swap(&mut c.a, &mut c.b);
    expect_err(&e, "put the baseline arm as a");

    // A PR curve of one model filed under another arm.
    let mut e = b.experiment.clone();
    let p = e
        .pr_curves
        .iter_mut()
        .find(|p| p.arm == Arm::Real && p.test_set == "camvid-val")
        .expect("curve");
    p.arm = Arm::Roadsynth;
    expect_err(&e, "is it the curve of another model");

    // A model not evaluated on every test set.
    let mut e = b.experiment.clone();
    e.arms[1].seeds[1].test_sets.pop();
    expect_err(&e, "every model must be evaluated on the same test sets");

    // A model evaluated on another ground truth.
    let mut e = b.experiment.clone();
    e.arms[2].seeds[0].test_sets[0].report.ground_truth = "dataset elsewhere".into();
    expect_err(
        &e,
        "test set camvid-val: arm roadsynth seed 0 was evaluated with ground truth",
    );

    // An example that is not an image names its caption.
    let mut e = b.experiment.clone();
    e.examples[0].image = b"not an image".to_vec();
    let err = write_report(&dir, &e).expect_err("bad image accepted");
    assert!(err.to_string().contains(&e.examples[0].caption), "{err}");

    // And the report folder comes from a plain run id only.
    assert!(report_dir(Path::new("reports"), "../escape").is_err());
}

#[test]
fn a_missing_arm_and_single_seeds_are_caveats_not_errors() {
    let Some(built) = built() else {
        return;
    };
    let mut e = built.experiment.clone();
    e.arms.retain(|a| a.arm != Arm::NaivePaste);
    for a in &mut e.arms {
        a.seeds.truncate(1);
    }
    e.comparisons
        .retain(|c| c.a != Arm::NaivePaste && c.b != Arm::NaivePaste && c.a_seed == 0);
    e.pr_curves
        .retain(|p| p.arm != Arm::NaivePaste && p.seed == 0);
    e.examples.retain(|x| !x.caption.contains("naive_paste"));
    let files = write_report(&out_dir("partial"), &e).expect("write partial report");
    let m: MetricsFile =
        serde_json::from_slice(&std::fs::read(&files.metrics_json).expect("read")).expect("parse");
    assert_eq!(m.arms.keys().collect::<Vec<_>>(), ["real", "roadsynth"]);
    assert_eq!(m.deltas.len(), 2, "roadsynth - real on each test set");
    assert!(
        m.caveats
            .iter()
            .any(|c| c.contains("Arm naive_paste has no results"))
    );
    assert!(m.caveats.iter().any(|c| c.contains("single seed")));
    // With one seed the figure is that model's: its value, its interval, no spread.
    let car = &m
        .arms
        .get("real")
        .expect("real")
        .test_sets
        .get("camvid-val")
        .expect("set");
    let car = &car.classes.get("car").expect("car").ap50;
    let c = built.reports[&(Arm::Real, 0, "camvid-val".to_string())]
        .overall
        .per_class
        .iter()
        .find(|c| c.class == "car")
        .expect("car");
    assert_eq!(
        (car.mean, car.interval, car.std),
        (c.ap50, c.ap50_interval, None)
    );
    let md = std::fs::read_to_string(&files.report_md).expect("read report.md");
    assert!(
        md.contains("| class | objects | real | roadsynth |"),
        "{md}"
    );
    assert!(!md.contains("2 seeds"));
}
