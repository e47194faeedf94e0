//! The report's tables, built once from metrics.json's contents and written both as Markdown and as
//! HTML, so that the two files cannot disagree on a number.

use roadsynth_eval::Interval;

use crate::metrics::{ArmTestSet, Delta, DeltaMetrics, Figure, Figures, MetricsFile};
use crate::model::Arm;

/// A table of text cells; the first column is a row label.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub(crate) header: Vec<String>,
    pub(crate) rows: Vec<Vec<String>>,
}

/// Three decimals, as the eval crate prints; `-` for a figure that is not defined.
pub(crate) fn value(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"))
}

fn signed(v: f64) -> String {
    format!("{v:+.3}")
}

fn interval(i: Option<Interval>, sign: bool) -> String {
    i.map_or_else(String::new, |i| {
        if sign {
            format!(" [{}, {}]", signed(i.lower), signed(i.upper))
        } else {
            format!(" [{:.3}, {:.3}]", i.lower, i.upper)
        }
    })
}

/// `0.512 [0.450, 0.570]`, or with several seeds `0.512 (0.500..0.524, 3 seeds) [0.450, 0.590]`.
pub(crate) fn figure(f: &Figure) -> String {
    let spread = match (f.min, f.max) {
        (Some(min), Some(max)) if f.seeds.len() > 1 => {
            format!(" ({min:.3}..{max:.3}, {} seeds)", f.seeds.len())
        }
        _ => String::new(),
    };
    format!("{}{spread}{}", value(f.mean), interval(f.interval, false))
}

/// `+0.041 [+0.010, +0.072]`.
pub(crate) fn delta(d: &Delta) -> String {
    match d.difference {
        None => "-".to_string(),
        Some(v) => format!("{}{}", signed(v), interval(d.interval, true)),
    }
}

/// The share of resamples in which `b` won, per compared pair: `0.97`, or `0.95..0.99`.
pub(crate) fn b_better(d: &Delta) -> String {
    let shares: Vec<f64> = d.pairs.iter().filter_map(|p| p.b_better).collect();
    let min = shares.iter().copied().reduce(f64::min);
    let max = shares.iter().copied().reduce(f64::max);
    match (min, max) {
        (Some(min), Some(max)) if shares.len() > 1 => format!("{min:.2}..{max:.2}"),
        (Some(v), _) => format!("{v:.2}"),
        _ => "-".to_string(),
    }
}

pub(crate) fn arms(m: &MetricsFile) -> Vec<Arm> {
    Arm::ALL
        .into_iter()
        .filter(|a| m.arms.get(a.as_str()).is_some())
        .collect()
}

/// A per-test-set table's header (`first`, objects, one column per arm) and each present arm's
/// figures on that test set, in column order.
fn arm_columns<'m>(
    m: &'m MetricsFile,
    test_set: &str,
    first: &str,
) -> (Vec<String>, Vec<&'m ArmTestSet>) {
    let arms = arms(m);
    let mut header = vec![first.to_string(), "objects".to_string()];
    header.extend(arms.iter().map(|a| a.as_str().to_string()));
    let arm_sets = arms
        .iter()
        .filter_map(|a| m.arms.get(a.as_str())?.test_sets.get(test_set))
        .collect();
    (header, arm_sets)
}

/// Per class (first row: all classes), the figure of each arm on one test set.
pub(crate) fn per_class(m: &MetricsFile, test_set: &str, pick: fn(&Figures) -> &Figure) -> Table {
    let (header, arm_sets) = arm_columns(m, test_set, "class");
    let mut rows = Vec::new();
    let Some(info) = m.test_sets.get(test_set) else {
        return Table { header, rows };
    };
    let mut row = vec!["all classes".to_string(), info.objects.to_string()];
    row.extend(arm_sets.iter().map(|t| figure(pick(&t.overall))));
    rows.push(row);
    for (class, objects) in info.classes.iter() {
        let mut row = vec![class.to_string(), objects.to_string()];
        row.extend(arm_sets.iter().map(|t| {
            t.classes
                .get(class)
                .map_or_else(String::new, |f| figure(pick(f)))
        }));
        rows.push(row);
    }
    Table { header, rows }
}

/// Per slice of a test set (`weather=fog`), the all-classes figure of each arm; no rows when the
/// test set was not sliced.
pub(crate) fn per_slice(m: &MetricsFile, test_set: &str, pick: fn(&Figures) -> &Figure) -> Table {
    let (header, arm_sets) = arm_columns(m, test_set, "slice");
    let rows = m
        .test_sets
        .get(test_set)
        .map(|info| {
            info.slices
                .iter()
                .map(|(slice, objects)| {
                    let mut row = vec![slice.to_string(), objects.to_string()];
                    row.extend(arm_sets.iter().map(|t| {
                        t.slices
                            .get(slice)
                            .map_or_else(String::new, |f| figure(pick(f)))
                    }));
                    row
                })
                .collect()
        })
        .unwrap_or_default();
    Table { header, rows }
}

/// One delta, per class: AP50 and AP differences with intervals and the share of resamples won.
pub(crate) fn deltas(d: &DeltaMetrics) -> Table {
    let header = ["class", "Δ AP50", "P(b > a) AP50", "Δ AP", "P(b > a) AP"]
        .map(str::to_string)
        .to_vec();
    let row = |label: &str, f: &crate::metrics::DeltaFigures| {
        vec![
            label.to_string(),
            delta(&f.ap50),
            b_better(&f.ap50),
            delta(&f.ap),
            b_better(&f.ap),
        ]
    };
    let mut rows = vec![row("all classes", &d.overall)];
    rows.extend(d.classes.iter().map(|(class, f)| row(class, f)));
    Table { header, rows }
}

/// Overall AP50 and AP of every arm on every test set.
pub(crate) fn summary(m: &MetricsFile) -> Table {
    let arms = arms(m);
    let mut header = vec!["test set".to_string(), "figure".to_string()];
    header.extend(arms.iter().map(|a| a.as_str().to_string()));
    let mut rows = Vec::new();
    for test_set in m.test_sets.keys() {
        for (name, pick) in [
            ("AP50", (|f: &Figures| &f.ap50) as fn(&Figures) -> &Figure),
            ("AP", |f: &Figures| &f.ap),
        ] {
            let mut row = vec![test_set.to_string(), name.to_string()];
            row.extend(arms.iter().map(|a| {
                m.arms
                    .get(a.as_str())
                    .and_then(|x| x.test_sets.get(test_set))
                    .map_or_else(String::new, |t| figure(pick(&t.overall)))
            }));
            rows.push(row);
        }
    }
    Table { header, rows }
}

/// Overall deltas of every pair on every test set.
pub(crate) fn summary_deltas(m: &MetricsFile) -> Table {
    let header = [
        "test set", "b - a", "Δ AP50", "P(b > a)", "Δ AP", "P(b > a)",
    ]
    .map(str::to_string)
    .to_vec();
    let rows = m
        .deltas
        .iter()
        .map(|d| {
            vec![
                d.test_set.clone(),
                format!("{} - {}", d.b, d.a),
                delta(&d.overall.ap50),
                b_better(&d.overall.ap50),
                delta(&d.overall.ap),
                b_better(&d.overall.ap),
            ]
        })
        .collect();
    Table { header, rows }
}

/// Every trained model and where it is.
pub(crate) fn models(m: &MetricsFile) -> Table {
    let header = ["arm", "seed", "model"].map(str::to_string).to_vec();
    let rows = m
        .arms
        .iter()
        .flat_map(|(arm, a)| {
            a.models.iter().map(move |model| {
                vec![
                    arm.to_string(),
                    model.seed.to_string(),
                    model.model_dir.display().to_string(),
                ]
            })
        })
        .collect();
    Table { header, rows }
}
