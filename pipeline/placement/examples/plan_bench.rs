//! Planning benchmark (run by `scripts/bench.sh`): `insert_objects` of `animals-on-roads.yaml` over
//! 10k `CamVid`-based frames with ground masks cached. Target: under 10 s on 2 cores.

use std::time::Instant;

use roadsynth_dataset::{Dataset, DatasetWriter, Projection, WriteOptions};
use roadsynth_formats::{LoadOptions, coco, load_all};
use roadsynth_placement::{PlanOptions, plan_dataset};
use roadsynth_types::FrameId;

fn main() {
    let Some(camvid) = roadsynth_testkit::shared("datasets/camvid") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let source = tmp.path().join("camvid");
    let scan = coco::scan(&camvid.join("annotations_train.json"), None, "train").expect("scan");
    let mut w = DatasetWriter::create(&source, WriteOptions::default()).expect("writer");
    load_all(scan.frames, &LoadOptions::default(), 64, |r| {
        w.write(&r.expect("loads"))
    })
    .expect("load");
    w.commit(serde_json::json!({"bench": true}))
        .expect("commit");
    let records: Vec<_> = Dataset::open(&source)
        .expect("open")
        .all_frames(Projection::SemanticLabelsOnly)
        .expect("read")
        .map(|r| r.expect("row"))
        .collect();

    // 10k frames: CamVid's real labels and boxes, each copy with its own id (and so its own seeds).
    let big = tmp.path().join("big");
    let mut w = DatasetWriter::create(&big, WriteOptions::default()).expect("writer");
    for i in 0..10_000 {
        let mut r = records[i % records.len()].clone();
        r.frame.id = FrameId::from_stored(format!("{}{i:06}", &r.frame.id.as_str()[..26]));
        w.write(&r).expect("write");
    }
    w.commit(serde_json::json!({"bench": true}))
        .expect("commit");

    let scenario_path = roadsynth_testkit::repo_root().join("scenarios/animals-on-roads.yaml");
    let scenario = roadsynth_scenario::load(&scenario_path).expect("scenario");
    let t = Instant::now();
    let (_, first) = plan_dataset(&big, &scenario, &PlanOptions::default(), None).expect("plan");
    let cold = t.elapsed();
    let t = Instant::now();
    let (rows, warm) = plan_dataset(&big, &scenario, &PlanOptions::default(), None).expect("plan");
    let cached = t.elapsed();
    assert_eq!(warm.cached_masks, 10_000);
    println!(
        "## plan animals-on-roads over 10000 CamVid-based frames ({} objects, 2 variants)",
        rows.len()
    );
    println!("| run | time |");
    println!("|---|---|");
    println!(
        "| masks computed from labels and cached ({} frames) | {:.2} s |",
        first.frames,
        cold.as_secs_f64()
    );
    println!(
        "| masks cached (the target case) | {:.2} s |",
        cached.as_secs_f64()
    );
}
