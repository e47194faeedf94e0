//! The stages: the flow's order, bounds and failure handling on synthetic items, and the augment
//! stage end to end on the shared `CamVid` frames.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use roadsynth_stages::flow::{self, Flow, FlowOptions, ItemFailed};

/// A well-mixed number from `x` (splitmix64): per-item delays without a random generator.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Runs `test` on its own thread and fails if it takes longer than a minute: a deadlocked flow
/// fails the test instead of hanging the suite.
fn within_a_minute(test: impl FnOnce() + Send + 'static) {
    let (done, finished) = std::sync::mpsc::channel();
    let runner = std::thread::spawn(move || {
        test();
        let _ = done.send(());
    });
    match finished.recv_timeout(Duration::from_mins(1)) {
        Ok(()) => runner.join().expect("test thread"),
        // The test panicked: report its panic.
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = runner.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("deadlock: no end in 60 s"),
    }
}

/// Bytes in flight, as the test sees them: added when an item is made, taken off when the
/// consumer is done with it; the high-water mark is kept.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    high: AtomicUsize,
}

impl InFlight {
    fn add(&self, n: usize) {
        let now = self.now.fetch_add(n, Ordering::SeqCst) + n;
        self.high.fetch_max(now, Ordering::SeqCst);
    }

    fn sub(&self, n: usize) {
        self.now.fetch_sub(n, Ordering::SeqCst);
    }
}

#[test]
fn flow_keeps_input_order_under_random_delays_and_names_its_threads() {
    within_a_minute(flow_keeps_input_order_under_random_delays_and_names_its_threads_);
}

fn flow_keeps_input_order_under_random_delays_and_names_its_threads_() {
    // Inputs of 10 bytes, outputs of 40 (30 plus the input they carry): the input channel binds
    // by count (6), the output channel by bytes (2 outputs), so the head often has to be admitted.
    let options = FlowOptions {
        workers: 4,
        channel_items: 6,
        channel_bytes: 100,
    };
    let mut flow = Flow::new("order", options).expect("flow");
    let source_thread = Arc::new(Mutex::new(None::<String>));
    let seen_by_source = source_thread.clone();
    let items = (0..300u64).map(move |i| {
        if i == 0 {
            *seen_by_source.lock().expect("lock") = std::thread::current().name().map(String::from);
        }
        Ok::<_, std::convert::Infallible>(i)
    });
    let (input, reader) = flow.source("reader", items, |_| 10).expect("source");
    let finished = Arc::new(AtomicU64::new(0));
    let finish_order = Arc::new(Mutex::new(Vec::new()));
    let (f, order) = (finished.clone(), finish_order.clone());
    let worker_names = Arc::new(Mutex::new(HashSet::new()));
    let names = worker_names.clone();
    let output = flow
        .workers(
            "square",
            input,
            move || {
                names.lock().expect("lock").insert(
                    std::thread::current()
                        .name()
                        .unwrap_or_default()
                        .to_string(),
                );
            },
            move |(), &i: &u64| {
                std::thread::sleep(Duration::from_micros(mix(i) % 3000));
                f.fetch_add(1, Ordering::SeqCst);
                order.lock().expect("lock").push(i);
                i * i
            },
            |_| 30,
        )
        .expect("workers");
    let mut got = Vec::new();
    let report = flow
        .sink(output, |seq, i, square| {
            got.push((seq, i, square));
            Ok::<_, std::convert::Infallible>(())
        })
        .expect("sink");
    assert_eq!(reader.join().expect("join").expect("source"), 300);
    flow.finish().expect("finish");

    assert_eq!(got.len(), 300);
    for (n, (seq, i, square)) in got.into_iter().enumerate() {
        assert_eq!(seq, n as u64);
        assert_eq!(i, n as u64);
        assert_eq!(square, Ok(i * i));
    }
    let order = finish_order.lock().expect("lock");
    assert!(
        order.windows(2).any(|w| w[1] < w[0]),
        "the workers finished in order: the test did not exercise reordering"
    );
    // Two outputs fit the output budget, plus the admitted head.
    assert!(
        report.reorder_high_water > 1 && report.reorder_high_water <= 3,
        "{report:?}"
    );
    assert_eq!(finished.load(Ordering::SeqCst), 300);
    assert_eq!(
        source_thread.lock().expect("lock").as_deref(),
        Some("order-reader")
    );
    let names = worker_names.lock().expect("lock");
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(
        names.iter().all(|n| n.starts_with("order-worker-")),
        "{names:?}"
    );
}

#[test]
fn channel_bounds_the_bytes_in_flight_and_blocks_the_producer() {
    const ITEM: usize = 1 << 20;
    const BUDGET: usize = 4 << 20;
    const ITEMS: usize = 40;
    // Plenty of item slots: only the byte budget can hold the producer back.
    let (tx, mut rx) = flow::channel::<Vec<u8>>(100, BUDGET);
    let in_flight = Arc::new(InFlight::default());
    let consumed = Arc::new(AtomicUsize::new(0));
    let (flight, done) = (in_flight.clone(), consumed.clone());
    let producer = std::thread::spawn(move || {
        let mut ahead = Vec::new();
        for k in 0..ITEMS {
            let item = vec![k as u8; ITEM];
            flight.add(ITEM);
            tx.blocking_send(item, ITEM).expect("send");
            // Sent so far minus consumed so far: what the channel held when this send returned.
            ahead.push(k + 1 - done.load(Ordering::SeqCst));
        }
        ahead
    });
    while let Some(item) = rx.blocking_recv() {
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(item.len(), ITEM);
        // Counted off before the drop gives the permits back and the producer makes the next.
        consumed.fetch_add(1, Ordering::SeqCst);
        in_flight.sub(ITEM);
        drop(item);
    }
    let ahead = producer.join().expect("producer");
    assert_eq!(consumed.load(Ordering::SeqCst), ITEMS);
    let high = in_flight.high.load(Ordering::SeqCst);
    assert!(high <= BUDGET + ITEM, "{high} bytes in flight");
    // Once the budget is full, each send waits for a consumption: the producer never got more
    // than the budget's worth of items ahead of the slow consumer.
    let most_ahead = ahead.iter().copied().max().unwrap_or(0);
    assert!(most_ahead <= BUDGET / ITEM + 1, "{ahead:?}");
    assert!(
        most_ahead >= BUDGET / ITEM - 1,
        "the budget was never filled: {ahead:?}"
    );
}

#[test]
fn flow_with_a_slow_sink_holds_at_most_its_budgets() {
    within_a_minute(flow_with_a_slow_sink_holds_at_most_its_budgets_);
}

fn flow_with_a_slow_sink_holds_at_most_its_budgets_() {
    const ITEM: usize = 1 << 20;
    let options = FlowOptions {
        workers: 2,
        channel_items: 64,
        channel_bytes: 4 * ITEM,
    };
    let in_flight = Arc::new(InFlight::default());
    let consumed = Arc::new(AtomicUsize::new(0));
    let (flight, done) = (in_flight.clone(), consumed.clone());
    let ahead = Arc::new(AtomicUsize::new(0));
    let most_ahead = ahead.clone();
    let items = (0..40usize).map(move |k| {
        flight.add(ITEM);
        most_ahead.fetch_max(k + 1 - done.load(Ordering::SeqCst), Ordering::SeqCst);
        Ok::<_, std::convert::Infallible>(vec![k as u8; ITEM])
    });
    let mut flow = Flow::new("slow", options).expect("flow");
    let (input, reader) = flow.source("reader", items, Vec::len).expect("source");
    let output = flow
        .workers(
            "sum",
            input,
            || (),
            |(), v: &Vec<u8>| v.iter().map(|&b| u64::from(b)).sum::<u64>(),
            // The output is the input (already sized) plus a number: exactly 4 fit the budget.
            |_| 0,
        )
        .expect("workers");
    flow.sink(output, |seq, v, sum| {
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(sum, Ok(seq * ITEM as u64));
        drop(v);
        consumed.fetch_add(1, Ordering::SeqCst);
        in_flight.sub(ITEM);
        Ok::<_, std::convert::Infallible>(())
    })
    .expect("sink");
    assert_eq!(reader.join().expect("join").expect("source"), 40);
    flow.finish().expect("finish");
    // Two channels' budgets, the item the source is trying to send, and the admitted head.
    let high = in_flight.high.load(Ordering::SeqCst);
    assert!(
        high <= 2 * options.channel_bytes + 2 * ITEM,
        "{high} bytes in flight"
    );
    assert!(ahead.load(Ordering::SeqCst) <= 10, "{ahead:?}");
}

#[test]
fn a_failing_item_is_reported_for_that_item_and_the_rest_completes() {
    within_a_minute(a_failing_item_is_reported_for_that_item_and_the_rest_completes_);
}

fn a_failing_item_is_reported_for_that_item_and_the_rest_completes_() {
    let options = FlowOptions {
        workers: 3,
        channel_items: 4,
        channel_bytes: 1 << 20,
    };
    let mut flow = Flow::new("fail", options).expect("flow");
    let items = (0..50u64).map(Ok::<_, std::convert::Infallible>);
    let (input, reader) = flow.source("reader", items, |_| 8).expect("source");
    let inits = Arc::new(AtomicUsize::new(0));
    let counted = inits.clone();
    let output = flow
        .workers(
            "check",
            input,
            move || counted.fetch_add(1, Ordering::SeqCst),
            |_, &i: &u64| match i {
                7 => panic!("item seven is cursed"),
                11 => Err(format!("item {i} is odd")),
                _ => Ok(i + 1),
            },
            |_| 8,
        )
        .expect("workers");
    let mut got = Vec::new();
    flow.sink(output, |seq, i, out| {
        got.push((seq, i, out));
        Ok::<_, std::convert::Infallible>(())
    })
    .expect("sink");
    reader.join().expect("join").expect("source");
    flow.finish().expect("finish");
    assert_eq!(got.len(), 50);
    for (n, (seq, i, out)) in got.into_iter().enumerate() {
        assert_eq!((seq, i), (n as u64, n as u64));
        match i {
            7 => {
                let ItemFailed { message } = out.expect_err("item 7 panicked");
                assert!(message.contains("item seven is cursed"), "{message}");
            }
            11 => assert_eq!(out, Ok(Err("item 11 is odd".to_string()))),
            _ => assert_eq!(out, Ok(Ok(i + 1))),
        }
    }
    // Each worker built its state once, and the one that panicked built it again.
    assert_eq!(inits.load(Ordering::SeqCst), options.workers + 1);
}

#[test]
fn a_source_error_ends_the_flow_after_the_items_before_it() {
    let mut flow = Flow::new("broken", FlowOptions::default()).expect("flow");
    let items = (0..20u64).map(|i| if i == 12 { Err("disk on fire") } else { Ok(i) });
    let (input, reader) = flow.source("reader", items, |_| 8).expect("source");
    let output = flow
        .workers("pass", input, || (), |(), &i: &u64| i, |_| 8)
        .expect("workers");
    let mut got = Vec::new();
    flow.sink(output, |_, i, _| {
        got.push(i);
        Ok::<_, std::convert::Infallible>(())
    })
    .expect("sink");
    assert_eq!(reader.join().expect("join"), Err("disk on fire"));
    flow.finish().expect("finish");
    assert_eq!(got, (0..12).collect::<Vec<_>>());
}

#[test]
fn a_sink_error_stops_the_flow() {
    let options = FlowOptions {
        workers: 2,
        channel_items: 2,
        channel_bytes: 1 << 20,
    };
    let mut flow = Flow::new("stop", options).expect("flow");
    let pulled = Arc::new(AtomicUsize::new(0));
    let count = pulled.clone();
    let items = (0..1_000_000u64).map(move |i| {
        count.fetch_add(1, Ordering::SeqCst);
        Ok::<_, std::convert::Infallible>(i)
    });
    let (input, reader) = flow.source("reader", items, |_| 8).expect("source");
    let output = flow
        .workers("pass", input, || (), |(), &i: &u64| i, |_| 8)
        .expect("workers");
    let result = flow.sink(
        output,
        |seq, _, _| if seq == 5 { Err("full disk") } else { Ok(()) },
    );
    assert!(matches!(result, Err(flow::SinkError::Sink("full disk"))));
    // The source stops (without error: the sink's is the one to report) instead of reading on.
    let sent = reader.join().expect("join").expect("source");
    flow.finish().expect("finish");
    assert!(sent < 100, "{sent}");
    assert!(pulled.load(Ordering::SeqCst) < 100);
}

mod augment {
    use super::{Arc, Mutex, Path, PathBuf};
    use roadsynth_assets::{AssetBank, BuildOptions};
    use roadsynth_dataset::{Dataset, DatasetWriter, Projection, WriteOptions};
    use roadsynth_formats::{LoadOptions, coco, load_all};
    use roadsynth_stages::{
        AugmentConfig, AugmentSummary, BlendMode, FlowOptions, VariantObserver, augment,
    };
    use roadsynth_types::FrameRecord;

    /// A `COCO` annotation file as one split of the dataset at `root`.
    fn ingest(json: &Path, images: Option<&Path>, split: &str, root: &Path) {
        let scan = coco::scan(json, images, split).expect("scan");
        let mut writer = DatasetWriter::create(root, WriteOptions::default()).expect("create");
        load_all(scan.frames, &LoadOptions::default(), 16, |r| match r {
            Ok(record) => writer.write(&record),
            Err(problems) => panic!("quarantined: {problems:?}"),
        })
        .expect("write");
        writer
            .commit(serde_json::json!({"test": "stages"}))
            .expect("commit");
    }

    /// `CamVid` train (augmented) and val (copied through), and an asset bank of `COCO` animals.
    fn camvid_and_animals(work: &Path) -> Option<(PathBuf, PathBuf)> {
        let camvid = roadsynth_testkit::shared("datasets/camvid")?;
        let coco_dir = roadsynth_testkit::shared("datasets/coco-animals-vehicles")?;
        let ds = work.join("camvid");
        ingest(&camvid.join("annotations_train.json"), None, "train", &ds);
        ingest(&camvid.join("annotations_val.json"), None, "val", &ds);
        let cav = work.join("cav");
        ingest(
            &coco_dir.join("instances_subset.json"),
            Some(&coco_dir.join("images")),
            "train",
            &cav,
        );
        let classes = ["cat", "dog", "horse", "sheep", "cow", "bear"];
        let (bank, _) = AssetBank::build(
            &Dataset::open(&cav).expect("open"),
            &BuildOptions {
                classes: classes.iter().map(ToString::to_string).collect(),
                ..BuildOptions::default()
            },
        )
        .expect("bank");
        let assets = work.join("animals");
        bank.write(&assets).expect("write bank");
        Some((ds, assets))
    }

    const SCENARIO: &str = "
seed: 11
variants_per_frame: 2
splits: [train]
operations:
  - insert_objects:
      classes: [cow, sheep, horse, dog]
      label: animal
      count: [1, 2]
      distance_m: [5, 40]
      where: drivable
  - weather:
      fog:
        visibility_m: 200
";

    fn records(dir: &Path) -> Vec<FrameRecord> {
        Dataset::open(dir)
            .expect("open")
            .all_frames(Projection::WithoutImages)
            .expect("frames")
            .collect::<Result<_, _>>()
            .expect("read")
    }

    /// What the observer saw of one variant (cloned out of the borrowed event).
    struct Seen {
        sequence: u64,
        variant: u32,
        real: FrameRecord,
        generated: FrameRecord,
        plan_frames: Vec<(String, u32)>,
        edited_pixels: Option<usize>,
        transmission: Option<(usize, usize)>,
    }

    #[test]
    fn augment_output_does_not_depend_on_workers_limits_or_observer() {
        let work = tempfile::tempdir().expect("tempdir");
        let Some((ds, assets)) = camvid_and_animals(work.path()) else {
            return;
        };
        let scenario =
            roadsynth_scenario::parse(Path::new("animals-in-fog.yaml"), SCENARIO).expect("parse");
        let config =
            |out: &str, flow: FlowOptions, observer: Option<VariantObserver>| AugmentConfig {
                dataset: ds.clone(),
                output: work.path().join(out),
                assets: Some(assets.clone()),
                max_frames: Some(6),
                flow,
                observer,
                ..AugmentConfig::default()
            };
        let one = FlowOptions {
            workers: 1,
            channel_items: 1,
            channel_bytes: 1,
        };
        let serial = augment(&config("one", one, None), &scenario).expect("1 worker");

        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let observer = VariantObserver::new(move |e| {
            log.lock().expect("lock").push(Seen {
                sequence: e.sequence,
                variant: e.variant,
                real: e.real.clone(),
                generated: e.generated.clone(),
                plan_frames: e
                    .plan
                    .iter()
                    .map(|r| (r.frame_id.clone(), r.variant))
                    .collect(),
                edited_pixels: e.edit_mask.map(|m| m.iter().filter(|&&p| p > 0).count()),
                transmission: e
                    .weather
                    .and_then(|w| w.transmission.as_ref())
                    .map(|t| (t.data.len(), (t.width * t.height) as usize)),
            });
        });
        let three = FlowOptions {
            workers: 3,
            channel_items: 2,
            channel_bytes: 256 << 10,
        };
        let parallel =
            augment(&config("three", three, Some(observer)), &scenario).expect("3 workers");

        let counts = |s: &AugmentSummary| {
            let mut s = s.clone();
            s.version.clear();
            serde_json::to_value(s).expect("json")
        };
        assert_eq!(serial.version, parallel.version, "{serial:?}\n{parallel:?}");
        assert_eq!(counts(&serial), counts(&parallel));
        assert_eq!(parallel.frames_read, 6);
        assert_eq!(
            parallel.real_frames_written,
            6 + 101,
            "train cut to 6, val copied"
        );
        assert_eq!(parallel.weather_applied, 12);
        assert!(parallel.insertions_rendered > 0, "{parallel:?}");

        let seen = seen.lock().expect("lock");
        assert_eq!(seen.len() as u64, parallel.variants_written);
        assert!(
            seen.windows(2)
                .all(|w| (w[0].sequence, w[0].variant) < (w[1].sequence, w[1].variant)),
            "events in output order"
        );
        let written: Vec<FrameRecord> = records(&work.path().join("three"))
            .into_iter()
            .filter(|r| r.frame.provenance.parent.is_some())
            .collect();
        assert_eq!(written.len(), seen.len());
        for (event, stored) in seen.iter().zip(&written) {
            assert_eq!(
                event.generated.frame.id, stored.frame.id,
                "same order as written"
            );
            assert_eq!(
                event.generated.frame.provenance.parent.as_ref(),
                Some(&event.real.frame.id)
            );
            assert!(
                event.real.image.is_some(),
                "the real frame comes with its bytes"
            );
            let (n, wh) = event.transmission.expect("fog maps");
            assert_eq!(n, wh);
            assert_eq!(
                wh,
                (event.generated.frame.width * event.generated.frame.height) as usize
            );
            let inserted = event
                .generated
                .annotations
                .iter()
                .any(|a| matches!(a.origin, roadsynth_types::Origin::Generated { .. }));
            if inserted {
                assert!(!event.plan_frames.is_empty());
                assert!(event.edited_pixels.is_some_and(|n| n > 0));
            }
            for (frame, variant) in &event.plan_frames {
                assert_eq!(frame, event.real.frame.id.as_str());
                assert_eq!(*variant, event.variant);
            }
        }
    }

    /// Issue 6: the blend mode set for a run is the one its insertions use: `feather` never
    /// keeps Poisson, `poisson` keeps it wherever the object has frame pixels all around it.
    #[test]
    fn the_blend_mode_set_for_a_run_is_the_one_its_insertions_use() {
        let work = tempfile::tempdir().expect("tempdir");
        let Some((ds, assets)) = camvid_and_animals(work.path()) else {
            return;
        };
        let scenario =
            roadsynth_scenario::parse(Path::new("animals-in-fog.yaml"), SCENARIO).expect("parse");
        let blends_used = |blend: BlendMode| -> Vec<String> {
            let output = work.path().join(blend.as_str());
            let config = AugmentConfig {
                dataset: ds.clone(),
                output: output.clone(),
                assets: Some(assets.clone()),
                max_frames: Some(4),
                blend,
                ..AugmentConfig::default()
            };
            augment(&config, &scenario).expect("augment");
            records(&output)
                .iter()
                .flat_map(|r| &r.annotations)
                .filter(|a| matches!(a.origin, roadsynth_types::Origin::Generated { .. }))
                .map(|a| a.attributes["blend"].as_str().unwrap_or("none").to_string())
                .collect()
        };
        let feather = blends_used(BlendMode::Feather);
        assert!(!feather.is_empty());
        assert!(feather.iter().all(|b| b == "feather"), "{feather:?}");
        let poisson = blends_used(BlendMode::Poisson);
        let kept = poisson.iter().filter(|b| *b == "poisson").count();
        assert!(kept * 2 > poisson.len(), "{poisson:?}");
    }

    fn plan_rows_seen() -> (
        Arc<Mutex<Vec<roadsynth_placement::PlanRow>>>,
        VariantObserver,
    ) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let observer = VariantObserver::new(move |e| {
            log.lock().expect("lock").extend(e.plan.iter().cloned());
        });
        (seen, observer)
    }

    /// Frames are planned where they are rendered: the rows each variant uses are those the plan
    /// stage gives for it, and each `insert_objects` operation renders only its own rows (every
    /// operation used to render every row of the variant).
    #[test]
    fn each_insert_operation_renders_its_own_plan_rows_as_the_plan_stage_plans_them() {
        let work = tempfile::tempdir().expect("tempdir");
        let Some((ds, assets)) = camvid_and_animals(work.path()) else {
            return;
        };
        let text = "
seed: 5
variants_per_frame: 2
splits: [train]
operations:
  - insert_objects:
      classes: [cow]
      label: animal
      count: [1, 1]
      distance_m: [5, 40]
      where: drivable
  - insert_objects:
      classes: [sheep]
      label: animal
      count: [1, 2]
      distance_m: [5, 40]
      where: drivable
";
        let scenario = roadsynth_scenario::parse(Path::new("two.yaml"), text).expect("parse");
        let planned = roadsynth_placement::plan_dataset(
            &ds,
            &scenario,
            &roadsynth_placement::PlanOptions {
                max_frames: Some(8),
                ..roadsynth_placement::PlanOptions::default()
            },
            None,
        )
        .expect("plan")
        .0;
        let (seen, observer) = plan_rows_seen();
        let summary = augment(
            &AugmentConfig {
                dataset: ds.clone(),
                output: work.path().join("out"),
                assets: Some(assets.clone()),
                max_frames: Some(8),
                observer: Some(observer),
                ..AugmentConfig::default()
            },
            &scenario,
        )
        .expect("augment");
        assert_eq!(summary.insertions_planned, planned.len() as u64);
        assert!(planned.iter().any(|r| r.class == "cow"));
        assert!(planned.iter().any(|r| r.class == "sheep"));
        // Every variant with an insertion is written, and the observer gets its rows in order.
        let mut expected = planned.clone();
        expected.sort_by(|a, b| (&a.frame_id, a.variant).cmp(&(&b.frame_id, b.variant)));
        let mut got = seen.lock().expect("lock").clone();
        got.sort_by(|a, b| (&a.frame_id, a.variant).cmp(&(&b.frame_id, b.variant)));
        assert_eq!(got, expected);
    }

    /// Frames without semantic labels get their ground masks from the drivable-area model: they
    /// are computed before the flow (one model session) for the frames the run reads, cached, and
    /// planned on in the workers.
    #[test]
    fn augment_with_a_drivable_model_caches_its_masks_and_plans_on_them() {
        let (Some(kitti), Some(model)) = (
            roadsynth_testkit::shared("datasets/kitti-object"),
            roadsynth_testkit::shared(roadsynth_models::DrivableAreaModel::SHARED_PATH),
        ) else {
            return;
        };
        let work = tempfile::tempdir().expect("tempdir");
        let ds = work.path().join("kitti");
        kitti_dataset(&kitti, &ds);
        let Some((_, assets)) = camvid_and_animals(work.path()) else {
            return;
        };
        let scenario =
            roadsynth_scenario::parse(Path::new("animals.yaml"), SCENARIO).expect("parse");
        let cached = || -> usize {
            std::fs::read_dir(ds.join("cache/masks"))
                .expect("mask cache")
                .map(|source| {
                    std::fs::read_dir(source.expect("entry").path())
                        .expect("dir")
                        .count()
                })
                .sum()
        };
        // The second of two shards over 4 frames runs the model on its own 2 frames only.
        augment(
            &AugmentConfig {
                dataset: ds.clone(),
                output: work.path().join("sharded"),
                assets: Some(assets.clone()),
                max_frames: Some(4),
                drivable_model: Some(model.clone()),
                shard: Some(roadsynth_stages::ShardTarget {
                    id: roadsynth_dataset::shard::ShardId::new(1, 2).expect("shard id"),
                    dir: work.path().join("shards"),
                }),
                ..AugmentConfig::default()
            },
            &scenario,
        )
        .expect("augment shard 2 of 2");
        assert_eq!(cached(), 2, "the shard's own frames");
        let (seen, observer) = plan_rows_seen();
        let summary = augment(
            &AugmentConfig {
                dataset: ds.clone(),
                output: work.path().join("out"),
                assets: Some(assets),
                max_frames: Some(3),
                drivable_model: Some(model),
                observer: Some(observer),
                ..AugmentConfig::default()
            },
            &scenario,
        )
        .expect("augment");
        assert_eq!(summary.frames_read, 3);
        assert_eq!(cached(), 4, "frames 0-2 added to the shard's 2-3");
        let seen = seen.lock().expect("lock");
        assert!(!seen.is_empty(), "{summary:?}");
        assert!(
            seen.iter().all(|r| r.mask_source.starts_with("model")),
            "{:?}",
            seen.iter().map(|r| &r.mask_source).collect::<Vec<_>>()
        );
        // The model's ground also tells the fog where upright scenery stands (issue 5: without
        // labels, everything above the horizon was infinitely far, white in fog).
        let depths = fog_depths(&work.path().join("out"));
        assert!(!depths.is_empty());
        for d in depths {
            assert_eq!(
                (&d["vertical_structures"], &d["sky"], &d["backdrop_m"]),
                (&true.into(), &"image".into(), &serde_json::Value::Null),
                "{d}"
            );
        }
    }

    /// The shared KITTI frames as the train split of a new dataset at `ds`.
    fn kitti_dataset(kitti: &Path, ds: &Path) {
        let scan = roadsynth_formats::kitti::scan(kitti, "train").expect("scan");
        let mut writer = DatasetWriter::create(ds, WriteOptions::default()).expect("create");
        load_all(scan.frames, &LoadOptions::default(), 16, |r| match r {
            Ok(record) => writer.write(&record),
            Err(problems) => panic!("quarantined: {problems:?}"),
        })
        .expect("write");
        writer.commit(serde_json::json!({})).expect("commit");
    }

    /// The depth provenance of every fog step of the generated frames in `dir`.
    fn fog_depths(dir: &Path) -> Vec<serde_json::Value> {
        records(dir)
            .iter()
            .flat_map(|r| &r.frame.provenance.steps)
            .filter(|s| s.operation == "weather.fog")
            .map(|s| s.params["depth"].clone())
            .collect()
    }

    /// Issue 5: on frames with neither semantic labels nor a drivable-area model (KITTI here),
    /// the sky is estimated from the image and the scenery assumed at the backdrop distance.
    #[test]
    fn issue_5_fog_without_labels_or_model_estimates_the_sky_and_assumes_a_backdrop() {
        let Some(kitti) = roadsynth_testkit::shared("datasets/kitti-object") else {
            return;
        };
        let work = tempfile::tempdir().expect("tempdir");
        let ds = work.path().join("kitti");
        kitti_dataset(&kitti, &ds);
        let scenario = roadsynth_scenario::parse(
            Path::new("fog.yaml"),
            "seed: 2\nsplits: [train]\noperations:\n  - weather:\n      fog: {visibility_m: 300}\n",
        )
        .expect("parse");
        let summary = augment(
            &AugmentConfig {
                dataset: ds,
                output: work.path().join("out"),
                max_frames: Some(2),
                generated_only: true,
                ..AugmentConfig::default()
            },
            &scenario,
        )
        .expect("augment");
        assert_eq!(summary.variants_written, 2, "{summary:?}");
        let depths = fog_depths(&work.path().join("out"));
        assert_eq!(depths.len(), 2);
        for d in depths {
            assert_eq!(
                (&d["vertical_structures"], &d["sky"], &d["backdrop_m"]),
                (
                    &false.into(),
                    &"image".into(),
                    &f64::from(roadsynth_weather::ASSUMED_BACKDROP_M).into()
                ),
                "{d}"
            );
        }
    }

    /// A frame whose semantic-label image cannot be read is quarantined with the reason, naming
    /// its source; the other frames are augmented.
    /// Only cut-outs the scenario's classes can be drawn from are decoded (issue 6: the bank's
    /// other classes cost start-up time); a bank with none of them is refused before any frame,
    /// with the classes looked for, and nothing is committed.
    #[test]
    fn issue_6_a_bank_without_the_scenarios_classes_is_refused_before_any_frame() {
        let work = tempfile::tempdir().expect("tempdir");
        let Some((ds, assets)) = camvid_and_animals(work.path()) else {
            return;
        };
        let scenario = roadsynth_scenario::parse(
            Path::new("giraffes.yaml"),
            "
seed: 1
splits: [train]
operations:
  - insert_objects:
      classes:
        - {name: giraffe, height_m: 5.0, length_m: 4.0, width_m: 1.0}
      label: animal
",
        )
        .expect("parse");
        let out = work.path().join("out");
        let err = augment(
            &AugmentConfig {
                dataset: ds,
                output: out.clone(),
                assets: Some(assets.clone()),
                max_frames: Some(2),
                ..AugmentConfig::default()
            },
            &scenario,
        )
        .expect_err("the bank has cats, dogs, horses, sheep, cows and bears only");
        let text = err.to_string();
        assert!(
            text.contains(&assets.display().to_string()) && text.contains("(giraffe)"),
            "{text}"
        );
        assert!(Dataset::open(&out).is_err(), "nothing committed");
    }

    #[test]
    fn a_frame_with_an_unreadable_label_image_is_quarantined_and_the_rest_augmented() {
        let work = tempfile::tempdir().expect("tempdir");
        let Some((ds, assets)) = camvid_and_animals(work.path()) else {
            return;
        };
        let mut frames: Vec<FrameRecord> = Dataset::open(&ds)
            .expect("open")
            .frames("train", Projection::Full)
            .expect("frames")
            .take(3)
            .collect::<Result<_, _>>()
            .expect("read");
        frames[1].semantic_label = Some(b"not a PNG".to_vec());
        let broken_source = frames[1].frame.source_uri.clone();
        let broken = work.path().join("broken");
        let mut writer = DatasetWriter::create(&broken, WriteOptions::default()).expect("create");
        for record in &frames {
            writer.write(record).expect("write");
        }
        writer.commit(serde_json::json!({})).expect("commit");
        let scenario =
            roadsynth_scenario::parse(Path::new("animals-in-fog.yaml"), SCENARIO).expect("parse");
        let out = work.path().join("out");
        let summary = augment(
            &AugmentConfig {
                dataset: broken,
                output: out.clone(),
                assets: Some(assets),
                ..AugmentConfig::default()
            },
            &scenario,
        )
        .expect("the run completes");
        assert_eq!(summary.frames_read, 3);
        assert_eq!(summary.quarantined, 1, "{summary:?}");
        assert_eq!(
            summary.weather_applied, 4,
            "both variants of the two good frames"
        );
        let quarantined = Dataset::open(&out)
            .expect("open")
            .quarantine()
            .expect("read");
        assert_eq!(quarantined.len(), 1);
        assert_eq!(quarantined[0].file, broken_source);
        assert!(
            quarantined[0].reason.contains(&broken_source)
                && quarantined[0].reason.contains("label"),
            "{}",
            quarantined[0].reason
        );
    }
}
