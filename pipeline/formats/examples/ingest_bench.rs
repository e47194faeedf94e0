//! Ingest benchmarks (run by `scripts/bench.sh`; numbers, not assertions):
//!
//! 1. Ingest of `CamVid` train (367 JPEG frames + label PNGs) against the floor of copying the same
//!    files and hashing them. Target: ingest within 2x of the floor.
//! 2. Reading every annotation of a 10k-frame dataset without image bytes. Target: under 1 s.

use std::path::Path;
use std::time::{Duration, Instant};

use roadsynth_dataset::{Dataset, DatasetWriter, Projection, WriteOptions};
use roadsynth_formats::{LoadOptions, coco, load_all};
use roadsynth_types::FrameId;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ingest(json: &Path, out: &Path) -> u64 {
    let scan = coco::scan(json, None, "train").expect("scan");
    let mut w = DatasetWriter::create(
        out,
        WriteOptions {
            carry_other_splits: false,
            ..WriteOptions::default()
        },
    )
    .expect("writer");
    let mut frames = 0;
    load_all(scan.frames, &LoadOptions::default(), 64, |r| {
        w.write(&r.expect("CamVid loads cleanly"))
            .map(|()| frames += 1)
    })
    .expect("load");
    w.commit(serde_json::json!({"bench": true}))
        .expect("commit");
    frames
}

fn copy_and_hash(files: &[std::path::PathBuf], out: &Path) -> usize {
    std::fs::create_dir_all(out).expect("mkdir");
    let mut hashes = 0;
    for (i, f) in files.iter().enumerate() {
        let bytes = std::fs::read(f).expect("read");
        std::fs::write(out.join(format!("{i}")), &bytes).expect("write");
        hashes += usize::from(blake3::hash(&bytes).as_bytes()[0]);
    }
    hashes
}

fn main() {
    let Some(camvid) = roadsynth_testkit::shared("datasets/camvid") else {
        return;
    };
    let json = camvid.join("annotations_train.json");
    let scan = coco::scan(&json, None, "train").expect("scan");
    let files: Vec<_> = scan
        .frames
        .iter()
        .flat_map(|p| std::iter::once(p.image_path.clone()).chain(p.semantic_label_path.clone()))
        .collect();
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum();
    let tmp = tempfile::tempdir().expect("tempdir");

    let runs = 5;
    let mut floor = Vec::new();
    let mut ours = Vec::new();
    for run in 0..runs {
        let t = Instant::now();
        std::hint::black_box(copy_and_hash(
            &files,
            &tmp.path().join(format!("copy{run}")),
        ));
        floor.push(t.elapsed());
        let t = Instant::now();
        let n = ingest(&json, &tmp.path().join(format!("ds{run}")));
        ours.push(t.elapsed());
        assert_eq!(n, 367);
    }
    let (floor, ours) = (median(floor), median(ours));
    println!(
        "## ingest CamVid train: 367 frames, {} files, {:.1} MB",
        files.len(),
        bytes as f64 / 1e6
    );
    println!("| what | median of {runs} | ratio |");
    println!("|---|---|---|");
    println!(
        "| copy + BLAKE3 hash of the same files (floor) | {:.1} ms | 1.00 |",
        floor.as_secs_f64() * 1e3
    );
    println!(
        "| roadsynth ingest (scan, check, hash, write Parquet, commit) | {:.1} ms | {:.2} |",
        ours.as_secs_f64() * 1e3,
        ours.as_secs_f64() / floor.as_secs_f64()
    );

    // 10k frames: CamVid train's real frames and annotations, repeated, each with a distinct id.
    let source = Dataset::open(&tmp.path().join("ds0")).expect("open");
    let records: Vec<_> = source
        .all_frames(Projection::Full)
        .expect("read")
        .map(|r| r.expect("row"))
        .collect();
    let big = tmp.path().join("big");
    let mut w = DatasetWriter::create(&big, WriteOptions::default()).expect("writer");
    let target = 10_000;
    let mut annotations = 0;
    for i in 0..target {
        let mut r = records[i % records.len()].clone();
        r.frame.id = FrameId::from_stored(format!("{}{i:06}", &r.frame.id.as_str()[..26]));
        annotations += r.annotations.len();
        w.write(&r).expect("write");
    }
    let m = w
        .commit(serde_json::json!({"bench": true}))
        .expect("commit");
    let on_disk: u64 = m.files.iter().map(|f| f.bytes).sum();
    let ds = Dataset::open(&big).expect("open");
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let mut seen = 0;
        for r in ds.all_frames(Projection::WithoutImages).expect("read") {
            seen += r.expect("row").annotations.len();
        }
        times.push(t.elapsed());
        assert_eq!(seen, annotations);
    }
    let t = Instant::now();
    let full = ds.all_frames(Projection::Full).expect("read").count();
    let full_time = t.elapsed();
    println!();
    println!(
        "## read annotations of {target} frames ({annotations} annotations, {:.0} MB on disk)",
        on_disk as f64 / 1e6
    );
    println!("| projection | time |");
    println!("|---|---|");
    println!(
        "| without image bytes (median of {runs}) | {:.1} ms |",
        median(times).as_secs_f64() * 1e3
    );
    println!(
        "| full, image bytes included ({full} frames, once) | {:.1} ms |",
        full_time.as_secs_f64() * 1e3
    );
}
