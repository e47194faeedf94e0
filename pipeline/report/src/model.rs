//! What the experiment driver hands over: the evaluations of every trained model, the paired
//! comparisons between arms, PR curves and example images.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use roadsynth_eval::{Comparison, EvalReport};
use serde::{Deserialize, Serialize};

/// One arm of the experiment: how the detector's training data was made.
///
/// The three arms are fixed by the experiment's design (issue 7): the deltas the report computes
/// are "augmentation vs none" and "roadsynth vs the naive baseline", so an arm is a closed set
/// rather than free text that a typo could silently leave out of every delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arm {
    /// Real training frames only.
    Real,
    /// Real frames plus objects pasted without blending, lighting or placement logic.
    NaivePaste,
    /// Real frames plus roadsynth's augmentations.
    Roadsynth,
}

impl Arm {
    /// Every arm, in report order (baseline first).
    pub const ALL: [Arm; 3] = [Arm::Real, Arm::NaivePaste, Arm::Roadsynth];

    /// The pairs the report gives deltas for, as `(a, b)` with the delta `b - a`.
    pub const PAIRS: [(Arm, Arm); 3] = [
        (Arm::Real, Arm::NaivePaste),
        (Arm::Real, Arm::Roadsynth),
        (Arm::NaivePaste, Arm::Roadsynth),
    ];

    /// The name used in metrics.json, tables and captions.
    pub fn as_str(self) -> &'static str {
        match self {
            Arm::Real => "real",
            Arm::NaivePaste => "naive_paste",
            Arm::Roadsynth => "roadsynth",
        }
    }

    /// The colour of the arm in every plot, as RGB. Chosen to stay distinguishable for the common
    /// colour-vision deficiencies (a blue, an orange and a green of different lightness), and
    /// fixed so that a reader comparing two reports sees the same arm in the same colour.
    pub fn rgb(self) -> (u8, u8, u8) {
        match self {
            Arm::Real => (0x4C, 0x72, 0xB0),
            Arm::NaivePaste => (0xDD, 0x84, 0x52),
            Arm::Roadsynth => (0x2E, 0x9E, 0x4F),
        }
    }

    /// [`Self::rgb`] as a CSS/SVG colour.
    pub fn css(self) -> String {
        let (r, g, b) = self.rgb();
        format!("#{r:02X}{g:02X}{b:02X}")
    }
}

/// A name that is not one of [`Arm::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown arm {0:?}: the arms are real, naive_paste and roadsynth")]
pub struct UnknownArm(pub String);

/// Parses the names [`Arm::as_str`] gives, as configuration files spell them.
impl FromStr for Arm {
    type Err = UnknownArm;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Arm::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownArm(s.to_string()))
    }
}

impl fmt::Display for Arm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything one report is made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    /// A human title, e.g. "CamVid cars: roadsynth vs naive paste".
    pub name: String,
    /// The run id; the report usually goes to `reports/<run_id>/` (see [`crate::report_dir`]).
    pub run_id: String,
    /// When the run was made, as the caller formats it. Passed in rather than read from the clock
    /// so that the same results always give the same report bytes.
    pub created_at: String,
    pub arms: Vec<ArmResult>,
    /// Paired bootstrap comparisons between arms (from [`roadsynth_eval::compare`]); they give
    /// the deltas their intervals. A delta without one is still reported, without an interval.
    pub comparisons: Vec<ArmComparison>,
    pub pr_curves: Vec<ArmPrCurve>,
    /// Example frames for the grid in report.html.
    pub examples: Vec<Example>,
    /// How the arms were made comparable and anything else a reader needs to judge the numbers:
    /// equal epochs and steps per arm, dataset sizes, detector, image size.
    pub notes: Vec<String>,
    /// Caveats the driver knows of; the report adds the ones it can see in the numbers.
    pub caveats: Vec<String>,
}

/// The trained models of one arm, one per training seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmResult {
    pub arm: Arm,
    pub seeds: Vec<SeedResult>,
}

/// One trained model and its evaluation on every test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedResult {
    /// The training seed.
    pub seed: u64,
    /// Where the trained model is, so that a number in the report can be traced to its weights.
    pub model_dir: PathBuf,
    pub test_sets: Vec<TestSetReport>,
}

/// The evaluation of one model on one test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestSetReport {
    /// The test set's name in the report (e.g. `camvid-val`); the same name in every arm and seed.
    pub test_set: String,
    pub report: EvalReport,
}

/// A paired comparison of two models on one test set: [`roadsynth_eval::compare`] with the
/// detections of arm `a`'s model `a_seed` as its `a` and those of arm `b`'s model `b_seed` as `b`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmComparison {
    pub test_set: String,
    pub a: Arm,
    pub a_seed: u64,
    pub b: Arm,
    pub b_seed: u64,
    pub comparison: Comparison,
}

/// A precision-recall curve of one model on one test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmPrCurve {
    pub arm: Arm,
    pub seed: u64,
    pub test_set: String,
    pub curve: PrCurve,
}

/// One class's precision at each recall, as COCO's `accumulate` gives it: interpolated (monotone)
/// precision at fixed recall thresholds, `0` beyond the highest recall reached.
///
/// When `iou` is 0.5 and `recall` is COCO's 101-point grid, the mean of `precision` is the
/// class's AP50, and the report checks that it is (a curve filed under the wrong arm or seed
/// would otherwise be drawn without complaint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrCurve {
    pub class: String,
    /// The `IoU` threshold a detection had to reach to count as a hit.
    pub iou: f64,
    pub recall: Vec<f64>,
    pub precision: Vec<f64>,
}

/// An example frame for the report's grid, with boxes drawn over it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub caption: String,
    /// The encoded frame, PNG or JPEG (as the dataset stores it); embedded as is.
    pub image: Vec<u8>,
    pub boxes: Vec<ExampleBox>,
}

/// A box drawn over an example frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleBox {
    /// `[x0, y0, x1, y1]` in the frame's pixels.
    pub bbox: [f64; 4],
    /// Drawn beside the box (class, score); may be empty.
    pub label: String,
    pub kind: BoxKind,
}

/// What a box on an example shows; decides its colour and line style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoxKind {
    /// A labelled real object.
    GroundTruth,
    /// An object roadsynth (or the naive paste) inserted.
    Inserted,
    /// A detection of one arm's model.
    Detection(Arm),
}
