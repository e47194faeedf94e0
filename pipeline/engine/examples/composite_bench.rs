//! Compositing time per insertion on a 480x360 `CamVid` frame, one thread.
//!
//! `cargo run -p roadsynth-engine --example composite_bench` (the dev profile: dependencies at
//! opt-level 3, this crate at 1). Needs the shared data (`../shared` or `$ROADSYNTH_SHARED`):
//! COCO cut-outs from `datasets/coco-animals-vehicles`, a frame of `datasets/camvid`.
//!
//! Each insertion is one `InsertionEngine::insert` call with one plan row: context measurement,
//! cut-out choice, resampling, blur and noise matching, harmonisation, blending (Poisson measured
//! against feathering under `auto`), shadow, composition, tight box and mask. The target is
//! under 20 ms per insertion.

use std::sync::Arc;
use std::time::Instant;

use roadsynth_assets::{AssetBank, BuildOptions};
use roadsynth_dataset::{Dataset, DatasetWriter, WriteOptions};
use roadsynth_engine::{
    BlendMode, ExemplarCompositor, ExemplarConfig, ExemplarLibrary, FrameInput, InsertBackend,
    InsertConfig, InsertionEngine, NaiveConfig, NaivePaste,
};
use roadsynth_formats::{LoadOptions, coco, load_all};
use roadsynth_placement::PlanRow;
use roadsynth_types::FrameRecord;

fn load(scan: roadsynth_formats::Scan) -> Vec<FrameRecord> {
    let mut records = Vec::new();
    let sunk: Result<(), String> = load_all(scan.frames, &LoadOptions::default(), 32, |r| {
        records.push(r.map_err(|q| format!("{q:?}"))?);
        Ok(())
    });
    if let Err(e) = sunk {
        eprintln!("loading failed: {e}");
        std::process::exit(1);
    }
    records
}

fn row(index: u32, x: f64, foot: f64, height: f64, aspect: f64) -> PlanRow {
    let w = height * aspect;
    PlanRow {
        frame_id: "bench".into(),
        variant: 0,
        object_index: index,
        operation: "insert_objects".into(),
        scenario: "bench".into(),
        class: "deer".into(),
        label: "animal".into(),
        x0: x - w / 2.0,
        y0: foot - height,
        x1: x + w / 2.0,
        y1: foot,
        foot_u: x,
        foot_v: foot,
        depth_m: Some(20.0),
        height_m: 1.0,
        length_m: 1.6,
        width_m: 0.4,
        yaw_deg: 0.0,
        truncated: 0.0,
        model: "geometry".into(),
        geometry: "bench".into(),
        mask_source: "bench".into(),
        seed: 42,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(coco_dir) = roadsynth_testkit::shared("datasets/coco-animals-vehicles") else {
        return Ok(());
    };
    let Some(camvid) = roadsynth_testkit::shared("datasets/camvid") else {
        return Ok(());
    };
    opencv::core::set_num_threads(1)?;
    let work = tempfile::tempdir()?;
    let scan = coco::scan(
        &coco_dir.join("instances_subset.json"),
        Some(&coco_dir.join("images")),
        "train",
    )?;
    let mut writer = DatasetWriter::create(work.path(), WriteOptions::default())?;
    for r in load(scan) {
        writer.write(&r)?;
    }
    writer.commit(serde_json::json!({"bench": "composite"}))?;
    let options = BuildOptions {
        classes: ["horse", "sheep", "cow", "dog", "bear"]
            .iter()
            .map(|c| (*c).to_string())
            .collect(),
        min_area_px: 400,
        ..BuildOptions::default()
    };
    let (bank, _) = AssetBank::build(&Dataset::open(work.path())?, &options)?;
    let library = Arc::new(ExemplarLibrary::from_bank(&bank, None)?);

    let frames = load(coco::scan(
        &camvid.join("annotations_train.json"),
        None,
        "train",
    )?);
    let record = &frames[0];
    let image = image::load_from_memory(record.image.as_deref().unwrap_or_default())?.to_rgb8();
    let labels = record
        .semantic_label
        .as_deref()
        .map(image::load_from_memory)
        .transpose()?
        .map(|l| l.to_luma8());
    assert_eq!(image.dimensions(), (480, 360), "a 480x360 CamVid frame");
    let frame = FrameInput::new(&image, &record.annotations).with_semantic(labels.as_ref());

    // Insertions from far (small) to near (large), where no existing object stands (one hidden
    // behind a car is rendered in full and then dropped, which would blur the number).
    let rows: Vec<PlanRow> = (0..400u32)
        .map(|i| {
            let t = f64::from(i % 24) / 23.0;
            row(
                0,
                40.0 + 400.0 * ((f64::from(i) * 0.37).fract()),
                220.0 + 120.0 * t,
                16.0 + 50.0 * t,
                1.2 + 0.4 * ((f64::from(i) * 0.61).fract()),
            )
        })
        .filter(|r| {
            let b = roadsynth_types::BBox::new(r.x0, r.y0, r.x1, r.y1);
            record
                .annotations
                .iter()
                .all(|a| a.bbox.intersection(&b) <= 0.0)
        })
        .take(24)
        .enumerate()
        .map(|(i, mut r)| {
            r.object_index = i as u32;
            r
        })
        .collect();

    let mut feather = ExemplarConfig::standard();
    feather.blend = BlendMode::Feather;
    let engines: Vec<(&str, InsertBackend)> = vec![
        (
            "exemplar (blend auto)",
            InsertBackend::Exemplar(ExemplarCompositor::new(
                library.clone(),
                ExemplarConfig::standard(),
            )?),
        ),
        (
            "exemplar (blend feather)",
            InsertBackend::Exemplar(ExemplarCompositor::new(library.clone(), feather)?),
        ),
        (
            "naive paste",
            InsertBackend::Naive(NaivePaste::new(library.clone(), NaiveConfig::default())?),
        ),
    ];
    let rounds = 5;
    for (name, backend) in engines {
        let mut engine = InsertionEngine::new(backend, InsertConfig::default())?;
        // Warm-up: first-use allocations and OpenCV's lazy initialisation.
        for r in &rows {
            let o = engine.insert(frame, std::slice::from_ref(r))?;
            if o.kept == 0 {
                eprintln!(
                    "{name}: object {} not rendered: {:?}",
                    r.object_index, o.reports[0].reason
                );
            }
        }
        let mut kept = 0;
        let started = Instant::now();
        for _ in 0..rounds {
            for r in &rows {
                kept += engine.insert(frame, std::slice::from_ref(r))?.kept;
            }
        }
        let n = rounds * rows.len();
        let total_ms = started.elapsed().as_secs_f64() * 1000.0;
        println!(
            "{name}: {:.2} ms per insertion ({n} planned insertions of 16-66 px tall objects, {kept} rendered: {:.2} ms per rendered one; 1 thread, 480x360)",
            total_ms / n as f64,
            total_ms / kept.max(1) as f64,
        );
    }
    Ok(())
}
