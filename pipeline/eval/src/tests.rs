//! Checks of the weighted re-accumulation against hotcoco itself, on synthetic frames (the
//! pycocotools parity on real data is in `tests/eval.rs`).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use roadsynth_types::{
    Annotation, Attributes, BBox, Frame, FrameId, FrameRecord, ImageFormat, Provenance,
};

use crate::detections::Prepared;
use crate::report::{run_view, slots};
use crate::slices::View;
use crate::table::{MatchTable, SUMMARY_STATS, Scratch};
use crate::{ClassMap, Detection, Detections, GroundTruth};

const W: u32 = 640;
const H: u32 = 480;
const CLASSES: [&str; 3] = ["bus", "car", "person"];

fn frame(i: usize) -> Frame {
    Frame {
        id: FrameId::from_stored(format!("{i:032x}")),
        split: "val".into(),
        source_uri: format!("/synthetic/{i}.png"),
        image_name: format!("{i}.png"),
        image_format: ImageFormat::Png,
        width: W,
        height: H,
        camera: None,
        semantic_label: None,
        sequence: None,
        timestamp_ms: None,
        attributes: Attributes::new(),
        provenance: Provenance {
            source_format: "synthetic".into(),
            parent: None,
            steps: Vec::new(),
        },
    }
}

fn random_box(rng: &mut ChaCha8Rng) -> BBox {
    // Sizes from 8 to 300 px, so every COCO area range has objects.
    let w = 8.0 * (rng.random::<f64>() * 3.6).exp();
    let h = 8.0 * (rng.random::<f64>() * 3.6).exp();
    let x = rng.random::<f64>() * (f64::from(W) - w);
    let y = rng.random::<f64>() * (f64::from(H) - h);
    BBox::new(x, y, x + w, y + h)
}

/// Frames with objects of three classes, crowds and `DontCare` regions.
fn records(n: usize, seed: u64) -> Vec<FrameRecord> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let mut annotations = Vec::new();
            for _ in 0..rng.random_range(0..9) {
                let class = CLASSES[rng.random_range(0..CLASSES.len())];
                let mut a = Annotation::real(class, random_box(&mut rng));
                a.crowd = rng.random_bool(0.08);
                annotations.push(a);
            }
            if rng.random_bool(0.3) {
                let mut dc = Annotation::real("DontCare", random_box(&mut rng));
                dc.ignore = true;
                annotations.push(dc);
            }
            FrameRecord {
                frame: frame(i),
                annotations,
                image: None,
                semantic_label: None,
            }
        })
        .collect()
}

/// A noisy detector: jittered boxes (some missed, some duplicated, some of the wrong class),
/// detections on crowds and ignore regions, and false positives.
fn detect(gt: &GroundTruth, records: &[FrameRecord], seed: u64) -> Vec<Detection> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let id_of = |class: &str| {
        gt.source_classes()
            .iter()
            .position(|c| c == class)
            .map(|i| i as u64 + 1)
            .expect("known class")
    };
    let mut out = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let image_id = i as u64 + 1;
        for a in &r.annotations {
            if !rng.random_bool(0.8) {
                continue;
            }
            let (w, h) = (a.bbox.width(), a.bbox.height());
            let mut jitter = |s: f64| (rng.random::<f64>() - 0.5) * 0.3 * s;
            let b = [
                a.bbox.x0 + jitter(w),
                a.bbox.y0 + jitter(h),
                w * (1.0 + jitter(1.0)),
                h * (1.0 + jitter(1.0)),
            ];
            let class = if a.class == "DontCare" || rng.random_bool(0.05) {
                CLASSES[rng.random_range(0..CLASSES.len())]
            } else {
                a.class.as_str()
            };
            let score = rng.random::<f64>();
            out.push(Detection {
                image_id,
                category_id: id_of(class),
                bbox: b,
                score,
            });
            if rng.random_bool(0.1) {
                out.push(Detection {
                    image_id,
                    category_id: id_of(class),
                    bbox: b,
                    score: score * 0.5,
                });
            }
        }
        for _ in 0..rng.random_range(0..4) {
            let b = random_box(&mut rng);
            out.push(Detection {
                image_id,
                category_id: id_of(CLASSES[rng.random_range(0..CLASSES.len())]),
                bbox: b.to_xywh(),
                score: rng.random::<f64>() * 0.7,
            });
        }
    }
    out
}

fn assert_close(a: f64, b: f64, what: &str) {
    assert!(
        (a.is_nan() && b.is_nan()) || (a - b).abs() < 1e-12,
        "{what}: {a} vs {b}"
    );
}

/// hotcoco's figures for a view, in [`MatchTable::stats`]'s layout.
fn hotcoco_stats(gt: &GroundTruth, dets: &Prepared, view: &View) -> Vec<f64> {
    let e = run_view(gt, dets, view)
        .expect("evaluate")
        .expect("non-empty view");
    let s = e.summary().stats();
    let mut out: Vec<f64> = s[..SUMMARY_STATS]
        .iter()
        .map(|&v| if v < 0.0 { f64::NAN } else { v })
        .collect();
    for (ap, ap50) in e.per_class(gt.categories().len()) {
        out.push(ap.unwrap_or(f64::NAN));
        out.push(ap50.unwrap_or(f64::NAN));
    }
    out
}

fn table_stats(gt: &GroundTruth, dets: &Prepared, weights: &[u32]) -> Vec<f64> {
    let e = run_view(gt, dets, &View::everything(gt))
        .expect("evaluate")
        .expect("non-empty");
    MatchTable::build(&e.ev, &slots(gt)).stats(weights, &mut Scratch::default())
}

fn setup(n: usize) -> (Vec<FrameRecord>, GroundTruth, Prepared) {
    let records = records(n, 7);
    let gt = GroundTruth::from_records(&records, &ClassMap::identity());
    let dets = Detections::new("synthetic", detect(&gt, &records, 11));
    let prepared = Prepared::new(&gt, &dets).expect("valid detections");
    (records, gt, prepared)
}

#[test]
fn unit_weights_reproduce_hotcoco() {
    let (_, gt, dets) = setup(40);
    assert_eq!(gt.categories(), ["bus", "car", "person"]);
    let expected = hotcoco_stats(&gt, &dets, &View::everything(&gt));
    let got = table_stats(&gt, &dets, &vec![1; gt.image_count()]);
    assert_eq!(got.len(), expected.len());
    for (i, (a, b)) in got.iter().zip(&expected).enumerate() {
        assert_close(*a, *b, &format!("figure {i}"));
    }
    // The data must exercise every area range, else the test would pass on a broken one.
    assert!(
        expected[3..6].iter().all(|v| v.is_finite() && *v > 0.0),
        "{expected:?}"
    );
}

#[test]
fn zero_weights_equal_evaluating_the_other_images() {
    let (_, gt, dets) = setup(40);
    let inside: Vec<bool> = (0..gt.image_count()).map(|i| i % 3 != 0).collect();
    let view = View {
        images: inside.clone(),
        hidden: vec![false; gt.objects.len()],
        min_detection_height: None,
    };
    let expected = hotcoco_stats(&gt, &dets, &view);
    let weights: Vec<u32> = inside.iter().map(|&i| u32::from(i)).collect();
    let got = table_stats(&gt, &dets, &weights);
    for (i, (a, b)) in got.iter().zip(&expected).enumerate() {
        assert_close(*a, *b, &format!("figure {i}"));
    }
}

/// An image drawn twice counts as two images: the weighted pass equals hotcoco on a dataset that
/// holds the drawn images as copies.
#[test]
fn multiplicity_equals_evaluating_copies() {
    let (records, gt, _) = setup(30);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let draws: Vec<usize> = (0..records.len())
        .map(|_| rng.random_range(0..records.len()))
        .collect();
    let mut weights = vec![0_u32; records.len()];
    for &d in &draws {
        weights[d] += 1;
    }
    assert!(weights.iter().any(|&w| w > 1));
    let detections = detect(&gt, &records, 11);
    // The copies, in image order, each with its original's detections.
    let mut copies = Vec::new();
    let mut copy_dets = Vec::new();
    for (i, &w) in weights.iter().enumerate() {
        for _ in 0..w {
            copies.push(records[i].clone());
            let new_id = copies.len() as u64;
            copy_dets.extend(
                detections
                    .iter()
                    .filter(|d| d.image_id == i as u64 + 1)
                    .map(|d| Detection {
                        image_id: new_id,
                        ..*d
                    }),
            );
        }
    }
    let copies_gt = GroundTruth::from_records(&copies, &ClassMap::identity());
    assert_eq!(copies_gt.source_classes(), gt.source_classes());
    let copies_prepared =
        Prepared::new(&copies_gt, &Detections::new("copies", copy_dets)).expect("valid");
    let expected = hotcoco_stats(&copies_gt, &copies_prepared, &View::everything(&copies_gt));
    let prepared = Prepared::new(&gt, &Detections::new("synthetic", detections)).expect("valid");
    let got = table_stats(&gt, &prepared, &weights);
    for (i, (a, b)) in got.iter().zip(&expected).enumerate() {
        assert_close(*a, *b, &format!("figure {i}"));
    }
}

#[test]
fn detections_with_unknown_ids_are_errors_naming_the_source() {
    let (_, gt, _) = setup(5);
    let bad_category = Detections::new(
        "preds.json",
        vec![Detection {
            image_id: 1,
            category_id: 9,
            bbox: [0.0, 0.0, 1.0, 1.0],
            score: 0.5,
        }],
    );
    let err = Prepared::new(&gt, &bad_category)
        .expect_err("category 9 does not exist")
        .to_string();
    assert!(
        err.contains("preds.json") && err.contains("category_id 9"),
        "{err}"
    );
    let bad_image = Detections::new(
        "preds.json",
        vec![Detection {
            image_id: 6,
            category_id: 1,
            bbox: [0.0, 0.0, 1.0, 1.0],
            score: 0.5,
        }],
    );
    let err = Prepared::new(&gt, &bad_image)
        .expect_err("image 6 does not exist")
        .to_string();
    assert!(err.contains("image_id 6"), "{err}");
    let nan = Detections::new(
        "preds.json",
        vec![Detection {
            image_id: 1,
            category_id: 1,
            bbox: [0.0, 0.0, 1.0, 1.0],
            score: f64::NAN,
        }],
    );
    assert!(Prepared::new(&gt, &nan).is_err());
}

#[test]
fn class_map_parsing() {
    let map = ClassMap::parse("Car=car, Van=car,Pedestrian=person").expect("valid");
    assert_eq!(map.map("Van"), Some("car"));
    assert_eq!(map.map("Cyclist"), None);
    let keep = ClassMap::parse("Car=car,*").expect("valid");
    assert_eq!(keep.map("Cyclist"), Some("Cyclist"));
    assert!(ClassMap::parse("Car").is_err());
    assert!(ClassMap::parse("Car=car,Car=auto").is_err());
}
