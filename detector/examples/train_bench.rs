//! Training benchmark: one epoch over `CamVid` train (367 frames, 480x360), seconds per epoch.
//! Target: at most 2 minutes on 2 cores.
//!
//! ```text
//! cargo run -p roadsynth-detector --example train_bench [-- OPTIONS]
//!   --epochs N     epochs to train (default 1)
//!   --eval         then AP50 on CamVid val (car, pedestrian, bicyclist) and road-animals (animal)
//!   --animals      add the COCO subset's animals (and people, cars) to the training split, as a
//!                  stand-in for generated animals
//!   --seed S       training seed (default 0)
//!   --threads T    ONNX Runtime threads (default: its own)
//!   --keep DIR     train into DIR and keep it
//!   --model DIR    no training: evaluate the model in DIR (with --eval)
//!   --zero-shot    instead: AP50 of YOLOX-nano itself (person as pedestrian, bicycle as
//!                  bicyclist, bird..giraffe as animal), the reference the head should beat
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;

use roadsynth_detector::{Predictor, TrainConfig, TrainOptions, train_with};

fn main() {
    let mut epochs = 1;
    let mut eval = false;
    let mut animals = false;
    let mut seed = 0;
    let mut threads = None;
    let mut keep: Option<PathBuf> = None;
    let mut zero_shot = false;
    let mut model: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().expect("option value");
        match arg.as_str() {
            "--epochs" => epochs = value().parse().expect("--epochs N"),
            "--eval" => eval = true,
            "--animals" => animals = true,
            "--seed" => seed = value().parse().expect("--seed S"),
            "--threads" => threads = Some(value().parse().expect("--threads T")),
            "--keep" => keep = Some(PathBuf::from(value())),
            "--zero-shot" => zero_shot = true,
            "--model" => model = Some(PathBuf::from(value())),
            other => panic!("unknown option {other}"),
        }
    }
    let Some(camvid) = roadsynth_testkit::shared("datasets/camvid") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dataset_root = tmp.path().join("camvid");
    let train_json = camvid.join("annotations_train.json");
    let val_json = camvid.join("annotations_val.json");
    let (coco_json, coco_images);
    let mut sources = vec![
        support::Source::new(&train_json, "train"),
        support::Source::new(&val_json, "val"),
    ];
    let mut config = TrainConfig {
        epochs,
        seed,
        ..TrainConfig::default()
    };
    if animals {
        let Some(coco) = roadsynth_testkit::shared("datasets/coco-animals-vehicles") else {
            return;
        };
        coco_json = coco.join("instances_subset.json");
        coco_images = coco.join("images");
        sources.push(support::Source {
            images: Some(&coco_images),
            ..support::Source::new(&coco_json, "train")
        });
        for animal in [
            "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
        ] {
            config.class_map.insert(animal.into(), "animal".into());
        }
        config
            .class_map
            .insert("person".into(), "pedestrian".into());
    }
    let dataset = support::ingest_coco(&dataset_root, &sources);
    if zero_shot {
        zero_shot_reference(&dataset, tmp.path());
        return;
    }
    if let Some(model_dir) = model {
        evaluate(&model_dir, &dataset, tmp.path());
        return;
    }
    let model_dir = keep.unwrap_or_else(|| tmp.path().join("model"));
    let summary = train_with(
        &dataset_root,
        "train",
        &config,
        &model_dir,
        TrainOptions {
            intra_threads: threads,
            resume: false,
        },
        |e| {
            println!(
                "epoch {}: loss {:.4} (objectness {:.4}, class {:.4}, box {:.4}), {} frames, {:.1} s (decode {:.1}, backbone {:.1}, head {:.1})",
                e.epoch,
                e.loss,
                e.objectness_loss,
                e.class_loss,
                e.box_loss,
                e.frames,
                e.seconds,
                e.decode_seconds,
                e.backbone_seconds,
                e.head_seconds
            );
        },
    )
    .expect("train");
    let seconds: f64 = summary.epochs.iter().map(|e| e.seconds).sum::<f64>() / f64::from(epochs);
    println!(
        "## detector training on CamVid train ({} frames)\n| seconds per epoch | target |\n|---|---|\n| {seconds:.1} | <= 120 |",
        summary.frames_per_epoch
    );
    if eval {
        evaluate(&model_dir, &dataset, tmp.path());
    }
}

/// AP50 (and AP at `IoU` 0.3) on `CamVid` val and road-animals.
fn evaluate(
    model_dir: &std::path::Path,
    dataset: &roadsynth_dataset::Dataset,
    tmp: &std::path::Path,
) {
    let mut predictor = Predictor::load(model_dir).expect("load model");
    let val = support::predict_split(&mut predictor, dataset, "val", None, |c| Some(c.into()));
    for class in ["car", "pedestrian", "bicyclist"] {
        println!(
            "CamVid val AP50 {class}: {:.3} (AP30 {:.3}, recall at IoU 0.5 {:.3})",
            support::ap50(&val, class).unwrap_or(f64::NAN),
            support::ap_at(&val, class, 0.3).unwrap_or(f64::NAN),
            support::max_recall(&val, class)
        );
    }
    if let Some(road_animals) = roadsynth_testkit::shared("datasets/road-animals") {
        let root = tmp.join("road-animals");
        let animals_set = support::ingest_coco(
            &root,
            &[support::Source::new(
                &road_animals.join("annotations.json"),
                "val",
            )],
        );
        let found = support::predict_split(&mut predictor, &animals_set, "val", None, |c| {
            Some(c.into())
        });
        println!(
            "road-animals AP50 animal: {:.3}",
            support::ap50(&found, "animal").unwrap_or(f64::NAN)
        );
    }
}

/// AP50 of the COCO model alone, through `roadsynth-models`' detector at evaluation thresholds.
fn zero_shot_reference(camvid: &roadsynth_dataset::Dataset, tmp: &std::path::Path) {
    use roadsynth_dataset::Projection;
    use roadsynth_models::{CocoDetector, DetectOptions};
    let path = roadsynth_detector::default_backbone_path();
    let mut detector = CocoDetector::load(&path)
        .expect("backbone")
        .with_options(DetectOptions {
            score_threshold: 0.01,
            nms_iou: 0.65,
            region_context: 0.0,
        });
    let rename = |coco: &str| match coco {
        "person" => Some("pedestrian"),
        "bicycle" => Some("bicyclist"),
        "car" => Some("car"),
        c if roadsynth_models::COCO_CLASSES[14..24].contains(&c) => Some("animal"),
        _ => None,
    };
    let mut run = |dataset: &roadsynth_dataset::Dataset, split: &str| {
        let mut out = Vec::new();
        for record in dataset.frames(split, Projection::Full).expect("split") {
            let record = record.expect("frame");
            let rgb = image::load_from_memory(record.image.as_deref().expect("bytes"))
                .expect("decode")
                .into_rgb8();
            let gts = record
                .annotations
                .iter()
                .map(|a| support::Gt {
                    class: a.class.clone(),
                    bbox: [a.bbox.x0, a.bbox.y0, a.bbox.x1, a.bbox.y1],
                    ignore: a.crowd || a.ignore,
                })
                .collect();
            let dets = detector
                .detect(&rgb)
                .expect("detect")
                .into_iter()
                .filter_map(|d| {
                    rename(d.class_name).map(|class| support::Det {
                        class: class.to_string(),
                        score: d.score,
                        bbox: d.bbox,
                    })
                })
                .collect();
            out.push((gts, dets));
        }
        out
    };
    let val = run(camvid, "val");
    for class in ["car", "pedestrian", "bicyclist"] {
        println!(
            "zero-shot CamVid val AP50 {class}: {:.3} (AP30 {:.3}, recall at IoU 0.5 {:.3})",
            support::ap50(&val, class).unwrap_or(f64::NAN),
            support::ap_at(&val, class, 0.3).unwrap_or(f64::NAN),
            support::max_recall(&val, class)
        );
    }
    if let Some(road_animals) = roadsynth_testkit::shared("datasets/road-animals") {
        let set = support::ingest_coco(
            &tmp.join("road-animals"),
            &[support::Source::new(
                &road_animals.join("annotations.json"),
                "val",
            )],
        );
        let found = run(&set, "val");
        println!(
            "zero-shot road-animals AP50 animal: {:.3}",
            support::ap50(&found, "animal").unwrap_or(f64::NAN)
        );
    }
}
