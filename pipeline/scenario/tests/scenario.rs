//! Scenario files: the shipped ones resolve, bad ones report every error at `file:line:col`, and
//! the committed JSON Schema is current.

// Values parsed from the text (`300`, `0.3`) compare exactly.
#![allow(clippy::float_cmp)]

use std::path::{Path, PathBuf};

use roadsynth_scenario::{
    EditBackend, Finish, InsertObjects, Operation, PlacementModel, PlacementRegion, Scenario,
    Weather, json_schema_text, load, parse, priors,
};

fn repo() -> PathBuf {
    roadsynth_testkit::repo_root()
}

fn shipped(name: &str) -> Scenario {
    let path = repo().join("scenarios").join(name);
    load(&path).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()))
}

/// Every error of `text` (as file `s.yaml`), formatted `file:line:col: message`.
fn errors(text: &str) -> Vec<String> {
    match parse(Path::new("s.yaml"), text) {
        Ok(s) => panic!("expected errors, got {s:#?}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

fn ok(name: &str, text: &str) -> Scenario {
    parse(Path::new(name), text).unwrap_or_else(|e| panic!("{e}"))
}

fn insert(s: &Scenario, i: usize) -> &InsertObjects {
    match &s.operations[i] {
        Operation::InsertObjects(x) => x,
        other => panic!("operation {i} is {other:?}"),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn known() -> String {
    priors::known_names().join(", ")
}

#[test]
fn every_shipped_scenario_validates_with_the_schema_modeline() {
    let dir = repo().join("scenarios");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("scenarios/")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| Path::new(n).extension().is_some_and(|e| e == "yaml"))
        .collect();
    names.sort();
    for required in [
        "animals-on-roads.yaml",
        "animals-naive-baseline.yaml",
        "vehicle-appearance.yaml",
        "emergency-vehicles.yaml",
        "weather-fog.yaml",
        "weather-rain.yaml",
        "weather-snow.yaml",
        "weather-night.yaml",
    ] {
        assert!(names.iter().any(|n| n == required), "{required} missing");
    }
    for name in &names {
        let text = std::fs::read_to_string(dir.join(name)).expect("read");
        assert!(
            text.starts_with("# yaml-language-server: $schema=./scenario.schema.json\n"),
            "{name}: first line must point editors at the schema"
        );
        let s = shipped(name);
        assert_eq!(s.name, name.trim_end_matches(".yaml"));
        assert!(!s.operations.is_empty(), "{name}");
    }
}

#[test]
fn animals_on_roads_resolves_size_priors_and_distances() {
    let s = shipped("animals-on-roads.yaml");
    assert_eq!(
        (s.seed, s.variants_per_frame, s.splits.as_slice()),
        (3, 2, ["train".to_string()].as_slice())
    );
    let op = insert(&s, 0);
    assert_eq!((op.count_min, op.count_max), (1, 2));
    assert_eq!((op.distance_min_m, op.distance_max_m), (2.0, 20.0));
    assert_eq!(op.region, PlacementRegion::Drivable);
    assert_eq!(op.model, PlacementModel::GeometryAware);
    assert_eq!(op.occlusion.max_overlap, 0.3);
    assert!(!op.occlusion.allow_truncation);
    assert_eq!(op.assets, None);
    let names: Vec<&str> = op.classes.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["deer", "moose", "wild_boar", "cow", "sheep", "horse", "dog"]
    );
    assert!(op.classes.iter().all(|c| c.label == "animal"));
    // Deer: roe deer 0.60 m to white-tailed deer 1.05 m at the shoulder, as mean ± 2 std.
    let deer = &op.classes[0];
    assert_eq!(deer.weight, 3.0);
    assert!(close(deer.height_m.mean, 0.825) && close(deer.height_m.std, 0.1125));
    assert!(close(deer.length_m.mean, 1.525));
    assert!(deer.source.contains("roe deer"), "{}", deer.source);
    let moose = &op.classes[1];
    assert!(close(moose.height_m.mean, 1.75) && close(moose.height_m.std, 0.175));
    assert!(moose.source.contains("Moose"), "{}", moose.source);

    // The baseline differs only in the placement model.
    let naive = shipped("animals-naive-baseline.yaml");
    let mut expected = insert(&s, 0).clone();
    expected.model = PlacementModel::Naive;
    assert_eq!(insert(&naive, 0), &expected);
    assert_eq!(
        (naive.seed, naive.variants_per_frame),
        (s.seed, s.variants_per_frame)
    );
}

#[test]
fn vehicle_and_weather_scenarios_resolve() {
    let s = shipped("vehicle-appearance.yaml");
    let Operation::EditVehicles(e) = &s.operations[0] else {
        panic!("{s:?}");
    };
    assert_eq!(e.classes, ["car", "van"]);
    assert_eq!(
        (e.min_height_px, e.max_occlusion, e.fraction),
        (40, 0.3, 0.5)
    );
    assert_eq!(e.appearance.finish, Finish::Metallic);
    assert_eq!(e.backend, EditBackend::Classical);
    let last = e.appearance.colours.last().expect("colours");
    assert_eq!(
        (last.name.as_str(), last.srgb),
        ("#1f3a5f", [0x1f, 0x3a, 0x5f])
    );

    let s = shipped("emergency-vehicles.yaml");
    assert_eq!(s.operations.len(), 2);

    let Operation::Weather(Weather::Fog(fog)) = shipped("weather-fog.yaml").operations[0] else {
        panic!("fog");
    };
    assert_eq!(fog.visibility_m, 300.0);
    // Koschmieder: transmittance 5 % at the visibility.
    assert!(close(
        (-fog.extinction_per_m() * fog.visibility_m).exp(),
        0.05
    ));
    let Operation::Weather(Weather::Rain(rain)) = shipped("weather-rain.yaml").operations[0] else {
        panic!("rain");
    };
    assert_eq!(
        (rain.rate_mm_h, rain.lens_drops, rain.wet_road),
        (15.0, true, true)
    );
    let Operation::Weather(Weather::Snow(snow)) = shipped("weather-snow.yaml").operations[0] else {
        panic!("snow");
    };
    assert_eq!((snow.rate_mm_h, snow.accumulation), (2.5, 0.4));
    let Operation::Weather(Weather::Night(night)) = shipped("weather-night.yaml").operations[0]
    else {
        panic!("night");
    };
    assert_eq!(
        (night.exposure_ev, night.light_temperature_k),
        (-6.0, 2100.0)
    );
}

#[test]
fn defaults_fill_in_and_the_name_is_the_file_stem() {
    let s = ok(
        "dir/minimal.yaml",
        "operations:\n  - insert_objects:\n      classes: [Wild Boar]\n",
    );
    assert_eq!(s.name, "minimal");
    assert_eq!((s.seed, s.variants_per_frame), (0, 1));
    assert_eq!(s.splits, ["train"]);
    let op = insert(&s, 0);
    assert_eq!((op.count_min, op.count_max), (1, 1));
    assert_eq!((op.distance_min_m, op.distance_max_m), (5.0, 60.0));
    assert_eq!(op.model, PlacementModel::GeometryAware);
    assert_eq!(op.classes[0].name, "Wild Boar");
    assert_eq!(op.classes[0].label, "animal");
    assert_eq!(
        op.classes[0].height_m,
        priors::lookup("wild_boar").expect("prior").height_m()
    );
}

#[test]
fn sizes_labels_and_assets_can_be_overridden() {
    let text = "\
name: custom
operations:
  - insert_objects:
      label: critter
      classes:
        - {name: horse, height_m: [1.0, 1.4]}
        - {name: moose, height_m: 1.9, width_m: {std: 0.2}, label: moose}
        - {name: traffic_cone, height_m: 0.7, length_m: 0.3, width_m: {mean: 0.3, std: 0.02}}
      count: 2
      where: roadside
      model: naive
      assets: ../assets/animals
      occlusion: {max_overlap: 0, allow_truncation: true}
";
    let s = ok("/data/scenarios/custom.yaml", text);
    assert_eq!(s.name, "custom");
    let op = insert(&s, 0);
    let [horse, moose, cone] = op.classes.as_slice() else {
        panic!("{op:?}");
    };
    assert!(close(horse.height_m.mean, 1.2) && close(horse.height_m.std, 0.1));
    assert_eq!(
        horse.length_m,
        priors::lookup("horse").expect("horse").length_m()
    );
    assert_eq!(horse.label, "critter");
    assert!(
        horse
            .source
            .starts_with("scenario overrides; otherwise Light")
    );
    let moose_prior = priors::lookup("moose").expect("moose");
    assert_eq!(moose.height_m.mean, 1.9);
    assert_eq!(moose.height_m.std, moose_prior.height_m().std);
    assert_eq!(moose.width_m.mean, moose_prior.width_m().mean);
    assert_eq!(moose.width_m.std, 0.2);
    assert_eq!(moose.label, "moose");
    assert_eq!(cone.label, "critter");
    assert_eq!(cone.source, "scenario");
    assert!(
        close(cone.height_m.std, 0.07),
        "10 % of the mean without a prior"
    );
    assert_eq!((cone.width_m.mean, cone.width_m.std), (0.3, 0.02));
    assert_eq!((op.count_min, op.count_max), (2, 2));
    assert_eq!(op.region, PlacementRegion::Roadside);
    assert_eq!(op.model, PlacementModel::Naive);
    assert_eq!(
        op.assets.as_deref(),
        Some(Path::new("/data/scenarios/../assets/animals"))
    );
    assert_eq!(op.occlusion.max_overlap, 0.0);
    assert!(op.occlusion.allow_truncation);
}

#[test]
fn issue3_unknown_key_is_reported_at_the_key() {
    let errs =
        errors("operations:\n  - insert_objects:\n      classes: [deer]\n      colour: brown\n");
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].starts_with("s.yaml:4:7: unknown field `colour`, expected one of `classes`"),
        "{errs:#?}"
    );
}

#[test]
fn issue3_wrong_type_is_reported_at_the_value() {
    let errs = errors(
        "seed: 1\noperations:\n  - insert_objects:\n      classes: [deer]\n      count: many\n",
    );
    assert_eq!(
        errs,
        [
            "s.yaml:5:14: invalid type: string \"many\", expected a count (`2`) or a range (`[1, 3]`)"
        ]
    );
}

#[test]
fn issue3_negative_distance_is_reported_at_the_number() {
    let errs = errors(
        "operations:\n  - insert_objects:\n      classes: [deer]\n      distance_m: [-5, 60]\n",
    );
    assert_eq!(
        errs,
        ["s.yaml:4:20: distance_m must be more than 0 and at most 1000 m, got -5"]
    );
}

#[test]
fn issue3_unknown_class_is_reported_with_the_known_ones() {
    let errs = errors("operations:\n  - insert_objects:\n      classes: [deer, unicorn]\n");
    assert_eq!(
        errs,
        [format!(
            "s.yaml:3:23: unknown class `unicorn`; known: {}; for a class of your own give `name`, `height_m`, `length_m` and `width_m`",
            known()
        )]
    );
    let errs = errors("operations:\n  - insert_objects:\n      classes: [mose]\n");
    assert!(
        errs[0].starts_with("s.yaml:3:17: unknown class `mose` (did you mean `moose`?)"),
        "{errs:#?}"
    );
}

#[test]
fn issue3_all_four_errors_are_reported_in_one_run_in_line_order() {
    let text = "\
seed: 1
colour: red
operations:
  - insert_objects:
      classes: [deer, unicorn]
      count: many
      distance_m: [-5, 60]
";
    let errs = errors(text);
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert!(
        errs[0].starts_with("s.yaml:2:1: unknown field `colour`"),
        "{errs:#?}"
    );
    assert!(
        errs[1].starts_with("s.yaml:5:23: unknown class `unicorn`"),
        "{errs:#?}"
    );
    assert!(
        errs[2].starts_with("s.yaml:6:14: invalid type: string \"many\""),
        "{errs:#?}"
    );
    assert_eq!(
        errs[3],
        "s.yaml:7:20: distance_m must be more than 0 and at most 1000 m, got -5"
    );
}

#[test]
fn issue5_bad_weather_parameters_are_rejected_at_validation() {
    let errs = errors("operations:\n  - weather:\n      fog:\n        visibility_m: -100\n");
    assert_eq!(
        errs,
        ["s.yaml:4:23: visibility_m must be at least 1 and at most 10000 m, got -100"]
    );
    let errs = errors("operations:\n  - weather:\n      rain:\n        rate_mm_h: 10000\n");
    assert_eq!(
        errs,
        [
            "s.yaml:4:20: rate_mm_h must be more than 0 and at most 300 mm/h (the heaviest rainfalls on record are about 300 mm/h), got 10000"
        ]
    );
}

#[test]
fn every_semantic_error_is_reported_together() {
    let text = "\
variants_per_frame: 0
splits: [train, train]
operations:
  - insert_objects:
      classes:
        - {name: deer, weight: 0}
        - {name: cone, height_m: 0.7}
        - {name: horse, height_m: [1.4, 1.0]}
      count: [3, 1]
      distance_m: [60, 5]
      occlusion: {max_overlap: 1.5}
  - insert_objects:
      classes: []
      distance_m: [0, 5]
  - edit_vehicles:
      fraction: 0
      max_occlusion: -0.1
      appearance: {colours: [teal]}
  - edit_vehicles: {classes: [car]}
  - weather: {fog: {visibility_m: 20000, spatial_variation: 2}}
  - weather: {rain: {rate_mm_h: 0, wind_deg: 90, exposure_ms: 0}}
  - weather: {snow: {rate_mm_h: 0}}
  - weather: {snow: {rate_mm_h: 60, accumulation: 1.5}}
  - weather: {night: {exposure_ev: 1, light_temperature_k: 100, sensor_noise: -1}}
  - weather: {night: {}}
  - weather: {}
  - {}
  - ~
";
    let errs = errors(text);
    let expected = [
        "s.yaml:1:21: variants_per_frame must be at least 1 and at most 1000, got 0",
        "s.yaml:2:17: `train` is listed twice",
        "s.yaml:6:32: weight must be more than 0, got 0",
        "s.yaml:7:18: class `cone` has no built-in size prior: give `length_m` and `width_m` too",
        "s.yaml:8:35: height_m [1.4, 1] is inverted: write [min, max]",
        "s.yaml:9:14: count [3, 1] is inverted: write [min, max]",
        "s.yaml:10:19: distance_m [60, 5] is inverted: write [min, max] with min < max",
        "s.yaml:11:32: max_overlap must be at least 0 and at most 1, got 1.5",
        "s.yaml:13:16: `classes` is empty: expected at least one class",
        "s.yaml:14:20: distance_m must be more than 0 and at most 1000 m, got 0",
        "s.yaml:16:17: fraction must be more than 0 and at most 1, got 0",
        "s.yaml:17:22: max_occlusion must be at least 0 and at most 1, got -0.1",
        "s.yaml:18:30: unknown colour `teal`",
        "s.yaml:19:5: missing `appearance`",
        "s.yaml:20:35: visibility_m must be at least 1 and at most 10000 m, got 20000",
        "s.yaml:20:61: spatial_variation must be at least 0 and at most 1, got 2",
        "s.yaml:21:33: rate_mm_h must be more than 0 and at most 300 mm/h",
        "s.yaml:21:46: wind_deg must be at least -60 and at most 60 degrees, got 90",
        "s.yaml:21:63: exposure_ms must be more than 0 and at most 100 ms, got 0",
        "s.yaml:22:15: snow with rate_mm_h 0 and accumulation 0 changes nothing",
        "s.yaml:23:33: rate_mm_h must be at least 0 and at most 30 mm/h water equivalent (30 is beyond any recorded snowfall), got 60",
        "s.yaml:23:51: accumulation must be at least 0 and at most 1, got 1.5",
        "s.yaml:24:36: exposure_ev must be at least -10 and at most 0 EV, got 1",
        "s.yaml:24:60: light_temperature_k must be at least 1500 and at most 10000 K, got 100",
        "s.yaml:24:79: sensor_noise must be at least 0 and at most 1, got -1",
        "s.yaml:25:15: missing `exposure_ev`",
        "s.yaml:26:14: empty weather: expected one of fog, rain, snow, night",
        "s.yaml:27:5: empty operation: expected one of insert_objects, edit_vehicles, weather",
        "s.yaml:28:5: empty list item: expected an operation",
    ];
    let report = errs.join("\n");
    assert_eq!(errs.len(), expected.len(), "{report}");
    for (got, want) in errs.iter().zip(expected) {
        assert!(
            got.starts_with(want),
            "got  {got}\nwant {want}\nall:\n{report}"
        );
    }
}

#[test]
fn operations_are_required_and_not_empty() {
    assert_eq!(
        errors("# nothing to do\nseed: 1\n"),
        [
            "s.yaml:1:1: missing `operations`: a scenario needs at least one of insert_objects, edit_vehicles, weather"
        ]
    );
    // A missing field is reported at the key of the map that lacks it.
    assert_eq!(
        errors("operations:\n  - insert_objects:\n      count: 2\n  - edit_vehicles:\n      fraction: 0.5\n"),
        [
            format!("s.yaml:2:5: missing `classes`: which objects to insert (known: {})", known()),
            "s.yaml:4:5: missing `appearance`: the target `colours` (and `finish`) of edited vehicles".to_string(),
        ]
    );
    assert_eq!(
        errors("operations: []\n"),
        [
            "s.yaml:1:13: `operations` is empty: a scenario needs at least one of insert_objects, edit_vehicles, weather"
        ]
    );
}

#[test]
fn operation_keys_are_checked_at_the_key() {
    let errs = errors(
        "operations:\n  - insert_object:\n      classes: [deer]\n  - weather:\n      smog: {visibility_m: 5}\n",
    );
    assert_eq!(
        errs,
        [
            "s.yaml:2:5: unknown field `insert_object`, expected one of `insert_objects`, `edit_vehicles`, `weather`",
            "s.yaml:5:7: unknown field `smog`, expected one of `fog`, `rain`, `snow`, `night`",
        ]
    );
    let errs =
        errors("operations:\n  - {weather: {night: {exposure_ev: -3}}, edit_vehicles: {}}\n");
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].contains("an operation has exactly one key, found `weather` and `edit_vehicles`"),
        "{errs:#?}"
    );
}

#[test]
fn a_value_of_the_wrong_type_is_reported_once() {
    // The bad node is removed and parsing goes on: no follow-up error about what it left behind.
    let errs = errors(
        "operations:\n  - insert_objects: 5\n  - weather:\n      rain: {rate_mm_h: heavy}\n  - insert_objects:\n      classes: [deer, 7]\n      distance_m: [5, far]\n",
    );
    let report = errs.join("\n");
    assert_eq!(errs.len(), 4, "{report}");
    assert!(
        errs[0].starts_with("s.yaml:2:21: invalid type: integer `5`"),
        "{report}"
    );
    assert!(
        errs[1].starts_with("s.yaml:4:25: invalid type: string \"heavy\""),
        "{report}"
    );
    assert!(
        errs[2].starts_with("s.yaml:6:23: invalid type: integer `7`"),
        "{report}"
    );
    assert!(
        errs[3].starts_with("s.yaml:7:23: invalid type: string \"far\""),
        "{report}"
    );
}

#[test]
fn syntax_errors_and_unreadable_files_are_reported_once() {
    let errs = errors("operations: [\n");
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].starts_with("s.yaml:") && errs[0].contains("invalid YAML"),
        "{errs:#?}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.yaml");
    let err = load(&missing).expect_err("missing file");
    assert_eq!(err.0.len(), 1);
    assert!(err.0[0].message.starts_with("cannot read"), "{err}");
}

#[test]
fn committed_schema_is_current() {
    let path = repo().join("scenarios/scenario.schema.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let current = json_schema_text();
    if committed != current {
        let line = committed
            .lines()
            .zip(current.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(current.lines().count()))
            + 1;
        panic!(
            "scenarios/scenario.schema.json is stale (first difference at line {line}); \
             regenerate it with `roadsynth scenario schema > scenarios/scenario.schema.json`"
        );
    }
    // It describes the wire structs, with their docs.
    let schema: serde_json::Value = serde_json::from_str(&committed).expect("json");
    assert_eq!(schema["title"], "Scenario");
    assert_eq!(schema["additionalProperties"], false);
    let fog = &schema["definitions"]["Fog"]["properties"]["visibility_m"];
    assert!(
        fog["description"]
            .as_str()
            .is_some_and(|d| d.contains("visibility in metres")),
        "{fog}"
    );
}
