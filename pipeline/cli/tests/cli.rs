//! End-to-end tests of the `roadsynth` command on the shared real data.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// Runs the main binary with `args`; the shared data root, where found, as `$ROADSYNTH_SHARED`
/// (orchestrator files name their inputs through it).
fn roadsynth(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_roadsynth"));
    if let Some(shared) = roadsynth_testkit::shared_root() {
        command.env("ROADSYNTH_SHARED", shared);
    }
    command.args(args).output().expect("run roadsynth")
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

/// The shared KITTI folder ingested as the train split of `ds`.
fn ingest_kitti(kitti: &Path, ds: &Path) {
    ok(&[
        "ingest",
        "--format",
        "kitti",
        "--input",
        s(kitti),
        "--output",
        s(ds),
    ]);
}

#[test]
fn ingest_kitti_and_report_stats() {
    let Some(kitti) = roadsynth_testkit::shared("datasets/kitti-object") else {
        return;
    };
    let out = tempfile::tempdir().expect("tempdir");
    let ds = out.path().join("kitti");
    ingest_kitti(&kitti, &ds);
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

/// A broken input file used to commit a version whose split was empty: the split's frames were gone
/// from the current version. Now nothing is committed and the message names the file.
#[test]
fn issue_2_an_input_with_nothing_ingestible_leaves_the_dataset_as_it_was() {
    let Some(kitti) = roadsynth_testkit::shared("datasets/kitti-object") else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let ds = work.path().join("ds");
    ingest_kitti(&kitti, &ds);
    let current = || std::fs::read_to_string(ds.join("CURRENT")).expect("CURRENT");
    let before = current();

    let truncated = work.path().join("truncated.json");
    std::fs::write(
        &truncated,
        r#"{"images": [{"id": 1, "file_name": "a.png", "wid"#,
    )
    .expect("write");
    let out = roadsynth(&[
        "ingest",
        "--format",
        "coco",
        "--input",
        s(&truncated),
        "--output",
        s(&ds),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("nothing ingested") && stderr.contains("truncated.json"),
        "{stderr}"
    );
    assert_eq!(current(), before, "no new version");
    assert_eq!(stats(&ds)["frames"], 18);

    // A split name is a folder: one that would leave the dataset is refused before anything is
    // written.
    let out = roadsynth(&[
        "ingest",
        "--format",
        "kitti",
        "--input",
        s(&kitti),
        "--output",
        s(&ds),
        "--split",
        "../../escaped",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot be used"), "{stderr}");
    assert_eq!(current(), before);
    assert!(!work.path().join("escaped").exists());
    assert!(!ds.join("versions/escaped").exists());
}

/// A scenario whose splits the dataset does not have used to run to completion, augmenting
/// nothing, and exit 0; `plan` likewise planned nothing. Both now fail and list the splits there are.
#[test]
fn issue_6_a_scenario_on_splits_the_dataset_lacks_is_an_error_naming_them() {
    let Some(kitti) = roadsynth_testkit::shared("datasets/kitti-object") else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let ds = work.path().join("ds");
    ingest_kitti(&kitti, &ds);
    let scenario = work.path().join("typo.yaml");
    std::fs::write(
        &scenario,
        "seed: 1\nsplits: [trian]\noperations:\n  - weather:\n      fog: {visibility_m: 200}\n",
    )
    .expect("write");
    let out = roadsynth(&[
        "augment",
        "--scenario",
        s(&scenario),
        "--dataset",
        s(&ds),
        "--output",
        s(&work.path().join("out")),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(r#"["trian"]"#) && stderr.contains(r#"["train"]"#),
        "names what it wanted and what there is: {stderr}"
    );
    assert!(!work.path().join("out").join("CURRENT").exists());
}

/// A reader that stops early (`| head`) used to make the command panic with "failed printing to
/// stdout: Broken pipe"; it now ends quietly.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_roadsynth"))
        .args(["scenario", "schema"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Closed at once, before the command has started up and written: its write fails (EPIPE).
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

/// Inputs that used to be accepted and do nothing useful: `--every 0` (taken as 1), and an asset
/// bank built from a dataset without instance masks (written empty, status 0).
#[test]
fn issue_2_every_zero_and_a_bank_without_cut_outs_are_refused() {
    let Some(kitti) = roadsynth_testkit::shared("datasets/kitti-object") else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let out = roadsynth(&[
        "ingest",
        "--format",
        "video",
        "--input",
        "clip.mp4",
        "--output",
        s(&work.path().join("v")),
        "--every",
        "0",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--every"),
        "{stderr}"
    );
    let ds = work.path().join("kitti");
    ingest_kitti(&kitti, &ds);
    let bank = work.path().join("bank");
    let out = roadsynth(&[
        "assets",
        "build",
        "--dataset",
        s(&ds),
        "--classes",
        "car,dog",
        "--output",
        s(&bank),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no cut-out") && stderr.contains("instance masks"),
        "{stderr}"
    );
    assert!(!bank.exists(), "nothing written");
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
fn blend_for_a_renderer_that_does_not_blend_is_refused() {
    let work = tempfile::tempdir().expect("tempdir");
    let scenario = roadsynth_testkit::repo_root().join("scenarios/animals-naive-baseline.yaml");
    let out = roadsynth(&[
        "augment",
        "--scenario",
        s(&scenario),
        "--dataset",
        s(&work.path().join("in")),
        "--output",
        s(&work.path().join("out")),
        "--renderer",
        "plain",
        "--blend",
        "poisson",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--blend poisson applies to the exemplar renderer only"),
        "{err}"
    );
    assert!(!work.path().join("out").exists());
}

#[test]
fn scenario_validate_reports_every_error_of_every_file_and_exits_1() {
    let scenarios = roadsynth_testkit::repo_root().join("scenarios");
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
    let scenario = roadsynth_testkit::repo_root().join("scenarios/animals-on-roads.yaml");
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
    let scenario = roadsynth_testkit::repo_root().join("scenarios/animals-on-roads.yaml");
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
    let repo = roadsynth_testkit::repo_root();
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
        )
        // The experiment at a reduced size: every arm, two seeds, one epoch (of CamVid train's
        // 367 frames, as equal steps ask), so CI runs all of it.
        .replace("  epochs: 4\n", "  epochs: 1\n")
        .replace("  seeds: [1, 2, 3]\n", "  seeds: [1, 2]\n");
    assert!(text.contains("  epochs: 1\n") && text.contains("  seeds: [1, 2]\n"));
    let file = work.path().join("orchestrator.yaml");
    std::fs::write(&file, text).expect("write");
    let run = || ok(&["run", s(&file)]);
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
    // The foggy test set holds the fogged val frames only: no clear original, no other split.
    let fog = stats(&work.path().join("ds/camvid-fog"));
    assert_eq!(fog["frames"], 6, "{fog}");
    assert_eq!(fog["splits"]["val"]["frames"], 6, "{fog}");
    check_run_recording(work.path(), &first);
    // The report compares all three arms, each with both seeds, on every test set.
    let report = first
        .lines()
        .find_map(|l| l.strip_prefix("experiment report: "))
        .expect("report path printed");
    let metrics: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(report).join("metrics.json")).expect("metrics.json"),
    )
    .expect("metrics json");
    for arm in ["real", "naive_paste", "roadsynth"] {
        let a = &metrics["arms"][arm];
        assert_eq!(a["models"].as_array().map(Vec::len), Some(2), "{arm}: {a}");
        for test in ["camvid-val", "road-animals", "camvid-val-fog"] {
            assert!(a["test_sets"][test].is_object(), "{arm} {test}: {a}");
        }
    }
    assert!(Path::new(report).join("report.html").is_file());
    // Each arm's training data is stated: the roadsynth arm with its animals.
    let notes = metrics["notes"].to_string();
    for arm in ["real", "naive_paste", "roadsynth"] {
        assert!(
            notes.contains(&format!("Training data of {arm} (")),
            "{notes}"
        );
    }
    assert!(notes.contains("animal "), "{notes}");
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
    // One stage alone: nothing else runs.
    let only = ok(&["run", s(&file), "--stage", "augment:camvid-fog"]);
    assert!(only.contains("augment camvid-fog: up to date"), "{only}");
    for other in ["assets animals", "camvid-naive", "experiment", "ingested"] {
        assert!(!only.contains(other), "{other} ran: {only}");
    }
    let out = roadsynth(&["run", s(&file), "--stage", "augment:camvid-rain"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no augment stage named `camvid-rain`") && err.contains("camvid-fog"),
        "{err}"
    );
}

/// Counts a recording's rows per entity on one timeline, with the Rerun SDK of the version that
/// wrote it.
const COUNT_ROWS: &str = r"
import json, sys
from collections import Counter
from rerun.experimental import RrdReader
counts = Counter()
for chunk in RrdReader(sys.argv[1]).stream():
    if sys.argv[2] in chunk.timeline_names:
        counts[chunk.entity_path] += chunk.to_record_batch().num_rows
print(json.dumps(counts))
";

fn recording_rows(rrd: &Path, timeline: &str) -> BTreeMap<String, u64> {
    let out = Command::new("python3")
        .args(["-c", COUNT_ROWS])
        .arg(rrd)
        .arg(timeline)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "reading {}: {}",
        rrd.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("counts")
}

/// The run wrote `runs/<id>/run.rrd`, named in its ledger, and it reads back with the augmented
/// frames (original, augmented, real and generated boxes, edit masks, placement geometry, the
/// fog's transmission) the run said it logged, a bounded sample of each stage.
fn check_run_recording(work: &Path, stdout: &str) {
    let run_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("run "))
        .expect("run id printed");
    let ledger: Value = serde_json::from_str(
        &std::fs::read_to_string(work.join("runs").join(run_id).join("ledger.json"))
            .expect("ledger"),
    )
    .expect("ledger json");
    // The code version: the tool version and a hash of both executables.
    let code = ledger["code_version"].as_str().expect("code_version");
    let hash = code
        .strip_prefix(&format!("{}+", env!("CARGO_PKG_VERSION")))
        .expect("version first");
    assert!(
        hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "{code}"
    );
    let rrd = work.join("runs").join(run_id).join("run.rrd");
    assert_eq!(ledger["recording"].as_str(), Some(s(&rrd)));
    assert!(rrd.is_file(), "{}", rrd.display());
    let logged: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("recording {}: ", rrd.display())))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("recording summary printed");
    if !roadsynth_testkit::python_module("rerun") {
        return;
    }
    let frames = recording_rows(&rrd, "frame");
    assert!(logged > 0);
    for entity in [
        "/augment/original",
        "/augment/augmented",
        "/augment/augmented/real",
        "/augment/augmented/generated",
    ] {
        assert_eq!(frames.get(entity), Some(&logged), "{entity}: {frames:?}");
    }
    // Fog frames carry their transmission map; insertion frames their edit mask and geometry.
    for entity in [
        "/augment/weather/transmission",
        "/augment/augmented/edit_mask",
        "/augment/augmented/horizon",
        "/augment/augmented/depth_bands",
    ] {
        assert!(frames.get(entity) > Some(&0), "{entity}: {frames:?}");
    }
    // Three stages of 468 input frames each, about 40 of each logged, two variants at most.
    assert!(logged <= 3 * 40 * 2, "{logged}");
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
    // `orchestrator validate` reports the same without running anything.
    let out = roadsynth(&["orchestrator", "validate", s(&file)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("o.yaml:6:5: unknown field `colour`"));
    // Concurrency and retries are checked at their place too.
    std::fs::write(
        &file,
        "sources:\n  - {dataset: x, format: kitti, input: .}\nconcurrency:\n  workers: 0\nretries: 50\n",
    )
    .expect("write");
    let out = roadsynth(&["orchestrator", "validate", s(&file)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("o.yaml:4:12: `workers` must be at least 1"),
        "{err}"
    );
    assert!(err.contains("o.yaml:5:10: 50 retries"), "{err}");
}

/// `orchestrator validate` used to say `ok` of a file whose scenario had errors; `run` then stopped
/// on them after ingest had run. The scenario's errors now come with the file's, at their place.
#[test]
fn issue_6_orchestrator_validate_reports_its_scenarios_errors_too() {
    let work = tempfile::tempdir().expect("tempdir");
    let file = work.path().join("o.yaml");
    std::fs::write(
        work.path().join("bad.yaml"),
        "seed: 1\nsplits: [train]\noperations:\n  - weather:\n      fogg: {visibility_m: 200}\n",
    )
    .expect("write");
    std::fs::write(
        &file,
        "sources:\n  - {dataset: x, format: kitti, input: .}\naugment:\n  - {name: a, dataset: x, scenario: bad.yaml}\n  - {name: b, dataset: x, scenario: bad.yaml}\n  - {name: c, dataset: y, scenario: bad.yaml}\n",
    )
    .expect("write");
    let out = roadsynth(&["orchestrator", "validate", s(&file)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml:5:7:") && err.contains("fogg"),
        "{err}"
    );
    assert_eq!(
        err.matches("bad.yaml:5:7:").count(),
        1,
        "once per file: {err}"
    );
    // The orchestrator file's own errors first.
    let own = err.find("o.yaml:6:").expect("dataset y is unknown");
    assert!(
        own < err.find("bad.yaml:5:7:").expect("scenario error"),
        "{err}"
    );
}

/// An augmentation's `blend` is one of the exemplar renderer's modes, and only for that renderer.
#[test]
fn orchestrator_blend_is_checked_at_its_place() {
    let work = tempfile::tempdir().expect("tempdir");
    let file = work.path().join("o.yaml");
    let scenario = roadsynth_testkit::repo_root().join("scenarios/weather-fog.yaml");
    std::fs::write(
        &file,
        format!(
            "sources:\n  - {{dataset: x, format: kitti, input: .}}\naugment:\n  - name: a\n    dataset: x\n    scenario: {s}\n    blend: sharp\n  - name: b\n    dataset: x\n    scenario: {s}\n    renderer: plain\n    blend: feather\n  - name: c\n    dataset: x\n    scenario: {s}\n    blend: feather\n",
            s = scenario.display()
        ),
    )
    .expect("write");
    let out = roadsynth(&["orchestrator", "validate", s(&file)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("o.yaml:7:12: blend \"sharp\" is not one of"),
        "{err}"
    );
    assert!(
        err.contains("o.yaml:12:12: `blend` applies to the exemplar renderer only"),
        "{err}"
    );
    // The third augmentation's `blend: feather` is fine.
    assert!(!err.contains("o.yaml:16:"), "{err}");
}

/// Issue 6: `orchestrator.schema.json` is what the wire structs generate, the repository's file
/// points editors at it and validates.
#[test]
fn issue_6_orchestrator_schema_is_current_and_the_repository_file_validates() {
    let repo = roadsynth_testkit::repo_root();
    let committed =
        std::fs::read_to_string(repo.join("orchestrator.schema.json")).unwrap_or_default();
    let out = roadsynth(&["orchestrator", "schema"]);
    assert!(out.status.success());
    assert!(
        committed == String::from_utf8_lossy(&out.stdout),
        "orchestrator.schema.json is stale: regenerate it with \
         `roadsynth orchestrator schema > orchestrator.schema.json`"
    );
    let schema: Value = serde_json::from_str(&committed).expect("json");
    assert_eq!(schema["title"], "Orchestrator");
    assert_eq!(schema["additionalProperties"], false);
    for key in [
        "sources",
        "assets",
        "augment",
        "experiment",
        "models",
        "schedule",
        "executor",
        "concurrency",
        "retries",
        "outputs",
    ] {
        assert!(
            schema["properties"][key].is_object(),
            "{key} not in the schema"
        );
    }
    let text = std::fs::read_to_string(repo.join("orchestrator.yaml")).expect("orchestrator.yaml");
    assert!(text.starts_with("# yaml-language-server: $schema=./orchestrator.schema.json\n"));
    let out = roadsynth(&[
        "orchestrator",
        "validate",
        s(&repo.join("orchestrator.yaml")),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
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
    ingest_kitti(&kitti, &ds);
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

    // Adding train before val renumbers val (ids follow the export of the current version):
    // the old predictions now fall on train images. They used to score AP 0 with status 0; now
    // nothing is scored and the message says why.
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
    let out = roadsynth(&[
        "eval",
        "--dataset",
        s(&ds),
        "--split",
        "val",
        "--predictions",
        s(&preds),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("nothing to score") && stderr.contains("preds.json"),
        "{stderr}"
    );
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
    // The scales each arm trained on against the test set's (the same frames here).
    let sizes = md
        .lines()
        .find(|l| l.contains("Car box heights as a fraction of the image height"))
        .expect("a size line for Car");
    let real = sizes
        .split("real training ")
        .nth(1)
        .and_then(|r| r.split(';').next());
    let test = sizes
        .split("kitti-train test ")
        .nth(1)
        .map(|t| t.trim_end_matches('.'));
    assert_eq!(real, test, "{sizes}");
    assert!(real.is_some_and(|r| r.contains("(n = ")), "{sizes}");
    let html = std::fs::read_to_string(report.join("report.html")).expect("report.html");
    assert!(html.contains("<svg") && !html.contains("https://"));
    // Same inputs: the experiment is not trained again.
    let again = ok(&["run", s(&file)]);
    assert!(again.contains("experiment: up to date"), "{again}");
}

/// Every file under `dir` with its bytes, by path relative to `dir`.
fn tree_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).expect("prefix");
                out.insert(
                    rel.display().to_string(),
                    std::fs::read(&path).expect("read"),
                );
            }
        }
    }
    out
}

/// The names under a dataset's `versions/` (complete versions and hidden staging folders).
fn version_entries(dataset: &Path) -> Vec<String> {
    std::fs::read_dir(dataset.join("versions"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `dir` holds a `.parquet` file at any depth.
fn holds_parquet(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let p = e.path();
            if p.is_dir() {
                holds_parquet(&p)
            } else {
                p.extension().is_some_and(|x| x == "parquet")
            }
        })
    })
}

/// Starts `roadsynth run FILE` and returns it once its augment stage has begun writing its
/// version: a staging folder of this very process (`roadsynth` execs the worker, so the pid is
/// the same) holds a Parquet part. Waiting for that, not for a time, makes the signal land
/// mid-write however busy the machine is.
#[allow(
    clippy::zombie_processes,
    reason = "the child is returned: the caller waits for it"
)]
fn run_until_augment_writes(file: &Path, dataset: &Path) -> std::process::Child {
    let shared = roadsynth_testkit::shared_root().expect("shared");
    let mut child = Command::new(env!("CARGO_BIN_EXE_roadsynth"))
        .args(["run", s(file)])
        .env("ROADSYNTH_SHARED", &shared)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mine = format!(".staging-{}-", child.id());
    let started = std::time::Instant::now();
    loop {
        let writing = version_entries(dataset)
            .iter()
            .filter(|n| n.starts_with(&mine))
            .any(|n| holds_parquet(&dataset.join("versions").join(n)));
        if writing {
            return child;
        }
        if started.elapsed() > std::time::Duration::from_mins(5) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the augment stage never started writing");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn last_ledger(runs: &Path) -> Value {
    let mut ledgers: Vec<Value> = std::fs::read_dir(runs)
        .expect("runs")
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("ledger.json")).ok())
        .map(|t| serde_json::from_str(&t).expect("ledger json"))
        .collect();
    ledgers.sort_by_key(|l| l["started_at"].as_str().unwrap_or_default().to_owned());
    ledgers.pop().expect("a ledger")
}

/// Issue 6: a run killed (SIGKILL) or interrupted (Ctrl-C) in the middle of writing a dataset
/// leaves nothing half-visible, and the next run resumes to exactly the bytes of a run that was
/// never interrupted.
#[test]
fn issue_6_killed_or_interrupted_run_resumes_to_the_same_bytes() {
    let (Some(camvid), Some(cutouts)) = (
        roadsynth_testkit::shared("datasets/camvid"),
        roadsynth_testkit::shared("datasets/coco-animals-vehicles"),
    ) else {
        return;
    };
    let yolox = roadsynth_testkit::shared("models/yolox-nano/yolox_nano.onnx").expect("yolox");
    let repo = roadsynth_testkit::repo_root();
    let work = tempfile::tempdir().expect("tempdir");
    let file = work.path().join("orchestrator.yaml");
    std::fs::write(
        &file,
        format!(
            "sources:
  - {{dataset: camvid, format: coco, input: {camvid}/annotations_train.json, split: train}}
  - dataset: coco-cutouts
    format: coco
    input: {cutouts}/instances_subset.json
    images_root: {cutouts}/images
    split: train
assets:
  - {{name: animals, dataset: coco-cutouts, classes: [cow, sheep, horse, dog]}}
augment:
  - name: camvid-roadsynth
    dataset: camvid
    scenario: {repo}/scenarios/animals-on-roads.yaml
    assets: animals
    renderer: exemplar
    filter: true
    max_frames: 80
models:
  detector: {{path: {yolox}, sha256: 695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14}}
outputs: {{datasets: ds, assets: assets, runs: runs, reports: reports}}
",
            camvid = camvid.display(),
            cutouts = cutouts.display(),
            repo = repo.display(),
            yolox = yolox.display(),
        ),
    )
    .expect("write");
    let dataset = work.path().join("ds/camvid-roadsynth");
    let current = || std::fs::read_to_string(dataset.join("CURRENT")).ok();
    let run = || ok(&["run", s(&file)]);

    // The reference: one uninterrupted run.
    run();
    let version = current().expect("CURRENT").trim().to_owned();
    let reference = tree_bytes(&dataset.join("versions").join(&version));
    assert!(reference.keys().any(|k| k.ends_with(".parquet")));
    std::fs::remove_dir_all(&dataset).expect("remove");

    // Killed mid-way: no version is visible, only the staging folder it was writing.
    let mut child = run_until_augment_writes(&file, &dataset);
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert_eq!(current(), None, "a killed run published a version");
    let left = version_entries(&dataset);
    assert!(
        !left.is_empty() && left.iter().all(|n| n.starts_with(".staging-")),
        "{left:?}"
    );
    assert_eq!(last_ledger(&work.path().join("runs"))["status"], "running");

    // Ctrl-C mid-way: exits 130, says so in its ledger, and removes what it was writing.
    let mut child = run_until_augment_writes(&file, &dataset);
    let pid = child.id().to_string();
    let status = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    assert_eq!(child.wait().expect("wait").code(), Some(130));
    assert_eq!(current(), None);
    let ledger = last_ledger(&work.path().join("runs"));
    assert_eq!(ledger["status"], "interrupted", "{ledger}");
    let mine = format!(".staging-{pid}-");
    assert!(
        !version_entries(&dataset)
            .iter()
            .any(|n| n.starts_with(&mine)),
        "{:?}",
        version_entries(&dataset)
    );

    // Resumed: the same version, byte for byte, and nothing left over from the killed run.
    let resumed = run();
    assert!(resumed.contains("augmented"), "{resumed}");
    assert_eq!(current().as_deref().map(str::trim), Some(version.as_str()));
    assert_eq!(version_entries(&dataset), vec![version.clone()]);
    let again = tree_bytes(&dataset.join("versions").join(&version));
    assert_eq!(
        again.keys().collect::<Vec<_>>(),
        reference.keys().collect::<Vec<_>>()
    );
    for (path, bytes) in &reference {
        if path == "manifest.json" {
            // The manifest says when the version was written; all else in it is the same.
            let strip = |b: &[u8]| {
                let mut m: Value = serde_json::from_slice(b).expect("manifest");
                m.as_object_mut().expect("object").remove("created_at");
                m
            };
            assert_eq!(strip(&again[path]), strip(bytes));
        } else {
            assert!(again[path] == *bytes, "{path} differs after resuming");
        }
    }
}

/// Every file under `dir` (relative path → bytes), for byte-for-byte comparisons of outputs.
fn every_file(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("under root");
                out.insert(
                    rel.display().to_string(),
                    std::fs::read(&path).expect("read"),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Asserts two folders hold the same files with the same bytes, naming the first difference.
fn assert_same_files(a: &Path, b: &Path) {
    let (fa, fb) = (every_file(a), every_file(b));
    assert_eq!(
        fa.keys().collect::<Vec<_>>(),
        fb.keys().collect::<Vec<_>>(),
        "{} and {} hold different files",
        a.display(),
        b.display()
    );
    for (path, bytes) in &fa {
        assert!(
            bytes == &fb[path],
            "{path} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
    assert!(!fa.is_empty());
}

/// KITTI ingested twice: `train` (which the fog scenario augments) and `val` (copied through).
fn kitti_train_and_val(work: &Path) -> Option<std::path::PathBuf> {
    let kitti = roadsynth_testkit::shared("datasets/kitti-object")?;
    let ds = work.join("kitti");
    for split in ["train", "val"] {
        ok(&[
            "ingest",
            "--format",
            "kitti",
            "--input",
            s(&kitti),
            "--output",
            s(&ds),
            "--split",
            split,
        ]);
    }
    Some(ds)
}

/// `roadsynth augment` with the manifest's `created_at` pinned (`SOURCE_DATE_EPOCH`), so that two
/// outputs can be compared file by file.
fn augment_fog(ds: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_roadsynth"))
        .args([
            "augment",
            "--scenario",
            "../../scenarios/weather-fog.yaml",
            "--dataset",
        ])
        .args([s(ds), "--output", s(out)])
        .args(extra)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .expect("run roadsynth")
}

fn commit_shards(out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_roadsynth"))
        .args(["dataset", "commit-shards", "--output", s(out)])
        .args(extra)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .expect("run roadsynth")
}

#[test]
fn issue_8_shards_commit_to_the_single_machine_bytes_and_bad_sets_are_refused() {
    let work = tempfile::tempdir().expect("tempdir");
    let Some(ds) = kitti_train_and_val(work.path()) else {
        return;
    };
    let single = work.path().join("single");
    let out = augment_fog(&ds, &single, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sharded = work.path().join("sharded");
    let shards = work.path().join("sharded.shards");
    let shard = |i: &str, extra: &[&str]| {
        let mut args = vec!["--shard", i, "--workers", "1"];
        args.extend_from_slice(extra);
        let out = augment_fog(&ds, &sharded, &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8")
    };
    let first = shard("0/3", &[]);
    assert!(
        first.starts_with("shard 0/3: augmented 6 frames"),
        "{first}"
    );
    shard("2/3", &[]);
    // Incomplete: the missing shard is named; nothing is written.
    let refused = commit_shards(&sharded, &[]);
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("shards 1 of 3 are missing"), "{err}");
    assert!(!sharded.exists());
    // Inconsistent: a shard run with another seed is named with the field that differs.
    shard("1/3", &["--seed", "6"]);
    let refused = commit_shards(&sharded, &[]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(
            "inconsistent shard set: shard-00001-of-00003 has seed = 6, shard-00000-of-00003 has 5"
        ),
        "{err}"
    );
    // A retry (here: the right settings) replaces it; a shard run twice writes the same bytes.
    shard("1/3", &[]);
    let shard_one = shards.join("shard-00001-of-00003");
    let before = every_file(&shard_one);
    shard("1/3", &[]);
    assert!(
        before == every_file(&shard_one),
        "a retried shard wrote other bytes"
    );
    // Shards of a different count are refused.
    shard("0/2", &[]);
    let refused = commit_shards(&sharded, &[]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("shards of different runs"), "{err}");
    std::fs::remove_dir_all(shards.join("shard-00000-of-00002")).expect("remove");
    let committed = commit_shards(&sharded, &["--shards", "3"]);
    assert!(
        committed.status.success(),
        "{}",
        String::from_utf8_lossy(&committed.stderr)
    );
    assert_same_files(&single, &sharded);
    assert!(
        !shards.exists(),
        "the shard outputs are removed after the commit"
    );
}

/// A local Ray cluster on this machine: a head and a second worker node, one CPU each, each with
/// its own temporary folder. Each node is a `ray start --block` child of the test; dropping the
/// guard sends it SIGTERM, on which it stops the processes it started (only this cluster's, where
/// `ray stop` would stop every Ray process on the machine), and SIGKILL if it has not exited in
/// 30 s.
struct RayCluster {
    address: String,
    nodes: Vec<std::process::Child>,
    dir: tempfile::TempDir,
}

impl RayCluster {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let address = format!("127.0.0.1:{port}");
        let mut cluster = Self {
            address: address.clone(),
            nodes: Vec::new(),
            dir,
        };
        let port = port.to_string();
        cluster.node(
            "head",
            &["--head", "--port", &port, "--include-dashboard=false"],
        );
        cluster.node("worker", &["--address", &address]);
        cluster
    }

    fn node(&mut self, name: &str, args: &[&str]) {
        let temp = self.dir.path().join(name);
        let log = self.dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log");
        // The `ray` CLI of the Python that `python_module("ray")` checked.
        let child = Command::new("python3")
            .args(["-m", "ray.scripts.scripts", "start"])
            .args(args)
            .args(["--block", "--num-cpus", "1", "--disable-usage-stats"])
            .args(["--object-store-memory", "100000000", "--temp-dir", s(&temp)])
            // Stop at once on SIGTERM (no draining for services this cluster never runs).
            .env("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "0")
            .env("RAY_USAGE_STATS_ENABLED", "0")
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("ray start");
        self.nodes.push(child);
        let started = std::time::Instant::now();
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Ray runtime started") {
                return;
            }
            let exited = self
                .nodes
                .last_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none() && started.elapsed().as_secs() < 180,
                "ray start ({name}) did not come up: {text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

impl Drop for RayCluster {
    fn drop(&mut self) {
        // Worker node first, then the head.
        for node in self.nodes.iter_mut().rev() {
            let _ = Command::new("kill")
                .args(["-TERM", &node.id().to_string()])
                .status();
            let started = std::time::Instant::now();
            while node.try_wait().ok().flatten().is_none() && started.elapsed().as_secs() < 30 {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            let _ = node.kill();
            let _ = node.wait();
        }
    }
}

/// Runs `cmd`, killing it after `limit` (a stuck cluster fails the test instead of hanging it).
fn output_within(cmd: &mut Command, limit: std::time::Duration) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = cmd
        .stdout(std::fs::File::create(&out).expect("out"))
        .stderr(std::fs::File::create(&err).expect("err"))
        .spawn()
        .expect("spawn");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            break child.wait().expect("wait");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    Output {
        status,
        stdout: std::fs::read(&out).expect("out"),
        stderr: std::fs::read(&err).expect("err"),
    }
}

#[test]
fn issue_8_ray_shards_commit_to_the_single_machine_bytes() {
    let work = tempfile::tempdir().expect("tempdir");
    let Some(ds) = kitti_train_and_val(work.path()) else {
        return;
    };
    if !roadsynth_testkit::python_module("ray") {
        return;
    }
    let single = work.path().join("single");
    let out = augment_fog(&ds, &single, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let cluster = RayCluster::start();
    let bin = Path::new(env!("CARGO_BIN_EXE_roadsynth"));
    let marker = work.path().join("killed");
    let ray_out = work.path().join("ray");
    // Three shards on two one-CPU nodes; shard 1's first attempt kills itself (and the Ray worker
    // running it) with SIGKILL after writing 3 of its 6 variants.
    let run = output_within(
        Command::new("python3")
            .arg("../../ray/driver.py")
            .args([
                "--address",
                &cluster.address,
                "--shards",
                "3",
                "--max-retries",
                "2",
            ])
            .args([
                "--worker",
                s(&bin.with_file_name("roadsynth-worker")),
                "--roadsynth",
                s(bin),
            ])
            .args(["--", "--scenario", "../../scenarios/weather-fog.yaml"])
            .args(["--dataset", s(&ds), "--output", s(&ray_out)])
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .env(
                "ROADSYNTH_TEST_KILL_SHARD",
                format!("1:3:{}", marker.display()),
            ),
        std::time::Duration::from_mins(5),
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
    );
    assert!(run.status.success(), "{stdout}\n{stderr}");
    let killed = std::fs::read_to_string(&marker).expect("shard 1's first attempt was killed");
    let on_disk: u64 = killed
        .split(" with ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("bytes on disk");
    assert!(
        killed.contains("killed after 3 variants") && on_disk > 0,
        "killed mid-way, with part of its output written: {killed}"
    );
    for i in 0..3 {
        assert!(
            stdout.contains(&format!("driver: shard {i}/3 done")),
            "{stdout}"
        );
    }
    // Ray forwards the streamed lines when it gets to them; the driver's own report of each
    // shard carries its progress for certain.
    for i in 0..3 {
        let done = stdout
            .lines()
            .find(|l| l.starts_with(&format!("driver: shard {i}/3 done")))
            .expect("shard reported");
        assert!(
            done.contains(&format!("last: progress: shard {i}/3: "))
                && !done.contains(" 0 progress lines"),
            "progress of shard {i}: {done}"
        );
    }
    assert_same_files(&single, &ray_out);

    // The same through `roadsynth run` with `executor: ray` gives what the local executor gives.
    let file = work.path().join("o.yaml");
    let kitti = roadsynth_testkit::shared("datasets/kitti-object").expect("checked above");
    let config = |executor: &str, outputs: &str| {
        format!(
            "sources:\n  - {{dataset: kitti, format: kitti, input: {}}}\naugment:\n  - {{name: fog, dataset: kitti, scenario: {}}}\n{executor}outputs:\n  datasets: {outputs}/ds\n  runs: {outputs}/runs\n",
            kitti.display(),
            Path::new("../../scenarios/weather-fog.yaml")
                .canonicalize()
                .expect("scenario")
                .display(),
        )
    };
    let ray_exec = format!(
        "executor: {{kind: ray, address: \"{}\", shards: 2, num_cpus: 1, max_retries: 1}}\n",
        cluster.address
    );
    std::fs::write(&file, config(&ray_exec, "ray-run")).expect("write");
    let run = output_within(
        Command::new(bin)
            .args(["run", s(&file)])
            .env("SOURCE_DATE_EPOCH", "1700000000"),
        std::time::Duration::from_mins(5),
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("augment fog: 2 shards on the Ray cluster"),
        "{stdout}"
    );
    drop(cluster);
    std::fs::write(&file, config("", "local-run")).expect("write");
    let local = Command::new(bin)
        .args(["run", s(&file)])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .expect("run");
    assert!(
        local.status.success(),
        "{}",
        String::from_utf8_lossy(&local.stderr)
    );
    // The input path differs (it is in the provenance): compare the frames and quarantine tables.
    let tables = |root: &Path| -> BTreeMap<String, Vec<u8>> {
        every_file(&root.join("ds/fog"))
            .into_iter()
            .filter(|(path, _)| path.ends_with(".parquet"))
            .map(|(path, bytes)| {
                (
                    path.split_once('/')
                        .map_or(path.clone(), |p| p.1.to_string()),
                    bytes,
                )
            })
            .collect()
    };
    let (ray_tables, local_tables) = (
        tables(&work.path().join("ray-run")),
        tables(&work.path().join("local-run")),
    );
    assert!(!ray_tables.is_empty());
    assert!(
        ray_tables == local_tables,
        "the Ray executor's tables differ from the local one's"
    );
}

#[test]
fn issue_8_executor_settings_are_checked_at_their_place() {
    let work = tempfile::tempdir().expect("tempdir");
    let file = work.path().join("o.yaml");
    std::fs::write(
        &file,
        "sources: []\nexecutor:\n  kind: ray\n  shards: 0\n  num_cpus: 0\n  gpus: 1\n",
    )
    .expect("write");
    let out = roadsynth(&["run", s(&file)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for (line, what) in [(4, "shards"), (5, "num_cpus"), (6, "gpus")] {
        assert!(
            err.contains(&format!("o.yaml:{line}:")) && err.contains(what),
            "{err}"
        );
    }
    std::fs::write(
        &file,
        "sources: []\nexecutor:\n  kind: local\n  shards: 4\n",
    )
    .expect("write");
    let err = String::from_utf8_lossy(&roadsynth(&["run", s(&file)]).stderr).into_owned();
    assert!(
        err.contains("o.yaml:4:") && err.contains("`shards` is a setting of `kind: ray`"),
        "{err}"
    );
}

#[test]
fn issue_7_external_trainer_hook_scores_yolox_on_road_animals() {
    let (Some(kitti), Some(animals), Some(_model)) = (
        roadsynth_testkit::shared("datasets/kitti-object"),
        roadsynth_testkit::shared("datasets/road-animals"),
        roadsynth_testkit::shared("models/yolox-nano/yolox_nano.onnx"),
    ) else {
        return;
    };
    // The script decodes with cv2 when installed, else with Pillow (which rerun-sdk brings).
    if !roadsynth_testkit::python_module("onnxruntime")
        || !roadsynth_testkit::python_module("numpy")
        || !roadsynth_testkit::python_module("PIL")
    {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let script = roadsynth_testkit::package_dir()
        .join("../../detector/external/yolox_onnx_predict.py")
        .canonicalize()
        .expect("the shipped YOLOX script");
    let file = w.join("o.yaml");
    // The arm trains on KITTI (the script trains nothing: it is the COCO-pretrained reference).
    let write = |command: &str| {
        std::fs::write(
            &file,
            format!(
                "sources:\n  - {{dataset: kitti, format: kitti, input: {}}}\n  - {{dataset: road-animals, format: coco, input: {}/annotations.json, split: test}}\nexperiment:\n  arms: {{real: kitti}}\n  epochs: 1\n  seeds: [1, 2]\n  tests:\n    - {{name: road-animals, dataset: road-animals, split: test}}\n  bootstrap: 200\n  external_trainer:\n    name: yolox-nano-pretrained\n    format: yolo\n    command: {command}\noutputs:\n  datasets: {}\n  runs: {}\n  reports: {}\n",
                kitti.display(),
                animals.display(),
                w.join("ds").display(),
                w.join("runs").display(),
                w.join("reports").display(),
            ),
        )
        .expect("write");
    };
    write(&format!(
        "[python3, {}, --images, \"{{test_images}}\", --output, \"{{predictions}}\"]",
        script.display()
    ));
    let shared = roadsynth_testkit::shared_root().expect("shared");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_roadsynth"))
            .args(args)
            .env("ROADSYNTH_SHARED", &shared)
            .output()
            .expect("run roadsynth")
    };
    let out = run(&["run", s(&file)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = Path::new(
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("experiment report: "))
            .expect("report path"),
    );
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("metrics.json")).expect("read"))
            .expect("json");
    let ap50 = &metrics["arms"]["real"]["test_sets"]["road-animals"]["classes"]["animal"]["ap50"];
    // The command takes no {seed}: it ran once, reported as the first seed.
    assert_eq!(ap50["seeds"].as_array().map(Vec::len), Some(1), "{ap50}");
    let value = ap50["mean"].as_f64().expect("animal AP50");
    eprintln!(
        "external YOLOX-nano on road-animals: animal AP50 {value:.3} (issue 7's pycocotools reference 0.779)"
    );
    // 14 animals: one detection ranked differently moves AP50 by about 0.02.
    assert!((value - 0.779).abs() <= 0.03, "animal AP50 {value}");
    let notes = metrics["notes"].to_string();
    assert!(notes.contains("yolox-nano-pretrained"), "{notes}");

    // What the command was given: the arm's training split alone, in YOLO layout, and the test
    // images with an image-info file that holds no labels.
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("run "))
        .and_then(|l| l.split_whitespace().next())
        .expect("run id");
    let external = w.join("runs").join(id).join("external");
    let data = std::fs::read_to_string(external.join("real-seed1/train/data.yaml")).expect("yaml");
    assert!(
        data.contains("train: images/train") && !data.contains("val:"),
        "{data}"
    );
    let info: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(external.join("tests/road-animals/images.json")).expect("read"),
    )
    .expect("json");
    assert_eq!(info["images"].as_array().map(Vec::len), Some(10));
    assert!(info.get("annotations").is_none());
    assert!(
        external
            .join("real-seed1/predict-road-animals.log")
            .is_file()
    );

    // A failing command stops the stage with an error naming it, its status and its log.
    write("\"echo no weights in {workdir} >&2; exit 3\"");
    let out = run(&["run", s(&file), "--stage", "experiment"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for part in [
        "echo no weights in",
        "exit status: 3",
        "predict-road-animals.log",
        "| no weights in",
    ] {
        assert!(err.contains(part), "{part:?} missing from:\n{err}");
    }

    // With `retries`, a stage that fails once (here the command, the first time it runs) is
    // tried again and the run succeeds.
    write(&format!(
        "\"test -f {{workdir}}/tried || {{ touch {{workdir}}/tried; exit 75; }}; python3 {} --images {{test_images}} --output {{predictions}}\"",
        script.display()
    ));
    let mut text = std::fs::read_to_string(&file).expect("read");
    text.push_str("retries: 1\n");
    std::fs::write(&file, text).expect("write");
    let out = run(&["run", s(&file), "--stage", "experiment"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("experiment failed") && err.contains("trying again (attempt 2 of 2)"),
        "{err}"
    );
}

fn text(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The experiment stage called directly, with a run recording: training losses, APs and
/// predictions against ground truth reach the `.rrd`; the report gets PR curves and examples.
#[test]
fn issue_7_experiment_records_losses_aps_and_predictions() {
    let (Some(kitti), Some(animals)) = (
        roadsynth_testkit::shared("datasets/kitti-object"),
        roadsynth_testkit::shared("datasets/road-animals"),
    ) else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let file = w.join("o.yaml");
    std::fs::write(
        &file,
        format!(
            "sources:
  - {{dataset: kitti, format: kitti, input: {kitti}}}
  - {{dataset: road-animals, format: coco, input: {animals}/annotations.json, split: test}}
experiment:
  arms: {{real: kitti}}
  epochs: 1
  seeds: [1]
  tests:
    - {{name: kitti-train, dataset: kitti, split: train}}
    - {{name: road-animals, dataset: road-animals, split: test}}
  bootstrap: 50
outputs:
  datasets: {ds}
  runs: {runs}
  reports: {reports}
",
            kitti = kitti.display(),
            animals = animals.display(),
            ds = w.join("ds").display(),
            runs = w.join("runs").display(),
            reports = w.join("reports").display(),
        ),
    )
    .expect("write");
    let config = roadsynth_cli::orchestrator::load(&file).expect("orchestrator file");
    roadsynth_cli::orchestrator::run_ingest(&config).expect("ingest");
    let spec = config.experiment.as_ref().expect("experiment block");
    let rrd = w.join("run.rrd");
    let rec = roadsynth_inspect::RunRecording::create(
        "roadsynth-test",
        &rrd,
        &roadsynth_inspect::RecordingConfig::default(),
    )
    .expect("recording");
    let report =
        roadsynth_cli::experiment::run(&config, spec, "test-run", Some(&rec)).expect("experiment");
    let stats = rec
        .finish(std::time::Duration::from_secs(20))
        .expect("finish");
    // Both test sets are small enough to be logged whole (18 KITTI and 10 road-animals images).
    assert_eq!(stats.eval_frames, 28, "{stats:?}");
    assert!(rrd.is_file());

    // The report: a PR curve per class with ground truth (the report checks each one's mean
    // against AP50), and road-animals images with the arm's detections.
    let html = text(&report.join("report.html"));
    assert!(html.contains("Precision-recall per class"), "no PR curves");
    assert!(html.contains("animal (IoU 0.50)") && html.contains("Car (IoU 0.50)"));
    assert_eq!(
        html.matches("<figure").count(),
        3,
        "one example per image and arm"
    );
    assert!(
        !html.contains("not yet part of this report"),
        "stale caveat"
    );
    assert!(
        html.len() < 3_000_000,
        "report.html is {} bytes",
        html.len()
    );

    if !roadsynth_testkit::python_module("rerun") {
        return;
    }
    let verify = Command::new("rerun")
        .args(["rrd", "verify"])
        .arg(&rrd)
        .output()
        .expect("rerun rrd verify");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let print = Command::new("rerun")
        .args(["rrd", "print"])
        .arg(&rrd)
        .output()
        .expect("rerun rrd print");
    assert!(print.status.success());
    let listing = String::from_utf8_lossy(&print.stdout);
    for entity in [
        "/metrics/train/real/seed1/loss ",
        "/metrics/eval/kitti-train/real/seed1/AP50/Car ",
        "/metrics/eval/kitti-train/real/seed1/AP/Pedestrian ",
        "/metrics/eval/road-animals/real/seed1/AP50/animal ",
        "/eval/image/predictions ",
        "/eval/image/ground_truth ",
    ] {
        assert!(
            listing.contains(entity),
            "{entity} is not in the recording:\n{listing}"
        );
    }
}

/// ARCHITECTURE.md's crate table, each crate's `Cargo.toml` description and the first line of its
/// `lib.rs` say the same thing, and every workspace crate is in the table.
#[test]
fn every_crate_is_described_alike_in_the_architecture_table_cargo_toml_and_lib_rs() {
    let repo = roadsynth_testkit::repo_root();
    let architecture = std::fs::read_to_string(repo.join("ARCHITECTURE.md")).expect("read");
    let rows: Vec<(String, String, String)> = architecture
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
            let [name, folder, description] = cells.as_slice() else {
                return None;
            };
            let name = name.trim().strip_prefix('`')?.strip_suffix('`')?;
            let folder = folder.trim().strip_prefix('`')?.strip_suffix('`')?;
            repo.join(folder).join("Cargo.toml").is_file().then(|| {
                (
                    name.to_owned(),
                    folder.to_owned(),
                    description.trim().to_owned(),
                )
            })
        })
        .collect();
    let workspace = std::fs::read_to_string(repo.join("Cargo.toml")).expect("Cargo.toml");
    let members = workspace
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix('"')?
                .strip_suffix("\",")
                .map(str::to_owned)
        })
        .filter(|m| repo.join(m).join("Cargo.toml").is_file());
    for member in members {
        assert!(
            rows.iter().any(|(_, folder, _)| *folder == member),
            "{member} is not in ARCHITECTURE.md's crate table"
        );
    }
    for (name, folder, description) in &rows {
        let cargo = std::fs::read_to_string(repo.join(folder).join("Cargo.toml")).expect("read");
        assert!(
            cargo.contains(&format!("name = \"{name}\"")),
            "{folder}/Cargo.toml is not {name}"
        );
        assert!(
            cargo.contains(&format!("description = \"{description}\"")),
            "{folder}/Cargo.toml's description differs from ARCHITECTURE.md's: {description}"
        );
        let lib = std::fs::read_to_string(repo.join(folder).join("src/lib.rs")).expect("lib.rs");
        assert_eq!(
            lib.lines().next(),
            Some(format!("//! {description}").as_str()),
            "{folder}/src/lib.rs's first line"
        );
    }
    assert!(rows.len() >= 20, "{} crates in the table", rows.len());
}
