//! metrics.json: the experiment's numbers per test set, arm and class, aggregated over training
//! seeds, and the deltas between arms; checked for consistency before anything is written.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;

use roadsynth_eval::{
    Bootstrap, ClassMetrics, Difference, EvalReport, Interval, Metrics, SliceReport,
};
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ReportError;
use crate::model::{Arm, ArmComparison, ArmPrCurve, Experiment};

/// The `schema` field of metrics.json; bumped when a field changes meaning or goes away.
pub const SCHEMA: &str = "roadsynth-report/metrics/1";

/// A class with fewer ground-truth objects than this in a test set gets a caveat: its AP moves a
/// lot with a handful of detections.
pub const FEW_OBJECTS: usize = 30;

/// Two figures that should be the same number computed twice (a comparison's `a` and the report
/// it pairs) may differ by this much; both come from the same hotcoco run, so in practice they
/// are equal.
const SAME_NUMBER: f64 = 1e-9;

/// The contents of metrics.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsFile {
    /// [`SCHEMA`].
    pub schema: String,
    pub name: String,
    pub run_id: String,
    pub created_at: String,
    /// Per test set (in the order the experiment lists them): what was evaluated.
    pub test_sets: Keyed<TestSetInfo>,
    /// Per arm (`real`, `naive_paste`, `roadsynth`, those present, in that order).
    pub arms: Keyed<ArmMetrics>,
    /// `b - a` for each test set and each pair of [`Arm::PAIRS`] whose arms are both present.
    pub deltas: Vec<DeltaMetrics>,
    pub notes: Vec<String>,
    /// The driver's caveats, then those the report derived from the numbers.
    pub caveats: Vec<String>,
}

/// One test set, as every evaluated model saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestSetInfo {
    /// What roadsynth-eval read the ground truth from.
    pub ground_truth: String,
    pub images: usize,
    pub objects: usize,
    /// Ground-truth objects per evaluated class.
    pub classes: Keyed<usize>,
    /// Ground-truth objects per slice (`weather=fog`), when the experiment sliced the test set.
    #[serde(default, skip_serializing_if = "Keyed::is_empty")]
    pub slices: Keyed<usize>,
    /// How the intervals were bootstrapped; `None`: no intervals.
    pub bootstrap: Option<Bootstrap>,
}

/// One arm: its models and its figures on every test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmMetrics {
    pub models: Vec<Model>,
    pub test_sets: Keyed<ArmTestSet>,
}

/// A trained model of an arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub seed: u64,
    pub model_dir: PathBuf,
}

/// An arm's figures on one test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmTestSet {
    /// All classes: COCO's AP50 and AP (the mean over classes).
    pub overall: Figures,
    pub classes: Keyed<Figures>,
    /// All classes on each slice of the test set (`weather=fog`, `origin=real`), when asked for.
    #[serde(default, skip_serializing_if = "Keyed::is_empty")]
    pub slices: Keyed<Figures>,
}

/// AP at `IoU` 0.5 and AP over `IoU` 0.50:0.95.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub ap50: Figure,
    pub ap: Figure,
}

/// One figure of an arm, over its seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// Mean over the seeds where it is defined.
    pub mean: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Sample standard deviation over seeds; `None` with fewer than two.
    pub std: Option<f64>,
    /// The bootstrap interval over test images: with one seed, that model's; with several, from
    /// the lowest lower to the highest upper bound of the seeds' intervals (a span that covers
    /// each, not a joint interval of the mean). `resamples` is the fewest of any seed.
    pub interval: Option<Interval>,
    pub seeds: Vec<SeedValue>,
}

/// A figure of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedValue {
    pub seed: u64,
    pub value: Option<f64>,
    pub interval: Option<Interval>,
}

/// Arm `b` minus arm `a` on one test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeltaMetrics {
    pub test_set: String,
    pub a: Arm,
    pub b: Arm,
    pub overall: DeltaFigures,
    pub classes: Keyed<DeltaFigures>,
}

/// The deltas of AP50 and AP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeltaFigures {
    pub ap50: Delta,
    pub ap: Delta,
}

/// `b - a` of one figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// `mean(b) - mean(a)` over seeds: exactly the difference of the arms' [`Figure::mean`].
    pub difference: Option<f64>,
    /// The paired bootstrap interval of `b - a`: with one compared pair of models, its interval;
    /// with several, the span of theirs (as in [`Figure::interval`]). `None` without comparisons.
    pub interval: Option<Interval>,
    /// Each paired comparison of one model of `a` with one model of `b`.
    pub pairs: Vec<PairedDelta>,
}

/// `b - a` of one pair of models, on the same bootstrap resamples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedDelta {
    pub a_seed: u64,
    pub b_seed: u64,
    pub difference: Option<f64>,
    pub interval: Option<Interval>,
    /// Fraction of resamples in which `b` beat `a`.
    pub b_better: Option<f64>,
}

/// Named entries, written as a JSON object in their order (arms baseline first, classes as
/// evaluated) rather than sorted, so metrics.json reads like the report's tables.
#[derive(Debug, Clone, PartialEq)]
pub struct Keyed<V>(pub Vec<(String, V)>);

impl<V> Default for Keyed<V> {
    fn default() -> Self {
        Keyed(Vec::new())
    }
}

impl<V> Keyed<V> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl<V: Serialize> Serialize for Keyed<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Keyed<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyedVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for KeyedVisitor<V> {
            type Value = Keyed<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Keyed<V>, A::Error> {
                let mut entries: Vec<(String, V)> = Vec::new();
                while let Some((k, v)) = access.next_entry::<String, V>()? {
                    if entries.iter().any(|(e, _)| *e == k) {
                        return Err(serde::de::Error::custom(format!("duplicate key {k:?}")));
                    }
                    entries.push((k, v));
                }
                Ok(Keyed(entries))
            }
        }
        deserializer.deserialize_map(KeyedVisitor(PhantomData))
    }
}

/// Which figure of a [`Metrics`] or [`ClassMetrics`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Which {
    Ap50,
    Ap,
}

impl Which {
    fn overall(self, m: &Metrics) -> (Option<f64>, Option<Interval>) {
        let iv = m.intervals.unwrap_or_default();
        match self {
            Which::Ap50 => (m.summary.ap50, iv.ap50),
            Which::Ap => (m.summary.ap, iv.ap),
        }
    }

    fn class(self, c: &ClassMetrics) -> (Option<f64>, Option<Interval>) {
        match self {
            Which::Ap50 => (c.ap50, c.ap50_interval),
            Which::Ap => (c.ap, c.ap_interval),
        }
    }

    /// The name of the figure in a [`Difference`]: `AP50`, or `<class>/AP50`.
    fn metric(self, class: Option<&str>) -> String {
        let name = match self {
            Which::Ap50 => "AP50",
            Which::Ap => "AP",
        };
        class.map_or_else(|| name.to_string(), |c| format!("{c}/{name}"))
    }
}

/// The experiment checked and indexed: reports by arm, seed and test set.
pub(crate) struct Checked<'a> {
    pub(crate) experiment: &'a Experiment,
    /// Present arms in [`Arm::ALL`] order, each with its seeds in the order given.
    pub(crate) arms: Vec<(Arm, Vec<(u64, &'a std::path::Path)>)>,
    /// Test set names, in the order of the first model's list.
    pub(crate) test_sets: Vec<String>,
    reports: HashMap<(Arm, u64, String), &'a EvalReport>,
}

impl<'a> Checked<'a> {
    pub(crate) fn report(&self, arm: Arm, seed: u64, test_set: &str) -> &'a EvalReport {
        self.reports[&(arm, seed, test_set.to_string())]
    }

    /// The report of the first model: every model of a test set has the same ground truth.
    pub(crate) fn first(&self, test_set: &str) -> &'a EvalReport {
        let (arm, seeds) = &self.arms[0];
        self.report(*arm, seeds[0].0, test_set)
    }

    /// The class's figure of a report; `class` `None`: overall.
    pub(crate) fn value(
        report: &EvalReport,
        class: Option<&str>,
        which: Which,
    ) -> (Option<f64>, Option<Interval>) {
        match class {
            None => which.overall(&report.overall),
            Some(class) => report
                .overall
                .per_class
                .iter()
                .find(|c| c.class == class)
                .map_or((None, None), |c| which.class(c)),
        }
    }
}

fn input(experiment: &Experiment, reason: String) -> ReportError {
    ReportError::Input {
        run_id: experiment.run_id.clone(),
        reason,
    }
}

/// Checks that the experiment is complete and consistent: every arm has models, every model was
/// evaluated on the same test sets against the same ground truth with the same bootstrap, and
/// every comparison and PR curve names a model that exists and agrees with its evaluation.
pub(crate) fn check(experiment: &Experiment) -> Result<Checked<'_>, ReportError> {
    let err = |reason: String| input(experiment, reason);
    if experiment.arms.is_empty() {
        return Err(err("no arm has results".into()));
    }
    let mut arms = Vec::new();
    let mut reports = HashMap::new();
    let mut test_sets: Option<Vec<String>> = None;
    for arm in Arm::ALL {
        let mut results = experiment.arms.iter().filter(|a| a.arm == arm);
        let Some(result) = results.next() else {
            continue;
        };
        if results.next().is_some() {
            return Err(err(format!("arm {arm} is listed twice")));
        }
        if result.seeds.is_empty() {
            return Err(err(format!("arm {arm} has no trained model")));
        }
        let mut seeds = Vec::new();
        for s in &result.seeds {
            if seeds.iter().any(|(seed, _)| *seed == s.seed) {
                return Err(err(format!("arm {arm} lists seed {} twice", s.seed)));
            }
            seeds.push((s.seed, s.model_dir.as_path()));
            let names: Vec<String> = s.test_sets.iter().map(|t| t.test_set.clone()).collect();
            let unique: BTreeSet<&String> = names.iter().collect();
            if unique.len() != names.len() {
                return Err(err(format!(
                    "arm {arm} seed {} lists a test set twice: {}",
                    s.seed,
                    names.join(", ")
                )));
            }
            match &test_sets {
                None if names.is_empty() => {
                    return Err(err(format!(
                        "arm {arm} seed {} was evaluated on no test set",
                        s.seed
                    )));
                }
                None => test_sets = Some(names.clone()),
                Some(expected) => {
                    let expected_set: BTreeSet<&String> = expected.iter().collect();
                    if expected_set != unique {
                        return Err(err(format!(
                            "arm {arm} seed {} was evaluated on [{}], the first model on [{}]; \
                             every model must be evaluated on the same test sets",
                            s.seed,
                            names.join(", "),
                            expected.join(", ")
                        )));
                    }
                }
            }
            for t in &s.test_sets {
                reports.insert((arm, s.seed, t.test_set.clone()), &t.report);
            }
        }
        arms.push((arm, seeds));
    }
    let checked = Checked {
        experiment,
        arms,
        test_sets: test_sets.unwrap_or_default(),
        reports,
    };
    for test_set in &checked.test_sets {
        check_same_ground_truth(&checked, test_set)?;
    }
    let mut seen = BTreeSet::new();
    for c in &experiment.comparisons {
        check_comparison(&checked, c)?;
        if !seen.insert((c.test_set.clone(), c.a, c.a_seed, c.b, c.b_seed)) {
            return Err(err(format!(
                "comparison {} seed {} vs {} seed {} on {} is listed twice",
                c.a, c.a_seed, c.b, c.b_seed, c.test_set
            )));
        }
    }
    let mut seen = BTreeSet::new();
    for p in &experiment.pr_curves {
        check_pr_curve(&checked, p)?;
        if !seen.insert((p.arm, p.seed, p.test_set.clone(), p.curve.class.clone())) {
            return Err(err(format!(
                "PR curve of {} for arm {} seed {} on {} is listed twice",
                p.curve.class, p.arm, p.seed, p.test_set
            )));
        }
    }
    Ok(checked)
}

/// Numbers of different arms are only comparable on the same images, classes and resamples.
fn check_same_ground_truth(checked: &Checked<'_>, test_set: &str) -> Result<(), ReportError> {
    let first = checked.first(test_set);
    for (arm, seeds) in &checked.arms {
        for (seed, _) in seeds {
            let r = checked.report(*arm, *seed, test_set);
            let differs = if r.ground_truth != first.ground_truth {
                Some(format!(
                    "ground truth {:?}, not {:?}",
                    r.ground_truth, first.ground_truth
                ))
            } else if r.categories != first.categories {
                Some(format!(
                    "classes [{}], not [{}]",
                    r.categories.join(", "),
                    first.categories.join(", ")
                ))
            } else if r.overall.images != first.overall.images
                || r.overall.objects != first.overall.objects
            {
                Some(format!(
                    "{} images and {} objects, not {} and {}",
                    r.overall.images,
                    r.overall.objects,
                    first.overall.images,
                    first.overall.objects
                ))
            } else if r.bootstrap != first.bootstrap {
                Some(format!(
                    "bootstrap {:?}, not {:?}",
                    r.bootstrap, first.bootstrap
                ))
            } else {
                None
            };
            if let Some(reason) = differs {
                return Err(input(
                    checked.experiment,
                    format!(
                        "test set {test_set}: arm {arm} seed {seed} was evaluated with {reason} \
                         like the first model"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn has_model(checked: &Checked<'_>, arm: Arm, seed: u64) -> bool {
    checked
        .arms
        .iter()
        .any(|(a, seeds)| *a == arm && seeds.iter().any(|(s, _)| *s == seed))
}

/// A comparison pairs two models the experiment has, in a pair the report gives deltas for, and
/// its point values are those of the two models' evaluations: otherwise its interval would be
/// reported beside a difference it was not computed for.
fn check_comparison(checked: &Checked<'_>, c: &ArmComparison) -> Result<(), ReportError> {
    let what = format!(
        "comparison {} seed {} vs {} seed {} on {}",
        c.a, c.a_seed, c.b, c.b_seed, c.test_set
    );
    let err = |reason: String| input(checked.experiment, format!("{what}: {reason}"));
    if !Arm::PAIRS.contains(&(c.a, c.b)) {
        let pairs: Vec<String> = Arm::PAIRS
            .iter()
            .map(|(a, b)| format!("{b} - {a}"))
            .collect();
        return Err(err(format!(
            "the report gives deltas for {} only; put the baseline arm as a",
            pairs.join(", ")
        )));
    }
    if !checked.test_sets.contains(&c.test_set) {
        return Err(err("no model was evaluated on that test set".into()));
    }
    for (arm, seed) in [(c.a, c.a_seed), (c.b, c.b_seed)] {
        if !has_model(checked, arm, seed) {
            return Err(err(format!("arm {arm} has no model with seed {seed}")));
        }
    }
    let (ra, rb) = (
        checked.report(c.a, c.a_seed, &c.test_set),
        checked.report(c.b, c.b_seed, &c.test_set),
    );
    if c.comparison.ground_truth != ra.ground_truth {
        return Err(err(format!(
            "compared on ground truth {:?}, the models were evaluated on {:?}",
            c.comparison.ground_truth, ra.ground_truth
        )));
    }
    let differences: HashMap<&str, &Difference> = c
        .comparison
        .differences
        .iter()
        .map(|d| (d.metric.as_str(), d))
        .collect();
    let classes = ra.categories.iter().map(|c| Some(c.as_str()));
    for class in std::iter::once(None).chain(classes) {
        for which in [Which::Ap50, Which::Ap] {
            let metric = which.metric(class);
            let Some(d) = differences.get(metric.as_str()) else {
                return Err(err(format!("has no figure {metric:?}")));
            };
            for (side, got, report) in [("a", d.a, ra), ("b", d.b, rb)] {
                let expected = Checked::value(report, class, which).0;
                let same = match (got, expected) {
                    (Some(x), Some(y)) => (x - y).abs() <= SAME_NUMBER,
                    (None, None) => true,
                    _ => false,
                };
                if !same {
                    return Err(err(format!(
                        "{metric} of {side} is {got:?}, but that model's evaluation gives \
                         {expected:?}; was it computed from other detections?"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Whether `recall` is COCO's 101 recall thresholds `0.00, 0.01, ..., 1.00`.
fn is_coco_grid(recall: &[f64]) -> bool {
    recall.len() == 101
        && recall
            .iter()
            .enumerate()
            .all(|(i, r)| (r - i as f64 / 100.0).abs() < 1e-9)
}

fn check_pr_curve(checked: &Checked<'_>, p: &ArmPrCurve) -> Result<(), ReportError> {
    let c = &p.curve;
    let err = |reason: String| {
        input(
            checked.experiment,
            format!(
                "PR curve of {:?} for arm {} seed {} on {}: {reason}",
                c.class, p.arm, p.seed, p.test_set
            ),
        )
    };
    if !checked.test_sets.contains(&p.test_set) {
        return Err(err("no model was evaluated on that test set".into()));
    }
    if !has_model(checked, p.arm, p.seed) {
        return Err(err("the arm has no model with that seed".into()));
    }
    let report = checked.report(p.arm, p.seed, &p.test_set);
    if !report.categories.contains(&c.class) {
        return Err(err(format!(
            "not an evaluated class ({})",
            report.categories.join(", ")
        )));
    }
    if c.recall.is_empty() || c.recall.len() != c.precision.len() {
        return Err(err(format!(
            "{} recall and {} precision values; needs the same number, at least one",
            c.recall.len(),
            c.precision.len()
        )));
    }
    if let Some(v) = c
        .recall
        .iter()
        .chain(&c.precision)
        .chain([&c.iou])
        .find(|v| !(0.0..=1.0).contains(*v))
    {
        return Err(err(format!(
            "{v} is not a fraction in [0, 1] (pycocotools' -1 marks a class without ground \
             truth, which has no curve)"
        )));
    }
    if c.recall.windows(2).any(|w| w[1] < w[0]) {
        return Err(err("recall must not decrease".into()));
    }
    if (c.iou - 0.5).abs() < 1e-9 && is_coco_grid(&c.recall) {
        let area = c.precision.iter().sum::<f64>() / c.precision.len() as f64;
        let ap50 = Checked::value(report, Some(&c.class), Which::Ap50).0;
        if ap50.is_none_or(|ap50| (ap50 - area).abs() > SAME_NUMBER) {
            return Err(err(format!(
                "the mean precision over COCO's 101 recall points is {area}, but the model's \
                 evaluation gives AP50 {ap50:?}; is it the curve of another model or test set?"
            )));
        }
    }
    Ok(())
}

/// Mean, spread and interval of one figure over seeds.
fn figure(seeds: Vec<SeedValue>) -> Figure {
    let values: Vec<f64> = seeds.iter().filter_map(|s| s.value).collect();
    let n = values.len() as f64;
    let mean = (!values.is_empty()).then(|| values.iter().sum::<f64>() / n);
    let std = mean
        .filter(|_| values.len() >= 2)
        .map(|m| (values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    let intervals: Vec<Option<Interval>> = seeds
        .iter()
        .filter(|s| s.value.is_some())
        .map(|s| s.interval)
        .collect();
    Figure {
        mean,
        min: values.iter().copied().reduce(f64::min),
        max: values.iter().copied().reduce(f64::max),
        std,
        interval: span(&intervals),
        seeds,
    }
}

/// The span of several intervals; `None` when there are none or one is missing (a span that
/// leaves a model out would look narrower than the evidence).
fn span(intervals: &[Option<Interval>]) -> Option<Interval> {
    let all: Option<Vec<Interval>> = intervals.iter().copied().collect();
    let all = all.filter(|a| !a.is_empty())?;
    Some(Interval {
        lower: all.iter().map(|i| i.lower).fold(f64::INFINITY, f64::min),
        upper: all
            .iter()
            .map(|i| i.upper)
            .fold(f64::NEG_INFINITY, f64::max),
        resamples: all.iter().map(|i| i.resamples).min().unwrap_or(0),
    })
}

/// An arm's AP50 and AP over its seeds, each seed's value picked from its report on `test_set`.
fn seed_figures(
    checked: &Checked<'_>,
    arm: Arm,
    seeds: &[(u64, &std::path::Path)],
    test_set: &str,
    pick: impl Fn(&EvalReport, Which) -> (Option<f64>, Option<Interval>),
) -> Figures {
    let one = |which: Which| {
        figure(
            seeds
                .iter()
                .map(|(seed, _)| {
                    let (value, interval) = pick(checked.report(arm, *seed, test_set), which);
                    SeedValue {
                        seed: *seed,
                        value,
                        interval,
                    }
                })
                .collect(),
        )
    };
    Figures {
        ap50: one(Which::Ap50),
        ap: one(Which::Ap),
    }
}

fn arm_figures(
    checked: &Checked<'_>,
    arm: Arm,
    seeds: &[(u64, &std::path::Path)],
    test_set: &str,
    class: Option<&str>,
) -> Figures {
    seed_figures(checked, arm, seeds, test_set, |report, which| {
        Checked::value(report, class, which)
    })
}

/// A slice's name in the report: `key=value`.
fn slice_name(slice: &SliceReport) -> String {
    format!("{}={}", slice.key, slice.value)
}

/// An arm's all-classes figures on one slice of a test set; a seed whose report lacks the slice
/// has no value there.
fn slice_figures(
    checked: &Checked<'_>,
    arm: Arm,
    seeds: &[(u64, &std::path::Path)],
    test_set: &str,
    (key, value): (&str, &str),
) -> Figures {
    seed_figures(checked, arm, seeds, test_set, |report, which| {
        report
            .slices
            .iter()
            .find(|sl| sl.key == key && sl.value == value)
            .map_or((None, None), |sl| which.overall(&sl.metrics))
    })
}

fn delta(checked: &Checked<'_>, d: &DeltaKey<'_>, class: Option<&str>, which: Which) -> Delta {
    let pick = |f: &Figures| match which {
        Which::Ap50 => f.ap50.mean,
        Which::Ap => f.ap.mean,
    };
    let metric = which.metric(class);
    let pairs: Vec<PairedDelta> = checked
        .experiment
        .comparisons
        .iter()
        .filter(|c| c.test_set == d.test_set && c.a == d.a && c.b == d.b)
        .map(|c| {
            let found = c.comparison.differences.iter().find(|x| x.metric == metric);
            PairedDelta {
                a_seed: c.a_seed,
                b_seed: c.b_seed,
                difference: found.and_then(|x| x.difference),
                interval: found.and_then(|x| x.interval),
                b_better: found.and_then(|x| x.b_better),
            }
        })
        .collect();
    let intervals: Vec<Option<Interval>> = pairs.iter().map(|p| p.interval).collect();
    Delta {
        difference: pick(d.fa).zip(pick(d.fb)).map(|(a, b)| b - a),
        interval: span(&intervals),
        pairs,
    }
}

struct DeltaKey<'a> {
    test_set: &'a str,
    a: Arm,
    b: Arm,
    fa: &'a Figures,
    fb: &'a Figures,
}

/// Builds metrics.json's contents from a checked experiment.
pub(crate) fn aggregate(checked: &Checked<'_>) -> MetricsFile {
    let e = checked.experiment;
    let test_sets = Keyed(
        checked
            .test_sets
            .iter()
            .map(|name| {
                let r = checked.first(name);
                let info = TestSetInfo {
                    ground_truth: r.ground_truth.clone(),
                    images: r.overall.images,
                    objects: r.overall.objects,
                    classes: Keyed(
                        r.overall
                            .per_class
                            .iter()
                            .map(|c| (c.class.clone(), c.objects))
                            .collect(),
                    ),
                    slices: Keyed(
                        r.slices
                            .iter()
                            .map(|sl| (slice_name(sl), sl.metrics.objects))
                            .collect(),
                    ),
                    bootstrap: r.bootstrap,
                };
                (name.clone(), info)
            })
            .collect(),
    );
    let arms = Keyed(
        checked
            .arms
            .iter()
            .map(|(arm, seeds)| {
                let per_test_set = checked
                    .test_sets
                    .iter()
                    .map(|t| {
                        let classes = checked.first(t).categories.iter().map(|class| {
                            (
                                class.clone(),
                                arm_figures(checked, *arm, seeds, t, Some(class)),
                            )
                        });
                        let slices = checked.first(t).slices.iter().map(|sl| {
                            (
                                slice_name(sl),
                                slice_figures(checked, *arm, seeds, t, (&sl.key, &sl.value)),
                            )
                        });
                        let m = ArmTestSet {
                            overall: arm_figures(checked, *arm, seeds, t, None),
                            classes: Keyed(classes.collect()),
                            slices: Keyed(slices.collect()),
                        };
                        (t.clone(), m)
                    })
                    .collect();
                let models = seeds
                    .iter()
                    .map(|(seed, dir)| Model {
                        seed: *seed,
                        model_dir: dir.to_path_buf(),
                    })
                    .collect();
                (
                    arm.as_str().to_string(),
                    ArmMetrics {
                        models,
                        test_sets: Keyed(per_test_set),
                    },
                )
            })
            .collect(),
    );
    let mut deltas = Vec::new();
    for t in &checked.test_sets {
        for (a, b) in Arm::PAIRS {
            let (Some(ma), Some(mb)) = (arms.get(a.as_str()), arms.get(b.as_str())) else {
                continue;
            };
            let (Some(ta), Some(tb)) = (ma.test_sets.get(t), mb.test_sets.get(t)) else {
                continue;
            };
            let figures = |class: Option<&str>, fa: &Figures, fb: &Figures| {
                let key = DeltaKey {
                    test_set: t,
                    a,
                    b,
                    fa,
                    fb,
                };
                DeltaFigures {
                    ap50: delta(checked, &key, class, Which::Ap50),
                    ap: delta(checked, &key, class, Which::Ap),
                }
            };
            let classes = ta
                .classes
                .iter()
                .filter_map(|(class, fa)| {
                    let fb = tb.classes.get(class)?;
                    Some((class.to_string(), figures(Some(class), fa, fb)))
                })
                .collect();
            deltas.push(DeltaMetrics {
                test_set: t.clone(),
                a,
                b,
                overall: figures(None, &ta.overall, &tb.overall),
                classes: Keyed(classes),
            });
        }
    }
    let mut metrics = MetricsFile {
        schema: SCHEMA.to_string(),
        name: e.name.clone(),
        run_id: e.run_id.clone(),
        created_at: e.created_at.clone(),
        test_sets,
        arms,
        deltas,
        notes: e.notes.clone(),
        caveats: Vec::new(),
    };
    metrics.caveats = e
        .caveats
        .iter()
        .cloned()
        .chain(derived_caveats(checked, &metrics))
        .collect();
    metrics
}

fn fmt_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Caveats that follow from the numbers themselves, so that a reader of the tables is told what
/// they cannot carry.
fn derived_caveats(checked: &Checked<'_>, m: &MetricsFile) -> Vec<String> {
    let mut out = Vec::new();
    let missing: Vec<String> = Arm::ALL
        .iter()
        .filter(|a| m.arms.get(a.as_str()).is_none())
        .map(|a| a.as_str().to_string())
        .collect();
    if !missing.is_empty() {
        out.push(format!(
            "Arm {} has no results; the deltas involving it are missing.",
            fmt_list(&missing)
        ));
    }
    let fewest_seeds = checked.arms.iter().map(|(_, s)| s.len()).min().unwrap_or(0);
    if fewest_seeds < 2 {
        out.push(
            "At least one arm was trained with a single seed: the intervals cover the sampling \
             of test images only, not the run-to-run variation of training, which can be as \
             large as the differences between arms."
                .to_string(),
        );
    } else {
        out.push(format!(
            "Each arm was trained with at least {fewest_seeds} seeds; the tables give the mean \
             and the min..max over seeds. With several seeds an interval is the span of the \
             seeds' bootstrap intervals, not a joint interval of the mean."
        ));
    }
    for (name, info) in m.test_sets.iter() {
        match info.bootstrap {
            None => out.push(format!(
                "Test set {name} was evaluated without bootstrap: its figures have no intervals."
            )),
            Some(b) => out.push(format!(
                "Intervals on {name} are {:.0}% percentile bootstrap intervals over its {} test \
                 images ({} resamples); they say how much the figures depend on which images \
                 were tested, not how a model would do on other data.",
                b.confidence * 100.0,
                info.images,
                b.resamples
            )),
        }
        let few: Vec<String> = info
            .classes
            .iter()
            .filter(|(_, n)| **n < FEW_OBJECTS)
            .map(|(c, n)| format!("{c} ({n})"))
            .collect();
        if !few.is_empty() {
            out.push(format!(
                "On {name}, {} {} fewer than {FEW_OBJECTS} objects: their AP rests on a handful \
                 of detections.",
                fmt_list(&few),
                if few.len() == 1 { "has" } else { "have" }
            ));
        }
    }
    for d in &m.deltas {
        if d.overall.ap50.pairs.is_empty() {
            out.push(format!(
                "No paired comparison of {} against {} on {}: that delta has no interval.",
                d.b, d.a, d.test_set
            ));
            continue;
        }
        let straddles = |x: &Delta| x.interval.is_some_and(|i| i.lower <= 0.0 && i.upper >= 0.0);
        let mut unclear: Vec<String> = Vec::new();
        if straddles(&d.overall.ap50) {
            unclear.push("overall".to_string());
        }
        unclear.extend(
            d.classes
                .iter()
                .filter(|(_, f)| straddles(&f.ap50))
                .map(|(c, _)| c.to_string()),
        );
        if !unclear.is_empty() {
            out.push(format!(
                "{} vs {} on {}: the AP50 interval of the difference includes zero for {}, so \
                 the data do not say which is better there.",
                d.b,
                d.a,
                d.test_set,
                fmt_list(&unclear)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(lower: f64, upper: f64, resamples: usize) -> Interval {
        Interval {
            lower,
            upper,
            resamples,
        }
    }

    #[test]
    fn figure_gives_mean_spread_and_sample_std() {
        let f = figure(vec![
            SeedValue {
                seed: 1,
                value: Some(0.2),
                interval: Some(iv(0.1, 0.3, 100)),
            },
            SeedValue {
                seed: 2,
                value: Some(0.4),
                interval: Some(iv(0.3, 0.5, 90)),
            },
            SeedValue {
                seed: 3,
                value: None,
                interval: None,
            },
        ]);
        assert!((f.mean.expect("mean") - 0.3).abs() < 1e-12);
        assert_eq!((f.min, f.max), (Some(0.2), Some(0.4)));
        // numpy.std([0.2, 0.4], ddof=1) == 0.14142135623730953
        assert!((f.std.expect("std") - 0.141_421_356_237_309_53).abs() < 1e-12);
        assert_eq!(f.interval, Some(iv(0.1, 0.5, 90)));
    }

    #[test]
    fn one_seed_has_no_std_and_its_own_interval() {
        let f = figure(vec![SeedValue {
            seed: 7,
            value: Some(0.5),
            interval: Some(iv(0.4, 0.6, 10)),
        }]);
        assert_eq!((f.mean, f.std), (Some(0.5), None));
        assert_eq!(f.interval, Some(iv(0.4, 0.6, 10)));
    }

    #[test]
    fn span_needs_every_interval() {
        assert_eq!(span(&[Some(iv(0.0, 1.0, 5)), None]), None);
        assert_eq!(span(&[]), None);
    }

    #[test]
    fn keyed_round_trips_in_order_and_rejects_duplicates() {
        let k = Keyed(vec![("b".to_string(), 1), ("a".to_string(), 2)]);
        let text = serde_json::to_string(&k).expect("serialize");
        assert_eq!(text, r#"{"b":1,"a":2}"#);
        let back: Keyed<i32> = serde_json::from_str(&text).expect("deserialize");
        assert_eq!(back, k);
        assert!(serde_json::from_str::<Keyed<i32>>(r#"{"a":1,"a":2}"#).is_err());
    }

    #[test]
    fn coco_grid_is_recognised() {
        let grid: Vec<f64> = (0..=100).map(|i| f64::from(i) / 100.0).collect();
        assert!(is_coco_grid(&grid));
        assert!(!is_coco_grid(&grid[1..]));
    }
}
