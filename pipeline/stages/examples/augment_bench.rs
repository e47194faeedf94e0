//! Throughput and memory of the augment stage on `CamVid` train, against the floor of decoding
//! and encoding the same frames.
//!
//! ```text
//! cargo run -p roadsynth-stages --example augment_bench [-- FRAMES...]
//! ```
//!
//! FRAMES defaults to 100, 367 (all of train) and 1101 (train three times over, see [`ingest`]).
//! With `AUGMENT_BENCH_DIR=D` the datasets stay in D, so that a child (`augment D/camvid-367
//! D/animals D/out`) can be run again under a profiler. `AUGMENT_BENCH_BLEND=feather` (or
//! `poisson`) measures another blend mode than the default `auto`.
//!
//! - floor: decode every frame's JPEG and encode it as PNG (what augment must do at least once
//!   per frame), on every core (rayon), images already in memory;
//! - augment: plan → composite (animals from a `COCO` asset bank) → fog → write, one variant per
//!   frame, the real frames kept, with the default flow options; and with the ingest of the same
//!   frames before it (each in its own process).
//!
//! Each measurement runs in its own process so that its peak RSS (`VmHWM`) is its own: augment
//! at 100 frames and at all of them shows whether memory grows with the dataset. Floor and augment
//! run `AUGMENT_BENCH_RUNS` times each (default 7: the floor's runs, a fraction of a second each,
//! varied by up to 25% on a 2-core machine); the fastest run counts.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use rayon::prelude::*;
use roadsynth_assets::{AssetBank, BuildOptions};
use roadsynth_dataset::{Dataset, DatasetWriter, WriteOptions};
use roadsynth_formats::{LoadOptions, coco, load_all};
use roadsynth_stages::{AugmentConfig, BlendMode, augment};
use roadsynth_types::FrameId;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const SCENARIO: &str = "
description: Animals on the road in fog (benchmark).
seed: 3
variants_per_frame: 1
splits: [train]
operations:
  - insert_objects:
      classes:
        - {name: deer, weight: 3}
        - {name: wild_boar, weight: 1}
        - cow
        - sheep
        - horse
        - {name: dog, weight: 0.5}
      label: animal
      count: [1, 2]
      distance_m: [5, 60]
      where: drivable
  - weather:
      fog:
        visibility_m: 300
        spatial_variation: 0.2
";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("floor") => child_floor(&args[1..]),
        Some("ingest") => child_ingest(&args[1..]),
        Some("augment") => child_augment(&args[1..]),
        _ => parent(&args),
    }
}

fn shared(rel: &str) -> Result<PathBuf> {
    let root = std::env::var_os("ROADSYNTH_SHARED")
        .map_or_else(|| PathBuf::from("../shared"), PathBuf::from);
    let path = root.join(rel);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found: set ROADSYNTH_SHARED (source scripts/env.sh)",
            path.display()
        )
        .into())
    }
}

/// Ingests a `COCO` file as `split` of a new dataset at `root`: all its frames once, or exactly
/// `limit` frames. Past the file's own frames it starts over, each pass a copy with its own frame ids: the JPEG gets bytes
/// after its end marker, which decoders ignore, so the pixels are the same (a bigger dataset for
/// memory measurements, not new content).
fn ingest(
    json: &Path,
    images: Option<&Path>,
    split: &str,
    limit: Option<usize>,
    root: &Path,
) -> Result<usize> {
    let mut writer = DatasetWriter::create(root, WriteOptions::default())?;
    let mut written = 0usize;
    for pass in 0u32.. {
        let mut scan = coco::scan(json, images, split)?;
        let left = match limit {
            Some(limit) => limit - written,
            None if pass == 0 => scan.frames.len(),
            None => 0,
        };
        if scan.frames.is_empty() || left == 0 {
            break;
        }
        scan.frames.truncate(left);
        written += scan.frames.len();
        if pass == 0 {
            for item in scan.quarantined {
                writer.quarantine(item);
            }
        }
        load_all(scan.frames, &LoadOptions::default(), 16, |r| match r {
            Ok(record) if pass == 0 => writer.write(&record),
            Ok(mut record) => {
                if let Some(image) = &mut record.image {
                    image.extend_from_slice(&pass.to_le_bytes());
                    record.frame.id = FrameId::from_image_bytes(image);
                }
                let name = Path::new(&record.frame.image_name).with_extension("");
                record.frame.image_name = format!("{}_copy{pass}.jpg", name.display());
                writer.write(&record)
            }
            Err(problems) => {
                for p in problems {
                    writer.quarantine(p);
                }
                Ok(())
            }
        })?;
    }
    writer.commit(serde_json::json!({"bench": "augment"}))?;
    Ok(written)
}

/// Peak resident memory of this process, KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Floor: decode each JPEG, encode it as PNG, on every core. Prints `frames seconds peak_kib`.
fn child_floor(args: &[String]) -> Result<()> {
    let [json, limit] = args else {
        return Err("floor JSON FRAMES".into());
    };
    let scan = coco::scan(Path::new(json), None, "train")?;
    // The same frames as the ingest (cycling past the file's own, as it does).
    let images: Vec<Vec<u8>> = scan
        .frames
        .iter()
        .cycle()
        .take(limit.parse()?)
        .map(|f| std::fs::read(&f.image_path))
        .collect::<std::io::Result<_>>()?;
    let started = Instant::now();
    let encoded: usize = images
        .par_iter()
        .map(|bytes| -> std::result::Result<usize, String> {
            let rgb = image::load_from_memory(bytes)
                .map_err(|e| e.to_string())?
                .to_rgb8();
            // As augment writes it: room for the whole frame, no reallocation.
            let mut png = Vec::with_capacity(rgb.as_raw().len() + rgb.as_raw().len() / 8);
            image::DynamicImage::ImageRgb8(rgb)
                .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                .map_err(|e| e.to_string())?;
            Ok(png.len())
        })
        .sum::<std::result::Result<usize, String>>()?;
    let secs = started.elapsed().as_secs_f64();
    assert!(encoded > 0);
    println!("{} {secs} {}", images.len(), peak_rss_kib());
    Ok(())
}

/// Ingest: the first FRAMES of `CamVid` train into a new dataset at DIR. Prints `frames seconds
/// peak_kib`.
fn child_ingest(args: &[String]) -> Result<()> {
    let [json, limit, dir] = args else {
        return Err("ingest JSON FRAMES DIR".into());
    };
    let started = Instant::now();
    let frames = ingest(
        Path::new(json),
        None,
        "train",
        Some(limit.parse()?),
        Path::new(dir),
    )?;
    let secs = started.elapsed().as_secs_f64();
    println!("{frames} {secs} {}", peak_rss_kib());
    Ok(())
}

/// Augment: plan, composite, fog and write every frame of the dataset at DIR into OUT. Prints
/// `frames seconds peak_kib`.
fn child_augment(args: &[String]) -> Result<()> {
    let [dir, assets, out] = args else {
        return Err("augment DIR ASSETS OUT".into());
    };
    let scenario = roadsynth_scenario::parse(Path::new("bench.yaml"), SCENARIO)
        .map_err(|e| format!("{e:?}"))?;
    let blend = match std::env::var("AUGMENT_BENCH_BLEND") {
        Ok(name) => BlendMode::parse(&name).ok_or_else(|| {
            format!(
                "AUGMENT_BENCH_BLEND={name}: not one of {:?}",
                BlendMode::NAMES
            )
        })?,
        Err(_) => BlendMode::default(),
    };
    let config = AugmentConfig {
        dataset: PathBuf::from(dir),
        output: PathBuf::from(out),
        assets: Some(PathBuf::from(assets)),
        blend,
        ..AugmentConfig::default()
    };
    let started = Instant::now();
    let summary = augment(&config, &scenario)?;
    let secs = started.elapsed().as_secs_f64();
    if summary.variants_written == 0 {
        return Err(format!("nothing generated: {summary:?}").into());
    }
    println!("{} {secs} {}", summary.frames_read, peak_rss_kib());
    Ok(())
}

/// Runs a child `runs` (at least 1) times: the fastest run's numbers, with the highest peak memory of all.
/// The machine's noise only ever slows a run down, so the fastest is the best estimate of the
/// work itself (floor and augment alike).
fn measure_best(args: impl Fn(usize) -> Vec<String>, runs: usize) -> Result<Vec<f64>> {
    let mut best: Option<Vec<f64>> = None;
    let mut peak = 0.0f64;
    for run in 0..runs {
        let args = args(run);
        let m = measure(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
        peak = peak.max(m[2]);
        if best.as_ref().is_none_or(|b| m[1] < b[1]) {
            best = Some(m);
        }
    }
    let mut best = best.ok_or("no run")?;
    best[2] = peak;
    Ok(best)
}

/// Runs this example as a child and parses its numbers.
fn measure(args: &[&str]) -> Result<Vec<f64>> {
    let out = Command::new(std::env::current_exe()?).args(args).output()?;
    if !out.status.success() {
        return Err(format!("{args:?} failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let text = String::from_utf8(out.stdout)?;
    let last = text.lines().last().ok_or("no output")?;
    Ok(last
        .split_whitespace()
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()?)
}

fn parent(args: &[String]) -> Result<()> {
    let camvid = shared("datasets/camvid")?;
    let coco_dir = shared("datasets/coco-animals-vehicles")?;
    let json = camvid.join("annotations_train.json");
    let json_s = json.to_str().ok_or("non-UTF-8 path")?;
    // AUGMENT_BENCH_DIR keeps the datasets, so a child can be run again under a profiler.
    let kept = std::env::var_os("AUGMENT_BENCH_DIR").map(PathBuf::from);
    let temp = tempfile::tempdir()?;
    let work_path = kept.as_deref().unwrap_or(temp.path());
    let cav = work_path.join("cav");
    ingest(
        &coco_dir.join("instances_subset.json"),
        Some(&coco_dir.join("images")),
        "train",
        None,
        &cav,
    )?;
    let classes = "bird,cat,dog,horse,sheep,cow,elephant,bear,zebra,giraffe";
    let (bank, _) = AssetBank::build(
        &Dataset::open(&cav)?,
        &BuildOptions {
            classes: classes.split(',').map(String::from).collect(),
            ..BuildOptions::default()
        },
    )?;
    let assets = work_path.join("animals");
    bank.write(&assets)?;
    let assets_s = assets.to_str().ok_or("non-UTF-8 path")?;

    let sizes: Vec<String> = if args.is_empty() {
        vec!["100".into(), "367".into(), "1101".into()]
    } else {
        args.to_vec()
    };
    let runs: usize = match std::env::var("AUGMENT_BENCH_RUNS") {
        Ok(v) => v.parse::<usize>()?.max(1),
        Err(_) => 7,
    };
    println!(
        "cores: {}; floor and augment: the fastest of {runs} runs each",
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    );
    for size in &sizes {
        let dir = work_path.join(format!("camvid-{size}"));
        let dir_s = dir.to_str().ok_or("non-UTF-8 path")?;
        let ingest = measure(&["ingest", json_s, size, dir_s])?;
        let floor = measure_best(|_| vec!["floor".into(), json_s.into(), size.clone()], runs)?;
        // Each run writes a new dataset of its own.
        let out = |run: usize| work_path.join(format!("out-{size}-{run}"));
        let aug = measure_best(
            |run| {
                vec![
                    "augment".into(),
                    dir_s.into(),
                    assets_s.into(),
                    out(run).display().to_string(),
                ]
            },
            runs,
        )?;
        for run in 0..runs {
            // Written only to be measured.
            let _ = std::fs::remove_dir_all(out(run));
        }
        let frames = floor[0];
        let floor_fps = frames / floor[1];
        let aug_fps = frames / aug[1];
        let e2e_fps = frames / (ingest[1] + aug[1]);
        println!(
            "{frames:>4} frames | floor (decode + PNG encode) {floor_fps:6.1} fps, peak {:>3} MiB \
             | augment (plan, composite, fog, write) {aug_fps:5.1} fps = {:.0}% of floor, peak {:>3} MiB \
             | with ingest {e2e_fps:5.1} fps = {:.0}% (ingest peak {:>3} MiB)",
            floor[2] as u64 / 1024,
            100.0 * aug_fps / floor_fps,
            aug[2] as u64 / 1024,
            100.0 * e2e_fps / floor_fps,
            ingest[2] as u64 / 1024,
        );
    }
    Ok(())
}
