//! Integration tests of versioned Parquet datasets: round trip, projection, atomic versions,
//! carry-over of splits, and readability from polars and pyarrow.

use std::path::Path;

use roadsynth_dataset::{Dataset, DatasetWriter, Projection, WriteOptions};
use roadsynth_types::{
    Annotation, Attributes, BBox, Camera, Frame, FrameId, FrameRecord, ImageFormat, Kitti3d, Mask,
    Origin, Provenance, ProvenanceStep, QuarantineKind, Quarantined, Rle, RleCounts,
};

fn record(split: &str, i: u32) -> FrameRecord {
    let image = format!("not-really-a-jpeg-{split}-{i}")
        .repeat(10)
        .into_bytes();
    let mut car = Annotation::real("car", BBox::new(1.0, 2.0, 30.5, 40.25));
    car.truncated = Some(0.25);
    car.occluded = Some(1);
    car.kitti = Some(Kitti3d {
        alpha: -0.2,
        dimensions_hwl: [1.5, 1.6, 3.9],
        location_xyz: [1.0, 1.65, 20.0],
        rotation_y: 0.1,
        score: None,
    });
    car.mask = Some(Mask::Polygons(vec![vec![1.0, 2.0, 30.0, 2.0, 30.0, 40.0]]));
    let mut deer = Annotation::real("deer", BBox::new(5.0, 5.0, 9.0, 9.0));
    deer.origin = Origin::Generated {
        operation: "insert_objects".into(),
        scenario: "animals".into(),
        seed: 7,
    };
    deer.attributes
        .insert("depth_m".into(), serde_json::json!(23.5));
    let mut crowd = Annotation::real("sheep", BBox::new(0.0, 0.0, 4.0, 4.0));
    crowd.crowd = true;
    crowd.mask = Some(Mask::Rle(Rle {
        size: [4, 4],
        counts: RleCounts::Runs(vec![0, 16]),
    }));
    let mut attributes = Attributes::new();
    attributes.insert("weather".into(), serde_json::json!("fog"));
    FrameRecord {
        frame: Frame {
            id: FrameId::from_image_bytes(&image),
            split: split.into(),
            source_uri: format!("file:///data/{i}.jpg"),
            image_name: format!("images/{i}.jpg"),
            image_format: ImageFormat::Jpeg,
            width: 64,
            height: 48,
            camera: Some(Camera::from_projection([
                700.0, 0.0, 600.0, 45.0, 0.0, 700.0, 180.0, -0.3, 0.0, 0.0, 1.0, 0.005,
            ])),
            semantic_label: Some(format!("labels/{i}.png")),
            sequence: Some("seq".into()),
            timestamp_ms: Some(f64::from(i) * 40.0),
            attributes,
            provenance: Provenance {
                source_format: "test".into(),
                parent: None,
                steps: vec![ProvenanceStep {
                    operation: "fog".into(),
                    scenario: Some("weather-fog".into()),
                    seed: Some(1),
                    params: serde_json::json!({"visibility_m": 150.0}),
                    tool_version: "0".into(),
                }],
            },
        },
        annotations: vec![car, deer, crowd],
        image: Some(image),
        semantic_label: Some(vec![1, 2, 3]),
    }
}

fn write(
    root: &Path,
    splits: &[(&str, u32)],
    options: WriteOptions,
) -> roadsynth_dataset::Manifest {
    let mut w = DatasetWriter::create(root, options).expect("create");
    for (split, n) in splits {
        for i in 0..*n {
            w.write(&record(split, i)).expect("write");
        }
    }
    w.quarantine(Quarantined {
        file: "label_2/000001.txt".into(),
        line: Some(3),
        column: None,
        split: splits[0].0.into(),
        kind: QuarantineKind::BadLabelLine,
        reason: "expected 15 fields, found 14".into(),
    });
    w.commit(serde_json::json!({"test": true})).expect("commit")
}

fn small_batches() -> WriteOptions {
    // Several batches and row groups per file, to exercise the flushing paths.
    WriteOptions {
        batch_rows: 3,
        row_group_bytes: 1,
        ..WriteOptions::default()
    }
}

#[test]
fn round_trip_keeps_every_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = write(dir.path(), &[("train", 10), ("val", 4)], small_batches());
    assert_eq!(m.frames(), 14);
    assert_eq!(m.splits["train"].annotations, 30);
    assert_eq!(m.class_counts()["deer"], 14);
    assert_eq!(m.quarantined, 1);
    assert_eq!(m.classes, ["car", "deer", "sheep"]);

    let ds = Dataset::open(dir.path()).expect("open");
    let train: Vec<FrameRecord> = ds
        .frames("train", Projection::Full)
        .expect("frames")
        .map(|r| r.expect("row"))
        .collect();
    assert_eq!(train.len(), 10);
    for (i, got) in (0..).zip(&train) {
        assert_eq!(got, &record("train", i));
    }
    let q = ds.quarantine().expect("quarantine");
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].location(), "label_2/000001.txt:3");
}

#[test]
fn projection_skips_image_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), &[("train", 5)], WriteOptions::default());
    let ds = Dataset::open(dir.path()).expect("open");
    for r in ds.all_frames(Projection::WithoutImages).expect("frames") {
        let r = r.expect("row");
        assert!(r.image.is_none() && r.semantic_label.is_none());
        assert_eq!(r.annotations.len(), 3);
    }
    for r in ds
        .all_frames(Projection::SemanticLabelsOnly)
        .expect("frames")
    {
        let r = r.expect("row");
        assert!(r.image.is_none());
        assert_eq!(r.semantic_label.as_deref(), Some(&[1u8, 2, 3][..]));
    }
}

#[test]
fn small_tables_round_trip() {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Row {
        frame_id: String,
        depth_m: Option<f64>,
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("plans/plan.parquet");
    let rows = vec![
        Row {
            frame_id: "a".into(),
            depth_m: Some(12.5),
        },
        Row {
            frame_id: "b".into(),
            depth_m: None,
        },
    ];
    roadsynth_dataset::table::write_table(&path, &rows).expect("write");
    assert_eq!(
        roadsynth_dataset::table::read_table::<Row>(&path).expect("read"),
        rows
    );
}

/// A table's binary column (an asset bank's PNG cut-outs) is written plain: a dictionary page and
/// min/max statistics of encoded blobs only cost time to write and to read.
#[test]
fn binary_columns_of_tables_have_no_dictionary_or_statistics() {
    use parquet::basic::Encoding;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Row {
        class: String,
        #[serde(with = "serde_bytes")]
        png: Vec<u8>,
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("assets.parquet");
    // Repeated blobs: a dictionary would be used if it were allowed.
    let rows: Vec<Row> = (0..64u8)
        .map(|i| Row {
            class: "deer".into(),
            png: vec![i % 4; 300],
        })
        .collect();
    roadsynth_dataset::table::write_table(&path, &rows).expect("write");
    assert_eq!(
        roadsynth_dataset::table::read_table::<Row>(&path).expect("read"),
        rows
    );
    let reader =
        SerializedFileReader::new(std::fs::File::open(&path).expect("open")).expect("parquet");
    let group = reader.metadata().row_group(0);
    let column = |name: &str| {
        (0..group.num_columns())
            .map(|i| group.column(i))
            .find(|c| c.column_path().string() == name)
            .expect("column")
    };
    let png = column("png");
    assert!(
        !png.encodings()
            .any(|e| matches!(e, Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY)),
        "png column is dictionary-encoded"
    );
    assert!(png.statistics().is_none(), "png column has statistics");
    // Other columns keep the defaults.
    assert!(column("class").statistics().is_some());
}

#[test]
fn versions_are_immutable_and_other_splits_carry_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let v1 = write(dir.path(), &[("train", 3)], WriteOptions::default());
    let v2 = write(dir.path(), &[("val", 2)], WriteOptions::default());
    assert!(v1.version.starts_with("v0001-") && v2.version.starts_with("v0002-"));
    assert_eq!(v2.parent.as_deref(), Some(v1.version.as_str()));
    assert_eq!(v2.splits["train"].frames, 3);
    assert_eq!(v2.splits["val"].frames, 2);
    // Both splits quarantined one item; train's is carried over with it.
    assert_eq!(v2.quarantined, 2);
    // The old version is still readable as it was.
    let old = Dataset::open(&dir.path().join("versions").join(&v1.version)).expect("open v1");
    assert_eq!(old.manifest().frames(), 3);
    let new = Dataset::open(dir.path()).expect("open current");
    assert_eq!(
        new.frames("train", Projection::Full)
            .expect("train")
            .count(),
        3
    );
    // Replacing instead of carrying over.
    let v3 = write(
        dir.path(),
        &[("test", 1)],
        WriteOptions {
            carry_other_splits: false,
            ..WriteOptions::default()
        },
    );
    assert_eq!(v3.splits.keys().collect::<Vec<_>>(), ["test"]);
}

#[test]
fn identical_input_gives_identical_bytes() {
    let (a, b) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
    );
    let ma = write(a.path(), &[("train", 6)], small_batches());
    let mb = write(b.path(), &[("train", 6)], small_batches());
    assert_eq!(ma.files, mb.files);
    assert_eq!(ma.version, mb.version);
}

#[test]
fn an_uncommitted_version_is_never_visible() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), &[("train", 2)], WriteOptions::default());
    let before = std::fs::read_to_string(dir.path().join("CURRENT")).expect("current");
    {
        let mut w = DatasetWriter::create(dir.path(), WriteOptions::default()).expect("create");
        for i in 0..5 {
            w.write(&record("train", i)).expect("write");
        }
        // Dropped without commit, as on an error mid-way.
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("CURRENT")).expect("current"),
        before
    );
    let entries: Vec<_> = std::fs::read_dir(dir.path().join("versions"))
        .expect("versions")
        .collect();
    assert_eq!(entries.len(), 1, "staging folder removed, one version left");
    assert_eq!(
        Dataset::open(dir.path()).expect("open").manifest().frames(),
        2
    );
}

/// Two writers started from the same version: the first to commit wins; the second, which would
/// have made a current version without the first one's split, fails and keeps nothing.
#[test]
fn issue_2_a_writer_that_lost_a_race_fails_instead_of_dropping_the_winners_split() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), &[("train", 2)], WriteOptions::default());
    let mut a = DatasetWriter::create(dir.path(), WriteOptions::default()).expect("a");
    let mut b = DatasetWriter::create(dir.path(), WriteOptions::default()).expect("b");
    a.write(&record("val", 0)).expect("a writes");
    b.write(&record("test", 0)).expect("b writes");
    let won = a.commit(serde_json::json!({})).expect("a commits");
    let err = b
        .commit(serde_json::json!({}))
        .expect_err("b lost the race");
    let message = err.to_string();
    assert!(
        matches!(
            err,
            roadsynth_dataset::DatasetError::ChangedMeanwhile { .. }
        ) && message.contains(&won.version)
            && message.contains("run it again"),
        "{message}"
    );
    let current = Dataset::open(dir.path()).expect("open");
    assert_eq!(current.manifest().version, won.version);
    assert_eq!(current.manifest().split_names(), ["train", "val"]);
    let versions = std::fs::read_dir(dir.path().join("versions"))
        .expect("versions")
        .count();
    assert_eq!(versions, 2, "the loser's staging folder is gone");
    // Started after the win, a writer commits as usual.
    write(dir.path(), &[("test", 1)], WriteOptions::default());
    assert_eq!(
        Dataset::open(dir.path())
            .expect("open")
            .manifest()
            .split_names(),
        ["train", "val", "test"]
    );
}

/// Split names become folders (`frames/split=NAME`): one that is not a plain name never gets one.
#[test]
fn issue_2_a_split_name_that_is_not_a_plain_folder_name_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    for bad in [
        "",
        ".",
        "..",
        "../out",
        "a/b",
        "my split",
        ".hidden",
        &"x".repeat(65),
    ] {
        let mut w = DatasetWriter::create(dir.path(), WriteOptions::default()).expect("create");
        let err = w.write(&record(bad, 0)).expect_err(bad);
        assert!(
            matches!(&err, roadsynth_dataset::DatasetError::BadSplitName(name) if name == bad),
            "{bad:?}: {err}"
        );
    }
    for good in ["train", "val-fog", "test_2026.1"] {
        roadsynth_dataset::check_split_name(good).expect(good);
    }
    assert!(!dir.path().join("out").exists());
    assert!(!dir.path().join("CURRENT").exists(), "nothing committed");
}

/// A killed writer's staging folder used to stay forever (only `roadsynth run` swept them); the
/// next writer on the machine removes those of dead processes, and leaves live ones alone.
#[test]
fn issue_2_a_killed_writers_staging_folder_is_removed_by_the_next_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), &[("train", 1)], WriteOptions::default());
    let host = roadsynth_dataset::host_name();
    let staging = |pid: u32| {
        dir.path().join("versions").join(format!(
            "{}{pid}-1-{host}",
            roadsynth_dataset::STAGING_PREFIX
        ))
    };
    // Above Linux's largest pid (2^22): no such process.
    let (dead, live) = (staging(4_194_399), staging(std::process::id()));
    for d in [&dead, &live] {
        std::fs::create_dir_all(d.join("frames")).expect("mkdir");
    }
    let writer = DatasetWriter::create(dir.path(), WriteOptions::default()).expect("create");
    assert!(!dead.exists(), "the dead writer's folder is gone");
    assert!(live.exists(), "a live writer's folder stays");
    drop(writer);
}

#[test]
fn not_a_dataset_names_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = Dataset::open(dir.path()).expect_err("empty folder");
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn polars_reads_the_frames_table() {
    use polars::prelude::*;
    let dir = tempfile::tempdir().expect("tempdir");
    let m = write(dir.path(), &[("train", 7)], small_batches());
    let file = dir
        .path()
        .join("versions")
        .join(&m.version)
        .join("frames/split=train/part-00000.parquet");
    let df = LazyFrame::scan_parquet(
        PlRefPath::from(file.to_str().expect("utf8")),
        ScanArgsParquet::default(),
    )
    .expect("scan")
    .select([col("frame_id"), col("width"), col("annotations")])
    .collect()
    .expect("collect");
    assert_eq!(df.height(), 7);
    let widths = df.column("width").expect("width").u32().expect("u32");
    assert!(widths.iter().all(|w| w == Some(64)));
    let ann = df
        .column("annotations")
        .expect("annotations")
        .list()
        .expect("list");
    assert_eq!(ann.get_as_series(0).expect("row 0").len(), 3);
}

#[test]
fn pyarrow_reads_the_dataset() {
    if !roadsynth_testkit::python_module("pyarrow") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let m = write(dir.path(), &[("train", 4), ("val", 3)], small_batches());
    let version = dir.path().join("versions").join(&m.version);
    let script = r#"
import sys, json, pyarrow.dataset as ds, pyarrow.parquet as pq
root = sys.argv[1]
t = ds.dataset(root + "/frames", format="parquet", partitioning="hive").to_table()
anns = t.column("annotations").to_pylist()
q = pq.read_table(root + "/quarantine.parquet")
print(json.dumps({"rows": t.num_rows, "anns": sum(len(a) for a in anns),
                  "first_class": anns[0][0]["class"], "x1": anns[0][0]["bbox"]["x1"],
                  "meta": t.schema.metadata[b"roadsynth.schema_version"].decode(), "quarantine": q.num_rows}))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&version)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(got["rows"], 7);
    assert_eq!(got["anns"], 21);
    assert_eq!(got["first_class"], "car");
    assert_eq!(got["x1"], 30.5);
    assert_eq!(got["meta"], "1");
    assert_eq!(got["quarantine"], 1);
}

/// Every file of a version folder, relative path → bytes; `manifest.json` without `created_at`.
fn version_files(root: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let dataset = Dataset::open(root).expect("open");
    let dir = dataset.version_dir();
    let mut out = std::collections::BTreeMap::new();
    for entry in &dataset.manifest().files {
        out.insert(
            entry.path.clone(),
            std::fs::read(dir.join(&entry.path)).expect("read"),
        );
    }
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("manifest"))
            .expect("json");
    manifest["created_at"] = serde_json::Value::Null;
    out.insert("manifest.json".into(), manifest.to_string().into_bytes());
    out
}

#[test]
fn issue_8_shards_commit_to_the_bytes_of_one_writer_and_refuse_bad_sets() {
    use roadsynth_dataset::shard::{
        ItemRange, ShardError, ShardId, ShardRun, ShardWriter, commit_shards, output_options,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // 150 frames to augment (more than one 64-row batch) and 20 copied through; every 7th
    // train item is quarantined.
    let items: Vec<FrameRecord> = (0..150)
        .map(|i| record("train", i))
        .chain((0..20).map(|i| record("val", i)))
        .collect();
    let quarantined = |i: usize| Quarantined {
        file: format!("item-{i}"),
        line: Some(u32::try_from(i).expect("small")),
        column: None,
        split: "train".into(),
        kind: QuarantineKind::StageFailed,
        reason: format!("item {i} failed"),
    };
    let provenance = serde_json::json!({"operation": "augment", "seed": 3, "x": 0.1});
    let single = dir.path().join("single");
    let mut w = DatasetWriter::create(&single, output_options()).expect("create");
    for (i, r) in items.iter().enumerate() {
        if i < 150 && i % 7 == 0 {
            w.quarantine(quarantined(i));
        } else {
            w.write(r).expect("write");
        }
    }
    let single_manifest = w.commit(provenance.clone()).expect("commit");

    let run = ShardRun {
        stage: "augment".into(),
        input: "in".into(),
        input_version: "v0001-00000000".into(),
        scenario: "fog".into(),
        scenario_hash: "h".into(),
        seed: 3,
        settings: serde_json::json!({"max_frames": null}),
        tool_version: "0".into(),
        provenance: provenance.clone(),
    };
    let parts = [(150, true), (20, false)];
    let shards = dir.path().join("out.shards");
    let write_shard = |index: u32, run: &ShardRun| {
        let id = ShardId::new(index, 3).expect("id");
        let range = id.items(&parts);
        let (shard, mut w) = ShardWriter::create(&shards, id).expect("shard");
        for i in range.clone() {
            let i = usize::try_from(i).expect("small");
            if i < 150 && i % 7 == 0 {
                w.quarantine(quarantined(i));
            } else {
                w.write(&items[i]).expect("write");
            }
        }
        let items = ItemRange {
            start: range.start,
            end: range.end,
            total: 170,
        };
        shard
            .finish(
                w,
                items,
                run.clone(),
                serde_json::json!({"frames": range.end - range.start}),
            )
            .expect("finish")
            .0
    };
    let out = dir.path().join("out");
    let shard0 = write_shard(0, &run);
    write_shard(2, &run);
    let err = commit_shards(&shards, &out, None).expect_err("incomplete");
    assert!(
        matches!(&err, ShardError::Missing { missing, .. } if missing == &[1]),
        "{err}"
    );
    assert!(
        err.to_string().contains("shards 1 of 3 are missing"),
        "{err}"
    );

    // A shard of another seed is refused, naming the field.
    let other = ShardRun {
        seed: 4,
        ..run.clone()
    };
    write_shard(1, &other);
    let err = commit_shards(&shards, &out, None).expect_err("inconsistent");
    assert!(err.to_string().contains("seed = 4"), "{err}");
    assert!(!out.join("CURRENT").exists(), "nothing is written");

    // A retried shard writes the same bytes (and replaces a different earlier output).
    let before = version_files(&shard0.join("data"));
    let json = std::fs::read(shard0.join("shard.json")).expect("shard.json");
    write_shard(0, &run);
    assert_eq!(version_files(&shard0.join("data")), before);
    assert_eq!(
        std::fs::read(shard0.join("shard.json")).expect("again"),
        json
    );
    write_shard(1, &run);

    let err = commit_shards(&shards, &out, Some(4)).expect_err("wrong count");
    assert!(err.to_string().contains("expected a 4-shard run"), "{err}");
    let committed = commit_shards(&shards, &out, Some(3)).expect("commit");
    assert_eq!(committed.summary["frames"], 170);
    assert_eq!(committed.manifest.version, single_manifest.version);
    assert_eq!(version_files(&out), version_files(&single));
}
