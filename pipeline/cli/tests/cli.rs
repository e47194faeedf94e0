//! End-to-end tests of the `roadsynth` command on the shared real data.

use std::path::Path;
use std::process::{Command, Output};

fn roadsynth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_roadsynth"))
        .args(args)
        .output()
        .expect("run roadsynth")
}

fn ok(args: &[&str]) -> String {
    let out = roadsynth(args);
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

fn stats(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(&[
        "dataset",
        "stats",
        dir.to_str().expect("utf8"),
        "--json",
    ]))
    .expect("json")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

#[test]
fn ingest_kitti_and_report_stats() {
    let Some(kitti) = roadsynth_testkit::shared("datasets/kitti-object") else {
        return;
    };
    let out = tempfile::tempdir().expect("tempdir");
    let ds = out.path().join("kitti");
    ok(&[
        "ingest",
        "--format",
        "kitti",
        "--input",
        s(&kitti),
        "--output",
        s(&ds),
    ]);
    let st = stats(&ds);
    assert_eq!(st["frames"], 18);
    assert_eq!(st["quarantined"], 0);
    let expected = serde_json::json!({"Car": 65, "Pedestrian": 22, "Cyclist": 12, "Van": 2, "Truck": 1, "Misc": 1, "DontCare": 37});
    assert_eq!(st["annotations"], expected);
}

#[test]
fn ingest_camvid_splits_into_one_dataset_and_read_it_from_pyarrow() {
    let Some(camvid) = roadsynth_testkit::shared("datasets/camvid") else {
        return;
    };
    let out = tempfile::tempdir().expect("tempdir");
    let ds = out.path().join("camvid");
    ok(&[
        "ingest",
        "--format",
        "coco",
        "--input",
        s(&camvid.join("annotations_train.json")),
        "--output",
        s(&ds),
        "--split",
        "train",
    ]);
    ok(&[
        "ingest",
        "--format",
        "coco",
        "--input",
        s(&camvid.join("annotations_val.json")),
        "--output",
        s(&ds),
        "--split",
        "val",
    ]);
    let st = stats(&ds);
    assert_eq!(st["frames"], 468);
    assert_eq!(st["splits"]["train"]["frames"], 367);
    assert_eq!(st["splits"]["train"]["annotations"], 2811);
    assert_eq!(st["splits"]["val"]["frames"], 101);
    assert_eq!(st["splits"]["val"]["annotations"], 615);

    if !roadsynth_testkit::python_module("pyarrow") {
        return;
    }
    let current = std::fs::read_to_string(ds.join("CURRENT")).expect("CURRENT");
    let frames = ds.join("versions").join(current.trim()).join("frames");
    let script = r#"
import sys, json, pyarrow.dataset as ds
t = ds.dataset(sys.argv[1], format="parquet", partitioning="hive")
sub = t.to_table(columns=["frame_id", "split", "annotations", "semantic_label"])
splits = sub.column("split").to_pylist()
print(json.dumps({"rows": sub.num_rows, "train": splits.count("train"),
                  "boxes": sum(len(a) for a in sub.column("annotations").to_pylist()),
                  "labels": sum(1 for b in sub.column("semantic_label").to_pylist() if b and b[:4] == b"\x89PNG")}))
"#;
    let out = Command::new("python3")
        .args(["-c", script, s(&frames)])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        got,
        serde_json::json!({"rows": 468, "train": 367, "boxes": 3426, "labels": 468})
    );
}

#[test]
fn ingest_with_bad_items_quarantines_them_and_exits_2() {
    let Some(kitti) = roadsynth_testkit::shared("datasets/kitti-object") else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let input = work.path().join("kitti");
    for sub in ["image_2", "label_2", "calib"] {
        std::fs::create_dir_all(input.join(sub)).expect("mkdir");
    }
    for id in ["000000", "000001", "000002"] {
        std::fs::copy(
            kitti.join(format!("image_2/{id}.png")),
            input.join(format!("image_2/{id}.png")),
        )
        .expect("copy");
        std::fs::copy(
            kitti.join(format!("label_2/{id}.txt")),
            input.join(format!("label_2/{id}.txt")),
        )
        .expect("copy");
        std::fs::copy(
            kitti.join(format!("calib/{id}.txt")),
            input.join(format!("calib/{id}.txt")),
        )
        .expect("copy");
    }
    // 000001: a label line with 14 fields; 000002: a truncated PNG.
    std::fs::write(
        input.join("label_2/000001.txt"),
        "Car 0.00 0 -1.5 100 100 200 200 1.5 1.6 3.9 1.0 1.6 20.0\n",
    )
    .expect("write");
    let png = std::fs::read(input.join("image_2/000002.png")).expect("read");
    std::fs::write(input.join("image_2/000002.png"), &png[..png.len() / 2]).expect("write");

    let ds = work.path().join("ds");
    let out = roadsynth(&[
        "ingest",
        "--format",
        "kitti",
        "--input",
        s(&input),
        "--output",
        s(&ds),
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ingested 1 frames") && stdout.contains("2 quarantined"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("000001.txt:1"),
        "names the file and line: {stderr}"
    );
    assert!(stderr.contains("000002.png"), "names the image: {stderr}");
    let st = stats(&ds);
    assert_eq!(
        (st["frames"].as_u64(), st["quarantined"].as_u64()),
        (Some(1), Some(2))
    );
    let listing = ok(&["dataset", "quarantine", s(&ds)]);
    assert_eq!(listing.lines().count(), 2, "{listing}");
}

#[test]
fn export_coco_and_yolo_from_the_command_line() {
    let Some(camvid) = roadsynth_testkit::shared("datasets/camvid") else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let ds = work.path().join("camvid");
    ok(&[
        "ingest",
        "--format",
        "coco",
        "--input",
        s(&camvid.join("annotations_val.json")),
        "--output",
        s(&ds),
        "--split",
        "val",
    ]);
    let coco = work.path().join("coco");
    ok(&[
        "dataset",
        "export",
        s(&ds),
        "--format",
        "coco",
        "--output",
        s(&coco),
    ]);
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(coco.join("annotations.json")).expect("annotations.json"),
    )
    .expect("json");
    assert_eq!(json["images"].as_array().map(Vec::len), Some(101));
    assert_eq!(json["annotations"].as_array().map(Vec::len), Some(615));
    // The COCO export ingests back to the same frames, semantic labels included.
    let again = work.path().join("again");
    ok(&[
        "ingest",
        "--format",
        "coco",
        "--input",
        s(&coco.join("annotations.json")),
        "--output",
        s(&again),
        "--split",
        "val",
    ]);
    let st = stats(&again);
    assert_eq!(
        (st["frames"].as_u64(), st["quarantined"].as_u64()),
        (Some(101), Some(0))
    );
    assert_eq!(st["splits"]["val"]["annotations"], 615);
    let yolo = work.path().join("yolo");
    ok(&[
        "dataset",
        "export",
        s(&ds),
        "--format",
        "yolo",
        "--output",
        s(&yolo),
    ]);
    assert!(yolo.join("data.yaml").is_file());
    // The YOLO export ingests back to the same frames.
    let back = work.path().join("back");
    ok(&[
        "ingest",
        "--format",
        "yolo",
        "--input",
        s(&yolo.join("data.yaml")),
        "--output",
        s(&back),
    ]);
    let st = stats(&back);
    assert_eq!(st["splits"]["val"]["frames"], 101);
    assert_eq!(st["splits"]["val"]["annotations"], 615);
}

#[test]
fn ingest_video_every_5th_frame() {
    let Some(clip) =
        roadsynth_testkit::shared("datasets/dashcam/udacity_vehicle_detection/test_video.mp4")
    else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let ds = work.path().join("dashcam");
    ok(&[
        "ingest",
        "--format",
        "video",
        "--input",
        s(&clip),
        "--every",
        "5",
        "--output",
        s(&ds),
    ]);
    assert_eq!(stats(&ds)["frames"], 8);
}

#[test]
fn missing_input_is_a_clear_error() {
    let work = tempfile::tempdir().expect("tempdir");
    let missing = work.path().join("nope.json");
    let out = roadsynth(&[
        "ingest",
        "--format",
        "coco",
        "--input",
        s(&missing),
        "--output",
        s(&work.path().join("ds")),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.json"));
}

#[test]
fn scenario_validate_reports_every_error_of_every_file_and_exits_1() {
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let fog = scenarios.join("weather-fog.yaml");
    let animals = scenarios.join("animals-on-roads.yaml");
    let out = roadsynth(&["scenario", "validate", s(&fog), s(&animals)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "ok {} (1 operation)\nok {} (1 operation)\n",
            fog.display(),
            animals.display()
        )
    );

    let work = tempfile::tempdir().expect("tempdir");
    let bad = work.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "seed: 1\ncolour: red\noperations:\n  - insert_objects:\n      classes: [deer, unicorn]\n      distance_m: [-5, 60]\n  - weather:\n      rain: {rate_mm_h: 10000}\n",
    )
    .expect("write");
    let out = roadsynth(&["scenario", "validate", s(&bad), s(&fog)]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("ok {} (1 operation)\n", fog.display())
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let b = bad.display();
    assert_eq!(lines.len(), 5, "{stderr}");
    assert!(
        lines[0].starts_with(&format!("{b}:2:1: unknown field `colour`")),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(&format!("{b}:5:23: unknown class `unicorn`")),
        "{stderr}"
    );
    assert!(
        lines[2].starts_with(&format!("{b}:6:20: distance_m must be more than 0")),
        "{stderr}"
    );
    assert!(
        lines[3].starts_with(&format!(
            "{b}:8:25: rate_mm_h must be more than 0 and at most 300"
        )),
        "{stderr}"
    );
    assert_eq!(lines[4], "1 of 2 files invalid (4 errors)");

    // The schema command prints the committed schema.
    let schema = ok(&["scenario", "schema"]);
    let committed =
        std::fs::read_to_string(scenarios.join("scenario.schema.json")).expect("schema");
    assert_eq!(schema, committed);
}

#[test]
fn plan_animals_on_camvid_writes_a_plan_table() {
    let Some(camvid) = roadsynth_testkit::shared("datasets/camvid") else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let ds = work.path().join("camvid");
    ok(&[
        "ingest",
        "--format",
        "coco",
        "--input",
        s(&camvid.join("annotations_train.json")),
        "--output",
        s(&ds),
    ]);
    let scenario =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/animals-on-roads.yaml");
    let plan = work.path().join("plan.parquet");
    let out = ok(&[
        "plan",
        "--scenario",
        s(&scenario),
        "--dataset",
        s(&ds),
        "--output",
        s(&plan),
    ]);
    assert!(
        out.contains("over 367 frames") && out.contains("fitted 367"),
        "{out}"
    );
    if !roadsynth_testkit::python_module("pyarrow") {
        return;
    }
    let script = "import sys, pyarrow.parquet as pq; t = pq.read_table(sys.argv[1]); \
                  print(t.num_rows, sorted(set(t.column('label').to_pylist())), t.column('depth_m').null_count)";
    let py = Command::new("python3")
        .args(["-c", script, s(&plan)])
        .output()
        .expect("python3");
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let text = String::from_utf8_lossy(&py.stdout);
    let rows: usize = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("row count");
    assert!(rows > 367, "{text}");
    assert!(text.contains("['animal'] 0"), "{text}");
}

#[test]
fn scenario_preview_draws_pngs_and_a_rerun_recording() {
    let Some(camvid) = roadsynth_testkit::shared("datasets/camvid") else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let ds = work.path().join("camvid");
    ok(&[
        "ingest",
        "--format",
        "coco",
        "--input",
        s(&camvid.join("annotations_train.json")),
        "--output",
        s(&ds),
    ]);
    let scenario =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/animals-on-roads.yaml");
    let out = work.path().join("preview");
    let stdout = ok(&[
        "scenario",
        "preview",
        s(&scenario),
        "--dataset",
        s(&ds),
        "--frames",
        "4",
        "--out",
        s(&out),
    ]);
    assert!(stdout.contains("previewed 4 frames"), "{stdout}");
    let pngs = std::fs::read_dir(&out)
        .expect("out")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "png"))
        })
        .count();
    assert_eq!(pngs, 4);
    let rrd = std::fs::read(out.join("preview.rrd")).expect("preview.rrd");
    assert_eq!(&rrd[..4], b"RRF2", "a Rerun recording");
    if !roadsynth_testkit::python_module("rerun") {
        return;
    }
    // Read the recording back with the Rerun CLI of the same version (rerun-sdk): it loads, and
    // every entity has one row per previewed frame.
    let rrd_path = out.join("preview.rrd");
    let verify = Command::new("python3")
        .args(["-m", "rerun", "rrd", "verify", s(&rrd_path)])
        .output()
        .expect("rerun");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let print = Command::new("python3")
        .args(["-m", "rerun", "rrd", "print", s(&rrd_path)])
        .output()
        .expect("rerun");
    let text = String::from_utf8_lossy(&print.stdout);
    let mut rows: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("Chunk(")) {
        // `Chunk(id) with N rows (size) - /entity/path - data columns: [...]`
        let n = line
            .split(" with ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse::<usize>().ok());
        let path = line.split(" - ").nth(1);
        if let (Some(n), Some(path)) = (n, path) {
            *rows.entry(path.to_string()).or_default() += n;
        }
    }
    for path in [
        "/frames/image",
        "/frames/image/real",
        "/frames/image/planned",
        "/frames/image/horizon",
        "/frames/image/depth_bands",
    ] {
        assert_eq!(rows.get(path), Some(&4), "{path}: {rows:?}");
    }
}

/// Issue 3: `scenario validate` must answer in well under 50 ms; OpenCV's shared libraries alone
/// take ~130 ms to load, so only the `roadsynth-worker` helper may link them.
#[test]
fn issue_3_main_binary_does_not_load_opencv() {
    let ldd = Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_roadsynth"))
        .output()
        .expect("ldd");
    let libs = String::from_utf8_lossy(&ldd.stdout);
    assert!(!libs.contains("opencv"), "roadsynth links OpenCV:\n{libs}");
    let helper = Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_roadsynth-worker"))
        .output()
        .expect("ldd");
    assert!(String::from_utf8_lossy(&helper.stdout).contains("libopencv_videoio"));
}

#[test]
fn run_the_repository_orchestrator_runs_every_stage_and_skips_unchanged_ones() {
    if roadsynth_testkit::shared("datasets/camvid").is_none() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // The repository's own file, with its outputs redirected to a temporary folder and each
    // augmentation cut to a few frames (the full run is the README's main command).
    let text = std::fs::read_to_string(repo.join("orchestrator.yaml")).expect("orchestrator.yaml");
    let text = text
        .replace(
            "  datasets: datasets",
            &format!("  datasets: {}", work.path().join("ds").display()),
        )
        .replace(
            "  assets: assets",
            &format!("  assets: {}", work.path().join("assets").display()),
        )
        .replace(
            "    scenario: scenarios/",
            &format!(
                "    max_frames: 6\n    scenario: {}/scenarios/",
                repo.display()
            ),
        );
    let file = work.path().join("orchestrator.yaml");
    std::fs::write(&file, text).expect("write");
    let shared = roadsynth_testkit::shared_root().expect("shared");
    let run = || {
        let out = Command::new(env!("CARGO_BIN_EXE_roadsynth"))
            .args(["run", s(&file)])
            .env("ROADSYNTH_SHARED", &shared)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = run();
    assert_eq!(stats(&work.path().join("ds/kitti"))["frames"], 18);
    assert_eq!(stats(&work.path().join("ds/camvid"))["frames"], 468);
    assert_eq!(
        stats(&work.path().join("ds/road-animals"))["annotations"]["animal"],
        20
    );
    assert!(first.contains("built 166 assets"), "{first}");
    let roadsynth_arm = stats(&work.path().join("ds/camvid-roadsynth"));
    // With max_frames the arm holds the first 6 train frames, their variants and the real val.
    assert_eq!(
        roadsynth_arm["splits"]["val"]["frames"], 101,
        "{roadsynth_arm}"
    );
    assert!(
        roadsynth_arm["splits"]["train"]["frames"].as_u64() > Some(6),
        "{roadsynth_arm}"
    );
    assert!(roadsynth_arm["annotations"]["animal"].as_u64() > Some(0));
    let naive_arm = stats(&work.path().join("ds/camvid-naive"));
    assert!(naive_arm["annotations"]["animal"].as_u64() > Some(0));
    // Nothing changed: every stage after ingest is skipped.
    let second = run();
    for stage in [
        "assets animals: up to date",
        "augment camvid-roadsynth: up to date",
        "augment camvid-naive: up to date",
        "augment camvid-fog: up to date",
    ] {
        assert!(second.contains(stage), "{second}");
    }
}

#[test]
fn orchestrator_errors_are_reported_at_their_place() {
    let work = tempfile::tempdir().expect("tempdir");
    let file = work.path().join("o.yaml");
    std::fs::write(&file, "sources:\n  - dataset: x\n    format: kitty\n    input: nope\n  - format: coco\n    colour: red\naugment:\n  - name: y\n    dataset: nowhere\n    scenario: s.yaml\nmodels:\n  detector: {path: m.onnx, sha256: abc}\n").expect("write");
    let out = roadsynth(&["run", s(&file)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("o.yaml:3:13: unknown variant `kitty`"),
        "{err}"
    );
    assert!(err.contains("o.yaml:6:5: unknown field `colour`"), "{err}");
    // Semantic errors come in the same run: the second source names no dataset and no input.
    assert!(
        err.contains("o.yaml:5:") && err.contains("missing `dataset`"),
        "{err}"
    );
    // Stage and model errors too, each at its place.
    assert!(err.contains("o.yaml:9:14: `dataset` must name"), "{err}");
    assert!(
        err.contains("o.yaml:10:") && err.contains("s.yaml"),
        "{err}"
    );
    assert!(
        err.contains("o.yaml:12:") && err.contains("64-hex-digit"),
        "{err}"
    );
}

/// Ingests CamVid train and the COCO cut-out source, builds the animal asset bank.
fn camvid_with_animal_assets(work: &Path) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let camvid = roadsynth_testkit::shared("datasets/camvid")?;
    let coco = roadsynth_testkit::shared("datasets/coco-animals-vehicles")?;
    let ds = work.join("camvid");
    ok(&[
        "ingest",
        "--format",
        "coco",
        "--input",
        s(&camvid.join("annotations_train.json")),
        "--output",
        s(&ds),
        "--split",
        "train",
    ]);
    let cav = work.join("cav");
    ok(&[
        "ingest",
        "--format",
        "coco",
        "--input",
        s(&coco.join("instances_subset.json")),
        "--images-root",
        s(&coco.join("images")),
        "--output",
        s(&cav),
    ]);
    let assets = work.join("animals");
    let built = ok(&[
        "assets",
        "build",
        "--dataset",
        s(&cav),
        "--classes",
        "bird,cat,dog,horse,sheep,cow,elephant,bear,zebra,giraffe",
        "--output",
        s(&assets),
    ]);
    assert!(built.starts_with("built 166 assets"), "{built}");
    Some((ds, assets))
}

/// Every frame of a dataset's split, without image bytes, read through the worker-free reader.
fn frames_of(dir: &Path, split: &str) -> Vec<roadsynth_types::FrameRecord> {
    roadsynth_dataset::Dataset::open(dir)
        .expect("open")
        .frames(split, roadsynth_dataset::Projection::WithoutImages)
        .expect("frames")
        .collect::<Result<_, _>>()
        .expect("read")
}

#[test]
fn issue_4_augment_inserts_filtered_animals_with_their_origin_and_is_deterministic() {
    let work = tempfile::tempdir().expect("tempdir");
    let Some((ds, assets)) = camvid_with_animal_assets(work.path()) else {
        return;
    };
    let Some(yolox) = roadsynth_testkit::shared("models/yolox-nano/yolox_nano.onnx") else {
        return;
    };
    let run = |out: &Path| {
        ok(&[
            "augment",
            "--scenario",
            "../../scenarios/animals-on-roads.yaml",
            "--dataset",
            s(&ds),
            "--output",
            s(out),
            "--assets",
            s(&assets),
            "--detector",
            s(&yolox),
            "--max-frames",
            "12",
        ])
    };
    let summary = run(&work.path().join("out"));
    assert!(summary.contains("augmented 12 frames"), "{summary}");
    let frames = frames_of(&work.path().join("out"), "train");
    let real: Vec<_> = frames
        .iter()
        .filter(|f| f.frame.provenance.parent.is_none())
        .collect();
    let generated: Vec<_> = frames
        .iter()
        .filter(|f| f.frame.provenance.parent.is_some())
        .collect();
    assert_eq!(real.len(), 12, "the real frames are kept");
    assert!(!generated.is_empty(), "{summary}");
    let mut inserted = 0;
    for g in &generated {
        let parent = g.frame.provenance.parent.as_ref().expect("parent");
        assert!(real.iter().any(|r| &r.frame.id == parent));
        let step = g.frame.provenance.steps.last().expect("a step");
        assert_eq!(step.scenario.as_deref(), Some("animals-on-roads"));
        for a in &g.annotations {
            if let roadsynth_types::Origin::Generated { scenario, .. } = &a.origin {
                inserted += 1;
                assert_eq!(scenario, "animals-on-roads");
                assert_eq!(a.class, "animal");
                let b = a.bbox;
                assert!(b.x0 >= 0.0 && b.y0 >= 0.0, "{b:?}");
                assert!(
                    b.x1 <= f64::from(g.frame.width) && b.y1 <= f64::from(g.frame.height),
                    "{b:?}"
                );
            }
        }
        // Inserted objects cover labelled pixels: the labels are not carried over.
        assert!(g.frame.semantic_label.is_none());
    }
    assert!(inserted > 0);
    // The filter's decisions are in provenance: every kept object scored at least the threshold.
    let step = &generated[0].frame.provenance.steps[0];
    assert!(step.params.to_string().contains("score"), "{}", step.params);
    // Same inputs, same bytes: the version name is a hash of every file.
    let again = run(&work.path().join("again"));
    let version = |text: &str| {
        text.split("version ")
            .nth(1)
            .and_then(|v| v.split_whitespace().next())
            .map(str::to_string)
    };
    assert_eq!(version(&summary), version(&again), "{summary}\n{again}");
}

#[test]
fn issue_5_augment_applies_scenario_weather_and_records_transmittance() {
    let Some(camvid) = roadsynth_testkit::shared("datasets/camvid") else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let ds = work.path().join("camvid");
    ok(&[
        "ingest",
        "--format",
        "coco",
        "--input",
        s(&camvid.join("annotations_val.json")),
        "--output",
        s(&ds),
        "--split",
        "train",
    ]);
    let out = work.path().join("fog");
    let summary = ok(&[
        "augment",
        "--scenario",
        "../../scenarios/weather-fog.yaml",
        "--dataset",
        s(&ds),
        "--output",
        s(&out),
        "--max-frames",
        "4",
        "--generated-only",
    ]);
    assert!(summary.contains("4 weather effects"), "{summary}");
    let real = frames_of(&ds, "train");
    let foggy = frames_of(&out, "train");
    assert_eq!(foggy.len(), 4);
    for f in &foggy {
        let parent = real
            .iter()
            .find(|r| Some(&r.frame.id) == f.frame.provenance.parent.as_ref())
            .expect("parent");
        assert_eq!(f.annotations.len(), parent.annotations.len());
        let step = f.frame.provenance.steps.last().expect("step");
        assert_eq!(step.operation, "weather.fog");
        assert!(step.params.get("seed").is_some() || step.seed.is_some());
        for (a, p) in f.annotations.iter().zip(&parent.annotations) {
            assert_eq!(a.bbox, p.bbox, "fog keeps boxes");
            let t = a.attributes["fog_transmittance"].as_f64().expect("number");
            assert!(t > 0.0 && t <= 1.0, "{t}");
        }
        // Weather keeps every pixel's class: the semantic labels stay.
        assert!(f.frame.semantic_label.is_some());
    }
}

#[test]
fn issue_4_vehicle_edits_on_kitti_keep_boxes_and_mark_edited_cars() {
    let Some(kitti) = roadsynth_testkit::shared("datasets/kitti-object") else {
        return;
    };
    let Some(voc) = roadsynth_testkit::shared(
        "models/deeplabv3-mobilenetv2-voc/deeplabv3_mnv2_pascalvoc_257.onnx",
    ) else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let ds = work.path().join("kitti");
    ok(&[
        "ingest",
        "--format",
        "kitti",
        "--input",
        s(&kitti),
        "--output",
        s(&ds),
    ]);
    let out = work.path().join("repainted");
    let summary = ok(&[
        "augment",
        "--scenario",
        "../../scenarios/vehicle-appearance.yaml",
        "--dataset",
        s(&ds),
        "--output",
        s(&out),
        "--vehicle-model",
        s(&voc),
        "--generated-only",
    ]);
    let edited = frames_of(&out, "train");
    assert!(!edited.is_empty(), "{summary}");
    let real = frames_of(&ds, "train");
    for f in &edited {
        let parent = real
            .iter()
            .find(|r| Some(&r.frame.id) == f.frame.provenance.parent.as_ref())
            .expect("parent");
        let boxes = |r: &roadsynth_types::FrameRecord| -> Vec<_> {
            r.annotations.iter().map(|a| a.bbox).collect()
        };
        assert_eq!(boxes(f), boxes(parent), "appearance edits keep geometry");
        assert!(
            f.annotations
                .iter()
                .any(|a| a.attributes.contains_key("appearance_edit"))
        );
    }
}

#[test]
fn eval_scores_a_coco_results_file_with_intervals() {
    let Some(camvid) = roadsynth_testkit::shared("datasets/camvid") else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let ds = work.path().join("camvid");
    ok(&[
        "ingest",
        "--format",
        "coco",
        "--input",
        s(&camvid.join("annotations_val.json")),
        "--output",
        s(&ds),
        "--split",
        "val",
    ]);
    // Perfect detections: the export's own boxes, scored 1, give AP 1.
    let export = work.path().join("export");
    ok(&[
        "dataset",
        "export",
        s(&ds),
        "--format",
        "coco",
        "--output",
        s(&export),
    ]);
    let coco: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(export.join("annotations.json")).expect("export"),
    )
    .expect("json");
    let dets: Vec<serde_json::Value> = coco["annotations"]
        .as_array()
        .expect("annotations")
        .iter()
        .map(|a| {
            serde_json::json!({"image_id": a["image_id"], "category_id": a["category_id"],
                "bbox": a["bbox"], "score": 1.0})
        })
        .collect();
    let preds = work.path().join("preds.json");
    std::fs::write(&preds, serde_json::to_string(&dets).expect("ser")).expect("write");
    let report: serde_json::Value = serde_json::from_str(&ok(&[
        "eval",
        "--dataset",
        s(&ds),
        "--predictions",
        s(&preds),
        "--bootstrap",
        "50",
        "--json",
    ]))
    .expect("json");
    let overall = &report["overall"];
    assert_eq!(overall["images"], 101);
    for key in ["ap", "ap50", "ap75"] {
        let v = overall["summary"][key].as_f64().expect(key);
        assert!((v - 1.0).abs() < 1e-9, "{key} = {v}");
    }
    assert!(overall["intervals"]["ap"].is_object(), "{overall}");
    assert_eq!(overall["per_class"].as_array().map(Vec::len), Some(3));
}

/// A one-source orchestrator file writing into `work`, with an optional schedule section.
fn kitti_orchestrator(work: &Path, schedule: &str) -> Option<std::path::PathBuf> {
    let kitti = roadsynth_testkit::shared("datasets/kitti-object")?;
    let file = work.join("o.yaml");
    std::fs::write(
        &file,
        format!(
            "sources:\n  - dataset: kitti\n    format: kitti\n    input: {}\n{schedule}outputs:\n  datasets: {}\n  runs: {}\n",
            kitti.display(),
            work.join("ds").display(),
            work.join("runs").display()
        ),
    )
    .expect("write");
    Some(file)
}

#[test]
fn issue_6_runs_have_ledgers_and_never_overlap() {
    let work = tempfile::tempdir().expect("tempdir");
    let Some(file) = kitti_orchestrator(work.path(), "") else {
        return;
    };
    let out = ok(&["run", s(&file)]);
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("run "))
        .expect("run id")
        .to_string();
    let runs = work.path().join("runs");
    let ledger: serde_json::Value =
        serde_json::from_str(&ok(&["runs", "show", &id, "--runs", s(&runs)])).expect("json");
    assert_eq!(ledger["status"], "succeeded");
    assert_eq!(ledger["stages"][0]["stage"], "ingest");
    assert!(ledger["stages"][0]["output_version"].is_string());
    assert_eq!(ledger["config_hash"].as_str().map(str::len), Some(16));
    let list = ok(&["runs", "list", "--runs", s(&runs)]);
    assert!(
        list.starts_with(&id) && list.contains("succeeded"),
        "{list}"
    );
    // While another run holds the lock, a run refuses to start and says why.
    let lock = std::fs::File::create(runs.join(".lock")).expect("lock file");
    lock.lock().expect("lock");
    let blocked = roadsynth(&["run", s(&file)]);
    assert!(!blocked.status.success());
    assert!(
        String::from_utf8_lossy(&blocked.stderr).contains("another run holds"),
        "{}",
        String::from_utf8_lossy(&blocked.stderr)
    );
    drop(lock);
}

#[test]
fn issue_6_schedule_runs_on_the_cron_ticks() {
    let work = tempfile::tempdir().expect("tempdir");
    // Every second (six fields: seconds first), in a non-UTC zone.
    let Some(file) = kitti_orchestrator(
        work.path(),
        "schedule:\n  cron: \"* * * * * *\"\n  time_zone: Europe/Berlin\n  missed: skip\n",
    ) else {
        return;
    };
    ok(&["schedule", s(&file), "--max-runs", "2"]);
    let list = ok(&["runs", "list", "--runs", s(&work.path().join("runs"))]);
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(list.lines().all(|l| l.contains("succeeded")), "{list}");
    // Bad schedules are reported at their place.
    std::fs::write(
        &file,
        "sources: []\nschedule:\n  cron: \"61 * * * *\"\n  time_zone: Mars/Olympus\n",
    )
    .expect("write");
    let out = roadsynth(&["schedule", s(&file)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("o.yaml:3:") && err.contains("cron"), "{err}");
    assert!(
        err.contains("o.yaml:4:") && err.contains("Mars/Olympus"),
        "{err}"
    );
}

#[test]
fn issue_7_experiment_trains_scores_reports_and_skips_when_unchanged() {
    let work = tempfile::tempdir().expect("tempdir");
    let Some(file) = kitti_orchestrator(
        work.path(),
        "experiment:\n  arms: {real: kitti}\n  epochs: 1\n  seeds: [1, 2]\n  tests:\n    - {name: kitti-train, dataset: kitti, split: train}\n  bootstrap: 50\n",
    ) else {
        return;
    };
    let text = std::fs::read_to_string(&file).expect("read").replace(
        "outputs:\n",
        &format!(
            "outputs:\n  reports: {}\n",
            work.path().join("reports").display()
        ),
    );
    std::fs::write(&file, text).expect("write");
    let out = ok(&["run", s(&file)]);
    let report = out
        .lines()
        .find_map(|l| l.strip_prefix("experiment report: "))
        .expect("report path");
    let report = Path::new(report);
    let metrics: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(report.join("metrics.json")).expect("metrics.json"),
    )
    .expect("json");
    let real = &metrics["arms"]["real"];
    assert_eq!(real["models"].as_array().map(Vec::len), Some(2), "{real}");
    for m in real["models"].as_array().expect("models") {
        let dir = Path::new(m["model_dir"].as_str().expect("model_dir"));
        assert!(dir.join("weights.safetensors").exists());
    }
    let car = &real["test_sets"]["kitti-train"]["classes"]["Car"]["ap50"];
    assert_eq!(car["seeds"].as_array().map(Vec::len), Some(2), "{car}");
    assert!(
        car["mean"]
            .as_f64()
            .is_some_and(|v| (0.0..=1.0).contains(&v)),
        "{car}"
    );
    let md = std::fs::read_to_string(report.join("report.md")).expect("report.md");
    assert!(md.contains("Car"), "{md}");
    let html = std::fs::read_to_string(report.join("report.html")).expect("report.html");
    assert!(html.contains("<svg") && !html.contains("https://"));
    // Same inputs: the experiment is not trained again.
    let again = ok(&["run", s(&file)]);
    assert!(again.contains("experiment: up to date"), "{again}");
}
