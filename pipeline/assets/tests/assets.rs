//! The asset bank on the real COCO animals-and-vehicles subset: counts against the source JSON,
//! cut-outs against their masks, masks and occlusion against pycocotools, storage round trip and
//! determinism, skipping of bad annotations; plus the lighting and viewpoint measures on
//! synthetic patches whose answers are known.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use image::{GrayImage, Luma, Rgb, RgbImage};
use roadsynth_assets::mask::{BinaryMask, MaskError, PixelRect, rasterize};
use roadsynth_assets::{
    ASSETS_FILE, AssetBank, AssetError, BANK_FILE, BuildOptions, BuildReport, HeavierSide,
    Lighting, SkipReason, measure_lighting, measure_viewpoint,
};
use roadsynth_dataset::{Dataset, DatasetWriter, Projection, WriteOptions};
use roadsynth_formats::{LoadOptions, coco, load_all};
use roadsynth_testkit::{python_module, shared};
use roadsynth_types::{Annotation, BBox, FrameRecord, Mask, Origin, Rle, RleCounts};

const ANIMALS: [&str; 10] = [
    "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
];
const VEHICLES: [&str; 4] = ["car", "motorcycle", "bus", "truck"];

fn animals_and_vehicles() -> BuildOptions {
    BuildOptions {
        classes: ANIMALS
            .iter()
            .chain(&VEHICLES)
            .map(|c| (*c).to_string())
            .collect(),
        ..BuildOptions::default()
    }
}

/// The shared COCO subset ingested once into a dataset, and the bank built from it.
struct Fixture {
    source: PathBuf,
    dataset_dir: PathBuf,
    bank: AssetBank,
    report: BuildReport,
}

static FIXTURE: OnceLock<Option<Fixture>> = OnceLock::new();

/// Ingests COCO JSON + images into a fresh dataset at `out`, as `roadsynth ingest` does.
fn ingest(json: &Path, images: &Path, out: &Path) {
    let scan = coco::scan(json, Some(images), "train").expect("scan COCO");
    assert!(scan.quarantined.is_empty(), "{:#?}", scan.quarantined);
    let mut writer = DatasetWriter::create(out, WriteOptions::default()).expect("create dataset");
    let written: Result<(), String> = load_all(scan.frames, &LoadOptions::default(), 8, |r| {
        let record = r.map_err(|problems| format!("{problems:#?}"))?;
        writer.write(&record).map_err(|e| e.to_string())
    });
    written.expect("every frame loads");
    writer
        .commit(serde_json::json!({"test": "assets"}))
        .expect("commit");
}

fn fixture() -> Option<&'static Fixture> {
    FIXTURE
        .get_or_init(|| {
            let source = shared("datasets/coco-animals-vehicles")?;
            // Under the build folder, not /tmp: the fixture lives for the whole test binary and a
            // static is never dropped, so a TempDir would leak one copy per run.
            let dataset_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("assets-coco-subset");
            if dataset_dir.exists() {
                std::fs::remove_dir_all(&dataset_dir).expect("remove the previous fixture");
            }
            ingest(
                &source.join("instances_subset.json"),
                &source.join("images"),
                &dataset_dir,
            );
            let dataset = Dataset::open(&dataset_dir).expect("open dataset");
            let (bank, report) =
                AssetBank::build(&dataset, &animals_and_vehicles()).expect("build bank");
            Some(Fixture {
                source,
                dataset_dir,
                bank,
                report,
            })
        })
        .as_ref()
}

fn records(dataset_dir: &Path, projection: Projection) -> Vec<FrameRecord> {
    Dataset::open(dataset_dir)
        .expect("open dataset")
        .all_frames(projection)
        .expect("frames")
        .collect::<Result<_, _>>()
        .expect("read frames")
}

/// Non-crowd annotations with a segmentation per class, read straight from the COCO JSON.
fn expected_counts(json: &Path) -> BTreeMap<String, u64> {
    let text = std::fs::read(json).expect("read COCO JSON");
    let coco: serde_json::Value = serde_json::from_slice(&text).expect("parse COCO JSON");
    let names: HashMap<u64, &str> = coco["categories"]
        .as_array()
        .expect("categories")
        .iter()
        .map(|c| {
            (
                c["id"].as_u64().expect("id"),
                c["name"].as_str().expect("name"),
            )
        })
        .collect();
    let mut counts = BTreeMap::new();
    for a in coco["annotations"].as_array().expect("annotations") {
        let name = names[&a["category_id"].as_u64().expect("category_id")];
        let has_mask = a["segmentation"]
            .as_array()
            .is_none_or(|polygons| !polygons.is_empty());
        if a["iscrowd"].as_u64() == Some(0) && has_mask {
            *counts.entry(name.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

#[test]
fn counts_per_class_match_the_source_json() {
    let Some(fx) = fixture() else { return };
    println!("assets per class: {:?}", fx.report.assets_per_class);
    println!("skipped per reason: {:?}", fx.report.skipped_per_reason());
    let got = |group: &[&str]| -> u64 {
        group
            .iter()
            .map(|c| fx.report.assets_per_class.get(*c).copied().unwrap_or(0))
            .sum()
    };
    let (animals, vehicles) = (got(&ANIMALS), got(&VEHICLES));
    println!("animals {animals}, vehicles {vehicles}");
    assert_eq!((animals, vehicles), (166, 233));

    let expected = expected_counts(&fx.source.join("instances_subset.json"));
    for class in ANIMALS.iter().chain(&VEHICLES) {
        assert_eq!(
            fx.report.assets_per_class.get(*class),
            expected.get(*class),
            "{class}"
        );
        assert_eq!(
            fx.bank.of_class(class).count() as u64,
            expected[*class],
            "{class}"
        );
        assert!(fx.bank.of_class(class).all(|a| a.class == *class));
    }
    assert!(fx.report.skipped.is_empty(), "{:#?}", fx.report.skipped);
    assert_eq!(fx.report.candidates, 166 + 233);
    assert_eq!(fx.report.frames_read, 116);
    assert_eq!(fx.bank.len(), 166 + 233);
    assert_eq!(fx.bank.info().assets_per_class, fx.report.assets_per_class);
}

#[test]
fn cut_outs_are_their_masks_over_the_source_pixels() {
    let Some(fx) = fixture() else { return };
    let frames: HashMap<String, FrameRecord> = records(&fx.dataset_dir, Projection::Full)
        .into_iter()
        .map(|r| (r.frame.id.to_string(), r))
        .collect();
    let mut touching = 0;
    for asset in fx.bank.assets() {
        let record = &frames[asset.source_frame.as_str()];
        let annotation = &record.annotations[asset.source_annotation as usize];
        assert_eq!(annotation.class, asset.class);
        let mask = rasterize(
            annotation.mask.as_ref().expect("has a mask"),
            record.frame.width,
            record.frame.height,
        )
        .expect("rasterises");
        let rect = mask.bounds().expect("not empty");
        assert_eq!(
            (asset.source_x, asset.source_y, asset.width, asset.height),
            (rect.x0, rect.y0, rect.width(), rect.height()),
            "{}",
            asset.id
        );
        let source = image::load_from_memory(record.image.as_deref().expect("bytes"))
            .expect("decode source")
            .into_rgb8();
        let rgba = asset.rgba().expect("cut-out decodes");
        assert_eq!(rgba.dimensions(), (asset.width, asset.height));
        let mut alpha_area = 0;
        for (x, y, p) in rgba.enumerate_pixels() {
            let (sx, sy) = (asset.source_x + x, asset.source_y + y);
            let [r, g, b, a] = p.0;
            assert_eq!(a, if mask.get(sx, sy) { 255 } else { 0 }, "{}", asset.id);
            assert_eq!([r, g, b], source.get_pixel(sx, sy).0, "{}", asset.id);
            alpha_area += u64::from(a == 255);
        }
        assert_eq!(alpha_area, asset.mask_area_px, "{}", asset.id);
        assert_eq!(alpha_area, mask.area(), "{}", asset.id);
        assert!((asset.lighting.weight - alpha_area as f64).abs() < 1e-6);
        let touches = rect.x0 == 0
            || rect.y0 == 0
            || rect.x1 == record.frame.width
            || rect.y1 == record.frame.height;
        assert_eq!(asset.touches_border, touches, "{}", asset.id);
        touching += usize::from(touches);
        assert!((0.0..=1.0).contains(&asset.occluded_fraction));
        assert!(asset.viewpoint.elongation >= 1.0);
        assert!(
            (asset.viewpoint.aspect - f64::from(asset.width) / f64::from(asset.height)).abs()
                < 1e-12
        );
        assert_eq!(
            asset.id,
            roadsynth_assets::Asset::id_for(&asset.source_frame, asset.source_annotation)
        );
    }
    println!(
        "{touching} of {} assets touch the image border",
        fx.bank.len()
    );
    assert!(touching > 0 && touching < fx.bank.len());
    let ids: std::collections::HashSet<_> = fx.bank.assets().iter().map(|a| &a.id).collect();
    assert_eq!(ids.len(), fx.bank.len(), "ids are unique");
}

/// Row-major runs of a cut-out's alpha, starting with a run of zeros (the script's form).
fn alpha_runs(asset: &roadsynth_assets::Asset) -> Vec<u64> {
    let rgba = asset.rgba().expect("cut-out decodes");
    let mut runs = Vec::new();
    let (mut value, mut run) = (false, 0u64);
    for p in rgba.pixels() {
        let on = p.0[3] != 0;
        if on != value {
            runs.push(run);
            (value, run) = (on, 0);
        }
        run += 1;
    }
    runs.push(run);
    runs
}

#[test]
fn masks_and_occlusion_match_pycocotools() {
    let Some(fx) = fixture() else { return };
    if !python_module("pycocotools") {
        return;
    }
    let script = roadsynth_testkit::package_dir().join("tests/pycocotools_masks.py");
    let classes: Vec<&str> = ANIMALS.iter().chain(&VEHICLES).copied().collect();
    let output = std::process::Command::new("python3")
        .arg(&script)
        .arg(fx.source.join("instances_subset.json"))
        .arg(classes.join(","))
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reference: HashMap<String, serde_json::Value> =
        serde_json::from_slice(&output.stdout).expect("script prints JSON");
    assert_eq!(reference.len(), fx.bank.len());

    let coco_ids: HashMap<(String, u32), String> =
        records(&fx.dataset_dir, Projection::WithoutImages)
            .iter()
            .flat_map(|r| {
                r.annotations.iter().enumerate().map(|(i, a)| {
                    (
                        (r.frame.id.to_string(), i as u32),
                        a.attributes["coco_id"].to_string(),
                    )
                })
            })
            .collect();
    let mut worst_occlusion_difference: f64 = 0.0;
    for asset in fx.bank.assets() {
        let coco_id = &coco_ids[&(asset.source_frame.to_string(), asset.source_annotation)];
        let expected = &reference[coco_id];
        let x1 = asset.source_x + asset.width;
        let y1 = asset.source_y + asset.height;
        assert_eq!(
            expected["box"],
            serde_json::json!([asset.source_x, asset.source_y, x1, y1]),
            "annotation {coco_id}"
        );
        assert_eq!(expected["area"], serde_json::json!(asset.mask_area_px));
        assert_eq!(
            expected["runs"],
            serde_json::json!(alpha_runs(asset)),
            "annotation {coco_id}: mask pixels differ from pycocotools"
        );
        let occluded = expected["occluded"].as_f64().expect("occluded");
        worst_occlusion_difference =
            worst_occlusion_difference.max((occluded - asset.occluded_fraction).abs());
    }
    assert!(
        worst_occlusion_difference < 1e-12,
        "{worst_occlusion_difference}"
    );
    let occluded = fx
        .bank
        .assets()
        .iter()
        .filter(|a| a.occluded_fraction > 0.0)
        .count();
    println!(
        "{} masks equal pycocotools'; {occluded} assets have other masks in their box",
        fx.bank.len()
    );
    assert!(occluded > 0);
}

#[test]
fn write_then_open_gives_the_same_bank() {
    let Some(fx) = fixture() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let bank_dir = dir.path().join("bank");
    fx.bank.write(&bank_dir).expect("write bank");
    let opened = AssetBank::open(&bank_dir).expect("open bank");
    assert_eq!(opened, fx.bank);
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bank_dir.join(BANK_FILE)).expect("read bank.json"))
            .expect("bank.json is JSON");
    assert_eq!(info["assets"], serde_json::json!(166 + 233));
    assert_eq!(info["assets_per_class"]["zebra"], serde_json::json!(10));
    let dataset = Dataset::open(&fx.dataset_dir).expect("open dataset");
    assert_eq!(
        info["source_dataset_version"],
        serde_json::json!(dataset.manifest().version)
    );

    // Another reader sees the flat table the crate docs describe.
    if !python_module("pyarrow") {
        return;
    }
    let script = "import json, sys, pyarrow.parquet as pq\n\
                  t = pq.read_table(sys.argv[1])\n\
                  print(json.dumps({'columns': t.schema.names, 'rows': t.num_rows, \
                  'png': str(t.schema.field('rgba_png').type), \
                  'zebras': t.column('class').to_pylist().count('zebra')}))";
    let output = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(bank_dir.join(ASSETS_FILE))
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let columns = [
        "id",
        "class",
        "source_frame",
        "source_split",
        "source_image",
        "source_annotation",
        "source_x",
        "source_y",
        "source_width",
        "source_height",
        "width",
        "height",
        "mask_area_px",
        "touches_border",
        "occluded_fraction",
        "aspect",
        "axis_angle_deg",
        "elongation",
        "centroid_offset_x",
        "centroid_offset_y",
        "heavier_side",
        "lighting_weight",
        "l_mean",
        "a_mean",
        "b_mean",
        "l_std",
        "a_std",
        "b_std",
        "light_dx",
        "light_dy",
        "light_strength",
        "light_explained",
        "rgba_png",
    ];
    assert_eq!(read["columns"], serde_json::json!(columns.to_vec()));
    assert_eq!(read["rows"], serde_json::json!(166 + 233));
    assert_eq!(read["zebras"], serde_json::json!(10));
    assert!(
        read["png"].as_str().is_some_and(|t| t.contains("binary")),
        "{read}"
    );
}

#[test]
fn builds_are_byte_for_byte_deterministic() {
    let Some(fx) = fixture() else { return };
    let dataset = Dataset::open(&fx.dataset_dir).expect("open dataset");
    let (again, _) = AssetBank::build(&dataset, &animals_and_vehicles()).expect("build again");
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    fx.bank.write(&first).expect("write first");
    again.write(&second).expect("write second");
    for file in [ASSETS_FILE, BANK_FILE] {
        let a = std::fs::read(first.join(file)).expect("read first");
        let b = std::fs::read(second.join(file)).expect("read second");
        assert!(a == b, "{file} differs between two builds");
    }
}

#[test]
fn splits_and_classes_select_what_is_cut() {
    let Some(fx) = fixture() else { return };
    let dataset = Dataset::open(&fx.dataset_dir).expect("open dataset");
    let zebras = BuildOptions {
        classes: vec!["zebra".into()],
        splits: vec!["train".into()],
        ..BuildOptions::default()
    };
    let (bank, report) = AssetBank::build(&dataset, &zebras).expect("build zebras");
    assert_eq!(bank.len(), 10);
    assert!(bank.assets().iter().all(|a| a.class == "zebra"));
    let zebras_in_fixture: Vec<_> = fx.bank.of_class("zebra").cloned().collect();
    assert_eq!(bank.assets(), zebras_in_fixture.as_slice());
    assert_eq!(report.frames_read, 116);

    let big = BuildOptions {
        min_area_px: 5000,
        ..animals_and_vehicles()
    };
    let (bank, report) = AssetBank::build(&dataset, &big).expect("build big ones");
    let small = fx
        .bank
        .assets()
        .iter()
        .filter(|a| a.mask_area_px < 5000)
        .count();
    assert!(small > 0);
    assert_eq!(bank.len() + small, fx.bank.len());
    assert_eq!(
        report.skipped_per_reason()[&SkipReason::TooSmall],
        small as u64
    );

    let nowhere = BuildOptions {
        splits: vec!["nowhere".into()],
        ..BuildOptions::default()
    };
    let err = AssetBank::build(&dataset, &nowhere).expect_err("no such split");
    assert!(matches!(err, AssetError::Dataset { .. }), "{err}");
    assert!(err.to_string().contains("nowhere"), "{err}");
}

/// Two real frames, with annotations that cannot be cut added to the first.
#[test]
fn bad_annotations_are_skipped_with_their_reasons() {
    let Some(fx) = fixture() else { return };
    let mut frames: Vec<FrameRecord> = records(&fx.dataset_dir, Projection::Full)
        .into_iter()
        .filter(|r| r.annotations.iter().any(|a| a.class == "zebra"))
        .take(2)
        .collect();
    assert_eq!(frames.len(), 2);
    let zebras_before: usize = frames
        .iter()
        .map(|r| r.annotations.iter().filter(|a| a.class == "zebra").count())
        .sum();
    let (w, h) = (frames[0].frame.width, frames[0].frame.height);
    let zebra = |mask: Option<Mask>| Annotation {
        mask,
        ..Annotation::real("zebra", BBox::new(1.0, 1.0, 20.0, 20.0))
    };
    let rle = |size: [u32; 2], runs: Vec<u32>| {
        Some(Mask::Rle(Rle {
            size,
            counts: RleCounts::Runs(runs),
        }))
    };
    let bad = [
        (zebra(None), SkipReason::NoMask),
        (
            // A polygon of two points covers nothing.
            zebra(Some(Mask::Polygons(vec![vec![1.0, 1.0, 20.0, 20.0]]))),
            SkipReason::EmptyMask,
        ),
        (zebra(rle([h + 1, w], vec![h * w])), SkipReason::BadMask),
        (zebra(rle([h, w], vec![h * w, 5])), SkipReason::BadMask),
        (
            zebra(Some(Mask::Rle(Rle {
                size: [h, w],
                counts: RleCounts::Compressed("\u{1}\u{2}".into()),
            }))),
            SkipReason::BadMask,
        ),
        (
            Annotation {
                crowd: true,
                ..zebra(rle([h, w], vec![0, 100, h * w - 100]))
            },
            SkipReason::Crowd,
        ),
        (
            Annotation {
                origin: Origin::Generated {
                    operation: "insert_objects".into(),
                    scenario: "test".into(),
                    seed: 1,
                },
                ..zebra(rle([h, w], vec![0, 100, h * w - 100]))
            },
            SkipReason::Generated,
        ),
    ];
    let first_bad = frames[0].annotations.len();
    frames[0]
        .annotations
        .extend(bad.iter().map(|(a, _)| a.clone()));
    // The second frame's image is broken: all its zebras are skipped, the build goes on.
    frames[1].image = Some(b"this is not a JPEG".to_vec());

    let dir = tempfile::tempdir().expect("tempdir");
    let mut writer =
        DatasetWriter::create(dir.path(), WriteOptions::default()).expect("create dataset");
    for record in &frames {
        writer.write(record).expect("write frame");
    }
    writer.commit(serde_json::json!({})).expect("commit");
    let dataset = Dataset::open(dir.path()).expect("open dataset");
    let zebras = BuildOptions {
        classes: vec!["zebra".into()],
        ..BuildOptions::default()
    };
    let (bank, report) = AssetBank::build(&dataset, &zebras).expect("build");
    for s in &report.skipped {
        println!("skipped: {s}");
    }
    let zebras_in_second = frames[1]
        .annotations
        .iter()
        .filter(|a| a.class == "zebra")
        .count();
    assert_eq!(bank.len(), zebras_before - zebras_in_second);
    assert_eq!(bank.len() as u64, report.assets());
    let mut expected: Vec<(String, u32, SkipReason)> = bad
        .iter()
        .enumerate()
        .map(|(i, (_, reason))| {
            (
                frames[0].frame.id.to_string(),
                (first_bad + i) as u32,
                *reason,
            )
        })
        .collect();
    expected.extend(
        frames[1]
            .annotations
            .iter()
            .enumerate()
            .filter(|(_, a)| a.class == "zebra")
            .map(|(i, _)| {
                (
                    frames[1].frame.id.to_string(),
                    i as u32,
                    SkipReason::BadImage,
                )
            }),
    );
    let got: Vec<(String, u32, SkipReason)> = report
        .skipped
        .iter()
        .map(|s| (s.frame.to_string(), s.annotation, s.reason))
        .collect();
    assert_eq!(got, expected);
    assert!(
        report
            .skipped
            .iter()
            .filter(|s| s.reason == SkipReason::BadMask)
            .all(|s| !s.detail.is_empty())
    );
    assert_eq!(report.candidates, bank.len() as u64 + expected.len() as u64);

    // The generated one is cut when asked for.
    let with_generated = BuildOptions {
        include_generated: true,
        ..zebras
    };
    let (bank_with, _) = AssetBank::build(&dataset, &with_generated).expect("build");
    assert_eq!(bank_with.len(), bank.len() + 1);
    let generated = bank_with
        .assets()
        .iter()
        .find(|a| a.source_annotation as usize == first_bad + 6)
        .expect("the generated zebra");
    assert_eq!(generated.mask_area_px, 100);
    assert_eq!(
        (generated.source_x, generated.width, generated.height),
        (0, 1, 100)
    );
}

#[test]
fn broken_banks_are_errors_naming_the_file() {
    let Some(fx) = fixture() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing");
    match AssetBank::open(&missing) {
        Err(AssetError::Io { path, .. }) => assert_eq!(path, missing.join(BANK_FILE)),
        other => panic!("expected an I/O error, got {other:?}"),
    }

    let bank_dir = dir.path().join("bank");
    fx.bank.write(&bank_dir).expect("write bank");
    let info_path = bank_dir.join(BANK_FILE);
    let info = std::fs::read_to_string(&info_path).expect("read bank.json");

    std::fs::write(&info_path, "{ not json").expect("write");
    assert!(matches!(
        AssetBank::open(&bank_dir),
        Err(AssetError::BankJson { path, .. }) if path == info_path
    ));

    let newer = info.replace("\"format_version\": 1", "\"format_version\": 99");
    assert_ne!(newer, info);
    std::fs::write(&info_path, newer).expect("write");
    assert!(matches!(
        AssetBank::open(&bank_dir),
        Err(AssetError::FormatTooNew { found: 99, .. })
    ));

    let miscounted = info.replace("\"assets\": 399", "\"assets\": 398");
    assert_ne!(miscounted, info);
    std::fs::write(&info_path, miscounted).expect("write");
    let table_path = bank_dir.join(ASSETS_FILE);
    assert!(matches!(
        AssetBank::open(&bank_dir),
        Err(AssetError::Corrupt { path, .. }) if path == table_path
    ));

    std::fs::write(&info_path, &info).expect("write");
    std::fs::write(&table_path, b"PAR1 truncated").expect("write");
    let err = AssetBank::open(&bank_dir).expect_err("not parquet");
    assert!(matches!(&err, AssetError::Table { path, .. } if *path == table_path));
    assert!(err.to_string().contains(ASSETS_FILE), "{err}");

    let mut broken = fx.bank.assets()[0].clone();
    broken.rgba_png.truncate(20);
    assert!(matches!(broken.rgba(), Err(AssetError::Png { id, .. }) if id == broken.id));
}

fn patch(width: u32, height: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| Rgb(f(x, y)))
}

fn full(width: u32, height: u32) -> GrayImage {
    GrayImage::from_pixel(width, height, Luma([255]))
}

#[test]
fn grey_has_no_chroma_and_brighter_has_higher_lightness() {
    let grey = measure_lighting(&patch(16, 16, |_, _| [128, 128, 128]), &full(16, 16));
    assert!(
        grey.a_mean.abs() < 1e-3 && grey.b_mean.abs() < 1e-3,
        "{grey:?}"
    );
    assert!(grey.l_std < 1e-9 && grey.a_std < 1e-9 && grey.b_std < 1e-9);
    assert!((grey.weight - 256.0).abs() < 1e-12);
    // sRGB 128 is linear 0.2158, CIE L* 53.59.
    assert!((grey.l_mean - 53.585).abs() < 0.01, "{}", grey.l_mean);
    assert!(grey.light_strength.abs() < 1e-9 && grey.light_dx == 0.0 && grey.light_dy == 0.0);

    let brighter = measure_lighting(&patch(16, 16, |_, _| [180, 180, 180]), &full(16, 16));
    assert!(brighter.l_mean > grey.l_mean + 10.0, "{brighter:?}");
    let white = measure_lighting(&patch(2, 2, |_, _| [255, 255, 255]), &full(2, 2));
    assert!((white.l_mean - 100.0).abs() < 0.01, "{white:?}");

    let red = measure_lighting(&patch(4, 4, |_, _| [200, 30, 30]), &full(4, 4));
    assert!(red.a_mean > 40.0, "red has positive a*: {red:?}");
}

#[test]
fn weights_choose_and_scale_the_measured_pixels() {
    // Left half grey, right half red; only the left half is weighted.
    let image = patch(
        8,
        4,
        |x, _| if x < 4 { [100, 100, 100] } else { [220, 0, 0] },
    );
    let left = GrayImage::from_fn(8, 4, |x, _| Luma([if x < 4 { 255 } else { 0 }]));
    let only_grey = measure_lighting(&image, &left);
    let grey = measure_lighting(&patch(4, 4, |_, _| [100, 100, 100]), &full(4, 4));
    assert!((only_grey.l_mean - grey.l_mean).abs() < 1e-9);
    assert!(only_grey.a_mean.abs() < 1e-3);
    assert!((only_grey.weight - 16.0).abs() < 1e-12);
    // Half weight everywhere: same means, half the weight.
    let half = measure_lighting(&image, &GrayImage::from_pixel(8, 4, Luma([128])));
    let all = measure_lighting(&image, &full(8, 4));
    assert!((half.l_mean - all.l_mean).abs() < 1e-9);
    assert!((half.weight - 32.0 * 128.0 / 255.0).abs() < 1e-9);
    assert_eq!(
        measure_lighting(&image, &GrayImage::new(8, 4)),
        Lighting::default()
    );
}

#[test]
fn light_direction_points_to_the_bright_side() {
    let n = 32;
    // Brighter to the right, then brighter towards the bottom-left.
    let right = measure_lighting(&patch(n, n, |x, _| [(60 + 4 * x) as u8; 3]), &full(n, n));
    assert!(
        right.light_dx > 0.999 && right.light_dy.abs() < 0.01,
        "{right:?}"
    );
    assert!(right.light_explained > 0.98, "{right:?}");
    assert!(right.light_strength > 20.0, "{right:?}");
    let bottom_left = measure_lighting(
        &patch(n, n, |x, y| [(100 + 2 * y - 2 * x) as u8 + 60; 3]),
        &full(n, n),
    );
    let diagonal = std::f64::consts::FRAC_1_SQRT_2;
    assert!(
        (bottom_left.light_dx + diagonal).abs() < 0.01
            && (bottom_left.light_dy - diagonal).abs() < 0.01,
        "{bottom_left:?}"
    );
    // A stronger ramp over the same region is a stronger light.
    let weak = measure_lighting(&patch(n, n, |x, _| [(100 + x) as u8; 3]), &full(n, n));
    assert!(right.light_strength > 2.0 * weak.light_strength);
    // Texture without a ramp explains little.
    let checker = measure_lighting(
        &patch(
            n,
            n,
            |x, y| if (x + y) % 2 == 0 { [40; 3] } else { [200; 3] },
        ),
        &full(n, n),
    );
    assert!(checker.light_explained < 0.01, "{checker:?}");
}

/// A filled ellipse with semi-axes `major` and `minor` turned by `degrees` (clockwise on screen).
fn ellipse(size: u32, major: f64, minor: f64, degrees: f64) -> GrayImage {
    let (sin, cos) = degrees.to_radians().sin_cos();
    let centre = f64::from(size) / 2.0;
    GrayImage::from_fn(size, size, |x, y| {
        let (dx, dy) = (f64::from(x) + 0.5 - centre, f64::from(y) + 0.5 - centre);
        let (along, across) = (cos * dx + sin * dy, -sin * dx + cos * dy);
        let inside = (along / major).powi(2) + (across / minor).powi(2) <= 1.0;
        Luma([if inside { 255 } else { 0 }])
    })
}

#[test]
fn viewpoint_measures_axis_elongation_and_lean() {
    let tilted = measure_viewpoint(&ellipse(200, 60.0, 20.0, 30.0));
    assert!((tilted.axis_angle_deg - 30.0).abs() < 1.0, "{tilted:?}");
    assert!((tilted.elongation - 3.0).abs() < 0.1, "{tilted:?}");
    assert_eq!(tilted.heavier_side, HeavierSide::Balanced);
    let steep = measure_viewpoint(&ellipse(200, 60.0, 20.0, -75.0));
    assert!((steep.axis_angle_deg + 75.0).abs() < 1.0, "{steep:?}");
    let wide = measure_viewpoint(&ellipse(200, 80.0, 20.0, 0.0));
    assert!((wide.aspect - 4.0).abs() < 0.1, "{wide:?}");
    assert!(wide.axis_angle_deg.abs() < 0.5);

    // A right triangle with its tall side on the left: the mass leans left, and low.
    let triangle = GrayImage::from_fn(60, 40, |x, y| {
        Luma([if x * 40 <= y * 60 { 255 } else { 0 }])
    });
    let lean = measure_viewpoint(&triangle);
    assert_eq!(lean.heavier_side, HeavierSide::Left, "{lean:?}");
    assert!(
        lean.centroid_offset_x < -0.1 && lean.centroid_offset_y > 0.1,
        "{lean:?}"
    );
    let mirrored = image::imageops::flip_horizontal(&triangle);
    let flipped = measure_viewpoint(&mirrored);
    assert_eq!(flipped.heavier_side, lean.heavier_side.mirrored());
    assert!((flipped.centroid_offset_x + lean.centroid_offset_x).abs() < 1e-9);
}

#[test]
fn rasterisation_follows_pycocotools_conventions() {
    // pycocotools: frPyObjects of the square (2,1)-(6,4) on an 8x6 image is the 4x3 block.
    let square = Mask::Polygons(vec![vec![2.0, 1.0, 6.0, 1.0, 6.0, 4.0, 2.0, 4.0]]);
    let m = rasterize(&square, 8, 6).expect("rasterises");
    assert_eq!(m.area(), 12);
    assert_eq!(
        m.bounds(),
        Some(PixelRect {
            x0: 2,
            y0: 1,
            x1: 6,
            y1: 4
        })
    );
    // Two polygons are merged by union, as annToRLE merges frPyObjects' RLEs.
    let two = Mask::Polygons(vec![
        vec![2.0, 1.0, 6.0, 1.0, 6.0, 4.0, 2.0, 4.0],
        vec![4.0, 1.0, 8.0, 1.0, 8.0, 4.0, 4.0, 4.0],
    ]);
    assert_eq!(rasterize(&two, 8, 6).expect("rasterises").area(), 18);
    // COCO RLE is column-major: runs 1 off, 2 on on a 3 wide, 2 high image set (0,1) and (1,0).
    let rle = Mask::Rle(Rle {
        size: [2, 3],
        counts: RleCounts::Runs(vec![1, 2, 3]),
    });
    let m = rasterize(&rle, 3, 2).expect("decodes");
    assert_eq!(m.as_raw(), &[0, 1, 0, 1, 0, 0]);
    assert!(m.get(1, 0) && m.get(0, 1) && !m.get(0, 0));
    assert!(matches!(
        rasterize(&rle, 2, 3),
        Err(MaskError::SizeMismatch { .. })
    ));
    let mut union = BinaryMask::new(3, 2);
    union.union_with(&m);
    assert_eq!(union, m);
    assert_eq!(BinaryMask::new(3, 2).bounds(), None);
}
