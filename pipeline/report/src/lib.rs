//! Experiment reports: report.md, a self-contained report.html with plots drawn in Rust, and metrics.json with per-arm AP, intervals and deltas.
//!
//! # Use
//!
//! The experiment driver trains one detector per arm and seed, evaluates each on every test set
//! with [`roadsynth_eval::evaluate`] (with a bootstrap, for intervals), pairs the models of two
//! arms with [`roadsynth_eval::compare`], and hands everything over as an [`Experiment`]:
//!
//! ```no_run
//! fn publish(experiment: &roadsynth_report::Experiment) -> Result<(), roadsynth_report::ReportError> {
//!     let dir = roadsynth_report::report_dir("reports".as_ref(), &experiment.run_id)?;
//!     let files = roadsynth_report::write_report(&dir, experiment)?;
//!     println!("{}", files.report_html.display());
//!     Ok(())
//! }
//! ```
//!
//! # What is in it
//!
//! - `metrics.json` ([`MetricsFile`]): per test set, arm and class, AP50 and AP as the mean over
//!   seeds with min, max, standard deviation, the bootstrap interval and each seed's value; the
//!   deltas `b - a` of [`Arm::PAIRS`] (each arm against `real`, and `roadsynth` against
//!   `naive_paste`) with the paired intervals of [`ArmComparison`]s; the path of every model;
//!   the notes and caveats.
//! - `report.md`: the same numbers as tables, what was compared and how, and the caveats.
//! - `report.html`: the tables plus per-class AP bars with interval whiskers, PR curves per class
//!   and a grid of example frames with their boxes, as inline SVG (drawn with plotters), with
//!   no external reference: it renders offline and can be archived as one file.
//!
//! The same [`Experiment`] always gives the same bytes: nothing reads the clock or iterates a
//! hash map, so two reports can be compared with `diff`.
//!
//! # Checks
//!
//! Before writing, the experiment is checked: every model was evaluated on the same test sets,
//! against the same ground truth and with the same bootstrap; every comparison pairs two models
//! that exist and its point values are those of their evaluations; every PR curve belongs to a
//! model and class that exist and, when it is COCO's 101-point curve at `IoU` 0.5, its mean is
//! that model's AP50. A report with a number filed under the wrong arm is worse than none.

mod error;
mod html;
mod markdown;
mod metrics;
mod model;
mod plots;
mod tables;

use std::path::{Component, Path, PathBuf};

pub use error::ReportError;
pub use metrics::{
    ArmMetrics, ArmTestSet, Delta, DeltaFigures, DeltaMetrics, FEW_OBJECTS, Figure, Figures, Keyed,
    MetricsFile, Model, PairedDelta, SCHEMA, SeedValue, TestSetInfo,
};
pub use model::{
    Arm, ArmComparison, ArmPrCurve, ArmResult, BoxKind, Example, ExampleBox, Experiment, PrCurve,
    SeedResult, TestSetReport, UnknownArm,
};

/// The files a report was written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFiles {
    pub dir: PathBuf,
    pub metrics_json: PathBuf,
    pub report_md: PathBuf,
    pub report_html: PathBuf,
}

/// `<root>/<run_id>`, once the run id is known to be one plain folder name: a run id with a
/// separator or `..` would write the report somewhere else than the reports folder.
pub fn report_dir(root: &Path, run_id: &str) -> Result<PathBuf, ReportError> {
    let bad = |reason: &str| ReportError::RunId {
        run_id: run_id.to_string(),
        reason: reason.to_string(),
    };
    let mut components = Path::new(run_id).components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(_)), None) if !run_id.contains(['/', '\\']) => {
            Ok(root.join(run_id))
        }
        (None, _) => Err(bad("it is empty")),
        _ => Err(bad(
            "it must be one folder name, without separators or `..`",
        )),
    }
}

/// The contents of metrics.json for an experiment, after the checks [`write_report`] makes; for
/// a driver that wants the numbers without writing files.
pub fn metrics(experiment: &Experiment) -> Result<MetricsFile, ReportError> {
    Ok(metrics::aggregate(&metrics::check(experiment)?))
}

/// Writes `metrics.json`, `report.md` and `report.html` into `dir` (created if needed).
///
/// Everything is rendered before the first file is written, so a rejected experiment leaves no
/// partial report; each file is written beside its final name and renamed into place, so a
/// reader never sees half a file.
pub fn write_report(dir: &Path, experiment: &Experiment) -> Result<ReportFiles, ReportError> {
    let metrics = metrics(experiment)?;
    let files = ReportFiles {
        dir: dir.to_path_buf(),
        metrics_json: dir.join("metrics.json"),
        report_md: dir.join("report.md"),
        report_html: dir.join("report.html"),
    };
    let mut json = serde_json::to_vec_pretty(&metrics).map_err(|source| ReportError::Json {
        path: files.metrics_json.clone(),
        source,
    })?;
    json.push(b'\n');
    let md = markdown::render(&metrics);
    let html = html::render(&metrics, experiment)?;
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    write_file(&files.metrics_json, &json)?;
    write_file(&files.report_md, md.as_bytes())?;
    write_file(&files.report_html, html.as_bytes())?;
    Ok(files)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(|source| ReportError::Io {
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, path).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_dir_takes_plain_names_only() {
        let root = Path::new("reports");
        assert_eq!(
            report_dir(root, "2026-11-25-a1").expect("plain"),
            root.join("2026-11-25-a1")
        );
        for bad in ["", "..", ".", "a/b", "/abs", "a\\b"] {
            assert!(report_dir(root, bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn arms_parse_from_their_names() {
        for arm in Arm::ALL {
            assert_eq!(arm.as_str().parse::<Arm>(), Ok(arm));
            assert_eq!(
                serde_json::to_value(arm).expect("json"),
                serde_json::json!(arm.as_str())
            );
        }
        assert_eq!(
            "naive-paste".parse::<Arm>(),
            Err(UnknownArm("naive-paste".into()))
        );
    }
}
